"""``spec.promotion`` against the real API server: the CEL rules (no stage skipping,
capital steps strictly increasing with the last 1.0, analysis required on the way
to live, the live gates still required), the defaults, and that the pydantic model
(:class:`hean.promotion.PromotionSpec`) refuses exactly what the API server refuses.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from hean.promotion import PromotionSpec
from test_crd_validation import LIVE_PHRASE, apply, assert_rejected, crds, get_json, strategy  # noqa: F401

pytestmark = pytest.mark.e2e

ANALYSIS = {"queries": [{"name": "pnl", "query": 'sum(hean_worker_pnl_usdt{strategy="{{strategy}}"})',
                         "successCondition": "result >= 0", "failureCondition": "result < -50"}],
            "intervalSeconds": 5, "count": 2}
LIVE_OK = {"credentialsSecretRef": {"name": "bybit"}, "liveConfirmation": LIVE_PHRASE}


def promo(**kw) -> dict:
    base = {"stages": ["paper", "testnet", "live"], "capitalSteps": [0.1, 0.5, 1.0], "analysis": ANALYSIS}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def test_full_promotion_is_accepted_with_defaults(crds, namespace: str) -> None:
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("pr", promotion=promo(), **LIVE_OK)))
    got = get_json(crds, namespace, "tradingstrategy", "pr")["spec"]["promotion"]
    assert got["soakSeconds"] == {"paper": 3600, "testnet": 3600, "live": 3600}
    assert got["approval"] == {"requiredAboveFraction": 0.25}
    assert got["onFailure"] == "Demote"
    assert got["gates"] == {"minClosedTrades": 20, "halfLifeTrades": 20, "minWeightedPnlUsdt": 0,
                            "holdoutFraction": 0.3, "maxHoldoutDropUsdt": 0, "minRegimes": 2,
                            "minTradesPerRegime": 3, "regimeWindowBars": 60}
    a = got["analysis"]
    assert (a["failureLimit"], a["inconclusiveLimit"], a["initialDelaySeconds"]) == (0, 0, 0)
    # the API server's defaults are the model's defaults
    parsed = PromotionSpec.model_validate(got)
    assert parsed.model_dump(exclude={"stages", "capitalSteps", "analysis"}, mode="json") == {
        k: v for k, v in got.items() if k not in ("stages", "capitalSteps", "analysis")}
    # paper-only promotion needs neither credentials nor analysis
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("pp", promotion={"stages": ["paper"]})))


@pytest.mark.parametrize("promotion,extra,needles", [
    (promo(stages=["paper", "live"]), LIVE_OK, ["spec.promotion.stages", "no stage may be skipped"]),
    (promo(stages=["testnet", "live"]), LIVE_OK, ["spec.promotion.stages", "no stage may be skipped"]),
    (promo(stages=["live"]), LIVE_OK, ["spec.promotion.stages"]),
    (promo(capitalSteps=[0.5, 0.25, 1.0]), LIVE_OK, ["spec.promotion.capitalSteps", "strictly increasing"]),
    (promo(capitalSteps=[0.5, 0.5, 1.0]), LIVE_OK, ["spec.promotion.capitalSteps", "strictly increasing"]),
    (promo(capitalSteps=[0.1, 0.5]), LIVE_OK, ["spec.promotion.capitalSteps", "last step must be 1.0"]),
    (promo(capitalSteps=[0.5, 1.5]), LIVE_OK, ["spec.promotion.capitalSteps[1]"]),
    (promo(capitalSteps=[0, 1.0]), LIVE_OK, ["spec.promotion.capitalSteps[0]"]),
    (promo(capitalSteps=None), LIVE_OK, ["spec.promotion.capitalSteps", "required"]),
    (promo(analysis=None), LIVE_OK, ["spec.promotion.analysis", "analysis cannot be skipped"]),
    (promo(analysis={**ANALYSIS, "failureLimit": 2}), LIVE_OK, ["spec.promotion.analysis.failureLimit"]),
    (promo(analysis={**ANALYSIS, "queries": [{**ANALYSIS["queries"][0], "successCondition": "pnl > 0"}]}),
     LIVE_OK, ["spec.promotion.analysis.queries[0].successCondition"]),
])
def test_invalid_promotions_are_rejected_by_the_api_server_and_the_model(crds, namespace, promotion, extra,
                                                                        needles) -> None:
    assert_rejected(crds, namespace, strategy("bad", promotion=promotion, **extra), *needles)
    with pytest.raises(ValidationError):
        PromotionSpec.model_validate(promotion)


@pytest.mark.parametrize("spec,needles", [
    # the live-trading gates still hold on the way through the stages
    ({"promotion": promo()}, ["spec.credentialsSecretRef"]),
    ({"promotion": promo(), "credentialsSecretRef": {"name": "bybit"}}, ["spec.liveConfirmation", LIVE_PHRASE]),
    ({"promotion": promo(stages=["paper", "testnet"], capitalSteps=None)}, ["spec.credentialsSecretRef"]),
    # the stage decides the mode
    ({"promotion": promo(), "mode": "testnet", **LIVE_OK}, ["spec.mode", "must be 'paper'"]),
])
def test_promotion_keeps_the_live_gates(crds, namespace, spec, needles) -> None:
    assert_rejected(crds, namespace, strategy("gate", **spec), *needles)
