"""Live public market data: the order book's u/seq checks on the real Bybit capture,
the feed through real pybit against the test exchange (gap -> re-snapshot, stale,
dropped connection -> reconnect), and the recorder writing files the replay reads."""

from __future__ import annotations

import asyncio
import io
import json
import time
from decimal import Decimal

import pytest

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.marketdata import load_instruments, load_klines
from hean.worker.bybit.book import BookGap, NativeBook, OrderBook
from hean.worker.bybit.feed import LiveFeed
from hean.worker.bybit.recorder import Recorder

D = Decimal


def capture_frames(marketdata_dir, topic):
    import zstandard

    with (marketdata_dir / "bybit" / "ws" / "BYBIT.jsonl.zst").open("rb") as raw:
        linear = set()  # the capture also holds spot streams with the same topic names
        for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8"):
            rec = json.loads(line)
            if rec.get("t") == "connect" and str(rec.get("addr")).endswith("/v5/public/linear"):
                linear.add(rec["conn"])
            if rec.get("t") == "recv" and rec.get("conn") in linear and f'"{topic}"' in rec["data"]:
                yield json.loads(rec["data"])


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "DOGEUSDT"])
def test_python_and_native_books_follow_the_real_capture_alike(marketdata_dir, symbol):
    book = OrderBook(symbol)
    native = NativeBook.for_instrument(load_instruments(marketdata_dir)[("linear", symbol)])
    n = 0
    for msg in capture_frames(marketdata_dir, f"orderbook.200.{symbol}"):
        book.apply(msg["type"], msg["data"])
        native.apply(msg["type"], msg["data"])
        n += 1
        assert book.valid and native.valid and book.best_bid()[0] < book.best_ask()[0]
        assert native.best_bid() == book.best_bid() and native.best_ask() == book.best_ask()
    assert native.levels("b", 200) == book.levels("b", 200) and native.levels("a", 200) == book.levels("a", 200)
    assert n > 300 and len(book.bids) <= 200
    # a skipped update is a gap for both
    last = msg["data"]
    skip = {"b": [], "a": [], "u": last["u"] + 2, "seq": last["seq"] + 10}
    for b in (book, native):
        with pytest.raises(BookGap):
            b.apply("delta", skip)
        assert not b.valid


def test_book_rules():
    book = OrderBook("X")
    with pytest.raises(BookGap, match="before any snapshot"):
        book.apply("delta", {"b": [], "a": [], "u": 5, "seq": 1})
    book.apply("snapshot", {"b": [["10", "1"], ["9", "2"]], "a": [["11", "1"]], "u": 10, "seq": 100})
    book.apply("delta", {"b": [["9.5", "3"], ["9", "0"]], "a": [["12", "4"]], "u": 11, "seq": 101})
    assert book.levels("b") == [(D("10"), D("1")), (D("9.5"), D("3"))]  # inserted in order, "0" deleted
    assert book.levels("a") == [(D("11"), D("1")), (D("12"), D("4"))]
    with pytest.raises(BookGap, match="jumped from 11 to 13"):
        book.apply("delta", {"b": [], "a": [], "u": 13, "seq": 102})
    assert not book.valid
    book.apply("snapshot", {"b": [["10", "1"]], "a": [["11", "1"]], "u": 1, "seq": 50})  # service restart: u=1
    assert book.valid and book.u == 1
    with pytest.raises(BookGap, match="seq went backwards"):
        book.apply("delta", {"b": [], "a": [], "u": 2, "seq": 49})
    book.apply("snapshot", {"b": [["10", "1"]], "a": [["11", "1"]], "u": 1, "seq": 50})
    with pytest.raises(BookGap, match="crossed"):
        book.apply("delta", {"b": [["11.5", "1"]], "a": [], "u": 2, "seq": 51})


async def until(pred, timeout=10.0, what="condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_feed_gaps_staleness_and_reconnects(bybit_exchange, tmp_path):
    x = bybit_exchange
    bars = []
    inst = {"retCode": 0, "retMsg": "OK", "result": x.shapes.example("rest.instruments.linear")["result"]}
    rec = Recorder(tmp_path, "1", inst, x.rest_url, flush_every=10)
    feed = LiveFeed(["BTCUSDT"], "1", 50, lambda s, b: bars.append((s, b)), stale_after=0.8, recorder=rec,
                    backoff_base=0.1, instruments={"BTCUSDT": x.instruments["BTCUSDT"]})
    assert isinstance(feed.books["BTCUSDT"], NativeBook)  # the worker's book when the instrument is known

    async def main():
        task = asyncio.create_task(feed.run())
        book = feed.books["BTCUSDT"]
        await until(lambda: book.valid and len(bars) >= 3, what="book + bars")
        x.inject("seq_gap", symbol="BTCUSDT")
        await until(lambda: feed.counters["gaps"] == 1, what="gap detected")
        await until(lambda: book.valid and feed.socket.reconnects >= 1, what="re-snapshot")
        x.inject("stale", seconds=1.5)
        await until(lambda: feed.stale, what="stale")
        assert feed.counters["stale"] == 1
        await until(lambda: not feed.stale, 8, what="fresh again")
        r = feed.socket.reconnects
        x.inject("ws_drop", channel="public")
        await until(lambda: feed.socket.reconnects > r and book.valid, 8, what="reconnect after drop")
        n = len(bars)
        await until(lambda: len(bars) > n + 2, what="bars after reconnect")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        feed.stop()
    ts = [b.ts_ms for _, b in bars]
    assert ts == sorted(ts)
    # the recording replays: the same loaders the replay uses read it
    series = load_klines(tmp_path, "BTCUSDT", "1")
    assert len(series.bars) >= 5 and not series.dropped
    assert series.bars[0].close == bars[0][1].close
    assert ("linear", "BTCUSDT") in load_instruments(tmp_path)


def test_the_real_testnet_smoke_command_runs_against_the_test_exchange(bybit_exchange, account, monkeypatch, capsys):
    """The opt-in smoke command (docs/bybit.md) cannot reach Bybit here; it runs
    unchanged against the local exchange through the URL overrides."""
    from hean.worker.bybit import smoke

    for k, v in account.env.items():
        monkeypatch.setenv(k, v)
    assert smoke.main(["--seconds", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "placed and found by orderLinkId: New" in out and "cancelled hean-smoke-" in out
    assert account.key not in out and account.secret not in out
    monkeypatch.delenv("BYBIT_API_SECRET")
    assert smoke.main([]) == 2
