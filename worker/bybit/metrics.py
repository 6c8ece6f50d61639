"""Prometheus text for the Bybit parts (served at ``/metrics/bybit``; the worker's
``/metrics`` owner can register :class:`BybitCollector` in its registry as well).
Names: prefix ``hean_worker_bybit_``, ``_total`` counters; labels bounded (namespace,
strategy, mode, symbol, reason/kind) - never an order id or a key."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class BybitCollector:
    """Prometheus collector of the exchange path (orders by outcome, rejects by label,
    repairs, reconnects, gaps, staleness), read from the worker at scrape time; labels are
    bounded (namespace, strategy, mode, reason), never an order id or a key.
    """
    def __init__(self, worker):
        self.w = worker

    def collect(self):
        w = self.w
        e = w.engine
        base = ["namespace", "strategy", "mode"]
        lv = [w.settings.namespace, w.settings.strategy_name, e.spec.mode if e is not None else ""]
        ex = w.exchange
        if ex is not None:
            exe = ex.execution
            rj = CounterMetricFamily("hean_worker_bybit_rejects", "Orders refused by the exchange or not sent, by reason",
                                     labels=base + ["reason"])
            for k, v in exe.rejects.items():
                rj.add_metric(lv + [k], float(v))
            yield rj
            rr = CounterMetricFamily("hean_worker_bybit_request_rejects",
                                     "REST requests refused without retry, by Bybit retCode label", labels=base + ["reason"])
            for k, v in ex.client.rejects.items():
                rr.add_metric(lv + [k], float(v))
            yield rr
            ev = CounterMetricFamily("hean_worker_bybit_execution_events",
                                     "Execution path events (lookups, resubmits, duplicate fills ignored, ...)",
                                     labels=base + ["kind"])
            for k, v in (exe.counters + ex.client.errors).items():
                ev.add_metric(lv + [k], float(v))
            yield ev
            rp = CounterMetricFamily("hean_worker_bybit_reconcile_repairs", "Differences repaired toward the exchange",
                                     labels=base + ["kind"])
            for k, v in exe.repairs.items():
                rp.add_metric(lv + [k], float(v))
            yield rp
            g = GaugeMetricFamily("hean_worker_bybit_reconciled", "1 when the last reconciliation succeeded",
                                  labels=base)
            g.add_metric(lv, 1.0 if exe.reconciled and not exe.last_reconcile_error else 0.0)
            yield g
            pc = GaugeMetricFamily("hean_worker_bybit_private_stream_connected", "1 when the private stream is up",
                                   labels=base)
            pc.add_metric(lv, 1.0 if ex.private.connected() else 0.0)
            yield pc
        ld = w.live_data
        if ld is not None:
            f = ld.feed
            for name, desc, key in (
                ("hean_worker_bybit_book_gaps", "Order-book update-id gaps (each re-snapshots)", "gaps"),
                ("hean_worker_bybit_marketdata_stale_events", "Times the feed went stale", "stale"),
                ("hean_worker_bybit_marketdata_frames", "Public frames received", "frames"),
            ):
                c = CounterMetricFamily(name, desc, labels=base)
                c.add_metric(lv, float(f.counters.get(key, 0)))
                yield c
            rc = CounterMetricFamily("hean_worker_bybit_ws_reconnects", "WebSocket reconnects", labels=base + ["stream"])
            rc.add_metric(lv + ["public"], float(f.socket.reconnects))
            if ex is not None:
                rc.add_metric(lv + ["private"], float(ex.private.reconnects))
            yield rc
            st = GaugeMetricFamily("hean_worker_bybit_marketdata_stale", "1 while no public frame arrived recently",
                                   labels=base)
            st.add_metric(lv, 1.0 if f.stale else 0.0)
            yield st


def render(worker) -> bytes:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(BybitCollector(worker))
    return generate_latest(reg)
