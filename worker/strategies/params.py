"""Typed parameters (pydantic) of every strategy: bounds, units and descriptions.

Where they live in ``TradingStrategy.spec.params``:

* ``impulse`` reads the flat fields of ``spec.params`` (the original layout, validated
  by the CRD's structural schema and again here);
* every other strategy reads its own sub-object: ``spec.params.momentum``,
  ``spec.params.grid``, ``spec.params.scalping``, ``spec.params.fundingHarvest``,
  ``spec.params.basisArbitrage``. Those sub-objects are
  ``x-kubernetes-preserve-unknown-fields`` in the CRD and validated by these models in
  the operator (``Ready=False`` naming the field, plus an Event) and in the worker.

Units are in the names: ``...Bars`` (candles), ``...Bps`` (basis points, 1 bp =
0.01 %), ``...Usdt``, ``...Fraction`` (0..1, not percent), ``...Percent`` (0..100),
``...Seconds``, ``...Ticks`` (multiples of the instrument's tick size), ``...Atr``
(multiples of the Average True Range).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Params(BaseModel):
    # extra="forbid": a misspelt parameter is an error naming it, not silently ignored.
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class ImpulseParams(_Params):
    """Parameters of HEAN's impulse breakout strategy (flat in ``spec.params``).

    Periods and windows are in bars; ``impulseThreshold`` is in multiples of the
    per-bar volatility scaled by ``sqrt(impulseLookback)``; stop and target
    distances are in multiples of ATR; ``riskPerTradeFraction`` is the fraction of
    equity (not percent) lost if the stop is hit.

    The HEAN gates below are off by default (``None``/``0``) so that the default
    behaviour is exactly the native C++ kernel's (``hean.engine.NativeEngine``, which
    refuses a spec that turns one on): ``maxVolatilityPercentile`` (hard reject when
    the current volatility is above this percentile of its own rolling history of
    ``volatilityPercentileWindow`` bars; HEAN uses 95), ``minVolumeRatio`` (the
    candle's volume must be at least this multiple of the mean volume of the last
    ``volumeWindow`` bars), ``minTrendStrengthBps`` (regime gating: entries only in the
    TRENDING regime, ``|EMAfast - EMAslow| / close`` at least this many bps),
    ``maxSpreadBps`` (spread filter; applies only while order-book or ticker data is
    present), ``confirmationBars`` (the signal must repeat on this many further
    consecutive candles), ``minEdgeBps`` (maker-edge threshold: the take-profit
    distance minus the round-trip taker fee must be at least this many bps of the
    price).
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    emaFastPeriod: int = Field(20, ge=2, le=500, description="fast EMA period of the trend filter, bars")
    emaSlowPeriod: int = Field(100, ge=3, le=2000, description="slow EMA period of the trend filter, bars")
    volatilityWindow: int = Field(60, ge=5, le=1000, description="bars of 1-bar log returns for volatility")
    impulseLookback: int = Field(5, ge=1, le=120, description="bars over which the impulse is measured")
    impulseThreshold: float = Field(3.0, ge=0.1, le=20, description="multiples of sigma*sqrt(lookback)")
    atrPeriod: int = Field(14, ge=2, le=500, description="ATR period, bars")
    stopLossAtr: float = Field(8.0, ge=0.1, le=50, description="stop distance, ATRs")
    takeProfitAtr: float = Field(16.0, ge=0.1, le=100, description="target distance, ATRs")
    cooldownBars: int = Field(30, ge=0, le=10000, description="bars without entries after an exit")
    riskPerTradeFraction: float = Field(0.005, ge=0.0001, le=0.1, description="equity fraction lost at the stop")
    maxVolatilityPercentile: float | None = Field(
        None, gt=0, lt=100, description="hard reject above this rolling volatility percentile (HEAN: 95); off if unset")
    volatilityPercentileWindow: int = Field(1440, ge=20, le=100000, description="bars of volatility history")
    minVolumeRatio: float = Field(0.0, ge=0, le=100, description="volume / mean volume of volumeWindow bars; 0 = off")
    volumeWindow: int = Field(60, ge=2, le=10000, description="bars of the volume mean")
    minTrendStrengthBps: float = Field(0.0, ge=0, le=10000, description="regime gate: abs(EMAfast - EMAslow) / close, bps; 0 = off")
    maxSpreadBps: float | None = Field(None, gt=0, le=10000, description="spread filter with book data, bps; off if unset")
    confirmationBars: int = Field(0, ge=0, le=100, description="further candles the signal must persist; 0 = off")
    minEdgeBps: float | None = Field(
        None, ge=-10000, le=10000, description="target minus round-trip taker fee, bps of price; off if unset")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> "ImpulseParams":
        if self.emaFastPeriod >= self.emaSlowPeriod:
            raise ValueError(
                f"spec.params.emaFastPeriod ({self.emaFastPeriod}) must be less than "
                f"spec.params.emaSlowPeriod ({self.emaSlowPeriod})"
            )
        return self

    def gates_on(self) -> list[str]:
        """Names of the gates that are switched on (the native kernel has none)."""
        on = []
        if self.maxVolatilityPercentile is not None:
            on.append("maxVolatilityPercentile")
        if self.minVolumeRatio > 0:
            on.append("minVolumeRatio")
        if self.minTrendStrengthBps > 0:
            on.append("minTrendStrengthBps")
        if self.maxSpreadBps is not None:
            on.append("maxSpreadBps")
        if self.confirmationBars > 0:
            on.append("confirmationBars")
        if self.minEdgeBps is not None:
            on.append("minEdgeBps")
        return on


