"""End to end on a real control plane: the chart installs the operator, TradingStrategies
become worker pods that paper-trade the recorded Bybit candles, and status, Events,
quarantines, risk limits, pausing and deletion behave as documented.

Runs unchanged on kind with ``HEAN_E2E_KUBECONFIG`` (see docs/harness.md); there the
market data must be reachable at the hostPath given through ``HEAN_HELM_ARGS``.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml

from hean.testing import wait_for
from hean.deploy import install, repo_root

pytestmark = pytest.mark.e2e

ROOT = repo_root(Path(__file__).resolve())
GROUP, VERSION = "hean.io", "v1alpha1"


@pytest.fixture(scope="session")
def hean_installed(kube, marketdata_dir):
    """The chart installed once per session with the real helm binary."""
    install(kube.helm, marketdata_dir)
    out = kube.kubectl("get", "deploy", "-n", "hean-system", "-o", "json").stdout
    deploys = json.loads(out)["items"]
    assert deploys and all(d["status"].get("readyReplicas") == 1 for d in deploys)
    return True


class K:
    """Small typed helpers over kubectl/the API for one namespace."""

    def __init__(self, kube, ns):
        from kubernetes import client

        self.kube, self.ns = kube, ns
        self.api = kube.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def apply(self, obj: dict | str):
        text = obj if isinstance(obj, str) else yaml.safe_dump(obj)
        return self.kube.kubectl("apply", "-n", self.ns, "-f", "-", input=text)

    def get(self, plural, name):
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)

    def strategy(self, name):
        return self.get("tradingstrategies", name)

    def cond(self, name, type_):
        for c in (self.strategy(name).get("status") or {}).get("conditions") or []:
            if c["type"] == type_:
                return c
        return None

    def patch(self, plural, name, body):
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name, body)

    def events(self, reason=None):
        evs = self.core.list_namespaced_event(self.ns).items
        return [e for e in evs if reason is None or e.reason == reason]

    def worker_text(self, pod, path):
        """GET a worker endpoint as text (see :meth:`worker_get`)."""
        if self.kube.is_local:
            import httpx

            ip = self.core.read_namespaced_pod(pod, self.ns).status.pod_ip
            r = httpx.get(f"http://{ip}:8080{path}", timeout=5)
            r.raise_for_status()
            return r.text
        return self.kube.kubectl("get", "--raw", f"/api/v1/namespaces/{self.ns}/pods/{pod}:8080/proxy{path}").stdout

    def worker_get(self, pod, path):
        """GET a worker endpoint: directly at the pod IP on the local harness (the API
        server refuses to proxy to loopback addresses), through the API server's pod
        proxy on a real cluster."""
        if self.kube.is_local:
            import httpx

            ip = self.core.read_namespaced_pod(pod, self.ns).status.pod_ip
            r = httpx.get(f"http://{ip}:8080{path}", timeout=5)
            r.raise_for_status()
            return r.json()
        raw = self.kube.kubectl("get", "--raw", f"/api/v1/namespaces/{self.ns}/pods/{pod}:8080/proxy{path}").stdout
        return json.loads(raw)

    def pod(self, name):
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod(name, self.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise


def policy(name="default", **over):
    spec = {"softMaxDrawdownPercent": 5, "hardMaxDrawdownPercent": 10, "maxDailyLossUsdt": 5000, "maxLeverage": 3,
            "maxPositionNotionalUsdt": 20000, "maxOpenPositions": 4, "maxOrdersPerMinute": 600}
    spec.update(over)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": name}, "spec": spec}


def strategy(name, symbols, speed=20000, start=None, labels=None, **over):
    replay = {"interval": "1", "speed": speed}
    if start:
        replay["start"] = start
    spec = {"strategy": "impulse", "symbols": symbols, "capital": 10000, "riskPolicyRef": {"name": "default"},
            "marketData": {"source": "replay", "replay": replay}}
    spec.update(over)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy",
            "metadata": {"name": name, "labels": labels or {"hean.io/desk": "test"}}, "spec": spec}


def test_examples_apply_and_become_ready(kube, namespace, hean_installed):
    k = K(kube, namespace)
    kube.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples"))
    names = [d["metadata"]["name"] for f in sorted((ROOT / "examples").glob("*.yaml"))
             for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") == "TradingStrategy"]
    assert len(names) == 2
    for n in names:
        # `kubectl wait` works on the Ready condition (kstatus-style summary condition)
        kube.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"tradingstrategy/{n}", "--timeout=120s",
                     timeout=150)
        assert (k.cond(n, "Ready") or {}).get("status") == "True"
        s = k.strategy(n)
        assert s["status"]["observedGeneration"] == s["metadata"]["generation"]
        pod = k.pod(f"{n}-worker")
        assert pod.metadata.owner_references[0].uid == s["metadata"]["uid"]
        assert pod.spec.service_account_name == f"{n}-worker"
        assert pod.spec.security_context.run_as_non_root is True
    # the printer columns and the category work
    out = kube.kubectl("get", "hean", "-n", namespace, "-o", "wide").stdout
    assert "tradingstrategy" in out.lower() and "riskpolicy" in out.lower() and "symbolquarantine" in out.lower()
    header = kube.kubectl("get", "tradingstrategies", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    for col in ("STRATEGY", "MODE", "READY", "RISK", "EQUITY", "PNL", "DRAWDOWN%", "AGE", "SYMBOLS", "HEARTBEAT"):
        assert col in header, (col, header)
    # `kubectl describe` explains what happened: conditions and the operator's Events
    desc = kube.kubectl("describe", "tradingstrategy", "-n", namespace, names[0]).stdout
    assert "Conditions:" in desc and "WorkerReady" in desc and "PolicyResolved" in desc
    assert "Events:" in desc and "WorkerCreated" in desc
    # `kubectl explain` is useful at every level
    for path in ("tradingstrategy", "tradingstrategy.spec", "tradingstrategy.spec.params.stopLossAtr",
                 "tradingstrategy.status.conditions", "riskpolicy.spec.hardMaxDrawdownPercent",
                 "symbolquarantine.spec.ttlSeconds"):
        text = kube.kubectl("explain", path).stdout
        assert "DESCRIPTION:" in text and "<empty>" not in text.split("DESCRIPTION:")[1][:200], path
    # equity moves with the replay
    seen = set()
    wait_for(lambda: (seen.add(k.strategy(names[0])["status"].get("equity")), len(seen - {None}) >= 3)[1], 120,
             interval=1.0, message="equity to change")
    # RiskPolicy status counts its users
    wait_for(lambda: (k.get("riskpolicies", "default").get("status") or {}).get("strategies") == 2, 30,
             message="RiskPolicy status.strategies == 2")


def test_status_matches_the_worker_ledger(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    # the last ~3 days of the recording, fast: the replay finishes and the figures settle
    k.apply(strategy("ledger", ["BTCUSDT", "ETHUSDT"], speed=200000, start="2025-06-26T16:00:00Z"))
    wait_for(lambda: ((k.strategy("ledger").get("status") or {}).get("replay") or {}).get("done"), 180,
             interval=1.0, message="the replay to finish")
    time.sleep(2.5)  # one more status write after the last candle
    st = k.strategy("ledger")["status"]
    ledger = k.worker_get("ledger-worker", "/ledger")
    assert ledger["replayDone"] and ledger["fills"], "the strategy should have traded on 3 days of 1m candles"
    # independent recomputation from the raw fills: cash flows, fees, remaining positions at the marks
    cash, fees, size = D(0), D(0), {}
    for f in ledger["fills"]:
        q, p, fee = D(f["qty"]), D(f["price"]), D(f["fee"])
        cash += q * p if f["side"] == "Sell" else -q * p
        fees += fee
        size[f["symbol"]] = size.get(f["symbol"], D(0)) + (q if f["side"] == "Buy" else -q)
    marks = {s: D(v) for s, v in ledger["marks"].items()}
    equity = D(10000) + cash - fees + sum(q * marks[s] for s, q in size.items())
    assert D(st["equity"]) == equity.quantize(D("0.01"))
    assert D(st["fees"]) == fees.quantize(D("0.01"))
    assert D(st["pnl"]) == (equity - 10000).quantize(D("0.01"))
    assert st["openPositions"] == sum(1 for q in size.values() if q != 0)
    assert len({f["execId"] for f in ledger["fills"]}) == len(ledger["fills"])
    # the Prometheus endpoint reports the same ledger
    from prometheus_client.parser import text_string_to_metric_families

    metrics = {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
               for f in text_string_to_metric_families(k.worker_text("ledger-worker", "/metrics")) for smp in f.samples}
    labels = (("mode", "paper"), ("namespace", namespace), ("strategy", "ledger"))
    assert abs(D(str(metrics[("hean_worker_equity_usdt", labels)])) - equity) < D("0.000001")
    assert metrics[("hean_worker_fills_total", labels)] == len(ledger["fills"])
    assert metrics[("hean_worker_risk_state", tuple(sorted(labels + (("state", st["riskState"]),))))] == 1.0
    assert k.worker_get("ledger-worker", "/readyz") == {"ready": True}
    trading = k.cond("ledger", "Trading")
    assert trading["status"] == "False" and trading["reason"] == "ReplayFinished"


def test_quarantine_blocks_new_entries_within_a_second_and_expires(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    k.apply(strategy("quar", ["BTCUSDT", "ETHUSDT"], speed=3000))
    wait_for(lambda: (k.cond("quar", "Ready") or {}).get("status") == "True", 120, message="Ready")
    wait_for(lambda: k.strategy("quar")["status"].get("riskState") == "NORMAL", 30, message="riskState NORMAL")
    t0 = time.monotonic()
    k.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "SymbolQuarantine", "metadata": {"name": "btc-halt"},
             "spec": {"symbol": "BTCUSDT", "reason": "exchange incident drill", "ttlSeconds": 600}})
    why = wait_for(lambda: (lambda w: w if next(s for s in w["symbols"] if s["symbol"] == "BTCUSDT")["quarantined"] else None)(
        k.worker_get("quar-worker", "/why")), 10, interval=0.05, message="the worker to see the quarantine")
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"quarantine took {elapsed:.2f}s to reach the worker (kubectl apply included)"
    assert why["riskState"] == "QUARANTINE"
    btc0 = next(s for s in why["symbols"] if s["symbol"] == "BTCUSDT")["entryOrders"]
    time.sleep(8)  # ~400 candles at speed 3000
    why = k.worker_get("quar-worker", "/why")
    assert next(s for s in why["symbols"] if s["symbol"] == "BTCUSDT")["entryOrders"] == btc0
    assert any(r["reason"] == "SYMBOL_QUARANTINED" for r in why["topReasons"])
    # ETHUSDT kept being evaluated (its entries are not blocked by a BTCUSDT quarantine)
    assert next(s for s in why["symbols"] if s["symbol"] == "ETHUSDT")["lastReason"] != "SYMBOL_QUARANTINED"
    wait_for(lambda: (k.get("symbolquarantines", "btc-halt").get("status") or {}).get("active") is True, 10,
             message="quarantine status.active")
    assert k.get("symbolquarantines", "btc-halt")["status"]["affectedStrategies"] == 1
    assert wait_for(lambda: k.events("QuarantineActive"), 10, message="QuarantineActive Event")
    # a short quarantine expires: marked inactive with an Event, and the worker lifts it
    k.kube.kubectl("delete", "-n", namespace, "symbolquarantine", "btc-halt")
    k.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "SymbolQuarantine", "metadata": {"name": "eth-blip"},
             "spec": {"symbol": "ETHUSDT", "reason": "short", "ttlSeconds": 3}})
    wait_for(lambda: (k.get("symbolquarantines", "eth-blip").get("status") or {}).get("active") is False, 15,
             message="the quarantine to expire")
    assert wait_for(lambda: k.events("QuarantineExpired"), 10, message="QuarantineExpired Event")
    wait_for(lambda: k.worker_get("quar-worker", "/why")["riskState"] == "NORMAL", 10, message="riskState back to NORMAL")


def test_tightening_the_risk_policy_soft_brakes_then_hard_stops(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    k.apply(strategy("risk", ["BTCUSDT", "ETHUSDT"], speed=6000))
    wait_for(lambda: (k.cond("risk", "Ready") or {}).get("status") == "True", 120, message="Ready")
    wait_for(lambda: D((k.strategy("risk").get("status") or {}).get("drawdownPercent", "0")) > 0, 120,
             message="some drawdown after the first trades")
    # soft limit at 0 %: any drawdown brakes
    k.patch("riskpolicies", "default", {"spec": {"softMaxDrawdownPercent": 0}})
    wait_for(lambda: k.strategy("risk")["status"].get("riskState") == "SOFT_BRAKE", 10, message="SOFT_BRAKE")
    wait_for(lambda: any("SOFT_BRAKE" in (e.message or "") for e in k.events("RiskStateChanged")), 10,
             message="a RiskStateChanged Event for SOFT_BRAKE")
    wait_for(lambda: (k.cond("risk", "RiskLimited") or {}).get("reason") == "SoftBrake", 10, message="RiskLimited=SoftBrake")
    # hard limit below the current drawdown (the CRD's minimum is 0.1 %): cancel, flatten, stop
    wait_for(lambda: D((k.strategy("risk").get("status") or {}).get("drawdownPercent", "0")) > D("0.25"), 120,
             message="a drawdown above 0.25 % (room for a hard limit >= 0.1 % below it)")
    dd = D(k.strategy("risk")["status"]["drawdownPercent"])
    k.patch("riskpolicies", "default", {"spec": {"hardMaxDrawdownPercent": float(max(dd / 2, D("0.1")))}})
    wait_for(lambda: k.strategy("risk")["status"].get("riskState") == "HARD_STOP", 15, message="HARD_STOP")
    wait_for(lambda: k.strategy("risk")["status"].get("openPositions") == 0, 15, message="positions flattened")
    wait_for(lambda: any("HARD_STOP" in (e.message or "") for e in k.events("RiskStateChanged")), 10,
             message="a RiskStateChanged Event for HARD_STOP")
    wait_for(lambda: k.strategy("risk")["status"].get("phase") == "Stopped", 10, message="phase Stopped")
    orders = k.strategy("risk")["status"]["orders"]
    time.sleep(4)
    assert k.strategy("risk")["status"]["orders"] == orders, "no order may be sent in HARD_STOP"
    assert k.worker_get("risk-worker", "/why")["tradingActive"] is False


def test_pause_stops_trading_and_unpause_resumes(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    k.apply(strategy("pz", ["ETHUSDT"], speed=6000))
    wait_for(lambda: (k.cond("pz", "Trading") or {}).get("status") == "True", 120, message="Trading=True")
    k.patch("tradingstrategies", "pz", {"spec": {"paused": True}})
    wait_for(lambda: (k.cond("pz", "Trading") or {}).get("reason") == "Paused", 10, message="Trading=False/Paused")
    wait_for(lambda: k.worker_get("pz-worker", "/why")["paused"] is True, 5, message="the worker to see the pause")
    entries = k.worker_get("pz-worker", "/why")["symbols"][0]["entryOrders"]
    time.sleep(5)
    why = k.worker_get("pz-worker", "/why")
    assert why["symbols"][0]["entryOrders"] == entries and why["tradingActive"] is False
    assert k.strategy("pz")["status"]["phase"] == "Paused"
    assert k.pod("pz-worker").status.container_statuses[0].restart_count == 0, "pausing must not restart the worker"
    k.patch("tradingstrategies", "pz", {"spec": {"paused": False}})
    wait_for(lambda: (k.cond("pz", "Trading") or {}).get("status") == "True", 15, message="Trading=True again")


def test_missing_policy_is_a_condition_and_resolves_when_created(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(strategy("orphan", ["BTCUSDT"], riskPolicyRef={"name": "not-yet"}))
    c = wait_for(lambda: k.cond("orphan", "Ready"), 30, message="a Ready condition")
    wait_for(lambda: (k.cond("orphan", "Ready") or {}).get("reason") == "RiskPolicyNotFound", 30,
             message="Ready=False/RiskPolicyNotFound")
    assert "not-yet" in k.cond("orphan", "Ready")["message"]
    assert c["status"] == "False"
    k.apply(policy("not-yet"))
    wait_for(lambda: (k.cond("orphan", "Ready") or {}).get("status") == "True", 90, message="Ready=True once the policy exists")


def test_live_without_the_operator_gate_gets_no_pod(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    k.apply(strategy("golive", ["BTCUSDT"], mode="live", liveConfirmation="I_UNDERSTAND_LIVE_TRADING",
                     credentialsSecretRef={"name": "bybit-keys"}, marketData={"source": "live"}))
    wait_for(lambda: (k.cond("golive", "Ready") or {}).get("reason") == "LiveTradingDisabled", 30,
             message="Ready=False/LiveTradingDisabled")
    time.sleep(2)
    assert k.pod("golive-worker") is None
    assert k.strategy("golive")["status"]["phase"] == "Failed"


def test_a_dead_worker_is_replaced_and_deleting_the_strategy_removes_its_pod(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    k.apply(strategy("gone", ["BTCUSDT"], speed=600))
    wait_for(lambda: (k.cond("gone", "Ready") or {}).get("status") == "True", 120, message="Ready")
    uid = k.pod("gone-worker").metadata.uid
    kube.kubectl("delete", "pod", "-n", namespace, "gone-worker", "--wait=false")
    wait_for(lambda: (lambda p: p is not None and p.metadata.uid != uid)(k.pod("gone-worker")), 60,
             message="a replacement worker pod")
    wait_for(lambda: (k.cond("gone", "Ready") or {}).get("status") == "True", 120, message="Ready again")
    pods = k.core.list_namespaced_pod(namespace, label_selector="hean.io/strategy=gone").items
    assert len([p for p in pods if not p.metadata.deletion_timestamp]) == 1
    kube.kubectl("delete", "tradingstrategy", "-n", namespace, "gone")
    wait_for(lambda: k.pod("gone-worker") is None, 60, message="the garbage collector to delete the worker pod")
    wait_for(lambda: not k.core.list_namespaced_service_account(namespace, field_selector="metadata.name=gone-worker").items,
             60, message="the worker ServiceAccount to be collected")


# ---- strategies (hean.worker.strategies): typed params through the operator, live edits ----
def test_invalid_params_block_is_ready_false_with_an_event_then_fixed(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    # passes the schema (bounds), breaks a cross-field rule only the model knows
    k.apply(strategy("badgrid", ["SOLUSDT"], strategy="grid",
                     params={"grid": {"lowerPrice": 200, "upperPrice": 100}}))
    wait_for(lambda: (k.cond("badgrid", "Ready") or {}).get("reason") == "InvalidParams", 30,
             message="Ready=False/InvalidParams")
    ready = k.cond("badgrid", "Ready")
    assert ready["status"] == "False"
    assert "spec.params.grid.lowerPrice (200.0) must be less than spec.params.grid.upperPrice (100.0)" in ready["message"]
    ev = wait_for(lambda: [e for e in k.events("InvalidParams") if e.involved_object.name == "badgrid"], 15,
                  message="an InvalidParams Event")
    assert "spec.params.grid.lowerPrice" in ev[0].message
    time.sleep(2)
    assert k.pod("badgrid-worker") is None
    k.patch("tradingstrategies", "badgrid", {"spec": {"params": {"grid": {"lowerPrice": 100, "upperPrice": 200}}}})
    wait_for(lambda: (k.cond("badgrid", "Ready") or {}).get("status") == "True", 120, message="Ready=True once fixed")


def test_scanner_picks_in_status_and_live_param_updates(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]
    k.apply(strategy("scan", syms, speed=20000, strategy="momentum",
                     params={"momentum": {"lookbackBars": 30, "trendEmaPeriod": 60}},
                     scanner={"universe": syms, "topN": 2, "lookbackBars": 60, "rerankBars": 60}))
    wait_for(lambda: len(((k.strategy("scan").get("status") or {}).get("scanner") or {}).get("picks") or []) == 2,
             120, message="status.scanner.picks")
    sc = k.strategy("scan")["status"]["scanner"]
    assert set(sc["picks"]) <= set(syms) and sc["rankedAt"].endswith("Z") and len(sc["ranking"]) == 4
    pod_uid = k.pod("scan-worker").metadata.uid
    gen = k.patch("tradingstrategies", "scan", {"spec": {"scanner": {"topN": 1},
                                                          "params": {"momentum": {"entryThresholdBps": 40}}}})
    new_gen = gen["metadata"]["generation"]
    wait_for(lambda: k.strategy("scan")["status"].get("workerObservedGeneration") == new_gen, 30,
             message="the worker to run the new generation")
    wait_for(lambda: len(k.strategy("scan")["status"]["scanner"]["picks"]) == 1, 30, message="one pick")
    why = k.worker_get("scan-worker", "/why")
    assert k.pod("scan-worker").metadata.uid == pod_uid, "a parameter edit must not replace the worker"
    assert k.pod("scan-worker").status.container_statuses[0].restart_count == 0
    assert why is not None
