"""Results of an SDK comparison run: aggregation over trials and the Markdown
tables (bench/RESULTS.md "## SDK comparison", the headline table)."""

from __future__ import annotations

import statistics
from typing import Any

PEERS = ("posthog", "posthog-default", "segment", "amplitude", "mixpanel")
HEADLINE_PEERS = ("posthog", "segment", "amplitude", "mixpanel")
ORDER = ("revu",) + PEERS


def group_key(result: dict[str, Any]) -> tuple[str, str, str]:
    return result["workload"], result["variant"], str(result.get("tag", ""))


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """{workload: {variant: {tag: {metric: stats}}}} over the trials.

    Numbers get {median, min, max, n}; other values the list of distinct
    values seen; crashes and errors are counted."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(group_key(r), []).append(r)
    out: dict[str, Any] = {}
    for (workload, variant, tag), rs in groups.items():
        metrics: dict[str, Any] = {"trials": len(rs),
                                   "crashed": sum(1 for r in rs if r.get("crashed")),
                                   "errors": [r["error"] for r in rs if r.get("error")]}
        keys: list[str] = []
        for r in rs:
            for k in r.get("figures", {}):
                if k not in keys:
                    keys.append(k)
        for k in keys:
            values = [r["figures"][k] for r in rs if k in r.get("figures", {})]
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if numbers and len(numbers) == len([v for v in values if v is not None]):
                metrics[k] = {"median": statistics.median(numbers), "min": min(numbers), "max": max(numbers),
                              "n": len(numbers)}
            else:
                distinct: list[Any] = []
                for v in values:
                    if v not in distinct:
                        distinct.append(v)
                metrics[k] = {"values": distinct}
        out.setdefault(workload, {}).setdefault(variant, {})[tag] = metrics
    return out


# ----------------------------------------------------------------------------- formatting


def _get(summary: dict[str, Any], workload: str, variant: str, tag: str, metric: str) -> dict[str, Any] | None:
    return summary.get(workload, {}).get(variant, {}).get(tag, {}).get(metric)


def fmt_num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "–"
    if abs(v) >= 100 or digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def cell(stat: dict[str, Any] | None, digits: int = 0, scale: float = 1.0, spread: bool = True) -> str:
    """"median (min–max)" of a metric, or its distinct values."""
    if not stat:
        return "–"
    if "median" not in stat:
        vals = [v for v in stat.get("values", []) if v is not None]
        return ", ".join(str(v) for v in vals) if vals else "–"
    med, lo, hi = stat["median"] * scale, stat["min"] * scale, stat["max"] * scale
    text = fmt_num(med, digits)
    if spread and stat["n"] > 1 and fmt_num(lo, digits) != fmt_num(hi, digits):
        text += f" ({fmt_num(lo, digits)}–{fmt_num(hi, digits)})"
    return text


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _variants(summary: dict[str, Any], workload: str) -> list[str]:
    present = summary.get(workload, {})
    return [v for v in ORDER if v in present]


def _tags(summary: dict[str, Any], workload: str, variant: str) -> list[str]:
    tags = list(summary.get(workload, {}).get(variant, {}))
    return sorted(tags, key=lambda t: (len(t), t))


def _crash_note(summary: dict[str, Any], workload: str, variant: str, tag: str) -> str:
    g = summary.get(workload, {}).get(variant, {}).get(tag, {})
    notes = []
    if g.get("crashed"):
        notes.append(f"renderer crashed in {g['crashed']} of {g['trials']} trials")
    if g.get("errors"):
        notes.append(f"{len(g['errors'])} failed: {g['errors'][0][:80]}")
    return "; ".join(notes)


def tables(summary: dict[str, Any]) -> str:
    """Every workload's table, in Markdown."""
    parts: list[str] = []

    # Enqueue ------------------------------------------------------------------
    rows = []
    for workload in ("enqueue", "queued"):
        for v in _variants(summary, workload):
            for tag in _tags(summary, workload, v):
                g = lambda m: _get(summary, workload, v, tag, m)  # noqa: E731
                note = _crash_note(summary, workload, v, tag)
                settled = g("settled")
                unsettled = settled and "values" in settled and False in settled["values"]
                rows.append([v, f"{int(tag):,}", cell(g("sync_us_per_call"), 1), cell(g("main_thread_us_per_call"), 1),
                             cell(g("renderer_cpu_us_per_call"), 1), cell(g("settle_s"), 1) + (" (not idle)" if unsettled else ""),
                             note or ""])
    if rows:
        parts.append("### Enqueue: µs per call, offline (device)\n\n" + _table(
            ["SDK", "calls", "track() µs/call (sync loop)", "main-thread µs/call incl. deferred work",
             "renderer CPU µs/call (all threads)", "s until main thread idle", "notes"], rows))

    # Depth ---------------------------------------------------------------------
    if "depth" in summary:
        rows = []
        tag = _tags(summary, "depth", "revu")[0]
        depths = sorted({int(k.split(".")[1]) for k in summary["depth"]["revu"][tag] if k.startswith("before_ready.")})
        for d in depths:
            g = lambda m: _get(summary, "depth", "revu", tag, m)  # noqa: E731
            rows.append([f"{d:,}", cell(g(f"before_ready.{d}.record_us"), 1), cell(g(f"before_ready.{d}.queued")),
                         cell(g(f"before_ready.{d}.core_ready")), cell(g(f"after_ready.{d}.record_us"), 1),
                         cell(g(f"after_ready.{d}.queued")), cell(g(f"before_ready.{d}.setitem_floor_us"), 1)])
        parts.append("### revu only: record() µs per call at queue depth\n\n" + _table(
            ["depth", "before ready", "queued (before)", "core ready?", "after ready", "queued (after)",
             "localStorage.setItem floor"], rows))

    # Start-up ------------------------------------------------------------------
    if "startup" in summary:
        rows = []
        for v in _variants(summary, "startup"):
            g = lambda m: _get(summary, "startup", v, "", m)  # noqa: E731
            rows.append([v, cell(g("cold.usable_ms")), cell(g("cold.ready_ms")), cell(g("cached.ready_ms")),
                         cell(g("cold.longest_task_ms")), cell(g("cold.long_task_total_ms")),
                         cell(g("cached.longest_task_ms")), cell(g("cached.long_task_total_ms")),
                         cell(g("cold.transfer_bytes"), 1, 1 / 1024), cell(g("cold.uncompressed_bytes"), 1, 1 / 1024),
                         cell(g("cold.requests")), cell(g("cached.transfer_bytes"), 1, 1 / 1024)])
        parts.append("### Start-up (ms from navigation; long tasks in the first 10 s; KiB as served)\n\n" + _table(
            ["SDK", "API usable, cold", "ready, cold", "ready, cached", "longest task, cold",
             "long tasks total, cold", "longest task, cached", "long tasks total, cached",
             "KiB transferred, cold", "KiB uncompressed", "requests", "KiB transferred, cached"], rows))

    # Memory --------------------------------------------------------------------
    rows = []
    for v in ORDER:
        init = summary.get("startup", {}).get(v, {}).get("")
        queued_tags = _tags(summary, "queued", v) if v in summary.get("queued", {}) else []
        if not init and not queued_tags:
            continue
        base = [v, cell(_get(summary, "startup", v, "", "memory_init.js_heap_mib"), 1),
                cell(_get(summary, "startup", v, "", "memory_init.renderer_private_mib"), 1)]
        if not queued_tags:
            rows.append(base + ["–", "–", "–"])
        for tag in queued_tags:
            crashed = _crash_note(summary, "queued", v, tag)
            rows.append(base + [f"{int(tag):,}", cell(_get(summary, "queued", v, tag, "memory_queued.js_heap_mib"), 1),
                                cell(_get(summary, "queued", v, tag, "memory_queued.renderer_private_mib"), 1)
                                + (f" ({crashed})" if crashed else "")])
    if rows:
        parts.append("### Memory (MiB, after a full GC)\n\n" + _table(
            ["SDK", "JS heap after init", "renderer private after init", "queued", "JS heap, queued",
             "renderer private, queued"], rows))

    # Survival ------------------------------------------------------------------
    rows = []
    for v in _variants(summary, "survival"):
        cells = [v]
        for mode in ("ingest", "device"):
            g = lambda m: _get(summary, "survival", v, mode, m)  # noqa: E731
            cells += [cell(g("unique")), cell(g("duplicates")), cell(g("time_to_last_s"), 1)]
        sent = _get(summary, "survival", v, "device", "sent") or _get(summary, "survival", v, "ingest", "sent")
        cells.insert(1, cell(sent))
        rows.append(cells)
    if "survival_reference" in summary:
        g = lambda m: _get(summary, "survival_reference", "revu", "ingest", m)  # noqa: E731
        rows.append(["revu via the reference server", cell(g("sent")), cell(g("unique")), cell(g("duplicates")),
                     cell(g("time_to_all_s"), 1), "–", "–", "–"])
    if rows:
        parts.append("### Survival: events recorded offline, reload 1 s later, then online\n\n" + _table(
            ["SDK", "sent", "ingest down: unique", "dupl.", "s to last", "device offline: unique", "dupl.",
             "s to last"], rows))

    # Drain ---------------------------------------------------------------------
    rows = []
    for v in _variants(summary, "queued"):
        for tag in _tags(summary, "queued", v):
            g = lambda m: _get(summary, "queued", v, tag, m)  # noqa: E731
            note = _crash_note(summary, "queued", v, tag)
            rows.append([v, f"{int(tag):,}", cell(g("drain.kept")), cell(g("drain.duplicates")),
                         cell(g("drain.time_to_last_s"), 1), cell(g("drain.posts")),
                         cell(g("drain.request_bytes"), 1, 1 / 1024), cell(g("drain.max_events_per_post")),
                         cell(g("drain.main_thread_ms")), cell(g("drain.settled_by")), note])
    if rows:
        parts.append("### Drain: events queued offline (device), then online\n\n" + _table(
            ["SDK", "queued", "kept (unique received)", "dupl.", "s to last event", "POSTs", "KiB sent",
             "max events/POST", "main-thread ms while draining", "stopped by", "notes"], rows))

    # Unload --------------------------------------------------------------------
    rows = []
    for v in _variants(summary, "unload"):
        g = lambda mode, m: _get(summary, "unload", v, mode, m)  # noqa: E731
        rows.append([v, cell(g("close", "sent")), cell(g("close", "received")), cell(g("close", "duplicates")),
                     cell(g("navigate", "received")), cell(g("navigate", "duplicates"))])
    if rows:
        parts.append("### Unload: events recorded, then at once the tab closes / navigates away "
                     "(received within 10 s)\n\n" + _table(
                         ["SDK", "sent", "tab closed: received", "dupl.", "navigated away: received", "dupl."], rows))

    # Bot check -----------------------------------------------------------------
    rows = []
    for v in _variants(summary, "ua_check"):
        g = lambda m: _get(summary, "ua_check", v, "", m)  # noqa: E731
        rows.append([v, cell(g("sent")), cell(g("received"))])
    if rows:
        parts.append("### Under Chromium's own `HeadlessChrome` user agent and `navigator.webdriver`\n\n"
                     + _table(["SDK", "sent online", "received"], rows))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- headline


