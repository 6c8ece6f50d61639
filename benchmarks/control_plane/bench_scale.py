"""Control-plane scale benchmark (issue 8, benchmarks 4, 5 and 6).

Starts the local control plane and node agent (hean.testing; ``--zygote`` makes the
agent fork workers from a pre-imported interpreter, docs/harness.md), installs the
chart with helm, then:

1. **Ready**: applies one RiskPolicy and ``--strategies`` TradingStrategies in one
   ``kubectl apply`` (namespace ``bench``) and records the seconds until every
   strategy has its worker pod and until every one reports ``Ready=True`` (seen
   on two watch streams, :class:`Tracker`: the time of the last strategy's first
   pod event and first ``Ready=True``; a LIST cross-checks the count at the end).
2. **Steady state at N**: operator CPU (from ``/proc/<pid>/stat``, utime+stime over
   a window) and resident memory (``VmRSS``; peak ``VmHWM``), the API server's
   request counts (``apiserver_request_total`` from its ``/metrics``, by verb and
   resource) and open watches (``apiserver_longrunning_requests``), worker status
   writes per strategy per second (``hean_worker_status_patches_total``) and
   **status freshness**: the age of the figures at each status write, recorded by
   each worker (``/why`` ``statusAgesSeconds``: from the oldest change not yet
   written to the end of the write carrying it), and the age of ``lastHeartbeat``
   as a client sees it (one-second resolution).
3. **Idle strategies** (``--idle M``): M more strategies in namespace ``bench-idle``,
   whose pods the node agent does not run (``NodeAgent(namespaces=...)``: the
   operator creates the pods and their RBAC, the pods stay Pending, every strategy
   is reconciled and gets a status), then the same operator figures at N+M objects.
4. **Operator restart** (``--restart-trials``): deletes the operator pod (the
   Deployment replaces it) and at once pauses one strategy; records the seconds until
   the new operator pod runs, until its metrics show every strategy in its cache, and
   until the paused strategy's ``status.phase`` is ``Paused`` (the first change it
   acts on), plus the API requests of the restart.

Prints a JSON summary and writes it to ``--out``.

    .venv/bin/python benchmarks/control_plane/bench_scale.py --strategies 200 --idle 800 --zygote
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

from hean.deploy import OPERATOR_NAMESPACE, default_marketdata_dir, install, repo_root

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100)."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def dist(values: list[float], scale: float = 1000.0, unit: str = "ms") -> dict:
    """p50/p95/p99/max/n of ``values`` (seconds) in ``unit``."""
    if not values:
        return {"n": 0}
    r = lambda v: round(v * scale, 1)  # noqa: E731
    return {"n": len(values), f"p50_{unit}": r(pct(values, 50)), f"p95_{unit}": r(pct(values, 95)),
            f"p99_{unit}": r(pct(values, 99)), f"max_{unit}": r(max(values))}


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (/proc/<pid>/stat fields 14 and 15)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def mem_mib(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of ``pid`` in MiB."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return out


def smaps(pid: int) -> dict:
    """Rss, Pss and private (clean + dirty) memory of ``pid`` in MiB (/proc/<pid>/smaps_rollup)."""
    out = {"Rss": 0.0, "Pss": 0.0, "Private": 0.0}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        k, _, rest = line.partition(":")
        if k in ("Rss", "Pss"):
            out[k] += int(rest.split()[0]) / 1024
        elif k in ("Private_Clean", "Private_Dirty"):
            out["Private"] += int(rest.split()[0]) / 1024
    return out


def worker_memory(cl: "Cluster", agent, ns: str) -> dict:
    """Per-worker memory (median, MiB) and the fleet's sums (Pss counts shared pages once)."""
    rows = []
    for p in cl.pods(ns):
        pid = agent.container_pid(ns, p.metadata.name, "worker")
        if pid:
            try:
                rows.append(smaps(pid))
            except OSError:
                pass
    if not rows:
        return {}
    med = lambda k: round(sorted(r[k] for r in rows)[len(rows) // 2], 1)  # noqa: E731
    return {"workers": len(rows), "median_rss_mib": med("Rss"), "median_pss_mib": med("Pss"),
            "median_private_mib": med("Private"), "sum_pss_mib": round(sum(r["Pss"] for r in rows)),
            "sum_rss_mib": round(sum(r["Rss"] for r in rows))}


def apiserver_metrics(cp) -> dict:
    """``apiserver_request_total`` summed by ``verb resource[/subresource]`` and
    ``apiserver_longrunning_requests`` (open watches) by resource."""
    from prometheus_client.parser import text_string_to_metric_families

    text = cp.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    req: dict[str, float] = defaultdict(float)
    watches: dict[str, float] = defaultdict(float)
    for fam in text_string_to_metric_families(text):
        if fam.name == "apiserver_request":
            for s in fam.samples:
                if s.name == "apiserver_request_total":
                    lb = s.labels
                    res = lb.get("resource", "") + (f"/{lb['subresource']}" if lb.get("subresource") else "")
                    req[f"{lb.get('verb')} {res}"] += s.value
        elif fam.name == "apiserver_longrunning_requests":
            for s in fam.samples:
                if s.labels.get("verb") == "WATCH":
                    watches[s.labels.get("resource", "")] += s.value
    return {"requests": dict(req), "watches": dict(watches)}


def diff_requests(a: dict, b: dict, interesting=("tradingstrategies", "riskpolicies", "symbolquarantines", "pods",
                                                  "events", "serviceaccounts", "roles", "rolebindings", "token",
                                                  "binding", "leases", "nodes")) -> dict:
    """Requests between two snapshots, by ``verb resource`` (hean-relevant resources)."""
    out = {}
    for k, v in b["requests"].items():
        d = v - a["requests"].get(k, 0.0)
        if d > 0 and any(i in k for i in interesting):
            out[k] = int(d)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


class Sampler(threading.Thread):
    """Samples a pid's RSS every ``period`` seconds (peak and last)."""

    def __init__(self, pid_fn, period: float = 0.5):
        super().__init__(daemon=True)
        self.pid_fn, self.period, self.peak, self.stop = pid_fn, period, 0.0, threading.Event()

    def run(self):
        while not self.stop.wait(self.period):
            try:
                self.peak = max(self.peak, mem_mib(self.pid_fn())["VmRSS"])
            except Exception:  # noqa: BLE001 - the process may be restarting
                pass


def manifests(n: int, ns: str, speed: float, offset: int = 0) -> str:
    docs = [{"apiVersion": "hean.io/v1alpha1", "kind": "RiskPolicy", "metadata": {"name": "bench", "namespace": ns},
             "spec": {"softMaxDrawdownPercent": 50, "hardMaxDrawdownPercent": 90, "maxDailyLossUsdt": 1e6,
                      "maxLeverage": 3, "maxPositionNotionalUsdt": 20000, "maxOpenPositions": 4,
                      "maxOrdersPerMinute": 600}}]
    for i in range(offset, offset + n):
        docs.append({"apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
                     "metadata": {"name": f"s{i:04d}", "namespace": ns, "labels": {"hean.io/bench": "scale"}},
                     "spec": {"strategy": "impulse", "symbols": ["BTCUSDT", "ETHUSDT"], "capital": 10000,
                              "riskPolicyRef": {"name": "bench"},
                              "marketData": {"source": "replay", "replay": {"interval": "1", "speed": speed}}}})
    return yaml.safe_dump_all(docs)


class Cluster:
    """Thin sync-client helpers (one process; cheaper than a kubectl per poll)."""

    def __init__(self, kubeconfig: Path):
        from kubernetes import client, config

        self.api_client = config.new_client_from_config(str(kubeconfig))
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)

    def strategies(self, ns: str) -> list[dict]:
        """All TradingStrategies of ``ns`` from the API server's watch cache
        (``resourceVersion=0``: no etcd round trip, no pagination; may lag a write by
        the cache's delay, which is fine for polling)."""
        return self.custom.list_namespaced_custom_object("hean.io", "v1alpha1", ns, "tradingstrategies",
                                                         resource_version="0", _request_timeout=120)["items"]

    def ready(self, ns: str) -> int:
        return sum(1 for s in self.strategies(ns) for c in (s.get("status") or {}).get("conditions") or []
                   if c["type"] == "Ready" and c["status"] == "True")

    def with_status(self, ns: str) -> int:
        return sum(1 for s in self.strategies(ns) if (s.get("status") or {}).get("conditions"))

    def pods(self, ns: str) -> list:
        return self.core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=hean-worker",
                                             resource_version="0", _request_timeout=120).items

    def operator_pod(self):
        pods = [p for p in self.core.list_namespaced_pod(OPERATOR_NAMESPACE).items
                if p.metadata.name.startswith("hean-operator") and not p.metadata.deletion_timestamp]
        return pods[0] if pods else None


