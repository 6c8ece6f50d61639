"""Prometheus metrics of the hean operator (catalogue: docs/metrics.md).

Served by prometheus-client's own HTTP server on ``HEAN_METRICS_PORT`` (default
8080; kopf's liveness endpoint has 8081) bound to ``HEAN_POD_IP`` (the chart passes
it; on the local harness every pod has its own loopback address), or
``HEAN_METRICS_ADDRESS`` if set. ``HEAN_METRICS_PORT=0`` disables the endpoint.

Only bounded labels: ``kind`` (the reconciled kind: ``TradingStrategy``,
``RiskPolicy`` — the status roll-up pass that also serves SymbolQuarantines — and
``Resync`` for the periodic loop itself) and ``phase`` (a Pod phase). Never a
namespace/name of an object, never anything from a Secret.

Handlers record through :func:`timed` (a decorator: count, duration, error and
last-success time of one reconcile) and :func:`record_error` (errors a handler
catches itself). Gauges that describe the operator's caches (workers by phase,
backlog, cached objects) are read from the :class:`OperatorState` at scrape time.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:  # pragma: no cover
    from .handlers import OperatorState

log = logging.getLogger("hean.operator.metrics")

KINDS = ("TradingStrategy", "RiskPolicy", "Resync")
POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
DEFAULT_PORT = 8080

disable_created_metrics()  # no *_created series: they double the series count and no rule uses them
REGISTRY = CollectorRegistry(auto_describe=True)
RECONCILES = Counter("hean_operator_reconciles", "Reconcile passes, by reconciled kind", ["kind"], registry=REGISTRY)
ERRORS = Counter("hean_operator_reconcile_errors", "Reconcile passes that hit an error, by kind", ["kind"],
                 registry=REGISTRY)
DURATION = Histogram("hean_operator_reconcile_duration_seconds", "Duration of one reconcile pass, by kind", ["kind"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
                     registry=REGISTRY)
LAST_SUCCESS = Gauge("hean_operator_last_successful_reconcile_timestamp_seconds",
                     "Unix time of the last reconcile pass without error, by kind", ["kind"], registry=REGISTRY)
STARTED = Gauge("hean_operator_start_timestamp_seconds", "Unix time the operator process started", registry=REGISTRY)
for _k in KINDS:  # export every series from the start (absent series break rate() and alerts)
    ERRORS.labels(_k)
    if _k != "Resync":  # the loop itself only reports errors; its passes are the kinds above
        RECONCILES.labels(_k)
        DURATION.labels(_k)
        # "no success yet" counts from the process start (HeanOperatorNotReconciling)
        LAST_SUCCESS.labels(_k).set(time.time())
STARTED.set(time.time())
_error_counts: dict[str, int] = dict.fromkeys(KINDS, 0)


class StateCollector:
    """Gauges read from the operator's caches at scrape time."""

    def __init__(self) -> None:
        self.state: "OperatorState | None" = None

    def collect(self):
        up = GaugeMetricFamily("hean_operator_up", "1 once the operator has started and holds its caches")
        up.add_metric([], 0.0 if self.state is None else 1.0)
        yield up
        st = self.state
        phases = dict.fromkeys(POD_PHASES, 0)
        strategies = policies = quarantines = backlog = 0
        if st is not None:
            # list() of a dict's values is one C call under the GIL: safe while the
            # event loop thread mutates the dict.
            for pod in list(st.pods.values()):
                phase = ((pod or {}).get("status") or {}).get("phase") or "Unknown"
                phases[phase if phase in phases else "Unknown"] += 1
            strategies, policies, quarantines = len(st.strategies), len(st.policies), len(st.quarantines)
            backlog = len(st.scheduled)
        w = GaugeMetricFamily("hean_operator_workers", "Worker pods the operator sees, by pod phase", labels=["phase"])
        for p, n in phases.items():
            w.add_metric([p], float(n))
        yield w
        b = GaugeMetricFamily("hean_operator_reconcile_backlog",
                              "Strategies with a reconcile scheduled but not yet run (the work queue)")
        b.add_metric([], float(backlog))
        yield b
        o = GaugeMetricFamily("hean_operator_objects", "Custom resources in the operator's caches, by kind",
                              labels=["kind"])
        o.add_metric(["TradingStrategy"], float(strategies))
        o.add_metric(["RiskPolicy"], float(policies))
        o.add_metric(["SymbolQuarantine"], float(quarantines))
        yield o


COLLECTOR = StateCollector()
REGISTRY.register(COLLECTOR)


def attach(state: "OperatorState") -> None:
    """Let the scrape-time gauges read ``state``."""
    COLLECTOR.state = state


def record_error(kind: str) -> None:
    """Count an error a handler caught itself (the pass is then not a success)."""
    if kind not in KINDS:
        raise ValueError(f"unknown reconcile kind {kind!r}; expected one of {KINDS}")
    _error_counts[kind] += 1
    ERRORS.labels(kind).inc()


def timed(kind: str) -> Callable:
    """Decorate an ``async def f(state, ...)`` reconcile pass: counts it, times it, and
    sets the last-success time unless it raised or an error of this kind was
    recorded with :func:`record_error` during the call (concurrent passes of the same
    kind that overlap an error are conservatively not successes either)."""
    if kind not in KINDS:
        raise ValueError(f"unknown reconcile kind {kind!r}; expected one of {KINDS}")

    # labelled children resolved once (a label lookup per pass costs ~20 % of an idle
    # reconcile at 1,000 strategies)
    reconciles, duration, last_success = RECONCILES.labels(kind), DURATION.labels(kind), LAST_SUCCESS.labels(kind)

    def deco(fn: Callable[..., Awaitable[Any]]):
        @functools.wraps(fn)
        async def wrapper(state, *args, **kwargs):
            before = _error_counts[kind]
            t0 = time.perf_counter()
            try:
                result = await fn(state, *args, **kwargs)
            except BaseException as e:
                if isinstance(e, Exception):  # not cancellation / interpreter exit
                    record_error(kind)
                raise
            finally:
                reconciles.inc()
                duration.observe(time.perf_counter() - t0)
            if _error_counts[kind] == before:
                last_success.set(time.time())
            return result
        return wrapper
    return deco


def serve(address: str | None = None, port: int | None = None):
    """Start the metrics HTTP server (a daemon thread). Returns the server, or None
    if disabled with port 0. Raises ValueError on a malformed ``HEAN_METRICS_PORT``."""
    if port is None:
        raw = os.environ.get("HEAN_METRICS_PORT", str(DEFAULT_PORT))
        try:
            port = int(raw)
        except ValueError:
            raise ValueError(f"HEAN_METRICS_PORT must be an integer port, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"HEAN_METRICS_PORT must be 0..65535, got {port}")
    if port == 0:
        log.info("operator metrics disabled (HEAN_METRICS_PORT=0)")
        return None
    address = address or os.environ.get("HEAN_METRICS_ADDRESS") or os.environ.get("HEAN_POD_IP") or "0.0.0.0"
    server, _thread = start_http_server(port, addr=address, registry=REGISTRY)
    log.info("operator metrics on http://%s:%d/metrics", address, port)
    return server
