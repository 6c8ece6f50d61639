"""Opt-in smoke test against the REAL Bybit testnet (or demo) with your own keys:

    BYBIT_API_KEY=... BYBIT_API_SECRET=... python -m hean.worker.bybit.smoke [--mode testnet|demo] [--symbol BTCUSDT]

It cannot run in HEAN's CI or on a machine without internet access (the tests use the
local test exchange instead). What it does, all through pybit:

1. server time and the signing clock offset; instrument info and funding history;
2. wallet balance (checks the keys: 10003/10004 end the run with a clear message);
3. public WebSocket: ``orderbook.50`` and ``kline.1`` for 15 s through
   :class:`LiveFeed`, checking the book's ``u``/``seq`` continuity;
4. a PostOnly limit Buy of the minimum quantity 20 % below the best bid (it cannot
   fill), looked up by its orderLinkId, then cancelled;
5. a reconciliation-style read of open orders, positions and recent executions.

Nothing is left open: the order is cancelled even if a later step fails. Exit code 0
on success. Keys are read from the environment only and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from decimal import Decimal

from .budget import RateBudget
from .client import BybitClient, BybitError, key_fingerprint
from .endpoints import endpoints_for
from .feed import LiveFeed
from .runtime import credentials_from_env, fetch_instruments
from .stream import set_pybit_urls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("testnet", "demo"), default="testnet")
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument("--seconds", type=float, default=15.0)
    a = ap.parse_args(argv)
    try:
        key, secret = credentials_from_env()
    except ValueError as e:
        print(f"hean bybit smoke: {e}", file=sys.stderr)
        return 2
    ep = endpoints_for(a.mode)
    print(f"mode {a.mode}: REST {ep.rest}, key fingerprint {key_fingerprint(key)}")
    c = BybitClient(key, secret, ep.rest, budget=RateBudget(key_fingerprint(key), state_dir=tempfile.mkdtemp()))
    t0 = time.time()
    print("server time:", c.call("get_server_time")["timeSecond"], f"(local {int(t0)})")
    inst = fetch_instruments(ep.rest, "linear", [a.symbol])[a.symbol]
    print("instrument:", inst)
    print("funding (last 3):", c.funding_history("linear", a.symbol, 3))
    try:
        print("wallet totalEquity:", c.wallet().get("totalEquity"))
    except BybitError as e:
        print(f"keys refused: {e.label} ({e.code})", file=sys.stderr)
        return 2

    set_pybit_urls(ep.ws_public, ep.ws_private)
    feed = LiveFeed([a.symbol], "1", 50, lambda s, b: print("bar", s, b), stale_after=10)

    async def watch():
        task = asyncio.create_task(feed.run())
        await asyncio.sleep(a.seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(watch())
    feed.stop()
    snap = feed.snapshot()
    print("market data:", snap)
    if not snap["books"][a.symbol]["valid"] or snap["counters"].get("gaps"):
        print("order book did not stay continuous", file=sys.stderr)
        return 3

    bid = Decimal(snap["books"][a.symbol]["bestBid"])
    price = inst.round_price(bid * Decimal("0.8"), "down")
    qty = max(inst.min_order_qty, inst.round_qty(inst.min_notional / price) + inst.qty_step)
    link = f"hean-smoke-{int(t0)}"
    try:
        c.place_order("linear", a.symbol, "Buy", str(qty), link, order_type="Limit", price=str(price),
                      time_in_force="PostOnly")
        found = c.order_by_link("linear", link)
        print("placed and found by orderLinkId:", found and found.get("orderStatus"))
    finally:
        try:
            c.call("cancel_order", category="linear", symbol=a.symbol, orderLinkId=link)
            print("cancelled", link)
        except BybitError as e:
            print("cancel:", e.label)
    print("open orders:", len(c.open_orders("linear")), "positions:",
          [(p["symbol"], p["side"], p["size"]) for p in c.positions("linear") if p.get("size") not in ("0", "")],
          "recent executions:", len(c.executions("linear", a.symbol)))
    print("client errors:", dict(c.errors), "rejects:", dict(c.rejects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
