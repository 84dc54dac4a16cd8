"""JSON in, JSON out: the only surface the shim calls.

Facts arrive as ``{"type": "<snake_case class name>", ...fields}``; commands
leave the same way. Only strings cross the Pyodide boundary, so the core can
move into a Web Worker unchanged. The bridge never raises into JavaScript: a
caller mistake, a malformed fact or an internal error comes back as ``log`` +
``emit error`` commands, and every other fact of the list still applies.
Anything that could be deeply nested (stored records, server replies) crosses
as a string the core parses with bounds (``_records.parse_json``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from . import _commands as c
from . import _facts as f
from ._config import Config
from ._errors import UsageError
from ._outbox import Outbox
from ._records import CorruptRecord, parse_json

# Facts nest a few levels (a list of facts > a fact > a consent object); what
# the page or a server controls arrives as strings. Anything deeper is refused
# before parsing (a deep parse can overflow Pyodide's stack).
MAX_FACTS_DEPTH = 8
MAX_OPTIONS_DEPTH = 8
MAX_OPTIONS_BYTES = 100_000


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_FACTS: dict[str, type[f.Fact]] = {snake_case(cls.__name__): cls for cls in f.ALL_FACTS}

# JSON types each annotation admits (facts use only these annotations).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int, float), "str": (str,), "bool": (bool,), "float": (int, float),
    "int | None": (int, float, type(None)), "str | None": (str, type(None)),
    "tuple[str, ...]": (list,), "tuple[dict[str, Any], ...]": (list,),
    "tuple[str, ...] | None": (list, type(None)),
    "dict[str, Any]": (dict,), "dict[str, int]": (dict,),
}


def fact_from_json(data: Any) -> f.Fact:
    """Build a fact from its JSON object.

    Raises:
        UsageError: unknown type, unknown or missing field, or a wrong type.
    """
    if not isinstance(data, dict):
        raise UsageError("a fact must be a JSON object")
    kind = data.get("type")
    cls = _FACTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise UsageError(f"unknown fact type {kind!r}")
    names = {fd.name for fd in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k != "type"}
    unknown = set(values) - names
    if unknown:
        raise UsageError(f"{kind}: unknown fields {sorted(unknown)}")
    if "now_ms" not in values:
        raise UsageError(f"{kind}: now_ms is required")
    for fd in dataclasses.fields(cls):
        if fd.name not in values:
            continue
        value = values[fd.name]
        allowed = _JSON_TYPES.get(str(fd.type))
        if allowed is not None and (not isinstance(value, allowed)
                                    or (isinstance(value, bool) and bool not in allowed)):
            raise UsageError(f"{kind}: {fd.name} must be {fd.type}, not {type(value).__name__}")
        if str(fd.type) in ("int", "int | None") and isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise UsageError(f"{kind}: {fd.name} must be a finite number")
            values[fd.name] = int(value)
        elif isinstance(value, list):
            values[fd.name] = tuple(value)
    return cls(**values)


def command_to_json(command: c.Command) -> dict[str, Any]:
    out = {"type": snake_case(type(command).__name__)}
    out.update({fd.name: getattr(command, fd.name) for fd in dataclasses.fields(command)})
    return out


class Bridge:
    """One outbox behind a JSON interface.

    The shim calls ``start(options_json)`` once, then ``handle(facts_json)``
    with a JSON list of facts; both return a JSON list of commands.
    """

    def __init__(self) -> None:
        self._outbox: Outbox | None = None

    def start(self, options_json: str) -> str:
        """Configure the outbox from ``revu.init`` options.

        Returns:
            ``{"ok": true, "options": {...checked}}`` or ``{"ok": false, "error": "..."}``.
        """
        try:
            if not isinstance(options_json, str):
                raise UsageError("options must be a JSON string")
            config = Config.from_options(parse_json(options_json, MAX_OPTIONS_DEPTH, MAX_OPTIONS_BYTES))
            self._outbox = Outbox(config)
            return json.dumps({"ok": True, "options": config.as_options()})
        except CorruptRecord as exc:
            return json.dumps({"ok": False, "error": f"init options are not usable JSON ({exc.reason}: {exc})"})
        except Exception as exc:  # noqa: BLE001 - never raise into JavaScript
            return json.dumps({"ok": False, "error": str(exc)[:500]}, ensure_ascii=True)

    def handle(self, facts_json: str) -> str:
        """Apply a JSON list of facts; return the JSON list of commands."""
        out: list[c.Command] = []
        try:
            if not isinstance(facts_json, str):
                raise UsageError("facts must be a JSON string")
            items = parse_json(facts_json, MAX_FACTS_DEPTH)
            if not isinstance(items, list):
                raise UsageError("facts must be a JSON list")
            if self._outbox is None:
                raise UsageError("start() must be called before handle()")
        except Exception as exc:  # noqa: BLE001 - never raise into JavaScript
            return _dumps(_refusal(exc))
        facts: list[f.Fact] = []
        for data in items:
            # One bad fact is reported and skipped; the others still apply.
            try:
                facts.append(fact_from_json(data))
            except Exception as exc:  # noqa: BLE001
                out.extend(_refusal(exc))
        try:
            out.extend(self._outbox.handle_all(facts))
        except UsageError as exc:
            # Restored out of place: refused as a whole, nothing applied. Apply
            # the others one by one so that only the misplaced one is lost.
            out.extend(_refusal(exc))
            for fact in facts:
                try:
                    out.extend(self._outbox.handle_all([fact]))
                except UsageError as one:
                    out.extend(_refusal(one))
        except Exception as exc:  # noqa: BLE001 - handle_all contains errors; this is the last line
            out.extend(_refusal(exc))
        return _dumps(out)


def _refusal(exc: Exception) -> list[c.Command]:
    message = f"revu core refused a fact: {str(exc)[:300]}"
    return [c.Log("error", message), c.Emit("error", {"code": "bad_fact", "message": message})]


def _dumps(commands: list[c.Command]) -> str:
    data = [command_to_json(cmd) for cmd in commands]
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
        pass
    try:
        # ASCII escapes carry what UTF-8 cannot (a lone surrogate) as valid JSON.
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)
    except Exception as exc:  # noqa: BLE001
        return json.dumps([command_to_json(cmd) for cmd in _refusal(exc)])
