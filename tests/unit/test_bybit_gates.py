"""The live-trading gates and the credentials plumbing in the operator's pure
functions: admission, the worker pod's environment (secretKeyRef only), and the
Event that records a testnet -> live change with its managed-fields manager."""

from __future__ import annotations

import json

from hean.operator import reconcile as rc

PHRASE = "I_UNDERSTAND_LIVE_TRADING"


def strategy(**spec):
    base = {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 10000, "riskPolicyRef": {"name": "pol"},
            "marketData": {"source": "live"}}
    base.update(spec)
    return {"apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
            "metadata": {"name": "btc", "namespace": "ns", "uid": "u-1", "generation": 2}, "spec": base}


def live(**kw):
    return strategy(mode="live", liveConfirmation=PHRASE, credentialsSecretRef={"name": "keys"}, **kw)


def test_gate_1_live_needs_the_operator_switch():
    assert rc.admit(live()["spec"], rc.OperatorConfig()).reason == "LiveTradingDisabled"
    assert rc.admit(live()["spec"], rc.OperatorConfig(live_trading_enabled=True)).ok


def test_gate_3_live_needs_credentials_and_an_existing_risk_policy():
    on = rc.OperatorConfig(live_trading_enabled=True)
    no_creds = live()
    del no_creds["spec"]["credentialsSecretRef"]
    assert rc.admit(no_creds["spec"], on).reason == "CredentialsRequired"
    adm = rc.admit(live()["spec"], on, policy_exists=False)
    assert adm.reason == "RiskPolicyRequired" and "pol" in adm.message
    # testnet/demo run without a policy (the worker then refuses entries itself)
    assert rc.admit(strategy(mode="testnet", credentialsSecretRef={"name": "k"})["spec"], on, False).ok
    assert rc.admit(strategy(mode="demo", credentialsSecretRef={"name": "k"})["spec"], on).ok


def test_exchange_modes_need_live_market_data():
    spec = strategy(mode="testnet", credentialsSecretRef={"name": "k"}, marketData={"source": "replay"})["spec"]
    assert rc.admit(spec, rc.OperatorConfig()).reason == "LiveMarketDataRequired"
    assert rc.admit(strategy(marketData={"source": "live"})["spec"], rc.OperatorConfig()).ok  # paper on live data


def test_worker_gets_keys_only_as_secret_references():
    cfg = rc.OperatorConfig(bybit_urls={"testnet": "http://127.0.0.1:9999"}, worker_state_root="/tmp/st",
                            worker_bybit_env={"DCP_SECONDS": "30", "API_KEY": "never-passed-through"})
    s = strategy(mode="testnet", credentialsSecretRef={"name": "keys", "apiKeyKey": "k", "apiSecretKey": "s"})
    pod = rc.desired_pod(s, cfg)
    c = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["BYBIT_API_KEY"] == {"name": "BYBIT_API_KEY", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "k"}}}
    assert env["BYBIT_API_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "keys", "key": "s"}
    assert all("value" not in env[k] for k in ("BYBIT_API_KEY", "BYBIT_API_SECRET"))
    assert env["HEAN_BYBIT_REST_URL"]["value"] == "http://127.0.0.1:9999"
    assert env["HEAN_BYBIT_WS_PRIVATE_URL"]["value"] == "ws://127.0.0.1:9999/v5/private"
    assert env["HEAN_BYBIT_STATE_DIR"]["value"] == "/tmp/st/ns/btc"
    assert env["HEAN_BYBIT_DCP_SECONDS"]["value"] == "30" and "HEAN_BYBIT_API_KEY" not in env
    assert {"name": "state", "emptyDir": {"sizeLimit": "64Mi"}} in pod["spec"]["volumes"]
    # the worker's Role still cannot read Secrets
    role = rc.desired_role(s)
    assert not any("secrets" in r["resources"] for r in role["rules"])
    # paper replay pods are unchanged: no keys, no URLs, no tunables, no state volume
    paper = rc.desired_pod(strategy(marketData={"source": "replay"}), cfg)
    text = json.dumps(paper)
    assert "BYBIT" not in text and "state" not in [v["name"] for v in paper["spec"]["volumes"]]
    # the credentials Secret is structural: a new Secret name replaces the worker
    other = strategy(mode="testnet", credentialsSecretRef={"name": "other"})
    assert rc.structural_hash(s["spec"]) != rc.structural_hash(other["spec"])


def test_testnet_to_live_is_an_event_naming_the_manager():
    old = strategy(mode="testnet", credentialsSecretRef={"name": "keys"})
    new = live()
    new["metadata"]["managedFields"] = [
        {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-01-01T00:00:00Z",
         "fieldsV1": {"f:spec": {"f:mode": {}, "f:symbols": {}}}},
        {"manager": "alice-kubectl-patch", "operation": "Update", "time": "2026-01-02T00:00:00Z",
         "fieldsV1": {"f:spec": {"f:mode": {}, "f:liveConfirmation": {}}}},
        {"manager": "hean-operator", "operation": "Update", "time": "2026-01-03T00:00:00Z", "subresource": "status",
         "fieldsV1": {"f:status": {}}},
    ]
    reason, message, type_ = rc.mode_change_event(old, new)
    assert (reason, type_) == ("ModeChanged", "Warning")
    assert "'testnet' to 'live'" in message and "alice-kubectl-patch" in message
    assert rc.mode_change_event(new, new) is None and rc.mode_change_event(None, new) is None
