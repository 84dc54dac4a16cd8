"""Runs INSIDE Pyodide (Python 3.14) at build time, from scripts/core_build.mjs.

``imported_modules()`` lists the modules the interpreter has imported from files
(the stdlib zip and site-packages; built-in and frozen modules need no file), and
``write_zip()`` compiles exactly those to ``.pyc`` with this interpreter and writes
them to a zip stored without compression (the server compresses the whole file with
brotli, which beats per-member deflate, and nothing is inflated at import time).

The ``.pyc`` files are unchecked hash-based pycs (PEP 552): their bytes depend only
on the source, never on a timestamp, and the importer never looks for the source
(it is not shipped). The zip is deterministic: sorted members, fixed dates and
permissions, so an unchanged core gives a byte-identical zip and the same hashed
name, and browsers keep it cached across releases.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from importlib._bootstrap_external import _code_to_hash_pyc

STDLIB_ZIP = "/lib/python%d%d.zip" % sys.version_info[:2]
SITE_PACKAGES = "/lib/python%d.%d/site-packages" % sys.version_info[:2]


def import_static_imports(package_dir: str) -> str:
    """Import every absolute module an import statement of the package names, at any
    depth (a function-level import on a path the workout does not take would otherwise
    be missing from the trimmed zip). Uses only modules Pyodide has already imported
    (ast, os), so it adds nothing to the trace but what the core's code names.
    Returns JSON: the names imported."""
    import ast
    import importlib
    import os

    names = set()
    for root, _dirs, files in os.walk(package_dir):
        for file in files:
            if not file.endswith(".py"):
                continue
            with open(os.path.join(root, file), "rb") as f:
                tree = ast.parse(f.read(), file)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module)
                    # `from pkg import sub` may name a submodule.
                    names.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
    imported = []
    for name in sorted(names):
        if name == "__future__" or name.startswith("__future__."):
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            if name.rpartition(".")[0] in names:
                continue  # `from pkg import attr`: an attribute, not a module
            raise
        imported.append(name)
    return json.dumps(imported)


def imported_modules(names_json: str) -> str:
    """JSON list of [module name, source file, member path in the new zip] for the
    given module names (``sorted(sys.modules)`` taken before this file was run, so
    that what this file imports does not count)."""
    out = []
    for name in json.loads(names_json):
        module = sys.modules[name]
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None) if spec is not None else None
        # No file behind it: built in, frozen, or a JavaScript module (js, pyodide_js).
        if name == "__main__" or origin in (None, "built-in", "frozen", "javascript"):
            continue
        if origin.startswith(STDLIB_ZIP + "/"):
            inner = origin[len(STDLIB_ZIP) + 1:]
        elif origin.startswith(SITE_PACKAGES + "/"):
            inner = origin[len(SITE_PACKAGES) + 1:]
        else:
            raise RuntimeError(f"module {name} comes from {origin}, neither the stdlib zip nor site-packages")
        if not inner.endswith(".py"):
            raise RuntimeError(f"module {name} is not pure Python ({origin}); the trimmed zip can only hold .pyc")
        out.append([name, origin, inner[:-3] + ".pyc"])
    return json.dumps(out)


def _read_source(origin: str, stdlib: zipfile.ZipFile) -> bytes:
    if origin.startswith(STDLIB_ZIP + "/"):
        return stdlib.read(origin[len(STDLIB_ZIP) + 1:])
    with open(origin, "rb") as f:
        return f.read()


def write_zip(modules_json: str, out_path: str, optimize: int) -> str:
    """Compile the listed modules and write the zip. Returns JSON [[member, bytes], ...]."""
    modules = json.loads(modules_json)
    members = {}
    with zipfile.ZipFile(STDLIB_ZIP) as stdlib:
        for _name, origin, member in modules:
            source = _read_source(origin, stdlib)
            # Tracebacks name the file where the zip importer would have found the source.
            filename = f"{STDLIB_ZIP}/{member[:-4]}.py"
            code = compile(source, filename, "exec", dont_inherit=True, optimize=optimize)
            members[member] = bytes(_code_to_hash_pyc(code, importlib.util.source_hash(source), checked=False))
    sizes = []
    with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_STORED) as z:
        for member in sorted(members):
            info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            z.writestr(info, members[member])
            sizes.append([member, len(members[member])])
    return json.dumps(sizes)
