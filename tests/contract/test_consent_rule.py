"""The consent rule is the same in the core and in the shim's capture gate."""

import json
import subprocess
from pathlib import Path

import pytest

from revu import UsageError
from revu._config import check_consent, consent_allows

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((Path(__file__).parent / "consent_cases.json").read_text())
BAD_STATES = ["maybe", "", None, 1, [], {}, {"analytics": "yes"}, {"": True}]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['state']}-{c['category']}")
def test_core_rule(case):
    assert consent_allows(case["state"], case["category"]) is case["allowed"]


def test_shim_rule_agrees_with_the_core():
    script = """
      import { consentAllows, consentProblem } from "./js_shim/consent.js";
      const [cases, bad] = JSON.parse(process.argv[1]);
      console.log(JSON.stringify({
        allowed: cases.map((c) => consentAllows(c.state, c.category)),
        problems: bad.map((s) => consentProblem(s) !== null),
        good: cases.map((c) => consentProblem(c.state) === null),
      }));
    """
    out = subprocess.run(["node", "--input-type=module", "-e", script, json.dumps([CASES, BAD_STATES])],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["allowed"] == [c["allowed"] for c in CASES]
    assert all(result["problems"]) and all(result["good"])
    for state in BAD_STATES:
        with pytest.raises(UsageError):
            check_consent(state)
