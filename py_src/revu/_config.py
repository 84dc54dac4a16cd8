"""Configuration: the page's ``revu.init(options)`` checked and given defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ._errors import UsageError
from ._policy import EVICTION_RANK
from ._records import (
    DEFAULT_CATEGORY, MAX_DEPTH, MAX_RECORD_BYTES, NECESSARY, PRIORITIES, SCHEMA_VERSION,
)

DEFAULT_HOST = "https://api.revu.ai"
EVENTS_PATH = "/v1/behavior/events"

# Browsers cap the bodies of all in-flight keepalive requests (fetch keepalive
# and sendBeacon share it) at 64 KiB per page: "If contentLength ... is greater
# than 64 kibibytes, then return a network error"
# (https://fetch.spec.whatwg.org/#http-network-or-cache-fetch, step on
# inflightKeepaliveBytes). 60,000 bytes leaves room for headers.
KEEPALIVE_BUDGET_BYTES = 60_000

# A request body the reference ingest service accepts (decoded); a drain batch
# stays within it.
MAX_DRAIN_BATCH_BYTES = 1_000_000

# Options that only the shim reads; the core accepts and ignores them.
_SHIM_OPTIONS = frozenset({"storage", "storageKey", "assetsUrl"})

# What capture accepts (the trust boundary for page input). Fixed, not options:
# they bound what any record can hold, so that storage, the core and the wire
# stay bounded whatever a page passes. Published to the shim with the rules.
CAPTURE_LIMITS: dict[str, int] = {
    "maxDepth": MAX_DEPTH,          # nesting of properties / a mutation body
    "maxMembers": 1_000,            # object members + array items, all levels
    "maxNameBytes": 200,            # event name (UTF-8 bytes)
    "maxOptionBytes": 200,          # stream, category, each dedupe key name and value, each pii name
    "maxKeys": 16,                  # dedupe keys per event
    "maxPiiNames": 64,              # names in a pii list
    "maxUrlBytes": 8_192,           # mutation url
    "maxHeaders": 32,               # mutation headers
    "maxRecordBytes": MAX_RECORD_BYTES,  # any stored value larger is quarantined
}

# Version of the rules' own shape; the shim ignores stored rules of another
# version (written by an older or newer SDK) and uses its defaults.
RULES_VERSION = 2
# The consent state while it is not known (a corrupt stored value, or an
# invalid one passed to init): nothing new is stored or sent for a category
# that needs consent, and nothing already stored is purged, until the page
# sets a state. Never set by the page itself.
UNKNOWN_CONSENT = "unknown"


@dataclass(frozen=True)
class Config:
    """Checked configuration with the product document's defaults.

    Attributes mirror the camelCase options of ``revu.init`` (``flushAt`` ->
    ``flush_at``). See README "Configuration" for meanings and limits.
    """

    api_key: str
    host: str = DEFAULT_HOST
    flush_at: int = 20
    flush_interval_ms: int = 5_000
    max_batch: int = 50
    max_queue: int = 1_000
    max_batch_bytes: int = KEEPALIVE_BUDGET_BYTES
    max_event_bytes: int = 32_768
    backoff_base_ms: int = 1_000
    backoff_max_ms: int = 60_000
    max_retry_after_ms: int = 3_600_000
    request_timeout_ms: int = 10_000
    max_dead_letters: int = 1_000
    max_queue_bytes: int = 2_000_000
    max_age_ms: int = 30 * 24 * 3_600_000
    max_attempts: int = 0
    compression: str = "auto"
    compress_min_bytes: int = 1_024
    drain_batch: int = 1_000
    drain_batch_bytes: int = 524_288
    slow_drain_interval_ms: int = 30_000
    consent: Any = "granted"
    coalesce: Any = None
    debug: Any = False  # True, False or "verbose"

    @property
    def endpoint(self) -> str:
        return self.host.rstrip("/") + EVENTS_PATH

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Config:
        """Build a Config from ``revu.init`` options.

        Args:
            options: camelCase keys as the page passed them.

        Returns:
            The checked configuration.

        Raises:
            UsageError: unknown option, wrong type, or value out of range.
        """
        if not isinstance(options, dict):
            raise UsageError("init options must be an object")
        by_camel = {_camel(f.name): f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key in _SHIM_OPTIONS:
                continue
            field = by_camel.get(key)
            if field is None:
                raise UsageError(f"unknown option {key!r}")
            values[field.name] = value
        if "api_key" not in values:
            raise UsageError("apiKey is required")
        config = cls(**values)
        config._check()
        return config

    def _check(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise UsageError("apiKey must be a non-empty string")
        if not isinstance(self.host, str) or not self.host.startswith(("http://", "https://")):
            raise UsageError("host must be an http(s) URL")
        if not (isinstance(self.debug, bool) or self.debug == "verbose"):
            raise UsageError('debug must be true, false or "verbose"')
        if self.compression not in ("auto", "gzip", "off"):
            raise UsageError('compression must be "auto", "gzip" or "off"')
        for f in fields(self):
            if f.type == "int":
                value = getattr(self, f.name)
                low = 0 if f.name == "max_attempts" else 1
                if not isinstance(value, int) or isinstance(value, bool) or value < low:
                    raise UsageError(f"{_camel(f.name)} must be {'a non-negative' if low == 0 else 'a positive'} integer")
        check_consent(self.consent)
        _check_coalesce(self.coalesce)
        if self.max_batch > self.max_queue:
            raise UsageError("maxBatch cannot exceed maxQueue")
        if self.flush_at > self.max_queue:
            raise UsageError("flushAt cannot exceed maxQueue")
        if self.backoff_base_ms > self.backoff_max_ms:
            raise UsageError("backoffBaseMs cannot exceed backoffMaxMs")
        if self.max_event_bytes > self.max_batch_bytes:
            raise UsageError("maxEventBytes cannot exceed maxBatchBytes")
        if self.max_batch_bytes > KEEPALIVE_BUDGET_BYTES:
            raise UsageError(f"maxBatchBytes cannot exceed {KEEPALIVE_BUDGET_BYTES} (keepalive budget)")
        if self.drain_batch_bytes > MAX_DRAIN_BATCH_BYTES:
            raise UsageError(f"drainBatchBytes cannot exceed {MAX_DRAIN_BATCH_BYTES}")

    def rules(self) -> dict[str, Any]:
        """What the shim needs while the core cannot answer (start-up, unload).

        The shim stores these and applies them on the next page load before
        Pyodide is up; ``js_shim/bootstrap_rules.json`` holds the defaults for
        a first visit and a test keeps the two equal. Keys named like an
        option (``maxQueue``...) take the page's ``init()`` value at once, so
        a first visit already applies the page's caps
        (``tests/contract/rules_cases.json`` pins the shim's reading).
        """
        return {
            "rulesVersion": RULES_VERSION,
            "schemaVersion": SCHEMA_VERSION,
            "defaultHost": DEFAULT_HOST,
            "eventsPath": EVENTS_PATH,
            "maxQueue": self.max_queue,
            "maxQueueBytes": self.max_queue_bytes,
            "maxEventBytes": self.max_event_bytes,
            "maxBatchBytes": self.max_batch_bytes,
            **CAPTURE_LIMITS,
            "priorities": list(PRIORITIES),
            "defaultCategory": DEFAULT_CATEGORY,
            "necessaryCategory": NECESSARY,
            "evictionRank": dict(EVICTION_RANK),
            "coalesce": sorted(self.coalesce or {}),
        }

    def coalesce_rule(self, event: str) -> dict[str, int] | None:
        """The coalescing rule for an event name, if any (``windowMs``, ``ttlMs``)."""
        return (self.coalesce or {}).get(event)

    def as_options(self) -> dict[str, Any]:
        return {_camel(k): v for k, v in asdict(self).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


MAX_CONSENT_CATEGORIES = 64


def check_consent(state: Any) -> None:
    """``"granted"``, ``"denied"`` or ``{category: bool}`` (1 to 64 categories,
    names of 1 to 200 bytes).

    Raises:
        UsageError: anything else.
    """
    if isinstance(state, str) and state in ("granted", "denied"):
        return
    if isinstance(state, dict) and 0 < len(state) <= MAX_CONSENT_CATEGORIES and all(
            isinstance(k, str) and 0 < len(k.encode("utf-8", "surrogatepass")) <= CAPTURE_LIMITS["maxOptionBytes"]
            and isinstance(v, bool) for k, v in state.items()):
        return
    raise UsageError('consent must be "granted", "denied" or an object of 1 to 64 category: true/false')


def consent_allows(state: Any, category: str) -> bool:
    """Whether ``state`` lets an item of ``category`` be stored and sent.

    "necessary" (mutation-outbox writes the user asked for) is always allowed;
    a category missing from a per-category state is denied. The shim applies
    the same rule at capture (``js_shim/consent.js``); a contract test keeps
    them equal.
    """
    if category == NECESSARY or state == "granted":
        return True
    if isinstance(state, dict):
        return state.get(category, False) is True
    return False  # "denied", and UNKNOWN_CONSENT


def _check_coalesce(rules: Any) -> None:
    if rules is None:
        return
    if not isinstance(rules, dict):
        raise UsageError("coalesce must be an object of event name: {windowMs, ttlMs}")
    for name, rule in rules.items():
        if not isinstance(name, str) or not name or not isinstance(rule, dict) or not rule:
            raise UsageError("coalesce must be an object of event name: {windowMs, ttlMs}")
        for key, value in rule.items():
            if key not in ("windowMs", "ttlMs"):
                raise UsageError(f"coalesce.{name}: unknown key {key!r} (windowMs, ttlMs)")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"coalesce.{name}.{key} must be a positive integer")
