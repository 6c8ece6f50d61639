"""Chaos scenario 3 (issue 7): restart the operator repeatedly (SIGKILL = crash,
SIGTERM = graceful) while TradingStrategies are created, updated (live parameters
and structural fields), deleted and deleted-and-recreated under the same name at
random; after each run, with the operator back, assert within a deadline: exactly
one worker pod per strategy (``<name>-worker``, controller owner reference to the
strategy's current uid, spec-hash of its current structural spec), no orphaned or
extra worker pods, and converged status (``observedGeneration`` = generation,
``Ready=True``, ``workerPod``). The operator never exits on its own.

Default suite: 1 run of 6 operations and 2 operator restarts (SIGKILL, SIGTERM). The full run
(docs/reliability.md):

    HEAN_CHAOS_OPERATOR_RUNS=20 HEAN_CHAOS_OPERATOR_OPS=12 \\
        .venv/bin/python -m pytest -s tests/chaos/test_operator_restarts.py

Figures are printed (``-s``) and written to
``$HEAN_CHAOS_REPORT_DIR/operator_restarts.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import statistics
import time
from pathlib import Path

import pytest

from hean.testing import wait_for
from hean.testing.operatorproc import OperatorProcess

RUNS = int(os.environ.get("HEAN_CHAOS_OPERATOR_RUNS", "1"))
OPS = int(os.environ.get("HEAN_CHAOS_OPERATOR_OPS", "6"))
KILLS = int(os.environ.get("HEAN_CHAOS_OPERATOR_KILLS", "2"))
SEED = int(os.environ.get("HEAN_CHAOS_SEED", "3"))
CONVERGE_SECONDS = float(os.environ.get("HEAN_CHAOS_CONVERGE_SECONDS", "180"))
GROUP, VERSION = "hean.io", "v1alpha1"
# Long opt-in runs need more than the suite's default 600 s timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600 + RUNS * (CONVERGE_SECONDS + 60))]
NAMES = ("r0", "r1", "r2")
SYMBOLS = (["BTCUSDT"], ["ETHUSDT"], ["BTCUSDT", "ETHUSDT"])
# docs/design.md: the spec fields whose change needs a new worker pod (recomputed
# here independently of hean.operator.reconcile).
STRUCTURAL = ("strategy", "symbols", "category", "mode", "capital", "maxLeverage", "marketData",
              "credentialsSecretRef")


def spec_hash(spec: dict) -> str:
    material = json.dumps({k: spec.get(k) for k in STRUCTURAL}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))]


class Driver:
    """Random create/update/delete/recreate of TradingStrategies (admin client)."""

    def __init__(self, custom, ns: str, rng: random.Random):
        self.custom, self.ns, self.rng = custom, ns, rng
        self.counts: dict[str, int] = {}

    def _exists(self, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "tradingstrategies", name)
            return not obj["metadata"].get("deletionTimestamp")
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def _create(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy", "metadata": {"name": name},
                "spec": {"strategy": "impulse", "symbols": self.rng.choice(SYMBOLS), "capital": 10000,
                         "riskPolicyRef": {"name": "pol"}, "params": {"cooldownBars": self.rng.randint(0, 50)},
                         "marketData": {"source": "replay", "replay": {"interval": "1", "speed": 600}}}}
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "tradingstrategies", body)
        except ApiException as e:
            if e.status != 409:  # still being deleted: counts as a no-op
                raise

    def _patch(self, name: str, spec: dict) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, "tradingstrategies", name,
                                                   {"spec": spec})

    def _delete(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "tradingstrategies", name)
        except ApiException as e:
            if e.status != 404:
                raise

    def step(self) -> str:
        """One random operation; returns its kind."""
        name = self.rng.choice(NAMES)
        if not self._exists(name):
            op = "create"
            self._create(name)
        else:
            op = self.rng.choice(("params", "paused", "structural", "structural", "delete", "recreate"))
            if op == "params":
                self._patch(name, {"params": {"cooldownBars": self.rng.randint(0, 50),
                                              "impulseThreshold": self.rng.choice((2.0, 3.0, 4.0))}})
            elif op == "paused":
                self._patch(name, {"paused": self.rng.random() < 0.5})
            elif op == "structural":
                self._patch(name, {"symbols": self.rng.choice(SYMBOLS), "capital": self.rng.choice((5000, 10000))})
            elif op == "delete":
                self._delete(name)
            else:
                self._delete(name)
                wait_for(lambda: not self._exists(name) and self._gone(name), 30, interval=0.1,
                         message=f"{name} deleted")
                self._create(name)
        self.counts[op] = self.counts.get(op, 0) + 1
        return op

    def _gone(self, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "tradingstrategies", name)
            return False
        except ApiException as e:
            return e.status == 404


def violations(custom, core, ns: str) -> list[str]:
    """What is wrong now (empty = converged)."""
    out = []
    strategies = {s["metadata"]["name"]: s for s in
                  custom.list_namespaced_custom_object(GROUP, VERSION, ns, "tradingstrategies")["items"]}
    pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/managed-by=hean-operator").items
    by_strategy: dict[str, list] = {}
    for p in pods:
        by_strategy.setdefault((p.metadata.labels or {}).get("hean.io/strategy", ""), []).append(p)
    for name, s in strategies.items():
        if s["metadata"].get("deletionTimestamp"):
            continue
        mine = by_strategy.pop(name, [])
        if len(mine) != 1:
            out.append(f"{name}: {len(mine)} worker pods {[p.metadata.name for p in mine]}")
            continue
        p = mine[0]
        owners = [o for o in p.metadata.owner_references or [] if o.controller]
        if p.metadata.name != f"{name}-worker":
            out.append(f"{name}: pod named {p.metadata.name}")
        if p.metadata.deletion_timestamp:
            out.append(f"{name}: its only pod is terminating")
        if not owners or owners[0].uid != s["metadata"]["uid"]:
            out.append(f"{name}: pod owned by {[o.uid for o in owners]}, strategy uid {s['metadata']['uid']}")
        if (p.metadata.annotations or {}).get("hean.io/spec-hash") != spec_hash(s["spec"]):
            out.append(f"{name}: pod spec-hash {(p.metadata.annotations or {}).get('hean.io/spec-hash')} "
                       f"!= {spec_hash(s['spec'])}")
        st = s.get("status") or {}
        if st.get("observedGeneration") != s["metadata"]["generation"]:
            out.append(f"{name}: observedGeneration {st.get('observedGeneration')} != {s['metadata']['generation']}")
        ready = [c for c in st.get("conditions") or [] if c["type"] == "Ready"]
        if not ready or ready[0]["status"] != "True":
            out.append(f"{name}: Ready {ready[0]['status'] + '/' + ready[0]['reason'] if ready else 'missing'}")
        if st.get("workerPod") != f"{name}-worker":
            out.append(f"{name}: status.workerPod {st.get('workerPod')}")
    for name, left in by_strategy.items():  # pods of no (live) strategy: orphans
        out.append(f"orphan pods of {name or '<no label>'}: {[p.metadata.name for p in left]}")
    return out


def test_operator_restarts_leave_no_orphaned_duplicated_or_missing_pods(hean_chaos_cluster, marketdata_dir):
    from kubernetes import client, config

    c = hean_chaos_cluster
    cp = c.cp
    ns = "chaos-restarts"
    c.kubectl("create", "namespace", ns)
    wait_for(lambda: c.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 60,
             message="default ServiceAccount")
    md = str(Path(marketdata_dir).resolve())
    op = OperatorProcess(cp.kubeconfig, cp.workdir / "logs" / "operator-restarts.log", env={
        "HEAN_MARKETDATA_HOST_PATH": md, "HEAN_MARKETDATA_MOUNT_PATH": md, "HEAN_WATCH_NAMESPACES": ns})
    api = config.new_client_from_config(str(cp.kubeconfig))
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    rng = random.Random(SEED)
    driver = Driver(custom, ns, rng)
    runs, failures = [], []
    kills = {"SIGKILL": 0, "SIGTERM": 0}
    try:
        c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": "pol"},
            "spec": {"maxDailyLossUsdt": 5000, "maxPositionNotionalUsdt": 20000}}))
        op.start()
        for run in range(RUNS):
            # Kill points: KILLS distinct operation indexes; alternate crash and graceful.
            kill_at = sorted(rng.sample(range(OPS), min(KILLS, OPS)))
            ops = []
            for i in range(OPS):
                if i in kill_at:
                    assert op.running, f"the operator exited on its own:\n{op.tail()}"
                    sig = signal.SIGKILL if (kill_at.index(i) + run) % 2 == 0 else signal.SIGTERM
                    code = op.kill(sig)
                    kills[signal.Signals(sig).name] += 1
                    # Operations while it is down (0-2), then a new incarnation.
                    for _ in range(rng.randint(0, 2)):
                        ops.append(driver.step() + "*")
                        time.sleep(rng.uniform(0, 0.3))
                    time.sleep(rng.uniform(0, 1.5))
                    op.start()
                    ops.append(f"restart({signal.Signals(sig).name}, exit {code})")
                ops.append(driver.step())
                time.sleep(rng.uniform(0, 0.8))
            assert op.running, f"the operator exited on its own:\n{op.tail()}"
            t0 = time.monotonic()
            last: list[str] = []

            def converged() -> bool:
                nonlocal last
                last = violations(custom, core, ns)
                return not last

            try:
                wait_for(converged, CONVERGE_SECONDS, interval=0.5, message="convergence")
                runs.append({"run": run, "ops": ops, "converge_seconds": round(time.monotonic() - t0, 1)})
            except Exception:  # noqa: BLE001 - recorded, reported at the end
                failures.append({"run": run, "ops": ops, "violations": last})
                runs.append({"run": run, "ops": ops, "converge_seconds": None})
            if os.environ.get("HEAN_CHAOS_REPORT_DIR"):  # progress of long runs
                Path(os.environ["HEAN_CHAOS_REPORT_DIR"], "operator_restarts.progress.json").write_text(
                    json.dumps({"runs": runs, "failures": failures, "kills": kills}, indent=1))
    finally:
        op.stop()
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        api.close()

    times = [r["converge_seconds"] for r in runs if r["converge_seconds"] is not None]
    report = {"runs": RUNS, "operations": sum(driver.counts.values()), "operations_by_kind": driver.counts,
              "operator_restarts": kills, "faults": sum(kills.values()), "violations": len(failures),
              "converge_seconds_p50": round(statistics.median(times), 1) if times else None,
              "converge_seconds_p99": round(pct(times, 99), 1) if times else None,
              "converge_seconds_max": max(times) if times else None, "failures": failures}
    print("\nOperator restarts:", json.dumps({k: v for k, v in report.items() if k != "failures"}, indent=1))
    if os.environ.get("HEAN_CHAOS_REPORT_DIR"):
        Path(os.environ["HEAN_CHAOS_REPORT_DIR"], "operator_restarts.json").write_text(
            json.dumps({**report, "per_run": runs}, indent=1) + "\n")
    assert not failures, json.dumps(failures, indent=1)[:4000]
