"""``scalping``: high-frequency scalping on the order book (HEAN's HFScalping).

Decides on top-of-book updates (:class:`BookTop`), not on candles. Entry when the
spread is at most ``maxSpreadBps`` and the size imbalance of the first
``depthLevels`` levels per side is at least ``imbalanceThreshold`` (long: bids
outweigh asks) or at most minus it (short). Tight exits on every update: the mid
moved ``takeProfitTicks`` in favour or ``stopLossTicks`` against the entry, or
``maxHoldSeconds`` passed. Strict order-rate budget: every order the strategy asks
for counts; an entry beyond ``maxOrdersPerMinute`` in the last 60 s, or within
``minOrderIntervalMs`` of the previous entry, is refused (reason
``ORDER_RATE_BUDGET`` / ``ORDER_INTERVAL``), never queued; exits always go.

In the engine, book-driven orders fill at once as takers at the touch (see
:meth:`hean.worker.engine.Engine.on_book`). :func:`book_top` builds a
:class:`BookTop` from a :class:`hean.engine.book.OrderBook`.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from .base import R_NO_BOOK, R_NO_SIGNAL, BookTop, OrderIntent, PositionView, Strategy

R_SPREAD = "SPREAD_TOO_WIDE"
R_BUDGET = "ORDER_RATE_BUDGET"
R_INTERVAL = "ORDER_INTERVAL"


def book_top(book, ts_ms: int, levels: int = 5) -> BookTop | None:
    """:class:`BookTop` of a native :class:`hean.engine.book.OrderBook` (integer units
    scaled by its ``price_decimals``/``size_decimals``), sizes summed over the first
    ``levels`` levels per side; None if a side is empty."""
    bids, asks = book.levels(1, levels), book.levels(-1, levels)
    if not bids or not asks:
        return None
    pd, sd = book.price_decimals, book.size_decimals
    return BookTop(ts_ms, Decimal(bids[0][0]).scaleb(-pd), Decimal(asks[0][0]).scaleb(-pd),
                   Decimal(sum(q for _, q in bids)).scaleb(-sd), Decimal(sum(q for _, q in asks)).scaleb(-sd), levels)


class ScalpingStrategy(Strategy):
    """Per-symbol scalping state: the order-time window, last entry time, and the
    time the current position was first seen."""

    name = "scalping"
    uses_book = True

    def reset(self) -> None:
        self.order_times: deque = deque()
        self.last_entry_ms: int | None = None
        self.entry_seen_ms: int | None = None
        self.warm = False
        self.refused = 0

    def on_bar(self, bar, view: PositionView):
        """Candles carry no book: nothing to decide (reason ``NO_BOOK_DATA`` when flat)."""
        if view.size != 0 or self.warm:
            return None
        return R_NO_BOOK

    def on_book(self, top: BookTop, view: PositionView):
        """Exit checks when holding, else the spread/imbalance entry under the budget."""
        p = self.params
        self.warm = True
        now = top.ts_ms
        while self.order_times and self.order_times[0] <= now - 60_000:
            self.order_times.popleft()
        if view.size != 0:
            if self.entry_seen_ms is None:
                self.entry_seen_ms = now
            if view.pending:
                return None
            tick = self.instrument.tick_size
            sign = 1 if view.size > 0 else -1
            moved_ticks = (top.mid - view.entry_price) / tick * sign
            if moved_ticks >= p.takeProfitTicks:
                why = "SCALP_TAKE_PROFIT"
            elif moved_ticks <= -p.stopLossTicks:
                why = "SCALP_STOP_LOSS"
            elif (now - self.entry_seen_ms) / 1000 >= p.maxHoldSeconds:
                why = "SCALP_TIME_EXIT"
            else:
                return None
            self.order_times.append(now)
            return OrderIntent("Sell" if view.size > 0 else "Buy", why, reduce_only=True)
        self.entry_seen_ms = None
        if top.spread_bps > p.maxSpreadBps:
            return R_SPREAD
        imb = top.imbalance
        if imb >= p.imbalanceThreshold:
            side = "Buy"
        elif imb <= -p.imbalanceThreshold:
            side = "Sell"
        else:
            return R_NO_SIGNAL
        if len(self.order_times) >= p.maxOrdersPerMinute:
            self.refused += 1
            return R_BUDGET
        if self.last_entry_ms is not None and now - self.last_entry_ms < p.minOrderIntervalMs:
            self.refused += 1
            return R_INTERVAL
        if view.pending:
            return None
        self.order_times.append(now)
        self.last_entry_ms = now
        return OrderIntent(side, "SCALP_ENTRY", notional_usdt=Decimal(repr(p.orderNotionalUsdt)))
