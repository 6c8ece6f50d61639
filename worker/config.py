"""Typed views (pydantic) of the custom resources the worker reads.

The API server has already validated the objects against the CRD schemas in
``crds/``; these models repeat the bounds so that the worker also refuses a bad
object it was handed some other way (a test, a real cluster with an older CRD), with
an error naming the field. Field names are the CRDs' camelCase names; units are in
the names (``...Usdt``, ``...Percent``, ``...Bps``, ``...Fraction``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from hean import api
from .strategies import parse_params
from .strategies.params import (
    BasisArbitrageParams,
    FundingHarvestParams,
    GridParams,
    ImpulseParams,
    MomentumParams,
    ScalpingParams,
    ScannerSpec,
    StrategyName,
)
from hean.quarantine import parse_time, quarantine_applies, quarantine_expiry  # noqa: F401  (re-exported)


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class ReplaySpec(_Model):
    """``spec.marketData.replay``: candle interval in minutes (``"1"``, ``"5"``,
    ``"60"``), ``speed`` (replay clock multiplier: 60 plays one 1-minute candle per
    second), optional ``start`` (skip candles before it) and ``loop``."""

    interval: Literal["1", "5", "60"] = "1"
    speed: float = Field(600.0, ge=1, le=1e7)
    start: datetime | None = None
    loop: bool = False


class MarketDataSpec(_Model):
    """``spec.marketData``: ``source`` ``replay`` (recorded candles) or ``live``."""

    source: Literal["replay", "live"] = "replay"
    replay: ReplaySpec = ReplaySpec()


class ExecutionSpec(_Model):
    """``spec.execution``: paper slippage in basis points of the fill price."""

    slippageBps: float = Field(2.0, ge=0, le=500)


class BybitSpec(_Model):
    """``spec.bybit``: tunables of the Bybit connection (only with ``marketData.source:
    live``). ``orderbookDepth`` levels of ``orderbook.<depth>.<symbol>`` (1, 50, 200, 1000:
    https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook); ``staleSeconds``
    without a public frame before entries stop; ``reconcileSeconds`` between
    reconciliations; ``deadManSwitchSeconds`` Bybit's Disconnection Protect window
    (0 = off, else 3..300 s: https://bybit-exchange.github.io/docs/v5/order/dcp);
    ``recvWindowMs`` the signed requests' ``recv_window`` (ms)."""

    orderbookDepth: Literal[1, 50, 200, 1000] = 50
    staleSeconds: float = Field(10.0, ge=1, le=300)
    reconcileSeconds: float = Field(30.0, ge=5, le=3600)
    deadManSwitchSeconds: int = Field(0, ge=0, le=300)
    recvWindowMs: int = Field(5000, ge=1000, le=60000)

    @model_validator(mode="after")
    def _dcp_window(self) -> "BybitSpec":
        if 0 < self.deadManSwitchSeconds < 3:
            raise ValueError(f"spec.bybit.deadManSwitchSeconds must be 0 (off) or 3..300, "
                             f"got {self.deadManSwitchSeconds}")
        return self


class RiskPolicyRef(_Model):
    """``spec.riskPolicyRef``: the name of a RiskPolicy in the strategy's namespace."""
    name: str = Field(min_length=1, max_length=253)


StrategyParams = Union[ImpulseParams, MomentumParams, GridParams, ScalpingParams, FundingHarvestParams,
                       BasisArbitrageParams]


class StrategySpec(_Model):
    """``TradingStrategy.spec``; ``capital`` in USDT. ``params`` is the validated
    parameter model of ``strategy`` (see :mod:`hean.worker.strategies.params`);
    ``scanner`` optionally picks the traded symbols from a universe."""

    strategy: StrategyName
    symbols: list[str] = Field(min_length=1, max_length=10)
    category: Literal["linear", "spot"] = "linear"
    mode: Literal["paper", "testnet", "demo", "live"] = "paper"
    capital: Decimal = Field(gt=0, le=Decimal("1e9"))
    maxLeverage: Decimal = Field(Decimal(1), ge=1, le=100)
    riskPolicyRef: RiskPolicyRef
    params: StrategyParams = Field(None, validate_default=True)
    paused: bool = False
    marketData: MarketDataSpec = MarketDataSpec()
    execution: ExecutionSpec = ExecutionSpec()
    bybit: BybitSpec | None = None
    scanner: ScannerSpec | None = None

    @field_validator("params", mode="before")
    @classmethod
    def _typed_params(cls, value: Any, info: ValidationInfo) -> Any:
        strategy = info.data.get("strategy")
        if isinstance(value, BaseModel) or strategy is None:
            return value if isinstance(value, BaseModel) else ImpulseParams()
        return parse_params(strategy, value)

    @model_validator(mode="after")
    def _bybit_needs_live_data(self) -> "StrategySpec":
        if self.bybit is not None and self.marketData.source != "live":
            raise ValueError("spec.bybit configures the Bybit connection and needs spec.marketData.source 'live'")
        if self.bybit is not None and self.bybit.deadManSwitchSeconds and self.mode == "paper":
            raise ValueError("spec.bybit.deadManSwitchSeconds needs an exchange mode (testnet, demo or live)")
        return self


class AutoQuarantineSpec(_Model):
    """``RiskPolicy.spec.autoQuarantine``: when the worker creates a SymbolQuarantine
    (TTL ``ttlSeconds``) for one of its symbols by itself. ``consecutiveRejects``: that
    many order rejects in a row on the symbol (absent = off); ``maxSpreadBps``: the
    quoted bid/ask spread above this many basis points of the mid price (absent =
    off; needs a live order book)."""

    consecutiveRejects: int | None = Field(None, ge=1, le=1000)
    maxSpreadBps: float | None = Field(None, gt=0, le=10000)
    ttlSeconds: int = Field(900, ge=1, le=31_536_000)


class ProfitCaptureSpec(_Model):
    """``RiskPolicy.spec.profitCapture`` (HEAN's profit capture). Armed when equity
    gained ``targetPercent`` percent over the cycle's starting equity; then it trails
    the best gain and captures when the gain falls below ``(1 - trailFraction)`` of
    it (0 = capture at the target). ``mode`` ``full`` flattens every position,
    ``partial`` reduces each by ``partialFraction``; ``afterCapture`` ``pause`` blocks
    new entries until the next UTC day, ``continue`` starts a new cycle at once."""

    enabled: bool = False
    targetPercent: Decimal = Field(Decimal(5), gt=0, le=1000)
    trailFraction: Decimal = Field(Decimal("0.3"), ge=0, lt=1)
    mode: Literal["full", "partial"] = "full"
    partialFraction: Decimal = Field(Decimal("0.5"), gt=0, le=1)
    afterCapture: Literal["pause", "continue"] = "pause"


class FlashCrashSpec(_Model):
    """``RiskPolicy.spec.flashCrash`` (Quantum Trader's detector): a drop of
    ``dropPercent`` percent of equity or of a symbol's price (``source``) within
    ``windowSeconds`` seconds escalates to ``escalateTo`` at the next evaluation (every
    candle). A HARD_STOP latches as usual; a lower state holds ``holdSeconds``."""

    enabled: bool = False
    dropPercent: Decimal = Field(Decimal(3), gt=0, le=100)
    windowSeconds: int = Field(10, ge=1, le=86_400)
    source: Literal["equity", "price", "both"] = "both"
    escalateTo: Literal["SOFT_BRAKE", "QUARANTINE", "HARD_STOP"] = "HARD_STOP"
    holdSeconds: int = Field(300, ge=0, le=86_400)


class VolatilityRegimesSpec(_Model):
    """``RiskPolicy.spec.volatilityRegimes`` (Quantum Trader): a symbol's current
    volatility ranked against its last ``historyBars`` readings; at or above the
    ``highPercentile`` the stop-loss distance is multiplied by ``highMultiplier``, at
    or above ``extremePercentile`` by ``extremeMultiplier`` (risk per trade stays the
    same, so the size shrinks)."""

    enabled: bool = False
    historyBars: int = Field(1440, ge=10, le=100_000)
    highPercentile: float = Field(75, gt=0, lt=100)
    extremePercentile: float = Field(95, gt=0, lt=100)
    highMultiplier: Decimal = Field(Decimal("1.5"), ge=1, le=20)
    extremeMultiplier: Decimal = Field(Decimal("2.5"), ge=1, le=20)

    @model_validator(mode="after")
    def _ordered(self) -> "VolatilityRegimesSpec":
        if self.highPercentile >= self.extremePercentile:
            raise ValueError("spec.volatilityRegimes.highPercentile must be less than "
                             "spec.volatilityRegimes.extremePercentile")
        return self


class OrderRouterSpec(_Model):
    """``RiskPolicy.spec.orderRouter`` (Quantum Trader's hybrid orders). ``market``
    (default): every order is a market order. ``limitFirst``: entries and strategy
    exits rest as limit orders ``limitOffsetBps`` basis points inside the decision
    price (``postOnly``: never take liquidity), falling back to a market order after
    ``timeoutSeconds`` or when the price has moved ``maxChaseBps`` basis points away.
    Exits are always reduce-only. Stop-losses, take-profits, HARD_STOP and
    profit-capture flattening are always market orders."""

    mode: Literal["market", "limitFirst"] = "market"
    limitOffsetBps: float = Field(0, ge=0, le=500)
    timeoutSeconds: int = Field(120, ge=1, le=86_400)
    maxChaseBps: float = Field(20, gt=0, le=5000)
    postOnly: bool = True


class RiskPolicySpec(_Model):
    """``RiskPolicy.spec``: drawdowns in percent of peak equity, money in USDT,
    ``softBrakeSizeFactor`` a fraction (0 blocks new entries in SOFT_BRAKE).

    Optional limits (absent = off): ``maxOrderNotionalUsdt`` caps one order's
    notional (a larger entry is shrunk to it); ``maxRiskPerTradeFraction`` caps the
    strategy's ``riskPerTradeFraction``. The sub-objects are documented on their
    models; every feature that would change trading is off by default."""

    softMaxDrawdownPercent: Decimal = Field(Decimal(5), ge=0, le=100)
    hardMaxDrawdownPercent: Decimal = Field(Decimal(10), gt=0, le=100)
    maxDailyLossUsdt: Decimal = Field(gt=0)
    maxLeverage: Decimal = Field(Decimal(3), ge=1, le=100)
    maxPositionNotionalUsdt: Decimal = Field(gt=0)
    maxOpenPositions: int = Field(5, ge=1, le=1000)
    maxOrdersPerMinute: int = Field(60, ge=1, le=6000)
    softBrakeSizeFactor: Decimal = Field(Decimal("0.5"), ge=0, le=1)
    maxOrderNotionalUsdt: Decimal | None = Field(None, gt=0)
    maxRiskPerTradeFraction: Decimal | None = Field(None, gt=0, le=1)
    autoQuarantine: AutoQuarantineSpec = AutoQuarantineSpec()
    profitCapture: ProfitCaptureSpec = ProfitCaptureSpec()
    flashCrash: FlashCrashSpec = FlashCrashSpec()
    volatilityRegimes: VolatilityRegimesSpec = VolatilityRegimesSpec()
    orderRouter: OrderRouterSpec = OrderRouterSpec()

    @model_validator(mode="after")
    def _soft_below_hard(self) -> "RiskPolicySpec":
        if self.softMaxDrawdownPercent >= self.hardMaxDrawdownPercent:
            raise ValueError(
                "spec.softMaxDrawdownPercent must be less than spec.hardMaxDrawdownPercent"
            )
        return self


class QuarantineSpec(_Model):
    """``SymbolQuarantine.spec``: exactly one of ``expiresAt`` or ``ttlSeconds``."""

    symbol: str
    reason: str = ""
    expiresAt: datetime | None = None
    ttlSeconds: int | None = Field(None, ge=1, le=31_536_000)
    strategySelector: dict | None = None


def describe_validation_error(prefix: str, err: ValidationError) -> str:
    """Render a pydantic error as ``prefix.field: message; ...`` naming every field."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()))
        msg = str(e.get("msg"))
        if msg.startswith("Value error, spec."):  # the message already names the field
            parts.append(msg[len("Value error, "):])
            continue
        where = f"{prefix}.{loc}" if loc else prefix
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


__all__ = [
    "ImpulseParams",
    "BybitSpec",
    "MomentumParams",
    "GridParams",
    "ScalpingParams",
    "FundingHarvestParams",
    "BasisArbitrageParams",
    "ScannerSpec",
    "StrategySpec",
    "RiskPolicySpec",
    "AutoQuarantineSpec",
    "ProfitCaptureSpec",
    "FlashCrashSpec",
    "VolatilityRegimesSpec",
    "OrderRouterSpec",
    "QuarantineSpec",
    "quarantine_applies",
    "quarantine_expiry",
    "parse_time",
    "describe_validation_error",
    "api",
]