class MomentumParams(_Params):
    """``spec.params.momentum`` (MomentumTrader, trend following).

    Entry long when the rate of change over ``lookbackBars`` is above
    ``entryThresholdBps`` and the close is above EMA(``trendEmaPeriod``); short
    mirrored (linear only, if ``allowShort``). Exit when the rate of change crosses
    ``exitThresholdBps`` against the position or at the ATR stop/target.
    """

    lookbackBars: int = Field(60, ge=2, le=5000, description="rate-of-change window, bars")
    trendEmaPeriod: int = Field(240, ge=2, le=5000, description="trend EMA period, bars")
    entryThresholdBps: float = Field(80.0, gt=0, le=10000, description="rate of change to enter, bps")
    exitThresholdBps: float = Field(0.0, ge=-10000, le=10000, description="rate of change against the position to exit, bps")
    atrPeriod: int = Field(14, ge=2, le=500, description="ATR period, bars")
    stopLossAtr: float = Field(8.0, ge=0.1, le=50, description="stop distance, ATRs")
    takeProfitAtr: float = Field(24.0, ge=0.1, le=100, description="target distance, ATRs")
    cooldownBars: int = Field(60, ge=0, le=10000, description="bars without entries after an exit")
    riskPerTradeFraction: float = Field(0.005, ge=0.0001, le=0.1, description="equity fraction lost at the stop")
    allowShort: bool = Field(True, description="take short entries (linear only)")


