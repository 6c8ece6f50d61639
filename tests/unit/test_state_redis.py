"""The Redis state layer (hean.worker.state) against a real redis-server (AOF on):
fencing, write-ahead intents, exactly-once fills, the orderLinkId sequence, the shared
rate budget, paper durability across a restart, an unreachable Redis, and the
operator's key cleanup."""

from __future__ import annotations

import asyncio
import json
import signal
from decimal import Decimal as D

import pytest
import redis

from hean.marketdata import load_instruments, load_klines
from hean.worker.bybit.orderlink import OrderLinkIds, prefix_for
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine
from hean.worker.ledger import Fill, Ledger
from hean.worker.state import (
    FENCED,
    STATE_DOWN,
    Fenced,
    PaperDurability,
    RedisOrderLinkIds,
    RedisRateBudget,
    StateStore,
    StateUnavailable,
    WorkerState,
    delete_strategy_keys,
    strategy_prefix,
)
from redisserver import redis_server, redis_url  # noqa: F401 - fixtures


def fill(i: int, side="Buy", qty="0.010", price="60000.0", sym="BTCUSDT") -> Fill:
    return Fill(f"ex-{i}", f"link-{i}", sym, side, D(qty), D(price), D("0.33"), 1_700_000_000_000 + i)


def test_key_prefix_is_hash_tagged_per_strategy():
    assert strategy_prefix("team-a", "btc") == "hean:{team-a/btc}:"
    assert strategy_prefix("team-a", "btc") != strategy_prefix("team-b", "btc")


def test_lease_fencing_refuses_a_zombie(redis_url):
    async def main():
        a = StateStore(redis_url, "ns", "s1", "pod-a", lease_ttl=0.4)
        b = StateStore(redis_url, "ns", "s1", "pod-b", lease_ttl=0.4)
        assert await a.acquire() and a.token == 1
        assert await a.record_intent("l-1", {"symbol": "BTCUSDT"}) is True
        assert await a.record_intent("l-1", {"symbol": "BTCUSDT"}) is False  # same order again: no new intent
        assert not await b.acquire()  # a's lease is live: never broken
        await asyncio.sleep(0.6)  # a stalls (a partitioned node): its lease expires
        assert await b.acquire() and b.token == 2
        # the zombie wakes up: both kinds of write are refused atomically
        with pytest.raises(Fenced):
            await a.record_intent("l-2", {"symbol": "BTCUSDT"})
        assert a.fenced
        with pytest.raises(Fenced):
            await a.commit(fills=[fill(1)])
        assert not await a.renew()
        await b.record_intent("l-3", {"symbol": "BTCUSDT"})
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        assert set(r.hkeys("hean:{ns/s1}:intents")) == {"l-1", "l-3"}
        assert r.hlen("hean:{ns/s1}:fills") == 0
        ws = WorkerState(a)
        assert ws.blocked() == FENCED and ws.snapshot()["fenced"] is True
        for s in (a, b):
            await s.aclose()

    asyncio.run(main())


def test_fills_are_booked_exactly_once_into_the_ledger_stream(redis_url):
    async def main():
        s = StateStore(redis_url, "ns", "s2", "pod")
        await s.acquire()
        f1, f2 = fill(1), fill(2, "Sell", price="60100.0")
        assert await s.commit(fills=[f1], positions={"BTCUSDT": {"size": "0.010"}}) == 1
        assert await s.commit(fills=[f1, f2], blob=("engine", {"peakEquity": "10000"})) == 1
        assert await s.commit(fills=[f2]) == 0
        data = await s.load()
        assert data["fills"] == [f1, f2]  # Stream order, Decimals exact
        assert data["blobs"]["engine"] == {"peakEquity": "10000"}
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        assert r.xlen("hean:{ns/s2}:ledger") == 2 and r.hlen("hean:{ns/s2}:fills") == 2
        await s.aclose()

    asyncio.run(main())


def test_orderlink_sequence_in_redis_keeps_the_format_and_never_repeats(redis_url, tmp_path):
    async def main():
        s1 = StateStore(redis_url, "ns", "seq", "a")
        s2 = StateStore(redis_url, "ns", "seq", "b")
        ids1, ids2 = RedisOrderLinkIds("ns", "seq", s1, block=4), RedisOrderLinkIds("ns", "seq", s2, block=4)
        await ids1.start()
        await ids2.start()
        got = [ids1.next() for _ in range(10)] + [ids2.next() for _ in range(10)]
        await asyncio.sleep(0.05)
        got += [ids1.next() for _ in range(10)]
        assert len(set(got)) == len(got)
        file_ids = OrderLinkIds("ns", "seq", tmp_path)
        assert got[0].rsplit("-", 1)[0] == file_ids.next().rsplit("-", 1)[0] == prefix_for("ns", "seq")
        assert all(len(x) <= 36 for x in got)
        # ids the exchange has seen (e.g. after a lost Redis) push the sequence past them
        far = f"{ids1.prefix}-{'zz'}"  # b36 "zz" = 1295
        ids1.ensure_above([far])
        assert ids1.seq_of(ids1.next()) > 1295
        await s1.aclose()
        await s2.aclose()

    asyncio.run(main())


