"""Prometheus metrics (prometheus-client), one registry per app.

With ``--workers N`` on one port, ``serve`` points PROMETHEUS_MULTIPROC_DIR
at a private directory before the workers start, and ``/metrics`` sums every
worker's values (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 (re-exported)

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "revu_ingest_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "revu_ingest_request_duration_seconds", "Time from request start to reply written, by route",
            ["route"], buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.events_received = Counter(
            "revu_ingest_events_received", "Valid envelopes in stored batches (new and duplicate)", registry=r
        )
        self.events_stored = Counter("revu_ingest_events_stored", "New events stored (after dedupe)", registry=r)
        self.events_duplicate = Counter(
            "revu_ingest_events_duplicate", "Envelopes already stored when received (dedupe on event_id)", registry=r
        )
        self.events_rejected = Counter(
            "revu_ingest_events_rejected", "Envelopes rejected alone in a 2xx reply, by code", ["code"], registry=r
        )
        self.requests_rejected = Counter(
            "revu_ingest_requests_rejected", "Requests refused as a whole (nothing stored), by code", ["code"],
            registry=r,
        )
        self.mutations = Counter(
            "revu_ingest_mutations", "Chat mutation requests processed, by effect", ["effect"], registry=r
        )
        self.wire_bytes = Counter(
            "revu_ingest_request_wire_bytes", "Event request body bytes as received, by Content-Encoding",
            ["encoding"], registry=r,
        )

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
