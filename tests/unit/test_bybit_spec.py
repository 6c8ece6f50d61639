"""``spec.bybit``: the per-strategy Bybit connection settings. The CRD schema (offline,
with the CEL mirrors of test_crds_static) and the worker's pydantic model agree on
defaults and bounds; the worker's runtime honours each value against the test
exchange (order-book depth subscribed, recv_window signed, Disconnection Protect
window and topic, stale threshold, reconcile interval). The real API server's
verdicts are in tests/e2e/test_bybit_spec.py."""

from __future__ import annotations

import asyncio
import copy
import tempfile
import time

import pytest
from pydantic import ValidationError

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.worker.bybit import endpoints_for
from hean.worker.bybit.runtime import (Blocks, ConnectionSettings, ExchangeRuntime, LiveData, connection_settings,
                                       fetch_instruments)
from hean.worker.config import BybitSpec, RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine

from test_bybit_execution import until
from test_crds_static import apply_defaults, check_object, root_schema

BASE = {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000, "riskPolicyRef": {"name": "p"},
        "marketData": {"source": "live"}}


def obj(**spec):
    return {"apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy", "metadata": {"name": "b"},
            "spec": {**copy.deepcopy(BASE), **spec}}


def test_crd_defaults_are_the_worker_defaults():
    spec = apply_defaults(root_schema("TradingStrategy"), obj(bybit={}))["spec"]
    assert spec["bybit"] == {"orderbookDepth": 50, "staleSeconds": 10, "reconcileSeconds": 30,
                             "deadManSwitchSeconds": 0, "recvWindowMs": 5000}
    assert BybitSpec().model_dump() == spec["bybit"]
    # absent block: no defaults injected (the operator-wide env settings apply)
    assert "bybit" not in apply_defaults(root_schema("TradingStrategy"), obj())["spec"]


@pytest.mark.parametrize("bad,field", [
    ({"bybit": {"orderbookDepth": 25}}, "orderbookDepth"),
    ({"bybit": {"orderbookDepth": 500}}, "orderbookDepth"),
    ({"bybit": {"deadManSwitchSeconds": 2}, "mode": "testnet", "credentialsSecretRef": {"name": "k"}},
     "deadManSwitchSeconds"),
    ({"bybit": {"deadManSwitchSeconds": 301}, "mode": "testnet", "credentialsSecretRef": {"name": "k"}},
     "deadManSwitchSeconds"),
    ({"bybit": {"deadManSwitchSeconds": 30}}, "deadManSwitchSeconds"),  # paper sends no orders
    ({"bybit": {"staleSeconds": 0.5}}, "staleSeconds"),
    ({"bybit": {"reconcileSeconds": 4}}, "reconcileSeconds"),
    ({"bybit": {"recvWindowMs": 999}}, "recvWindowMs"),
    ({"bybit": {}, "marketData": {"source": "replay"}}, "bybit"),
])
def test_bad_values_are_refused_by_the_schema_and_by_the_worker(bad, field):
    errors = check_object(obj(**bad))
    assert errors and any(field in e for e in errors), errors
    with pytest.raises(ValidationError) as e:
        StrategySpec.model_validate({**copy.deepcopy(BASE), **bad})
    assert field in str(e.value)


def test_good_values_pass_both():
    spec = {"bybit": {"orderbookDepth": 1000, "deadManSwitchSeconds": 3, "recvWindowMs": 60000},
            "mode": "testnet", "credentialsSecretRef": {"name": "k"}}
    assert check_object(obj(**spec)) == []
    s = StrategySpec.model_validate({**copy.deepcopy(BASE), **spec})
    assert (s.bybit.orderbookDepth, s.bybit.deadManSwitchSeconds, s.bybit.recvWindowMs) == (1000, 3, 60000)


def test_spec_wins_over_the_environment_defaults():
    class Env:
        bybit_orderbook_depth, bybit_stale_seconds, bybit_reconcile_seconds = 200, 7.0, 40.0
        bybit_dcp_seconds, bybit_recv_window_ms = 0, 6000

    without = StrategySpec.model_validate(BASE)
    assert connection_settings(without, Env()) == ConnectionSettings(200, 7.0, 40.0, 0, 6000, "env")
    assert connection_settings(without) == ConnectionSettings()
    with_spec = StrategySpec.model_validate({**BASE, "bybit": {"orderbookDepth": 1}})
    assert connection_settings(with_spec, Env()) == ConnectionSettings(1, 10.0, 30.0, 0, 5000, "spec")