def operator_pid(cl: Cluster, agent) -> int:
    pod = cl.operator_pod()
    pid = agent.container_pid(OPERATOR_NAMESPACE, pod.metadata.name, "operator") if pod else None
    if pid is None:
        raise RuntimeError("operator process not found")
    return pid


def operator_metric(pod_ip: str, name: str, labels: dict | None = None) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://{pod_ip}:8080/metrics", timeout=5).text
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                return s.value
    return None


def steady(cp, cl: Cluster, agent, window: float, ns_workers: str | None) -> dict:
    """Operator CPU/RSS and API requests over ``window`` seconds; worker status writes
    and freshness if ``ns_workers`` is given."""
    pid = operator_pid(cl, agent)
    ips = [p.status.pod_ip for p in cl.pods(ns_workers)] if ns_workers else []
    tw0 = time.monotonic()
    w0 = worker_counters(ips)
    tw0 = (tw0 + time.monotonic()) / 2
    a0, c0, t0 = apiserver_metrics(cp), cpu_seconds(pid), time.monotonic()
    peak = 0.0
    while time.monotonic() - t0 < window:
        time.sleep(1)
        peak = max(peak, mem_mib(pid)["VmRSS"])
    c1, t1 = cpu_seconds(pid), time.monotonic()
    a1 = apiserver_metrics(cp)
    tw1 = time.monotonic()
    w1 = worker_counters(ips)
    tw1 = (tw1 + time.monotonic()) / 2
    span = t1 - t0
    reqs = diff_requests(a0, a1)
    out = {"window_s": round(span, 1), "load_avg": load(),
           "operator_cpu_percent_of_one_core": round(100 * (c1 - c0) / span, 1),
           "operator_memory_mib": {**mem_mib(pid), "peak_sampled_VmRSS": peak},
           "apiserver_requests_per_second": {k: round(v / span, 2) for k, v in reqs.items()},
           "apiserver_requests_total_per_second": round(sum(reqs.values()) / span, 1),
           "open_watches": {k: v for k, v in a1["watches"].items() if k in (
               "tradingstrategies", "riskpolicies", "symbolquarantines", "pods", "nodes")}}
    if ips:
        rates = sorted((w1[ip] - w0[ip]) / (tw1 - tw0) for ip in ips if ip in w0 and ip in w1)
        out["status_writes_per_strategy_per_second"] = {"p50": round(pct(rates, 50), 3), "max": round(rates[-1], 3),
                                                       "fleet_total": round(sum(rates), 2)}
    return out


