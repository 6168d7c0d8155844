"""Prometheus metrics of one service instance, in their own registry (two apps in one process never collide)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)


class Metrics:
    """Request counts and latencies per route, batch sizes and durations, queue depth, readiness, prefix cache."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("unspoken_http_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=r)
        self.latency = Histogram("unspoken_http_request_duration_seconds", "HTTP request latency by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("unspoken_batch_size", "Items per scored batch", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.batch_seconds = Histogram("unspoken_batch_duration_seconds", "Time to score one batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.items = Counter("unspoken_scored_items", "Items (content + criteria) scored", registry=r)
        self.queue_depth = Gauge("unspoken_queue_depth", "Items waiting to be scored", registry=r)
        self.ready = Gauge("unspoken_ready", "1 once the bundle is loaded and requests are scored", registry=r)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.items.inc(size)

    def track_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def track_prefix_cache(self, info: Callable[[], object]) -> None:
        """Hits, misses, entries and bytes of the classifier's prefix cache (all 0 while it is off)."""
        for field, text in (("hits", "Prefix-cache lookups that skipped a prefill"),
                            ("misses", "Prefix-cache lookups that prefilled the content"),
                            ("entries", "Contents whose KV the prefix cache holds"),
                            ("bytes", "Bytes of KV the prefix cache holds")):
            gauge = Gauge(f"unspoken_prefix_cache_{field}", text, registry=self.registry)
            gauge.set_function(lambda field=field: float(getattr(info(), field, 0) or 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
