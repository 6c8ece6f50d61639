"""Exchange-mode restart with the Redis state (real pybit against the test exchange,
real redis-server): an intent recorded before a crash is looked up by orderLinkId,
never resent - adopted with its fills if the exchange has it, released if not."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal as D

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.worker.bybit import BybitClient, endpoints_for
from hean.worker.bybit.budget import RateBudget
from hean.worker.bybit.runtime import Blocks, ExchangeRuntime, fetch_instruments
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine
from hean.worker.state import StateStore, WorkerState
from redisserver import redis_server, redis_url  # noqa: F401 - fixtures


def engine(x, name):
    spec = StrategySpec.model_validate({"strategy": "impulse", "symbols": ["BTCUSDT"], "mode": "testnet",
                                        "capital": 10000, "riskPolicyRef": {"name": "p"},
                                        "marketData": {"source": "live"}})
    pol = RiskPolicySpec.model_validate({"maxDailyLossUsdt": 1e6, "maxPositionNotionalUsdt": 1e6})
    eng = Engine(name, spec, pol, fetch_instruments(x.rest_url, "linear", ["BTCUSDT"]))
    eng.symbols["BTCUSDT"].mark = x.last_price("BTCUSDT")
    return eng


def runtime(x, acc, eng, url, holder):
    blocks = Blocks()
    blocks.engine = eng
    st = WorkerState(StateStore(url, "ns", eng.name, holder, lease_ttl=1.0))
    rt = ExchangeRuntime(eng, "ns", eng.name, endpoints_for("testnet", acc.env), tempfile.mkdtemp(), blocks,
                         reconcile_seconds=60, env=acc.env, state=st)
    rt.execution.lookup_delay = 0.1
    return rt, st


def test_intents_without_outcome_are_looked_up_not_resent(bybit_exchange, account, redis_url):
    x = bybit_exchange

    async def main():
        # worker 1 records two intents, then "dies": one order reached the exchange
        # (the answer was lost), the other was never sent
        rt1, st1 = runtime(x, account, engine(x, "wal"), redis_url, "pod-1")
        await st1.acquire_lease()
        await rt1.ids.start()
        sent, unsent = rt1.ids.next(), rt1.ids.next()
        for link in (sent, unsent):
            await st1.store.record_intent(link, {"symbol": "BTCUSDT", "side": "Buy", "qty": "0.004",
                                                 "reduceOnly": False, "reason": "TEST", "createdMs": 1})
        c = BybitClient(account.key, account.secret, x.rest_url, budget=RateBudget("w", state_dir=tempfile.mkdtemp()))
        c.place_order("linear", "BTCUSDT", "Buy", "0.004", sent)
        creates_before = dict(x.order_creates)
        # worker 2 starts: waits out the dead worker's lease, restores, reconciles
        eng2 = engine(x, "wal")
        rt2, st2 = runtime(x, account, eng2, redis_url, "pod-2")
        task = asyncio.create_task(rt2.run())
        for _ in range(200):
            await asyncio.sleep(0.05)
            if rt2.execution.reconciled:
                break
        assert rt2.execution.reconciled and st2.store.token == 2
        assert dict(x.order_creates) == creates_before  # nothing was (re)sent
        assert rt2.execution.orders[sent].state == "done" and rt2.execution.orders[unsent].state == "done"
        assert eng2.ledger.position("BTCUSDT").size == D("0.004")  # the sent order's fill, booked once
        assert [f.order_link_id for f in eng2.ledger.fills] == [sent]
        assert eng2.symbols["BTCUSDT"].pending is None
        await st2.writer.flush()
        data = await st2.store.load()
        assert [f.order_link_id for f in data["fills"]] == [sent]
        assert data["orders"][unsent]["state"] == "done"
        assert rt2.ids.seq_of(rt2.ids.next()) > rt2.ids.seq_of(unsent)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await st1.store.aclose()
        await st2.store.aclose()

    asyncio.run(main())