def worker_counters(ips: list[str]) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    with httpx.Client(timeout=5) as c:
        for ip in ips:
            try:
                text = c.get(f"http://{ip}:8080/metrics").text
                out[ip] = next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                               if s.name == "hean_worker_status_patches_total")
            except Exception:  # noqa: BLE001
                pass
    return out


def freshness(cl: Cluster, ns: str) -> dict:
    """Worker-recorded figure ages at each status write, and the client-side age of
    ``lastHeartbeat`` (one-second resolution) across all strategies."""
    ages: list[float] = []
    with httpx.Client(timeout=5) as c:
        for p in cl.pods(ns):
            try:
                ages += c.get(f"http://{p.status.pod_ip}:8080/why").json().get("statusAgesSeconds") or []
            except Exception:  # noqa: BLE001
                pass
    now = time.time()
    hb = [now - datetime.strptime(s["status"]["lastHeartbeat"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc).timestamp() for s in cl.strategies(ns) if (s.get("status") or {}).get("lastHeartbeat")]
    return {"figure_age_at_write": dist(ages), "last_heartbeat_age_seen_by_client": dist(hb, 1.0, "s")}


class Tracker(threading.Thread):
    """Watches the TradingStrategies and worker Pods of one namespace (two watch
    streams, each re-listed only if it breaks) and records when the first pod and
    the first ``Ready=True`` of each strategy were seen, so that the benchmark waits
    on the system without LISTing 200 objects twice a second itself (each such
    LIST of strategies is ~1 MB of JSON the API server serialises and the client
    parses: observer load on the 2 cores being measured)."""

    def __init__(self, kubeconfig: Path, ns: str):
        super().__init__(daemon=True)
        from kubernetes import config

        self.ns, self.api = ns, config.new_client_from_config(str(kubeconfig))
        self.pods: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.stop = threading.Event()

    def _watch(self, kind: str) -> None:
        from kubernetes import client, watch

        while not self.stop.is_set():
            try:
                if kind == "pods":
                    fn, args = client.CoreV1Api(self.api).list_namespaced_pod, (self.ns,)
                    kw = {"label_selector": "app.kubernetes.io/name=hean-worker"}
                else:
                    fn = client.CustomObjectsApi(self.api).list_namespaced_custom_object
                    args, kw = ("hean.io", "v1alpha1", self.ns, "tradingstrategies"), {}
                for ev in watch.Watch().stream(fn, *args, timeout_seconds=600, **kw):
                    obj, now = ev["object"], time.perf_counter()
                    if kind == "pods":
                        self.pods.setdefault(obj.metadata.name, now)
                    elif any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in (obj.get("status") or {}).get("conditions") or []):
                        self.ready.setdefault(obj["metadata"]["name"], now)
                    if self.stop.is_set():
                        return
            except Exception as e:  # noqa: BLE001 - re-watch (and re-list) after an error
                print(f"(watch {kind}: {type(e).__name__}; re-watching)", flush=True)
                time.sleep(0.5)

    def run(self) -> None:
        t = threading.Thread(target=self._watch, args=("pods",), daemon=True)
        t.start()
        self._watch("tradingstrategies")


