"""The promotion model (hean.promotion) and the pure state machine
(hean.operator.promotion): every sub-state, transition, Event and effective
worker configuration, with expected values written out by hand."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from hean.operator import promotion as pm
from hean.promotion import PromotionSpec, approvals, condition_holds, gate_id, params_revision, parse_condition

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
ANALYSIS = {"queries": [{"name": "pnl", "query": "sum(x)", "successCondition": "result >= 0",
                         "failureCondition": "result < -10"}], "intervalSeconds": 5, "count": 2}
PARAMS = {"emaFastPeriod": 10, "emaSlowPeriod": 50}
PARAMS2 = {"emaFastPeriod": 12, "emaSlowPeriod": 50}


def rev(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


R1, R2 = rev(PARAMS), rev(PARAMS2)


def promo(**kw) -> PromotionSpec:
    base = {"stages": ["paper", "testnet", "live"], "capitalSteps": [0.1, 0.5, 1.0],
            "soakSeconds": {"paper": 60, "testnet": 30, "live": 20}, "analysis": ANALYSIS}
    base.update(kw)
    return PromotionSpec.model_validate(base)


PASSED = pm.GateReport("Passed", [{"name": "minClosedTrades", "passed": True, "message": "25 >= 20"}])
OK = pm.Measurement("Successful", "pnl=5")
BAD = pm.Measurement("Failed", "pnl=-20")
NODATA = pm.Measurement("Inconclusive", "pnl=no data")


class Walker:
    """Threads status.promotion through successive decisions."""

    def __init__(self, p: PromotionSpec | None = None, params: dict = PARAMS, **admissions):
        self.p = p or promo()
        self.spec = {"params": params}
        self.status: dict = {}
        self.now = T0
        self.events: list[tuple[str, str, str]] = []
        self.admissions = admissions
        self.d: pm.Decision | None = None

    def tick(self, seconds: float = 0, **kw) -> pm.Decision:
        self.now += timedelta(seconds=seconds)
        kw.setdefault("admissions", self.admissions)
        d = pm.step(pm.Inputs(spec=self.spec, promotion=self.p, status=self.status, now=self.now, **kw), 3)
        self.status, self.d = d.status, d
        self.events += d.events
        return d

    def reasons(self) -> list[str]:
        return [e[0] for e in self.events]

    def cond(self, type_: str) -> dict:
        return next(c for c in self.d.conditions if c["type"] == type_)

    def to_testnet(self) -> None:
        self.tick()
        self.tick(60, gates=PASSED)
        assert self.status["state"] == "Analyzing"
        self.tick(0, measurement=OK)
        self.tick(5, measurement=OK)
        assert (self.status["stage"], self.status["state"]) == ("testnet", "Soaking")

    def to_live_approval(self) -> None:
        self.to_testnet()
        self.tick(30)
        self.tick(0, measurement=OK)
        self.tick(5, measurement=OK)


# ---- the model ---------------------------------------------------------------------------
def test_revision_is_the_hash_of_params_only():
    assert params_revision({"params": PARAMS, "mode": "paper"}) == R1
    assert params_revision({"params": {"emaSlowPeriod": 50, "emaFastPeriod": 10}, "capital": 5}) == R1
    assert params_revision({"params": PARAMS2}) == R2 != R1
    assert len(R1) == 16


def test_gate_ids_and_approvals():
    assert [gate_id(*g) for g in promo().gates_list()] == ["paper", "testnet", "live-1", "live-2", "live-3"]
    assert approvals({"hean.io/approve-promotion": f" {R1}/live-1 ,{R1}/live-3,"}) == {f"{R1}/live-1",
                                                                                       f"{R1}/live-3"}
    assert approvals(None) == set() and approvals({"other": "x"}) == set()


def test_approval_rules():
    p = promo()  # requiredAboveFraction 0.25
    assert [p.needs_approval(*g) for g in p.gates_list()] == [False, False, True, True, True]
    p = promo(approval={"requiredAboveFraction": 0.5})
    assert [p.needs_approval(*g) for g in p.gates_list()] == [False, False, True, False, True]
    assert [p.fraction(*g) for g in p.gates_list()] == [1.0, 1.0, 0.1, 0.5, 1.0]


@pytest.mark.parametrize("bad,needle", [
    ({"stages": ["paper", "live"]}, "no stage may be skipped"),
    ({"stages": ["testnet"]}, "no stage may be skipped"),
    ({"capitalSteps": [0.5, 0.2, 1.0]}, "strictly increasing"),
    ({"capitalSteps": [0.5, 0.5, 1.0]}, "strictly increasing"),
    ({"capitalSteps": [0.2, 0.5]}, "last step must be 1.0"),
    ({"capitalSteps": [0.0, 1.0]}, "fraction in (0, 1]"),
    ({"capitalSteps": None}, "capitalSteps is required"),
    ({"analysis": None}, "analysis cannot be skipped"),
    ({"analysis": {**ANALYSIS, "failureLimit": 2}}, "must be less than count"),
    ({"analysis": {**ANALYSIS, "queries": ANALYSIS["queries"] * 2}}, "names must be unique"),
    ({"analysis": {**ANALYSIS, "queries": [{**ANALYSIS["queries"][0], "successCondition": "x > 1"}]}},
     "must look like 'result >= 0'"),
])
def test_invalid_promotion_specs_name_the_field(bad, needle):
    with pytest.raises(ValidationError) as e:
        promo(**bad)
    assert needle in str(e.value)


def test_conditions():
    assert parse_condition(" result>=-1.5e1 ") == (">=", -15.0)
    assert [condition_holds(f"result {op} 2", 2.0) for op in ("<", "<=", ">", ">=", "==", "!=")] == [
        False, True, False, True, True, False]
    with pytest.raises(ValueError, match="result >= 0"):
        parse_condition("result => 0")


def test_judge_one_measurement():
    p = promo(analysis={"queries": [
        {"name": "pnl", "query": "a", "successCondition": "result >= 0", "failureCondition": "result < -10"},
        {"name": "dd", "query": "b", "successCondition": "result < 0.05"}], "count": 2})
    a = p.analysis
    assert pm.judge(a, {"pnl": 3, "dd": 0.01}).outcome == "Successful"
    assert pm.judge(a, {"pnl": -5, "dd": 0.01}).outcome == "Inconclusive"  # between the two conditions
    assert pm.judge(a, {"pnl": -11, "dd": 0.01}).outcome == "Failed"
    assert pm.judge(a, {"pnl": 3, "dd": 0.2}).outcome == "Failed"  # success missed, no failure condition
    m = pm.judge(a, {"pnl": None, "dd": 0.01})
    assert m.outcome == "Inconclusive" and "pnl=no data" in m.message
    assert pm.judge(a, {"pnl": -11, "dd": None}).outcome == "Failed"  # a failure wins over no data


# ---- the walk ------------------------------------------------------------------------------
def test_new_revision_starts_soaking_in_paper():
    w = Walker()
    d = w.tick()
    assert d.status["candidateRevision"] == R1 and d.status["stage"] == "paper" and d.status["step"] == 0
    assert d.status["state"] == "Soaking" and d.status["stageStartedAt"] == "2026-01-01T12:00:00Z"
    assert w.reasons() == ["PromotionStarted"]
    assert d.worker == pm.Effective("paper", 1.0, PARAMS, R1, False) and d.candidate is None
    assert w.cond("Promoted") == {"type": "Promoted", "status": "False", "reason": "Soaking",
                                  "message": d.status["message"], "observedGeneration": 3}
    assert w.cond("Stalled")["status"] == "False"
    assert (d.status["effectiveMode"], d.status["capitalFraction"], d.status["halted"]) == ("paper", 1.0, False)


def test_paper_soak_waits_for_time_and_gates():
    w = Walker()
    w.tick()
    w.tick(59, gates=PASSED)
    assert w.status["state"] == "Soaking" and w.status["gates"] == PASSED.results
    w.tick(1)  # soaked, no gate report yet
    assert w.status["state"] == "Soaking" and "no trade history yet" in w.status["message"]
    waiting = pm.GateReport("Waiting", [{"name": "minClosedTrades", "passed": False, "message": "4 < 20"}])
    w.tick(1, gates=waiting)
    assert w.status["state"] == "Soaking" and "4 < 20" in w.status["message"]
    w.tick(1, gates=PASSED)
    assert w.status["state"] == "Analyzing" and w.status["analysisStartedAt"] == "2026-01-01T12:01:02Z"


def test_measurement_timing():
    p = promo(analysis={**ANALYSIS, "initialDelaySeconds": 10})
    st = {"state": "Analyzing", "analysisStartedAt": "2026-01-01T12:00:00Z", "measurements": []}
    assert not pm.measurement_due(p, st, T0 + timedelta(seconds=9))
    assert pm.measurement_due(p, st, T0 + timedelta(seconds=10))
    st["measurements"] = ["Successful"]
    assert not pm.measurement_due(p, st, T0 + timedelta(seconds=14))
    assert pm.measurement_due(p, st, T0 + timedelta(seconds=15))
    assert not pm.measurement_due(p, {**st, "state": "Soaking"}, T0 + timedelta(seconds=99))


def test_success_advances_with_event():
    w = Walker()
    w.to_testnet()
    assert w.reasons() == ["PromotionStarted", "PromotionStepSucceeded"]
    assert f"revision {R1}: paper -> testnet" in w.events[-1][1]
    assert w.d.worker == pm.Effective("testnet", 1.0, PARAMS, R1, False)
    res = w.status["analysisResults"]
    assert [(r["gate"], r["phase"]) for r in res] == [("paper", "Successful")]
    assert w.status["measurements"] == []


def test_entering_live_needs_approval_then_walks_the_steps():
    w = Walker(promo(approval={"requiredAboveFraction": 0.5}))
    w.to_live_approval()
    assert w.status["state"] == "AwaitingApproval" and w.status["awaitingApproval"] == f"{R1}/live-1"
    assert w.cond("Promoted")["reason"] == "AwaitingApproval"
    assert w.d.worker.mode == "testnet"  # stays in testnet while waiting
    n = len(w.events)
    w.tick(100)
    assert w.status["state"] == "AwaitingApproval" and len(w.events) == n  # no repeated Event
    w.tick(0, approvals=frozenset({f"{R2}/live-1", f"{R1}/live-2"}))  # another revision's approval
    assert w.status["state"] == "AwaitingApproval"
    w.tick(1, approvals=frozenset({f"{R1}/live-1"}))
    assert (w.status["stage"], w.status["step"], w.status["state"]) == ("live", 0, "Soaking")
    assert w.d.worker == pm.Effective("live", 0.1, PARAMS, R1, False)
    assert w.reasons()[-2:] == ["PromotionApproved", "PromotionStepSucceeded"]
    # 0.5 is not above 0.5: no approval needed
    w.tick(20)
    w.tick(0, measurement=OK)
    w.tick(5, measurement=OK)
    assert (w.status["stage"], w.status["step"], w.d.worker.capital_fraction) == ("live", 1, 0.5)
    # 1.0 is above 0.5: approval
    w.tick(20)
    w.tick(0, measurement=OK)
    w.tick(5, measurement=OK)
    assert w.status["awaitingApproval"] == f"{R1}/live-3"
    w.tick(1, approvals=frozenset({f"{R1}/live-3"}))
    w.tick(20)
    w.tick(0, measurement=OK)
    w.tick(5, measurement=OK)
    assert w.status["state"] == "Succeeded" and w.status["promotedRevision"] == R1
    assert json.loads(w.status["promotedParams"]) == PARAMS
    assert w.cond("Promoted")["status"] == "True" and w.cond("Promoted")["reason"] == "Succeeded"
    assert w.d.worker == pm.Effective("live", 1.0, PARAMS, R1, False)
    assert w.reasons()[-1] == "PromotionSucceeded"
    assert w.reasons().count("PromotionStepSucceeded") == 4
    n = len(w.events)
    w.tick(1000)
    assert w.status["state"] == "Succeeded" and len(w.events) == n


def test_live_gate_blocks_entering_an_exchange_stage():
    w = Walker(testnet=(False, "CredentialsRequired"))
    w.tick()
    w.tick(60, gates=PASSED)
    w.tick(0, measurement=OK)
    w.tick(5, measurement=OK)
    assert w.status["state"] == "Paused" and "CredentialsRequired" in w.status["message"]
    assert w.d.worker.mode == "paper" and w.reasons()[-1] == "PromotionBlocked"
    w.tick(5)
    assert w.reasons().count("PromotionBlocked") == 1
    w.admissions = {"testnet": (True, "")}
    w.tick(1)
    assert (w.status["stage"], w.status["state"]) == ("testnet", "Soaking")


def test_live_gate_checked_after_approval():
    w = Walker(live=(False, "LiveTradingDisabled"))
    w.to_live_approval()
    w.tick(1, approvals=frozenset({f"{R1}/live-1"}))
    assert w.status["state"] == "Paused" and "LiveTradingDisabled" in w.status["message"]
    assert w.d.worker.mode == "testnet"


def test_failure_on_exchange_stage_flattens_then_demotes_and_is_not_retried():
    w = Walker()
    w.to_testnet()
    w.tick(30)
    w.tick(0, measurement=BAD)
    assert w.status["state"] == "Flattening" and w.status["failedRevision"] == R1
    assert w.d.worker == pm.Effective("testnet", 1.0, PARAMS, R1, True)
    assert w.cond("Stalled")["status"] == "True" and w.cond("Stalled")["reason"] == "AnalysisFailed"
    assert w.reasons()[-1] == "PromotionFailed"
    since = w.now
    w.tick(1, open_positions=1, positions_at=since + timedelta(seconds=1))
    assert w.status["state"] == "Flattening"
    w.tick(1, open_positions=0, positions_at=since - timedelta(seconds=1))  # a report from before the halt
    assert w.status["state"] == "Flattening"
    w.tick(1, open_positions=0, positions_at=since + timedelta(seconds=2))
    assert (w.status["stage"], w.status["state"]) == ("paper", "Demoted")
    assert w.d.worker == pm.Effective("paper", 1.0, PARAMS, R1, False)
    assert w.reasons()[-1] == "PromotionDemoted"
    assert w.cond("Promoted")["reason"] == "Demoted" and w.cond("Stalled")["status"] == "True"
    assert w.status["analysisResults"][-1]["phase"] == "Failed"
    n = len(w.events)
    w.tick(3600, gates=PASSED, measurement=OK)  # not retried
    assert w.status["state"] == "Demoted" and len(w.events) == n
    w.spec = {"params": PARAMS2}  # a spec change is a new revision
    w.tick(1)
    assert w.status["candidateRevision"] == R2 and w.status["state"] == "Soaking"
    assert "failedRevision" not in w.status and w.cond("Stalled")["status"] == "False"


def test_failure_in_paper_or_with_onfailure_halt_halts():
    w = Walker()
    w.tick()
    w.tick(60, gates=PASSED)
    w.tick(0, measurement=BAD)
    assert w.status["state"] == "Halted" and w.d.worker == pm.Effective("paper", 1.0, PARAMS, R1, True)
    assert w.reasons()[-2:] == ["PromotionFailed", "PromotionHalted"]
    w = Walker(promo(onFailure="Halt"))
    w.to_testnet()
    w.tick(30)
    w.tick(0, measurement=BAD)
    assert (w.status["stage"], w.status["state"]) == ("testnet", "Halted")
    assert w.d.worker == pm.Effective("testnet", 1.0, PARAMS, R1, True)


def test_hard_stop_fails_and_halts_per_the_risk_policy():
    w = Walker()
    w.to_testnet()
    w.tick(3, risk_state="HARD_STOP")
    assert w.status["state"] == "Halted" and "HARD_STOP" in w.status["message"]
    assert w.d.worker.halted and w.cond("Stalled")["status"] == "True"


def test_failure_limit_is_tolerated():
    w = Walker(promo(analysis={**ANALYSIS, "count": 3, "failureLimit": 1}))
    w.tick()
    w.tick(60, gates=PASSED)
    w.tick(0, measurement=BAD)
    assert w.status["state"] == "Analyzing" and w.status["measurements"] == ["Failed"]
    w.tick(5, measurement=OK)
    w.tick(5, measurement=OK)
    assert w.status["state"] == "Analyzing"  # count = successful measurements needed
    w.tick(5, measurement=OK)
    assert w.status["stage"] == "testnet"
    w.tick(30)
    w.tick(0, measurement=BAD)
    w.tick(5, measurement=BAD)
    assert w.status["state"] == "Flattening"


def test_inconclusive_pauses_for_approval():
    w = Walker()
    w.to_testnet()
    w.tick(30)
    w.tick(0, measurement=NODATA)
    assert w.status["state"] == "AwaitingApproval" and w.status["awaitingApproval"] == f"{R1}/testnet"
    assert w.reasons()[-1] == "PromotionInconclusive"
    assert w.status["analysisResults"][-1]["phase"] == "Inconclusive"
    w.tick(100)
    assert w.status["state"] == "AwaitingApproval"
    # approving the result moves on to the next gate, which needs its own approval (entering live)
    w.tick(1, approvals=frozenset({f"{R1}/testnet"}))
    assert w.status["awaitingApproval"] == f"{R1}/live-1"
    w.tick(1, approvals=frozenset({f"{R1}/testnet", f"{R1}/live-1"}))
    assert (w.status["stage"], w.status["state"]) == ("live", "Soaking")


def test_quarantine_and_risk_state_pause_and_the_soak_restarts():
    w = Walker()
    w.to_testnet()
    w.tick(25, quarantined=("BTCUSDT",))
    assert w.status["state"] == "Paused" and "SymbolQuarantine active on BTCUSDT" in w.status["message"]
    assert w.cond("Promoted")["reason"] == "Paused" and w.cond("Stalled")["status"] == "False"
    assert w.d.worker.mode == "testnet"  # the worker keeps running; only the walk pauses
    w.tick(30, quarantined=("BTCUSDT",), measurement=OK)
    assert w.status["state"] == "Paused" and w.reasons().count("PromotionPaused") == 1
    w.tick(1)
    assert w.status["state"] == "Soaking" and w.reasons()[-1] == "PromotionResumed"
    assert w.status["stageStartedAt"] == "2026-01-01T12:02:01Z"
    w.tick(29)
    assert w.status["state"] == "Soaking"
    w.tick(1)
    assert w.status["state"] == "Analyzing"
    w.tick(1, risk_state="SOFT_BRAKE")
    assert w.status["state"] == "Paused" and "SOFT_BRAKE" in w.status["message"]
    assert w.status["measurements"] == []
    w.tick(1, risk_state="NORMAL")
    assert w.status["state"] == "Soaking"


def test_refused_by_the_gates():
    w = Walker()
    w.tick()
    refused = pm.GateReport("Refused", [
        {"name": "minClosedTrades", "passed": True, "message": "40 >= 20"},
        {"name": "holdout", "passed": False, "message": "holdout mean -3.1 USDT/trade < 0 (earlier +2.4)"}])
    w.tick(60, gates=refused)
    assert w.status["state"] == "Refused" and "holdout mean -3.1" in w.status["message"]
    assert w.cond("Stalled")["reason"] == "OverfitRefused" and "holdout" in w.cond("Stalled")["message"]
    assert w.cond("Promoted")["reason"] == "Refused"
    assert w.status["gates"] == refused.results
    assert w.status["analysisResults"][-1]["phase"] == "Refused"
    assert w.reasons()[-1] == "PromotionRefused"
    w.tick(600, gates=PASSED)
    assert w.status["state"] == "Refused"


def test_new_candidate_shadows_the_promoted_revision():
    p = promo(stages=["paper", "testnet"], capitalSteps=None)
    w = Walker(p)
    w.to_testnet()
    w.tick(30)
    w.tick(0, measurement=OK)
    w.tick(5, measurement=OK)
    assert w.status["state"] == "Succeeded" and w.d.worker == pm.Effective("testnet", 1.0, PARAMS, R1)
    w.spec = {"params": PARAMS2}
    w.tick(1)
    assert w.status["candidateRevision"] == R2 and w.status["promotedRevision"] == R1
    assert w.d.worker == pm.Effective("testnet", 1.0, PARAMS, R1)  # the promoted revision keeps trading
    assert w.d.candidate == pm.Effective("paper", 1.0, PARAMS2, R2)  # the shadow
    assert f"shadowing promoted revision {R1}" in w.events[-1][1]
    w.tick(60, gates=PASSED)
    w.tick(0, measurement=OK)
    w.tick(5, measurement=OK)
    # passed paper (gates include the shadow comparison): the candidate replaces it
    assert w.status["stage"] == "testnet" and w.d.candidate is None
    assert w.d.worker == pm.Effective("testnet", 1.0, PARAMS2, R2)
    assert w.status["promotedRevision"] == R1  # until it completes
    # back to the promoted params: nothing to walk
    w.spec = {"params": PARAMS}
    w.tick(1)
    assert w.status["state"] == "Succeeded" and w.d.worker.params == PARAMS


def test_refused_candidate_leaves_the_promoted_revision_alone():
    p = promo(stages=["paper"], capitalSteps=None, analysis=None)
    w = Walker(p)
    w.tick()
    w.tick(60, gates=PASSED)
    assert w.status["state"] == "Succeeded"  # paper-only without analysis: gates decide
    w.spec = {"params": PARAMS2}
    w.tick(1)
    assert w.d.candidate == pm.Effective("paper", 1.0, PARAMS2, R2)
    w.tick(60, gates=pm.GateReport("Refused", [{"name": "shadow", "passed": False, "message": "-50 < +10"}]))
    assert w.status["state"] == "Refused" and w.d.candidate is None
    assert w.d.worker == pm.Effective("paper", 1.0, PARAMS, R1)


def test_analysis_results_are_bounded():
    w = Walker(promo(stages=["paper", "testnet"], capitalSteps=None, analysis={**ANALYSIS, "count": 1,
                                                                             "inconclusiveLimit": 0}))
    w.tick()
    w.tick(60, gates=PASSED)
    for i in range(15):
        w.tick(5, measurement=NODATA)
        assert w.status["state"] == "AwaitingApproval"
        w.status = {**w.status, "state": "Analyzing", "measurements": []}  # as if re-run by a human
    assert len(w.status["analysisResults"]) == pm.MAX_RESULTS
    times = [r["time"] for r in w.status["analysisResults"]]
    assert times == sorted(times) and times[-1] == pm._fmt(w.now)


# ---- the wiring's pure helpers (operator/promoter.py) ---------------------------------------
def test_prometheus_sample_values():
    from hean.operator.promoter import sample_value

    vec = lambda *vals: {"status": "success", "data": {"resultType": "vector", "result": [  # noqa: E731
        {"metric": {}, "value": [1.0, v]} for v in vals]}}
    assert sample_value(vec("12.5")) == 12.5
    assert sample_value(vec()) is None  # no data
    assert sample_value(vec("1", "2")) is None  # ambiguous
    assert sample_value(vec("NaN")) is None
    assert sample_value({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "-3"]}}) == -3.0
    assert sample_value({"status": "error", "error": "parse error"}) is None


def test_effective_pod_changes_with_the_stage_and_carries_the_env():
    from hean.operator import promoter as pro
    from hean.operator import reconcile as rc

    s = {"apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
         "metadata": {"name": "st", "namespace": "ns", "uid": "u1", "generation": 1},
         "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000, "riskPolicyRef": {"name": "p"},
                  "params": PARAMS2, "mode": "paper", "credentialsSecretRef": {"name": "k"},
                  "marketData": {"source": "live"}}}
    cfg = rc.OperatorConfig()
    a = pro.effective_strategy(s, pm.Effective("paper", 1.0, PARAMS, R1))
    b = pro.effective_strategy(s, pm.Effective("testnet", 1.0, PARAMS, R1))
    c = pro.effective_strategy(s, pm.Effective("testnet", 1.0, PARAMS, R1, halted=True))
    hashes = {rc.structural_hash(x["spec"]) for x in (a, b, c)}
    assert len(hashes) == 3 and rc.structural_hash(s["spec"]) not in hashes
    assert s["spec"]["mode"] == "paper" and s["spec"]["params"] == PARAMS2  # the original is not touched
    pod = pro.decorate_pod(rc.desired_pod(b, cfg), pm.Effective("testnet", 1.0, PARAMS, R1))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["HEAN_EFFECTIVE_MODE"] == "testnet" and json.loads(env["HEAN_PARAMS_JSON"]) == PARAMS
    assert env["HEAN_REVISION"] == R1 and env["HEAN_ROLE"] == "worker" and env["HEAN_PROMOTION_HALTED"] == "false"
    assert "BYBIT_API_KEY" in env  # the exchange stage gets the Secret refs like any testnet worker
    assert rc.admit(b["spec"], cfg).ok and not rc.admit({**b["spec"], "mode": "live"}, cfg).ok
    cand = pro.desired_candidate(s, pm.Effective("paper", 1.0, PARAMS2, R2), cfg)
    assert cand["metadata"]["name"] == "st-candidate" and cand["metadata"]["labels"]["hean.io/role"] == "candidate"
    cenv = {e["name"]: e.get("value") for e in cand["spec"]["containers"][0]["env"]}
    assert cenv["HEAN_ROLE"] == "candidate" and cenv["HEAN_EFFECTIVE_MODE"] == "paper" and "BYBIT_API_KEY" not in cenv


def test_quarantined_symbols_and_admissions():
    from hean.operator import promoter as pro
    from hean.operator import reconcile as rc

    s = {"metadata": {"name": "st", "namespace": "ns", "labels": {"team": "a"}},
         "spec": {"strategy": "impulse", "symbols": ["BTCUSDT", "ETHUSDT"], "credentialsSecretRef": {"name": "k"},
                  "marketData": {"source": "live"}}}
    q = lambda sym, ns="ns", ttl=60, sel=None: {  # noqa: E731
        "metadata": {"namespace": ns, "creationTimestamp": "2026-01-01T12:00:00Z"},
        "spec": {"symbol": sym, "ttlSeconds": ttl, **({"strategySelector": sel} if sel else {})}}
    now = T0 + timedelta(seconds=30)
    assert pro.quarantined_symbols(s, [q("BTCUSDT"), q("SOLUSDT"), q("ETHUSDT", ns="other")], now) == ("BTCUSDT",)
    assert pro.quarantined_symbols(s, [q("BTCUSDT", ttl=10)], now) == ()
    assert pro.quarantined_symbols(s, [q("ETHUSDT", sel={"matchLabels": {"team": "b"}})], now) == ()
    adm = pro.admissions(s, rc.OperatorConfig(), True)
    assert adm["testnet"] == (True, "") and adm["live"][0] is False and "LiveTradingDisabled" in adm["live"][1]
    adm = pro.admissions(s, rc.OperatorConfig(live_trading_enabled=True), False)
    assert adm["live"][0] is False and "RiskPolicyRequired" in adm["live"][1]
    assert pro.admissions(s, rc.OperatorConfig(live_trading_enabled=True), True)["live"] == (True, "")


def test_inconclusive_within_the_limit_does_not_count_as_success():
    w = Walker(promo(analysis={**ANALYSIS, "count": 2, "inconclusiveLimit": 3}))
    w.tick()
    w.tick(60, gates=PASSED)
    for _ in range(3):
        w.tick(5, measurement=NODATA)
    assert w.status["state"] == "Analyzing" and w.status["measurements"] == ["Inconclusive"] * 3
    w.tick(5, measurement=OK)
    w.tick(5, measurement=OK)
    assert w.status["stage"] == "testnet"


def test_the_soak_starts_when_the_stage_pod_is_ready():
    w = Walker()
    w.to_testnet()
    w.tick(10, worker_ready=False)  # the testnet pod is still starting
    assert w.status["state"] == "Soaking" and "waiting for the worker pod" in w.status["message"]
    assert w.status["stageStartedAt"] == pm._fmt(w.now)
    w.tick(29)
    assert w.status["state"] == "Soaking"
    w.tick(1)
    assert w.status["state"] == "Analyzing"


def test_pod_current_compares_the_effective_hash_and_readiness():
    from hean.operator import promoter as pro
    from hean.operator import reconcile as rc

    s = {"apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
         "metadata": {"name": "st", "namespace": "ns", "uid": "u1"},
         "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000, "riskPolicyRef": {"name": "p"}}}
    eff = pm.Effective("paper", 1.0, PARAMS, R1)
    pod = rc.desired_pod(pro.effective_strategy(s, eff), rc.OperatorConfig())
    assert not pro.pod_current(s, eff, "worker", pod)  # not Ready yet
    pod["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert pro.pod_current(s, eff, "worker", pod)
    assert not pro.pod_current(s, pm.Effective("testnet", 1.0, PARAMS, R1), "worker", pod)
    assert not pro.pod_current(s, eff, "worker", None)
