"""Prometheus metrics, correct across gunicorn workers (the client's multiprocess mode).

With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py does it), each worker writes its
samples to files there and /metrics adds them up; without it, one process keeps them.
"""

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client import multiprocess as _multiprocess

from logging_ext.setup import current_pid

# Where Prometheus scrapes (middleware/metrics.py serves it).
METRICS_PATH = "/metrics"

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # The client asks the OS for its pid on every sample (to notice a fork); ours is
    # kept current by a fork hook, the client's documented way to say who we are.
    values.ValueClass = values.MultiProcessValue(process_identifier=current_pid)  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered.", ["operation", "method", "status"]
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request to the end of the response.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "http_requests_in_flight", "Requests being answered now.", multiprocess_mode="livesum"
)
# Rate limits (middleware/rate_limits.py): the shared store failing, and what was decided
# without it.
RATE_LIMIT_STORE_ERRORS = Counter(
    "rate_limit_store_errors_total",
    "Calls to the shared rate-limit store (RATE_LIMIT_STORAGE) that failed or timed out.",
)
RATE_LIMITED_LOCALLY = Counter(
    "rate_limit_local_decisions_total",
    "Requests counted by the worker alone because the shared rate-limit store failed.",
    ["policy"],
)


# Each label set's children, found once: labels() takes a lock and builds its key on
# every call. The sets are few and bounded (operations x known methods x statuses).
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def count_request(operation: str, method: str, status: int, seconds: float) -> None:
    """One answered request: its count by operation, method and status, and its time."""
    key = (operation, method, status)
    children = _request_children.get(key)
    if children is None:
        children = (REQUESTS.labels(operation, method, str(status)), LATENCY.labels(operation))
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (gunicorn's child_exit hook)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
