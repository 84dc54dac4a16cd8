"""Runtimes: the only Python that does I/O. One module per runtime, each an
adapter around the same sans-I/O core (``revu.Outbox``).

- ``revu.runtimes.cpython``: CPython processes (SQLite store, ``http.client``
  transport, a background sender thread). ``from revu.runtimes import cpython as revu``.
- ``revu.runtimes.pyodide``: a page written in Python under Pyodide.

Nothing is imported here: ``import revu`` in the browser must not pull in
``sqlite3``, ``urllib`` or ``threading`` (the browser wheel's trimmed stdlib
is traced from the core's imports).
"""
