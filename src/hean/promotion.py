"""The model of progressive promotion: ``TradingStrategy.spec.promotion`` (pydantic).

A strategy revision (the hash of its ``spec.params``) walks the stages ``paper`` ->
``testnet`` -> ``live``; in ``live`` it walks capital steps (fractions of
``spec.capital``, strictly increasing, the last 1.0). Each stage and each live step
soaks for ``soakSeconds`` of that stage, then runs the analysis (PromQL queries
over the worker's metrics, Argo Rollouts' AnalysisTemplate shape: ``interval``,
``count``, ``failureLimit``, ``initialDelay``, success and failure conditions) and,
before leaving ``paper``, the anti-overfitting gates of :mod:`hean.selector`.
Entering ``live`` and any live step above ``approval.requiredAboveFraction`` need a
human approval given with kubectl::

    kubectl annotate tradingstrategy NAME hean.io/approve-promotion=<revision>/<gate> --overwrite

where ``<gate>`` is ``paper``, ``testnet`` or ``live-<n>`` (the n-th live step,
1-based) and several approvals may be comma-separated. The CRD
(``crds/tradingstrategies.hean.io.yaml``) enforces the same rules with CEL; these
models repeat them for objects that reach the operator some other way (tests, an
older CRD), raising pydantic ``ValidationError`` naming the field.

The state machine is :mod:`hean.operator.promotion`; the design is docs/promotion.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

STAGES = ("paper", "testnet", "live")
ANNOTATION_APPROVE = "hean.io/approve-promotion"
# condition types on TradingStrategy.status.conditions owned by the promotion controller
COND_PROMOTED = "Promoted"
COND_STALLED = "Stalled"
_CONDITION = re.compile(r"^\s*result\s*(<=|>=|==|!=|<|>)\s*([-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?)\s*$")


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


def parse_condition(expr: str) -> tuple[str, float]:
    """Parse an analysis condition ``"result <op> <number>"`` (op one of ``<``,
    ``<=``, ``>``, ``>=``, ``==``, ``!=``) into ``(op, threshold)``.

    Raises ValueError naming the allowed form if ``expr`` does not match.
    """
    m = _CONDITION.match(expr or "")
    if not m:
        raise ValueError(f"condition {expr!r} must look like 'result >= 0' "
                         "(result, one of < <= > >= == !=, a number)")
    return m.group(1), float(m.group(2))


def condition_holds(expr: str, value: float) -> bool:
    """Evaluate ``"result <op> <number>"`` for ``result = value`` (a float)."""
    op, t = parse_condition(expr)
    return {"<": value < t, "<=": value <= t, ">": value > t, ">=": value >= t,
            "==": value == t, "!=": value != t}[op]


class AnalysisQuery(_Model):
    """One metric of the analysis: a PromQL ``query`` that returns one number (an
    instant vector with one sample or a scalar; the placeholders ``{{namespace}}``,
    ``{{strategy}}`` and ``{{pod}}`` are substituted), judged by
    ``successCondition`` and ``failureCondition`` (``"result >= 0"`` form). A result
    that meets neither, or no data, is inconclusive."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    query: str = Field(min_length=1, max_length=2048)
    successCondition: str = Field(min_length=1, max_length=64)
    failureCondition: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _conditions_parse(self) -> "AnalysisQuery":
        parse_condition(self.successCondition)
        if self.failureCondition is not None:
            parse_condition(self.failureCondition)
        return self


