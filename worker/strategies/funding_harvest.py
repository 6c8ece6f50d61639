"""``funding_harvest``: hold the side of a perpetual that receives funding.

Bybit settles funding every interval (8 h for most USDT perpetuals): longs pay
shorts ``position value x rate`` when the rate is positive, shorts pay longs when it
is negative (https://bybit-exchange.github.io/docs/v5/market/history-fund-rate,
https://www.bybit.com/en/help-center/article/Funding-fee-calculation). The expected
rate is the mean of the last ``historyLength`` settled rates. On a candle, with no
position, the strategy enters the receiving side (short if the expected rate is
positive) when ``|expected| >= minFundingRateBps`` and the next funding time is at
most ``entryBeforeFundingMinutes`` away. After each settlement it exits when the
expected rate is below ``exitFundingRateBps`` on the receiving side or has changed
sign. ``hedged``: the engine also holds the opposite spot leg of the same quantity.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from .base import R_NO_SIGNAL, R_WARMING_UP, OrderIntent, PositionView, Strategy

R_WAIT_WINDOW = "WAITING_FOR_FUNDING_WINDOW"


class FundingHarvestStrategy(Strategy):
    """Per-symbol funding state: the last settled rates and the next funding time."""

    name = "funding_harvest"

    def period_key(self, p) -> tuple:
        return (p.historyLength,)

    def reset(self) -> None:
        self.rates: deque = deque(maxlen=self.params.historyLength)
        self.next_funding_ms: int | None = None
        self.warm = False

    def expected_rate_bps(self) -> float:
        """Mean of the remembered settled rates, in bps per interval."""
        return float(sum(self.rates) / len(self.rates)) * 10000 if self.rates else 0.0

    def on_funding(self, rate: Decimal, ts_ms: int, next_funding_ms: int | None, view: PositionView):
        """Remember the settled rate; exit if holding the side that no longer receives."""
        p = self.params
        self.rates.append(Decimal(rate))
        interval_ms = int(p.fundingIntervalHours * 3_600_000)
        self.next_funding_ms = next_funding_ms if next_funding_ms is not None else ts_ms + interval_ms
        self.warm = len(self.rates) >= p.historyLength
        if view.size == 0 or view.pending:
            return None
        exp = self.expected_rate_bps()
        receiving = exp if view.size < 0 else -exp  # > 0: the position receives
        if receiving < p.exitFundingRateBps:
            return OrderIntent("Sell" if view.size > 0 else "Buy", "FUNDING_EXIT", reduce_only=True, hedge=p.hedged)
        return None

    def on_bar(self, bar, view: PositionView):
        """Enter the receiving side inside the window before the next funding."""
        p = self.params
        if view.size != 0:
            return None
        if not self.warm or self.next_funding_ms is None:
            return R_WARMING_UP
        exp = self.expected_rate_bps()
        if abs(exp) < p.minFundingRateBps:
            return R_NO_SIGNAL
        if self.next_funding_ms - bar.ts_ms > p.entryBeforeFundingMinutes * 60_000 or bar.ts_ms >= self.next_funding_ms:
            return R_WAIT_WINDOW
        side = "Sell" if exp > 0 else "Buy"
        return OrderIntent(side, "FUNDING_ENTRY", notional_usdt=Decimal(repr(p.positionNotionalUsdt)), hedge=p.hedged)
