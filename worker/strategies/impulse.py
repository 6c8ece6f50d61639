"""``impulse``: HEAN's impulse engine on candles.

Trend filter ``EMA(fast) > EMA(slow)`` for longs (``<`` for shorts); impulse
``ln(close / close[-lookback]) > impulseThreshold * sigma * sqrt(lookback)`` where
sigma is the rolling standard deviation of 1-bar log returns; stop
``stopLossAtr * ATR`` and target ``takeProfitAtr * ATR`` from the entry; exit on a
trend flip; ``cooldownBars`` after each exit (kept by the engine); size: risk
``riskPerTradeFraction`` of equity over the stop distance.

HEAN's extra gates (all off by default, see :class:`ImpulseParams`), checked in this
order after the signal: hard volatility-percentile reject, volume check, regime
gating (trend strength), spread filter (only with book data), maker-edge threshold,
confirmation. With the defaults this module computes exactly what the native kernel
(``native/src/engine.cpp``) computes, float for float.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from decimal import Decimal

from hean.indicators import ATR, EMA, RollingLogReturnStd

from .base import R_NO_SIGNAL, R_WARMING_UP, BookTop, OrderIntent, PositionView, Strategy

R_VOL_PERCENTILE = "VOLATILITY_ABOVE_PERCENTILE"
R_LOW_VOLUME = "LOW_VOLUME"
R_REGIME = "REGIME_NOT_TRENDING"
R_SPREAD = "SPREAD_TOO_WIDE"
R_EDGE = "EDGE_BELOW_THRESHOLD"
R_CONFIRMING = "AWAITING_CONFIRMATION"


class ImpulseStrategy(Strategy):
    """Per-symbol impulse state: EMAs, volatility, ATR, the last ``lookback + 1``
    closes, and the optional gates' history (volatility percentile, volume mean,
    confirmation streak, last book top)."""

    name = "impulse"

    def period_key(self, p) -> tuple:
        return (p.emaFastPeriod, p.emaSlowPeriod, p.volatilityWindow, p.atrPeriod, p.impulseLookback,
                p.volatilityPercentileWindow, p.volumeWindow)

    def reset(self) -> None:
        p = self.params
        self.ema_fast = EMA(p.emaFastPeriod)
        self.ema_slow = EMA(p.emaSlowPeriod)
        self.vol = RollingLogReturnStd(p.volatilityWindow)
        self.atr = ATR(p.atrPeriod)
        self.closes: deque = deque(maxlen=p.impulseLookback + 1)
        self.sigmas: deque = deque()          # rolling volatility history (time order)
        self.sigmas_sorted: list[float] = []  # the same values, sorted (percentile)
        self.volumes: deque = deque(maxlen=p.volumeWindow)
        self.streak = 0                       # consecutive candles with the same signal
        self.streak_side = ""
        self.book: BookTop | None = None
        self.warm = False
        self.last = (math.nan, math.nan, math.nan, math.nan)

    def volatility(self) -> float:
        """sigma of the last candle (rolling std of 1-bar log returns, a fraction)."""
        return self.last[2]

    def on_book(self, top: BookTop, view: PositionView):
        """Remember the top of book for the spread filter (no orders from the book)."""
        self.book = top
        return None

    def _track(self, sigma: float, volume: float) -> None:
        p = self.params
        if p.maxVolatilityPercentile is not None and not math.isnan(sigma):
            self.sigmas.append(sigma)
            bisect.insort(self.sigmas_sorted, sigma)
            if len(self.sigmas) > p.volatilityPercentileWindow:
                old = self.sigmas.popleft()
                del self.sigmas_sorted[bisect.bisect_left(self.sigmas_sorted, old)]
        if p.minVolumeRatio > 0:
            self.volumes.append(volume)

    def volatility_percentile_cap(self) -> float | None:
        """The ``maxVolatilityPercentile`` percentile of the volatility history
        (nearest-rank method), or None until 20 values are known."""
        p = self.params
        n = len(self.sigmas_sorted)
        if p.maxVolatilityPercentile is None or n < 20:
            return None
        k = max(0, min(n - 1, math.ceil(p.maxVolatilityPercentile / 100 * n) - 1))
        return self.sigmas_sorted[k]

    def on_bar(self, bar, view: PositionView):
        """Update the indicators with ``bar`` and return the exit/entry decision."""
        close_f = float(bar.close)
        fast = self.ema_fast.update(close_f)
        slow = self.ema_slow.update(close_f)
        sigma = self.vol.update(close_f)
        atr = self.atr.update(float(bar.high), float(bar.low), close_f)
        self.closes.append(close_f)
        p = self.params
        gates = p.maxVolatilityPercentile is not None or p.minVolumeRatio > 0
        if gates:
            # the percentile/volume history excludes the current candle: compare first
            cap = self.volatility_percentile_cap()
            mean_volume = sum(self.volumes) / len(self.volumes) if self.volumes else None
            self._track(sigma, float(bar.volume))
        else:
            cap = mean_volume = None
        self.last = (fast, slow, sigma, atr)
        self.warm = not (math.isnan(fast) or math.isnan(slow) or math.isnan(sigma) or math.isnan(atr)) \
            and len(self.closes) == self.closes.maxlen
        if view.size != 0:
            if self.warm and not view.pending and ((view.size > 0 and fast < slow) or (view.size < 0 and fast > slow)):
                return OrderIntent("Sell" if view.size > 0 else "Buy", "TREND_FLIP", reduce_only=True)
            return None
        if not self.warm:
            return R_WARMING_UP
        ret = math.log(self.closes[-1] / self.closes[0])
        threshold = p.impulseThreshold * sigma * math.sqrt(p.impulseLookback)
        if fast > slow and ret > threshold:
            side = "Buy"
        elif fast < slow and ret < -threshold:
            side = "Sell"
        else:
            self.streak, self.streak_side = 0, ""
            return R_NO_SIGNAL
        if cap is not None and sigma > cap:
            return R_VOL_PERCENTILE
        if p.minVolumeRatio > 0 and (mean_volume is None or mean_volume <= 0
                                     or float(bar.volume) < p.minVolumeRatio * mean_volume):
            return R_LOW_VOLUME
        if p.minTrendStrengthBps > 0 and abs(fast - slow) / close_f * 10000 < p.minTrendStrengthBps:
            return R_REGIME
        if p.maxSpreadBps is not None and self.book is not None and self.book.spread_bps > p.maxSpreadBps:
            return R_SPREAD
        if p.minEdgeBps is not None:
            edge = p.takeProfitAtr * atr / close_f * 10000 - 2 * float(view.taker_fee) * 10000
            if edge < p.minEdgeBps:
                return R_EDGE
        if p.confirmationBars > 0:
            self.streak = self.streak + 1 if self.streak_side == side else 1
            self.streak_side = side
            if self.streak <= p.confirmationBars:
                return R_CONFIRMING
        return OrderIntent(side, "IMPULSE_ENTRY", risk_fraction=p.riskPerTradeFraction,
                           stop_distance=Decimal(repr(p.stopLossAtr * atr)),
                           target_distance=Decimal(repr(p.takeProfitAtr * atr)))