class GridParams(_Params):
    """``spec.params.grid`` (EnhancedGrid, a long-inventory range grid).

    ``levels`` grid lines between ``lowerPrice`` and ``upperPrice`` (USDT); if the
    bounds are not given the grid is centred on the first close with a total width of
    ``rangePercent`` percent. Below the centre the strategy holds one level of
    ``levelNotionalUsdt`` per grid line above the price (buys as price falls
    through lines, sells as it rises back). A close outside the range for
    ``breakoutBars`` candles is a breakout: with ``recenterOnBreakout`` the inventory
    is sold and the grid re-centred on the close.
    """

    levels: int = Field(10, ge=2, le=200, description="number of grid lines")
    lowerPrice: float | None = Field(None, gt=0, le=1e9, description="lower bound, USDT (at most 1e9); auto if unset")
    upperPrice: float | None = Field(None, gt=0, le=1e9, description="upper bound, USDT (at most 1e9); auto if unset")
    rangePercent: float = Field(3.0, gt=0, le=100, description="auto range total width, percent of the centre")
    levelNotionalUsdt: float = Field(100.0, gt=0, le=1e7, description="size per grid level, USDT notional")
    recenterOnBreakout: bool = Field(True, description="sell the inventory and re-centre on a breakout")
    breakoutBars: int = Field(3, ge=1, le=10000, description="consecutive closes outside the range that make a breakout")

    @model_validator(mode="after")
    def _bounds(self) -> "GridParams":
        if (self.lowerPrice is None) != (self.upperPrice is None):
            raise ValueError("spec.params.grid.lowerPrice and spec.params.grid.upperPrice must be set together")
        if self.lowerPrice is not None and self.upperPrice is not None and self.lowerPrice >= self.upperPrice:
            raise ValueError(f"spec.params.grid.lowerPrice ({self.lowerPrice}) must be less than "
                             f"spec.params.grid.upperPrice ({self.upperPrice})")
        return self


class ScalpingParams(_Params):
    """``spec.params.scalping`` (HFScalping on the order book).

    Entry when the spread is at most ``maxSpreadBps`` and the top-``depthLevels``
    size imbalance ``(bid - ask) / (bid + ask)`` is at least ``imbalanceThreshold``
    (long) or at most minus it (short), as a taker at the touch. Tight exits:
    ``takeProfitTicks`` / ``stopLossTicks`` from the entry on the mid price, or after
    ``maxHoldSeconds``. Strict order-rate budget: at most ``maxOrdersPerMinute``
    orders in any 60 s (entries beyond it are refused, not queued; exits always go)
    and ``minOrderIntervalMs`` between two entries.
    """

    maxSpreadBps: float = Field(2.0, gt=0, le=1000, description="largest spread to enter, bps of mid")
    imbalanceThreshold: float = Field(0.6, gt=0, lt=1, description="top-of-book size imbalance to enter, -1..1")
    depthLevels: int = Field(5, ge=1, le=200, description="book levels per side in the imbalance")
    takeProfitTicks: int = Field(3, ge=1, le=10000, description="target from entry, ticks")
    stopLossTicks: int = Field(3, ge=1, le=10000, description="stop from entry, ticks")
    maxHoldSeconds: float = Field(30.0, gt=0, le=86400, description="time exit, seconds")
    orderNotionalUsdt: float = Field(200.0, gt=0, le=1e7, description="size per entry, USDT notional")
    maxOrdersPerMinute: int = Field(20, ge=1, le=6000, description="order budget per rolling 60 s")
    minOrderIntervalMs: int = Field(500, ge=0, le=3_600_000, description="pause between entries, ms")


class FundingHarvestParams(_Params):
    """``spec.params.fundingHarvest``: hold the side of a perpetual that receives
    funding (shorts when the rate is positive, longs when negative).

    The expected rate is the mean of the last ``historyLength`` settled funding rates
    (Bybit ``/v5/market/funding/history``); a position is opened when its absolute
    value is at least ``minFundingRateBps`` and the next funding time is at most
    ``entryBeforeFundingMinutes`` away, and closed when the expected rate falls below
    ``exitFundingRateBps`` or changes sign. ``hedged``: also hold the opposite spot
    leg of the same quantity (delta neutral; the leg is marked at the perpetual's
    price, so its PnL offsets the perpetual's and only funding and fees remain).
    """

    minFundingRateBps: float = Field(1.0, gt=0, le=1000, description="absolute expected funding rate to enter, bps per interval")
    exitFundingRateBps: float = Field(0.2, ge=0, le=1000, description="exit when the rate received falls below this, bps")
    historyLength: int = Field(3, ge=1, le=1000, description="settled rates in the expected-rate mean")
    entryBeforeFundingMinutes: float = Field(480.0, gt=0, le=1440, description="enter at most this long before funding")
    positionNotionalUsdt: float = Field(1000.0, gt=0, le=1e8, description="perpetual leg notional, USDT")
    hedged: bool = Field(False, description="hold an opposite spot leg of the same quantity")
    fundingIntervalHours: float = Field(8.0, gt=0, le=24, description="funding interval when the feed has no next time")

    @model_validator(mode="after")
    def _exit_below_entry(self) -> "FundingHarvestParams":
        if self.exitFundingRateBps >= self.minFundingRateBps:
            raise ValueError(f"spec.params.fundingHarvest.exitFundingRateBps ({self.exitFundingRateBps}) must be "
                             f"less than spec.params.fundingHarvest.minFundingRateBps ({self.minFundingRateBps})")
        return self


