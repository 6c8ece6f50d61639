"""Control-plane benchmark: time to Ready for N strategies, quarantine latency,
parameter-update latency and the idle status write rate.

Starts the local control plane and node agent (hean.testing), installs the chart with
helm, applies one RiskPolicy and N TradingStrategies (BTCUSDT + ETHUSDT, replay at
speed 1 so the workers idle between candles), and measures:

* ``ready``: seconds from the first ``kubectl apply`` until every strategy reports
  ``Ready=True`` (benchmark 5 of issue 8 at this N);
* ``quarantine``: for each trial, from just before ``kubectl apply`` of a
  SymbolQuarantine on BTCUSDT (client wall clock) until each worker applied it (the
  worker's own wall-clock record, ``/why`` ``quarantineChangedAt``; the same clock,
  since everything runs on one machine), per worker and for the whole fleet (the
  slowest worker). ``creationTimestamp`` has one-second resolution, too coarse for
  this, so the client's apply time is used instead. Then the quarantine is deleted
  and the lift measured the same way. ``--gap`` seconds (default 3) separate each
  apply and delete from the next, so that a trial is not measured against the
  previous one's follow-up writes (each worker's status patch and Event for its
  risk-state change, spread over one status interval).
* ``param_update``: from just before ``kubectl patch`` of ``spec.params`` until the
  worker runs on the new generation (its own record).
* ``status_writes_per_strategy_per_second``: idle write rate to the API server.

Prints a JSON summary with p50/p95/p99 (nearest-rank) and writes it to ``--out``.

    .venv/bin/python benchmarks/control_plane/bench_quarantine.py --strategies 50 --trials 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

from hean.deploy import default_marketdata_dir, install, repo_root


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of ``values`` (seconds)."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def summary(values: list[float]) -> dict:
    """p50/p95/p99/max/n of ``values`` in milliseconds."""
    return {"n": len(values), "p50_ms": round(pct(values, 50) * 1000, 1), "p95_ms": round(pct(values, 95) * 1000, 1),
            "p99_ms": round(pct(values, 99) * 1000, 1), "max_ms": round(max(values) * 1000, 1)}


def manifests(n: int, ns: str) -> str:
    docs = [{"apiVersion": "hean.io/v1alpha1", "kind": "RiskPolicy", "metadata": {"name": "bench", "namespace": ns},
             "spec": {"softMaxDrawdownPercent": 50, "hardMaxDrawdownPercent": 90, "maxDailyLossUsdt": 1e6,
                      "maxLeverage": 3, "maxPositionNotionalUsdt": 20000, "maxOpenPositions": 4,
                      "maxOrdersPerMinute": 600}}]
    for i in range(n):
        docs.append({"apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
                     "metadata": {"name": f"s{i:04d}", "namespace": ns, "labels": {"hean.io/bench": "q"}},
                     "spec": {"strategy": "impulse", "symbols": ["BTCUSDT", "ETHUSDT"], "capital": 10000,
                              "riskPolicyRef": {"name": "bench"},
                              "marketData": {"source": "replay", "replay": {"interval": "1", "speed": 1}}}})
    return yaml.safe_dump_all(docs)


def ready_count(kubectl, ns: str) -> int:
    out = json.loads(kubectl("get", "tradingstrategies", "-n", ns, "-o", "json").stdout)
    return sum(1 for s in out["items"] for c in (s.get("status") or {}).get("conditions") or []
               if c["type"] == "Ready" and c["status"] == "True")


def pod_ips(kubectl, ns: str) -> list[str]:
    out = json.loads(kubectl("get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=hean-worker", "-o", "json").stdout)
    return [p["status"]["podIP"] for p in out["items"] if p["status"].get("podIP")]


async def wait_all(ips: list[str], want: bool, t0: float, poll: float, timeout: float) -> list[float]:
    """Per-worker seconds from ``t0`` (unix time just before ``kubectl apply``) until the
    worker applied the change, as the worker itself recorded it (``/why``
    ``quarantineChangedAt``, unix time; same machine clock). Polling only collects
    the figure, so the poll interval does not add to it."""
    done: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=2) as client:
        async def one(ip: str):
            while time.time() - t0 < timeout:
                try:
                    r = await client.get(f"http://{ip}:8080/why")
                    why = r.json()
                    sym = next(s for s in why["symbols"] if s["symbol"] == "BTCUSDT")
                    if sym["quarantined"] is want and (why.get("quarantineChangedAt") or 0) >= t0:
                        done[ip] = why["quarantineChangedAt"] - t0
                        return
                except Exception:  # noqa: BLE001 - keep polling
                    pass
                await asyncio.sleep(poll)
        await asyncio.gather(*(one(ip) for ip in ips))
    if len(done) != len(ips):
        raise TimeoutError(f"{len(ips) - len(done)} workers never saw quarantined={want}")
    return list(done.values())


def param_update_trials(cp, ns: str, trials: int, poll: float) -> list[float]:
    """Seconds from just before ``kubectl patch`` of ``spec.params.cooldownBars`` until
    the strategy's worker runs on that generation (its own record, ``/why``
    ``specAppliedGeneration``/``specAppliedAt``). Rotates over the strategies."""
    names = [s["metadata"]["name"] for s in json.loads(cp.kubectl("get", "tradingstrategies", "-n", ns,
                                                                  "-o", "json").stdout)["items"]]
    out = []
    for trial in range(trials):
        name = names[trial % len(names)]
        ip = json.loads(cp.kubectl("get", "pod", f"{name}-worker", "-n", ns, "-o", "json").stdout)["status"]["podIP"]
        t0 = time.time()
        obj = json.loads(cp.kubectl("patch", "tradingstrategy", name, "-n", ns, "--type", "merge", "-o", "json",
                                    "-p", json.dumps({"spec": {"params": {"cooldownBars": 31 + trial}}})).stdout)
        gen = obj["metadata"]["generation"]
        deadline = time.time() + 30
        while True:
            why = httpx.get(f"http://{ip}:8080/why", timeout=2).json()
            if (why.get("specAppliedGeneration") or 0) >= gen:
                out.append(why["specAppliedAt"] - t0)
                break
            if time.time() > deadline:
                raise TimeoutError(f"{name} never applied generation {gen}")
            time.sleep(poll)
    return out


def status_write_rate(ips: list[str], window: float) -> dict:
    """Status writes per second per strategy over ``window`` seconds of idling, from
    each worker's ``hean_worker_status_patches_total``."""
    from prometheus_client.parser import text_string_to_metric_families

    def counts() -> dict[str, float]:
        out = {}
        for ip in ips:
            text = httpx.get(f"http://{ip}:8080/metrics", timeout=5).text
            out[ip] = next(smp.value for f in text_string_to_metric_families(text) for smp in f.samples
                           if smp.name == "hean_worker_status_patches_total")
        return out

    a = counts()
    time.sleep(window)
    b = counts()
    rates = sorted((b[ip] - a[ip]) / window for ip in ips)
    return {"window_s": window, "p50": round(rates[len(rates) // 2], 3), "max": round(rates[-1], 3),
            "fleet_total": round(sum(rates), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", type=int, default=50)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--poll", type=float, default=0.1, help="worker poll interval, seconds (collection only)")
    ap.add_argument("--gap", type=float, default=3.0,
                    help="seconds to wait after each apply/delete before the next one, so that a trial is not "
                         "measured against the previous one's follow-up writes (status, Events: <= 1 status "
                         "interval after it); 0 = back to back")
    ap.add_argument("--rate-window", type=float, default=60.0, help="seconds to count idle status writes")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/control_plane/results-quarantine.json"))
    args = ap.parse_args()

    from hean.testing.controlplane import ControlPlane
    from hean.testing.nodeagent import NodeAgent

    root = repo_root()
    ns = "bench"
    result: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "strategies": args.strategies}
    with ControlPlane() as cp, NodeAgent(cp.kubeconfig, workdir=cp.workdir / "agent") as _agent:
        install(cp.helm, default_marketdata_dir(root))
        cp.kubectl("create", "namespace", ns)
        while subprocess.run([str(cp.bin_dir / "kubectl"), "--kubeconfig", str(cp.kubeconfig), "get", "sa",
                              "default", "-n", ns], capture_output=True).returncode != 0:
            time.sleep(0.2)
        t0 = time.perf_counter()
        cp.kubectl("apply", "-f", "-", input=manifests(args.strategies, ns), timeout=300)
        while ready_count(cp.kubectl, ns) < args.strategies:
            if time.perf_counter() - t0 > 900:
                raise TimeoutError("strategies did not all become Ready in 900 s")
            time.sleep(0.5)
        result["ready_seconds"] = round(time.perf_counter() - t0, 2)
        print(f"{args.strategies} strategies Ready in {result['ready_seconds']} s", flush=True)
        ips = pod_ips(cp.kubectl, ns)
        fleet, per_worker, lift = [], [], []
        q = yaml.safe_dump({"apiVersion": "hean.io/v1alpha1", "kind": "SymbolQuarantine",
                            "metadata": {"name": "bench-q", "namespace": ns},
                            "spec": {"symbol": "BTCUSDT", "reason": "benchmark", "ttlSeconds": 3600}})
        for trial in range(args.trials):
            t0 = time.time()
            cp.kubectl("apply", "-f", "-", input=q)
            lat = asyncio.run(wait_all(ips, True, t0, args.poll, 30))
            per_worker += lat
            fleet.append(max(lat))
            time.sleep(args.gap)
            t0 = time.time()
            cp.kubectl("delete", "symbolquarantine", "bench-q", "-n", ns, "--wait=false")
            lift.append(max(asyncio.run(wait_all(ips, False, t0, args.poll, 30))))
            time.sleep(args.gap)
            print(f"trial {trial + 1}: all {len(ips)} workers blocked after {fleet[-1] * 1000:.0f} ms", flush=True)
        result["quarantine_all_workers"] = summary(fleet)
        result["quarantine_per_worker"] = summary(per_worker)
        result["quarantine_lift_all_workers"] = summary(lift)
        result["param_update"] = summary(param_update_trials(cp, ns, args.trials, args.poll))
        result["status_writes_per_strategy_per_second"] = status_write_rate(ips, args.rate_window)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
