"""Trading strategies: one module per strategy, a registry by ``spec.strategy`` name.

* :mod:`.base`: the interface (:class:`Strategy`, :class:`OrderIntent`,
  :class:`BookTop`, :class:`PositionView`).
* :mod:`.params`: each strategy's pydantic parameter model and where it sits in
  ``spec.params`` (:data:`PARAMS`), plus :func:`parse_params`.
* :mod:`.impulse`, :mod:`.momentum`, :mod:`.grid`, :mod:`.scalping`,
  :mod:`.funding_harvest`, :mod:`.basis_arbitrage`: the strategies.
* :mod:`.scanner`: ranks a universe of symbols by liquidity and volatility.
"""

from __future__ import annotations

from pydantic import ValidationError

from .base import BookTop, OrderIntent, PositionView, Strategy
from .basis_arbitrage import BasisArbitrageStrategy
from .funding_harvest import FundingHarvestStrategy
from .grid import GridStrategy
from .impulse import ImpulseStrategy
from .momentum import MomentumStrategy
from .params import (
    PARAMS,
    STRATEGY_NAMES,
    BasisArbitrageParams,
    FundingHarvestParams,
    GridParams,
    ImpulseParams,
    MomentumParams,
    ScalpingParams,
    ScannerSpec,
)
from .scalping import ScalpingStrategy

#: ``spec.strategy`` -> strategy class (instantiated once per symbol).
STRATEGIES: dict[str, type[Strategy]] = {
    "impulse": ImpulseStrategy,
    "momentum": MomentumStrategy,
    "grid": GridStrategy,
    "scalping": ScalpingStrategy,
    "funding_harvest": FundingHarvestStrategy,
    "basis_arbitrage": BasisArbitrageStrategy,
}
assert tuple(STRATEGIES) == STRATEGY_NAMES


class ParamsError(ValueError):
    """An invalid ``spec.params`` block; ``str()`` names every bad field as
    ``spec.params.<key>.<field>: <message>``."""


def parse_params(strategy: str, params: dict | None):
    """Validate ``spec.params`` (a dict) for ``strategy`` and return its model.

    ``impulse`` reads the flat fields; other strategies read their sub-object
    (:data:`PARAMS`), absent = all defaults. Raises :class:`ParamsError` naming the
    field (e.g. ``spec.params.grid.levels: Input should be less than or equal to
    200``), or naming ``spec.strategy`` for an unknown strategy (allowed values
    listed), or a sub-object that belongs to another strategy.
    """
    if strategy not in PARAMS:
        raise ParamsError(f"spec.strategy: must be one of {', '.join(STRATEGY_NAMES)}; got {strategy!r}")
    params = dict(params or {})
    key, model = PARAMS[strategy]
    others = [k for name, (k, _) in PARAMS.items() if k and k != key and k in params]
    if others:
        raise ParamsError(f"spec.params.{others[0]}: only allowed when spec.strategy is "
                          f"{[n for n, (k, _) in PARAMS.items() if k == others[0]][0]!r}; spec.strategy is {strategy!r}")
    block = params if key is None else params.get(key) or {}
    prefix = "spec.params" if key is None else f"spec.params.{key}"
    if not isinstance(block, dict):
        raise ParamsError(f"{prefix}: must be an object")
    try:
        return model.model_validate(block)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()))
            msg = str(err.get("msg", ""))
            if msg.startswith("Value error, spec."):
                parts.append(msg[len("Value error, "):])
            else:
                parts.append(f"{prefix}.{loc}: {msg}" if loc else f"{prefix}: {msg}")
        raise ParamsError("; ".join(parts)) from None


__all__ = [
    "STRATEGIES", "PARAMS", "STRATEGY_NAMES", "ParamsError", "parse_params",
    "Strategy", "OrderIntent", "BookTop", "PositionView",
    "ImpulseParams", "MomentumParams", "GridParams", "ScalpingParams", "FundingHarvestParams",
    "BasisArbitrageParams", "ScannerSpec",
]
