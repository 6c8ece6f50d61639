"""``momentum``: trend following (HEAN's MomentumTrader) on candles.

Rate of change ``roc = close / close[-lookbackBars] - 1`` (in bps). Long entry when
``roc >= entryThresholdBps`` and the close is above EMA(``trendEmaPeriod``); short
entry mirrored (``allowShort``, linear only). Exit when ``roc`` turns against the
position by ``exitThresholdBps`` (long: ``roc <= -exitThresholdBps``), or at the
engine's ATR stop-loss/take-profit. Sizing: ``riskPerTradeFraction`` of equity over
the stop distance.
"""

from __future__ import annotations

import math
from collections import deque
from decimal import Decimal

from hean.indicators import ATR, EMA

from .base import R_NO_SIGNAL, R_WARMING_UP, OrderIntent, PositionView, Strategy

R_SHORTS_OFF = "SHORTS_DISABLED"


class MomentumStrategy(Strategy):
    """Per-symbol momentum state: trend EMA, ATR and the last ``lookbackBars + 1`` closes."""

    name = "momentum"

    def period_key(self, p) -> tuple:
        return (p.lookbackBars, p.trendEmaPeriod, p.atrPeriod)

    def reset(self) -> None:
        p = self.params
        self.ema = EMA(p.trendEmaPeriod)
        self.atr = ATR(p.atrPeriod)
        self.closes: deque = deque(maxlen=p.lookbackBars + 1)
        self.warm = False
        self.roc_bps = math.nan

    def on_bar(self, bar, view: PositionView):
        """Update with ``bar``; exit on a momentum reversal, else look for an entry."""
        p = self.params
        close = float(bar.close)
        trend = self.ema.update(close)
        atr = self.atr.update(float(bar.high), float(bar.low), close)
        self.closes.append(close)
        self.warm = len(self.closes) == self.closes.maxlen and not (math.isnan(trend) or math.isnan(atr))
        if not self.warm:
            return None if view.size != 0 else R_WARMING_UP
        roc = (close / self.closes[0] - 1.0) * 10000.0
        self.roc_bps = roc
        if view.size != 0:
            if not view.pending and ((view.size > 0 and roc <= -p.exitThresholdBps)
                                     or (view.size < 0 and roc >= p.exitThresholdBps)):
                return OrderIntent("Sell" if view.size > 0 else "Buy", "MOMENTUM_EXIT", reduce_only=True)
            return None
        if roc >= p.entryThresholdBps and close > trend:
            side = "Buy"
        elif roc <= -p.entryThresholdBps and close < trend:
            if not p.allowShort:
                return R_SHORTS_OFF
            side = "Sell"
        else:
            return R_NO_SIGNAL
        return OrderIntent(side, "MOMENTUM_ENTRY", risk_fraction=p.riskPerTradeFraction,
                           stop_distance=Decimal(repr(p.stopLossAtr * atr)),
                           target_distance=Decimal(repr(p.takeProfitAtr * atr)))
