"""Static checks of the Grafana dashboards in monitoring/dashboards/ (the e2e test
tests/e2e/test_obs_prometheus.py also runs every panel query against a real
Prometheus scraping real workers)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASH = ROOT / "monitoring" / "dashboards"
UIDS = {"hean-fleet.json": "hean-fleet", "hean-strategy.json": "hean-strategy", "hean-execution.json": "hean-execution",
        "hean-marketdata.json": "hean-marketdata", "hean-operator.json": "hean-operator"}
METRIC = re.compile(r"\b(hean_[a-z_]+)\b")
RANGE = re.compile(r"\b(rate|increase|irate|delta|deriv|[a-z]+_over_time)\(([^()]|\([^()]*\))*?\[([^\]]+)\]")


def documented() -> dict[str, str]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    return {m.group(1): m.group(2)
            for m in re.finditer(r"^\| `(hean_[a-z_]+)` \| (gauge|counter|histogram) \|", text, re.M)}


def load_builder():
    spec = importlib.util.spec_from_file_location("hean_dash_build", DASH / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def panel_queries(board: dict) -> list[tuple[str, str]]:
    out = []
    for p in board["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def boards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASH.glob("*.json"))}


def test_dashboards_are_generated_from_build_py():
    rendered = load_builder().render()
    assert set(rendered) == set(UIDS) == {p.name for p in DASH.glob("*.json")}
    for name, text in rendered.items():
        assert (DASH / name).read_text() == text, f"{name} is stale: run python monitoring/dashboards/build.py"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_structure(name):
    raw = (DASH / name).read_text()
    b = json.loads(raw)
    assert "__inputs" not in b and "${DS_" not in raw and "DS_PROMETHEUS" not in raw
    assert b["uid"] == UIDS[name] and len(b["uid"]) <= 40
    assert "id" not in b or b["id"] is None, "a provisioned dashboard must not pin a database id"
    var = {v["name"]: v for v in b["templating"]["list"]}
    assert var["datasource"]["type"] == "datasource" and var["datasource"]["query"] == "prometheus"
    assert "namespace" in var
    if name != "hean-operator.json":
        assert "strategy" in var and var["strategy"]["type"] == "query"
    ids = [p["id"] for p in b["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 6
    for p in b["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_panel_queries_use_documented_metrics_and_rate_interval(name):
    b = json.loads((DASH / name).read_text())
    docs = documented()
    strategy_var = name != "hean-operator.json"
    for title, expr in panel_queries(b):
        names = METRIC.findall(expr)
        assert names, f"{title}: no hean metric in {expr!r}"
        for n in names:
            base = re.sub(r"_(bucket|count|sum)$", "", n)
            assert n in docs or (base in docs and docs[base] == "histogram"), f"{title}: unknown metric {n}"
            if n.endswith("_bucket"):
                assert docs[base] == "histogram"
            if docs.get(n) == "counter":
                assert re.search(rf"(rate|increase)\([^()]*{n}", expr), f"{title}: counter {n} used without rate()"
        for m in RANGE.finditer(expr):
            assert m.group(3) == "$__rate_interval", f"{title}: range [{m.group(3)}] should be $__rate_interval"
        assert 'namespace=~"$namespace"' in expr, f"{title}: not filtered by $namespace"
        if strategy_var:
            assert 'strategy=~"$strategy"' in expr, f"{title}: not filtered by $strategy"


def test_the_checks_catch_a_bad_query():
    docs = documented()
    assert "hean_worker_equity_dollars" not in docs
    bad = 'rate(hean_worker_fills_total{namespace=~"$namespace"}[5m])'
    assert [m.group(3) for m in RANGE.finditer(bad)] == ["5m"]


def test_fleet_covers_what_the_issue_asks():
    text = (DASH / "hean-fleet.json").read_text()
    for metric in ("hean_worker_equity_usdt", "hean_worker_pnl_usdt", "hean_worker_drawdown_ratio",
                   "hean_worker_risk_state", "hean_worker_entries_blocked_total"):
        assert metric in text