def _ratio(revu: float | None, peer: float | None, digits: int = 0, unit: str = "") -> str:
    if revu is None or peer is None:
        return "–"
    if peer == 0 or revu == 0:
        return f"{fmt_num(revu, digits)}{unit} vs {fmt_num(peer, digits)}{unit}"
    return f"×{revu / peer:,.2f}" if revu / peer < 10 else f"×{revu / peer:,.0f}"


def _med(summary: dict[str, Any], workload: str, variant: str, tag: str, metric: str) -> float | None:
    stat = _get(summary, workload, variant, tag, metric)
    return stat.get("median") if stat and "median" in stat else None


def headline(summary: dict[str, Any], params: dict[str, Any]) -> str:
    """revu against each peer: a ratio revu ÷ peer (lower is better for revu
    unless said otherwise), or "revu vs peer" for counts."""
    small = str(min(params["enqueue_ns"]))
    big = str(max(params["enqueue_ns"]))
    rows: list[list[str]] = []

    def ratio_row(label: str, workload: str, tag: str, metric: str, digits: int = 0, unit: str = "") -> None:
        revu = _med(summary, workload, "revu", tag, metric)
        row = [label, fmt_num(revu, digits) + unit if revu is not None else "–"]
        for peer in HEADLINE_PEERS:
            peer_tag = tag
            if _med(summary, workload, peer, tag, metric) is None and workload == "queued":
                # Crashed at this size: compare with its run at the fallback size.
                fallback = [t for t in _tags(summary, workload, peer) if _med(summary, workload, peer, t, metric) is not None]
                peer_tag = fallback[0] if fallback else tag
            if peer_tag != tag:
                # Compare like with like: revu's run at the same size, if there is one.
                text = f"crashed at {int(tag):,}; at {int(peer_tag):,}: " + _ratio(
                    _med(summary, workload, "revu", peer_tag, metric), _med(summary, workload, peer, peer_tag, metric),
                    digits, unit)
            else:
                text = _ratio(revu, _med(summary, workload, peer, peer_tag, metric), digits, unit)
            settled = _get(summary, workload, peer, peer_tag, "settled")
            if metric == "main_thread_us_per_call" and settled and False in settled.get("values", []):
                text += " *"
            row.append(text)
        rows.append(row)

    def count_row(label: str, workload: str, tag: str, metric: str) -> None:
        revu = _med(summary, workload, "revu", tag, metric)
        row = [label, fmt_num(revu)]
        for peer in HEADLINE_PEERS:
            value = _med(summary, workload, peer, tag, metric)
            crashed = summary.get(workload, {}).get(peer, {}).get(tag, {}).get("crashed")
            row.append("crashed" if value is None and crashed else fmt_num(value))
        rows.append(row)

    ratio_row(f"track() µs/call, {int(small):,} calls (sync)", "enqueue", small, "sync_us_per_call", 1)
    ratio_row(f"main-thread µs/call incl. deferred work, {int(small):,} calls", "enqueue", small,
              "main_thread_us_per_call", 1)
    ratio_row(f"main-thread µs/call incl. deferred work, {int(big):,} calls", "queued", big,
              "main_thread_us_per_call", 1)
    ratio_row("ms from navigation to ready, cold", "startup", "", "cold.ready_ms")
    ratio_row("ms from navigation to ready, HTTP cache", "startup", "", "cached.ready_ms")
    ratio_row("long-task ms in the first 10 s, cold", "startup", "", "cold.long_task_total_ms")
    ratio_row("KiB transferred at start-up (compressed)", "startup", "", "cold.transfer_bytes", 0)
    ratio_row("renderer private MiB after init", "startup", "", "memory_init.renderer_private_mib", 1)
    ratio_row(f"renderer private MiB with {int(big):,} queued", "queued", big, "memory_queued.renderer_private_mib", 1)
    ratio_row(f"s from online to the last of {int(big):,} events", "queued", big, "drain.time_to_last_s", 1)
    ratio_row(f"KiB sent to deliver {int(big):,} events", "queued", big, "drain.request_bytes")
    count_row(f"events kept of {int(big):,} queued offline (higher is better)", "queued", big, "drain.kept")
    count_row(f"survival, ingest down: events kept of {params['survival_n']} (higher is better)", "survival",
              "ingest", "unique")
    count_row(f"survival, device offline: events kept of {params['survival_n']} (higher is better)", "survival",
              "device", "unique")
    count_row(f"tab closed: events received of {params['unload_n']} (higher is better)", "unload", "close",
              "received")
    count_row("tab closed: duplicates received (lower is better)", "unload", "close", "duplicates")
    # KiB rows hold bytes: show revu's in KiB (the ratios are unit-free).
    for row in rows:
        if row[0].startswith("KiB transferred"):
            revu = _med(summary, "startup", "revu", "", "cold.transfer_bytes")
        elif row[0].startswith("KiB sent"):
            revu = _med(summary, "queued", "revu", big, "drain.request_bytes")
        else:
            continue
        row[1] = fmt_num(revu / 1024) if revu is not None else "–"
    table = _table(["metric (medians)", "revu"] + [f"revu ÷ {p}" for p in HEADLINE_PEERS], rows)
    return table + ("\n\nRatios: revu's figure divided by the peer's (below 1: revu is cheaper or faster). "
                    "\\* the peer's main thread was not idle 20 s after the calls, so its figure is a lower "
                    "bound and the ratio an upper bound.")