class BasisArbitrageParams(_Params):
    """``spec.params.basisArbitrage``: spot versus perpetual basis capture.

    basis = (perp - spot) / spot in bps. When the basis is at least
    ``entryBasisBps`` the strategy sells the perpetual and buys the spot leg (cash and
    carry); when it is at most minus it and ``allowReverse``, buys the perpetual and
    sells spot (needs spot margin). Both legs are closed when ``|basis|`` is at most
    ``exitBasisBps``. ``legNotionalUsdt`` per leg; the two legs' quantities may
    differ by at most ``maxLegImbalanceFraction`` of the larger (else the trade is
    refused, or, if it happens while open, both legs are closed).
    """

    entryBasisBps: float = Field(15.0, gt=0, le=10000, description="absolute basis to open, bps")
    exitBasisBps: float = Field(3.0, ge=0, le=10000, description="absolute basis to close, bps")
    legNotionalUsdt: float = Field(1000.0, gt=0, le=1e8, description="notional per leg, USDT")
    maxLegImbalanceFraction: float = Field(0.02, ge=0, le=1, description="largest leg qty mismatch, fraction")
    allowReverse: bool = Field(False, description="also trade a negative basis (short spot)")

    @model_validator(mode="after")
    def _exit_below_entry(self) -> "BasisArbitrageParams":
        if self.exitBasisBps >= self.entryBasisBps:
            raise ValueError(f"spec.params.basisArbitrage.exitBasisBps ({self.exitBasisBps}) must be less than "
                             f"spec.params.basisArbitrage.entryBasisBps ({self.entryBasisBps})")
        return self


class ScannerSpec(BaseModel):
    """``spec.scanner``: rank ``universe`` by liquidity (quote turnover) and
    volatility over ``lookbackBars`` candles and trade the ``topN`` best; re-rank
    every ``rerankBars`` candles. Score = ``liquidityWeight`` x turnover rank score +
    ``volatilityWeight`` x volatility rank score (rank scores in 0..1)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    universe: list[str] = Field(min_length=1, max_length=10)
    topN: int = Field(2, ge=1, le=10)
    lookbackBars: int = Field(1440, ge=10, le=100000)
    rerankBars: int = Field(1440, ge=1, le=100000)
    liquidityWeight: float = Field(0.5, ge=0, le=1)
    volatilityWeight: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> "ScannerSpec":
        if self.topN > len(self.universe):
            raise ValueError(f"spec.scanner.topN ({self.topN}) must be at most the universe size ({len(self.universe)})")
        if self.liquidityWeight + self.volatilityWeight <= 0:
            raise ValueError("spec.scanner.liquidityWeight + spec.scanner.volatilityWeight must be > 0")
        return self


#: strategy name -> (key under spec.params or None for flat, params model)
PARAMS: dict[str, tuple[str | None, type[BaseModel]]] = {
    "impulse": (None, ImpulseParams),
    "momentum": ("momentum", MomentumParams),
    "grid": ("grid", GridParams),
    "scalping": ("scalping", ScalpingParams),
    "funding_harvest": ("fundingHarvest", FundingHarvestParams),
    "basis_arbitrage": ("basisArbitrage", BasisArbitrageParams),
}
STRATEGY_NAMES: tuple[str, ...] = tuple(PARAMS)
StrategyName = Literal["impulse", "momentum", "grid", "scalping", "funding_harvest", "basis_arbitrage"]
