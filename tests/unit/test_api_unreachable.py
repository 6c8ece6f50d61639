"""Defensive mode when the Kubernetes API is unreachable (issue 7): the engine opens
no new positions while ``api_unreachable`` is set but still closes positions at
their stops, take-profits and trend flips; the worker sets the flag after
``HEAN_API_UNREACHABLE_SECONDS`` without an answer and reports it in ``/why`` and
``hean_worker_api_reachable``. Real market data, no mocks (the end-to-end outage of
a real kube-apiserver is tests/chaos/test_api_outage.py)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from hean.marketdata import load_instruments, load_klines
from hean.worker.app import Worker, WorkerSettings
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine
from hean.worker.http import build_app

POLICY = dict(softMaxDrawdownPercent=5, hardMaxDrawdownPercent=10, maxDailyLossUsdt=1000, maxLeverage=3,
              maxPositionNotionalUsdt=20000, maxOpenPositions=4, maxOrdersPerMinute=60)
SYMBOLS = ("BTCUSDT", "ETHUSDT")
EXIT_REASONS = {"STOP_LOSS", "TAKE_PROFIT", "TREND_FLIP"}


@pytest.fixture(scope="module")
def rows(marketdata_dir):
    series = {s: load_klines(marketdata_dir, s, "1") for s in SYMBOLS}
    return sorted(((b.ts_ms, s, b) for s in SYMBOLS for b in series[s].bars[:30000]), key=lambda t: (t[0], t[1]))


@pytest.fixture(scope="module")
def instruments(marketdata_dir):
    inst = load_instruments(marketdata_dir)
    return {s: inst[("linear", s)] for s in SYMBOLS}


def engine(instruments) -> Engine:
    spec = StrategySpec.model_validate({"strategy": "impulse", "symbols": list(SYMBOLS), "capital": 10000,
                                        "riskPolicyRef": {"name": "p"}})
    return Engine("api", spec, RiskPolicySpec.model_validate(POLICY), instruments)


def test_unreachable_api_blocks_entries_but_exits_still_act(rows, instruments) -> None:
    e = engine(instruments)
    it = iter(rows)
    # Trade until a position is open with its stop/target set and nothing pending.
    for _, sym, bar in it:
        e.on_bar(sym, bar)
        open_ = [s for s in e.symbols.values() if e.ledger.position(s.symbol).size != 0
                 and s.stop_price is not None and s.pending is None]
        if open_ and all(s.pending is None for s in e.symbols.values()):
            break
    else:
        pytest.fail("no position opened in 30k real candles")
    held = {s.symbol for s in open_}
    fills_before = len(e.ledger.fills)
    assert e.trading_active()

    e.api_unreachable = True
    assert not e.trading_active()
    defensive = []
    for _, sym, bar in it:
        e.on_bar(sym, bar)
        defensive.append((sym, bar))
        if not e.ledger.open_positions() and len(defensive) > 2000:
            break
    new = e.ledger.fills[fills_before:]
    # No entry while defensive; every held position was closed by an exit rule.
    assert [f for f in new if f.reason == "IMPULSE_ENTRY"] == []
    assert new and {f.reason for f in new} <= EXIT_REASONS, {f.reason for f in new}
    assert {f.symbol for f in new} == held
    assert e.ledger.open_positions() == []
    assert e.reasons["API_UNREACHABLE"] > 0
    assert all(s.last_reason == "API_UNREACHABLE" for s in e.symbols.values())
    e.ledger.check()

    # Back: entries resume on the same data stream.
    e.api_unreachable = False
    assert e.trading_active()
    n = len(e.ledger.fills)
    for _, sym, bar in it:
        e.on_bar(sym, bar)
        if any(f.reason == "IMPULSE_ENTRY" for f in e.ledger.fills[n:]):
            break
    assert any(f.reason == "IMPULSE_ENTRY" for f in e.ledger.fills[n:]), "entries did not resume"


def scrape_reachable(client: TestClient) -> float:
    for fam in text_string_to_metric_families(client.get("/metrics").text):
        if fam.name == "hean_worker_api_reachable":
            return fam.samples[0].value
    raise AssertionError("hean_worker_api_reachable not exported")


def test_worker_goes_defensive_after_the_threshold_and_resumes(instruments) -> None:
    w = Worker(WorkerSettings(strategy_name="api", namespace="ns1", api_unreachable_seconds=5))
    w.engine, w.ready = engine(instruments), True
    client = TestClient(build_app(w))

    w.api_last_ok = time.monotonic() - 4.0  # within the threshold
    assert w.check_api() is True and w.engine.api_unreachable is False
    why = client.get("/why").json()
    assert why["apiReachable"] is True and why["apiUnreachableSeconds"] == 5
    assert scrape_reachable(client) == 1.0

    w.api_last_ok = time.monotonic() - 5.5  # past it
    assert w.check_api() is False
    assert w.engine.api_unreachable is True and not w.engine.trading_active()
    why = client.get("/why").json()
    assert why["apiReachable"] is False and why["tradingActive"] is False
    assert why["apiLastContactSecondsAgo"] >= 5.5 and why["apiUnreachableSince"] <= time.time()
    assert scrape_reachable(client) == 0.0
    assert w.api_outages == 1

    w.api_contact()  # the API answered
    assert w.check_api() is True and w.engine.api_unreachable is False
    assert client.get("/why").json()["apiReachable"] is True and scrape_reachable(client) == 1.0
    assert w.api_unreachable_since is None


def test_threshold_must_be_positive() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="api_unreachable_seconds"):
        WorkerSettings(strategy_name="x", api_unreachable_seconds=0)


def test_operator_passes_the_threshold_to_workers(monkeypatch) -> None:
    from hean.operator import handlers
    from hean.operator.reconcile import desired_pod

    monkeypatch.setenv("HEAN_WORKER_API_UNREACHABLE_SECONDS", "12.5")
    cfg = handlers.config_from_env()
    strategy = {"metadata": {"name": "s", "namespace": "n", "uid": "u"},
                "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1, "riskPolicyRef": {"name": "p"}}}
    env = {e["name"]: e.get("value") for e in desired_pod(strategy, cfg)["spec"]["containers"][0]["env"]}
    assert env["HEAN_API_UNREACHABLE_SECONDS"] == "12.5"
    for bad in ("0", "-3", "soon", "inf"):
        monkeypatch.setenv("HEAN_WORKER_API_UNREACHABLE_SECONDS", bad)
        with pytest.raises(ValueError, match="HEAN_WORKER_API_UNREACHABLE_SECONDS"):
            handlers.config_from_env()
