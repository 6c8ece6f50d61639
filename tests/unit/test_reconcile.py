"""The operator's pure reconcile functions."""

from datetime import datetime, timedelta, timezone

from hean import api
from hean.operator import reconcile as rc

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def strategy(**spec):
    base = {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 10000, "riskPolicyRef": {"name": "default"}}
    base.update(spec)
    return {"apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
            "metadata": {"name": "btc", "namespace": "ns", "uid": "u-1", "generation": 3, "labels": {"desk": "a"}},
            "spec": base, "status": {}}


def ready_pod(s, **status):
    p = rc.desired_pod(s, rc.OperatorConfig())
    p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], **status}
    return p


def test_worker_pod_is_restricted_owned_and_bound_to_pod_ip():
    s = strategy()
    pod = rc.desired_pod(s, rc.OperatorConfig(marketdata_host_path="/data", marketdata_mount_path="/md"))
    assert pod["metadata"]["name"] == "btc-worker"
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["uid"] == "u-1" and ref["controller"] is True and ref["kind"] == "TradingStrategy"
    sec = pod["spec"]["securityContext"]
    c = pod["spec"]["containers"][0]
    assert sec["runAsNonRoot"] and sec["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"] and not c["securityContext"]["allowPrivilegeEscalation"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HEAN_BIND_ADDRESS"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["HEAN_MARKETDATA_DIR"]["value"] == "/md"
    assert pod["spec"]["volumes"][0]["hostPath"]["path"] == "/data"
    assert pod["spec"]["serviceAccountName"] == "btc-worker"
    assert not any("secret" in str(e).lower() for e in c["env"])


def test_worker_role_is_least_privilege():
    role = rc.desired_role(strategy())
    flat = [(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]]
    assert ("", "secrets", "get") not in flat and not any(r == "pods" for _, r, _ in flat)
    status_rule = next(r for r in role["rules"] if "tradingstrategies/status" in r["resources"])
    assert status_rule["resourceNames"] == ["btc"]


def test_structural_hash_ignores_live_tunable_fields():
    a = rc.structural_hash(strategy()["spec"])
    assert a == rc.structural_hash(strategy(paused=True, params={"emaFastPeriod": 5})["spec"])
    assert a != rc.structural_hash(strategy(symbols=["ETHUSDT"])["spec"])


def test_live_needs_the_operator_gate_and_testnet_needs_live_data():
    cfg = rc.OperatorConfig()
    assert rc.admit(strategy(mode="live")["spec"], cfg).reason == "LiveTradingDisabled"
    assert rc.admit(strategy(mode="testnet", credentialsSecretRef={"name": "k"})["spec"], cfg).reason \
        == "LiveMarketDataRequired"
    assert rc.admit(strategy()["spec"], cfg).ok


def test_pod_action_create_replace_and_backoff():
    s = strategy()
    ok = rc.Admission(True)
    assert rc.pod_action(s, None, ok, True, 0, None, NOW).kind == "create"
    pod = ready_pod(s)
    assert rc.pod_action(s, pod, ok, True, 0, None, NOW).kind == "none"
    changed = strategy(symbols=["ETHUSDT"])
    assert rc.pod_action(changed, pod, ok, True, 0, None, NOW).reason == "SpecChanged"
    failed = ready_pod(s, phase="Failed")
    assert rc.pod_action(s, failed, ok, True, 0, None, NOW).kind == "delete"
    # third failure: wait 2 * 2^2 = 8 s after the last creation
    act = rc.pod_action(s, None, ok, True, 3, NOW - timedelta(seconds=3), NOW)
    assert act.kind == "wait" and abs(act.after_seconds - 5) < 1e-6
    assert rc.pod_action(s, None, ok, True, 3, NOW - timedelta(seconds=9), NOW).kind == "create"
    terminating = ready_pod(s)
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert rc.pod_action(s, terminating, ok, True, 0, None, NOW).kind == "none"
    assert rc.pod_action(s, pod, rc.Admission(False, "LiveTradingDisabled"), True, 0, None, NOW).kind == "delete"


def test_missing_policy_is_a_ready_false_condition_not_a_crash():
    s = strategy()
    st = rc.strategy_status(s, rc.Admission(True), None, ready_pod(s), 0, NOW)
    c = {x["type"]: x for x in st["conditions"]}
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "RiskPolicyNotFound"
    assert "default" in c["Ready"]["message"]
    assert c["PolicyResolved"]["status"] == "False"
    assert st["observedGeneration"] == 3 and all(x["observedGeneration"] == 3 for x in st["conditions"])


def test_trading_and_risk_conditions_follow_worker_status():
    s = strategy()
    s["status"] = {"lastHeartbeat": "2026-01-01T11:59:58Z", "tradingActive": True, "riskState": "SOFT_BRAKE",
                   "riskReasons": ["SOFT_DRAWDOWN"]}
    st = rc.strategy_status(s, rc.Admission(True), {"metadata": {}}, ready_pod(s), 0, NOW)
    c = {x["type"]: x for x in st["conditions"]}
    assert c["Ready"]["status"] == "True" and c["Trading"]["status"] == "True"
    assert c["RiskLimited"]["status"] == "True" and c["RiskLimited"]["reason"] == "SoftBrake"
    s["status"]["lastHeartbeat"] = "2026-01-01T11:00:00Z"
    c = {x["type"]: x for x in rc.strategy_status(s, rc.Admission(True), {"metadata": {}}, ready_pod(s), 0, NOW)["conditions"]}
    assert c["Trading"]["reason"] == "HeartbeatStale"
    s["status"].update(lastHeartbeat="2026-01-01T11:59:59Z", tradingActive=False,
                       notTradingReasons=[{"reason": "SYMBOL_QUARANTINED", "count": 4}])
    c = {x["type"]: x for x in rc.strategy_status(s, rc.Admission(True), {"metadata": {}}, ready_pod(s), 0, NOW)["conditions"]}
    assert c["Trading"]["reason"] == "SymbolQuarantined"


def test_last_transition_time_only_moves_on_status_change():
    old = [{"type": "Ready", "status": "True", "reason": "A", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}]
    same = rc.merge_conditions(old, [rc.condition("Ready", True, "B", "m", 1)], NOW)
    assert same[0]["lastTransitionTime"] == "2025-01-01T00:00:00Z" and same[0]["reason"] == "B"
    flipped = rc.merge_conditions(old, [rc.condition("Ready", False, "B", "m", 1)], NOW)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert rc.condition_transitions(old, [rc.condition("Ready", True, "A", "x", 1)]) == []


def test_start_up_progress_is_an_event_only_as_a_regression():
    pending = rc.condition("Ready", False, "WorkerPending", "worker pod is pending", 1)
    not_ready = rc.condition("Ready", False, "WorkerNotReady", "running but not ready", 1)
    ready = rc.condition("Ready", True, "WorkerReady", "ready", 1)
    crash = rc.condition("Ready", False, "WorkerCrashLooping", "crash looping", 1)
    assert not rc.event_worthy(None, pending)          # first status of a new strategy
    assert not rc.event_worthy(pending, not_ready)     # pod started, not ready yet
    assert rc.event_worthy(not_ready, ready)           # became ready
    assert rc.event_worthy(ready, not_ready)           # lost readiness: a regression
    assert rc.event_worthy(ready, pending)             # pod gone after being ready
    assert rc.event_worthy(None, crash) and rc.event_worthy(pending, crash)
    trading_off = rc.condition("Trading", False, "NotReady", "the worker is not ready", 1)
    assert not rc.event_worthy(None, trading_off)
    assert rc.event_worthy(rc.condition("Trading", True, "Trading", "x", 1), trading_off)


def test_policy_status_counts_users_and_worst_state():
    pol = {"metadata": {"name": "default", "namespace": "ns", "generation": 1}}
    a, b, other = strategy(), strategy(), strategy(riskPolicyRef={"name": "other"})
    a["status"] = {"riskState": "SOFT_BRAKE"}
    b["status"] = {"riskState": "HARD_STOP"}
    st = rc.policy_status(pol, [a, b, other], NOW)
    assert st["strategies"] == 2 and st["worstState"] == api.RISK_HARD_STOP
    assert st["states"] == {"SOFT_BRAKE": 1, "HARD_STOP": 1}


def test_quarantine_expiry_from_ttl_and_selector():
    q = {"metadata": {"name": "q", "namespace": "ns", "generation": 1, "uid": "q1",
                      "creationTimestamp": "2026-01-01T11:59:00Z"},
         "spec": {"symbol": "BTCUSDT", "reason": "test", "ttlSeconds": 120, "strategySelector": {"matchLabels": {"desk": "a"}}}}
    st = rc.quarantine_status(q, [strategy()], NOW)
    assert st["active"] and st["expiresAt"] == "2026-01-01T12:01:00Z" and st["affectedStrategies"] == 1
    assert [(c["type"], c["status"], c["reason"]) for c in st["conditions"]] == [
        ("Active", "True", "Active"), ("Ready", "True", "Applied")]
    st = rc.quarantine_status(q, [strategy()], NOW + timedelta(minutes=2))
    assert not st["active"] and st["conditions"][0]["reason"] == "Expired"
    q["spec"]["strategySelector"] = {"matchLabels": {"desk": "b"}}
    st = rc.quarantine_status(q, [strategy()], NOW)
    assert st["affectedStrategies"] == 0
    ready = st["conditions"][1]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "NoMatchingStrategies")
    assert "spec.strategySelector" in ready["message"] and "BTCUSDT" in ready["message"]
    q["spec"]["strategySelector"] = {"matchLabels": {"desk": "a"}}
    q["spec"]["symbol"] = "ETHUSDT"  # nobody trades it
    assert rc.quarantine_status(q, [strategy()], NOW)["conditions"][1]["reason"] == "NoMatchingStrategies"


