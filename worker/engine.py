"""The worker's paper-trading engine: indicators -> impulse strategy -> risk -> fills -> ledger.

One :class:`Engine` per TradingStrategy. It is fed candles in time order
(:meth:`Engine.on_bar`) and is told about control changes (spec, RiskPolicy,
quarantines, pause) between candles; it never blocks and does no I/O, so the same
object serves a replay and a live paper feed.

Execution model (paper, documented so results can be checked by hand):

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

Strategy (HEAN's impulse engine, simplified to candles): trend filter
``EMA(fast) > EMA(slow)`` for longs (``<`` for shorts, linear only); impulse
``ln(close / close[-lookback]) > impulseThreshold * sigma * sqrt(lookback)`` where
sigma is the rolling standard deviation of 1-bar log returns; stop
``stopLossAtr * ATR`` and target ``takeProfitAtr * ATR`` from the entry; exit on a
trend flip; ``cooldownBars`` after each exit. Size: risk ``riskPerTradeFraction`` of
equity over the stop distance, capped by the position-notional and leverage limits.

Risk Governor (HEAN): ``NORMAL`` < ``SOFT_BRAKE`` (drawdown >= soft limit: entries
sized by ``softBrakeSizeFactor``; 0 blocks them; released below 80 % of the limit) < ``QUARANTINE`` (a symbol of the
strategy is quarantined: no entries on it) < ``HARD_STOP`` (drawdown >= hard limit
or daily loss >= limit: pending orders cancelled, positions flattened, no new
orders; latched until a human sets the ``hean.io/clear-hard-stop`` annotation to a
time after the stop).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from hean import api
from hean.indicators import ATR, EMA, RollingLogReturnStd
from hean.marketdata import Bar, Instrument

from .config import ImpulseParams, RiskPolicySpec, StrategySpec
from .ledger import ZERO, Fill, Ledger

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


@dataclass
class SymbolState:
    """Per-symbol indicator and trade state."""

    symbol: str
    instrument: Instrument
    params: ImpulseParams
    ema_fast: EMA = field(init=False)
    ema_slow: EMA = field(init=False)
    vol: RollingLogReturnStd = field(init=False)
    atr: ATR = field(init=False)
    closes: deque = field(init=False)
    bars_seen: int = 0
    cooldown_left: int = 0
    stop_price: Decimal | None = None
    target_price: Decimal | None = None
    pending: Order | None = None
    mark: Decimal | None = None
    entry_orders: int = 0
    last_reason: str = R_WARMING_UP
    quarantined: bool = False

    def __post_init__(self) -> None:
        self.reset_indicators(self.params)

    def reset_indicators(self, params: ImpulseParams) -> None:
        """(Re)create the indicators for ``params``; they warm up again from scratch."""
        self.params = params
        self.ema_fast = EMA(params.emaFastPeriod)
        self.ema_slow = EMA(params.emaSlowPeriod)
        self.vol = RollingLogReturnStd(params.volatilityWindow)
        self.atr = ATR(params.atrPeriod)
        self.closes = deque(maxlen=params.impulseLookback + 1)


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
        for sym in spec.symbols:
            if sym not in instruments:
                raise KeyError(f"no instrument info for {spec.category} symbol {sym}")
            self.symbols[sym] = SymbolState(sym, instruments[sym], spec.params)
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

    # ---- control changes -------------------------------------------------------
    def update_spec(self, spec: StrategySpec) -> None:
        """Apply a live-tunable spec change (params, paused, execution, riskPolicyRef).

        Indicators are rebuilt (and warm up again) only if ``params`` changed in a way
        that alters a period. Structural fields (symbols, category, capital, mode)
        are handled by the operator replacing the worker, not here.
        """
        old = self.spec.params
        self.spec = spec
        new = spec.params
        if (old.emaFastPeriod, old.emaSlowPeriod, old.volatilityWindow, old.atrPeriod, old.impulseLookback) != (
            new.emaFastPeriod, new.emaSlowPeriod, new.volatilityWindow, new.atrPeriod, new.impulseLookback
        ):
            for st in self.symbols.values():
                st.reset_indicators(new)
        else:
            for st in self.symbols.values():
                st.params = new

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
            self.peak_equity = self.equity()
            self.day_start_equity = self.peak_equity
            self._evaluate_risk()
            return True
        return False

    # ---- figures ---------------------------------------------------------------
    def marks(self) -> dict[str, Decimal]:
        """Mark price per symbol that has a position (last close, USDT)."""
        return {s: st.mark for s, st in self.symbols.items() if st.mark is not None}

    def equity(self) -> Decimal:
        """Account equity in USDT at the current marks."""
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
        state = api.RISK_NORMAL
        pol = self.policy
        if pol is not None:
            dd = self.drawdown_percent()
            if dd >= pol.hardMaxDrawdownPercent:
                reasons.append(RR_HARD_DD)
            if self.daily_loss() >= pol.maxDailyLossUsdt:
                reasons.append(RR_DAILY_LOSS)
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
        if state != self.risk_state:
            self.risk_events.append((self.risk_state, state, list(reasons)))
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
               stop_distance: Decimal = ZERO, target_distance: Decimal = ZERO) -> Order:
        self.order_seq += 1
        link = self.link_ids() if self.link_ids is not None else f"{self.name[:20]}-{self.order_seq}"[:36]
        order = Order(link, st.symbol, side, qty, reduce_only, reason, self.now_ms, stop_distance, target_distance)
        st.pending = order
        self.orders_sent += 1
        self.order_times.append(self.now_ms)
        if self.executor is not None:
            self.executor(order)
        return order

    def _fill(self, st: SymbolState, side: str, qty: Decimal, ref_price: Decimal, ts_ms: int,
              order_link_id: str, reason: str) -> Fill:
        slip = Decimal(str(self.spec.execution.slippageBps)) * BPS
        if side == "Buy":
            price = st.instrument.round_price(ref_price * (1 + slip), "up")
        else:
            price = st.instrument.round_price(ref_price * (1 - slip), "down")
        fee = (qty * price * self.taker_fee).quantize(Decimal("0.00000001"))
        fill = Fill(f"{order_link_id}-f", order_link_id, st.symbol, side, qty, price, fee, ts_ms, "taker", reason)
        self.ledger.apply(fill)
        return fill

    def _execute_pending(self, st: SymbolState, bar: Bar) -> None:
        order = st.pending
        if order is None:
            return
        st.pending = None
        pos = self.ledger.position(st.symbol)
        qty = order.qty
        if order.reduce_only:
            if pos.size == 0 or (pos.size > 0) == (order.side == "Buy"):
                self.rejects["REDUCE_ONLY_NO_POSITION"] += 1
                return
            qty = min(qty, abs(pos.size))
        fill = self._fill(st, order.side, qty, bar.open, bar.ts_ms, order.order_link_id, order.reason)
        if order.reduce_only:
            if self.ledger.position(st.symbol).size == 0:
                st.stop_price = st.target_price = None
                st.cooldown_left = st.params.cooldownBars
        else:
            if order.side == "Buy":
                st.stop_price = st.instrument.round_price(fill.price - order.stop_distance, "down")
                st.target_price = st.instrument.round_price(fill.price + order.target_distance, "up")
            else:
                st.stop_price = st.instrument.round_price(fill.price + order.stop_distance, "up")
                st.target_price = st.instrument.round_price(fill.price - order.target_distance, "down")

    def _check_exits(self, st: SymbolState, bar: Bar) -> None:
        pos = self.ledger.position(st.symbol)
        if pos.size == 0 or st.stop_price is None or st.target_price is None:
            return
        long = pos.size > 0
        self.order_seq += 1
        link = f"{self.name[:20]}-{self.order_seq}"[:36]
        exit_side = "Sell" if long else "Buy"
        if long and bar.low <= st.stop_price:
            ref, why = min(st.stop_price, bar.open), "STOP_LOSS"
        elif not long and bar.high >= st.stop_price:
            ref, why = max(st.stop_price, bar.open), "STOP_LOSS"
        elif long and bar.high >= st.target_price:
            ref, why = max(st.target_price, bar.open), "TAKE_PROFIT"
        elif not long and bar.low <= st.target_price:
            ref, why = min(st.target_price, bar.open), "TAKE_PROFIT"
        else:
            self.order_seq -= 1
            return
        self.orders_sent += 1
        self._fill(st, exit_side, abs(pos.size), ref, bar.ts_ms, link, why)
        st.stop_price = st.target_price = None
        st.pending = None
        st.cooldown_left = st.params.cooldownBars

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
        if st.mark is None:
            st.mark = fill.price
        order = st.pending if st.pending is not None and st.pending.order_link_id == fill.order_link_id else None
        pos = self.ledger.position(fill.symbol)
        if pos.size == 0:
            st.stop_price = st.target_price = None
            st.cooldown_left = st.params.cooldownBars
        elif order is not None and not order.reduce_only:
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
        st.bars_seen += 1
        if st.cooldown_left > 0:
            st.cooldown_left -= 1
        close_f = float(bar.close)
        fast = st.ema_fast.update(close_f)
        slow = st.ema_slow.update(close_f)
        sigma = st.vol.update(close_f)
        atr = st.atr.update(float(bar.high), float(bar.low), close_f)
        st.closes.append(close_f)
        if day != self.day:
            self.day = day
            self.day_start_equity = self.equity()
        eq = self.equity()
        if eq > self.peak_equity and self.hard_stop_at is None:
            self.peak_equity = eq
        self._evaluate_risk()
        while self.order_times and self.order_times[0] <= self.now_ms - 60_000:
            self.order_times.popleft()
        self._decide(st, fast, slow, sigma, atr)

    def _decide(self, st: SymbolState, fast: float, slow: float, sigma: float, atr: float) -> None:
        pos = self.ledger.position(st.symbol)
        warm = not (math.isnan(fast) or math.isnan(slow) or math.isnan(sigma) or math.isnan(atr)) \
            and len(st.closes) == st.closes.maxlen
        if pos.size != 0:
            # Manage the open position: exit on a trend flip (exits are never gated).
            if warm and st.pending is None and ((pos.size > 0 and fast < slow) or (pos.size < 0 and fast > slow)):
                self._queue(st, "Sell" if pos.size > 0 else "Buy", abs(pos.size), True, "TREND_FLIP")
            st.last_reason = ""
            return
        reason = self._entry_block(st, warm)
        if reason is None:
            reason = self._try_entry(st, fast, slow, sigma, atr)
        st.last_reason = reason or ""
        if reason:
            self.reasons[reason] += 1

    def _entry_block(self, st: SymbolState, warm: bool) -> str | None:
        if self.policy is None:
            return R_NO_POLICY
        if self.blocked_reason:
            return self.blocked_reason
        if self.spec.paused:
            return R_PAUSED
        if self.risk_state == api.RISK_HARD_STOP:
            return R_HARD_STOP
        if st.quarantined:
            return R_QUARANTINED
        if self.risk_state == api.RISK_SOFT_BRAKE and self.policy.softBrakeSizeFactor == 0:
            return R_SOFT_BRAKE
        if st.pending is not None:
            return R_PENDING
        if not warm:
            return R_WARMING_UP
        if st.cooldown_left > 0:
            return R_COOLDOWN
        return None

    def _try_entry(self, st: SymbolState, fast: float, slow: float, sigma: float, atr: float) -> str | None:
        p = st.params
        ret = math.log(st.closes[-1] / st.closes[0])
        threshold = p.impulseThreshold * sigma * math.sqrt(p.impulseLookback)
        if fast > slow and ret > threshold:
            side = "Buy"
        elif fast < slow and ret < -threshold:
            if self.spec.category == "spot":
                return R_SPOT_NO_SHORT
            side = "Sell"
        else:
            return R_NO_SIGNAL
        pol = self.policy
        assert pol is not None
        if len(self.order_times) >= pol.maxOrdersPerMinute:
            self.rejects[R_ORDER_RATE] += 1
            return R_ORDER_RATE
        if len(self.ledger.open_positions()) >= pol.maxOpenPositions:
            return R_MAX_POSITIONS
        price = st.mark
        assert price is not None
        equity = self.equity()
        size_factor = pol.softBrakeSizeFactor if self.risk_state == api.RISK_SOFT_BRAKE else Decimal(1)
        stop_distance = Decimal(repr(p.stopLossAtr * atr))
        target_distance = Decimal(repr(p.takeProfitAtr * atr))
        if stop_distance <= 0:
            return R_NO_SIGNAL
        risk_usdt = equity * Decimal(repr(p.riskPerTradeFraction)) * size_factor
        qty = risk_usdt / stop_distance
        leverage = min(self.spec.maxLeverage, pol.maxLeverage, st.instrument.max_leverage)
        room = equity * leverage - self.ledger.gross_notional(self.marks())
        cap = min(pol.maxPositionNotionalUsdt, room)
        if cap <= 0:
            return R_NOTIONAL
        qty = min(qty, cap / price)
        qty = st.instrument.round_qty(qty)
        if qty < st.instrument.min_order_qty or qty * price < st.instrument.min_notional:
            self.rejects[R_MIN_ORDER] += 1
            return R_MIN_ORDER
        self._queue(st, side, qty, False, "IMPULSE_ENTRY", stop_distance, target_distance)
        st.entry_orders += 1
        return None

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
        if self.policy is None or self.spec.paused or self.risk_state == api.RISK_HARD_STOP or self.blocked_reason:
            return False
        return any(not st.quarantined for st in self.symbols.values())
