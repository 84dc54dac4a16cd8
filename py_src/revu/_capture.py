"""Capture: a page's ``record()`` (or ``outbox.enqueue()``) call checked and
turned into the record that is stored. Pure: ids, clock and seq come in.

This is the trust boundary for what the page passes. The browser shim applies
the same rules synchronously in ``js_shim/capture.js`` (it cannot wait for
Python); ``tests/contract/capture_cases.json`` holds the cases both must agree
on, byte for byte. The Python runtimes (``revu.runtimes``) use this module.

Rules (limits from ``_config.CAPTURE_LIMITS``, published to the shim):

* event name: a string of 1 to ``maxNameBytes`` UTF-8 bytes;
* properties: a plain object (``None`` means ``{}``), at most ``maxDepth``
  levels of nesting (the properties object is level 1) and ``maxMembers``
  members and items in all; values are JSON values as ``JSON.stringify``
  writes them (NaN and Infinity become null, a float that is an integer is
  written as one, numbers as JavaScript prints them);
* every string (names, keys, values, options) has each lone UTF-16 surrogate
  replaced by U+FFFD REPLACEMENT CHARACTER;
* the envelope (with options that travel in it: stream, priority, dedupe
  keys) is at most ``maxEventBytes`` UTF-8 bytes; for a mutation, the
  envelope plus the mutation (url, method, headers, body);
* options: ``stream`` and ``category`` strings of 1 to ``maxOptionBytes``
  bytes, ``priority`` one of high/normal/low, ``keys`` an object of at most
  ``maxKeys`` string values (names and values 1 to ``maxOptionBytes`` bytes),
  ``ttlMs`` a positive integer below 2**53, ``pii`` true/false or a list of 1
  to ``maxPiiNames`` names.

A refusal raises ``CaptureError`` with one of the codes ``invalid_event``,
``invalid_properties``, ``invalid_options``, ``invalid_mutation``,
``unserialisable``, ``too_deep``, ``too_many_members``, ``too_large``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._config import CAPTURE_LIMITS
from ._records import DEFAULT_CATEGORY, MAX_SAFE_INTEGER, MUTATION_METHODS, PRIORITY_RANK, SCHEMA_VERSION


class CaptureError(ValueError):
    """The page passed something capture refuses; nothing was stored.

    Attributes:
        code: the error code the page sees (``revu.on("error")``).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Captured:
    """A checked event, ready to store under ``event_id``."""

    event_id: str
    raw: str  # the stored value: {"v","seq","env"[,"meta"][,"mutation"]}
    env_json: str
    category: str
    size_bytes: int


_OPTION_KEYS = ("stream", "priority", "keys", "category", "ttlMs", "pii")
_MUTATION_KEYS = ("method", "url", "body", "headers", "idempotencyKey", "stream")


def well_formed(text: str) -> str:
    """``text`` with each lone UTF-16 surrogate replaced by U+FFFD (what
    ``String.prototype.toWellFormed`` does)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def js_number(value: float | int) -> str:
    """A number as ``JSON.stringify`` writes it (ECMAScript Number::toString)."""
    if isinstance(value, int) and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # position of the decimal point relative to the first significant digit
    point = len(whole.lstrip("0")) if whole.strip("0") else -(len(frac) - len(frac.lstrip("0")))
    point += int(exp) if exp else 0
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return sign + out


def _js_string(text: str) -> str:
    """A string as ``JSON.stringify`` writes it (after surrogate repair)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20:
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\u{code:04x}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class _Encoder:
    """JSON text of a value within the capture limits."""

    def __init__(self, where: str, max_depth: int, max_members: int, max_bytes: int) -> None:
        self.where = where
        self.max_depth = max_depth
        self.max_members = max_members
        self.max_bytes = max_bytes
        self.members = 0
        self.bytes = 0
        self.path: set[int] = set()

    def encode(self, value: Any, depth: int) -> str:
        if value is None or isinstance(value, bool):
            return "null" if value is None else ("true" if value else "false")
        if isinstance(value, (int, float)):
            return self._count(js_number(value))
        if isinstance(value, str):
            if utf8_length(value) > self.max_bytes:
                raise CaptureError("too_large", f"{self.where}: a string over {self.max_bytes} bytes")
            return self._count(_js_string(well_formed(value)))
        if isinstance(value, (dict, list, tuple)):
            if id(value) in self.path:
                raise CaptureError("unserialisable", f"{self.where}: a cyclic structure is not JSON-serialisable")
            if depth > self.max_depth:
                raise CaptureError("too_deep", f"{self.where}: nested deeper than {self.max_depth} levels")
            self.members += len(value)
            if self.members > self.max_members:
                raise CaptureError("too_many_members", f"{self.where}: more than {self.max_members} members in all")
            self.path.add(id(value))
            if isinstance(value, dict):
                parts = []
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise CaptureError("unserialisable", f"{self.where}: object keys must be strings")
                    parts.append(self._count(_js_string(well_formed(key))) + ":" + self.encode(item, depth + 1))
                text = "{" + ",".join(parts) + "}"
            else:
                text = "[" + ",".join(self.encode(item, depth + 1) for item in value) + "]"
            self.path.discard(id(value))
            return text
        raise CaptureError("unserialisable", f"{self.where}: {type(value).__name__} is not a JSON value")

    def _count(self, text: str) -> str:
        self.bytes += utf8_length(text)
        if self.bytes > self.max_bytes:
            raise CaptureError("too_large", f"{self.where}: over {self.max_bytes} bytes")
        return text