def test_operator_config_errors_name_the_variable(monkeypatch):
    import pytest

    from hean.operator.handlers import config_from_env

    monkeypatch.setenv("HEAN_WORKER_RESOURCES", '{"limits": {"cpu": "2"}}')
    monkeypatch.setenv("HEAN_WORKER_STATUS_INTERVAL", "0.5")
    cfg = config_from_env()
    assert cfg.worker_resources == {"limits": {"cpu": "2"}} and cfg.status_interval == 0.5
    monkeypatch.setenv("HEAN_WORKER_RESOURCES", "{not json")
    with pytest.raises(ValueError, match="HEAN_WORKER_RESOURCES must be a JSON object"):
        config_from_env()
    monkeypatch.setenv("HEAN_WORKER_RESOURCES", "[1, 2]")
    with pytest.raises(ValueError, match="got list"):
        config_from_env()
    monkeypatch.delenv("HEAN_WORKER_RESOURCES")
    for bad in ("abc", "0", "-1"):
        monkeypatch.setenv("HEAN_WORKER_STATUS_INTERVAL", bad)
        with pytest.raises(ValueError, match="HEAN_WORKER_STATUS_INTERVAL must be a positive number"):
            config_from_env()


def test_invalid_params_give_ready_false_naming_the_field_and_keep_a_running_worker():
    cfg = rc.OperatorConfig()
    bad = strategy(strategy="grid", params={"grid": {"lowerPrice": 120, "upperPrice": 100}})
    adm = rc.admit(bad["spec"], cfg)
    assert not adm.ok and adm.reason == "InvalidParams" and adm.keep_worker
    assert "spec.params.grid.lowerPrice (120.0) must be less than spec.params.grid.upperPrice (100.0)" in adm.message
    # no worker is created for it; a running worker stays (it keeps its last good parameters)
    assert rc.pod_action(bad, None, adm, True, 0, None, NOW).kind == "none"
    assert rc.pod_action(bad, ready_pod(strategy(strategy="grid")), adm, True, 0, None, NOW).kind == "none"
    status = rc.strategy_status(bad, adm, {"metadata": {"name": "default"}}, None, 0, NOW)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidParams"
    assert "spec.params.grid.lowerPrice" in ready["message"]
    # the transition is Event-worthy (the handler posts one Event per transition)
    assert any(c["type"] == "Ready" and c["reason"] == "InvalidParams" for c in rc.condition_transitions([], status["conditions"]))
    # bounds, unknown fields, another strategy's block, the scanner
    assert "spec.params.scalping.maxOrdersPerMinute: Input should be less than or equal to 6000" in rc.admit(
        strategy(strategy="scalping", params={"scalping": {"maxOrdersPerMinute": 10_000}})["spec"], cfg).message
    assert "spec.params.momentum.lookback: Extra inputs are not permitted" in rc.admit(
        strategy(strategy="momentum", params={"momentum": {"lookback": 5}})["spec"], cfg).message
    assert "spec.params.grid: only allowed when spec.strategy is 'grid'" in rc.admit(
        strategy(params={"grid": {}})["spec"], cfg).message
    assert "spec.scanner.universe: ETHUSDT not in spec.symbols" in rc.admit(
        strategy(scanner={"universe": ["BTCUSDT", "ETHUSDT"], "topN": 1})["spec"], cfg).message
    assert "spec.scanner.topN (3) must be at most the universe size (1)" in rc.admit(
        strategy(scanner={"universe": ["BTCUSDT"], "topN": 3})["spec"], cfg).message
    for name, key in (("momentum", "momentum"), ("grid", "grid"), ("scalping", "scalping"),
                      ("funding_harvest", "fundingHarvest"), ("basis_arbitrage", "basisArbitrage")):
        assert rc.admit(strategy(strategy=name, params={key: {}})["spec"], cfg).ok, name
