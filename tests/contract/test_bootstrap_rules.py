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


def test_capture_schema_version_matches_the_core():
    from revu import SCHEMA_VERSION

    source = (ROOT / "js_shim" / "capture.js").read_text()
    assert f"const SCHEMA_VERSION = {SCHEMA_VERSION};" in source
