"""The worker's HTTP endpoints (FastAPI): ``/healthz``, ``/readyz``, ``/why``,
``/ledger`` and ``/metrics`` (Prometheus text format from prometheus-client).

``/why`` answers HEAN's ``/trading/why``: whether the worker is trading, its risk
state and reasons, per-symbol gating, the top reasons entries were not made, the
governor's view and the last order decisions with their gating flags.
``/risk/governor/status`` is HEAN's Risk Governor status (worker/risk.py).
``/ledger`` is the paper account (capital, realized PnL, fees, positions, every fill)
so anyone can check ``status`` against it.

Metrics (catalogue: docs/metrics.md) follow Prometheus naming: prefix
``hean_worker_``, base units in the name (``_usdt``, ``_seconds``, ``_ratio``,
``_bps``), ``_total`` counters, and bounded labels only: ``namespace``, ``strategy``,
``mode`` on every series, plus ``symbol`` (the spec's <= 10 symbols), ``state``,
``reason``/``outcome``/``level``/``liquidity`` (fixed code lists) where noted. Never
an order id, a price or anything from a Secret.

Gauges and counters are read from the engine at scrape time (no second copy of the
figures). Figures that need the history between scrapes (histograms, gaps, the time
of the last candle) are accumulated by :class:`WorkerObservations`, which walks the
ledger's new fills and the engine's per-symbol cursors at each scrape; execution and
feed code paths that the paper engine does not have (exchange round trips, feed
reconnects, exchange rate limits) report through the same object
(``worker.obs.observe_order_latency(...)`` etc.), so the series exist — at zero —
from the start and alerts on them are well defined.
"""

from __future__ import annotations

import math
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from hean import api

from . import engine as _engine

if TYPE_CHECKING:
    from .app import Worker

VENUE = "bybit"
SLIPPAGE_BPS_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
LATENCY_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INTERVAL_MS = {"1": 60_000, "5": 300_000, "60": 3_600_000}
ORDER_OUTCOMES = ("filled", "rejected", "cancelled")
# Known reason codes are exported at 0 from the start: a series that only appears
# with its first event breaks rate()/increase() and "no data" panels.
BLOCK_REASONS = tuple(sorted(v for k, v in vars(_engine).items() if k.startswith("R_") and isinstance(v, str)))
REJECT_REASONS = (_engine.R_MIN_ORDER, _engine.R_ORDER_RATE, "REDUCE_ONLY_NO_POSITION", _engine.R_ORDER_NOTIONAL,
                  _engine.R_POST_ONLY)
DROP_REASONS = ("bad_number", "bad_timestamp", "duplicate_timestamp", "high_below_low", "non_positive_price",
                "out_of_order", "short_row")


class _Histogram:
    """Cumulative bucket counts for a HistogramMetricFamily."""

    def __init__(self, buckets: tuple[float, ...]):
        self.bounds = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, v: float) -> None:
        if not math.isfinite(v):
            raise ValueError(f"histogram observation must be finite, got {v!r}")
        self.count += 1
        self.sum += v
        for i, b in enumerate(self.bounds):
            if v <= b:
                self.counts[i] += 1

    def family(self, name: str, doc: str, labels: list[str], values: list[str]) -> HistogramMetricFamily:
        h = HistogramMetricFamily(name, doc, labels=labels)
        buckets = [(repr(float(b)), float(c)) for b, c in zip(self.bounds, self.counts)] + [("+Inf", float(self.count))]
        h.add_metric(values, buckets, self.sum)
        return h


