"""Live public market data for the engine: Bybit's public WebSocket through pybit.

Topics per symbol: ``kline.<interval>.<sym>`` (a confirmed candle is a
:class:`hean.marketdata.Bar` for ``Engine.on_bar``), ``orderbook.<depth>.<sym>``
(kept in the native C++ book when the instrument is known, else
:class:`book.OrderBook`, both with ``u``/``seq`` checks), ``publicTrade.<sym>`` and
``tickers.<sym>`` (last price). Health:

* a book gap (skipped ``u``, ``seq`` backwards, crossed book) invalidates that book,
  is counted, and the socket is re-opened to get a fresh snapshot (resubscribe);
* no frame for ``stale_after`` seconds marks the feed stale (counted; the worker
  stops entering positions while stale) and, after ``2 * stale_after``, reconnects;
* a dropped connection reconnects with backoff (counted).

Frames arrive on pybit's thread and are handed to the asyncio loop with
``call_soon_threadsafe``; all state changes happen on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from decimal import Decimal

from hean.marketdata import Bar

from .book import BookGap, make_book
from .stream import ManagedSocket

log = logging.getLogger("hean.worker.bybit")


def kline_bar(k: dict) -> Bar:
    """A confirmed kline item as a Bar (decimal strings straight to Decimal)."""
    return Bar(int(k["start"]), Decimal(k["open"]), Decimal(k["high"]), Decimal(k["low"]),
               Decimal(k["close"]), Decimal(k["volume"]))


class LiveFeed:
    """Bybit public WebSocket market data for ``symbols``: ``kline.<interval>``, 
    ``orderbook.<depth>``, ``publicTrade`` and ``tickers``. Confirmed klines go to ``on_bar``
    (symbol, Bar) on the asyncio loop; books are kept with gap detection and REST
    re-snapshots; the feed is ``stale`` (no new entries) after ``stale_after`` seconds
    without a frame; reconnects back off from ``backoff_base`` seconds. Counters: gaps,
    resyncs, stale, frames, bars, subscribe_failures.
    """
    def __init__(self, symbols: list[str], interval: str, depth: int, on_bar, category: str = "linear",
                 stale_after: float = 10.0, recorder=None, backoff_base: float = 0.5, instruments: dict | None = None):
        self.symbols = list(symbols)
        self.interval, self.depth = interval, depth
        self.on_bar = on_bar
        self.stale_after = stale_after
        self.recorder = recorder
        topics = []
        for s in self.symbols:
            topics += [f"kline.{interval}.{s}", f"orderbook.{depth}.{s}", f"publicTrade.{s}", f"tickers.{s}"]
        self.socket = ManagedSocket(category, topics, self._from_thread, backoff_base=backoff_base, name="market-data")
        self.books = {s: make_book(s, (instruments or {}).get(s)) for s in self.symbols}
        self.last_price: dict[str, Decimal] = {}
        # strategy hooks (hean.worker.strategies): on_book(symbol, book, ts_ms) after each
        # applied book frame; on_funding(symbol, rate, settled_ms, next_ms) when a
        # ticker's nextFundingTime moves on (the last fundingRate was settled).
        self.on_book = None
        self.on_trade = None  # on_trade(symbol, ts_ms, price, qty, taker side)
        self.on_funding = None
        self.funding_rate: dict[str, Decimal] = {}
        self.next_funding_ms: dict[str, int] = {}
        self.counters: Counter = Counter()  # gaps, resyncs, stale, frames, bars, subscribe_failures
        self.last_frame = time.monotonic()
        self.stale = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def _from_thread(self, msg: dict) -> None:
        if self.recorder is not None and "topic" in msg:
            self.recorder.frame(msg)
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.handle, msg)

    def handle(self, msg: dict) -> None:
        """Process one raw frame (on the loop)."""
        self.last_frame = time.monotonic()
        if self.stale:
            self.stale = False
            log.info("market data fresh again")
        if msg.get("op") == "subscribe" and msg.get("success") is False:
            self.counters["subscribe_failures"] += 1
            log.error("market-data subscription refused: %s", msg.get("ret_msg"))
            return
        topic = msg.get("topic")
        if not topic:
            return
        self.counters["frames"] += 1
        kind, _, rest = topic.partition(".")
        if kind == "kline":
            sym = rest.split(".", 1)[1]
            for k in msg.get("data") or []:
                if k.get("confirm"):
                    self.counters["bars"] += 1
                    self.last_price[sym] = Decimal(k["close"])
                    self.on_bar(sym, kline_bar(k))
        elif kind == "orderbook":
            sym = rest.split(".", 1)[1]
            book = self.books.get(sym)
            if book is None:
                return
            if not book.valid and msg.get("type") != "snapshot":
                self.counters["deltas_skipped"] += 1  # waiting for the re-subscription's snapshot
                return
            try:
                book.apply(msg.get("type", ""), msg["data"])
            except BookGap as e:
                self.counters["gaps"] += 1
                self.counters["resyncs"] += 1
                log.warning("order book gap (%s): re-subscribing for a new snapshot", e)
                self.socket.request_reconnect()
                return
            if self.on_book is not None and book.valid:
                self.on_book(sym, book, int(msg.get("ts") or 0))
        elif kind == "publicTrade":
            for t in msg.get("data") or []:
                self.last_price[t["s"]] = Decimal(t["p"])
                if self.on_trade is not None:
                    try:
                        ts, qty = int(t.get("T") or 0), Decimal(t["v"])
                    except (KeyError, ValueError, ArithmeticError):
                        self.counters["bad_trade"] += 1  # dropped and counted
                        continue
                    self.on_trade(t["s"], ts, Decimal(t["p"]), qty, str(t.get("S", "")))
        elif kind == "tickers":
            d = msg.get("data") or {}
            if d.get("lastPrice"):
                self.last_price[d.get("symbol", rest)] = Decimal(d["lastPrice"])
            self._funding_tick(d.get("symbol", rest), d)

    def _funding_tick(self, sym: str, d: dict) -> None:
        """Track ``fundingRate``/``nextFundingTime`` of a ticker (Bybit v5 tickers,
        https://bybit-exchange.github.io/docs/v5/websocket/public/ticker); when the next
        funding time moves forward, the previous rate was settled: report it."""
        try:
            nxt = int(d["nextFundingTime"]) if d.get("nextFundingTime") else None
            rate = Decimal(d["fundingRate"]) if d.get("fundingRate") not in (None, "") else None
        except (ValueError, ArithmeticError):
            self.counters["bad_ticker"] += 1
            return
        prev = self.next_funding_ms.get(sym)
        if nxt is not None:
            if prev is not None and nxt > prev and sym in self.funding_rate and self.on_funding is not None:
                self.on_funding(sym, self.funding_rate[sym], prev, nxt)
            self.next_funding_ms[sym] = nxt
        if rate is not None:
            self.funding_rate[sym] = rate

    async def run(self) -> None:
        """Connect, then watch the connection and staleness forever."""
        self.loop = asyncio.get_running_loop()
        self.last_frame = time.monotonic()
        while True:
            ok = await self.socket.ensure()
            silent = time.monotonic() - self.last_frame
            if silent > self.stale_after and not self.stale:
                self.stale = True
                self.counters["stale"] += 1
                log.warning("market data stale: no frame for %.1fs", silent)
            if ok and silent > 2 * self.stale_after:
                log.warning("market data silent for %.1fs: reconnecting", silent)
                self.last_frame = time.monotonic() - self.stale_after  # stays stale until a frame arrives
                self.socket.request_reconnect()
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        self.socket.shutdown()
        self.on_bar = lambda symbol, bar: None
        if self.recorder is not None:
            self.recorder.close()

    def snapshot(self) -> dict:
        return {
            "stale": self.stale, "secondsSinceLastFrame": round(time.monotonic() - self.last_frame, 3),
            "connected": self.socket.connected(), "reconnects": self.socket.reconnects,
            "counters": dict(self.counters),
            "books": {s: {"valid": b.valid, "u": b.u, "bestBid": str(b.best_bid()[0]) if b.best_bid() else None,
                          "bestAsk": str(b.best_ask()[0]) if b.best_ask() else None} for s, b in self.books.items()},
        }
