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
    scanner: ScannerSpec | None = None

    @field_validator("params", mode="before")
    @classmethod
    def _typed_params(cls, value: Any, info: ValidationInfo) -> Any:
        strategy = info.data.get("strategy")
        if isinstance(value, BaseModel) or strategy is None:
            return value if isinstance(value, BaseModel) else ImpulseParams()
        return parse_params(strategy, value)


class RiskPolicySpec(_Model):
    """``RiskPolicy.spec``: drawdowns in percent of peak equity, money in USDT,
    ``softBrakeSizeFactor`` a fraction (0 blocks new entries in SOFT_BRAKE)."""

    softMaxDrawdownPercent: Decimal = Field(Decimal(5), ge=0, le=100)
    hardMaxDrawdownPercent: Decimal = Field(Decimal(10), gt=0, le=100)
    maxDailyLossUsdt: Decimal = Field(gt=0)
    maxLeverage: Decimal = Field(Decimal(3), ge=1, le=100)
    maxPositionNotionalUsdt: Decimal = Field(gt=0)
    maxOpenPositions: int = Field(5, ge=1, le=1000)
    maxOrdersPerMinute: int = Field(60, ge=1, le=6000)
    softBrakeSizeFactor: Decimal = Field(Decimal("0.5"), ge=0, le=1)

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
    "MomentumParams",
    "GridParams",
    "ScalpingParams",
    "FundingHarvestParams",
    "BasisArbitrageParams",
    "ScannerSpec",
    "StrategySpec",
    "RiskPolicySpec",
    "QuarantineSpec",
    "quarantine_applies",
    "quarantine_expiry",
    "parse_time",
    "describe_validation_error",
    "api",
]