def test_the_runtime_honours_spec_bybit_against_the_exchange(bybit_exchange, account):
    x = bybit_exchange
    x.dcp_time_scale = 0.1
    x.accounts[account.key].dcp_allowed = True
    spec = StrategySpec.model_validate({**BASE, "mode": "testnet", "credentialsSecretRef": {"name": "k"},
                                        "bybit": {"orderbookDepth": 200, "staleSeconds": 1, "reconcileSeconds": 5,
                                                  "deadManSwitchSeconds": 3, "recvWindowMs": 7000}})
    pol = RiskPolicySpec.model_validate({"maxDailyLossUsdt": 1e6, "maxPositionNotionalUsdt": 1e6})

    async def main():
        eng = Engine("honour", spec, pol, fetch_instruments(x.rest_url, "linear", ["BTCUSDT"]))
        cs = connection_settings(eng.spec)
        blocks = Blocks()
        blocks.engine = eng
        ep = endpoints_for("testnet", account.env)
        live = LiveData(eng, ep, "1", cs.orderbook_depth, cs.stale_seconds, blocks)
        rt = ExchangeRuntime(eng, "ns", "honour", ep, tempfile.mkdtemp(), blocks, cs.reconcile_seconds,
                             env=account.env, dcp_seconds=cs.dcp_seconds, recv_window_ms=cs.recv_window_ms)
        tasks = [asyncio.create_task(live.run()), asyncio.create_task(rt.run())]
        await until(lambda: rt.dcp_state == "armed" and rt.private.connected(), what="armed")
        acc = x.accounts[account.key]
        # recv_window of every signed request; Disconnection Protect window, product and topic
        assert acc.recv_windows == {7000}
        assert (acc.dcp_window_s, acc.dcp_product) == (3, "DERIVATIVES")
        assert any("dcp.future" in x.subs.get(w, ()) for w in acc.private_ws)
        # the order-book depth subscribed on the public stream
        await until(lambda: any("orderbook.200.BTCUSDT" in t for t in x.subs.values()), what="orderbook.200")
        assert not any("orderbook.50.BTCUSDT" in t for t in x.subs.values())
        # the stale threshold: 1 s of silence blocks entries (the default 10 s would not)
        await until(lambda: eng.blocked_reason is None, what="unblocked")
        x.inject("stale", seconds=3)
        t0 = time.monotonic()
        await until(lambda: live.feed.stale, 3, what="stale after 1 s")
        assert time.monotonic() - t0 < 2.5
        await until(lambda: eng.blocked_reason == "MARKET_DATA_STALE", 1, what="entries blocked")
        # the reconcile interval: a second periodic reconciliation about 5 s after the first
        n = rt.execution.counters["reconciles"]
        await until(lambda: rt.execution.counters["reconciles"] > n, 7, what="periodic reconcile")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        x.dcp_time_scale = 1.0


def test_a_change_of_spec_bybit_replaces_the_worker_and_its_absence_changes_nothing():
    import hashlib
    import json

    from hean.operator import reconcile as rc

    spec = {**copy.deepcopy(BASE), "mode": "testnet", "credentialsSecretRef": {"name": "k"}}
    # the hash a spec without spec.bybit had before the field existed (recomputed here)
    old_fields = ("strategy", "symbols", "category", "mode", "capital", "maxLeverage", "marketData",
                  "credentialsSecretRef")
    old = hashlib.sha256(json.dumps({k: spec.get(k) for k in old_fields}, sort_keys=True,
                                    separators=(",", ":")).encode()).hexdigest()[:16]
    assert rc.structural_hash(spec) == old
    a = rc.structural_hash({**spec, "bybit": {"orderbookDepth": 50}})
    b = rc.structural_hash({**spec, "bybit": {"orderbookDepth": 200}})
    assert len({old, a, b}) == 3
    # the worker sees the same: a changed spec.bybit is a structural change
    from hean.worker.app import structural

    assert structural({**spec, "bybit": {"orderbookDepth": 50}}) != structural({**spec, "bybit": {"orderbookDepth": 200}})
