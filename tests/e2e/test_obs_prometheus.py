"""A real Prometheus discovers the worker pods on the real control plane by their
labels, scrapes them and the operator at their pod IPs, loads the alert rules, and
answers queries: equity equals the strategy's ``status.equity``, the risk state is
one-hot, and every panel query of every dashboard parses and returns series.

Discovery: ``kubernetes_sd_configs`` (role: pod) with the harness's kubeconfig when
the Prometheus binary has the Kubernetes service discovery. Debian's ``prometheus``
package (2.42 in bookworm) is built WITHOUT it, so with that binary the test serves
the same pod list itself over ``http_sd_configs``: a small HTTP endpoint that lists
the pods from the real API server and emits the ``__meta_kubernetes_pod_*`` labels
Prometheus' Kubernetes discovery would, so the relabelling (keep by label and port
name) is the same in both cases. ``$HEAN_PROMETHEUS``, or the build of
``monitoring/build-prometheus.sh`` (cached under ``~/.cache/hean/prometheus/``, which
``.ci/run`` runs), selects a binary with it."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml

from hean.api import GROUP, VERSION
from hean.deploy import OPERATOR_NAMESPACE, install
from hean.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]
import os  # noqa: E402
import threading  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

_CANDIDATES = [os.environ.get("HEAN_PROMETHEUS"),
               *sorted(map(str, (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hean" /
                                 "prometheus").glob("*/prometheus")), reverse=True),
               shutil.which("prometheus")]
PROMETHEUS = next((c for c in _CANDIDATES if c and os.access(c, os.X_OK)), None)
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing: apt-get install prometheus "
                                                           "(.ci/run installs it)")
RATE_INTERVAL = "20s"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_kubernetes_sd(binary: str, tmp: Path) -> bool:
    """Whether ``binary`` accepts kubernetes_sd_configs (Debian's build does not)."""
    promtool = Path(binary).with_name("promtool")
    cfg = tmp / "probe.yml"
    cfg.write_text(yaml.safe_dump({"scrape_configs": [{"job_name": "p", "kubernetes_sd_configs": [
        {"role": "pod", "api_server": "https://127.0.0.1:1"}]}]}))
    if promtool.exists():
        out = subprocess.run([str(promtool), "check", "config", str(cfg)], capture_output=True, text=True)
        return out.returncode == 0
    return False


class PodSD:
    """http_sd_configs endpoint: the pods of some namespaces, listed from the API server
    with the ``__meta_kubernetes_pod_*`` labels of Prometheus' Kubernetes discovery."""

    def __init__(self, kube):
        self.kube = kube
        sd = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                ns = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["namespace"]
                body = json.dumps(sd.groups(ns)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def groups(self, namespaces: list[str]) -> list[dict]:
        out = []
        for ns in namespaces:
            for pod in self.kube.get("pods", namespace=ns)["items"]:
                ip = (pod.get("status") or {}).get("podIP")
                if not ip:
                    continue
                meta = {"__meta_kubernetes_namespace": ns, "__meta_kubernetes_pod_name": pod["metadata"]["name"],
                        "__meta_kubernetes_pod_ip": ip}
                for k, v in (pod["metadata"].get("labels") or {}).items():
                    meta["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k)] = v
                for c in pod["spec"]["containers"]:
                    for p in c.get("ports") or []:
                        out.append({"targets": [f"{ip}:{p['containerPort']}"],
                                    "labels": {**meta, "__meta_kubernetes_pod_container_name": c["name"],
                                               "__meta_kubernetes_pod_container_port_name": p.get("name", ""),
                                               "__meta_kubernetes_pod_container_port_number":
                                                   str(p["containerPort"])}})
        return out


def prom_config(kubeconfig: Path, ns: str, http_sd: str | None = None) -> dict:
    def sd(namespaces):
        return [{"role": "pod", "kubeconfig_file": str(kubeconfig), "namespaces": {"names": namespaces}}]

    def discovery(namespaces):
        if http_sd:
            return {"http_sd_configs": [{"url": f"{http_sd}?namespace={namespaces[0]}", "refresh_interval": "2s"}]}
        return {"kubernetes_sd_configs": sd(namespaces)}

    return {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s", "scrape_timeout": "1s"},
        "rule_files": [str(ROOT / "monitoring" / "alerts" / "hean.rules.yaml")],
        "scrape_configs": [
            {"job_name": "hean-workers", "honor_labels": True, **discovery([ns]),
             "relabel_configs": [
                 {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"], "regex": "hean-worker",
                  "action": "keep"},
                 {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "http", "action": "keep"},
                 {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}]},
            {"job_name": "hean-operator", **discovery([OPERATOR_NAMESPACE]),
             "relabel_configs": [
                 {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"], "regex": "operator",
                  "action": "keep"},
                 {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics",
                  "action": "keep"},
                 {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                 {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}]},
        ],
    }


class Prom:
    def __init__(self, url: str, discovery: str):
        self.url, self.discovery = url, discovery

    def get(self, path: str, **params) -> dict:
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]


@pytest.fixture
def prometheus(kube, namespace, tmp_path):
    if not kube.is_local:
        pytest.skip("scrapes pod IPs from this machine: local harness only")
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    podsd = None if has_kubernetes_sd(PROMETHEUS, tmp_path) else PodSD(kube)
    cfg.write_text(yaml.safe_dump(prom_config(kube.kubeconfig, namespace, podsd.url if podsd else None)))
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 30,
                 message=f"prometheus ready (log {tmp_path / 'prometheus.log'})")
        yield Prom(url, "http_sd" if podsd else "kubernetes_sd")
    finally:
        if podsd is not None:
            podsd.server.shutdown()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def substitute(expr: str, ns: str, operator: bool) -> str:
    return (expr.replace("$namespace", OPERATOR_NAMESPACE if operator else ns).replace("$strategy", ".*")
            .replace("$__rate_interval", RATE_INTERVAL))


def test_prometheus_discovers_scrapes_and_answers(kube, namespace, marketdata_dir, prometheus, tmp_path):
    install(kube.helm, marketdata_dir)
    t_start = time.time()
    policy = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": "default"},
              "spec": {"softMaxDrawdownPercent": 5, "hardMaxDrawdownPercent": 10, "maxDailyLossUsdt": 5000,
                       "maxLeverage": 3, "maxPositionNotionalUsdt": 20000, "maxOpenPositions": 4,
                       "maxOrdersPerMinute": 600}}

    def strategy(name, speed, start=None):
        replay = {"interval": "1", "speed": speed, **({"start": start} if start else {})}
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy", "metadata": {"name": name},
                "spec": {"strategy": "impulse", "symbols": ["BTCUSDT", "ETHUSDT"], "capital": 10000,
                         "riskPolicyRef": {"name": "default"}, "marketData": {"source": "replay", "replay": replay}}}

    kube.apply(policy, strategy("obs-done", 200000, "2025-06-27T12:00:00Z"), strategy("obs-run", 3000),
               namespace=namespace)
    prom = prometheus
    # discovered by label, scraped at the pod IP
    wait_for(lambda: len([r for r in prom.query('up{job="hean-workers"} == 1')]) == 2, 90, interval=1.0,
             message="both worker pods discovered and up in Prometheus")
    wait_for(lambda: prom.query('up{job="hean-operator"} == 1'), 30, interval=1.0, message="operator scraped")
    targets = prom.get("/api/v1/targets")["activeTargets"]
    workers = [t for t in targets if t["labels"]["job"] == "hean-workers"]
    assert {t["labels"]["pod"] for t in workers} == {"obs-done-worker", "obs-run-worker"}
    for t in workers:
        pod = kube.get("pod", t["labels"]["pod"], namespace=namespace)
        assert t["scrapeUrl"] == f"http://{pod['status']['podIP']}:8080/metrics"
        if prom.discovery == "kubernetes_sd":  # the real Kubernetes discovery (uid only it provides)
            assert t["discoveredLabels"]["__meta_kubernetes_pod_uid"] == pod["metadata"]["uid"]

    # the finished replay: Prometheus' equity equals status.equity (rounded to 0.01 there)
    def done():
        st = kube.get("tradingstrategies", "obs-done", namespace=namespace).get("status") or {}
        return st if (st.get("replay") or {}).get("done") else None
    wait_for(done, 120, interval=1.0, message="obs-done replay to finish")
    time.sleep(4)  # two more scrapes after the last candle and status write
    st = done()
    res = prom.query(f'hean_worker_equity_usdt{{namespace="{namespace}", strategy="obs-done"}}')
    assert len(res) == 1 and res[0]["metric"]["mode"] == "paper"
    assert abs(D(res[0]["value"][1]) - D(st["equity"])) <= D("0.005")
    fills = prom.query(f'hean_worker_fills_total{{namespace="{namespace}", strategy="obs-done"}}')
    assert float(fills[0]["value"][1]) > 0, "3 days of candles should have traded"
    # one-hot risk state: exactly one state per strategy, matching status.riskState
    onehot = prom.query(f'sum by (strategy) (hean_worker_risk_state{{namespace="{namespace}"}})')
    assert sorted((r["metric"]["strategy"], float(r["value"][1])) for r in onehot) == [("obs-done", 1.0),
                                                                                      ("obs-run", 1.0)]
    state = prom.query(f'hean_worker_risk_state{{namespace="{namespace}", strategy="obs-done"}} == 1')
    assert [r["metric"]["state"] for r in state] == [st["riskState"]]
    # the running replay moves: candles per second > 0
    rate = prom.query(f'rate(hean_worker_marketdata_events_total{{namespace="{namespace}", strategy="obs-run"}}[10s])')
    assert rate and float(rate[0]["value"][1]) > 0
    # the operator's view
    running = prom.query('hean_operator_workers{phase="Running"}')
    assert running and float(running[0]["value"][1]) >= 2
    assert float(prom.query('hean_operator_up')[0]["value"][1]) == 1
    assert prom.query('time() - hean_operator_last_successful_reconcile_timestamp_seconds{kind="RiskPolicy"} < 30')

    # the alert rules loaded and evaluate cleanly; a healthy fleet fires none of the critical ones
    groups = prom.get("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"] if r["type"] == "alerting"]
    assert len(rules) == 10 and all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError"))
                                                                          for r in rules]
    firing = {a["labels"]["alertname"] for a in prom.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"}
    assert not firing & {"HeanHardStop", "HeanReconcileMismatch", "HeanOperatorNotReconciling"}, firing

    # every dashboard panel query parses and returns series
    empty = []
    for path in sorted((ROOT / "monitoring" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for p in board["panels"]:
            for t in p["targets"]:
                expr = substitute(t["expr"], namespace, board["uid"] == "hean-operator")
                assert "$" not in expr, expr
                if not prom.query(expr):
                    empty.append(f"{board['uid']} / {p['title']}: {expr}")
    assert not empty, "panel queries without series:\n" + "\n".join(empty)

    # the README picture: the fleet dashboard's time-series queries over this test
    # (HEAN_UPDATE_DOCS_IMG=1 lets the replay run a minute longer for a fuller picture)
    if os.environ.get("HEAN_UPDATE_DOCS_IMG") == "1":
        time.sleep(60)
    svg = fleet_picture(prom, namespace, t_start, time.time())
    assert svg.count("<polyline") >= 4
    (tmp_path / "fleet-overview.svg").write_text(svg)
    if os.environ.get("HEAN_UPDATE_DOCS_IMG") == "1":
        (ROOT / "docs" / "img").mkdir(exist_ok=True)
        (ROOT / "docs" / "img" / "fleet-overview.svg").write_text(svg)


def render_svg(panels: list[tuple[str, list[tuple[str, list[tuple[float, float]]]]]], title: str) -> str:
    """A small SVG of time series panels (2 columns): the README picture of the fleet
    dashboard, drawn from the same queries Grafana runs."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    pw, ph, pad = 460, 230, 40
    rows = (len(panels) + 1) // 2
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * pw + 30}" height="{rows * (ph + 20) + 50}" '
           f'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="#ffffff"/>',
           f'<text x="15" y="25" font-size="15" font-weight="bold">{title}</text>']
    for i, (ptitle, series) in enumerate(panels):
        x0, y0 = 10 + (i % 2) * (pw + 10), 40 + (i // 2) * (ph + 20)
        out.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>')
        out.append(f'<text x="{x0 + 8}" y="{y0 + 16}" font-weight="bold">{ptitle}</text>')
        pts = [p for _, s in series for p in s]
        if not pts:
            continue
        tmin, tmax = min(p[0] for p in pts), max(p[0] for p in pts)
        vmin, vmax = min(p[1] for p in pts), max(p[1] for p in pts)
        if vmax == vmin:
            vmin, vmax = vmin - 1, vmax + 1
        span = max(tmax - tmin, 1)
        gx, gy, gw, gh = x0 + pad + 20, y0 + 28, pw - pad - 40, ph - 72
        for frac in (0, 0.5, 1):
            v = vmin + frac * (vmax - vmin)
            y = gy + gh - frac * gh
            out.append(f'<line x1="{gx}" y1="{y:.1f}" x2="{gx + gw}" y2="{y:.1f}" stroke="#e3e3e3"/>')
            out.append(f'<text x="{gx - 4}" y="{y + 4:.1f}" text-anchor="end">{v:.4g}</text>')
        out.append(f'<text x="{gx + gw}" y="{gy + gh + 12}" text-anchor="end">{int(span)} s</text>')
        for j, (name, s) in enumerate(series):
            c = colors[j % len(colors)]
            poly = " ".join(f"{gx + (t - tmin) / span * gw:.1f},{gy + gh - (v - vmin) / (vmax - vmin) * gh:.1f}"
                            for t, v in s)
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{poly}"/>')
            out.append(f'<text x="{x0 + 10 + (j % 3) * 150}" y="{y0 + ph - 18 + (j // 3) * 12}" '
                       f'fill="{c}">{name[:24]}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def fleet_picture(prom: Prom, ns: str, start: float, end: float) -> str:
    board = json.loads((ROOT / "monitoring" / "dashboards" / "hean-fleet.json").read_text())
    panels = []
    for p in board["panels"]:
        if p["type"] != "timeseries":
            continue
        series = []
        for t in p["targets"]:
            expr = substitute(t["expr"], ns, False)
            for r in prom.get("/api/v1/query_range", query=expr, start=start, end=end, step=2)["result"]:
                label = r["metric"].get("strategy") or r["metric"].get("reason") or "value"
                series.append((label, [(float(ts) - start, float(v)) for ts, v in r["values"]]))
        series.sort(key=lambda s: -max((v for _, v in s[1]), default=0))  # the largest first
        panels.append((p["title"], series[:6]))
    return render_svg(panels, "hean / Fleet overview (e2e Prometheus, paper replay)")
