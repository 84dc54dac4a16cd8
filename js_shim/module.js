// The ES module entry (dist/revu.mjs, the npm package's main export):
// `import { revu } from "revu"`. It touches no global: window.revu is the
// classic script's (script.js). A bundler moves this code away from the
// assets, so nothing is guessed from the module's URL: init() needs
// assetsUrl, the URL where the package's dist/ folder is served (docs/npm.md).

import { createRevu } from "./index.js";

/** The page's revu instance (same API as window.revu from dist/revu.js). */
export const revu = createRevu({});
export default revu;