def test_rate_budget_is_shared_between_processes_by_key_fingerprint(redis_url):
    now = [1000.0]
    slept = []

    def sleep(dt):
        slept.append(dt)
        now[0] += dt

    r = redis.Redis.from_url(redis_url)
    a = RedisRateBudget("fp1", r, per_second=3, clock=lambda: now[0], sleep=sleep, window_s=1.0)
    b = RedisRateBudget("fp1", r, per_second=3, clock=lambda: now[0], sleep=sleep, window_s=1.0)
    other = RedisRateBudget("fp2", r, per_second=3, clock=lambda: now[0], sleep=sleep, window_s=1.0)
    assert [a.acquire(), b.acquire(), a.acquire()] == [0.0, 0.0, 0.0]
    assert other.acquire() == 0.0  # another key has its own budget
    waited = b.acquire()  # the 4th call in the window of this key waits ~1 s
    assert waited == pytest.approx(1.0, abs=0.01)
    # a 10006 answer blocks every sharer until the reset time
    a.penalize({"X-Bapi-Limit-Reset-Timestamp": str(int((now[0] + 2.0) * 1000))})
    assert b.acquire(order=False) == pytest.approx(2.0, abs=0.01)
    assert not any(k.startswith(b"hean:budget:{k") for k in r.keys())  # only fingerprints in key names


@pytest.fixture(scope="module")
def data(marketdata_dir):
    inst = load_instruments(marketdata_dir)
    return inst, {s: load_klines(marketdata_dir, s, "1") for s in ("BTCUSDT", "ETHUSDT")}


def paper_engine(data) -> Engine:
    inst, _ = data
    spec = StrategySpec.model_validate({"strategy": "impulse", "symbols": ["BTCUSDT", "ETHUSDT"], "capital": 10000,
                                        "riskPolicyRef": {"name": "p"},
                                        "params": {"emaFastPeriod": 5, "emaSlowPeriod": 20, "volatilityWindow": 20,
                                                   "impulseThreshold": 1.0, "cooldownBars": 5}})
    pol = RiskPolicySpec.model_validate({"maxDailyLossUsdt": 5000, "maxPositionNotionalUsdt": 20000,
                                         "hardMaxDrawdownPercent": 50, "softMaxDrawdownPercent": 40})
    return Engine("paper", spec, pol, {s: inst[("linear", s)] for s in spec.symbols})


