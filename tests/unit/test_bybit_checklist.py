"""Issue-5 bullets that had no test of their own (docs/bybit.md "Checklist"): the public
topics the feed subscribes, instrument rules and funding history over REST, and the
HTTP 429/403 back-off of an order create. Real pybit against the test exchange."""

from __future__ import annotations

import asyncio
import json
import tempfile
from decimal import Decimal

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.worker.bybit import BybitClient
from hean.worker.bybit.budget import RateBudget
from hean.worker.bybit.feed import LiveFeed
from hean.worker.bybit.runtime import fetch_instruments

from test_bybit_execution import until


def client(x, acc=None):
    if acc is None:
        return BybitClient(None, None, x.rest_url, budget=RateBudget("pub", state_dir=tempfile.mkdtemp()))
    return BybitClient(acc.key, acc.secret, x.rest_url, budget=RateBudget("c" + acc.key[-6:], state_dir=tempfile.mkdtemp()))


def test_the_feed_subscribes_klines_book_trades_and_tickers(bybit_exchange):
    x = bybit_exchange
    bars = []
    feed = LiveFeed(["BTCUSDT"], "1", 200, lambda s, b: bars.append(b), backoff_base=0.1)

    async def main():
        task = asyncio.create_task(feed.run())
        want = {"kline.1.BTCUSDT", "orderbook.200.BTCUSDT", "publicTrade.BTCUSDT", "tickers.BTCUSDT"}
        await until(lambda: any(t == want for t in x.subs.values()), what="one subscription of all four topics")
        await until(lambda: bars and "BTCUSDT" in feed.last_price and feed.books["BTCUSDT"].valid, what="data")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        feed.stop()
    assert feed.counters["frames"] > len(bars)  # book, trade and ticker frames arrived too


def test_instrument_rules_and_funding_history_over_rest(bybit_exchange, marketdata_dir):
    x = bybit_exchange
    doc = json.loads((marketdata_dir / "bybit/api/docs/real_mainnet_capture_cryptofeed/"
                      "rest_instruments_info_linear_BTC_ETH_SOL_DOGE_subset.json").read_text())
    rec = next(it for it in doc["result"]["list"] if it["symbol"] == "ETHUSDT")
    inst = fetch_instruments(x.rest_url, "linear", ["ETHUSDT"])["ETHUSDT"]
    assert inst.tick_size == Decimal(rec["priceFilter"]["tickSize"])
    assert inst.qty_step == Decimal(rec["lotSizeFilter"]["qtyStep"])
    assert inst.min_order_qty == Decimal(rec["lotSizeFilter"]["minOrderQty"])
    assert inst.min_notional == Decimal(rec["lotSizeFilter"]["minNotionalValue"])
    fix = json.loads((marketdata_dir / "bybit/api/fixtures/http_get_funding_history.json").read_text())
    rows = client(x).funding_history("linear", "ETHUSDT", 20)
    assert [r["fundingRate"] for r in rows] == [r["fundingRate"] for r in fix["result"]["list"]]
    assert all(r["symbol"] == "ETHUSDT" for r in rows)


def test_http_429_and_403_back_off_and_the_order_is_placed_once(bybit_exchange, account):
    x = bybit_exchange
    c = client(x, account)
    x.inject("http_status", "/v5/order/create", status=429)
    x.inject("http_status", "/v5/order/create", status=403)
    link = "lim" + account.key[-6:]
    res = c.place_order("linear", "BTCUSDT", "Buy", "0.010", link)
    assert res["orderLinkId"] == link
    assert c.errors["http_429"] == 1 and c.errors["http_403"] == 1
    assert x.order_creates[(account.key, link)] == 1
    assert sum(1 for m, p in x.requests if p == "/v5/order/create") >= 3  # two refused, one placed