class AnalysisSpec(_Model):
    """``spec.promotion.analysis``: after the soak, wait ``initialDelaySeconds``,
    then take measurements ``intervalSeconds`` apart until ``count`` of them
    succeeded. A measurement fails if any query meets its failure condition (or
    misses its success condition without a failure condition), succeeds if every
    query meets its success condition, and is inconclusive otherwise (including no
    data). More than ``failureLimit`` failed measurements fail the analysis; more
    than ``inconclusiveLimit`` inconclusive ones pause it for approval."""

    queries: list[AnalysisQuery] = Field(min_length=1, max_length=10)
    intervalSeconds: int = Field(60, ge=1, le=86_400)
    count: int = Field(3, ge=1, le=100)
    failureLimit: int = Field(0, ge=0, le=100)
    inconclusiveLimit: int = Field(0, ge=0, le=100)
    initialDelaySeconds: int = Field(0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _unique_names(self) -> "AnalysisSpec":
        names = [q.name for q in self.queries]
        if len(set(names)) != len(names):
            raise ValueError("spec.promotion.analysis.queries: names must be unique")
        if self.failureLimit >= self.count:
            raise ValueError(f"spec.promotion.analysis.failureLimit ({self.failureLimit}) must be less than "
                             f"count ({self.count})")
        return self


class SoakSpec(_Model):
    """``spec.promotion.soakSeconds``: seconds each stage (each live step) runs before
    its analysis starts."""

    paper: int = Field(3600, ge=0, le=2_592_000)
    testnet: int = Field(3600, ge=0, le=2_592_000)
    live: int = Field(3600, ge=0, le=2_592_000)


class ApprovalSpec(_Model):
    """``spec.promotion.approval``: entering ``live`` always needs approval; so does
    any live step whose fraction is above ``requiredAboveFraction``."""

    requiredAboveFraction: float = Field(0.25, ge=0, le=1)


class GatesSpec(_Model):
    """``spec.promotion.gates``: HEAN's selector, the anti-overfitting gates checked
    before a revision leaves ``paper`` (see :mod:`hean.selector` for the formulas).

    ``minClosedTrades`` round trips at least; ``halfLifeTrades``: the recency weight
    of the k-th most recent trade is ``0.5 ** (k / halfLifeTrades)``, and the
    weighted mean net PnL per trade must be at least ``minWeightedPnlUsdt``;
    ``holdoutFraction`` of the most recent trades form the holdout, whose mean net
    PnL per trade must be at least ``earlier_mean - maxHoldoutDropUsdt`` and, if the
    earlier window made money, not negative by more than ``maxHoldoutDropUsdt``;
    ``minRegimes`` of the four volatility/trend buckets (trend and volatility over
    ``regimeWindowBars`` bars before the entry) must each hold at least
    ``minTradesPerRegime`` trades."""

    minClosedTrades: int = Field(20, ge=1, le=100_000)
    halfLifeTrades: float = Field(20, gt=0, le=100_000)
    minWeightedPnlUsdt: float = Field(0.0, ge=-1e9, le=1e9)
    holdoutFraction: float = Field(0.3, ge=0.05, le=0.5)
    maxHoldoutDropUsdt: float = Field(0.0, ge=0, le=1e9)
    minRegimes: int = Field(2, ge=1, le=4)
    minTradesPerRegime: int = Field(3, ge=1, le=10_000)
    regimeWindowBars: int = Field(60, ge=5, le=10_000)


class ShadowSpec(_Model):
    """``spec.promotion.shadow``: a new candidate revision beside a promoted one
    passes ``paper`` only if its net PnL over the shadow run is at least the promoted
    revision's minus ``toleranceUsdt`` (same market data, same capital)."""

    toleranceUsdt: float = Field(0.0, ge=0, le=1e9)


class PromotionSpec(_Model):
    """``TradingStrategy.spec.promotion`` (see the module docstring)."""

    stages: list[Literal["paper", "testnet", "live"]] = Field(min_length=1, max_length=3)
    capitalSteps: list[float] | None = Field(None, min_length=1, max_length=10)
    soakSeconds: SoakSpec = SoakSpec()
    analysis: AnalysisSpec | None = None
    approval: ApprovalSpec = ApprovalSpec()
    gates: GatesSpec = GatesSpec()
    shadow: ShadowSpec = ShadowSpec()
    onFailure: Literal["Demote", "Halt"] = "Demote"

    @model_validator(mode="after")
    def _rules(self) -> "PromotionSpec":
        if list(self.stages) != list(STAGES[:len(self.stages)]):
            raise ValueError(f"spec.promotion.stages must be {list(STAGES[:1])}, {list(STAGES[:2])} or "
                             f"{list(STAGES)} (no stage may be skipped), got {list(self.stages)}")
        if "live" in self.stages:
            steps = self.capitalSteps
            if not steps:
                raise ValueError("spec.promotion.capitalSteps is required when spec.promotion.stages has 'live'")
            if self.analysis is None:
                raise ValueError("spec.promotion.analysis is required when spec.promotion.stages has 'live' "
                                 "(analysis cannot be skipped on the way to live)")
        if self.capitalSteps is not None:
            steps = self.capitalSteps
            if any(not (0 < s <= 1) for s in steps):
                raise ValueError("spec.promotion.capitalSteps: every step must be a fraction in (0, 1]")
            if any(b <= a for a, b in zip(steps, steps[1:])):
                raise ValueError("spec.promotion.capitalSteps must be strictly increasing")
            if steps[-1] != 1.0:
                raise ValueError("spec.promotion.capitalSteps: the last step must be 1.0")
        return self

    # ---- the walk: gates are (stage, step index) pairs ---------------------------------
    def gates_list(self) -> list[tuple[str, int]]:
        """Every position of the walk in order: ``(stage, 0)`` for paper and testnet,
        ``("live", i)`` for each capital step ``i`` (0-based)."""
        out: list[tuple[str, int]] = []
        for s in self.stages:
            if s == "live":
                out += [("live", i) for i in range(len(self.capitalSteps or [1.0]))]
            else:
                out.append((s, 0))
        return out

    def fraction(self, stage: str, step: int) -> float:
        """Capital fraction at a position: 1.0 in paper and testnet, the step's
        fraction in live."""
        if stage == "live":
            return float((self.capitalSteps or [1.0])[step])
        return 1.0

    def needs_approval(self, stage: str, step: int) -> bool:
        """Entering ``live`` (its first step) and any live step above
        ``approval.requiredAboveFraction`` need a human approval."""
        if stage != "live":
            return False
        return step == 0 or self.fraction(stage, step) > self.approval.requiredAboveFraction

    def soak(self, stage: str) -> int:
        """Soak seconds of ``stage``."""
        return int(getattr(self.soakSeconds, stage))


def gate_id(stage: str, step: int) -> str:
    """The approval name of a position: ``paper``, ``testnet``, ``live-<step+1>``."""
    return f"live-{step + 1}" if stage == "live" else stage


def params_revision(spec: dict) -> str:
    """The revision of a strategy: 16 hex chars of SHA-256 over the canonical JSON of
    ``spec.params`` (keys sorted), so a params change is a new revision and nothing
    else is."""
    material = json.dumps(spec.get("params") or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def approvals(annotations: dict | None) -> set[str]:
    """The approvals a human gave: the comma-separated ``<revision>/<gate>`` values of
    the ``hean.io/approve-promotion`` annotation (whitespace ignored)."""
    raw = (annotations or {}).get(ANNOTATION_APPROVE) or ""
    return {p.strip() for p in raw.split(",") if p.strip()}
