"""Wiring of the Bybit parts into the worker (used by :mod:`hean.worker.app`).

* :func:`fetch_instruments` - instrument rules over REST (live market data).
* :class:`LiveData` - the public feed driving ``Engine.on_bar`` (paper or exchange
  execution), optionally recording.
* :class:`ExchangeRuntime` - exchange execution for ``testnet``/``demo``/``live``:
  credentials from the environment only, the shared budget, orderLinkIds, the private
  stream, reconciliation at start and every ``reconcile_seconds``. Until a
  reconciliation succeeds (and whenever one fails) the engine is blocked with
  ``EXCHANGE_NOT_RECONCILED``; while the market data is stale it is blocked with
  ``MARKET_DATA_STALE`` (exits are still managed).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from hean.marketdata import Instrument, _instrument_from_record

from .budget import RateBudget
from .client import BybitClient, BybitError, key_fingerprint
from .endpoints import Endpoints
from .execution import ExchangeExecution
from .feed import LiveFeed
from .orderlink import OrderLinkIds
from .recorder import Recorder
from .stream import ManagedSocket, set_pybit_urls

log = logging.getLogger("hean.worker.bybit")

B_NOT_RECONCILED = "EXCHANGE_NOT_RECONCILED"
B_STALE = "MARKET_DATA_STALE"
B_PRIVATE_DOWN = "EXCHANGE_STREAM_DOWN"
B_FENCED, B_STATE_DOWN, B_LEASE, B_LEASE_EXPIRED = "FENCED", "STATE_STORE_DOWN", "LEASE_HELD", "LEASE_EXPIRED"
KEY_ENV, SECRET_ENV = "BYBIT_API_KEY", "BYBIT_API_SECRET"


@dataclass(frozen=True)
class ConnectionSettings:
    """The Bybit connection tunables one worker uses: ``orderbook_depth`` (levels),
    ``stale_seconds``, ``reconcile_seconds``, ``dcp_seconds`` (0 = off, else 3..300),
    ``recv_window_ms``."""
    orderbook_depth: int = 50
    stale_seconds: float = 10.0
    reconcile_seconds: float = 30.0
    dcp_seconds: int = 0
    recv_window_ms: int = 5000
    source: str = "env"  # "spec" when spec.bybit set them


def connection_settings(spec, settings=None) -> ConnectionSettings:
    """``spec.bybit`` (a :class:`hean.worker.config.BybitSpec`, all fields defaulted by the
    CRD) when the strategy has one, else the worker's environment (``HEAN_BYBIT_*``, the
    operator-wide defaults from ``HEAN_WORKER_BYBIT_*``), else the built-in defaults."""
    b = getattr(spec, "bybit", None)
    if b is not None:
        return ConnectionSettings(b.orderbookDepth, b.staleSeconds, b.reconcileSeconds, b.deadManSwitchSeconds,
                                  b.recvWindowMs, "spec")
    d = ConnectionSettings()
    return ConnectionSettings(getattr(settings, "bybit_orderbook_depth", d.orderbook_depth),
                              getattr(settings, "bybit_stale_seconds", d.stale_seconds),
                              getattr(settings, "bybit_reconcile_seconds", d.reconcile_seconds),
                              getattr(settings, "bybit_dcp_seconds", d.dcp_seconds),
                              getattr(settings, "bybit_recv_window_ms", d.recv_window_ms))


def credentials_from_env(env=None) -> tuple[str, str]:
    """The API key and secret from ``BYBIT_API_KEY``/``BYBIT_API_SECRET`` (set by the
    operator from the strategy's Secret). Raises ValueError naming the variable; the
    values themselves never appear in the message."""
    env = os.environ if env is None else env
    key, secret = env.get(KEY_ENV, "").strip(), env.get(SECRET_ENV, "").strip()
    for name, val in ((KEY_ENV, key), (SECRET_ENV, secret)):
        if not val:
            raise ValueError(f"environment variable {name} is empty or missing: the credentials Secret "
                             "(spec.credentialsSecretRef) must hold the API key and secret")
    return key, secret


def fetch_instruments_doc(rest_url: str, category: str, symbols: list[str]) -> tuple[dict[str, Instrument], dict]:
    """Instrument rules of ``symbols`` from ``/v5/market/instruments-info`` and the
    response (for the recorder); raises ValueError naming the symbols that have none."""
    client = BybitClient(None, None, rest_url)
    result = client.call("get_instruments_info", category=category)
    got = {it["symbol"]: _instrument_from_record(category, it) for it in result.get("list", [])
           if it.get("symbol") in symbols}
    missing = [s for s in symbols if s not in got]
    if missing:
        raise ValueError(f"no {category} instrument info on {rest_url} for spec.symbols {missing}")
    return got, {"retCode": 0, "retMsg": "OK", "result": result}


def fetch_instruments(rest_url: str, category: str, symbols: list[str]) -> dict[str, Instrument]:
    """Instrument rules of ``symbols`` (see :func:`fetch_instruments_doc`)."""
    return fetch_instruments_doc(rest_url, category, symbols)[0]


class Blocks:
    """Reasons the engine must not open positions, combined into
    ``engine.blocked_reason`` (first one wins)."""

    ORDER = (B_FENCED, B_STATE_DOWN, B_LEASE, B_LEASE_EXPIRED, B_NOT_RECONCILED, B_PRIVATE_DOWN, B_STALE)

    def __init__(self):
        self.active: set[str] = set()
        self.engine = None

    def set(self, reason: str, on: bool) -> None:
        (self.active.add if on else self.active.discard)(reason)
        if self.engine is not None:
            self.engine.blocked_reason = next((r for r in self.ORDER if r in self.active), None)


def book_to_engine(engine, symbol: str, book, ts_ms: int) -> None:
    """Hand the top of a live book (:class:`hean.worker.bybit.book.NativeBook` or
    ``OrderBook``) to ``engine.on_book`` as a :class:`hean.worker.strategies.BookTop`,
    sizes summed over ``spec.params.depthLevels`` levels (1 if the strategy has none)."""
    from ..strategies import BookTop

    depth = int(getattr(engine.spec.params, "depthLevels", 1))
    bids, asks = book.levels("b", depth), book.levels("a", depth)
    if bids and asks and hasattr(engine, "on_book"):
        engine.on_book(symbol, BookTop(ts_ms, bids[0][0], asks[0][0], sum(q for _, q in bids),
                                       sum(q for _, q in asks), depth))


class LiveData:
    """The public feed for one engine (``spec.marketData.source: live``)."""

    def __init__(self, engine, endpoints: Endpoints, interval: str, depth: int, stale_after: float,
                 blocks: Blocks, record_dir: Path | None = None, instruments_response: dict | None = None):
        self.engine, self.blocks = engine, blocks
        set_pybit_urls(endpoints.ws_public, endpoints.ws_private)
        recorder = None
        if record_dir is not None:
            recorder = Recorder(record_dir, interval, instruments_response or {}, endpoints.rest)
        self.feed = LiveFeed(list(engine.symbols), interval, depth, self._on_bar, engine.spec.category,
                             stale_after=stale_after, recorder=recorder,
                             instruments={s: st.instrument for s, st in engine.symbols.items()})
        self.bars = 0
        self.on_bar = None  # extra hook (the worker's cursor)
        self.feed.on_book = self._on_book
        self.feed.on_funding = self._on_funding
        self.feed.on_trade = self._on_trade

    def _on_trade(self, symbol, ts_ms: int, price, qty, side: str) -> None:
        if hasattr(self.engine, "on_trade"):
            self.engine.on_trade(symbol, ts_ms, price, qty, side)

    def _on_book(self, symbol, book, ts_ms: int) -> None:
        book_to_engine(self.engine, symbol, book, ts_ms)

    def _on_funding(self, symbol, rate, settled_ms: int, next_ms: int) -> None:
        if hasattr(self.engine, "on_funding"):
            self.engine.on_funding(symbol, rate, settled_ms, next_ms)

    def _on_bar(self, symbol, bar) -> None:
        book = self.feed.books.get(symbol)  # RiskPolicy autoQuarantine.maxSpreadBps, checked once per candle
        if book is not None and book.valid and hasattr(self.engine, "on_spread"):
            bb, ba = book.best_bid(), book.best_ask()
            if bb and ba:
                self.engine.on_spread(symbol, bb[0], ba[0])
        self.engine.on_bar(symbol, bar)
        self.bars += 1
        if self.on_bar is not None:
            self.on_bar(symbol, bar)

    async def run(self) -> None:
        task = asyncio.create_task(self.feed.run())
        try:
            while True:
                self.blocks.set(B_STALE, self.feed.stale)
                await asyncio.sleep(0.25)
        finally:
            task.cancel()
            self.feed.stop()


class ExchangeRuntime:
    """Exchange execution for one engine."""

    def __init__(self, engine, namespace: str, name: str, endpoints: Endpoints, state_dir: Path,
                 blocks: Blocks, reconcile_seconds: float = 30.0, timeout: float = 5.0, order_rate: int = 10,
                 env=None, dcp_seconds: int = 0, recv_window_ms: int = 5000, state=None):
        key, secret = credentials_from_env(env)
        self.fingerprint = key_fingerprint(key)
        self.engine, self.blocks = engine, blocks
        self.reconcile_seconds = reconcile_seconds
        if dcp_seconds and not 3 <= dcp_seconds <= 300:
            raise ValueError(f"spec.bybit.deadManSwitchSeconds / HEAN_BYBIT_DCP_SECONDS must be 0 (off) or 3..300, "
                             f"got {dcp_seconds}")
        self.dcp_seconds = dcp_seconds
        self.dcp_state = "off" if not dcp_seconds else "pending"
        set_pybit_urls(endpoints.ws_public, endpoints.ws_private)
        self.state = state  # hean.worker.state.WorkerState or None (per-node files, in-memory state)
        store = state.store if state is not None else None
        if store is not None:  # shared across nodes through Redis (issue 7)
            from ..state import RedisOrderLinkIds, RedisRateBudget
            budget = RedisRateBudget(self.fingerprint, store.r, per_second=order_rate)
            self.ids = RedisOrderLinkIds(namespace, name, store)
        else:
            budget = RateBudget(self.fingerprint, per_second=order_rate, state_dir=Path(state_dir) / "budget")
            self.ids = OrderLinkIds(namespace, name, Path(state_dir) / "orderlink")
        self.client = BybitClient(key, secret, endpoints.rest, budget=budget, timeout=timeout,
                                  recv_window=recv_window_ms)
        self.execution = ExchangeExecution(self.client, self.ids, engine, engine.spec.category)
        self.execution.state = state
        topics = ["order", "execution", "position", "wallet"]
        if dcp_seconds:
            # DCP only fires when every private connection subscribed to "dcp.<product>" is gone
            # (https://bybit-exchange.github.io/docs/v5/websocket/private/dcp)
            topics.append("dcp.spot" if engine.spec.category == "spot" else "dcp.future")
        self.private = ManagedSocket("private", topics, self._private_frame,
                                     api_key=key, api_secret=secret, name="private")
        self.loop = None
        self.reconcile_now = asyncio.Event()
        self.private.on_healthy = lambda: self.execution.authenticated
        self.execution.on_auth_failure = self._auth_failed
        engine.executor = self.execution.submit
        engine.link_ids = self.ids.next
        blocks.set(B_NOT_RECONCILED, True)
        log.info("exchange execution via %s (key fingerprint %s, orderLinkId prefix %s)", endpoints.rest,
                 self.fingerprint, self.ids.prefix)

    def _private_frame(self, msg: dict) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.execution.on_private_frame, msg)

    def _auth_failed(self) -> None:
        """The private stream's auth was refused: maybe our clock (re-measure it),
        maybe the keys (then the backoff grows and the worker stays blocked)."""
        async def fix():
            try:
                await asyncio.to_thread(self.client.sync_clock)
            except Exception as e:  # noqa: BLE001 - the reconnect below retries anyway
                log.warning("clock sync after an auth refusal failed: %s", type(e).__name__)
            self.private.back_off("authentication refused")
        self.loop.create_task(fix())

    async def _private_loop(self) -> None:
        connects = 0
        while True:
            # pybit signs the auth with the local clock: "expires" must be in the
            # future on the exchange's clock (10002-measured offset).
            self.private.auth_expire_s = 10 + max(self.client.http.offset_ms, 0) // 1000 + 1
            if not self.private.connected() or self.private._force:
                self.execution.authenticated = False  # a new connection: wait for its auth answer
            up = await self.private.ensure()
            self.blocks.set(B_PRIVATE_DOWN, not (up and self.execution.authenticated))
            if self.private.connects > connects:
                if connects:
                    self.reconcile_now.set()  # fills may have been missed while it was down
                connects = self.private.connects
            await asyncio.sleep(0.25)

    async def arm_dead_man_switch(self) -> None:
        """Bybit's Disconnection Protect: cancel all open orders if the private stream
        stays down for ``dcp_seconds`` (3..300). Only where the account allows it:
        a refusal is logged and counted, and trading goes on without it."""
        if not self.dcp_seconds or self.dcp_state == "armed":
            return
        try:
            await asyncio.to_thread(self.client.call, "set_dcp", timeWindow=self.dcp_seconds,
                                    product="SPOT" if self.engine.spec.category == "spot" else "DERIVATIVES")
        except BybitError as e:
            self.dcp_state = f"unavailable ({e.label})"
            self.execution.counters["dcp_unavailable"] += 1
            log.warning("exchange-side dead-man switch not available for this account: %s", e.label)
            return
        self.dcp_state = "armed"
        self.execution.counters["dcp_armed"] += 1
        log.info("exchange-side dead-man switch armed: open orders are cancelled after %ds without the private "
                 "stream", self.dcp_seconds)

    async def reconcile_once(self) -> bool:
        """Reconcile with the exchange once; on failure block new orders
        (``EXCHANGE_NOT_RECONCILED``), count and log it, and return False.
        """
        try:
            await self.execution.reconcile()
        except (BybitError, OSError, ValueError, KeyError) as e:
            self.execution.last_reconcile_error = f"{type(e).__name__}: {e}"
            self.execution.counters["reconcile_failures"] += 1
            log.error("reconciliation failed, not trading until it succeeds: %s", self.execution.last_reconcile_error)
            self.blocks.set(B_NOT_RECONCILED, True)
            return False
        self.blocks.set(B_NOT_RECONCILED, False)
        return True

    async def restore(self) -> dict:
        """Durable start (Redis): wait for the lease, load the ledger, positions, engine
        state and order intents; an intent without a known outcome is tracked as
        ``unknown`` so the first reconciliation looks it up by orderLinkId (it is never
        sent again). Returns counts of what was loaded."""
        import time

        from ..engine import Order
        from ..state import restore_engine
        from .execution import Tracked

        st = self.state
        t0 = time.monotonic()
        await st.acquire_lease()
        data = await st.store.load()
        restore_engine(self.engine, data["fills"], data["blobs"].get("engine"))
        ex = self.execution
        ex.exec_ids = {f.exec_id for f in data["fills"]}
        real = [f.ts_ms for f in data["fills"] if not f.exec_id.startswith("reconcile-")]
        ex._last_exec_ms = max(real) if real else None
        unknown = 0
        for link, it in data["intents"].items():
            o = data["orders"].get(link) or {}
            if o.get("state") == "done" or it.get("symbol") not in self.engine.symbols:
                continue
            order = Order(link, it["symbol"], it["side"], Decimal(it["qty"]), bool(it.get("reduceOnly")),
                          it.get("reason", "RESTORED"), int(it.get("createdMs") or 0),
                          Decimal(it.get("stopDistance") or 0), Decimal(it.get("targetDistance") or 0))
            ex.orders[link] = Tracked(order, state="unknown", order_id=o.get("orderId", ""),
                                      cum_qty=Decimal(o.get("cumQty") or 0), sent_at=0.0)
            self.engine.symbols[it["symbol"]].pending = order
            unknown += 1
        await self.ids.start()
        links = list(data["intents"])
        if links:
            await asyncio.to_thread(self.ids.ensure_above, links)
        st.loaded = True
        st.load_seconds = time.monotonic() - t0
        st.on_recovered = self._state_recovered
        out = {"fills": len(data["fills"]), "intents": len(data["intents"]), "unresolvedIntents": unknown}
        log.info("state restored from Redis: %s (lease token %s)", out, st.store.token)
        return out

    def _state_recovered(self) -> None:
        """Redis is back / the lease is ours again: no new orders until a reconciliation
        with the exchange succeeded (fills may have happened while writes were refused)."""
        from ..state import engine_snapshot, position_view

        self.blocks.set(B_NOT_RECONCILED, True)
        # Redis may have lost its last second of writes (AOF everysec, a node crash):
        # commit the whole in-memory ledger again (exactly once by execId)
        led = self.engine.ledger
        self.state.writer.submit(fills=list(led.fills), positions=position_view(led),
                                 blob=("engine", engine_snapshot(self.engine)))
        self.reconcile_now.set()

    async def _state_loop(self) -> None:
        st = self.state
        tasks = [asyncio.create_task(st.lease_loop()), asyncio.create_task(st.writer.run())]
        try:
            while True:
                why = st.blocked()
                for b in (B_FENCED, B_STATE_DOWN, B_LEASE, B_LEASE_EXPIRED):
                    self.blocks.set(b, why == b)
                await asyncio.sleep(0.1)
        finally:
            for t in tasks:
                t.cancel()

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.execution.loop = self.loop
        state_task = None
        if self.state is not None and self.state.store is not None:
            self.blocks.set(B_LEASE, True)
            await self.restore()
            state_task = asyncio.create_task(self._state_loop())
        priv = asyncio.create_task(self._private_loop())
        try:
            while True:
                ok = await self.reconcile_once()
                if ok and self.dcp_state == "pending":
                    await self.arm_dead_man_switch()
                try:
                    await asyncio.wait_for(self.reconcile_now.wait(), self.reconcile_seconds if ok else 2.0)
                except asyncio.TimeoutError:
                    pass
                self.reconcile_now.clear()
        finally:
            priv.cancel()
            if state_task is not None:
                state_task.cancel()
            self.private.shutdown()

    def snapshot(self) -> dict:
        return {"keyFingerprint": self.fingerprint, "orderLinkIdPrefix": self.ids.prefix, "deadManSwitch": self.dcp_state,
                "privateStream": {"connected": self.private.connected(), "reconnects": self.private.reconnects},
                **self.execution.snapshot()}
