"""The shim's first-visit rules are the core's defaults.

Before Pyodide has ever run on an origin, the shim captures and beacons by
``js_shim/bootstrap_rules.json``; afterwards by what the core published. The
two must agree, or a first visit would behave differently from later ones.
(CPython only: the Pyodide runs copy tests/core alone.)
"""

import json
from pathlib import Path

from revu import Config

ROOT = Path(__file__).resolve().parents[2]


def test_bootstrap_rules_equal_the_core_defaults():
    shim = json.loads((ROOT / "js_shim" / "bootstrap_rules.json").read_text())
    assert shim == Config.from_options({"apiKey": "any"}).rules()


def test_the_shim_reads_the_schema_versions_the_core_reads():
    from revu._records import MAX_RECORD_BYTES, MAX_RECORD_DEPTH, SCHEMA_VERSION, _known_versions

    source = (ROOT / "js_shim" / "records.js").read_text()
    assert f"export const SCHEMA_VERSION = {SCHEMA_VERSION};" in source
    assert f"export const SCHEMA_VERSIONS = {_known_versions()};" in source
    assert f"export const MAX_RECORD_BYTES = {MAX_RECORD_BYTES};" in source
    assert f"export const MAX_RECORD_DEPTH = {MAX_RECORD_DEPTH};" in source
