"""Exchange execution and reconciliation for ``testnet``, ``demo`` and ``live``.

Orders (from :class:`hean.worker.engine.Engine`, through ``engine.executor``) go to
Bybit with pybit ``HTTP.place_order`` and a deterministic orderLinkId
(:mod:`orderlink`). The rules that make a retry, a timeout or a restart unable to
place a second order:

* the id is persisted before the first attempt and reused for every attempt of the
  same order;
* when the outcome of a create is unknown (timeout, HTTP 5xx, dropped connection)
  the order is *looked up by orderLinkId* (``/v5/order/realtime``) before anything
  else; only if the exchange does not know it after ``lookup_attempts`` is it sent
  again, with the same id (a duplicate would be refused with 110072, which is then
  resolved by another lookup);
* fills come from the private WebSocket ``execution`` topic (REST
  ``/v5/execution/list`` is the fallback at reconciliation) and are booked exactly
  once, keyed by ``execId``.

Every list read (executions, open orders, order history) follows Bybit's
``nextPageCursor`` (:meth:`BybitClient.paged`). Spot (``category: spot``): no
``reduceOnly``, ``marketUnit: baseCoin``, fees in the coin received, holdings from the
wallet, sub-step dust written off (docs/bybit.md).

Rejections (10001, 10003, 10004, 110007, ...) fail fast: the engine's pending slot is
released, the reject is counted under a bounded label and logged once.

Reconciliation (:meth:`ExchangeExecution.reconcile`, at start and every
``HEAN_BYBIT_RECONCILE_SECONDS``) reads open orders, positions and recent executions
and repairs the worker toward the exchange: missed fills are booked, unknown open
orders of this strategy adopted, finished orders released, and a remaining position
difference is booked as a zero-fee adjustment fill at the exchange's average price.
Every repair is logged, counted and reported (the worker posts an Event). A worker
that cannot reconcile does not open positions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from ..engine import Engine, Order
from ..ledger import ZERO, Fill, LedgerError
from ..state import Fenced, LeaseExpired, StateUnavailable, crash_point, engine_snapshot, position_view
from .client import BybitClient, OutcomeUnknown, RateLimited, Rejected, Unavailable
from .orderlink import OrderLinkIds

log = logging.getLogger("hean.worker.bybit")

OPEN_STATES = {"New", "PartiallyFilled", "Untriggered", "Created"}
DONE_STATES = {"Filled", "Cancelled", "Rejected", "PartiallyFilledCanceled", "Deactivated"}


@dataclass
class Tracked:
    """One order this worker sent: the engine's order, its lifecycle state (``sending`` ->
    ``open`` -> ``done``, or ``unknown`` after a timeout until looked up), Bybit's orderId,
    the cumulative filled qty (Decimal, base coin) and the send time (monotonic seconds).
    """
    order: Order
    state: str = "sending"  # sending -> open -> done | unknown
    order_id: str = ""
    cum_qty: Decimal = ZERO
    sent_at: float = 0.0


class ExchangeExecution:
    """Sends the engine's orders to Bybit through :class:`BybitClient` and books fills exactly
    once. Each order gets a durable orderLinkId before it is sent; after a timeout or 5xx
    the order is looked up by that id and resent (same id) only if the exchange does not
    know it. Executions are keyed by ``execId`` so a fill seen on the private stream and
    again over REST is booked once. :meth:`reconcile` compares open orders, positions and
    recent executions with the ledger and repairs toward the exchange's state.
    """
    def __init__(self, client: BybitClient, ids: OrderLinkIds, engine: Engine, category: str,
                 lookup_attempts: int = 3, lookup_delay: float = 0.5, max_resubmits: int = 2,
                 execution_window_ms: int = 24 * 3600 * 1000):
        self.client, self.ids, self.engine, self.category = client, ids, engine, category
        self.lookup_attempts, self.lookup_delay, self.max_resubmits = lookup_attempts, lookup_delay, max_resubmits
        self.window_ms = execution_window_ms
        self.orders: dict[str, Tracked] = {}
        self.exec_ids: set[str] = set()
        self.counters: Counter = Counter()
        self.rejects: Counter = Counter()
        self.repairs: Counter = Counter()
        self.reconciled = False
        self.last_reconcile: float | None = None
        self.last_reconcile_error: str | None = None
        self.exchange_equity: str | None = None
        self._last_exec_ms: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: set = set()
        self.on_repair = None  # callable(message) -> posts an Event
        self.obs = None  # the worker's metrics hooks (hean.worker.http.WorkerObservations)
        self.authenticated = False  # the private stream's last auth answer
        self.on_auth_failure = None  # callable() -> the runtime fixes the clock and reconnects
        self.state = None  # hean.worker.state.WorkerState (Redis: write-ahead intents, durable fills)

    # ---- durable state (issue 7) -------------------------------------------------------------
    def _durable(self) -> bool:
        return self.state is not None and self.state.store is not None

    async def _write_ahead(self, tr: Tracked) -> bool:
        """Record the intent (fenced) before the first send; False (order released) if
        this worker is fenced or Redis is unreachable: nothing is sent then."""
        o = tr.order
        intent = {"symbol": o.symbol, "side": o.side, "qty": str(o.qty), "reduceOnly": o.reduce_only,
                  "reason": o.reason, "createdMs": o.created_ts_ms, "stopDistance": str(o.stop_distance),
                  "targetDistance": str(o.target_distance)}
        try:
            await self.state.store.record_intent(o.order_link_id, intent)
        except Fenced:
            self._reject(tr, "FENCED")
            return False
        except LeaseExpired:
            self._reject(tr, "LEASE_EXPIRED")
            return False
        except StateUnavailable:
            self._reject(tr, "STATE_STORE_DOWN")
            return False
        return True

    def _persist_order(self, tr: Tracked) -> None:
        if self._durable():
            self.state.writer.submit(orders={tr.order.order_link_id: {
                "state": tr.state, "orderId": tr.order_id, "cumQty": str(tr.cum_qty)}})

    def _persist_fill(self, fill: Fill, tr: Tracked | None) -> None:
        if self._durable():
            led = self.engine.ledger
            orders = {}
            if tr is not None:
                orders[tr.order.order_link_id] = {"state": tr.state, "orderId": tr.order_id, "cumQty": str(tr.cum_qty)}
            self.state.writer.submit(fills=[fill], positions={fill.symbol: position_view(led)[fill.symbol]},
                                     orders=orders, blob=("engine", engine_snapshot(self.engine)))

    # ---- orders ---------------------------------------------------------------------------
    def submit(self, order: Order) -> None:
        """``engine.executor``: called on the loop when the engine queues an order."""
        self.orders[order.order_link_id] = Tracked(order, sent_at=time.monotonic())
        if len(self.orders) > 2000:  # keep memory bounded: forget the oldest finished orders
            for link in [k for k, t in self.orders.items() if t.state == "done"][:500]:
                del self.orders[link]
        self.counters["orders_submitted"] += 1
        task = asyncio.get_running_loop().create_task(self._send(order))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _spot_sell_qty(self, tr: Tracked) -> Decimal:
        """The qty a spot Sell can send: rounded down to the qty step (``basePrecision``).
        A Buy's fee is charged in base coin with more decimals than the step, so an exit of
        the whole holding leaves dust below the step that no order can sell; it is written
        off in the ledger (a zero-fee ``SPOT_DUST`` fill at the mark price, counted and
        logged) so the position can close; the coins stay in the wallet (reconciliation
        accepts coins beyond the ledger's)."""
        order = tr.order
        st = self.engine.symbols[order.symbol]
        send = st.instrument.round_qty(order.qty)
        held = self.engine.ledger.position(order.symbol).size
        dust = min(order.qty - send, held)
        if order.reduce_only and dust > 0:
            price = st.mark or self.engine.ledger.position(order.symbol).entry_price
            fill = Fill(f"dust-{order.order_link_id}", order.order_link_id, order.symbol, "Sell", dust, price, ZERO,
                        self.engine.now_ms, "taker", "SPOT_DUST")
            self.engine.on_exchange_fill(fill, False)
            self.counters["spot_dust_written_off"] += 1
            log.warning("spot %s: %s base coin below the qty step %s cannot be sold; written off in the ledger",
                        order.symbol, dust, st.instrument.qty_step)
        return send

    async def _send(self, order: Order) -> None:
        tr = self.orders[order.order_link_id]
        link = order.order_link_id
        resubmits = 0
        qty = order.qty
        if self.category == "spot" and order.side == "Sell":
            qty = self._spot_sell_qty(tr)
            if qty <= 0:
                self._reject(tr, "EXCHANGE_SPOT_DUST")
                return
        spot = self.category == "spot"  # no reduce-only on spot; a Market qty in base coin
        if self._durable() and not await self._write_ahead(tr):
            return
        crash_point("before_send")
        while True:
            if self._durable() and not self.state.store.lease_valid():
                self._reject(tr, "LEASE_EXPIRED")  # maybe fenced meanwhile: never send on a stale lease
                return
            t0 = time.monotonic()
            try:
                res = await asyncio.to_thread(
                    self.client.place_order, self.category, order.symbol, order.side, str(qty), link,
                    "Market", None, order.reduce_only and not spot, None, "baseCoin" if spot else None)
                crash_point("after_send")
                tr.order_id = res.get("orderId", "")
                if tr.state == "sending":
                    tr.state = "open"
                self._persist_order(tr)
                self.counters["orders_accepted"] += 1
                if self.obs is not None:
                    self.obs.observe_order_latency(time.monotonic() - t0)
                return
            except Rejected as e:
                if e.code in (110072, 170141):  # the id exists: an earlier attempt got through
                    self.counters["duplicates_prevented"] += 1
                    if await self._adopt_by_lookup(tr):
                        return
                self._reject(tr, "EXCHANGE_" + e.label)
                return
            except (RateLimited, Unavailable) as e:
                self._reject(tr, "EXCHANGE_" + e.label)
                return
            except OutcomeUnknown as e:
                self.counters["outcome_unknown"] += 1
                log.warning("order %s: outcome unknown (%s); looking it up by orderLinkId", link, e.label)
                if await self._adopt_by_lookup(tr):
                    return
                if resubmits >= self.max_resubmits:
                    tr.state = "unknown"
                    self.counters["orders_unresolved"] += 1
                    log.error("order %s: still unknown after %d resubmits; reconciliation will settle it",
                              link, resubmits)
                    return
                resubmits += 1
                self.counters["resubmits"] += 1
                log.warning("order %s: not on the exchange; resubmitting with the same orderLinkId", link)

    def _reject(self, tr: Tracked, reason: str) -> None:
        tr.state = "done"
        if reason not in ("FENCED", "STATE_STORE_DOWN", "LEASE_EXPIRED"):
            self._persist_order(tr)
        self.rejects[reason] += 1
        self.engine.on_order_closed(tr.order.symbol, tr.order.order_link_id, reason)

    async def _adopt_by_lookup(self, tr: Tracked) -> bool:
        """Look the order up by orderLinkId (a few attempts); adopt it if found."""
        for attempt in range(self.lookup_attempts):
            self.counters["lookups"] += 1
            try:
                found = await asyncio.to_thread(self.client.order_by_link, self.category, tr.order.order_link_id)
            except (Rejected, RateLimited, Unavailable) as e:
                log.warning("lookup of %s failed: %s", tr.order.order_link_id, e.label)
                found = None
            if found is not None:
                self.counters["orders_found_by_lookup"] += 1
                tr.order_id = found.get("orderId", "")
                self.on_order(found)
                if found.get("orderStatus") in DONE_STATES or Decimal(found.get("cumExecQty") or 0) > 0:
                    await self._fetch_executions(order_link_id=tr.order.order_link_id)
                if tr.state == "sending":
                    tr.state = "open"
                return True
            await asyncio.sleep(self.lookup_delay * (attempt + 1))
        return False

    # ---- private stream -------------------------------------------------------------------
    def on_private_frame(self, msg: dict) -> None:
        """Raw private WebSocket frame (on the loop)."""
        topic = msg.get("topic")
        if msg.get("op") == "auth":
            self.authenticated = bool(msg.get("success"))
            if not self.authenticated:
                self.counters["auth_failures"] += 1
                log.error("private stream authentication refused: %s", self.client.scrub(str(msg.get("retMsg") or
                                                                                              msg.get("ret_msg"))))
                if self.on_auth_failure is not None:
                    self.on_auth_failure()
            return
        if topic == "execution":
            for item in msg.get("data") or []:
                self.on_execution(item, source="ws")
        elif topic == "order":
            for item in msg.get("data") or []:
                self.on_order(item)
        elif topic == "wallet":
            for item in msg.get("data") or []:
                self.exchange_equity = item.get("totalEquity")

    def on_order(self, item: dict) -> None:
        """Apply one private-stream ``order`` item (Bybit v5 ``order`` topic): advance the tracked
        order's state; items for orderLinkIds this worker did not send are ignored.
        """
        link = item.get("orderLinkId") or ""
        tr = self.orders.get(link)
        if tr is None:
            return
        status = item.get("orderStatus", "")
        if status in OPEN_STATES and tr.state == "sending":
            tr.state = "open"
        if status in ("Cancelled", "Rejected", "Deactivated", "PartiallyFilledCanceled") and tr.state != "done":
            tr.state = "done"
            reason = "EXCHANGE_ORDER_" + status.upper() if status != "Cancelled" or tr.cum_qty == 0 else None
            if reason:
                self.rejects[reason] += 1
            self.engine.on_order_closed(tr.order.symbol, link, reason)

    def on_execution(self, item: dict, source: str = "ws") -> bool:
        """Book one execution exactly once; returns True if it was new."""
        if item.get("execType", "Trade") != "Trade":
            self.counters["executions_non_trade"] += 1
            return False
        exec_id = item["execId"]
        if exec_id in self.exec_ids:
            self.counters["executions_duplicate_ignored"] += 1
            return False
        link = item.get("orderLinkId") or ""
        symbol = item.get("symbol", "")
        if not self.ids.owns(link) or symbol not in self.engine.symbols:
            self.counters["executions_foreign_ignored"] += 1
            return False
        tr = self.orders.get(link)
        qty, price, fee = Decimal(item["execQty"]), Decimal(item["execPrice"]), Decimal(item["execFee"])
        fee_ccy = item.get("feeCurrency") or "USDT"
        if self.category == "spot" and fee_ccy not in ("USDT", "USDC"):
            # Spot fees are charged in the coin received: a Buy's fee is base coin. Book the
            # base coin actually received and the fee's value in USDT, so the ledger's
            # position is the wallet's holding and its cash is what was paid (qty * price).
            qty, fee = qty - fee, fee * price  # exact: qty * price is what was paid
            self.counters["spot_fees_in_base_coin"] += 1
        fill = Fill(exec_id, link, symbol, item["side"], qty, price, fee, int(item["execTime"]),
                    "maker" if item.get("isMaker") else "taker", tr.order.reason if tr else "EXCHANGE")
        done = Decimal(item.get("leavesQty") or 0) == 0
        try:
            self.engine.on_exchange_fill(fill, done)
        except LedgerError as e:
            self.counters["executions_refused"] += 1
            log.error("execution %s refused by the ledger: %s", exec_id, e)
            return False
        self.exec_ids.add(exec_id)
        self.counters[f"fills_{source}"] += 1
        self._last_exec_ms = max(self._last_exec_ms or 0, fill.ts_ms)
        if tr is not None:
            tr.cum_qty += fill.qty
            if done:
                tr.state = "done"
        crash_point("after_fill")
        self._persist_fill(fill, tr)
        return True

    async def _fetch_executions(self, order_link_id: str | None = None, start_ms: int | None = None) -> int:
        new = 0
        for sym in self.engine.symbols:
            items = await asyncio.to_thread(self.client.executions, self.category, sym, start_ms)
            for item in sorted(items, key=lambda x: (int(x.get("execTime", 0)), x.get("seq", 0))):
                if order_link_id and item.get("orderLinkId") != order_link_id:
                    continue
                if self.on_execution(item, source="rest"):
                    new += 1
        return new

    # ---- reconciliation ----------------------------------------------------------------
    def _positions(self) -> list[dict]:
        """The exchange's positions as ``/v5/position/list`` rows (``symbol``, ``side``,
        ``size``, ``avgPrice``). Spot has no positions (the endpoint serves linear/inverse/
        option only): a spot holding is the base coin's ``walletBalance`` in
        ``/v5/account/wallet-balance`` (https://bybit-exchange.github.io/docs/v5/account/wallet-balance),
        reported as a long of that size. Blocking (runs in a thread)."""
        if self.category != "spot":
            return self.client.positions(self.category)
        coins = {c.get("coin"): c for c in (self.client.wallet().get("coin") or [])}
        rows = []
        for sym in self.engine.symbols:
            base = sym[:-4] if sym.endswith(("USDT", "USDC")) else sym
            held = Decimal((coins.get(base) or {}).get("walletBalance") or 0)
            if held > 0:
                rows.append({"symbol": sym, "side": "Buy", "size": str(held), "avgPrice": ""})
        return rows

    async def reconcile(self) -> dict:
        """Compare with the exchange and repair toward it; returns what was repaired.
        Raises the client's errors if the exchange cannot be read (the caller blocks
        trading until a reconcile succeeds)."""
        now_ms = int(time.time() * 1000)
        start = (self._last_exec_ms - 60_000) if self._last_exec_ms else now_ms - self.window_ms
        report: Counter = Counter()
        # Positions first: every fill inside them is also in the execution list read
        # next, so booking missed fills before comparing cannot double count.
        t_pos = int(time.time() * 1000) + self.client.http.offset_ms
        positions = await asyncio.to_thread(self._positions)
        # 1. executions we never booked (missed WebSocket frames, a restart)
        report["missedFills"] = await self._fetch_executions(start_ms=max(start, now_ms - self.window_ms))
        # 2. orders
        open_orders = await asyncio.to_thread(self.client.open_orders, self.category)
        seen_links = {o.get("orderLinkId", "") for o in open_orders}
        # never hand out an id the exchange has seen (open orders, executions, ours)
        self.ids.ensure_above(seen_links | set(self.orders) | {f.order_link_id for f in self.engine.ledger.fills})
        for o in open_orders:
            link = o.get("orderLinkId", "")
            known = self.orders.get(link)
            if known is not None and known.state == "unknown":
                known.state = "open"  # a write-ahead intent from before a restart: it is live
                known.order_id = o.get("orderId", "")
                self._persist_order(known)
            if self.ids.owns(link) and link not in self.orders and o.get("symbol") in self.engine.symbols:
                report["adoptedOrders"] += 1
                log.warning("reconcile: adopting open order %s on %s unknown to this worker", link, o.get("symbol"))
                order = Order(link, o["symbol"], o["side"], Decimal(o["qty"]), bool(o.get("reduceOnly")),
                              "ADOPTED", self.engine.now_ms)
                self.orders[link] = Tracked(order, state="open", order_id=o.get("orderId", ""))
                st = self.engine.symbols[o["symbol"]]
                if st.pending is None:
                    st.pending = order
        for link, tr in list(self.orders.items()):
            if tr.state in ("open", "unknown") and link not in seen_links and time.monotonic() - tr.sent_at > 2:
                found = await asyncio.to_thread(self.client.order_by_link, self.category, link)
                if found is None or found.get("orderStatus") in DONE_STATES:
                    report["closedOrders"] += 1
                    tr.state = "done"
                    self._persist_order(tr)
                    self.engine.on_order_closed(tr.order.symbol, link, None)
        # 3. positions (skipped for a symbol with an order in flight or a fill newer
        # than the position read: the next reconcile compares it)
        by_symbol = {p["symbol"]: p for p in positions}
        for sym in self.engine.symbols:
            busy = any(t.order.symbol == sym and t.state in ("sending", "open", "unknown") for t in self.orders.values())
            fresh = any(f.symbol == sym and f.ts_ms >= t_pos - 1000 for f in self.engine.ledger.fills[-50:])
            if busy or fresh:
                report["positionChecksDeferred"] += 1
                continue
            p = by_symbol.get(sym)
            size = Decimal(p["size"]) if p and p.get("size") else ZERO
            exch = size if (p or {}).get("side") == "Buy" else -size if (p or {}).get("side") == "Sell" else ZERO
            mine = self.engine.ledger.position(sym).size
            if self.category == "spot" and exch >= mine:
                continue  # coins beyond the ledger's are not this strategy's (another holder of the account)
            if exch != mine:
                diff = exch - mine
                price = Decimal(p.get("avgPrice") or p.get("markPrice") or 0) if p else ZERO
                if price <= 0:
                    price = self.engine.symbols[sym].mark or Decimal(1)
                fill = Fill(f"reconcile-{sym}-{now_ms}", f"reconcile-{sym}", sym, "Buy" if diff > 0 else "Sell",
                            abs(diff), price, ZERO, now_ms, "taker", "RECONCILE")
                log.warning("reconcile: %s position %s on the exchange, %s in the ledger: booking %s %s @ %s",
                            sym, exch, mine, fill.side, fill.qty, price)
                self.engine.on_exchange_fill(fill, False)
                self._persist_fill(fill, None)
                report["positionRepairs"] += 1
        try:
            self.exchange_equity = (await asyncio.to_thread(self.client.wallet)).get("totalEquity")
        except (Rejected, RateLimited, Unavailable):
            pass
        for k, v in report.items():
            self.repairs[k] += v
            if self.obs is not None and k != "positionChecksDeferred":
                for _ in range(v):
                    self.obs.count_reconcile_mismatch()
        self.reconciled = True
        self.last_reconcile = time.time()
        self.last_reconcile_error = None
        self.counters["reconciles"] += 1
        out = {k: v for k, v in report.items() if v and k != "positionChecksDeferred"}
        if out:
            self.counters["reconciles_with_repairs"] += 1
            msg = "reconciled toward the exchange: " + ", ".join(f"{k}={v}" for k, v in sorted(out.items()))
            log.warning(msg)
            if self.on_repair is not None:
                self.on_repair(msg)
        return out

    def snapshot(self) -> dict:
        return {
            "reconciled": self.reconciled, "lastReconcile": self.last_reconcile,
            "lastReconcileError": self.last_reconcile_error, "exchangeEquity": self.exchange_equity,
            "counters": dict(self.counters), "rejects": dict(self.rejects), "repairs": dict(self.repairs),
            "clientErrors": dict(self.client.errors), "clientRejects": dict(self.client.rejects),
            "orders": {k: {"symbol": t.order.symbol, "side": t.order.side, "qty": str(t.order.qty),
                           "state": t.state, "cumQty": str(t.cum_qty)} for k, t in list(self.orders.items())[-50:]},
        }
