"""revu demo: reference ingest server, static page server and the demo page.

Import as ``demo.ingest_server`` / ``demo.static_server`` with the repository
root on ``sys.path``. Standard library only; nothing here is part of the SDK.
"""
