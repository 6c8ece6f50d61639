"""Exchange execution and reconciliation through real pybit (REST and the private
WebSocket) against the test exchange: no duplicate order, no lost or double fill, a
consistent ledger after rejects, and repairs toward the exchange."""

from __future__ import annotations

import asyncio
import tempfile
import time
from decimal import Decimal

import pytest

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.worker.bybit import BybitClient, endpoints_for
from hean.worker.bybit.budget import RateBudget
from hean.worker.bybit.runtime import B_NOT_RECONCILED, Blocks, ExchangeRuntime, fetch_instruments
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine

D = Decimal


def make_engine(x, name="exe"):
    spec = StrategySpec.model_validate({"strategy": "impulse", "symbols": ["BTCUSDT"], "mode": "testnet",
                                        "capital": 10000, "riskPolicyRef": {"name": "p"},
                                        "marketData": {"source": "live"}, "credentialsSecretRef": {"name": "k"}})
    pol = RiskPolicySpec.model_validate({"maxDailyLossUsdt": 1e6, "maxPositionNotionalUsdt": 1e6})
    eng = Engine(name, spec, pol, fetch_instruments(x.rest_url, "linear", ["BTCUSDT"]))
    eng.symbols["BTCUSDT"].mark = x.last_price("BTCUSDT")
    return eng


def runtime(x, acc, eng, **kw):
    blocks = Blocks()
    blocks.engine = eng
    rt = ExchangeRuntime(eng, "ns", eng.name, endpoints_for("testnet", acc.env), tempfile.mkdtemp(), blocks,
                         reconcile_seconds=kw.pop("reconcile_seconds", 60), timeout=kw.pop("timeout", 5), env=acc.env)
    rt.execution.lookup_delay = 0.2
    return rt


