"""Worker state on the local control plane (issue 7): the chart's operator with an
external Redis (``redis.external.url``, a real redis-server with AOF on loopback)
hands ``HEAN_REDIS_URL`` to the worker pods through a Secret; a paper worker whose
pod is deleted comes back (the operator creates the replacement only after the old
pod is gone) with its ledger, positions and equity from Redis and a newer fencing
token; deleting the TradingStrategy runs the finalizer, which stops the worker and
then deletes the strategy's Redis keys.

Chaos scenario 2 on the control plane: a ``testnet`` worker pod (against the test
exchange) is deleted while its orders are in flight, and the invariants hold after
the replacement pod reconciled. ``HEAN_CHAOS_RUNS=full`` runs it 20 times.

Local harness only (pods reach the pytest process's loopback).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from decimal import Decimal

import httpx
import pytest
import redis
import yaml

from exchange.fixtures import bybit_exchange  # noqa: F401 - fixture
from hean.deploy import OPERATOR_NAMESPACE, RELEASE, install
from hean.testing import wait_for
from hean.worker.state import strategy_prefix
from redisserver import RedisServer

pytestmark = pytest.mark.e2e
GROUP, VERSION = "hean.io", "v1alpha1"
POD_DELETE_RUNS = 20 if os.environ.get("HEAN_CHAOS_RUNS", "") == "full" else 1


@pytest.fixture(scope="module")
def stack(kube, marketdata_dir, bybit_exchange, tmp_path_factory):  # noqa: F811
    if not kube.is_local:
        pytest.skip("Redis and the test exchange listen on this machine's loopback; local harness only")
    srv = RedisServer()
    srv.start()
    env = [{"name": "HEAN_BYBIT_TESTNET_URL", "value": bybit_exchange.rest_url},
           {"name": "HEAN_BYBIT_PAPER_URL", "value": bybit_exchange.rest_url},  # paper on live data
           {"name": "HEAN_WORKER_STATE_ROOT", "value": str(tmp_path_factory.mktemp("worker-state"))},
           {"name": "HEAN_WORKER_BYBIT_RECONCILE_SECONDS", "value": "2"}]
    install(kube.helm, marketdata_dir, extra=["--set", f"redis.external.url={srv.url}",
                                              "--set-json", "extraEnv=" + json.dumps(env)])
    yield srv, bybit_exchange
    kube.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "120s", check=False)
    srv.cleanup()


class K:
    def __init__(self, kube, ns):
        from kubernetes import client

        self.kube, self.ns = kube, ns
        api = kube.api_client()
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def apply(self, *objs):
        self.kube.kubectl("apply", "-n", self.ns, "-f", "-", input="\n---\n".join(yaml.safe_dump(o) for o in objs))

    def strategy(self, name):
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "tradingstrategies", name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def ready(self, name):
        s = self.strategy(name) or {}
        return any(c["type"] == "Ready" and c["status"] == "True" for c in (s.get("status") or {}).get("conditions") or [])

    def pod(self, name):
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod(name, self.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def worker(self, pod, path):
        ip = self.core.read_namespaced_pod(pod, self.ns).status.pod_ip
        r = httpx.get(f"http://{ip}:8080{path}", timeout=5)
        r.raise_for_status()
        return r.json()


FAST = {"emaFastPeriod": 2, "emaSlowPeriod": 3, "volatilityWindow": 5, "impulseLookback": 1, "impulseThreshold": 0.1,
        "atrPeriod": 2, "stopLossAtr": 0.5, "takeProfitAtr": 0.5, "cooldownBars": 0, "riskPerTradeFraction": 0.01}
POLICY = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": "pol"},
          "spec": {"maxDailyLossUsdt": 100000, "maxPositionNotionalUsdt": 3000, "hardMaxDrawdownPercent": 90,
                   "softMaxDrawdownPercent": 80, "maxOrdersPerMinute": 6000}}


def test_paper_worker_resumes_from_redis_and_the_finalizer_cleans_up(kube, namespace, stack):
    srv, _ = stack
    k = K(kube, namespace)
    k.apply(POLICY, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy", "metadata": {"name": "dur"},
                     "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 10000,
                              "riskPolicyRef": {"name": "pol"}, "params": FAST,
                              "marketData": {"source": "replay", "replay": {"speed": 3000}}}})
    wait_for(lambda: k.ready("dur"), 120, message="Ready")
    pod = k.pod("dur-worker")
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["HEAN_REDIS_URL"].value_from.secret_key_ref.name == "hean-worker-redis"
    why = k.worker("dur-worker", "/why")
    assert why["state"]["backend"] == "redis" and why["state"]["fencingToken"] == 1
    wait_for(lambda: len(k.worker("dur-worker", "/ledger")["fills"]) >= 4, 120, message="a few paper fills")
    uid = pod.metadata.uid
    r = redis.Redis.from_url(srv.url, decode_responses=True)
    prefix = strategy_prefix(namespace, "dur")
    # the pod goes away (eviction, node drain): SIGTERM; the worker commits and releases
    kube.kubectl("delete", "pod", "-n", namespace, "dur-worker", "--wait=true", timeout=60)
    committed = [json.loads(f["fill"])["exec_id"] for _, f in r.xrange(prefix + "ledger")]
    assert len(committed) >= 4
    wait_for(lambda: (lambda p: p is not None and p.metadata.uid != uid)(k.pod("dur-worker")), 60,
             message="the replacement pod")
    wait_for(lambda: k.ready("dur"), 120, message="Ready again")
    why = k.worker("dur-worker", "/why")
    assert why["state"]["loaded"] and why["state"]["fencingToken"] == 2
    led = k.worker("dur-worker", "/ledger")
    resumed = [f["execId"] for f in led["fills"]]
    assert resumed[:len(committed)] == committed  # the same account, not a fresh one
    # equity is recomputed from the fills here: capital + realized - fees (+ open position)
    assert Decimal(led["capital"]) == Decimal(10000)
    assert r.exists(prefix + "seq") or r.exists(prefix + "ledger")
    # deleting the strategy: the finalizer stops the worker, then deletes its keys
    kube.kubectl("delete", "tradingstrategy", "-n", namespace, "dur", "--wait=false")
    wait_for(lambda: k.strategy("dur") is None, 90, message="the strategy to be finalized and gone")
    assert k.pod("dur-worker") is None or k.pod("dur-worker").metadata.deletion_timestamp
    assert not list(r.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*")), "keys left behind"


def test_paper_worker_on_live_data_keeps_its_account(kube, namespace, stack):
    """Paper mode on live market data (the test exchange's public stream): a restarted
    pod gets the same account back from Redis (there is no replay cursor: the market
    simply goes on)."""
    srv, _ = stack
    k = K(kube, namespace)
    k.apply(POLICY, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy", "metadata": {"name": "plive"},
                     "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 10000,
                              "riskPolicyRef": {"name": "pol"}, "params": FAST, "marketData": {"source": "live"}}})
    wait_for(lambda: k.ready("plive"), 120, message="Ready")
    assert k.worker("plive-worker", "/why")["state"]["backend"] == "redis"
    wait_for(lambda: len(k.worker("plive-worker", "/ledger")["fills"]) >= 2, 120, message="paper fills on live data")
    uid = k.pod("plive-worker").metadata.uid
    r = redis.Redis.from_url(srv.url, decode_responses=True)
    prefix = strategy_prefix(namespace, "plive")
    kube.kubectl("delete", "pod", "-n", namespace, "plive-worker", "--wait=true", timeout=60)
    committed = [json.loads(f["fill"])["exec_id"] for _, f in r.xrange(prefix + "ledger")]
    assert len(committed) >= 2
    wait_for(lambda: (lambda p: p is not None and p.metadata.uid != uid)(k.pod("plive-worker")), 60,
             message="the replacement pod")
    wait_for(lambda: k.ready("plive"), 120, message="Ready again")
    why = k.worker("plive-worker", "/why")
    assert why["state"]["loaded"] and why["state"]["fencingToken"] == 2
    resumed = [f["execId"] for f in k.worker("plive-worker", "/ledger")["fills"]]
    assert resumed[:len(committed)] == committed  # the same account, not a fresh one
    kube.kubectl("delete", "tradingstrategy", "-n", namespace, "plive", "--wait=false")
    wait_for(lambda: k.strategy("plive") is None, 90, message="the strategy to be finalized and gone")


def test_testnet_pod_deleted_while_orders_are_in_flight(kube, namespace, stack):
    srv, x = stack
    k = K(kube, namespace)
    key, secret = "sk" + secrets.token_hex(8), secrets.token_hex(16)
    x.add_account(key, secret, Decimal("100000"))
    k.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bybit-keys"},
             "stringData": {"apiKey": key, "apiSecret": secret}}, POLICY,
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy", "metadata": {"name": "tnd"},
             "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "mode": "testnet", "capital": 10000,
                      "riskPolicyRef": {"name": "pol"}, "credentialsSecretRef": {"name": "bybit-keys"},
                      "marketData": {"source": "live"}, "params": FAST}})
    r = redis.Redis.from_url(srv.url, decode_responses=True)
    prefix = strategy_prefix(namespace, "tnd")
    acc = x.accounts[key]
    recovery = []
    for run in range(POD_DELETE_RUNS):
        wait_for(lambda: k.ready("tnd"), 120, message="Ready")
        n0 = len(acc.executions)
        wait_for(lambda: len(acc.executions) >= n0 + 2, 120, message="orders filling")
        x.inject("timeout_after_accept", "/v5/order/create", count=2, delay=2.0)  # orders in flight
        time.sleep(0.5)
        uid = k.pod("tnd-worker").metadata.uid
        t0 = time.time()
        kube.kubectl("delete", "pod", "-n", namespace, "tnd-worker", "--wait=false")
        wait_for(lambda: (lambda p: p is not None and p.metadata.uid != uid and p.status.pod_ip)(k.pod("tnd-worker")),
                 90, message="the replacement pod")
        wait_for(lambda: (k.worker("tnd-worker", "/bybit").get("exchange") or {}).get("reconciled"), 90,
                 message="the replacement reconciled")
        recovery.append(time.time() - t0)
        x.faults.clear()
    time.sleep(3)  # one more reconcile period of the worker
    # invariants against the exchange's books and Redis
    creates = {link: n for (kk, link), n in x.order_creates.items() if kk == key}
    assert creates and all(n == 1 for n in creates.values())
    intents = r.hgetall(prefix + "intents")
    assert set(creates) <= set(intents), "an order reached the exchange without a write-ahead intent"

    def books_agree():
        stream = [json.loads(f["fill"]) for _, f in r.xrange(prefix + "ledger")]
        booked = {f["exec_id"] for f in stream if not f["exec_id"].startswith("reconcile-")}
        pos = acc.positions.get("BTCUSDT")
        size = sum(Decimal(f["qty"]) * (1 if f["side"] == "Buy" else -1) for f in stream)
        return booked == {e["execId"] for e in acc.executions} and size == (pos.size if pos else 0)
    kube.kubectl("patch", "tradingstrategy", "-n", namespace, "tnd", "--type=merge", "-p",
                 json.dumps({"spec": {"paused": True}}))
    wait_for(books_agree, 60, interval=1.0, message="exchange fills == ledger fills and positions equal")
    print(f"\npod-deletion runs={POD_DELETE_RUNS} recovery_s={sorted(round(x, 2) for x in recovery)}")
