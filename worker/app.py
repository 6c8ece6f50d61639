"""The worker process: ``python -m hean.worker``.

Reads its TradingStrategy, the namespace's RiskPolicies and SymbolQuarantines from the
API server and keeps watching them, so a spec change, a new quarantine or a tighter
limit takes effect on the next candle without a restart. Replays the recorded Bybit
candles of its symbols through :class:`hean.worker.engine.Engine`, serves
``/metrics``, ``/healthz``, ``/readyz``, ``/why`` and ``/ledger`` on
``HEAN_HTTP_PORT``, merge-patches its runtime figures into the strategy's ``status``
at most once per ``HEAN_STATUS_INTERVAL`` seconds, and posts an Event on every
risk-state change.

Configuration comes from the environment (see :class:`WorkerSettings`). With
``spec.marketData.source: live`` the candles come from Bybit's public WebSocket
instead of files, and with ``spec.mode`` ``testnet``/``demo``/``live`` orders go to
Bybit through :mod:`hean.worker.bybit` (API keys only from the environment variables
the operator fills from the strategy's Secret; never logged). See docs/bybit.md.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
import logging
import signal
import time
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from hean import api
from hean.kube import Informer, load_config, now_rfc3339, patch_status, post_event
from hean.marketdata import KlineStream, load_instruments

from .config import (
    RiskPolicySpec,
    StrategySpec,
    describe_validation_error,
    parse_time,
    quarantine_applies,
)
from .engine import R_NO_DATA, Engine

log = logging.getLogger("hean.worker")

HEARTBEAT_SECONDS = 10.0  # an unchanged status is still re-written this often (liveness)
STRUCTURAL_FIELDS = ("strategy", "symbols", "category", "mode", "capital", "maxLeverage", "marketData")


class WorkerSettings(BaseSettings):
    """Worker settings from environment variables prefixed ``HEAN_``.

    ``strategy_name`` and ``namespace`` name the TradingStrategy; ``marketdata_dir``
    is where ``../shared/marketdata`` is mounted; ``http_port``/``bind_address`` for
    the HTTP endpoints (the operator binds the pod IP); ``status_interval`` seconds
    between status patches (bounded write rate).
    """

    model_config = SettingsConfigDict(env_prefix="HEAN_")

    strategy_name: str
    namespace: str = "default"
    pod_name: str = "hean-worker"
    marketdata_dir: Path = Path("/var/lib/hean/marketdata")
    http_port: int = 8080
    bind_address: str = "0.0.0.0"
    status_interval: float = 1.0
    log_level: str = "INFO"
    # Bybit (docs/bybit.md). Keys are NOT settings: they are read from BYBIT_API_KEY /
    # BYBIT_API_SECRET by hean.worker.bybit.runtime and never stored here.
    bybit_state_dir: Path = Path("/var/lib/hean/state")
    bybit_reconcile_seconds: float = 30.0
    bybit_stale_seconds: float = 10.0
    bybit_orderbook_depth: int = 50
    bybit_record_dir: Path | None = None
    bybit_timeout: float = 5.0
    bybit_order_rate: int = 10
    bybit_dcp_seconds: int = 0  # exchange-side dead-man switch window, 10..300; 0 = off


def _tagged(symbol: str, bars, start_ms: int | None):
    """``(ts_ms, symbol, bar)`` for each bar at or after ``start_ms`` (merge keys)."""
    for b in bars:
        if start_ms is None or b.ts_ms >= start_ms:
            yield b.ts_ms, symbol, b


def structural(spec: dict) -> dict:
    """The spec fields whose change needs a new worker (the operator replaces the pod)."""
    return {k: spec.get(k) for k in STRUCTURAL_FIELDS}


class Worker:
    """One strategy's worker: state shared by the replay loop, the watchers, the status
    writer and the HTTP handlers (all on one asyncio loop, so no locks are needed)."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.api_client = None
        self.engine: Engine | None = None
        self.strategy_obj: dict | None = None
        self.spec_error: str | None = None
        self.policy_error: str | None = None
        self.data_error: str | None = None
        self.started_structure: dict | None = None
        self.ready = False
        self.cursor_ms: int | None = None
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.replay_done = False
        self.events_total = 0
        self.status_patches = 0
        self.status_errors = 0
        self.last_heartbeat: str | None = None
        self.last_status_write = 0.0  # unix seconds of the last successful status patch
        self.quarantined_symbols: set[str] = set()
        self.quarantine_changed_at: float | None = None  # unix seconds, for latency measurements
        self.risk_state_changed_at: float | None = None  # unix seconds of the last risk-state transition
        # Wall-clock time HARD_STOP was entered: the clear annotation (a human's wall-clock
        # time) must be later than this. The engine's own stop time is on the data clock,
        # which in a replay is in the past, so a stale annotation would clear every stop.
        self.hard_stop_wall_at: datetime | None = None
        # Status freshness: unix time of the oldest change (candle, risk transition) not yet
        # in a status write, and the age of the figures at each write (seconds).
        self.dirty_since: float | None = None
        self.status_ages: deque = deque(maxlen=200)
        self.spec_applied_generation: int | None = None  # metadata.generation the engine runs on
        self.spec_applied_at: float | None = None  # unix seconds it was applied
        self.started = time.time()
        self.strategies = None
        self.policies = None
        self.quarantines = None
        self._policy_name: str | None = None
        self._engine_ready = asyncio.Event()
        self._status_wake = asyncio.Event()  # a risk-state change waits to be written: write now
        self.exchange = None   # hean.worker.bybit.runtime.ExchangeRuntime (testnet/demo/live)
        self.live_data = None  # hean.worker.bybit.runtime.LiveData (marketData.source live)
        self.instruments_doc: dict | None = None
        self.funding: dict[str, list] = {}

    # ---- watch callbacks --------------------------------------------------------
    def _apply_strategy(self, obj: dict) -> None:
        self.strategy_obj = obj
        spec = obj.get("spec") or {}
        try:
            parsed = StrategySpec.model_validate(spec)
        except ValidationError as e:
            self.spec_error = describe_validation_error("spec", e)
            log.error("invalid TradingStrategy spec: %s", self.spec_error)
            return
        self.spec_error = None
        self._policy_name = parsed.riskPolicyRef.name
        if self.engine is None:
            return
        if self.started_structure is not None and structural(spec) != self.started_structure:
            log.info("structural spec change: the operator replaces this worker; keeping the old structure meanwhile")
        self.engine.update_spec(parsed.model_copy(update={
            k: getattr(self.engine.spec, k) for k in ("symbols", "category", "capital", "maxLeverage", "marketData", "mode")
        }))
        self.engine.labels = dict((obj.get("metadata") or {}).get("labels") or {})
        generation = (obj.get("metadata") or {}).get("generation")
        if generation != self.spec_applied_generation:
            self.spec_applied_generation = generation
            self.spec_applied_at = time.time()
        clear = ((obj.get("metadata") or {}).get("annotations") or {}).get(api.ANNOTATION_CLEAR_HARD_STOP)
        if clear:
            try:
                at = parse_time(clear)
            except ValueError:
                log.warning("annotation %s is not an RFC 3339 time: %r", api.ANNOTATION_CLEAR_HARD_STOP, clear)
                at = None
            if (at is not None and self.hard_stop_wall_at is not None and at > self.hard_stop_wall_at
                    and self.engine.clear_hard_stop(at)):
                self.hard_stop_wall_at = None
                self._post(obj, "HardStopCleared", f"HARD_STOP cleared by annotation {api.ANNOTATION_CLEAR_HARD_STOP}={clear}")
        self._apply_policy()
        self._apply_quarantines()

    def _apply_policy(self) -> None:
        if self.engine is None or self.policies is None:
            return
        obj = self.policies.cache.get(self._policy_name or "")
        if obj is None:
            self.policy_error = f"RiskPolicy {self._policy_name!r} not found in namespace {self.settings.namespace!r}"
            self.engine.update_policy(None)
            return
        try:
            pol = RiskPolicySpec.model_validate(obj.get("spec") or {})
        except ValidationError as e:
            self.policy_error = describe_validation_error(f"RiskPolicy {self._policy_name}: spec", e)
            self.engine.update_policy(None)
            return
        self.policy_error = None
        self.engine.update_policy(pol)
        self._drain_risk_events()

    def _apply_quarantines(self) -> None:
        if self.engine is None or self.quarantines is None:
            return
        now = datetime.now(timezone.utc)
        blocked = {
            sym for sym in self.engine.symbols
            for q in self.quarantines.cache.values()
            if quarantine_applies(q, sym, self.engine.labels, now)
        }
        if blocked != self.quarantined_symbols:
            self.quarantined_symbols = blocked
            self.quarantine_changed_at = time.time()
        self.engine.set_quarantined(blocked)
        self._drain_risk_events()

    async def _on_strategy(self, etype: str, obj: dict) -> None:
        if etype == "DELETED":
            log.info("TradingStrategy deleted; stopping entries")
            if self.engine is not None:
                self.engine.update_policy(None)
            return
        self._apply_strategy(obj)

    async def _on_policy(self, etype: str, obj: dict) -> None:
        self._apply_policy()

    async def _on_quarantine(self, etype: str, obj: dict) -> None:
        self._apply_quarantines()

    # ---- events -----------------------------------------------------------------
    def _post(self, obj: dict | None, reason: str, message: str, type_: str = "Normal") -> None:
        if obj is None or self.api_client is None:
            return
        asyncio.get_running_loop().create_task(post_event(self.api_client, obj, reason, message, type_, "hean-worker"))

    def _drain_risk_events(self) -> None:
        if self.engine is None:
            return
        while self.engine.risk_events:
            old, new, reasons = self.engine.risk_events.pop(0)
            self.risk_state_changed_at = time.time()
            self._status_wake.set()
            if new == api.RISK_HARD_STOP:
                self.hard_stop_wall_at = datetime.fromtimestamp(self.risk_state_changed_at, timezone.utc)
            if self.dirty_since is None:
                self.dirty_since = self.risk_state_changed_at
            dd = self.engine.drawdown_percent().quantize(Decimal("0.01"))
            msg = f"risk state {old} -> {new} ({', '.join(reasons) or 'limits clear'}); drawdown {dd}%"
            log.warning(msg)
            self._post(self.strategy_obj, "RiskStateChanged", msg, "Normal" if new == api.RISK_NORMAL else "Warning")

    # ---- the replay -------------------------------------------------------------
    def _load(self, spec: StrategySpec):
        instruments_all = load_instruments(self.settings.marketdata_dir)
        instruments = {s: instruments_all[(spec.category, s)] for s in spec.symbols if (spec.category, s) in instruments_all}
        missing = [s for s in spec.symbols if s not in instruments]
        if missing:
            raise FileNotFoundError(f"no instrument info for {spec.category} symbols {missing}")
        # Lazy: only the first/last rows are read now; candles are parsed as the replay
        # consumes them (a worker is Ready without parsing a month of candles).
        series = {s: KlineStream(self.settings.marketdata_dir, s, spec.marketData.replay.interval) for s in spec.symbols}
        return instruments, series

    async def _build_engine(self) -> tuple[Engine, dict]:
        while True:
            obj = self.strategies.cache.get(self.settings.strategy_name) if self.strategies else None
            if obj is not None and self.spec_error is None:
                spec = StrategySpec.model_validate(obj.get("spec") or {})
                if spec.mode != "paper" and spec.marketData.source != "live":
                    self.data_error = (f"spec.mode {spec.mode!r} trades on the exchange and needs "
                                       "spec.marketData.source 'live' (replayed candles would trade on old prices)")
                elif spec.marketData.source == "live":
                    try:
                        engine = await self._build_live_engine(obj, spec)
                        self.data_error = None
                        return engine, None
                    except Exception as e:  # noqa: BLE001 - reported, retried
                        self.data_error = f"live market data: {type(e).__name__}: {e}"
                else:
                    try:
                        instruments, series = await asyncio.to_thread(self._load, spec)
                        self.data_error = None
                        engine = Engine(self.settings.strategy_name, spec, None, instruments,
                                        (obj.get("metadata") or {}).get("labels"))
                        self.started_structure = structural(obj.get("spec") or {})
                        return engine, series
                    except (FileNotFoundError, ValueError, KeyError) as e:
                        self.data_error = str(e)
                log.error("cannot start trading: %s", self.data_error)
            await asyncio.sleep(2)

    async def _build_live_engine(self, obj: dict, spec: StrategySpec) -> Engine:
        from .bybit import endpoints_for
        from .bybit.runtime import fetch_instruments_doc

        ep = endpoints_for(spec.mode)
        instruments, self.instruments_doc = await asyncio.to_thread(
            fetch_instruments_doc, ep.rest, spec.category, spec.symbols)
        engine = Engine(self.settings.strategy_name, spec, None, instruments, (obj.get("metadata") or {}).get("labels"))
        self.started_structure = structural(obj.get("spec") or {})
        return engine

    async def run_live(self, engine: Engine) -> None:
        """Live public data (and, for testnet/demo/live, exchange execution)."""
        from .bybit import endpoints_for
        from .bybit.runtime import Blocks, ExchangeRuntime, LiveData

        s = self.settings
        ep = endpoints_for(engine.spec.mode)
        blocks = Blocks()
        blocks.engine = engine
        tasks = []
        try:
            if engine.spec.mode != "paper":
                try:
                    self.exchange = ExchangeRuntime(engine, s.namespace, s.strategy_name, ep, s.bybit_state_dir, blocks,
                                                    s.bybit_reconcile_seconds, s.bybit_timeout, s.bybit_order_rate,
                                                    dcp_seconds=s.bybit_dcp_seconds)
                except (ValueError, OSError) as e:
                    self.data_error = f"exchange execution cannot start: {e}"
                    engine.blocked_reason = "EXCHANGE_NOT_CONFIGURED"
                    self.ready = False  # /readyz answers 503 with the reason; nothing trades
                    log.error("%s", self.data_error)
                    return
                self.exchange.execution.on_repair = lambda msg: self._post(self.strategy_obj, "ReconcileRepaired",
                                                                           msg, "Warning")
                obs = getattr(self, "obs", None)  # set by hean.worker.http.build_app
                if obs is not None:
                    self.exchange.execution.obs = obs
                    self.exchange.client.on_rate_limited = obs.count_rate_limited
                    self.exchange.private.on_reconnect = obs.count_reconnect
                tasks.append(asyncio.create_task(self.exchange.run()))
            self.live_data = LiveData(engine, ep, engine.spec.marketData.replay.interval, s.bybit_orderbook_depth,
                                      s.bybit_stale_seconds, blocks, s.bybit_record_dir, self.instruments_doc)
            tasks.append(asyncio.create_task(self._load_funding(ep, engine)))

            def on_bar(symbol, bar):
                self.cursor_ms = bar.ts_ms
                self.events_total += 1
                if engine.risk_events:
                    self._drain_risk_events()
            self.live_data.on_bar = on_bar
            if getattr(self, "obs", None) is not None:
                self.live_data.feed.socket.on_reconnect = self.obs.count_reconnect
            await self.live_data.run()
        finally:
            for t in tasks:
                t.cancel()

    async def _load_funding(self, ep, engine: Engine) -> None:
        """Funding-rate history of the symbols over REST (shown in ``/bybit``; best effort)."""
        from .bybit import BybitClient, BybitError

        client = BybitClient(None, None, ep.rest)
        for sym in engine.symbols:
            try:
                rows = await asyncio.to_thread(client.funding_history, engine.spec.category, sym, 20)
                self.funding[sym] = [{"rate": r.get("fundingRate"), "ts": r.get("fundingRateTimestamp")} for r in rows]
            except BybitError as e:
                log.warning("funding history of %s unavailable: %s", sym, e.label)

    async def replay(self) -> None:
        """Build the engine, then feed it the merged candles of all symbols in time
        order, paced by ``spec.marketData.replay.speed`` (or run the live feed)."""
        engine, series = await self._build_engine()
        self.engine = engine
        if series is None:
            self._apply_strategy(self.strategy_obj)
            self.ready = True
            self._engine_ready.set()
            await self.run_live(engine)
            return
        self._apply_strategy(self.strategy_obj)
        self.ready = True
        self._engine_ready.set()
        spec = engine.spec.marketData.replay
        start_ms = int(spec.start.timestamp() * 1000) if spec.start else None
        passes = 0
        while True:
            # Malformed rows are counted once (first pass), as they are reached.
            dropped = engine.dropped if passes == 0 else Counter()
            passes += 1
            streams = [_tagged(sym, s.bars(dropped), start_ms) for sym, s in series.items()]
            merged = heapq.merge(*streams, key=lambda t: (t[0], t[1]))
            first = next(merged, None)
            if first is None:
                self.data_error = "no candles at or after spec.marketData.replay.start"
                self.replay_done = True
                engine.finish()
                return
            self.first_ms = first[0]
            self.last_ms = max([first[0]] + [s.last_ms for s in series.values() if s.last_ms is not None])
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i, (ts, sym, bar) in enumerate(itertools.chain([first], merged)):
                target = t0 + (ts - self.first_ms) / 1000.0 / engine.spec.marketData.replay.speed
                delay = target - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif i % 64 == 0:
                    await asyncio.sleep(0)
                engine.on_bar(sym, bar)
                if self.dirty_since is None:
                    self.dirty_since = time.time()
                self.cursor_ms = ts
                self.events_total += 1
                if engine.risk_events:
                    self._drain_risk_events()
            if not spec.loop:
                break
            for st in engine.symbols.values():
                st.reset_indicators(st.params)
        self.replay_done = True
        engine.finish()
        log.info("replay finished: %d candles, equity %s", self.events_total, engine.equity())

    # ---- status -----------------------------------------------------------------
    def runtime_status(self) -> dict:
        """The worker-owned ``status`` keys (see docs/design.md), money as decimal
        strings rounded to 0.01 USDT."""
        q = Decimal("0.01")
        st: dict = {"lastHeartbeat": now_rfc3339()}
        e = self.engine
        if self.strategy_obj is not None:
            st["workerObservedGeneration"] = (self.strategy_obj.get("metadata") or {}).get("generation")
        if e is None:
            reason = "SPEC_INVALID" if self.spec_error else R_NO_DATA if self.data_error else "STARTING"
            st.update({"tradingActive": False, "notTradingReasons": [{"reason": reason, "count": 1}]})
            return st
        marks = e.marks()
        realized, fees = e.ledger.realized_pnl, e.ledger.fees
        unreal = e.ledger.unrealized_pnl(marks)
        active = e.trading_active() and not self.replay_done
        reasons = e.top_reasons()
        if self.replay_done:
            reasons = [{"reason": "REPLAY_FINISHED", "count": 1}] + reasons[:4]
        st.update({
            "riskState": e.risk_state,
            "riskReasons": list(e.risk_reasons),
            "tradingActive": active,
            "equity": str(e.equity().quantize(q)),
            "realizedPnl": str(realized.quantize(q)),
            "unrealizedPnl": str(unreal.quantize(q)),
            "fees": str(fees.quantize(q)),
            "pnl": str((realized - fees + unreal).quantize(q)),
            "drawdownPercent": str(e.drawdown_percent().quantize(q)),
            "openPositions": len(e.ledger.open_positions()),
            "positions": [
                {"symbol": p.symbol, "side": p.side, "size": str(p.size.copy_abs()),
                 "entryPrice": str(p.entry_price.quantize(e.symbols[p.symbol].instrument.tick_size)),
                 "markPrice": str(marks[p.symbol]),
                 "unrealizedPnl": str(p.unrealized_pnl(marks[p.symbol]).quantize(q))}
                for p in e.ledger.open_positions()
            ],
            "trades": e.ledger.closed_trades,
            "orders": e.orders_sent,
            "notTradingReasons": reasons,
            "symbolStates": [
                {"symbol": s.symbol, "quarantined": s.quarantined, "entryOrders": s.entry_orders,
                 "lastReason": s.last_reason}
                for s in e.symbols.values()
            ],
        })
        if self.cursor_ms is not None and self.first_ms is not None and self.last_ms is not None:
            span = max(self.last_ms - self.first_ms, 1)
            st["replay"] = {
                "cursor": datetime.fromtimestamp(self.cursor_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "progress": str((Decimal(self.cursor_ms - self.first_ms) / span).quantize(Decimal("0.0001"))),
                "done": self.replay_done,
            }
        return st

    async def status_loop(self) -> None:
        """Coalesced status writes: at most one patch per ``status_interval`` seconds,
        and only when a figure changed or the heartbeat is ``HEARTBEAT_SECONDS`` old
        (an idle worker writes every 10 s, a busy one at most once per interval).
        Failures are counted and retried next interval."""
        last_sent: dict | None = None
        while True:
            self._status_wake.clear()  # a transition from now on wakes the next pause
            since, self.dirty_since = self.dirty_since, None
            status = self.runtime_status()
            figures = {k: v for k, v in status.items() if k != "lastHeartbeat"}
            if figures == last_sent and time.time() - self.last_status_write < HEARTBEAT_SECONDS:
                await self._status_pause()
                continue
            try:
                await patch_status(self.api_client, api.STRATEGY_PLURAL, self.settings.namespace,
                                   self.settings.strategy_name, status)
                self.status_patches += 1
                self.last_heartbeat = status["lastHeartbeat"]
                self.last_status_write = time.time()
                if since is not None and figures != last_sent:
                    self.status_ages.append(self.last_status_write - since)
                last_sent = figures
            except Exception as e:  # noqa: BLE001 - keep trading; retry next interval
                if since is not None and (self.dirty_since is None or since < self.dirty_since):
                    self.dirty_since = since  # still unwritten
                self.status_errors += 1
                log.warning("status patch failed: %r", e)
            await self._status_pause()

    async def _status_pause(self) -> None:
        """Wait one status interval, or less when a risk-state change is waiting to be
        written (HARD_STOP, SOFT_BRAKE, QUARANTINE reach ``status`` at once; still at
        most one extra write per transition, so writes stay bounded)."""
        try:
            await asyncio.wait_for(self._status_wake.wait(), self.settings.status_interval)
        except asyncio.TimeoutError:
            pass

    async def quarantine_clock(self) -> None:
        """Re-evaluate quarantine expiry every 0.25 s (expiry is wall-clock time)."""
        while True:
            await asyncio.sleep(0.25)
            self._apply_quarantines()

    # ---- Bybit endpoints ----------------------------------------------------------
    async def bybit_snapshot(self) -> dict:
        """``/bybit``: exchange execution and live-data health (never any key)."""
        out: dict = {"mode": self.engine.spec.mode if self.engine else None}
        if self.exchange is not None:
            out["exchange"] = self.exchange.snapshot()
        if self.live_data is not None:
            out["marketData"] = self.live_data.feed.snapshot()
            out["funding"] = self.funding
        if self.engine is not None:
            out["blockedReason"] = self.engine.blocked_reason
        return out

    async def bybit_metrics(self):
        """``/metrics/bybit``: Prometheus text of the Bybit counters."""
        from fastapi import Response
        from prometheus_client import CONTENT_TYPE_LATEST

        from .bybit.metrics import render

        return Response(render(self), media_type=CONTENT_TYPE_LATEST)

    # ---- main -------------------------------------------------------------------
    async def run(self) -> None:
        """Start the watchers, HTTP server, replay and status writer; run until
        SIGTERM/SIGINT, then write a last status and exit."""
        import uvicorn

        from .http import build_app

        self.api_client = await load_config()
        ns = self.settings.namespace
        self.strategies = Informer(self.api_client, api.STRATEGY_PLURAL, ns, self._on_strategy,
                                   field_selector=f"metadata.name={self.settings.strategy_name}")
        self.policies = Informer(self.api_client, api.POLICY_PLURAL, ns, self._on_policy)
        self.quarantines = Informer(self.api_client, api.QUARANTINE_PLURAL, ns, self._on_quarantine)
        app = build_app(self)
        app.add_api_route("/bybit", self.bybit_snapshot, methods=["GET"])
        app.add_api_route("/metrics/bybit", self.bybit_metrics, methods=["GET"])
        server = uvicorn.Server(uvicorn.Config(app, host=self.settings.bind_address,
                                               port=self.settings.http_port, log_level="warning",
                                               access_log=False))
        server.install_signal_handlers = lambda: None  # we handle signals below
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(c) for c in (
            self.strategies.run(), self.policies.run(), self.quarantines.run(), server.serve(),
        )]
        await self.strategies.synced.wait()
        await self.policies.synced.wait()
        await self.quarantines.synced.wait()
        tasks += [asyncio.create_task(c) for c in (self.replay(), self.status_loop(), self.quarantine_clock())]
        await stop.wait()
        log.info("stopping")
        server.should_exit = True
        serve_task = tasks[3]
        try:
            await asyncio.wait_for(asyncio.shield(serve_task), 5)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001
            pass
        try:
            await asyncio.wait_for(patch_status(self.api_client, api.STRATEGY_PLURAL, ns, self.settings.strategy_name,
                                                {**self.runtime_status(), "tradingActive": False}), 3)
        except Exception:  # noqa: BLE001
            pass
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.api_client.close()
        # pybit's WebSocket threads are daemons that may outlive the loop: drop what
        # could still reach native objects so they are freed before interpreter exit.
        self.live_data = self.exchange = self.engine = None


def main() -> None:
    """Entry point of ``python -m hean.worker``."""
    settings = WorkerSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(Worker(settings).run())
    import gc

    gc.collect()
