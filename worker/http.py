"""The worker's HTTP endpoints (FastAPI): ``/healthz``, ``/readyz``, ``/why``,
``/ledger`` and ``/metrics`` (Prometheus text format from prometheus-client).

``/why`` answers HEAN's ``/trading/why``: whether the worker is trading, its risk
state and reasons, per-symbol gating and the top reasons entries were not made.
``/ledger`` is the paper account (capital, realized PnL, fees, positions, every fill)
so anyone can check ``status`` against it. Metric names follow Prometheus naming
(prefix ``hean_worker_``, base units in the name, ``_total`` counters) with bounded
labels only (namespace, strategy, mode, symbol, state, reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from hean import api

if TYPE_CHECKING:
    from .app import Worker


class WorkerCollector:
    """Reads the engine at scrape time (no second copy of the figures)."""

    def __init__(self, worker: "Worker"):
        self.w = worker

    def collect(self):
        w = self.w
        e = w.engine
        base = ["namespace", "strategy", "mode"]
        mode = e.spec.mode if e is not None else ""
        lv = [w.settings.namespace, w.settings.strategy_name, mode]
        up = GaugeMetricFamily("hean_worker_up", "1 when the worker's engine is running", labels=base)
        up.add_metric(lv, 1.0 if w.ready else 0.0)
        yield up
        hb = GaugeMetricFamily("hean_worker_heartbeat_timestamp_seconds",
                               "Unix time of the last successful status write", labels=base)
        hb.add_metric(lv, w.last_status_write)
        yield hb
        if e is None:
            return
        marks = e.marks()
        for name, desc, value in (
            ("hean_worker_equity_usdt", "Account equity in USDT", e.equity()),
            ("hean_worker_realized_pnl_usdt", "Realized PnL before fees, USDT", e.ledger.realized_pnl),
            ("hean_worker_unrealized_pnl_usdt", "Unrealized PnL at mark prices, USDT", e.ledger.unrealized_pnl(marks)),
            ("hean_worker_drawdown_ratio", "Drawdown from peak equity as a fraction", e.drawdown_percent() / 100),
            ("hean_worker_open_positions", "Number of open positions", len(e.ledger.open_positions())),
            ("hean_worker_exposure_usdt", "Gross position notional at mark prices, USDT", e.ledger.gross_notional(marks)),
        ):
            g = GaugeMetricFamily(name, desc, labels=base)
            g.add_metric(lv, float(value))
            yield g
        fees = CounterMetricFamily("hean_worker_fees_usdt", "Fees paid, USDT", labels=base)
        fees.add_metric(lv, float(e.ledger.fees))
        yield fees
        rs = GaugeMetricFamily("hean_worker_risk_state", "Risk Governor state (one-hot)", labels=base + ["state"])
        for s in api.RISK_STATES:
            rs.add_metric(lv + [s], 1.0 if e.risk_state == s else 0.0)
        yield rs
        for name, desc, value in (
            ("hean_worker_orders", "Orders sent", e.orders_sent),
            ("hean_worker_fills", "Fills booked", len(e.ledger.fills)),
            ("hean_worker_closed_trades", "Round trips closed", e.ledger.closed_trades),
            ("hean_worker_marketdata_events", "Candles processed", e.bars_processed),
            ("hean_worker_status_patches", "Status writes to the API server", w.status_patches),
            ("hean_worker_status_patch_errors", "Failed status writes", w.status_errors),
        ):
            c = CounterMetricFamily(name, desc, labels=base)
            c.add_metric(lv, float(value))
            yield c
        nt = CounterMetricFamily("hean_worker_entries_blocked", "Candles on which an entry was not made, by reason",
                                 labels=base + ["reason"])
        for reason, n in e.reasons.items():
            nt.add_metric(lv + [reason], float(n))
        yield nt
        rj = CounterMetricFamily("hean_worker_order_rejects", "Orders rejected before sending, by reason",
                                 labels=base + ["reason"])
        for reason, n in e.rejects.items():
            rj.add_metric(lv + [reason], float(n))
        yield rj
        dr = CounterMetricFamily("hean_worker_marketdata_dropped", "Malformed market-data records dropped, by reason",
                                 labels=base + ["reason"])
        for reason, n in e.dropped.items():
            dr.add_metric(lv + [reason], float(n))
        yield dr


def build_app(worker: "Worker") -> FastAPI:
    """The FastAPI application serving ``worker``."""
    app = FastAPI(title="hean worker", docs_url=None, redoc_url=None, openapi_url=None)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    @app.get("/readyz")
    async def readyz() -> Response:
        if worker.ready:
            return JSONResponse({"ready": True})
        reason = worker.spec_error or worker.data_error or "starting"
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)

    @app.get("/why")
    async def why() -> dict:
        e = worker.engine
        out: dict = {
            "strategy": worker.settings.strategy_name,
            "namespace": worker.settings.namespace,
            "ready": worker.ready,
            "specError": worker.spec_error,
            "policyError": worker.policy_error,
            "dataError": worker.data_error,
        }
        if e is None:
            return out
        out.update({
            "tradingActive": e.trading_active() and not worker.replay_done,
            "paused": e.spec.paused,
            "riskState": e.risk_state,
            "riskReasons": e.risk_reasons,
            "drawdownPercent": str(e.drawdown_percent()),
            "symbols": [
                {"symbol": s.symbol, "lastReason": s.last_reason, "quarantined": s.quarantined,
                 "entryOrders": s.entry_orders, "pendingOrder": s.pending.order_link_id if s.pending else None,
                 "stopPrice": str(s.stop_price) if s.stop_price is not None else None,
                 "takeProfitPrice": str(s.target_price) if s.target_price is not None else None}
                for s in e.symbols.values()
            ],
            "topReasons": e.top_reasons(10),
            "rejects": dict(e.rejects),
            "replay": worker.runtime_status().get("replay"),
        })
        return out

    @app.get("/ledger")
    async def ledger() -> dict:
        e = worker.engine
        if e is None:
            return {"ready": False}
        marks = e.marks()
        return {
            "cursorMs": worker.cursor_ms,
            "replayDone": worker.replay_done,
            "capital": str(e.ledger.capital),
            "realizedPnl": str(e.ledger.realized_pnl),
            "fees": str(e.ledger.fees),
            "unrealizedPnl": str(e.ledger.unrealized_pnl(marks)),
            "equity": str(e.equity()),
            "marks": {k: str(v) for k, v in marks.items()},
            "positions": [{"symbol": p.symbol, "size": str(p.size), "entryPrice": str(p.entry_price)}
                          for p in e.ledger.open_positions()],
            "fills": [{"execId": f.exec_id, "orderLinkId": f.order_link_id, "symbol": f.symbol, "side": f.side,
                       "qty": str(f.qty), "price": str(f.price), "fee": str(f.fee), "tsMs": f.ts_ms,
                       "reason": f.reason} for f in e.ledger.fills],
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