def test_a_restarted_paper_worker_resumes_its_account(redis_url, data):
    _, series = data
    rows = sorted(((b.ts_ms, s, b) for s in ("BTCUSDT", "ETHUSDT") for b in series[s].bars[:6000]),
                  key=lambda t: (t[0], t[1]))

    async def run_until(eng, dur, start_after, stop_at, flush=True):
        last = None
        for ts, s, b in rows:
            if start_after is not None and ts <= start_after:
                continue
            if ts > stop_at:
                break
            eng.on_bar(s, b)
            dur.after_bar(eng, ts)
            last = ts
        if flush:
            await dur.state.writer.flush()
        return last

    async def main():
        st1 = WorkerState(StateStore(redis_url, "ns", "paper", "pod-1", lease_ttl=0.5))
        e1 = paper_engine(data)
        d1 = PaperDurability(st1)
        assert (await d1.start(e1))["fills"] == 0
        cut = rows[len(rows) // 2][0]
        await run_until(e1, d1, None, cut)
        assert len(e1.ledger.fills) > 4, "the test needs trades before the restart"
        committed = list(e1.ledger.fills)
        peak, seq = e1.peak_equity, e1.order_seq
        stops = {s: (e1.symbols[s].stop_price, e1.symbols[s].target_price) for s in e1.symbols}
        # the process goes on trading, then dies before its writer commits (SIGKILL):
        # no flush, no lease release - the next worker waits out the lease
        await run_until(e1, d1, cut, rows[len(rows) * 3 // 4][0], flush=False)
        assert d1.state.writer.pending()
        st2 = WorkerState(StateStore(redis_url, "ns", "paper", "pod-2", lease_ttl=0.5))
        e2 = paper_engine(data)
        d2 = PaperDurability(st2)
        info = await d2.start(e2)
        assert st2.store.token == 2
        assert info["fills"] == len(committed)
        assert info["cursorMs"] <= cut
        # the restored account is the committed one (recomputed here from the fills)
        ref = Ledger(D(10000))
        for f in committed:
            ref.apply(f)
        assert e2.ledger.realized_pnl == ref.realized_pnl and e2.ledger.fees == ref.fees
        assert {s: p.size for s, p in e2.ledger.positions.items()} == {s: p.size for s, p in ref.positions.items()}
        assert e2.peak_equity == peak and e2.order_seq == seq
        assert {s: (e2.symbols[s].stop_price, e2.symbols[s].target_price) for s in e2.symbols} == stops
        # the dead worker's late writes (if it were a zombie) are refused
        with pytest.raises(Fenced):
            await st1.writer.flush()
        await run_until(e2, d2, info["cursorMs"], rows[-1][0])
        e2.ledger.check()
        ids = [f.exec_id for f in e2.ledger.fills]
        assert len(ids) == len(set(ids))
        loaded = await st2.store.load()
        assert [f.exec_id for f in loaded["fills"]] == ids  # Redis holds exactly the engine's ledger
        await st2.store.aclose()

    asyncio.run(main())


def test_unreachable_redis_blocks_orders_until_it_is_back(redis_server, redis_url):
    async def main():
        st = WorkerState(StateStore(redis_url, "ns", "down", "pod", lease_ttl=0.6, socket_timeout=0.3))
        await st.acquire_lease()
        lease = asyncio.create_task(st.lease_loop())
        redis_server.stop(signal.SIGKILL)
        with pytest.raises(StateUnavailable):
            await st.store.record_intent("l-1", {})
        assert st.blocked() == STATE_DOWN and st.snapshot()["available"] is False
        st.writer.submit(fills=[fill(7)])
        with pytest.raises(StateUnavailable):
            await st.writer.flush()
        assert st.writer.pending()  # kept for later, not lost
        redis_server.start()  # AOF: the lease key was fsynced within ~1 s before the crash
        for _ in range(50):
            await asyncio.sleep(0.1)
            if st.blocked() is None:
                break
        assert st.blocked() is None and not st.store.fenced and st.recovered_at is not None
        await st.writer.flush()
        assert [f.exec_id for f in (await st.store.load())["fills"]] == ["ex-7"]
        lease.cancel()
        await st.store.aclose()

    asyncio.run(main())


def test_a_replacement_pod_with_the_same_name_is_not_the_same_lease_holder(redis_url):
    async def main():
        env = {"HEAN_REDIS_URL": redis_url, "HEAN_STATE_LEASE_SECONDS": "5"}
        old = WorkerState.from_env("ns", "same", "same-worker", env=env)
        new = WorkerState.from_env("ns", "same", "same-worker", env=env)
        assert await old.store.acquire()
        assert not await new.store.acquire()  # the old process still holds it
        await old.release()
        assert await new.store.acquire() and new.store.token == old.store.token + 1
        with pytest.raises(ValueError, match="HEAN_STATE_LEASE_SECONDS"):
            WorkerState.from_env("ns", "x", "p", env={**env, "HEAN_STATE_LEASE_SECONDS": "0"})
        for s in (old, new):
            await s.store.aclose()

    asyncio.run(main())


def test_worker_without_redis_says_it_is_in_memory():
    st = WorkerState.from_env("ns", "x", "pod", env={})
    assert st.backend == "memory" and st.blocked() is None
    assert st.snapshot()["durable"] is False and "HEAN_REDIS_URL" in st.snapshot()["note"]


def test_operator_cleanup_deletes_only_that_strategys_keys(redis_url):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    for name in ("gone", "kept"):
        p = strategy_prefix("ns", name)
        r.set(p + "seq", 5)
        r.hset(p + "fills", "e1", json.dumps({}))
        r.xadd(p + "ledger", {"execId": "e1"})
    r.set("hean:{ns/gone-but-longer}:seq", 1)
    n = asyncio.run(delete_strategy_keys(redis_url, "ns", "gone"))
    assert n == 3
    assert sorted(r.keys("*")) == sorted(["hean:{ns/kept}:seq", "hean:{ns/kept}:fills", "hean:{ns/kept}:ledger",
                                          "hean:{ns/gone-but-longer}:seq"])
