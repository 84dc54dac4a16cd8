"""JSON in, JSON out: the only surface the shim calls.

Facts arrive as ``{"type": "<snake_case class name>", ...fields}``; commands
leave the same way. Only strings cross the Pyodide boundary, so the core can
move into a Web Worker unchanged (DESIGN.md). The bridge never raises into
JavaScript: a caller mistake comes back as ``log`` + ``emit error`` commands.
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


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_FACTS: dict[str, type[f.Fact]] = {snake_case(cls.__name__): cls for cls in f.ALL_FACTS}

# JSON types each annotation admits (facts use only these annotations).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int, float), "str": (str,), "bool": (bool,), "float": (int, float),
    "int | None": (int, float, type(None)), "str | None": (str, type(None)),
    "tuple[str, ...]": (list,), "tuple[dict[str, Any], ...]": (list,),
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
            config = Config.from_options(json.loads(options_json))
        except (UsageError, ValueError, TypeError) as exc:
            return json.dumps({"ok": False, "error": str(exc)})
        self._outbox = Outbox(config)
        return json.dumps({"ok": True, "options": config.as_options()})

    def handle(self, facts_json: str) -> str:
        """Apply a JSON list of facts; return the JSON list of commands."""
        out: list[c.Command] = []
        try:
            items = json.loads(facts_json)
            if not isinstance(items, list):
                raise UsageError("facts must be a JSON list")
            if self._outbox is None:
                raise UsageError("start() must be called before handle()")
        except (UsageError, ValueError) as exc:
            return _dumps(_refusal(exc))
        facts: list[f.Fact] = []
        for data in items:
            # One bad fact is reported and skipped; the others still apply.
            try:
                facts.append(fact_from_json(data))
            except (UsageError, TypeError) as exc:
                out.extend(_refusal(exc))
        try:
            out.extend(self._outbox.handle_all(facts))
        except UsageError as exc:
            out.extend(_refusal(exc))
        return _dumps(out)


def _refusal(exc: Exception) -> list[c.Command]:
    message = f"revu core refused a fact: {exc}"
    return [c.Log("error", message), c.Emit("error", {"code": "bad_fact", "message": message})]


def _dumps(commands: list[c.Command]) -> str:
    return json.dumps([command_to_json(cmd) for cmd in commands], separators=(",", ":"), ensure_ascii=False)
