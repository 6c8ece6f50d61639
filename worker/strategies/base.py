"""The strategy interface the engine dispatches to.

A strategy class is instantiated once per traded symbol (``Strategy(symbol,
instrument, params, category)``), so all indicator and signal state is per symbol.
The engine (:class:`hean.worker.engine.Engine`) owns execution, the ledger, the Risk
Governor, cooldowns and the candle stop/target checks; a strategy only looks at
market data and its own position and answers with what it wants:

* an :class:`OrderIntent` (an entry, an add, or a reduce-only exit),
* a reason code (``str``) saying why it does not want to enter now (counted in
  ``status.notTradingReasons``), or
* ``None`` (nothing to do; e.g. holding a position).

Hooks (each returns one of the above): :meth:`Strategy.on_bar` (a closed candle),
:meth:`Strategy.on_book` (a top-of-book update, :class:`BookTop`),
:meth:`Strategy.on_trade` (a public trade) and :meth:`Strategy.on_funding` (a settled
funding rate). Hooks must not block or do I/O; they run in the replay loop and in the
live feed alike, which is what keeps replay and live paper trading identical.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

ZERO = Decimal(0)

# Reason codes shared by strategies (the engine's own codes live in hean.worker.engine).
R_WARMING_UP = "WARMING_UP"
R_NO_SIGNAL = "NO_SIGNAL"
R_NO_BOOK = "NO_BOOK_DATA"


@dataclass(frozen=True)
class OrderIntent:
    """What a strategy wants to send.

    ``side`` ``"Buy"``/``"Sell"``; ``reason`` the order's reason code (shown on
    fills); ``reduce_only`` for exits (never gated by the Risk Governor's entry
    rules). Sizing, first that is set wins: ``qty`` (base coin, rounded down to the
    qty step), ``notional_usdt`` (USDT at the current mark), else risk-based:
    ``risk_fraction`` of equity lost over ``stop_distance`` (USDT per coin).
    ``stop_distance``/``target_distance`` (USDT per coin, 0 = none) place the
    engine's candle stop-loss/take-profit from the fill price. ``leg``: ``"spot"``
    for the spot leg of a two-leg strategy (booked as ``<symbol>.SPOT`` at the leg's
    price with spot fees), None for the symbol itself. ``hedge``: also send the
    opposite spot-leg order of the same quantity (on an exit: close the leg too);
    ``max_leg_imbalance``: refuse (``LEG_IMBALANCE``) if rounding the leg's quantity
    to its qty step makes the legs differ by more than this fraction.
    """

    side: str
    reason: str
    reduce_only: bool = False
    qty: Decimal | None = None
    notional_usdt: Decimal | None = None
    risk_fraction: float | None = None
    stop_distance: Decimal = ZERO
    target_distance: Decimal = ZERO
    leg: str | None = None
    hedge: bool = False
    max_leg_imbalance: float | None = None


@dataclass(frozen=True)
class BookTop:
    """Top of the order book of one symbol: ``bid``/``ask`` (USDT), ``bid_qty``/
    ``ask_qty`` (base coin, summed over the first ``levels`` levels per side),
    ``ts_ms`` (exchange time, epoch ms)."""

    ts_ms: int
    bid: Decimal
    ask: Decimal
    bid_qty: Decimal
    ask_qty: Decimal
    levels: int = 1

    @property
    def mid(self) -> Decimal:
        """(bid + ask) / 2, USDT."""
        return (self.bid + self.ask) / 2

    @property
    def spread_bps(self) -> float:
        """(ask - bid) / mid in basis points."""
        mid = self.mid
        return float((self.ask - self.bid) / mid * 10000) if mid > 0 else float("inf")

    @property
    def imbalance(self) -> float:
        """(bid_qty - ask_qty) / (bid_qty + ask_qty), in -1..1 (0 if both are 0)."""
        tot = self.bid_qty + self.ask_qty
        return float((self.bid_qty - self.ask_qty) / tot) if tot > 0 else 0.0


@dataclass(frozen=True)
class PositionView:
    """What a strategy may know about its symbol's account state: ``size`` signed
    base coin (> 0 long), ``entry_price`` USDT, ``pending`` (an order is in flight),
    ``leg_size`` signed size of the spot leg (two-leg strategies), ``taker_fee``
    (fraction of notional), ``spot`` (the category is spot: no shorts)."""

    size: Decimal = ZERO
    entry_price: Decimal = ZERO
    pending: bool = False
    leg_size: Decimal = ZERO
    taker_fee: Decimal = Decimal("0.00055")
    spot: bool = False


class Strategy:
    """Base class (and protocol) of a per-symbol strategy instance.

    Class attributes: ``name`` (the ``spec.strategy`` value), ``adds_to_position``
    (True if entries may be sent while a position is open, e.g. a grid adding a
    level), ``uses_book`` (needs :meth:`on_book` data to trade). Instance
    attributes: ``symbol``, ``instrument`` (:class:`hean.marketdata.Instrument`),
    ``params`` (the strategy's pydantic model), ``warm`` (indicators are ready).
    """

    name: ClassVar[str] = ""
    adds_to_position: ClassVar[bool] = False
    uses_book: ClassVar[bool] = False

    def __init__(self, symbol: str, instrument, params, category: str = "linear") -> None:
        self.symbol = symbol
        self.instrument = instrument
        self.category = category
        self.params = params
        self.warm = False
        self.reset()

    @property
    def cooldown_bars(self) -> int:
        """Candles without entries after a position is closed (``params.cooldownBars``, else 0)."""
        return int(getattr(self.params, "cooldownBars", 0))

    def reset(self) -> None:
        """(Re)create indicator state; it warms up again from scratch."""

    def volatility(self) -> float:
        """The strategy's current volatility estimate (standard deviation of 1-bar log
        returns, a fraction), used by the RiskPolicy's volatility regimes; NaN when the
        strategy keeps none (then the regimes leave its stops unchanged)."""
        return math.nan

    def period_key(self, params) -> tuple:
        """The parameters whose change needs :meth:`reset` (default: none)."""
        return ()

    def update_params(self, params) -> None:
        """Apply new parameters live; resets indicators only if :meth:`period_key` changed."""
        rebuild = self.period_key(params) != self.period_key(self.params)
        self.params = params
        if rebuild:
            self.reset()

    def on_bar(self, bar, view: PositionView):
        """A closed candle (:class:`hean.marketdata.Bar`)."""
        return None

    def on_book(self, top: BookTop, view: PositionView):
        """A top-of-book update."""
        return None

    def on_trade(self, ts_ms: int, price: Decimal, qty: Decimal, side: str, view: PositionView):
        """A public trade (``side`` of the taker)."""
        return None

    def on_funding(self, rate: Decimal, ts_ms: int, next_funding_ms: int | None, view: PositionView):
        """A settled funding rate (fraction per interval; > 0: longs pay shorts) at
        ``ts_ms``; ``next_funding_ms`` the next settlement time if known."""
        return None

    def on_leg_bar(self, leg: str, bar, view: PositionView):
        """A closed candle of a second leg (``"spot"``) of a two-leg strategy."""
        return None
