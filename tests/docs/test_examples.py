"""Docs that run: every code example in README.md and docs/*.md is executed
here, so an example that does not work fails the test command.

How each fenced block is run, by its language:

- ``html``: a whole page. Served on the test site's origin with ``dist/`` at
  ``/revu/``; the example's ingest host (``https://ingest.example.com``) is
  replaced by the local reference server. Passes when the page throws nothing,
  ``revu.ready`` resolves, and every event it recorded reaches the server.
- ``js``: statements run in a page that has ``revu`` loaded and initialised
  against the local server (wrapped in an async function, so ``await`` works).
  Passes when they throw nothing and revu reported no error.
- ``python``: run with this interpreter in a fresh process, the host replaced
  likewise. Passes when it exits 0.
- ``sh`` / ``console``: each command is checked, not run (they install
  software or run for ever): ``./dev <cmd>`` must be a command ``./dev`` has,
  ``npm run <script>`` a script in package.json, and every path they name must
  exist.
- Anything else (``text``, ``json``, ``nginx``, ``http``, ``ts``...) is data,
  not code, and is listed but not run (``ts`` is checked by ``tsc`` elsewhere).

A block preceded by ``<!-- example: skip REASON -->`` is not run; the reason
must be given.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
HOST = "https://ingest.example.com"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent> {0,3})```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
SKIP = re.compile(r"<!--\s*example:\s*skip\s+(?P<why>[^>]+?)\s*-->\s*$")
RUN = {"html", "js", "javascript", "python", "py", "sh", "bash", "console", "shell"}


def _blocks():
    out = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            lang = (match.group("info").strip().split() or [""])[0].lower()
            before = text[: match.start()].rstrip().splitlines()[-1:] or [""]
            skip = SKIP.search(before[0])
            line = text.count("\n", 0, match.start()) + 1
            out.append(pytest.param(lang, match.group("body"), skip.group("why") if skip else None,
                                    id=f"{path.relative_to(ROOT)}:{line}:{lang or 'plain'}"))
    return out


BLOCKS = _blocks()


def test_there_are_examples_and_every_code_block_says_its_language():
    assert len(BLOCKS) >= 10
    unlabeled = [b.id for b in BLOCKS if not b.values[0]]
    assert not unlabeled, f"fenced blocks without a language: {unlabeled}"


def _dev_commands() -> set[str]:
    text = (ROOT / "dev").read_text()
    return set(re.findall(r"^\s{2}([a-z][a-z|-]*)\)", text, re.M)) | {"help"}


def _check_command(line: str) -> None:
    words = shlex.split(line, comments=True)
    if not words:
        return
    if words[0] == "./dev":
        commands = {c for group in _dev_commands() for c in group.split("|")}
        assert len(words) == 1 or words[1] in commands, f"./dev has no command {words[1]!r}"
    elif words[:2] == ["npm", "run"]:
        scripts = json.loads((ROOT / "package.json").read_text()).get("scripts", {})
        assert words[2] in scripts, f"package.json has no script {words[2]!r}"
    for word in words[1:]:
        if re.match(r"^(\./|docs/|scripts/|bench/|demo/|js_shim/|py_src/|tests/|ingest/)[\w./-]+$", word):
            assert (ROOT / word.split(":")[0]).exists(), f"{word} does not exist"


@pytest.mark.parametrize(("lang", "body", "skip"), BLOCKS)
def test_example_runs(lang, body, skip, request):
    if skip:
        pytest.skip(f"not run: {skip}")
    if lang not in RUN:
        return  # data, not code (see the module docstring)
    if lang in ("sh", "bash", "console", "shell"):
        for line in body.replace("\\\n", " ").splitlines():
            _check_command(line.removeprefix("$ ").strip())
        return
    ingest = request.getfixturevalue("example_ingest")
    if lang in ("python", "py"):
        code = body.replace(HOST, ingest.url)
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "py_src")})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return
    page = request.getfixturevalue("example_page")
    if lang == "html":
        page.run_html(body.replace(HOST, ingest.url))
    else:
        page.run_js(body.replace(HOST, ingest.url))