def _option_string(value: Any, name: str, where: str, limits: dict[str, Any]) -> str:
    if not isinstance(value, str) or not value or utf8_length(value) > limits["maxOptionBytes"]:
        raise CaptureError("invalid_options",
                           f"{where}: {name} must be a string of 1 to {limits['maxOptionBytes']} bytes")
    return well_formed(value)


def _check_options(options: Any, where: str, limits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Envelope fields and stored flags (meta) from record()'s options."""
    envelope: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    if options is None:
        return envelope, meta
    if not isinstance(options, dict):
        raise CaptureError("invalid_options", f"{where}: options must be an object")
    for key in options:
        if key not in _OPTION_KEYS:
            raise CaptureError("invalid_options", f"{where}: unknown option {str(key)[:40]!r}")
    if options.get("stream") is not None:
        envelope["stream"] = _option_string(options["stream"], "stream", where, limits)
    if options.get("priority") is not None:
        if options["priority"] not in PRIORITY_RANK:
            raise CaptureError("invalid_options", f'{where}: priority must be "high", "normal" or "low"')
        envelope["priority"] = options["priority"]
    if options.get("keys") is not None:
        keys = options["keys"]
        if not isinstance(keys, dict) or len(keys) > limits["maxKeys"]:
            raise CaptureError("invalid_options", f"{where}: keys must be an object of at most {limits['maxKeys']} strings")
        envelope["keys"] = {_option_string(k, "a key name", where, limits): _option_string(v, "a key value", where, limits)
                            for k, v in keys.items()}
    if options.get("category") is not None:
        category = _option_string(options["category"], "category", where, limits)
        if category != DEFAULT_CATEGORY:
            meta["category"] = category
    if options.get("ttlMs") is not None:
        ttl = options["ttlMs"]
        if isinstance(ttl, float) and ttl.is_integer():
            ttl = int(ttl)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_SAFE_INTEGER:
            raise CaptureError("invalid_options", f"{where}: ttlMs must be a positive integer")
        meta["ttl_ms"] = ttl
    pii = options.get("pii")
    if pii is not None and pii is not False:
        if pii is True:
            meta["pii"] = True
        elif isinstance(pii, list) and 0 < len(pii) <= limits["maxPiiNames"]:
            meta["pii"] = [_option_string(p, "a pii name", where, limits) for p in pii]
        else:
            raise CaptureError("invalid_options",
                               f"{where}: pii must be true or a list of 1 to {limits['maxPiiNames']} property names")
    return envelope, meta


def _record_text(seq: int, env_json: str, meta: dict[str, Any], mutation_json: str | None) -> str:
    raw = f'{{"v":{SCHEMA_VERSION},"seq":{seq},"env":{env_json}'
    if meta:
        raw += ',"meta":' + _Encoder("meta", 4, 1_000, 1 << 20).encode(meta, 1)
    if mutation_json is not None:
        raw += ',"mutation":' + mutation_json
    return raw + "}"


def capture_event(event: Any, properties: Any = None, options: Any = None, *, event_id: str, now_ms: int,
                  seq: int, limits: dict[str, Any] | None = None, max_event_bytes: int = 32_768) -> Captured:
    """Check a ``record()`` call and build the record to store.

    Args:
        event: the event name.
        properties: a dict of JSON values, or None.
        options: ``record()`` options (camelCase keys), or None.
        event_id: the new event's id (a UUID from the runtime).
        now_ms: the runtime's clock.
        seq: the record's order key (``max(now_ms * 1000, last_seq + 1)``).
        limits: ``CAPTURE_LIMITS`` (or the rules the core published).
        max_event_bytes: the ``maxEventBytes`` option.

    Returns:
        The record and what a store needs to know of it.

    Raises:
        CaptureError: the call is refused; nothing should be stored.
    """
    limits = {**CAPTURE_LIMITS, **(limits or {})}
    if not isinstance(event, str) or not event or utf8_length(event) > limits["maxNameBytes"]:
        raise CaptureError("invalid_event",
                           f"revu.record: event name must be a string of 1 to {limits['maxNameBytes']} bytes")
    event = well_formed(event)
    where = f"revu.record({event[:40]!r})"
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise CaptureError("invalid_properties", f"{where}: properties must be a plain object")
    extra, meta = _check_options(options, where, limits)
    encoder = _Encoder(where, limits["maxDepth"], limits["maxMembers"], max_event_bytes)
    props_json = encoder.encode(properties, 1)
    head = f'{{"event_id":{_js_string(event_id)},"event":{_js_string(event)},"properties":'
    tail = f',"created_at":{now_ms}'
    if "stream" in extra:
        tail += f',"stream":{_js_string(extra["stream"])}'
    if "priority" in extra:
        tail += f',"priority":{_js_string(extra["priority"])}'
    if "keys" in extra:
        tail += ',"keys":{' + ",".join(f"{_js_string(k)}:{_js_string(v)}" for k, v in extra["keys"].items()) + "}"
    env_json = head + props_json + tail + "}"
    size = utf8_length(env_json)
    if size > max_event_bytes:
        raise CaptureError("too_large", f"{where}: {size} bytes, over maxEventBytes={max_event_bytes}")
    return Captured(event_id, _record_text(seq, env_json, meta, None), env_json,
                    meta.get("category", DEFAULT_CATEGORY), size)


def capture_mutation(spec: Any, *, event_id: str, idempotency_key: str, now_ms: int, seq: int,
                     limits: dict[str, Any] | None = None, max_event_bytes: int = 32_768) -> Captured:
    """Check an ``outbox.enqueue(spec)`` call (``url`` absolute) and build its record.

    Raises:
        CaptureError: ``invalid_mutation``, ``unserialisable``, ``too_deep``,
            ``too_many_members`` or ``too_large``.
    """
    limits = {**CAPTURE_LIMITS, **(limits or {})}
    where = "revu.outbox.enqueue"
    if not isinstance(spec, dict):
        raise CaptureError("invalid_mutation", f"{where}: needs an object")
    for key in spec:
        if key not in _MUTATION_KEYS:
            raise CaptureError("invalid_mutation", f"{where}: unknown field {str(key)[:40]!r}")
    method = spec.get("method")
    if method is None:
        method = "POST"
    if not isinstance(method, str) or method.upper() not in MUTATION_METHODS:
        raise CaptureError("invalid_mutation", f"{where}: method must be POST, PUT, PATCH or DELETE")
    url = spec.get("url")
    if (not isinstance(url, str) or utf8_length(url) > limits["maxUrlBytes"]
            or not url.startswith(("http://", "https://"))):
        raise CaptureError("invalid_mutation",
                           f"{where}: url must be an absolute http(s) URL of at most {limits['maxUrlBytes']} bytes")
    headers = spec.get("headers")
    if headers is None:
        headers = {}
    if (not isinstance(headers, dict) or len(headers) > limits["maxHeaders"]
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
        raise CaptureError("invalid_mutation",
                           f"{where}: headers must be an object of at most {limits['maxHeaders']} strings")
    key = spec.get("idempotencyKey") if spec.get("idempotencyKey") is not None else idempotency_key
    if not isinstance(key, str) or not key or utf8_length(key) > limits["maxOptionBytes"]:
        raise CaptureError("invalid_mutation", f"{where}: idempotencyKey must be a string of 1 to "
                                               f"{limits['maxOptionBytes']} bytes")
    stream = spec.get("stream")
    if stream is not None and (not isinstance(stream, str) or not stream
                               or utf8_length(stream) > limits["maxOptionBytes"]):
        raise CaptureError("invalid_mutation", f"{where}: stream must be a string of 1 to "
                                               f"{limits['maxOptionBytes']} bytes")
    def encode(value: Any) -> str:  # body and headers each within the limits
        return _Encoder(where, limits["maxDepth"], limits["maxMembers"], max_event_bytes).encode(value, 1)

    mutation_json = ("{" + f'"method":{_js_string(method.upper())},"url":{_js_string(well_formed(url))},"body":'
                     + encode(spec.get("body")) + ',"headers":'
                     + encode(headers) + f',"idempotency_key":{_js_string(well_formed(key))}' + "}")
    env_json = (f'{{"event_id":{_js_string(event_id)},"event":"$mutation","properties":{{}},"created_at":{now_ms}'
                + (f',"stream":{_js_string(well_formed(stream))}' if stream else "") + "}")
    size = utf8_length(env_json) + utf8_length(mutation_json)
    if size > max_event_bytes:
        raise CaptureError("too_large", f"{where}: {size} bytes, over maxEventBytes={max_event_bytes}")
    return Captured(event_id, _record_text(seq, env_json, {}, mutation_json), env_json, "necessary", size)
