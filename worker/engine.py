"""The worker's paper-trading engine: indicators -> impulse strategy -> risk -> fills -> ledger.

One :class:`Engine` per TradingStrategy. It is fed candles in time order
(:meth:`Engine.on_bar`) and is told about control changes (spec, RiskPolicy,
quarantines, pause) between candles; it never blocks and does no I/O, so the same
object serves a replay and a live paper feed.

Execution model (paper, documented so results can be checked by hand). Paper fills
are ONE C++ model shared with the native replay (``native/include/hean/fill.hpp``,
called here through :mod:`hean.engine.fill`): fill prices, fees, reduce-only clipping,
stop/target levels and the candle exit trigger are computed by the same code in
replay and live paper trading, so the two cannot drift apart. The exchange path
(``executor`` set) books the exchange's fills instead.

* A decision taken on a candle's close is sent as a market order and filled at the
  **next** candle's open of that symbol (no look-ahead), worsened by
  ``spec.execution.slippageBps`` and rounded to the tick against the trader.
* Stop-loss and take-profit are checked against each candle's low/high; if both
  are touched in one candle the stop is assumed first (conservative). A gap
  through the stop fills at the open.
* Fees are Bybit's non-VIP rates (https://www.bybit.com/en/help-center/article/Trading-Fee-Structure):
  USDT perpetuals taker 0.055 %, maker 0.02 %; spot 0.1 % / 0.1 %. Paper market
  orders pay taker.
* Quantities are rounded down to the instrument's qty step; orders below the
  minimum order qty or minimum notional are rejected like Bybit does (retCode
  110094 / 170140 semantics) and counted under ``BELOW_MIN_ORDER``.

Strategies (:mod:`hean.worker.strategies`, one instance per symbol, chosen by
``spec.strategy``) see candles, book tops, funding and spot-leg candles and answer
with order intents or a reason code; this engine gates them (Risk Governor, order
rate, open positions, notional and leverage room, minimum order), sizes them (risk
over the stop distance, a notional, or a quantity), fills them and keeps the
candle stop-loss/take-profit and the cooldown after each exit. Book-driven orders
(``Engine.on_book``) fill at once at the touch; funding settlements
(``Engine.on_funding``) pay or charge ``size * mark * rate`` into ``funding``.

Risk Governor (HEAN): ``NORMAL`` < ``SOFT_BRAKE`` (drawdown >= soft limit: entries
sized by ``softBrakeSizeFactor``; 0 blocks them; released below 80 % of the limit) < ``QUARANTINE`` (a symbol of the
strategy is quarantined: no entries on it) < ``HARD_STOP`` (drawdown >= hard limit
or daily loss >= limit: pending orders cancelled, positions flattened, no new
orders; latched until a human sets the ``hean.io/clear-hard-stop`` annotation to a
time after the stop). Entries sent but not filled yet count against
``maxOpenPositions`` and the leverage room.

RiskPolicy safety features (flash crash, profit capture, volatility regimes,
auto-quarantine, per-order notional and per-trade risk caps, the limit-first order
router, the decision log with gating flags) live in ``worker/risk.py`` and
``worker/router.py``; this module only calls them. All are off by default, which
keeps this engine fill-for-fill equal to the native kernel (``hean.engine``).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from hean import api
from hean.engine import fill as _fillmodel  # the C++ paper-fill model shared with the native replay
from hean.marketdata import Bar, Instrument

from . import router as _router
from .config import RiskPolicySpec, StrategySpec
from .ledger import ZERO, Fill, Ledger
from .risk import R_AUTO_QUARANTINED, R_FLASH_CRASH, R_ORDER_NOTIONAL, R_PROFIT_PAUSE, RR_AUTO_QUARANTINE, RR_FLASH_CRASH, Safety  # noqa: F401
from .strategies import STRATEGIES, BookTop, OrderIntent, PositionView, Strategy
from .strategies.scanner import Scanner

BPS = Decimal("0.0001")
SOFT_BRAKE_RELEASE = Decimal("0.8")  # SOFT_BRAKE clears below 80 % of the soft limit
FEES = {  # (taker, maker) as fractions of notional
    "linear": (Decimal("0.00055"), Decimal("0.0002")),
    "spot": (Decimal("0.001"), Decimal("0.001")),
}

# Reason codes (why an entry was not made), in the order they are checked.
R_NO_POLICY = "NO_RISK_POLICY"
R_PAUSED = "PAUSED"
R_HARD_STOP = "HARD_STOP"
R_QUARANTINED = "SYMBOL_QUARANTINED"
R_SOFT_BRAKE = "SOFT_BRAKE"
R_WARMING_UP = "WARMING_UP"
R_COOLDOWN = "COOLDOWN"
R_NO_SIGNAL = "NO_SIGNAL"
R_SPOT_NO_SHORT = "SPOT_NO_SHORT"
R_ORDER_RATE = "ORDER_RATE_LIMIT"
R_MAX_POSITIONS = "MAX_OPEN_POSITIONS"
R_NOTIONAL = "MAX_POSITION_NOTIONAL"
R_MIN_ORDER = "BELOW_MIN_ORDER"
R_PENDING = "ORDER_PENDING"
R_REPLAY_DONE = "REPLAY_FINISHED"
R_NO_DATA = "MARKET_DATA_MISSING"
R_POST_ONLY = "POST_ONLY_WOULD_TAKE"
INTERVAL_MS = {"1": 60_000, "5": 300_000, "60": 3_600_000}
R_LEG_IMBALANCE = "LEG_IMBALANCE"
R_NOT_PICKED = "NOT_SCANNER_PICK"
R_LEG_ON_EXCHANGE = "SPOT_LEG_PAPER_ONLY"
R_API_UNREACHABLE = "API_UNREACHABLE"  # Kubernetes API unreachable too long: exits only
R_PROMOTION_HALTED = "PROMOTION_HALTED"  # the promotion controller halted the worker (docs/promotion.md)
CLOSE_HISTORY = 50_000  # closes kept per symbol for the selector's regime labels (hean.selector)

# Risk reason codes (why the risk state is above NORMAL).
RR_SOFT_DD = "SOFT_DRAWDOWN"
RR_HARD_DD = "HARD_DRAWDOWN"
RR_DAILY_LOSS = "DAILY_LOSS"
RR_QUARANTINE = "SYMBOL_QUARANTINE"


@dataclass
class Order:
    """A paper market order waiting for the next candle's open.

    ``order_link_id`` is deterministic (``<strategy[:20]>-<seq>``, <= 36 chars as Bybit
    requires); ``stop_distance``/``target_distance`` in USDT for entries."""

    order_link_id: str
    symbol: str
    side: str
    qty: Decimal
    reduce_only: bool
    reason: str
    created_ts_ms: int
    stop_distance: Decimal = ZERO
    target_distance: Decimal = ZERO
    order_type: str = "Market"  # "Limit" while resting under the limit-first router (worker/router.py)
    price: Decimal | None = None  # limit price, USDT
    post_only: bool = False
    fallback: str = ""  # why a limit became a market order (LIMIT_TIMEOUT, LIMIT_PRICE_MOVED)


@dataclass
class SymbolState:
    """Per-symbol trade state; the strategy instance (``strategy``, see
    :mod:`hean.worker.strategies`) holds the per-symbol indicator state."""

    symbol: str
    instrument: Instrument
    params: object
    strategy_cls: type = field(default=None, repr=False)
    strategy: Strategy = field(init=False)
    bars_seen: int = 0
    cooldown_left: int = 0
    stop_price: Decimal | None = None
    target_price: Decimal | None = None
    pending: Order | None = None
    mark: Decimal | None = None
    entry_orders: int = 0
    last_reason: str = R_WARMING_UP
    quarantined: bool = False
    category: str = "linear"
    leg_instrument: Instrument | None = None  # spot leg of a two-leg strategy
    leg_mark: Decimal | None = None
    leg_open: Decimal | None = None
    leg_fed: bool = False  # a spot-leg feed exists; else the leg is marked at the symbol's price
    leg_pending: Order | None = None
    book: BookTop | None = None

    def __post_init__(self) -> None:
        cls = self.strategy_cls or STRATEGIES["impulse"]
        self.strategy = cls(self.symbol, self.instrument, self.params, self.category)

    def reset_indicators(self, params) -> None:
        """(Re)create the strategy's indicators for ``params``; they warm up again."""
        self.params = params
        self.strategy.params = params
        self.strategy.reset()


