"""``grid``: a long-inventory range grid (HEAN's EnhancedGrid) on candles.

``levels`` equally spaced grid lines from ``lower`` to ``upper`` (given, or centred on
the first close with a total width of ``rangePercent`` %). The target inventory is
one level (``levelNotionalUsdt`` at the centre price, rounded down to the qty step)
per grid line strictly above the close and at or below the centre: the strategy buys
a level each time the price falls through a line and sells it back when the price
rises through it again. Each candle sends at most one order (buy the missing levels
or sell the surplus, reduce-only). A close outside ``[lower, upper]`` for
``breakoutBars`` consecutive candles is a breakout: with ``recenterOnBreakout`` the
whole inventory is sold and the grid is re-centred on that close (a fixed
``lowerPrice``/``upperPrice`` grid is moved by the same width).

Paper fills are market orders at the next candle's open (the engine's model), so
grid profits here are a lower bound of a resting-limit grid's.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from .base import R_NO_SIGNAL, OrderIntent, PositionView, Strategy

R_ABOVE_CENTRE = "GRID_ABOVE_CENTRE"


class GridStrategy(Strategy):
    """Per-symbol grid state: bounds, centre, level quantity, breakout streak."""

    name = "grid"
    adds_to_position = True

    def period_key(self, p) -> tuple:
        return (p.levels, p.lowerPrice, p.upperPrice, p.rangePercent, p.levelNotionalUsdt)

    def reset(self) -> None:
        self.lower: Decimal | None = None
        self.upper: Decimal | None = None
        self.centre: Decimal | None = None
        self.level_qty = Decimal(0)
        self.outside = 0
        self.recenters = 0
        self.warm = False

    def lines(self) -> list[Decimal]:
        """The grid line prices, lowest first (USDT)."""
        assert self.lower is not None and self.upper is not None
        step = (self.upper - self.lower) / (self.params.levels - 1)
        return [self.lower + step * i for i in range(self.params.levels)]

    def _centre_on(self, price: Decimal) -> None:
        p = self.params
        if p.lowerPrice is not None and p.upperPrice is not None and self.lower is None:
            self.lower, self.upper = Decimal(repr(p.lowerPrice)), Decimal(repr(p.upperPrice))
        else:
            half = (Decimal(repr(p.upperPrice)) - Decimal(repr(p.lowerPrice))) / 2 if p.lowerPrice is not None \
                else price * Decimal(repr(p.rangePercent)) / 200
            self.lower, self.upper = price - half, price + half
        self.centre = (self.lower + self.upper) / 2
        self.level_qty = self.instrument.round_qty(Decimal(repr(p.levelNotionalUsdt)) / self.centre)
        self.warm = True

    def target_levels(self, close: Decimal) -> int:
        """Grid lines strictly above ``close`` and at or below the centre."""
        return sum(1 for x in self.lines() if close < x <= self.centre)

    def on_bar(self, bar, view: PositionView):
        """Follow the price through the grid; re-centre on a breakout."""
        p = self.params
        close = bar.close
        if self.lower is None:
            self._centre_on(close)
        if close > self.upper or close < self.lower:
            self.outside += 1
            if self.outside >= p.breakoutBars and p.recenterOnBreakout:
                self.outside = 0
                self.recenters += 1
                self._centre_on(close)
                if view.size > 0:
                    return OrderIntent("Sell", "GRID_RECENTER", reduce_only=True)
        else:
            self.outside = 0
        if self.level_qty <= 0:
            return R_NO_SIGNAL
        target = self.level_qty * self.target_levels(close)
        diff = target - view.size
        half = self.level_qty / 2
        if diff >= half:
            n = (diff / self.level_qty).to_integral_value(rounding=ROUND_FLOOR) or Decimal(1)
            return OrderIntent("Buy", "GRID_BUY", qty=self.level_qty * n)
        if diff <= -half and view.size > 0:
            return OrderIntent("Sell", "GRID_SELL", reduce_only=True, qty=min(-diff, view.size))
        if view.size != 0:
            return None
        return R_ABOVE_CENTRE if close >= self.centre else R_NO_SIGNAL
