/**
 * Console logging behind the `debug` option; warnings and errors always show
 * when `debug` is on and are otherwise silent (the page learns of them through
 * `revu.on("error")` and `revu.status()`).
 * @param {() => boolean} isDebug
 * @returns {(level: string, message: string, extra?: unknown) => void}
 */
export function createLogger(isDebug) {
  return (level, message, extra) => {
    if (!isDebug()) return;
    const fn = level === "error" ? console.error : level === "warn" ? console.warn : console.info;
    if (extra === undefined) fn(`[revu] ${message}`);
    else fn(`[revu] ${message}`, extra);
  };
}