class Engine:
    """Paper-trading engine of one TradingStrategy (see the module docstring).

    ``instruments`` maps symbol -> :class:`Instrument` for every symbol of the spec;
    raises KeyError naming a symbol that has none.
    """

    def __init__(self, name: str, spec: StrategySpec, policy: RiskPolicySpec | None,
                 instruments: dict[str, Instrument], labels: dict[str, str] | None = None):
        self.name = name
        self.spec = spec
        self.policy = policy
        self.labels = dict(labels or {})
        self.ledger = Ledger(capital=spec.capital)
        self.taker_fee, self.maker_fee = FEES[spec.category]
        self.symbols: dict[str, SymbolState] = {}
        strategy_cls = STRATEGIES[spec.strategy]
        for sym in spec.symbols:
            if sym not in instruments:
                raise KeyError(f"no instrument info for {spec.category} symbol {sym}")
            self.symbols[sym] = SymbolState(sym, instruments[sym], spec.params, strategy_cls, category=spec.category)
            self.symbols[sym].leg_instrument = instruments.get(f"{sym}.SPOT")
        self.peak_equity = spec.capital
        self.day: int | None = None
        self.day_start_equity = spec.capital
        self.risk_state = api.RISK_NORMAL
        self.risk_reasons: list[str] = []
        self.hard_stop_at: datetime | None = None
        self.hard_stop_cleared_at: datetime | None = None
        self.reasons: Counter = Counter()
        self.order_times: deque = deque()
        self.order_seq = 0
        self.orders_sent = 0
        self.rejects: Counter = Counter()
        self.now_ms = 0
        self.bars_processed = 0
        self.dropped: Counter = Counter()
        self.funding_events: list[tuple[int, str, Decimal, Decimal]] = []  # (ts_ms, symbol, rate, amount)
        self.risk_events: list[tuple[str, str, list[str]]] = []  # (old, new, reasons)
        self.hard_stop_cancelled = 0  # pending entry orders cancelled by the last HARD_STOP
        self._last_ts: dict[str, int] = {}
        # Exchange execution (testnet/demo/live, see hean.worker.bybit): when set,
        # ``executor(order)`` sends each queued order to the exchange, fills come back
        # through on_exchange_fill/on_order_closed, and candles never fill anything.
        # ``link_ids()`` hands out persisted orderLinkIds. None = paper (unchanged).
        self.executor = None
        self.link_ids = None
        self.blocked_reason: str | None = None  # e.g. EXCHANGE_NOT_RECONCILED, MARKET_DATA_STALE
        self.safety = Safety()  # RiskPolicy safety features + decision log (worker/risk.py)
        # spec.scanner: entries only on the scanner's picks (None = no scanner)
        self.scanner = Scanner(spec.scanner) if spec.scanner is not None else None
        # Set by the worker while the Kubernetes API has been unreachable for longer
        # than HEAN_API_UNREACHABLE_SECONDS: no new entries, exits still act.
        self.api_unreachable = False
        # Promotion (docs/promotion.md): halted = flatten every position, no new entries.
        self.halted = False
        self.close_history: dict[str, deque] = {s: deque(maxlen=CLOSE_HISTORY) for s in self.symbols}

    # ---- control changes -------------------------------------------------------
    def update_spec(self, spec: StrategySpec) -> None:
        """Apply a live-tunable spec change (params, paused, execution, riskPolicyRef).

        Indicators are rebuilt (and warm up again) only if ``params`` changed in a way
        that alters a period. Structural fields (symbols, category, capital, mode)
        are handled by the operator replacing the worker, not here.
        """
        if spec.strategy != self.spec.strategy:
            # structural (the operator replaces the worker): keep running the old strategy meanwhile
            spec = spec.model_copy(update={"strategy": self.spec.strategy, "params": self.spec.params})
        self.spec = spec
        for st in self.symbols.values():
            st.params = spec.params
            st.strategy.update_params(spec.params)
        if spec.scanner is None:
            self.scanner = None
        elif self.scanner is None:
            self.scanner = Scanner(spec.scanner)
        elif spec.scanner != self.scanner.spec:
            self.scanner.update_spec(spec.scanner)

    def update_policy(self, policy: RiskPolicySpec | None) -> None:
        """Apply a RiskPolicy change (None: the policy is missing; no entries)."""
        self.policy = policy
        self._evaluate_risk()

    def set_quarantined(self, symbols: set[str]) -> None:
        """Set which of the strategy's symbols are quarantined now."""
        for sym, st in self.symbols.items():
            st.quarantined = sym in symbols
        self._evaluate_risk()

    def clear_hard_stop(self, at: datetime) -> bool:
        """A human asked (annotation time ``at``) to clear a latched HARD_STOP.

        Clears it only if ``at`` is later than the stop; returns True if it did. The
        state then re-evaluates from the limits (and may stop again at once).
        """
        if self.hard_stop_at is not None and at > self.hard_stop_at:
            self.hard_stop_at = None
            self.hard_stop_cleared_at = at
            self.safety.transitions.append({"at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "from": api.RISK_HARD_STOP,
                                            "to": "CLEARED", "reasons": ["MANUAL_CLEAR_ANNOTATION"]})
            self.peak_equity = self.equity()
            self.day_start_equity = self.peak_equity
            self._evaluate_risk()
            return True
        return False

    # ---- figures ---------------------------------------------------------------
    @property
    def funding(self) -> Decimal:
        """Funding received (+) or paid (-) so far, USDT (the ledger's ``funding``)."""
        return self.ledger.funding

    def marks(self) -> dict[str, Decimal]:
        """Mark price per symbol (last close or book mid, USDT); a spot leg of a
        two-leg strategy is keyed ``<symbol>.SPOT``."""
        out = {s: st.mark for s, st in self.symbols.items() if st.mark is not None}
        for s, st in self.symbols.items():
            if st.leg_instrument is None and f"{s}.SPOT" not in self.ledger.positions:
                continue  # no spot leg on this symbol
            leg = st.leg_mark if st.leg_fed else st.mark
            if leg is not None:
                out[f"{s}.SPOT"] = leg
        return out

    def equity(self) -> Decimal:
        """Account equity in USDT at the current marks, plus funding received
        (minus paid) on perpetual positions."""
        return self.ledger.equity(self.marks())

    def drawdown_percent(self) -> Decimal:
        """Drawdown from peak equity, in percent (0..100)."""
        if self.peak_equity <= 0:
            return Decimal(100)
        dd = (self.peak_equity - self.equity()) / self.peak_equity * 100
        return max(dd, ZERO)

    def daily_loss(self) -> Decimal:
        """Loss since the start of the current UTC day of the data clock, USDT (>= 0)."""
        return max(self.day_start_equity - self.equity(), ZERO)

    # ---- risk ----------------------------------------------------------------------
    def _evaluate_risk(self) -> None:
        reasons: list[str] = []
        flash = None
        state = api.RISK_NORMAL
        pol = self.policy
        if pol is not None:
            dd = self.drawdown_percent()
            if dd >= pol.hardMaxDrawdownPercent:
                reasons.append(RR_HARD_DD)
            if self.daily_loss() >= pol.maxDailyLossUsdt:
                reasons.append(RR_DAILY_LOSS)
            flash = self.safety.flash.active_state(self.now_ms)
            if flash == api.RISK_HARD_STOP:
                reasons.append(RR_FLASH_CRASH)
            if reasons and self.hard_stop_at is None:
                self.hard_stop_at = datetime.fromtimestamp(self.now_ms / 1000, timezone.utc) if self.now_ms else datetime.now(timezone.utc)
            if self.hard_stop_at is not None:
                state = api.RISK_HARD_STOP
                if not reasons:
                    reasons.append("HARD_STOP_LATCHED")
            # Hysteresis: once braking, SOFT_BRAKE holds until the drawdown is back
            # below SOFT_BRAKE_RELEASE of the soft limit, so it does not flap at the line.
            soft_line = pol.softMaxDrawdownPercent
            if self.risk_state == api.RISK_SOFT_BRAKE:
                soft_line = soft_line * SOFT_BRAKE_RELEASE
            if dd >= soft_line:
                reasons.append(RR_SOFT_DD)
                if state == api.RISK_NORMAL:
                    state = api.RISK_SOFT_BRAKE
        if any(st.quarantined for st in self.symbols.values()):
            reasons.append(RR_QUARANTINE)
            if api.risk_severity(state) < api.risk_severity(api.RISK_QUARANTINE):
                state = api.RISK_QUARANTINE
        state = self._safety_state(state, reasons, flash)
        if state != self.risk_state:
            self.risk_events.append((self.risk_state, state, list(reasons)))
            self.safety.transition(self.now_ms, self.risk_state, state, reasons)
            entering_hard_stop = state == api.RISK_HARD_STOP
            self.risk_state = state
            if entering_hard_stop:
                self._flatten_all("HARD_STOP")
        self.risk_reasons = reasons

    def _flatten_all(self, reason: str) -> None:
        self.hard_stop_cancelled = 0
        for st in self.symbols.values():
            if st.pending is not None and not st.pending.reduce_only:
                self.hard_stop_cancelled += 1
            st.pending = None
            pos = self.ledger.positions.get(st.symbol)
            if pos is not None and pos.size != 0:
                self._queue(st, "Sell" if pos.size > 0 else "Buy", abs(pos.size), True, reason)

    # ---- orders and fills ---------------------------------------------------------
    def _queue(self, st: SymbolState, side: str, qty: Decimal, reduce_only: bool, reason: str,
               stop_distance: Decimal = ZERO, target_distance: Decimal = ZERO) -> Order | None:
        pol = self.policy
        if (pol is not None and not reduce_only and pol.maxOrderNotionalUsdt is not None and st.mark is not None
                and qty * st.mark > pol.maxOrderNotionalUsdt):
            self._reject(st, side, R_ORDER_NOTIONAL)
            return None
        self.order_seq += 1
        link = self.link_ids() if self.link_ids is not None else f"{self.name[:20]}-{self.order_seq}"[:36]
        order = Order(link, st.symbol, side, qty, reduce_only, reason, self.now_ms, stop_distance, target_distance)
        if pol is not None and st.mark is not None and _router.routes(pol.orderRouter, reason, self.executor is not None):
            order.order_type, order.post_only = _router.LIMIT, pol.orderRouter.postOnly
            order.price = _router.limit_price(pol.orderRouter, side, st.mark, st.instrument)
            if order.post_only and _router.would_take(side, order.price, st.mark):
                self.order_seq -= 1
                self._reject(st, side, R_POST_ONLY)
                return None
        self._record_order(st, order)
        st.pending = order
        self.orders_sent += 1
        self.order_times.append(self.now_ms)
        if self.executor is not None:
            self.executor(order)
        return order

    def _fill(self, st: SymbolState, side: str, qty: Decimal, ref_price: Decimal, ts_ms: int,
              order_link_id: str, reason: str, maker: bool = False, leg: bool = False) -> Fill:
        """Book one paper fill. Price and fee come from the shared C++ paper-fill model
        (:mod:`hean.engine.fill`, the code the native replay fills with)."""
        inst = (st.leg_instrument or st.instrument) if leg else st.instrument
        if maker:  # a resting limit fills at its own price, no slippage, maker fee
            price, rate = _fillmodel.maker_fill_price(ref_price), (FEES["spot"][1] if leg else self.maker_fee)
        else:
            price = _fillmodel.taker_fill_price(ref_price, side, Decimal(str(self.spec.execution.slippageBps)),
                                                inst.tick_size)
            rate = FEES["spot"][0] if leg else self.taker_fee
        fee = _fillmodel.fill_fee(qty, price, rate, inst.qty_step, inst.tick_size)
        symbol = f"{st.symbol}.SPOT" if leg else st.symbol
        fill = Fill(f"{order_link_id}-f", order_link_id, symbol, side, qty, price, fee, ts_ms,
                    "maker" if maker else "taker", reason)
        self.ledger.apply(fill)
        self.safety.autoq.on_accept(st.symbol)
        return fill

    def _execute_pending(self, st: SymbolState, bar: Bar) -> None:
        self._execute_at(st, bar.open, bar.ts_ms, bar)

    def _execute_at(self, st: SymbolState, ref_price: Decimal, ts_ms: int, bar: Bar | None = None) -> None:
        """Fill the symbol's pending order (and a pending spot-leg order) at
        ``ref_price`` (the next candle's open, or the touch for book-driven orders).
        A resting limit order of the order router (``RiskPolicy.spec.orderRouter``)
        is only matched against a candle (``bar``); without one it keeps resting."""
        leg = st.leg_pending
        if leg is not None:
            st.leg_pending = None
            leg_ref = st.leg_open if st.leg_fed and st.leg_open is not None else ref_price
            lpos = self.ledger.position(leg.symbol)
            linst = st.leg_instrument or st.instrument
            qty = _fillmodel.reduce_only_qty(leg.qty, lpos.size, leg.side, linst.qty_step) \
                if leg.reduce_only else leg.qty
            if qty is not None:
                self._fill(st, leg.side, qty, leg_ref, ts_ms, leg.order_link_id, leg.reason, leg=True)
        order = st.pending
        if order is None:
            return
        maker = False
        if order.order_type == _router.LIMIT:
            if bar is None:
                return  # keeps resting until the next candle
            outcome = _router.on_bar(self.policy.orderRouter if self.policy else None, order, bar) \
                if self.policy is not None else _router.FALLBACK_TIMEOUT
            if outcome is None:
                return  # keeps resting
            if outcome != _router.FILL:  # cancel the limit; a market order fills at the next open
                order.order_type, order.fallback, order.price = _router.MARKET, outcome, None
                self.reasons[outcome] += 1
                self.safety.decisions.add(self.now_ms, st.symbol, order.side, "sent", order.reason,
                                          {**self._flags(st), "orderType": "Market", "fallback": outcome,
                                           "reduceOnly": order.reduce_only})
                return
            maker = True
        st.pending = None
        pos = self.ledger.position(st.symbol)
        qty = order.qty
        if order.reduce_only:
            qty = _fillmodel.reduce_only_qty(qty, pos.size, order.side, st.instrument.qty_step)
            if qty is None:
                self.rejects["REDUCE_ONLY_NO_POSITION"] += 1
                return
        fill = self._fill(st, order.side, qty, order.price if maker else ref_price, ts_ms, order.order_link_id,
                          order.reason, maker)
        if order.reduce_only:
            if self.ledger.position(st.symbol).size == 0:
                st.stop_price = st.target_price = None
                st.cooldown_left = st.strategy.cooldown_bars
        elif order.stop_distance > 0:
            st.stop_price, st.target_price = _fillmodel.protective_prices(
                order.side, fill.price, order.stop_distance, order.target_distance, st.instrument.tick_size)

    def _check_exits(self, st: SymbolState, bar: Bar) -> None:
        pos = self.ledger.position(st.symbol)
        if pos.size == 0 or st.stop_price is None or st.target_price is None:
            return
        long = pos.size > 0
        hit = _fillmodel.exit_trigger(long, bar.open, bar.high, bar.low, st.stop_price, st.target_price)
        if hit is None:
            return
        why, ref = hit
        self.order_seq += 1
        link = f"{self.name[:20]}-{self.order_seq}"[:36]
        exit_side = "Sell" if long else "Buy"
        self.orders_sent += 1
        self._fill(st, exit_side, abs(pos.size), ref, bar.ts_ms, link, why)
        st.stop_price = st.target_price = None
        st.pending = None
        st.cooldown_left = st.strategy.cooldown_bars

    # ---- exchange execution (testnet/demo/live) ----------------------------------------
    def _check_exits_exchange(self, st: SymbolState, bar: Bar) -> None:
        """Stop-loss/take-profit touched on this candle: send a reduce-only market
        order (the exchange fills it; nothing is booked here)."""
        pos = self.ledger.position(st.symbol)
        if pos.size == 0 or st.stop_price is None or st.target_price is None or st.pending is not None:
            return
        long = pos.size > 0
        if (long and bar.low <= st.stop_price) or (not long and bar.high >= st.stop_price):
            why = "STOP_LOSS"
        elif (long and bar.high >= st.target_price) or (not long and bar.low <= st.target_price):
            why = "TAKE_PROFIT"
        else:
            return
        self._queue(st, "Sell" if long else "Buy", abs(pos.size), True, why)

    def on_exchange_fill(self, fill: Fill, order_done: bool) -> None:
        """Book one exchange execution (the caller dedupes by execution id; the ledger
        refuses a duplicate anyway) and update the symbol's stop/target and pending
        order. ``order_done``: the order has no quantity left."""
        st = self.symbols[fill.symbol]
        self.ledger.apply(fill)
        self.safety.autoq.on_accept(fill.symbol)
        if st.mark is None:
            st.mark = fill.price
        order = st.pending if st.pending is not None and st.pending.order_link_id == fill.order_link_id else None
        pos = self.ledger.position(fill.symbol)
        if pos.size == 0:
            st.stop_price = st.target_price = None
            st.cooldown_left = st.strategy.cooldown_bars
        elif order is not None and not order.reduce_only and order.stop_distance > 0:
            entry = pos.entry_price
            if pos.size > 0:
                st.stop_price = st.instrument.round_price(entry - order.stop_distance, "down")
                st.target_price = st.instrument.round_price(entry + order.target_distance, "up")
            else:
                st.stop_price = st.instrument.round_price(entry + order.stop_distance, "up")
                st.target_price = st.instrument.round_price(entry - order.target_distance, "down")
        if order_done and order is not None:
            st.pending = None

    def on_order_closed(self, symbol: str, order_link_id: str, reject_reason: str | None = None) -> None:
        """The exchange finished (cancelled/rejected/filled) order ``order_link_id``:
        release the symbol's pending slot; count ``reject_reason`` if given."""
        st = self.symbols.get(symbol)
        if st is not None and st.pending is not None and st.pending.order_link_id == order_link_id:
            st.pending = None
        if reject_reason:
            self.rejects[reject_reason] += 1
            if st is not None and self.policy is not None:
                self._auto_quarantine(self.safety.autoq.on_reject(self.policy.autoQuarantine, symbol, self.now_ms,
                                                                  reject_reason))

    # ---- the per-candle step -----------------------------------------------------
    def on_bar(self, symbol: str, bar: Bar) -> None:
        """Process one closed candle of ``symbol`` (candles must arrive in time order
        per symbol; an out-of-order or duplicate candle is dropped and counted)."""
        st = self.symbols[symbol]
        if st.bars_seen and bar.ts_ms <= self._last_ts.get(symbol, -1):
            self.dropped["out_of_order"] += 1
            return
        self._last_ts[symbol] = bar.ts_ms
        self.now_ms = max(self.now_ms, bar.ts_ms)
        self.bars_processed += 1
        day = bar.ts_ms // 86_400_000
        if self.day is None:
            self.day = day
        if self.executor is None:
            self._execute_pending(st, bar)
            self._check_exits(st, bar)
        else:
            self._check_exits_exchange(st, bar)
        st.mark = bar.close
        self.close_history[symbol].append((bar.ts_ms, float(bar.close)))
        st.bars_seen += 1
        if st.cooldown_left > 0:
            st.cooldown_left -= 1
        if self.scanner is not None:
            self.scanner.on_bar(symbol, bar)
        result = st.strategy.on_bar(bar, self._view(st))
        self._after_market_event(st, day, bar)
        self._decide(st, result)

    def _after_market_event(self, st: SymbolState, day: int | None = None, bar: Bar | None = None) -> None:
        if day is not None and day != self.day:
            self.day = day
            self.day_start_equity = self.equity()
        eq = self.equity()
        if eq > self.peak_equity and self.hard_stop_at is None:
            self.peak_equity = eq
        if bar is not None:  # the safety features evaluate per candle
            self._safety_step(st, bar, st.strategy.volatility(), eq)
        self._evaluate_risk()
        while self.order_times and self.order_times[0] <= self.now_ms - 60_000:
            self.order_times.popleft()

    def on_book(self, symbol: str, top: BookTop) -> None:
        """A top-of-book update of ``symbol`` (live order book or recorded frames).

        Book-driven strategies (``uses_book``): the mark becomes the mid, the strategy
        decides on it and its orders fill at once as takers at the touch (ask for a
        buy, bid for a sell, worsened by the slippage). Other strategies only
        remember it (e.g. impulse's spread filter); their marks stay candle closes.
        A crossed or non-positive top is dropped and counted (``bad_book``)."""
        st = self.symbols[symbol]
        if top.bid <= 0 or top.ask <= 0 or top.ask < top.bid:
            self.dropped["bad_book"] += 1
            return
        st.book = top
        result = st.strategy.on_book(top, self._view(st))
        if not st.strategy.uses_book:
            return
        self.now_ms = max(self.now_ms, top.ts_ms)
        if self.day is None:
            self.day = top.ts_ms // 86_400_000
        st.mark = top.mid
        self._after_market_event(st, top.ts_ms // 86_400_000)
        self._decide(st, result)
        if self.executor is None and st.pending is not None:
            self._execute_at(st, top.ask if st.pending.side == "Buy" else top.bid, top.ts_ms)

    def on_trade(self, symbol: str, ts_ms: int, price: Decimal, qty: Decimal, side: str) -> None:
        """A public trade of ``symbol`` (``side`` of the taker); book-driven strategies
        may act on it (fills at the current book top, as in :meth:`on_book`)."""
        st = self.symbols[symbol]
        result = st.strategy.on_trade(ts_ms, price, qty, side, self._view(st))
        if result is None or not st.strategy.uses_book or st.book is None:
            return
        self.now_ms = max(self.now_ms, ts_ms)
        self._after_market_event(st, ts_ms // 86_400_000)
        self._decide(st, result)
        if self.executor is None and st.pending is not None:
            self._execute_at(st, st.book.ask if st.pending.side == "Buy" else st.book.bid, ts_ms)

    def on_funding(self, symbol: str, rate: Decimal, ts_ms: int, next_funding_ms: int | None = None) -> None:
        """A settled funding rate of ``symbol`` (fraction per interval, > 0: longs pay
        shorts; Bybit https://bybit-exchange.github.io/docs/v5/market/history-fund-rate).
        The position pays or receives ``size * mark * rate`` USDT (booked in
        the ledger's ``funding``, so equity and the truth-layer total include it); then
        the strategy may act on the new rate."""
        st = self.symbols[symbol]
        pos = self.ledger.positions.get(symbol)
        if pos is not None and pos.size != 0 and st.mark is not None:
            amount = -(pos.size * st.mark * rate)
            self.ledger.book_funding(amount)  # truth layer: total includes funding
            self.funding_events.append((ts_ms, symbol, rate, amount))
        self.now_ms = max(self.now_ms, ts_ms)
        result = st.strategy.on_funding(rate, ts_ms, next_funding_ms, self._view(st))
        if result is not None:
            self._decide(st, result)

    def on_leg_bar(self, symbol: str, leg: str, bar: Bar) -> None:
        """A closed candle of the spot leg of ``symbol`` (two-leg strategies). Feed it
        before the perpetual's candle of the same open time: a leg order then fills
        at this candle's open when the perpetual's order fills at its open."""
        st = self.symbols[symbol]
        st.leg_fed = True
        st.leg_open = bar.open
        st.leg_mark = bar.close
        result = st.strategy.on_leg_bar(leg, bar, self._view(st))
        if result is not None:
            self._decide(st, result)

    def _view(self, st: SymbolState) -> PositionView:
        pos = self.ledger.positions.get(st.symbol)
        leg = self.ledger.positions.get(f"{st.symbol}.SPOT")
        return PositionView(pos.size if pos else ZERO, pos.entry_price if pos else ZERO,
                            st.pending is not None or st.leg_pending is not None,
                            leg.size if leg else ZERO, self.taker_fee, self.spec.category == "spot")

    def _decide(self, st: SymbolState, result) -> None:
        """Act on what the strategy answered (an OrderIntent, a reason code or None)."""
        pos = self.ledger.position(st.symbol)
        if pos.size != 0 and self.halted and st.pending is None:
            self._queue(st, "Sell" if pos.size > 0 else "Buy", abs(pos.size), True, "PROMOTION_HALT")
            st.last_reason = R_PROMOTION_HALTED
            return
        if isinstance(result, OrderIntent) and result.reduce_only:
            # Exits are never gated; at most one order in flight per symbol.
            if st.pending is None and st.leg_pending is None:
                self._queue_intent(st, result)
            st.last_reason = ""
            return
        if result is None or (pos.size != 0 and not st.strategy.adds_to_position):
            st.last_reason = ""
            return
        reason = self._entry_block(st, st.strategy.warm)
        if reason is None:
            reason = result if isinstance(result, str) else self._try_entry(st, result)
        st.last_reason = reason or ""
        if reason:
            self.reasons[reason] += 1
            if reason not in (R_NO_SIGNAL, R_WARMING_UP, R_COOLDOWN, R_PENDING):
                self.safety.decisions.add(self.now_ms, st.symbol, "", "blocked", reason, self._flags(st))

    def _queue_intent(self, st: SymbolState, it: OrderIntent) -> Order:
        """Queue a reduce-only intent (its size defaults to the whole position)."""
        lpos = self.ledger.positions.get(f"{st.symbol}.SPOT")
        if (it.leg == "spot" or it.hedge) and lpos is not None and lpos.size != 0:
            qty = it.qty if it.qty is not None and it.leg == "spot" else abs(lpos.size)
            self._queue_leg(st, "Sell" if lpos.size > 0 else "Buy", qty, True, it.reason)
        if it.leg == "spot":
            return None
        pos = self.ledger.position(st.symbol)
        if pos.size == 0:
            return None
        qty = min(it.qty, abs(pos.size)) if it.qty is not None else abs(pos.size)
        return self._queue(st, it.side, qty, True, it.reason)

    def _queue_leg(self, st: SymbolState, side: str, qty: Decimal, reduce_only: bool, reason: str) -> Order:
        self.order_seq += 1
        link = self.link_ids() if self.link_ids is not None else f"{self.name[:20]}-{self.order_seq}"[:36]
        order = Order(link, f"{st.symbol}.SPOT", side, qty, reduce_only, reason, self.now_ms)
        st.leg_pending = order
        self.orders_sent += 1
        self.order_times.append(self.now_ms)
        return order

    def _entry_block(self, st: SymbolState, warm: bool) -> str | None:
        if self.policy is None:
            return R_NO_POLICY
        if self.blocked_reason:
            return self.blocked_reason
        if self.api_unreachable:
            return R_API_UNREACHABLE
        if self.spec.paused:
            return R_PAUSED
        if self.halted:
            return R_PROMOTION_HALTED
        if self.risk_state == api.RISK_HARD_STOP:
            return R_HARD_STOP
        if st.quarantined:
            return R_QUARANTINED
        safety_block = self._safety_block(st)
        if safety_block:
            return safety_block
        if self.scanner is not None and st.symbol in self.scanner.windows and st.symbol not in (self.scanner.picks or ()):
            return R_NOT_PICKED
        if self.risk_state == api.RISK_SOFT_BRAKE and self.policy.softBrakeSizeFactor == 0:
            return R_SOFT_BRAKE
        if st.pending is not None or st.leg_pending is not None:
            return R_PENDING
        if not warm:
            return R_WARMING_UP
        if st.cooldown_left > 0:
            return R_COOLDOWN
        return None

    def _try_entry(self, st: SymbolState, it: OrderIntent) -> str | None:
        """Gate and size an entry intent (order rate, open positions, notional and
        leverage room, minimum order) and queue it; returns the refusal reason."""
        side = it.side
        pos = self.ledger.position(st.symbol)
        if (it.hedge or it.leg) and self.executor is not None:
            return R_LEG_ON_EXCHANGE  # spot legs are paper-only for now
        if side == "Sell" and self.spec.category == "spot" and it.leg is None and pos.size <= 0:
            return R_SPOT_NO_SHORT
        pol = self.policy
        assert pol is not None
        if len(self.order_times) >= pol.maxOrdersPerMinute:
            self._reject(st, side, R_ORDER_RATE)
            return R_ORDER_RATE
        # entries sent but not filled yet count as open (several symbols decide on one candle)
        pending = [s for s in self.symbols.values()
                   if s.pending is not None and not s.pending.reduce_only and self.ledger.position(s.symbol).size == 0]
        if pos.size == 0 and len(self.ledger.open_positions()) + len(pending) >= pol.maxOpenPositions:
            return R_MAX_POSITIONS
        price = st.mark
        assert price is not None
        equity = self.equity()
        size_factor = pol.softBrakeSizeFactor if self.risk_state == api.RISK_SOFT_BRAKE else Decimal(1)
        stop_distance = it.stop_distance
        if stop_distance > 0:  # volatility regimes widen the stop (multiplier 1 when off)
            stop_distance = stop_distance * self._stop_multiplier(st, st.strategy.volatility())
        if it.qty is not None:
            qty = it.qty * size_factor
        elif it.notional_usdt is not None:
            qty = it.notional_usdt * size_factor / price
        else:
            if stop_distance <= 0:
                return R_NO_SIGNAL
            risk_usdt = equity * self._risk_fraction(it.risk_fraction) * size_factor
            qty = risk_usdt / stop_distance
        leverage = min(self.spec.maxLeverage, pol.maxLeverage, st.instrument.max_leverage)
        room = equity * leverage - self.ledger.gross_notional(self.marks()) \
            - sum((s.pending.qty * s.mark for s in pending if s.mark is not None), ZERO)
        cap = min(pol.maxPositionNotionalUsdt, room)
        if pos.size != 0 and (pos.size > 0) == (side == "Buy"):
            cap = min(pol.maxPositionNotionalUsdt - pos.notional(price), room)
        if cap <= 0:
            return R_NOTIONAL
        cap = self._order_cap(cap)
        qty = min(qty, cap / price)
        qty = st.instrument.round_qty(qty)
        if qty < st.instrument.min_order_qty or qty * price < st.instrument.min_notional:
            self._reject(st, side, R_MIN_ORDER)
            return R_MIN_ORDER
        leg_qty = None
        if it.hedge:
            leg_inst = st.leg_instrument or st.instrument
            leg_qty = leg_inst.round_qty(qty)
            if it.max_leg_imbalance is not None and qty > 0 and \
                    abs(qty - leg_qty) / max(qty, leg_qty) > Decimal(repr(it.max_leg_imbalance)):
                self.rejects[R_LEG_IMBALANCE] += 1
                return R_LEG_IMBALANCE
            if leg_qty <= 0:
                self.rejects[R_MIN_ORDER] += 1
                return R_MIN_ORDER
        if it.leg == "spot":
            self._queue_leg(st, side, qty, False, it.reason)
        elif self._queue(st, side, qty, False, it.reason, stop_distance, it.target_distance) is None:
            return self.safety.last_reject
        if leg_qty is not None:
            self._queue_leg(st, "Sell" if side == "Buy" else "Buy", leg_qty, False, it.reason + "_HEDGE")
        st.entry_orders += 1
        return None

    # ---- safety features (RiskPolicy; logic in worker/risk.py and worker/router.py) ---------
    def _safety_state(self, state: str, reasons: list[str], flash: str | None) -> str:
        """Escalate ``state`` for a held flash crash or an auto-quarantine (appends reasons)."""
        if self.policy is None:
            return state
        if flash in (api.RISK_SOFT_BRAKE, api.RISK_QUARANTINE):
            reasons.append(RR_FLASH_CRASH)
            if api.risk_severity(state) < api.risk_severity(flash):
                state = flash
        if self.safety.autoq.any_blocked(self.now_ms):
            reasons.append(RR_AUTO_QUARANTINE)
            if api.risk_severity(state) < api.risk_severity(api.RISK_QUARANTINE):
                state = api.RISK_QUARANTINE
        return state

    def _safety_step(self, st: SymbolState, bar: Bar, sigma: float, equity: Decimal) -> None:
        """Per candle, before the risk evaluation: volatility history, flash-crash
        samples (open at the candle's start, close at its end, equity at its end) and
        profit capture."""
        pol = self.policy
        if pol is None:
            return
        sf = self.safety
        sf.regimes.observe(pol.volatilityRegimes, st.symbol, sigma)
        if pol.flashCrash.enabled:
            end = bar.ts_ms + INTERVAL_MS.get(self.spec.marketData.replay.interval, 60_000) - 1
            sf.flash.observe(pol.flashCrash, end, st.symbol, [(bar.ts_ms, bar.open), (end, bar.close)], equity)
        action = sf.profit.update(pol.profitCapture, equity, self.day or 0, bar.ts_ms)
        if action is not None:
            for s in self.symbols.values():
                pos = self.ledger.positions.get(s.symbol)
                if pos is None or pos.size == 0:
                    continue
                qty = abs(pos.size) if action == "full" else s.instrument.round_qty(
                    abs(pos.size) * pol.profitCapture.partialFraction)
                if qty > 0:
                    s.pending = None
                    self._queue(s, "Sell" if pos.size > 0 else "Buy", qty, True, "PROFIT_CAPTURE")

    def _safety_block(self, st: SymbolState) -> str | None:
        sf, pol = self.safety, self.policy
        if sf.autoq.blocked(st.symbol, self.now_ms):
            return R_AUTO_QUARANTINED
        if pol is not None and sf.profit.paused(pol.profitCapture, self.day):
            return R_PROFIT_PAUSE
        if sf.flash.state == api.RISK_QUARANTINE and self.now_ms <= sf.flash.until_ms:
            return R_FLASH_CRASH
        return None

    def _stop_multiplier(self, st: SymbolState, sigma: float) -> Decimal:
        """Volatility-regime multiplier of the stop distance (1 when the feature is off)."""
        regime, mult = self.safety.regimes.classify(self.policy.volatilityRegimes, st.symbol, sigma)
        self.safety.regime[st.symbol] = (regime, mult)
        return mult

    def _risk_fraction(self, fraction: float) -> Decimal:
        """The strategy's risk per trade, capped by ``maxRiskPerTradeFraction``."""
        f = Decimal(repr(fraction))
        cap = self.policy.maxRiskPerTradeFraction
        if cap is not None and f > cap:
            self.safety.entry_flags["riskFractionCapped"] = str(cap)
            return cap
        return f

    def _order_cap(self, cap: Decimal) -> Decimal:
        """Notional cap of one entry: ``cap`` or ``maxOrderNotionalUsdt`` if lower."""
        lim = self.policy.maxOrderNotionalUsdt
        if lim is not None and lim < cap:
            self.safety.entry_flags["orderNotionalCapped"] = str(lim)
            return lim
        return cap

    def _flags(self, st: SymbolState) -> dict:
        """Gating flags of a decision on ``st`` now (see worker/risk.py DecisionLog)."""
        f: dict = {"riskState": self.risk_state}
        if self.policy is not None and self.risk_state == api.RISK_SOFT_BRAKE:
            f["sizeFactor"] = str(self.policy.softBrakeSizeFactor)
        reg = self.safety.regime.get(st.symbol)
        if reg is not None and reg[0] != "normal":
            f["volRegime"], f["stopMultiplier"] = reg[0], str(reg[1])
        f.update(self.safety.entry_flags)
        return f

    def _record_order(self, st: SymbolState, order: Order) -> None:
        flags = self._flags(st)
        flags.update(orderType=order.order_type, postOnly=order.post_only, reduceOnly=order.reduce_only)
        self.safety.decisions.add(self.now_ms, st.symbol, order.side, "sent", order.reason, flags)
        self.safety.entry_flags.clear()

    def _reject(self, st: SymbolState, side: str, code: str) -> None:
        """Count an order rejected before it reached the venue, log it and feed the
        auto-quarantine rule."""
        self.rejects[code] += 1
        self.safety.last_reject = code
        self.safety.decisions.add(self.now_ms, st.symbol, side, "rejected", code, self._flags(st))
        self.safety.entry_flags.clear()
        if self.policy is not None:
            self._auto_quarantine(self.safety.autoq.on_reject(self.policy.autoQuarantine, st.symbol, self.now_ms, code))

    def _auto_quarantine(self, request: dict | None) -> None:
        if request is not None:
            self.safety.decisions.add(self.now_ms, request["symbol"], "", "blocked", R_AUTO_QUARANTINED,
                                      {"autoQuarantine": request["reason"], "ttlSeconds": request["ttlSeconds"]})

    def on_spread(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        """Best bid/ask of ``symbol`` from a live order book (USDT): feeds the
        ``autoQuarantine.maxSpreadBps`` rule."""
        if self.policy is not None and symbol in self.symbols:
            self._auto_quarantine(self.safety.autoq.on_spread(self.policy.autoQuarantine, symbol, self.now_ms,
                                                              bid, ask))

    def governor_status(self) -> dict:
        """HEAN's ``/risk/governor/status`` (see :func:`hean.worker.risk.governor_status`)
        plus the safety features' latest events."""
        from .risk import governor_status

        sf = self.safety
        out = governor_status(self.risk_state, self.risk_reasons, sf.since_ms, self.hard_stop_at,
                              self.hard_stop_cleared_at, sf.transitions)
        out.update({
            "flashCrash": {"detections": sf.flash.detections, "last": sf.flash.last},
            "profitCapture": {"captures": sf.profit.captures, "last": sf.profit.last,
                              "armed": sf.profit.armed, "paused": sf.profit.paused_day is not None},
            "autoQuarantines": list(sf.autoq.history[-20:]),
            "volatilityRegimes": {s: r for s, (r, _) in sf.regime.items()},
        })
        return out

    def finish(self) -> None:
        """Mark every flat symbol as done (the replay ran out)."""
        for st in self.symbols.values():
            st.last_reason = R_REPLAY_DONE

    # ---- reporting -----------------------------------------------------------------
    def top_reasons(self, n: int = 5) -> list[dict]:
        """The ``n`` most frequent reasons entries were not made: ``[{reason, count}]``."""
        return [{"reason": r, "count": c} for r, c in self.reasons.most_common(n)]

    def trading_active(self) -> bool:
        """True if the engine could open a position now on at least one symbol."""
        if self.policy is None or self.spec.paused or self.risk_state == api.RISK_HARD_STOP or self.blocked_reason \
                or self.api_unreachable or self.halted:
            return False
        return any(not st.quarantined for st in self.symbols.values())