def test_rbac_in_place_needs_all_three_objects_with_the_desired_rules():
    import copy

    a, b, c = (strategy() for _ in range(3))
    for s, name, uid in ((a, "a", "uid-a"), (b, "b", "uid-b"), (c, "c", "uid-c")):
        s["metadata"].update(name=name, uid=uid)
    key_a, key_b = rc.rbac_key(a), rc.rbac_key(b)
    assert key_a == "uid-a/" + ",".join(sorted(a["spec"]["symbols"]))  # the symbols are in the key
    sas = [rc.desired_service_account(s) for s in (a, b, c)]
    roles = [rc.desired_role(s) for s in (a, b, c)]
    rbs = [rc.desired_role_binding(s) for s in (a, b)]  # c has no RoleBinding
    assert rc.rbac_in_place(sas, roles, rbs) == {key_a, key_b}
    stale = copy.deepcopy(roles)
    stale[1]["rules"][0]["verbs"] = ["get"]  # b's Role from an older operator: must be patched
    assert rc.rbac_in_place(sas, stale, rbs) == {key_a}
    orphan = copy.deepcopy(sas)
    orphan[0]["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-strategy"
    assert rc.rbac_in_place(orphan, roles, rbs) == {key_b}
    # a symbols edit changes the key: the Role (auto-quarantine names) is patched again
    moved = copy.deepcopy(a)
    moved["spec"]["symbols"] = ["XRPUSDT"]
    assert rc.rbac_key(moved) not in rc.rbac_in_place(sas, roles, rbs)
    assert rc.rbac_in_place([], [], []) == set()
