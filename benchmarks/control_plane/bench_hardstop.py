"""Control-plane benchmark: hard-stop latency (issue 8, benchmark 2).

Starts the local control plane and node agent (``--zygote``: workers forked from a
pre-imported interpreter, docs/harness.md), installs the chart with helm, applies
one RiskPolicy and N TradingStrategies that trade all the time (BTCUSDT + ETHUSDT,
replay ``--speed`` 30 = one 1-minute candle per symbol every 2 s; a 2/3-bar EMA trend
filter, impulse threshold 0.1, stops and targets at 0.5 ATR, no cooldown, 10 % risk
per trade), so that at any moment many workers hold a **pending entry order** (a
paper market order waits for the next candle's open: up to 2 s here) and every
worker soon has a drawdown above 0.2 %.

Each trial waits until every worker's drawdown is at least 0.2 %, then (client wall
clock ``t0`` just before the command) ``kubectl patch``es the RiskPolicy to
``softMaxDrawdownPercent: 0.1, hardMaxDrawdownPercent: 0.15`` — a hard limit every
strategy breaches at once — and measures:

* ``worker``: per worker, ``t0`` -> the worker's own wall-clock record of entering
  HARD_STOP (``/why`` ``riskStateChangedAt``; in the same call the engine cancels
  its pending entry orders and queues reduce-only closes; one machine, one clock);
  ``fleet``: the slowest worker per trial;
* ``client_why``: ``t0`` -> the client sees, for every worker, ``riskState``
  HARD_STOP and no pending entry order (``/why``, polled every 50 ms);
* ``client_status``: ``t0`` -> every strategy's ``status.riskState`` is HARD_STOP in
  the API (the path a human or an alert rule sees; bounded by the status interval);
* the number of pending entry orders cancelled (``hardStopCancelledOrders``), and a
  check that no worker made a new entry in the 3 s after the stop.

Then it restores the policy, clears the latched stops (annotation
``hean.io/clear-hard-stop``) and waits for the next trial's precondition.

    .venv/bin/python benchmarks/control_plane/bench_hardstop.py --strategies 50 --trials 10 --zygote
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import Cluster, dist, freshness, load, steady, wait  # noqa: E402

from hean.deploy import default_marketdata_dir, install, repo_root  # noqa: E402

NORMAL = {"softMaxDrawdownPercent": 50, "hardMaxDrawdownPercent": 90}
BREACH = {"softMaxDrawdownPercent": 0.1, "hardMaxDrawdownPercent": 0.15}
PRECONDITION_DD = 0.2


def manifests(n: int, ns: str, speed: float) -> str:
    docs = [{"apiVersion": "hean.io/v1alpha1", "kind": "RiskPolicy", "metadata": {"name": "bench", "namespace": ns},
             "spec": {**NORMAL, "maxDailyLossUsdt": 1e6, "maxLeverage": 3, "maxPositionNotionalUsdt": 20000,
                      "maxOpenPositions": 4, "maxOrdersPerMinute": 6000}}]
    params = {"emaFastPeriod": 2, "emaSlowPeriod": 3, "volatilityWindow": 5, "impulseLookback": 1,
              "impulseThreshold": 0.1, "atrPeriod": 2, "stopLossAtr": 0.5, "takeProfitAtr": 0.5, "cooldownBars": 0,
              "riskPerTradeFraction": 0.1}
    for i in range(n):
        docs.append({"apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
                     "metadata": {"name": f"h{i:04d}", "namespace": ns},
                     "spec": {"strategy": "impulse", "symbols": ["BTCUSDT", "ETHUSDT"], "capital": 10000,
                              "maxLeverage": 3, "riskPolicyRef": {"name": "bench"}, "params": params,
                              "marketData": {"source": "replay", "replay": {"interval": "1", "speed": speed,
                                                                             "loop": True}}}})
    return yaml.safe_dump_all(docs)


async def why_all(client: httpx.AsyncClient, ips: list[str]) -> dict[str, dict]:
    async def one(ip):
        try:
            return ip, (await client.get(f"http://{ip}:8080/why")).json()
        except Exception:  # noqa: BLE001
            return ip, None
    return {ip: w for ip, w in await asyncio.gather(*(one(ip) for ip in ips)) if w is not None}


def stopped(w: dict) -> bool:
    return w.get("riskState") == "HARD_STOP" and not any(
        s["pendingOrder"] and not s.get("pendingReduceOnly") for s in w["symbols"])


async def trial(cp, cl: Cluster, ns: str, ips: list[str], poll: float) -> dict:
    async with httpx.AsyncClient(timeout=2) as client:
        t_pre = time.monotonic()
        while True:  # precondition: every worker's drawdown above the coming hard limit
            ws = await why_all(client, ips)
            if len(ws) == len(ips) and all(float(w["drawdownPercent"]) >= PRECONDITION_DD and w["riskState"] != "HARD_STOP"
                                           for w in ws.values()):
                break
            if time.monotonic() - t_pre > 300:
                raise TimeoutError("workers did not all reach the drawdown precondition in 300 s")
            await asyncio.sleep(0.5)
        pending_before = sum(1 for w in ws.values() for s in w["symbols"]
                             if s["pendingOrder"] and not s.get("pendingReduceOnly"))
        t0 = time.time()
        await asyncio.to_thread(cp.kubectl, "patch", "riskpolicy", "bench", "-n", ns, "--type", "merge", "-p",
                                json.dumps({"spec": BREACH}))
        seen: dict[str, float] = {}
        status_at = None
        last_status_poll = 0.0
        while len(seen) < len(ips) or status_at is None:
            ws = await why_all(client, ips)
            now = time.time()
            for ip, w in ws.items():
                if ip not in seen and stopped(w) and (w.get("riskStateChangedAt") or 0) >= t0:
                    seen[ip] = now - t0
            if status_at is None and now - last_status_poll >= 0.2:
                last_status_poll = now
                items = await asyncio.to_thread(cl.strategies, ns)
                if all((s.get("status") or {}).get("riskState") == "HARD_STOP" for s in items):
                    status_at = time.time() - t0
            if now - t0 > 30:
                raise TimeoutError(f"{len(ips) - len(seen)} workers not stopped after 30 s")
            await asyncio.sleep(poll)
        ws = await why_all(client, ips)
        worker = [w["riskStateChangedAt"] - t0 for w in ws.values()]
        cancelled = sum(w.get("hardStopCancelledOrders") or 0 for w in ws.values())
        entries = {ip: [s["entryOrders"] for s in w["symbols"]] for ip, w in ws.items()}
        await asyncio.sleep(3)
        ws2 = await why_all(client, ips)
        new_entries = sum(sum(a - b for a, b in zip([s["entryOrders"] for s in ws2[ip]["symbols"]], entries[ip]))
                          for ip in entries if ip in ws2)
        still_stopped = sum(1 for w in ws2.values() if w["riskState"] == "HARD_STOP")
    # restore: normal limits, then clear the latched stops
    cp.kubectl("patch", "riskpolicy", "bench", "-n", ns, "--type", "merge", "-p", json.dumps({"spec": NORMAL}))
    cp.kubectl("annotate", "tradingstrategies", "--all", "-n", ns, "--overwrite",
               f"hean.io/clear-hard-stop={datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    return {"worker": worker, "client_why": list(seen.values()), "client_status": status_at,
            "pending_entries_before": pending_before, "cancelled": cancelled, "new_entries_after": new_entries,
            "still_stopped_after_3s": still_stopped}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", type=int, default=50)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--speed", type=float, default=30.0)
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--zygote", action="store_true")
    ap.add_argument("--window", type=float, default=30.0, help="seconds of the busy steady-state measurement")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/control_plane/results-hardstop.json"))
    args = ap.parse_args()

    from hean.testing.controlplane import ControlPlane
    from hean.testing.nodeagent import NodeAgent

    root = repo_root()
    ns = "bench"
    res: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "strategies": args.strategies,
        "speed": args.speed, "load_avg_start": load()}
    with ControlPlane() as cp, NodeAgent(cp.kubeconfig, workdir=cp.workdir / "agent",
                                         zygote=["hean.worker"] if args.zygote else []) as agent:
        if agent._zygote is not None:
            agent._zygote.wait_ready(120)
        install(cp.helm, default_marketdata_dir(root))
        cl = Cluster(cp.kubeconfig)
        cp.kubectl("create", "namespace", ns)
        wait(lambda: cp.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 60, "default sa", 0.2)
        t0 = time.perf_counter()
        cp.kubectl("apply", "-f", "-", input=manifests(args.strategies, ns, args.speed), timeout=300)
        wait(lambda: cl.ready(ns) >= args.strategies, 900, "all Ready", 0.5)
        res["ready_seconds"] = round(time.perf_counter() - t0, 2)
        ips = [p.status.pod_ip for p in cl.pods(ns)]
        # busy workers (a candle per symbol every 2 s): status writes, freshness, operator load
        time.sleep(10)
        res["steady_busy"] = steady(cp, cl, agent, args.window, ns)
        res["freshness_busy"] = freshness(cl, ns)
        print(json.dumps({"steady_busy": res["steady_busy"], "freshness_busy": res["freshness_busy"]}), flush=True)
        trials = []
        for i in range(args.trials):
            r = asyncio.run(trial(cp, cl, ns, ips, args.poll))
            trials.append(r)
            print(f"trial {i + 1}: fleet {max(r['worker']) * 1000:.0f} ms (worker), client {max(r['client_why']) * 1000:.0f} ms, "
                  f"status {r['client_status'] * 1000:.0f} ms; {r['cancelled']} pending entries cancelled, "
                  f"{r['new_entries_after']} new entries after; load {load()}", flush=True)
        res["trials"] = len(trials)
        res["worker_per_worker"] = dist([x for t in trials for x in t["worker"]])
        res["worker_fleet"] = dist([max(t["worker"]) for t in trials])
        res["client_why_fleet"] = dist([max(t["client_why"]) for t in trials])
        res["client_status_fleet"] = dist([t["client_status"] for t in trials])
        res["pending_entries_cancelled_per_trial"] = [t["cancelled"] for t in trials]
        res["pending_entries_seen_before_per_trial"] = [t["pending_entries_before"] for t in trials]
        res["new_entries_within_3s_after_stop"] = sum(t["new_entries_after"] for t in trials)
        res["workers_still_stopped_after_3s"] = [t["still_stopped_after_3s"] for t in trials]
    res["load_avg_end"] = load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
