"""The SDK comparison (bench/run.py) in its smallest form: one trial, tiny N.

A benchmark is not a test: nothing here looks at a time. This checks that the
suite still runs end to end and that every workload produced figures for
every SDK, so it cannot rot between full runs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.run import ALL_VARIANTS, SKIP  # noqa: E402

# workload -> (tags, variants it runs for; None = all but SKIP)
EXPECTED = {
    "startup": ([""], None),
    "enqueue": (["100"], None),
    "queued": (["300"], None),
    "survival": (["ingest", "device"], None),
    "survival_reference": (["ingest"], ["revu"]),
    "unload": (["close", "navigate"], None),
    "depth": ([""], ["revu"]),
    "ua_check": ([""], ["posthog-default"]),
}
# Figures every result of a workload must carry as a finite number.
NUMBERS = {
    "startup": ["cold.ready_ms", "cold.usable_ms", "cold.long_task_total_ms", "cold.transfer_bytes",
                "cached.ready_ms", "memory_init.js_heap_mib", "memory_init.renderer_private_mib"],
    "enqueue": ["sync_us_per_call", "main_thread_us_per_call", "renderer_cpu_us_per_call"],
    "queued": ["sync_us_per_call", "main_thread_us_per_call", "memory_queued.js_heap_mib",
               "memory_queued.renderer_private_mib", "drain.kept", "drain.posts", "drain.request_bytes"],
    "survival": ["sent", "unique", "duplicates"],
    "survival_reference": ["sent", "unique", "duplicates"],
    "unload": ["sent", "received", "duplicates"],
    "depth": ["before_ready.10.record_us", "before_ready.100.record_us", "after_ready.10.record_us",
              "after_ready.100.record_us"],
    "ua_check": ["sent", "received"],
}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_run_gives_figures_for_every_workload_and_sdk(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [json_path] = tmp_path.glob("*-quick.json")
    data = json.loads(json_path.read_text())
    assert (tmp_path / json_path.name.replace(".json", ".md")).read_text().startswith("## SDK comparison")

    by_key = {(r["workload"], r["variant"], r["tag"]): r for r in data["results"]}
    for workload, (tags, only) in EXPECTED.items():
        variants = only or [v for v in ALL_VARIANTS if (workload, v) not in SKIP]
        for variant in variants:
            for tag in tags:
                result = by_key.get((workload, variant, tag))
                assert result is not None, f"no result for {workload}/{variant}/{tag}"
                assert not result.get("error"), f"{workload}/{variant}/{tag}: {result.get('error')}"
                figures = result["figures"]
                for name in NUMBERS[workload]:
                    assert _finite(figures.get(name)), f"{workload}/{variant}/{tag}: {name} = {figures.get(name)!r}"

    # Events reached the sink where every SDK delivers them: online, after a drain.
    for variant in ALL_VARIANTS:
        assert by_key[("queued", variant, "300")]["figures"]["drain.kept"] > 0, variant
    # Start-up loaded something over the wire for every SDK.
    for variant in ALL_VARIANTS:
        if ("startup", variant) not in SKIP:
            assert by_key[("startup", variant, "")]["figures"]["cold.transfer_bytes"] > 0, variant
    # revu keeps its promise in the bench too (the e2e suite proves it in depth).
    for tag in ("ingest", "device"):
        figures = by_key[("survival", "revu", tag)]["figures"]
        assert figures["unique"] == figures["sent"], (tag, figures)
    ref = by_key[("survival_reference", "revu", "ingest")]["figures"]
    assert ref["unique"] == ref["sent"], ref
    for tag in ("close", "navigate"):
        figures = by_key[("unload", "revu", tag)]["figures"]
        assert figures["received"] == figures["sent"], (tag, figures)
    # Nothing was fetched from anywhere but the local servers (no CDN, no remote config).
    assert data["meta"]["non_local_requests"] == []
    assert data["meta"]["sink_problems"] == {"unknown": [], "undecoded": []}