def wait(probe, timeout: float, what: str, period: float = 1.0):
    t0 = time.monotonic()
    while True:
        try:
            v = probe()
        except Exception as e:  # noqa: BLE001 - an API hiccup under load: poll again
            print(f"({what}: {type(e).__name__}: {str(e)[:120]}; retrying)", flush=True)
            v = None
        if v:
            return v
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(what)
        time.sleep(period)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", type=int, default=200)
    ap.add_argument("--idle", type=int, default=0, help="strategies whose pods are created but not run")
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed (1: one candle per minute per symbol, a light replay; 60: one per second)")
    ap.add_argument("--zygote", action="store_true", help="node agent forks workers from a pre-imported interpreter")
    ap.add_argument("--window", type=float, default=60.0, help="seconds of each steady-state measurement")
    ap.add_argument("--restart-trials", type=int, default=2)
    ap.add_argument("--apply-parallel", type=int, default=1,
                    help="split the strategies over this many concurrent kubectl apply processes (default one)")
    ap.add_argument("--status-interval", type=float, default=1.0, help="helm worker.statusInterval (seconds)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/control_plane/results-scale.json"))
    args = ap.parse_args()

    from hean.testing.controlplane import ControlPlane
    from hean.testing.nodeagent import NodeAgent

    root = repo_root()
    ns, ns_idle = "bench", "bench-idle"
    res: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "strategies": args.strategies,
        "idle": args.idle, "speed": args.speed, "apply_parallel": args.apply_parallel, "zygote": args.zygote, "status_interval": args.status_interval, "load_avg_start": load()}
    with ControlPlane() as cp, NodeAgent(cp.kubeconfig, workdir=cp.workdir / "agent",
                                         zygote=["hean.worker"] if args.zygote else [],
                                         namespaces=[OPERATOR_NAMESPACE, ns]) as agent:
        if agent._zygote is not None:
            agent._zygote.wait_ready(120)
        install(cp.helm, default_marketdata_dir(root), extra=["--set", f"worker.statusInterval={args.status_interval:g}"])
        cl = Cluster(cp.kubeconfig)
        for n in (ns, ns_idle):
            cp.kubectl("create", "namespace", n)
        wait(lambda: subprocess.run([str(cp.bin_dir / "kubectl"), "--kubeconfig", str(cp.kubeconfig), "get", "sa",
                                     "default", "-n", ns], capture_output=True).returncode == 0, 60, "default sa", 0.2)
        res["operator_idle"] = steady(cp, cl, agent, 10, None)
        pid = operator_pid(cl, agent)
        sampler = Sampler(lambda: pid)
        sampler.start()
        a0, c0 = apiserver_metrics(cp), cpu_seconds(pid)
        tracker = Tracker(cp.kubeconfig, ns)
        tracker.start()
        t0 = time.perf_counter()
        if args.apply_parallel <= 1:
            cp.kubectl("apply", "-f", "-", input=manifests(args.strategies, ns, args.speed), timeout=600)
        else:  # K kubectl processes at once, each with a slice of the strategies
            from concurrent.futures import ThreadPoolExecutor

            k, n = args.apply_parallel, args.strategies
            docs = list(yaml.safe_load_all(manifests(n, ns, args.speed)))
            cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(docs[0]))  # the RiskPolicy first
            chunks = [docs[1:][i::k] for i in range(k)]
            with ThreadPoolExecutor(k) as pool:
                list(pool.map(lambda c: cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(c), timeout=600),
                              chunks))
        t_applied = time.perf_counter() - t0
        wait(lambda: len(tracker.ready) >= args.strategies, 900, "all Ready", 0.05)
        tracker.stop.set()
        t_pods = max(tracker.pods.values()) - t0
        t_ready = max(tracker.ready.values()) - t0
        assert len(tracker.pods) >= args.strategies and cl.ready(ns) >= args.strategies  # cross-check with a LIST
        c1, a1 = cpu_seconds(pid), apiserver_metrics(cp)
        sampler.stop.set()
        res["ready"] = {"apply_seconds": round(t_applied, 2), "all_pods_seconds": round(t_pods, 2),
                        "all_ready_seconds": round(t_ready, 2), "load_avg": load(),
                        "operator_cpu_seconds": round(c1 - c0, 2), "operator_peak_rss_mib": sampler.peak,
                        "apiserver_requests": diff_requests(a0, a1),
                        "zygote_spawned": agent._zygote.spawned if agent._zygote else 0}
        print(f"{args.strategies} strategies: pods after {t_pods:.1f} s, all Ready after {t_ready:.1f} s", flush=True)
        time.sleep(10)
        res["steady_n"] = steady(cp, cl, agent, args.window, ns)
        res["freshness_n"] = freshness(cl, ns)
        res["worker_memory_n"] = worker_memory(cl, agent, ns)
        print(json.dumps({"steady_n": res["steady_n"], "freshness_n": res["freshness_n"]}, indent=1), flush=True)
        if args.idle:
            pid = operator_pid(cl, agent)
            a0, c0 = apiserver_metrics(cp), cpu_seconds(pid)
            t0 = time.perf_counter()
            m = manifests(args.idle, ns_idle, args.speed, offset=args.strategies)
            cp.kubectl("apply", "-f", "-", input=m, timeout=900)
            wait(lambda: len(cl.pods(ns_idle)) >= args.idle, 1800, "idle pods", 2.0)
            t_pods = time.perf_counter() - t0
            wait(lambda: cl.with_status(ns_idle) >= args.idle, 1800, "idle statuses", 2.0)
            t_status = time.perf_counter() - t0
            c1, a1 = cpu_seconds(pid), apiserver_metrics(cp)
            res["idle_apply"] = {"strategies": args.idle, "all_pods_seconds": round(t_pods, 2),
                                 "all_status_seconds": round(t_status, 2), "operator_cpu_seconds": round(c1 - c0, 2),
                                 "apiserver_requests": diff_requests(a0, a1), "load_avg": load()}
            print(f"{args.idle} idle strategies: pods after {t_pods:.1f} s, statuses after {t_status:.1f} s", flush=True)
            time.sleep(10)
            res["steady_total"] = steady(cp, cl, agent, args.window, ns)
            print(json.dumps(res["steady_total"], indent=1), flush=True)
        total = args.strategies + args.idle
        restarts = []
        for trial in range(args.restart_trials):
            old = cl.operator_pod()
            target = f"s{trial:04d}"
            a0 = apiserver_metrics(cp)
            t0 = time.perf_counter()
            cl.core.delete_namespaced_pod(old.metadata.name, OPERATOR_NAMESPACE)
            cl.custom.patch_namespaced_custom_object("hean.io", "v1alpha1", ns, "tradingstrategies", target,
                                                     {"spec": {"paused": True}})

            def new_running():
                p = cl.operator_pod()
                return p if p and p.metadata.uid != old.metadata.uid and p.status.phase == "Running" and \
                    agent.container_pid(OPERATOR_NAMESPACE, p.metadata.name, "operator") else None

            new = wait(new_running, 300, "new operator pod", 0.2)
            t_running = time.perf_counter() - t0

            def cached():
                try:
                    return operator_metric(new.status.pod_ip, "hean_operator_objects",
                                           {"kind": "TradingStrategy"}) == total
                except Exception:  # noqa: BLE001
                    return False

            wait(cached, 300, "operator cache", 0.2)
            t_cached = time.perf_counter() - t0
            wait(lambda: (cl.custom.get_namespaced_custom_object("hean.io", "v1alpha1", ns, "tradingstrategies",
                                                                 target).get("status") or {}).get("phase") == "Paused",
                 300, "paused acted on", 0.2)
            t_acted = time.perf_counter() - t0
            time.sleep(15)  # let the start-up pass settle before counting its requests
            a1 = apiserver_metrics(cp)
            npid = operator_pid(cl, agent)
            restarts.append({"new_pod_running_seconds": round(t_running, 2), "cache_synced_seconds": round(t_cached, 2),
                             "acted_on_change_seconds": round(t_acted, 2), "load_avg": load(),
                             "operator_memory_mib_after": mem_mib(npid),
                             "apiserver_requests_incl_15s_after": diff_requests(a0, a1)})
            print(f"restart {trial + 1}: running {t_running:.1f} s, cache {t_cached:.1f} s, acted {t_acted:.1f} s",
                  flush=True)
            cl.custom.patch_namespaced_custom_object("hean.io", "v1alpha1", ns, "tradingstrategies", target,
                                                     {"spec": {"paused": False}})
        res["restart"] = restarts
    res["load_avg_end"] = load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
