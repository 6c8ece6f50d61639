"""The worker's and the operator's Prometheus metrics, on a real engine fed real
recorded candles and on the real operator metrics module (its own HTTP server).

Checks the naming rules of docs/metrics.md on the actual exposition (one prefix, base
units, ``_total`` counters, bounded labels: never an order id), that every name the
catalogue documents is exported and vice versa, and that the figures agree with the
engine's own ledger.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from decimal import Decimal as D
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hean.marketdata import load_instruments, load_klines
from hean.worker.app import Worker, WorkerSettings
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine
from hean.worker.http import WorkerCollector, WorkerObservations, build_app

ROOT = Path(__file__).resolve().parents[2]
POLICY = dict(softMaxDrawdownPercent=5, hardMaxDrawdownPercent=10, maxDailyLossUsdt=1000, maxLeverage=3,
              maxPositionNotionalUsdt=20000, maxOpenPositions=4, maxOrdersPerMinute=60)
ALLOWED_LABELS = {"namespace", "strategy", "mode", "symbol", "state", "reason", "outcome", "level", "liquidity",
                  "venue", "category", "kind", "phase", "le"}
UNIT_SUFFIXES = ("_usdt", "_seconds", "_ratio", "_bps", "_total", "_positions", "_pending", "_active", "_up",
                 "_info", "_finished", "_state", "_quarantined", "_backlog", "_workers", "_objects",
                 "_reachable")


def catalogue() -> dict[str, str]:
    """``name -> type`` from the tables of docs/metrics.md (rows ``| `name` | type | ...``)."""
    out = {}
    for m in re.finditer(r"^\| `(hean_[a-z_]+)` \| (gauge|counter|histogram) \|", (ROOT / "docs/metrics.md").read_text(),
                         re.M):
        out[m.group(1)] = m.group(2)
    assert len(out) > 30, "docs/metrics.md should document the catalogue in tables"
    return out


@pytest.fixture(scope="module")
def worker(marketdata_dir):
    inst = load_instruments(marketdata_dir)
    symbols = ("BTCUSDT", "ETHUSDT")
    series = {s: load_klines(marketdata_dir, s, "1") for s in symbols}
    spec = StrategySpec.model_validate({"strategy": "impulse", "symbols": list(symbols), "capital": 10000,
                                        "riskPolicyRef": {"name": "p"}})
    e = Engine("obs", spec, RiskPolicySpec.model_validate(POLICY), {s: inst[("linear", s)] for s in symbols})
    w = Worker(WorkerSettings(strategy_name="obs", namespace="ns1"))
    w.engine, w.ready = e, True
    rows = sorted(((b.ts_ms, s, b) for s in symbols for b in series[s].bars[:12000]), key=lambda t: (t[0], t[1]))
    return w, rows


def scrape(app_or_collector) -> dict:
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry(auto_describe=False)
    reg.register(app_or_collector)
    text = generate_latest(reg).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return {"text": text, "families": fams}


def sample(fams, name, **labels):
    for f in fams.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError(f"{name} {labels} not exported")


def test_worker_metrics_follow_the_engine_and_the_naming_rules(worker):
    w, rows = worker
    obs = WorkerObservations()
    col = WorkerCollector(w, obs)
    first = scrape(col)["families"]
    assert sample(first, "hean_worker_fills_total", strategy="obs") == 0
    for _, s, b in rows:
        w.engine.on_bar(s, b)
    out = scrape(col)
    fams, text = out["families"], out["text"]
    e = w.engine
    assert len(e.ledger.fills) > 5, "12k real candles should produce fills"
    assert sample(fams, "hean_worker_equity_usdt", namespace="ns1", strategy="obs", mode="paper") == float(e.equity())
    assert sample(fams, "hean_worker_fills_total") == len(e.ledger.fills)
    assert sample(fams, "hean_worker_fees_usdt_total") == float(e.ledger.fees)
    assert sum(sample(fams, "hean_worker_risk_state", state=s) for s in ("NORMAL", "SOFT_BRAKE", "QUARANTINE",
                                                                          "HARD_STOP")) == 1
    assert sample(fams, "hean_worker_drawdown_limit_ratio", level="hard") == pytest.approx(0.10)
    # every fill observed once in the slippage histogram, at the paper model's 2 bps
    assert sample(fams, "hean_worker_fill_slippage_bps_count") == len(e.ledger.fills)
    assert sample(fams, "hean_worker_fill_slippage_bps_bucket", le="2.0") == len(e.ledger.fills)
    assert sample(fams, "hean_worker_fill_slippage_bps_bucket", le="1.0") == 0
    taker = sum(f.qty * f.price for f in e.ledger.fills if f.liquidity == "taker")
    assert D(str(sample(fams, "hean_worker_fill_notional_usdt_total", liquidity="taker"))) == pytest.approx(taker)
    outcomes = {o: sample(fams, "hean_worker_order_outcomes_total", outcome=o) for o in ("filled", "rejected",
                                                                                         "cancelled")}
    assert outcomes["filled"] == len(e.ledger.fills)
    assert outcomes["rejected"] == sum(e.rejects.values())
    assert sample(fams, "hean_worker_reconcile_mismatches_total") == 0
    assert sample(fams, "hean_worker_marketdata_events_total") == len(rows)
    # a second scrape with no new fills must not double-count the histogram
    again = scrape(col)["families"]
    assert sample(again, "hean_worker_fill_slippage_bps_count") == len(e.ledger.fills)
    # naming rules on the real exposition
    order_ids = {f.order_link_id for f in e.ledger.fills}
    for fam in fams.values():
        assert fam.name.startswith("hean_worker_"), fam.name
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), fam.name
        for s in fam.samples:
            assert set(s.labels) <= ALLOWED_LABELS, (s.name, s.labels)
            assert not (set(s.labels.values()) & order_ids), f"{s.name} carries an order id"
        assert fam.name.endswith(UNIT_SUFFIXES) or fam.type in ("counter", "histogram"), fam.name
    assert "orderLinkId" not in text and not any(oid in text for oid in order_ids)


def test_worker_reports_a_broken_ledger_as_a_reconcile_mismatch(worker):
    w, rows = worker
    col = WorkerCollector(w, WorkerObservations())
    assert sample(scrape(col)["families"], "hean_worker_reconcile_mismatches_total") == 0
    fees = w.engine.ledger.fees
    try:
        w.engine.ledger.fees = fees + D("1")  # the account no longer matches its fill history
        w.engine.ledger.fills.append(w.engine.ledger.fills[-1])  # new fill count -> re-check
        assert sample(scrape(col)["families"], "hean_worker_reconcile_mismatches_total") == 1
    finally:
        w.engine.ledger.fees = fees
        w.engine.ledger.fills.pop()


def test_observation_hooks_reject_non_finite_values():
    obs = WorkerObservations()
    obs.observe_order_latency(0.2)
    with pytest.raises(ValueError, match="finite"):
        obs.observe_order_latency(float("nan"))
    assert obs.order_latency.count == 1 and obs.order_latency.counts[obs.order_latency.bounds.index(0.25)] == 1


def test_worker_and_catalogue_agree(worker):
    w, _ = worker
    app = build_app(w)
    assert isinstance(w.obs, WorkerObservations)
    fams = scrape(WorkerCollector(w, w.obs))["families"]
    exported = {f.name: f.type for f in fams.values()}
    documented = {n: t for n, t in catalogue().items() if n.startswith("hean_worker_")}
    exposed = {(n + "_total" if t == "counter" else n): t for n, t in exported.items()}
    assert set(exposed) == set(documented), (
        f"undocumented: {sorted(set(exposed) - set(documented))}; documented but missing: "
        f"{sorted(set(documented) - set(exposed))}")
    for n, t in documented.items():
        assert exposed[n] == t, n
    assert app is not None


def test_operator_metrics_served_with_bounded_labels():
    from hean.operator import metrics as om

    class State:  # the attributes OperatorState exposes to the collector (no API client needed)
        pods = {("a", "s1"): {"status": {"phase": "Running"}}, ("a", "s2"): {"status": {"phase": "Pending"}},
                ("b", "s3"): {"status": {}}}
        strategies = {("a", "s1"): {}, ("a", "s2"): {}, ("b", "s3"): {}}
        policies = {("a", "p"): {}}
        quarantines = {}
        scheduled = {("a", "s2")}

    @om.timed("TradingStrategy")
    async def ok(state):
        return 1

    @om.timed("TradingStrategy")
    async def failing(state):
        raise RuntimeError("boom")

    @om.timed("RiskPolicy")
    async def caught(state):
        om.record_error("RiskPolicy")

    def value(text, name, **labels):
        for f in text_string_to_metric_families(text):
            for s in f.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        raise KeyError(name)

    om.attach(State())
    server = om.serve("127.0.0.1", 0) or om.start_http_server(0, addr="127.0.0.1", registry=om.REGISTRY)[0]
    port = server.server_port
    try:
        get = lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()  # noqa: E731
        before = get()
        n0 = value(before, "hean_operator_reconciles_total", kind="TradingStrategy")
        e0 = value(before, "hean_operator_reconcile_errors_total", kind="TradingStrategy")
        rp_ok0 = value(before, "hean_operator_last_successful_reconcile_timestamp_seconds", kind="RiskPolicy")
        asyncio.run(ok(State()))
        with pytest.raises(RuntimeError):
            asyncio.run(failing(State()))
        asyncio.run(caught(State()))
        text = get()
        assert value(text, "hean_operator_reconciles_total", kind="TradingStrategy") == n0 + 2
        assert value(text, "hean_operator_reconcile_errors_total", kind="TradingStrategy") == e0 + 1
        assert value(text, "hean_operator_reconcile_duration_seconds_count", kind="TradingStrategy") >= 2
        # a pass that recorded an error is not a success
        assert value(text, "hean_operator_last_successful_reconcile_timestamp_seconds", kind="RiskPolicy") == rp_ok0
        assert value(text, "hean_operator_workers", phase="Running") == 1
        assert value(text, "hean_operator_workers", phase="Pending") == 1
        assert value(text, "hean_operator_workers", phase="Unknown") == 1
        assert value(text, "hean_operator_reconcile_backlog") == 1
        assert value(text, "hean_operator_objects", kind="TradingStrategy") == 3
        assert value(text, "hean_operator_up") == 1
        for f in text_string_to_metric_families(text):
            if f.name.startswith("hean_"):
                assert f.name.startswith("hean_operator_")
                for s in f.samples:
                    assert set(s.labels) <= ALLOWED_LABELS, (s.name, s.labels)
        documented = {n for n in catalogue() if n.startswith("hean_operator_")}
        exposed = {(f.name + "_total" if f.type == "counter" else f.name) for f in text_string_to_metric_families(text)
                   if f.name.startswith("hean_operator_")}
        assert exposed == documented, (sorted(exposed ^ documented))
    finally:
        server.shutdown()
        server.server_close()
        om.attach(None)


def test_operator_metrics_config_errors_are_clear(monkeypatch):
    from hean.operator import metrics as om

    monkeypatch.setenv("HEAN_METRICS_PORT", "eighty")
    with pytest.raises(ValueError, match="HEAN_METRICS_PORT must be an integer"):
        om.serve()
    with pytest.raises(ValueError, match="0..65535"):
        om.serve(port=70000)
    assert om.serve(port=0) is None
    with pytest.raises(ValueError, match="unknown reconcile kind"):
        om.timed("Pod")


def test_watch_namespaces_parsing():
    import importlib.util

    spec = importlib.util.find_spec("hean.operator.__main__")
    src = Path(spec.origin).read_text()
    ns: dict = {"__name__": "not_main"}
    exec(compile(src.replace("from . import handlers", "pass  #"), spec.origin, "exec"), ns)
    parse = ns["watch_namespaces"]
    assert parse(None) == [] and parse("") == [] and parse(" , ") == []
    assert parse("b, a,a") == ["a", "b"]
    with pytest.raises(ValueError, match="'Bad_NS' is not a valid namespace name"):
        parse("ok,Bad_NS")
