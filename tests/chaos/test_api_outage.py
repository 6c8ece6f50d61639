"""Chaos scenario 4 (issue 7): stop kube-apiserver (etcd and the controller manager
keep running) while workers paper-trade; every worker goes defensive within the
configured ``HEAN_API_UNREACHABLE_SECONDS`` (no new entries; exits still act),
says so in ``/why`` and ``hean_worker_api_reachable``, and resumes once the API
answers again; no worker restarts, statuses converge afterwards.

Default suite: threshold 6 s, one 12 s outage. The full run (docs/reliability.md):

    HEAN_CHAOS_API_THRESHOLD=30 HEAN_CHAOS_API_OUTAGE=60 HEAN_CHAOS_API_RUNS=5 \\
        .venv/bin/python -m pytest -s tests/chaos/test_api_outage.py

Figures are printed (``-s``) and written to ``$HEAN_CHAOS_REPORT_DIR/api_outage.json``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from pathlib import Path

import httpx
import pytest

from hean.testing import wait_for
from hean.testing.operatorproc import OperatorProcess

THRESHOLD = float(os.environ.get("HEAN_CHAOS_API_THRESHOLD", "6"))
OUTAGE = float(os.environ.get("HEAN_CHAOS_API_OUTAGE", "12"))
RUNS = int(os.environ.get("HEAN_CHAOS_API_RUNS", "1"))
SEED = int(os.environ.get("HEAN_CHAOS_SEED", "4"))
GROUP, VERSION = "hean.io", "v1alpha1"
STRATEGIES = {"outage-btc": ["BTCUSDT"], "outage-eth": ["ETHUSDT", "SOLUSDT"]}
EXITS = {"STOP_LOSS", "TAKE_PROFIT", "TREND_FLIP"}
# Long opt-in runs need more than the suite's default 600 s timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600 + RUNS * (THRESHOLD + OUTAGE + 90))]
HTTP = httpx.Client(timeout=2)  # one client: no TLS context per request


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))]


def manifests(ns: str) -> list[dict]:
    out = [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": "pol", "namespace": ns},
            "spec": {"maxDailyLossUsdt": 5000, "maxPositionNotionalUsdt": 20000, "maxOrdersPerMinute": 600,
                     "hardMaxDrawdownPercent": 50, "softMaxDrawdownPercent": 40}}]
    for name, symbols in STRATEGIES.items():
        out.append({"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"strategy": "impulse", "symbols": symbols, "capital": 10000,
                             "riskPolicyRef": {"name": "pol"},
                             "params": {"cooldownBars": 5, "impulseThreshold": 1.5},
                             "marketData": {"source": "replay",
                                            "replay": {"interval": "1", "speed": 3000, "loop": True}}}})
    return out


def test_workers_go_defensive_during_an_api_outage_and_recover(hean_chaos_cluster, marketdata_dir, tmp_path):
    from kubernetes import client, config

    c = hean_chaos_cluster
    cp = c.cp
    ns = "chaos-outage"
    c.kubectl("create", "namespace", ns)
    wait_for(lambda: c.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 60,
             message="default ServiceAccount")
    md = str(Path(marketdata_dir).resolve())
    op = OperatorProcess(cp.kubeconfig, cp.workdir / "logs" / "operator-outage.log", env={
        "HEAN_MARKETDATA_HOST_PATH": md, "HEAN_MARKETDATA_MOUNT_PATH": md, "HEAN_WATCH_NAMESPACES": ns,
        "HEAN_WORKER_API_UNREACHABLE_SECONDS": str(THRESHOLD)}).start()
    api = config.new_client_from_config(str(cp.kubeconfig))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    try:
        c.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests(ns)}))

        def ready(name: str) -> bool:
            s = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "tradingstrategies", name)
            return any(x["type"] == "Ready" and x["status"] == "True" for x in s.get("status", {}).get("conditions", []))

        for name in STRATEGIES:
            wait_for(lambda: ready(name), 180, message=f"{name} Ready=True")
        pods = {name: core.read_namespaced_pod(f"{name}-worker", ns) for name in STRATEGIES}
        urls = {name: f"http://{p.status.pod_ip}:8080" for name, p in pods.items()}
        env = {e.name: e.value for e in pods["outage-btc"].spec.containers[0].env}
        assert env["HEAN_API_UNREACHABLE_SECONDS"] == str(THRESHOLD)  # the operator passed it through

        def why(name: str) -> dict:
            return HTTP.get(urls[name] + "/why", timeout=2).json()

        def reachable_gauge(name: str) -> float:
            for line in HTTP.get(urls[name] + "/metrics", timeout=2).text.splitlines():
                if line.startswith("hean_worker_api_reachable{"):
                    return float(line.rsplit(" ", 1)[1])
            raise AssertionError("hean_worker_api_reachable missing")

        def entries(name: str) -> int:
            return sum(s["entryOrders"] for s in why(name)["symbols"])

        rng = random.Random(SEED)
        runs = []
        for run in range(RUNS):
            for name in STRATEGIES:
                wait_for(lambda: (lambda w: w["apiReachable"] and w["tradingActive"])(why(name)), 60,
                         message=f"{name} trading before outage {run}")
            time.sleep(rng.uniform(0, 2))  # random phase against the heartbeat
            sig = signal.SIGKILL if run % 2 else signal.SIGTERM
            # The outage starts when the signal is sent: a SIGTERMed apiserver stops
            # serving at once and drains (SIGKILL after 5 s); SIGKILL is a crash.
            t0 = time.monotonic()
            cp.stop_apiserver(sig, timeout=5)
            stop_seconds = time.monotonic() - t0
            defensive_at: dict[str, float] = {}
            entries_at: dict[str, int] = {}
            fills_at: dict[str, int] = {}
            while len(defensive_at) < len(STRATEGIES):
                now = time.monotonic()
                assert now - t0 < THRESHOLD + 10, f"not defensive after {now - t0:.1f}s: {defensive_at}"
                for name in STRATEGIES:
                    if name not in defensive_at and not why(name)["apiReachable"]:
                        defensive_at[name] = time.monotonic() - t0
                        entries_at[name] = entries(name)
                        fills_at[name] = len(HTTP.get(urls[name] + "/ledger", timeout=2).json()["fills"])
                time.sleep(0.1)
            for name in STRATEGIES:
                w = why(name)
                assert w["tradingActive"] is False and reachable_gauge(name) == 0.0, w
                assert w["apiUnreachableSeconds"] == THRESHOLD
            # Keep the API down for OUTAGE seconds: the workers stay defensive.
            while time.monotonic() - t0 < OUTAGE:
                for name in STRATEGIES:
                    w = why(name)
                    assert not w["apiReachable"] and not w["tradingActive"], w
                time.sleep(0.5)
            codes = {name: [s["lastReason"] for s in why(name)["symbols"]] for name in STRATEGIES}
            exits_during = {}
            for name in STRATEGIES:
                assert entries(name) == entries_at[name], f"{name} opened a position while defensive"
                fills = HTTP.get(urls[name] + "/ledger", timeout=2).json()["fills"][fills_at[name]:]
                assert not [f for f in fills if f["reason"] == "IMPULSE_ENTRY"], fills
                exits_during[name] = len([f for f in fills if f["reason"] in EXITS])
            assert any("API_UNREACHABLE" in r for r in codes.values()), codes
            start_ready = cp.start_apiserver()  # blocks until /readyz is 200
            t1 = time.monotonic()
            recovered_at: dict[str, float] = {}
            while len(recovered_at) < len(STRATEGIES):
                assert time.monotonic() - t1 < 60, f"not recovered: {recovered_at}"
                for name in STRATEGIES:
                    if name not in recovered_at:
                        w = why(name)
                        if w["apiReachable"] and w["tradingActive"]:
                            recovered_at[name] = time.monotonic() - t1
                time.sleep(0.1)
            runs.append({"run": run, "signal": signal.Signals(sig).name, "outage_seconds": round(t1 - t0, 1),
                         "apiserver_stop_seconds": round(stop_seconds, 1),
                         "apiserver_restart_seconds": round(start_ready, 1),
                         "time_to_defensive": {k: round(v, 2) for k, v in defensive_at.items()},
                         "time_to_recover": {k: round(v, 2) for k, v in recovered_at.items()},
                         "exits_while_defensive": exits_during})

        # Afterwards: nothing restarted, statuses converge (fresh heartbeat, Ready).
        for name in STRATEGIES:
            p = core.read_namespaced_pod(f"{name}-worker", ns)
            assert p.metadata.uid == pods[name].metadata.uid
            assert sum(cs.restart_count for cs in p.status.container_statuses) == 0
            wait_for(lambda: ready(name), 60, message=lambda: f"{name} Ready after the outages: " + json.dumps(
                custom.get_namespaced_custom_object(GROUP, VERSION, ns, "tradingstrategies", name)
                .get("status", {}).get("conditions"))[:800])

            def converged() -> bool:
                st = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "tradingstrategies", name)["status"]
                trading = [x for x in st.get("conditions", []) if x["type"] == "Trading"]
                return st.get("tradingActive") is True and trading and trading[0]["status"] == "True"

            wait_for(converged, 60, message=f"{name}: status.tradingActive and Trading=True after the outages")
            s = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "tradingstrategies", name)
            assert s["status"]["observedGeneration"] == s["metadata"]["generation"]
        assert op.running and op.live() and op.starts == 1
    finally:
        if not cp.apiserver_running:
            cp.start_apiserver()
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        op.stop()
        api.close()

    defensive = [v for r in runs for v in r["time_to_defensive"].values()]
    recover = [v for r in runs for v in r["time_to_recover"].values()]
    report = {"threshold_seconds": THRESHOLD, "outage_seconds": OUTAGE, "runs": RUNS,
              "faults": RUNS, "worker_observations": len(defensive), "violations": 0,
              "time_to_defensive_p50": round(statistics.median(defensive), 2),
              "time_to_defensive_p99": round(pct(defensive, 99), 2), "time_to_defensive_max": round(max(defensive), 2),
              "time_to_recover_p50": round(statistics.median(recover), 2),
              "time_to_recover_p99": round(pct(recover, 99), 2), "time_to_recover_max": round(max(recover), 2),
              "per_run": runs}
    print("\nAPI outage:", json.dumps(report, indent=1))
    if os.environ.get("HEAN_CHAOS_REPORT_DIR"):
        Path(os.environ["HEAN_CHAOS_REPORT_DIR"], "api_outage.json").write_text(json.dumps(report, indent=1) + "\n")
    # Defensive within the threshold (+ the 0.25 s check period and polling), never
    # before threshold minus one heartbeat period (the last contact predates the stop).
    assert max(defensive) <= THRESHOLD + 2.0, report
    assert min(defensive) >= THRESHOLD - min(10.0, THRESHOLD / 3) - 1.5, report
    assert max(recover) <= 15.0, report