class WorkerObservations:
    """History the scrape-time collector cannot read from the engine's current state.

    ``sync(engine)`` (called at every scrape, under a lock) walks the fills booked since
    the last call and the per-symbol candle cursors. The ``observe_*``/``count_*``
    methods are the hooks for code paths with real exchange/feed I/O.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._engine_id: int | None = None
        self.slippage_bps = _Histogram(SLIPPAGE_BPS_BUCKETS)
        self.order_latency = _Histogram(LATENCY_SECONDS_BUCKETS)
        self.marketdata_latency = _Histogram(LATENCY_SECONDS_BUCKETS)
        self.fills_seen = 0
        self.maker_fills = 0
        self.taker_fills = 0
        self.fill_notional = {"maker": Decimal(0), "taker": Decimal(0)}
        self.bars_seen = -1
        self.last_event_wall = 0.0  # unix seconds when the collector first saw the latest candle count
        self.sym_cursor: dict[str, tuple[int, int]] = {}  # symbol -> (last ts_ms, bars_seen)
        self.gap_candles: dict[str, int] = {}
        self.reconnects = 0
        self.rate_limited = 0
        self.reconcile_mismatches = 0
        self.reconcile_checked_fills = -1

    # hooks for exchange/feed code paths (not used by the paper engine)
    def observe_order_latency(self, seconds: float) -> None:
        """Order sent -> acknowledged by the venue."""
        with self.lock:
            self.order_latency.observe(seconds)

    def observe_marketdata_latency(self, seconds: float) -> None:
        """Venue timestamp of a market-data message -> received by the worker."""
        with self.lock:
            self.marketdata_latency.observe(seconds)

    def count_reconnect(self) -> None:
        with self.lock:
            self.reconnects += 1

    def count_rate_limited(self) -> None:
        """The venue answered 'rate limit' (Bybit retCode 10006 / HTTP 403)."""
        with self.lock:
            self.rate_limited += 1

    def count_reconcile_mismatch(self) -> None:
        with self.lock:
            self.reconcile_mismatches += 1

    def sync(self, engine, now: float) -> None:
        """Fold what happened since the last scrape into the histories."""
        if id(engine) != self._engine_id:  # a new engine (restart of the replay): new account
            self._engine_id = id(engine)
            self.fills_seen = 0
            self.sym_cursor.clear()
            self.bars_seen = -1
            self.reconcile_checked_fills = -1
        fills = engine.ledger.fills
        model_bps = float(engine.spec.execution.slippageBps)
        for f in fills[self.fills_seen:]:
            liq = "maker" if f.liquidity == "maker" else "taker"
            if liq == "maker":
                self.maker_fills += 1
            else:
                self.taker_fills += 1
            self.fill_notional[liq] += f.qty * f.price
            # Paper fills are the next candle's open worsened by the slippage model;
            # the observation is the model's figure (the venue path observes the
            # difference between the decision price and the fill price).
            self.slippage_bps.observe(model_bps if liq == "taker" else 0.0)  # resting limits fill at their price
        self.fills_seen = len(fills)
        if engine.bars_processed != self.bars_seen:
            self.bars_seen = engine.bars_processed
            self.last_event_wall = now
        step = INTERVAL_MS.get(engine.spec.marketData.replay.interval, 60_000)
        for sym, st in engine.symbols.items():
            ts = engine._last_ts.get(sym)
            if ts is None:
                continue
            prev = self.sym_cursor.get(sym)
            if prev is not None and ts > prev[0]:
                missing = (ts - prev[0]) // step - (st.bars_seen - prev[1])
                if missing > 0:
                    self.gap_candles[sym] = self.gap_candles.get(sym, 0) + int(missing)
            self.sym_cursor[sym] = (ts, st.bars_seen)
        if len(fills) != self.reconcile_checked_fills:
            self.reconcile_checked_fills = len(fills)
            try:
                engine.ledger.check()
            except Exception:  # noqa: BLE001 - any broken invariant is a mismatch
                self.reconcile_mismatches += 1


class WorkerCollector:
    """Reads the engine at scrape time (no second copy of the figures)."""

    def __init__(self, worker: "Worker", obs: WorkerObservations | None = None):
        self.w = worker
        self.obs = obs or WorkerObservations()

    def collect(self):
        w = self.w
        e = w.engine
        obs = self.obs
        now = time.time()
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
        reach = GaugeMetricFamily("hean_worker_api_reachable",
                                  "1 while the Kubernetes API answers; 0 after HEAN_API_UNREACHABLE_SECONDS without "
                                  "an answer (defensive: no new entries, exits still act)", labels=base)
        reach.add_metric(lv, 1.0 if getattr(w, "api_reachable", True) else 0.0)
        yield reach
        from .state import state_metric_families

        yield from state_metric_families(getattr(w, "state", None), base, lv)
        if e is None:
            return
        with obs.lock:
            obs.sync(e, now)
            yield from self._collect_engine(e, obs, base, lv, now)

    def _collect_engine(self, e, obs: WorkerObservations, base: list[str], lv: list[str], now: float):
        w = self.w
        info = GaugeMetricFamily("hean_worker_info", "Constant 1: the worker's venue and market category",
                                 labels=base + ["venue", "category"])
        info.add_metric(lv + [VENUE, e.spec.category], 1.0)
        yield info
        marks = e.marks()
        equity = e.equity()
        gross = e.ledger.gross_notional(marks)
        unreal = e.ledger.unrealized_pnl(marks)
        for name, desc, value in (
            ("hean_worker_equity_usdt", "Account equity in USDT", equity),
            ("hean_worker_capital_usdt", "Starting capital of the paper account, USDT", e.ledger.capital),
            ("hean_worker_realized_pnl_usdt", "Realized PnL before fees, USDT", e.ledger.realized_pnl),
            ("hean_worker_unrealized_pnl_usdt", "Unrealized PnL at mark prices, USDT", unreal),
            ("hean_worker_pnl_usdt", "Net PnL: realized - fees + unrealized, USDT",
             e.ledger.realized_pnl - e.ledger.fees + unreal),
            ("hean_worker_drawdown_ratio", "Drawdown from peak equity as a fraction", e.drawdown_percent() / 100),
            ("hean_worker_daily_loss_usdt", "Loss since the start of the (UTC, market-time) day, USDT", e.daily_loss()),
            ("hean_worker_open_positions", "Number of open positions", len(e.ledger.open_positions())),
            ("hean_worker_exposure_usdt", "Gross position notional at mark prices, USDT", gross),
            ("hean_worker_leverage_ratio", "Gross exposure / equity", gross / equity if equity > 0 else 0),
            ("hean_worker_trading_active", "1 when the worker could open a position now",
             1 if e.trading_active() and not w.replay_done else 0),
            ("hean_worker_orders_pending", "Orders sent and not yet filled",
             sum(1 for s in e.symbols.values() if s.pending is not None)),
            ("hean_worker_maker_ratio", "Share of fills that were maker (0 when there are no fills)",
             obs.maker_fills / (obs.maker_fills + obs.taker_fills) if obs.maker_fills + obs.taker_fills else 0),
            ("hean_worker_marketdata_last_event_timestamp_seconds",
             "Unix time the worker was first seen to have processed its latest candle (scrape resolution)",
             obs.last_event_wall),
            ("hean_worker_marketdata_staleness_seconds",
             "Seconds since the worker last processed a candle (scrape resolution)",
             max(0.0, now - obs.last_event_wall) if obs.last_event_wall else 0.0),
            ("hean_worker_marketdata_cursor_timestamp_seconds", "Market time of the latest candle processed",
             e.now_ms / 1000),
            ("hean_worker_replay_finished", "1 when a replay has run out of candles (no more market data expected)",
             1 if w.replay_done else 0),
        ):
            g = GaugeMetricFamily(name, desc, labels=base)
            g.add_metric(lv, float(value))
            yield g
        if e.policy is not None:
            lim = GaugeMetricFamily("hean_worker_drawdown_limit_ratio",
                                    "The RiskPolicy's drawdown limits as fractions, by level (soft, hard)",
                                    labels=base + ["level"])
            lim.add_metric(lv + ["soft"], float(e.policy.softMaxDrawdownPercent) / 100)
            lim.add_metric(lv + ["hard"], float(e.policy.hardMaxDrawdownPercent) / 100)
            yield lim
        pos = GaugeMetricFamily("hean_worker_position_notional_usdt",
                                "Signed position notional at the mark price (short < 0), by symbol",
                                labels=base + ["symbol"])
        q = GaugeMetricFamily("hean_worker_symbol_quarantined", "1 while a SymbolQuarantine blocks the symbol",
                              labels=base + ["symbol"])
        for sym, st in e.symbols.items():
            p = e.ledger.positions.get(sym)
            value = 0.0
            if p is not None and p.size != 0 and sym in marks:
                value = float(p.size * marks[sym])
            pos.add_metric(lv + [sym], value)
            q.add_metric(lv + [sym], 1.0 if st.quarantined else 0.0)
        yield pos
        yield q
        rs = GaugeMetricFamily("hean_worker_risk_state", "Risk Governor state (one-hot)", labels=base + ["state"])
        for s in api.RISK_STATES:
            rs.add_metric(lv + [s], 1.0 if e.risk_state == s else 0.0)
        yield rs
        fees = CounterMetricFamily("hean_worker_fees_usdt", "Fees paid, USDT", labels=base)
        fees.add_metric(lv, float(e.ledger.fees))
        yield fees
        funding = CounterMetricFamily("hean_worker_funding_usdt",
                                      "Funding paid (> 0) or received, USDT (the paper engine books none)",
                                      labels=base)
        funding.add_metric(lv, 0.0)
        yield funding
        for name, desc, value in (
            ("hean_worker_orders", "Orders sent", e.orders_sent),
            ("hean_worker_fills", "Fills booked", len(e.ledger.fills)),
            ("hean_worker_closed_trades", "Round trips closed", e.ledger.closed_trades),
            ("hean_worker_marketdata_events", "Candles processed", e.bars_processed),
            ("hean_worker_marketdata_reconnects", "Reconnects of the market-data feed (replay: none)", obs.reconnects),
            ("hean_worker_exchange_rate_limited", "Requests the venue refused for rate limit", obs.rate_limited),
            ("hean_worker_reconcile_mismatches",
             "Ledger reconciliations that found a mismatch (paper: ledger vs its own fill history)",
             obs.reconcile_mismatches),
            ("hean_worker_flash_crash_detections", "Flash-crash detections (RiskPolicy spec.flashCrash)",
             e.safety.flash.detections),
            ("hean_worker_profit_captures", "Profit captures (RiskPolicy spec.profitCapture)", e.safety.profit.captures),
            ("hean_worker_auto_quarantines", "Symbols the worker quarantined itself (RiskPolicy spec.autoQuarantine)",
             len(e.safety.autoq.history)),
            ("hean_worker_status_patches", "Status writes to the API server", w.status_patches),
            ("hean_worker_status_patch_errors", "Failed status writes", w.status_errors),
        ):
            c = CounterMetricFamily(name, desc, labels=base)
            c.add_metric(lv, float(value))
            yield c
        filled = len(e.ledger.fills)
        rejected = sum(e.rejects.values())
        post_queue_rejects = e.rejects.get("REDUCE_ONLY_NO_POSITION", 0)
        pending = sum(1 for s in e.symbols.values() if s.pending is not None)
        cancelled = max(0, e.orders_sent - filled - post_queue_rejects - pending)
        oc = CounterMetricFamily("hean_worker_order_outcomes",
                                 "Order attempts by outcome: filled, rejected (before or by the venue), cancelled",
                                 labels=base + ["outcome"])
        for outcome, n in zip(ORDER_OUTCOMES, (filled, rejected, cancelled)):
            oc.add_metric(lv + [outcome], float(n))
        yield oc
        fl = CounterMetricFamily("hean_worker_fill_notional_usdt", "Filled notional, USDT, by liquidity (maker, taker)",
                                 labels=base + ["liquidity"])
        for liq in ("maker", "taker"):
            fl.add_metric(lv + [liq], float(obs.fill_notional[liq]))
        yield fl
        gaps = CounterMetricFamily("hean_worker_marketdata_gap_candles",
                                   "Candles missing from the feed (sum of gap lengths), by symbol",
                                   labels=base + ["symbol"])
        for sym in e.symbols:
            gaps.add_metric(lv + [sym], float(obs.gap_candles.get(sym, 0)))
        yield gaps
        yield obs.slippage_bps.family("hean_worker_fill_slippage_bps",
                                      "Slippage of each fill against its reference price, basis points", base, lv)
        yield obs.order_latency.family("hean_worker_order_latency_seconds",
                                       "Order sent -> acknowledged by the venue (paper: no venue round trip)",
                                       base, lv)
        yield obs.marketdata_latency.family("hean_worker_marketdata_latency_seconds",
                                            "Venue timestamp -> received, per market-data message (replay: none)",
                                            base, lv)
        nt = CounterMetricFamily("hean_worker_entries_blocked", "Candles on which an entry was not made, by reason",
                                 labels=base + ["reason"])
        for reason in sorted(set(BLOCK_REASONS) | set(e.reasons)):
            nt.add_metric(lv + [reason], float(e.reasons.get(reason, 0)))
        yield nt
        rj = CounterMetricFamily("hean_worker_order_rejects", "Orders rejected before sending, by reason",
                                 labels=base + ["reason"])
        for reason in sorted(set(REJECT_REASONS) | set(e.rejects)):
            rj.add_metric(lv + [reason], float(e.rejects.get(reason, 0)))
        yield rj
        dr = CounterMetricFamily("hean_worker_marketdata_dropped", "Malformed market-data records dropped, by reason",
                                 labels=base + ["reason"])
        for reason in sorted(set(DROP_REASONS) | set(e.dropped)):
            dr.add_metric(lv + [reason], float(e.dropped.get(reason, 0)))
        yield dr


PROBE_PATHS = ("/healthz", "/readyz")


def probe_answer(worker: "Worker", path: str) -> tuple[int, dict]:
    """HTTP status and JSON body of the kubelet probes: ``/healthz`` is always
    ``200 {"ok": true}``; ``/readyz`` is ``200 {"ready": true}`` once the worker
    trades, else ``503 {"ready": false, "reason": <spec/data error or "starting">}``."""
    if path == "/healthz":
        return 200, {"ok": True}
    if worker.ready:
        return 200, {"ready": True}
    return 503, {"ready": False, "reason": worker.spec_error or worker.data_error or "starting"}


def with_probe_fast_path(app, worker: "Worker"):
    """The ASGI app ``app`` with ``GET /healthz`` and ``GET /readyz`` answered before
    FastAPI's middleware and routing stack (same answers, :func:`probe_answer`). The
    kubelet probes every worker every 2 s; through FastAPI each probe cost about five
    times the CPU of this direct answer."""
    import json as _json

    async def asgi(scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"] in PROBE_PATHS:
            code, body = probe_answer(worker, scope["path"])
            data = _json.dumps(body, separators=(",", ":")).encode()
            await send({"type": "http.response.start", "status": code,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(data)).encode())]})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else data})
            return
        await app(scope, receive, send)

    return asgi


def quiet_server(config):
    """A ``uvicorn.Server`` for ``config`` whose housekeeping loop ticks once per
    second instead of ten times (uvicorn's ``main_loop`` sleeps 0.1 s between
    ``on_tick`` calls: a fifth of an idle worker's CPU, measured with py-spy ``--gil``,
    x 200 workers per node). ``on_tick`` still refreshes the ``Date`` header every tick;
    :meth:`request_exit` stops it at once (the worker handles signals itself).
    """
    import asyncio

    import uvicorn

    class QuietServer(uvicorn.Server):
        def __init__(self, cfg) -> None:
            super().__init__(cfg)
            self._exit_requested = asyncio.Event()

        def install_signal_handlers(self) -> None:  # the worker handles SIGTERM/SIGINT
            return None

        def request_exit(self) -> None:
            """Stop serving now (finishes in-flight requests as uvicorn does)."""
            self.should_exit = True
            self._exit_requested.set()

        async def main_loop(self) -> None:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 10) % 864000  # a multiple of 10: on_tick's once-a-second work runs
                try:
                    await asyncio.wait_for(self._exit_requested.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                should_exit = await self.on_tick(counter)

    return QuietServer(config)


def build_app(worker: "Worker") -> FastAPI:
    """The FastAPI application serving ``worker``."""
    app = FastAPI(title="hean worker", docs_url=None, redoc_url=None, openapi_url=None)
    registry = CollectorRegistry(auto_describe=False)
    obs = getattr(worker, "obs", None)
    if not isinstance(obs, WorkerObservations):
        obs = WorkerObservations()
        worker.obs = obs  # the hook object for exchange/feed code paths
    registry.register(WorkerCollector(worker, obs))

    @app.get("/healthz")
    async def healthz() -> Response:
        code, body = probe_answer(worker, "/healthz")
        return JSONResponse(body, status_code=code)

    @app.get("/readyz")
    async def readyz() -> Response:
        code, body = probe_answer(worker, "/readyz")
        return JSONResponse(body, status_code=code)

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
            # Kubernetes API reachability (defensive mode: reason API_UNREACHABLE)
            "apiReachable": worker.api_reachable,
            "apiLastContactSecondsAgo": round(worker.api_contact_age(), 3),
            "apiUnreachableSeconds": worker.settings.api_unreachable_seconds,
            "apiUnreachableSince": worker.api_unreachable_since,
            "state": worker.state.snapshot() if getattr(worker, "state", None) is not None else
            {"backend": "memory", "durable": False},
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
                 "pendingReduceOnly": s.pending.reduce_only if s.pending else None,
                 "stopPrice": str(s.stop_price) if s.stop_price is not None else None,
                 "takeProfitPrice": str(s.target_price) if s.target_price is not None else None}
                for s in e.symbols.values()
            ],
            "quarantineChangedAt": worker.quarantine_changed_at,
            "riskStateChangedAt": worker.risk_state_changed_at,
            "hardStopCancelledOrders": e.hard_stop_cancelled,
            # seconds from the oldest unwritten change to the status write that carried it
            "statusAgesSeconds": [round(a, 4) for a in worker.status_ages],
            "specAppliedGeneration": worker.spec_applied_generation,
            "specAppliedAt": worker.spec_applied_at,
            "topReasons": e.top_reasons(10),
            "rejects": dict(e.rejects),
            "governor": e.governor_status(),
            "recentDecisions": e.safety.decisions.recent(50),
            "replay": worker.runtime_status().get("replay"),
        })
        return out

    @app.get("/risk/governor/status")
    async def governor() -> Response:
        """HEAN's ``/risk/governor/status``: state, reason codes with their recommended
        action and clear rule, transitions, flash-crash / profit-capture /
        auto-quarantine events (worker/risk.py governor_status)."""
        e = worker.engine
        if e is None:
            return JSONResponse({"ready": False, "reason": worker.spec_error or worker.data_error or "starting"},
                                status_code=503)
        return JSONResponse(e.governor_status())

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
            "funding": str(e.ledger.funding),
            "rewards": str(e.ledger.rewards),
            "opportunityCost": str(e.ledger.opportunity_cost),
            "total": str(e.ledger.total()),
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