async def until(pred, timeout=10.0, what="condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def exchange_execs(x, acc):
    return [e for e in x.accounts[acc.key].executions]


async def started(x, acc, eng, **kw):
    rt = runtime(x, acc, eng, **kw)
    task = asyncio.create_task(rt.run())
    await until(lambda: rt.execution.reconciled and rt.private.connected(), what="reconciled + private stream")
    await until(lambda: eng.blocked_reason is None, what="unblocked")
    return rt, task


def queue(eng, side="Buy", qty="0.010", reduce_only=False):
    st = eng.symbols["BTCUSDT"]
    return eng._queue(st, side, D(qty), reduce_only, "TEST", D("500"), D("900"))


def assert_consistent(x, acc, eng):
    """Every exchange execution booked exactly once; ledger == exchange position."""
    execs = exchange_execs(x, acc)
    booked = [f.exec_id for f in eng.ledger.fills if not f.exec_id.startswith("reconcile-")]
    assert sorted(booked) == sorted(e["execId"] for e in execs)
    eng.ledger.check()
    pos = x.accounts[acc.key].positions.get("BTCUSDT")
    assert eng.ledger.position("BTCUSDT").size == (pos.size if pos else 0)
    assert all(n == 1 for n in x.order_creates.values())


def test_orders_fill_once_through_the_private_stream(bybit_exchange, account):
    x = bybit_exchange

    async def main():
        eng = make_engine(x)
        rt, task = await started(x, account, eng)
        o = queue(eng)
        await until(lambda: eng.symbols["BTCUSDT"].pending is None, what="fill")
        assert eng.ledger.position("BTCUSDT").size == D("0.010")
        st = eng.symbols["BTCUSDT"]
        assert st.stop_price < eng.ledger.position("BTCUSDT").entry_price < st.target_price
        queue(eng, "Sell", "0.010", True)
        await until(lambda: eng.ledger.position("BTCUSDT").size == 0, what="close")
        await rt.execution.reconcile()  # REST sees the same executions: nothing new
        assert rt.execution.counters["executions_duplicate_ignored"] >= 2
        assert rt.execution.counters["fills_ws"] == 2 and not rt.execution.counters["fills_rest"]
        assert o.order_link_id.startswith(rt.ids.prefix) and len(o.order_link_id) <= 36
        assert_consistent(x, account, eng)
        task.cancel()

    asyncio.run(main())


def test_timeout_after_accept_is_looked_up_not_resubmitted(bybit_exchange, account):
    x = bybit_exchange

    async def main():
        eng = make_engine(x)
        rt, task = await started(x, account, eng, timeout=0.5)
        x.inject("timeout_after_accept", "/v5/order/create", delay=1.2)
        o = queue(eng)
        await until(lambda: rt.execution.counters["orders_found_by_lookup"] == 1, what="lookup after timeout")
        assert eng.symbols["BTCUSDT"].pending is None
        assert rt.execution.counters["outcome_unknown"] == 1 and rt.execution.counters["orders_found_by_lookup"] == 1
        assert x.order_creates[(account.key, o.order_link_id)] == 1 and not rt.execution.counters["resubmits"]
        await asyncio.sleep(0.3)
        assert_consistent(x, account, eng)
        task.cancel()

    asyncio.run(main())


def test_5xx_before_the_matching_engine_resubmits_with_the_same_id(bybit_exchange, account):
    x = bybit_exchange

    async def main():
        eng = make_engine(x)
        rt, task = await started(x, account, eng)
        x.inject("http_status", "/v5/order/create", status=502)
        o = queue(eng)
        await until(lambda: eng.symbols["BTCUSDT"].pending is None, what="fill after 502")
        assert rt.execution.counters["resubmits"] == 1 and x.order_creates[(account.key, o.order_link_id)] == 1
        assert_consistent(x, account, eng)
        task.cancel()

    asyncio.run(main())


def test_partial_fills_rejects_and_a_dropped_private_stream(bybit_exchange, account):
    x = bybit_exchange

    async def main():
        eng = make_engine(x)
        rt, task = await started(x, account, eng)
        # the native matcher finds only half the qty at the best ask: a market order (IOC)
        # fills that much and the rest is cancelled (Bybit: PartiallyFilledCanceled)
        x.inject("partial_fill")
        o = queue(eng, qty="0.020")
        await until(lambda: eng.symbols["BTCUSDT"].pending is None, what="partial fill, rest cancelled")
        assert eng.ledger.position("BTCUSDT").size == D("0.010") and len(eng.ledger.fills) == 1
        assert x.accounts[account.key].by_link[o.order_link_id].status == "PartiallyFilledCanceled"
        assert rt.execution.rejects["EXCHANGE_ORDER_PARTIALLYFILLEDCANCELED"] == 1
        queue(eng, qty="0.010")
        await until(lambda: eng.symbols["BTCUSDT"].pending is None and len(eng.ledger.fills) == 2, what="top up")
        assert eng.ledger.position("BTCUSDT").size == D("0.020")
        # a reject leaves the ledger as it was and frees the symbol
        x.inject("reject", "/v5/order/create", retCode=110007, retMsg="ab not enough for new order")
        before = list(eng.ledger.fills)
        queue(eng)
        await until(lambda: eng.symbols["BTCUSDT"].pending is None, what="reject")
        assert eng.ledger.fills == before and eng.rejects["EXCHANGE_INSUFFICIENT_BALANCE"] == 1
        eng.ledger.check()
        # fills while the private stream is down arrive through REST reconciliation
        x.inject("ws_drop", channel="private")
        await until(lambda: not rt.private.connected(), what="drop")
        queue(eng, "Sell", "0.020", True)
        await until(lambda: eng.ledger.position("BTCUSDT").size == 0, 15, what="fill via reconnect/reconcile")
        assert rt.private.reconnects >= 1
        await asyncio.sleep(0.5)
        assert_consistent(x, account, eng)
        task.cancel()

    asyncio.run(main())


def test_reconciliation_repairs_toward_the_exchange_and_blocks_when_impossible(bybit_exchange, account):
    x = bybit_exchange

    async def main():
        # Another process of this strategy (same prefix) traded before this worker
        # started: the fills are booked from REST, the sequence moves past them.
        eng0 = make_engine(x, "recon")
        rt0 = runtime(x, account, eng0)
        link = rt0.ids.next()
        c = BybitClient(account.key, account.secret, x.rest_url, budget=RateBudget("r", state_dir=tempfile.mkdtemp()))
        c.place_order("linear", "BTCUSDT", "Buy", "0.005", link)
        # a position change from outside any order of ours (e.g. a manual trade)
        x.accounts[account.key].positions["BTCUSDT"].size += D("0.003")
        eng = make_engine(x, "recon")
        repairs = []
        rt = runtime(x, account, eng)
        rt.ids.seq = 0
        rt.execution.on_repair = repairs.append
        await asyncio.sleep(1.2)  # a fill newer than the position read defers the position check
        report = await rt.execution.reconcile()
        assert report["missedFills"] == 1 and report["positionRepairs"] == 1
        assert eng.ledger.position("BTCUSDT").size == D("0.008")
        assert rt.ids.seq >= rt.ids.seq_of(link) and rt.ids.next() != link
        assert repairs and "positionRepairs=1" in repairs[0]
        eng.ledger.check()
        # an exchange that refuses the keys: the worker does not trade
        bad = make_engine(x, "blocked")
        env = dict(account.env, BYBIT_API_SECRET="wrong")
        blocks = Blocks()
        blocks.engine = bad
        rtb = ExchangeRuntime(bad, "ns", "blocked", endpoints_for("testnet", env), tempfile.mkdtemp(), blocks, env=env)
        assert await rtb.reconcile_once() is False
        assert bad.blocked_reason == B_NOT_RECONCILED and not bad.trading_active()
        assert "INVALID_SIGNATURE" in rtb.execution.last_reconcile_error or "10004" in rtb.execution.last_reconcile_error

    asyncio.run(main())


def test_missing_credentials_are_a_clear_error():
    from hean.worker.bybit.runtime import credentials_from_env

    with pytest.raises(ValueError, match="BYBIT_API_SECRET"):
        credentials_from_env({"BYBIT_API_KEY": "abc"})
    try:
        credentials_from_env({"BYBIT_API_KEY": "", "BYBIT_API_SECRET": "s3cr3t"})
    except ValueError as e:
        assert "BYBIT_API_KEY" in str(e) and "s3cr3t" not in str(e)


def test_a_skewed_clock_is_fixed_for_rest_and_the_private_stream(bybit_exchange, account):
    x = bybit_exchange

    async def main():
        eng = make_engine(x)
        rt, task = await started(x, account, eng)
        x.set_clock_skew(30_000)  # the exchange's clock runs 30 s ahead of ours
        x.inject("ws_drop", channel="private")
        await until(lambda: rt.private.reconnects >= 1, what="private reconnect")
        queue(eng)
        await until(lambda: eng.symbols["BTCUSDT"].pending is None, what="fill with a skewed clock")
        assert rt.client.errors["clock_fixed"] >= 1 and abs(rt.client.http.offset_ms - 30_000) < 1_000
        # the private stream authenticated again despite the skew (fresh fills over WS)
        # (connected is not enough: a fill before the auth answer would only reach REST)
        await until(lambda: rt.private.connected() and rt.execution.authenticated, 20, what="private up and authenticated")
        queue(eng, "Sell", "0.010", True)
        await until(lambda: rt.execution.counters["fills_ws"] >= 1 and eng.ledger.position("BTCUSDT").size == 0,
                    what="fill over the re-authenticated stream")
        # one refusal (the skew was not measured yet), then the clock was fixed and the
        # stream re-authenticated; a fill missed meanwhile came through reconciliation
        assert rt.execution.counters["auth_failures"] == 1 and rt.execution.authenticated
        assert_consistent(x, account, eng)
        task.cancel()

    asyncio.run(main())


def test_dead_man_switch_where_the_account_allows_it(bybit_exchange, account):
    x = bybit_exchange
    x.dcp_time_scale = 0.05  # Bybit's 10 s window becomes 0.5 s here
    x.accounts[account.key].dcp_allowed = True

    async def main():
        eng = make_engine(x)
        rt = ExchangeRuntime(eng, "ns", eng.name, endpoints_for("testnet", account.env), tempfile.mkdtemp(), Blocks(),
                             reconcile_seconds=60, env=account.env, dcp_seconds=10)
        task = asyncio.create_task(rt.run())
        await until(lambda: rt.dcp_state == "armed" and rt.private.connected() and rt.execution.authenticated,
                    what="armed")
        c = BybitClient(account.key, account.secret, x.rest_url, budget=RateBudget("d", state_dir=tempfile.mkdtemp()))
        link = rt.ids.next()
        c.place_order("linear", "BTCUSDT", "Buy", "0.010", link, order_type="Limit", price="1000.0")
        assert c.order_by_link("linear", link)["orderStatus"] == "New"
        task.cancel()  # the worker dies: its private stream goes away
        await asyncio.gather(task, return_exceptions=True)
        await until(lambda: x.accounts[account.key].dcp_cancelled == 1, 5, what="DCP cancel")
        assert c.order_by_link("linear", link)["orderStatus"] == "Cancelled"
        # an account without the feature: logged, counted, trading goes on
        x.accounts[account.key].dcp_allowed = False
        eng2 = make_engine(x, "nodcp")
        rt2 = runtime(x, account, eng2)
        rt2.dcp_seconds, rt2.dcp_state = 10, "pending"
        task2 = asyncio.create_task(rt2.run())
        await until(lambda: rt2.dcp_state.startswith("unavailable"), what="refused")
        assert "PERMISSION_DENIED" in rt2.dcp_state and rt2.execution.counters["dcp_unavailable"] == 1
        await until(lambda: eng2.blocked_reason is None, what="trading without DCP")
        task2.cancel()
        await asyncio.gather(task2, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        x.dcp_time_scale = 1.0
    with pytest.raises(ValueError, match="deadManSwitchSeconds"):
        ExchangeRuntime(make_engine(x, "bad"), "ns", "bad", endpoints_for("testnet", account.env), tempfile.mkdtemp(),
                        Blocks(), env=account.env, dcp_seconds=2)
