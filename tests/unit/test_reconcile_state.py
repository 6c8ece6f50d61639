"""The operator's pure functions for worker state (issue 7): Redis settings reach the
workers only through a Secret reference, and the TradingStrategy finalizer stops the
worker (exchange modes: after it flattened) before the Redis keys are deleted."""

import base64
from datetime import datetime, timedelta, timezone

from hean.operator import reconcile as rc

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
CFG = rc.OperatorConfig(redis_url="redis://:pw@redis.hean.svc:6379/0", redis_password="s3cr3t-pw",
                        flatten_timeout_seconds=30)


def strategy(mode="paper", deleting_since=None, **status):
    meta = {"name": "btc", "namespace": "ns", "uid": "u-1", "generation": 1}
    if deleting_since is not None:
        meta["deletionTimestamp"] = deleting_since.strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000, "riskPolicyRef": {"name": "p"},
            "mode": mode}
    if mode != "paper":
        spec.update(credentialsSecretRef={"name": "keys"}, marketData={"source": "live"})
    return {"metadata": meta, "spec": spec, "status": status}


def test_redis_settings_reach_the_worker_only_as_secret_references():
    pod = rc.desired_pod(strategy(), CFG)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["HEAN_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hean-worker-redis", "key": "url"}
    assert env["HEAN_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "hean-worker-redis", "key": "password"}
    assert "s3cr3t-pw" not in str(pod) and ":pw@" not in str(pod)
    assert "s3cr3t-pw" not in repr(CFG) and ":pw@" not in repr(CFG)  # the operator logs its config
    sec = rc.desired_redis_secret("ns", CFG)
    assert sec["metadata"]["namespace"] == "ns" and sec["metadata"]["name"] == "hean-worker-redis"
    assert base64.b64decode(sec["data"]["password"]).decode() == "s3cr3t-pw"
    assert base64.b64decode(sec["data"]["url"]).decode() == CFG.redis_url
    # without Redis: no env, no Secret (the worker says "memory" in /why and metrics)
    bare = rc.OperatorConfig()
    names = {e["name"] for e in rc.desired_pod(strategy(), bare)["spec"]["containers"][0]["env"]}
    assert "HEAN_REDIS_URL" not in names and rc.desired_redis_secret("ns", bare) is None
    # a Redis without a password: only the URL
    nopw = rc.OperatorConfig(redis_url="redis://r:6379/0")
    names = {e["name"] for e in rc.desired_pod(strategy(), nopw)["spec"]["containers"][0]["env"]}
    assert "HEAN_REDIS_URL" in names and "HEAN_REDIS_PASSWORD" not in names


def test_finalizer_stops_the_worker_before_the_keys_go():
    s = strategy(deleting_since=NOW)
    pod = rc.desired_pod(s, CFG)
    assert rc.finalize_action(s, pod, CFG, NOW).kind == "delete-pod"  # paper: nothing to flatten
    gone = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T12:00:01Z"}}
    assert rc.finalize_action(s, gone, CFG, NOW).kind == "wait"  # still terminating: keys stay
    assert rc.finalize_action(s, None, CFG, NOW).kind == "cleanup"


def test_finalizer_waits_for_an_exchange_worker_to_flatten_up_to_the_timeout():
    s = strategy("testnet", deleting_since=NOW, openPositions=1)
    pod = rc.desired_pod(s, CFG)
    a = rc.finalize_action(s, pod, CFG, NOW + timedelta(seconds=5))
    assert (a.kind, a.reason) == ("wait", "WorkerFlattening")
    a = rc.finalize_action(s, pod, CFG, NOW + timedelta(seconds=31))
    assert (a.kind, a.reason) == ("delete-pod", "FlattenTimeout")
    flat = strategy("testnet", deleting_since=NOW, openPositions=0)
    assert rc.finalize_action(flat, pod, CFG, NOW + timedelta(seconds=1)).reason == "StrategyDeleted"


def test_chart_redis_runs_aof_everysec_and_the_operator_may_only_write_secrets():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "helm" / "hean"
    values = yaml.safe_load((root / "values.yaml").read_text())
    assert values["redis"]["appendfsync"] == "everysec"  # docs/reliability.md's durability window
    conf = (root / "templates" / "redis.yaml").read_text()
    assert "appendonly yes" in conf and "appendfsync {{ .Values.redis.appendfsync }}" in conf
    rules = (root / "templates" / "_rbac_rules.tpl").read_text()
    block = rules[rules.index('resources: ["secrets"]'):].split("\n")[1]
    assert block.strip() == 'verbs: ["create", "patch"]'
