"""RiskPolicy autoQuarantine.maxSpreadBps on the live path: LiveData feeds the order
book's best bid/ask (real pybit against the local Bybit v5 test exchange) into the
engine once per candle, and a spread above the bound quarantines the symbol."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.worker.bybit.endpoints import endpoints_for
from hean.worker.bybit.runtime import Blocks, LiveData
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine


def _engine(inst, max_spread_bps):
    spec = StrategySpec.model_validate({"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 10000,
                                        "riskPolicyRef": {"name": "p"}, "marketData": {"source": "live"}})
    pol = RiskPolicySpec.model_validate({"maxDailyLossUsdt": 1000, "maxPositionNotionalUsdt": 20000,
                                         "autoQuarantine": {"maxSpreadBps": max_spread_bps, "ttlSeconds": 3600}})
    return Engine("live", spec, pol, {"BTCUSDT": inst})


def test_live_book_spread_feeds_auto_quarantine(bybit_exchange, account):  # noqa: F811
    x = bybit_exchange
    ep = endpoints_for("paper", account.env)
    tight = _engine(x.instruments["BTCUSDT"], 0.0001)  # any real spread is wider
    wide = _engine(x.instruments["BTCUSDT"], 10000)    # 100 %: never
    feeds = [LiveData(e, ep, "1", 50, 5.0, Blocks()) for e in (tight, wide)]
    calls = []
    orig = tight.on_spread
    tight.on_spread = lambda s, bid, ask: (calls.append((s, bid, ask)), orig(s, bid, ask))

    async def main():
        tasks = [asyncio.create_task(f.run()) for f in feeds]
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and not (tight.safety.autoq.history and wide.bars_processed >= 3):
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        for f in feeds:
            f.feed.stop()
    assert tight.safety.autoq.history, "the tight bound should quarantine BTCUSDT"
    req = tight.safety.autoq.history[0]
    assert req["symbol"] == "BTCUSDT" and "spread" in req["reason"] and req["ttlSeconds"] == 3600
    sym, bid, ask = calls[0]  # the first candle with a valid book fired it
    assert sym == "BTCUSDT" and ask > bid > 0
    bps = (ask - bid) / ((ask + bid) / 2) * 10000
    assert D(req["reason"].split()[1]) == bps.quantize(D("0.0001"))
    assert wide.bars_processed >= 3 and not wide.safety.autoq.history
    assert tight.safety.autoq.blocked("BTCUSDT", tight.now_ms)
