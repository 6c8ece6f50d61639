"""The native L2 order book on real Bybit data (historical archive and a live
WebSocket capture), checked message by message against the pure-Python
ReferenceBook, plus the gap / stale / crossed / bad-number rules and the queries."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from hean.engine.book import OrderBook, ReferenceBook, iter_orderbook_zip, iter_ws_capture, level_decimals

FULL = 1_000_000


def _feed(msgs, pd, sd):
    nat, ref = OrderBook(pd, sd), ReferenceBook(pd, sd)
    for m in msgs:
        d = m["data"]
        snap = m["type"] == "snapshot"
        a = nat.apply(snap, d["b"], d["a"], d["u"], d["seq"], m["ts"])
        b = ref.apply(snap, d["b"], d["a"], d["u"], d["seq"], m["ts"])
        assert a == b, (a, b, d["u"])
        assert nat.best_bid() == ref.best_bid() and nat.best_ask() == ref.best_ask()
        assert nat.levels(1, 25) == ref.levels(1, 25) and nat.levels(-1, 25) == ref.levels(-1, 25)
    assert nat.levels(1, FULL) == ref.levels(1, FULL) and nat.levels(-1, FULL) == ref.levels(-1, FULL)
    assert nat.counts == ref.counts
    return nat, ref


def test_xrpusdt_ob500_archive(marketdata_dir):
    msgs = list(iter_orderbook_zip(marketdata_dir / "bybit/orderbook/xrpusdt-ob500.data.zip"))
    assert len(msgs) == 50 and msgs[0]["type"] == "snapshot"
    pd, sd = level_decimals(msgs)
    nat, ref = _feed(msgs, pd, sd)
    assert nat.counts["OK"] == 50 and nat.valid
    bid, ask = nat.best_bid(), nat.best_ask()
    assert 0 < bid[0] < ask[0]
    assert len(nat.levels(1, FULL)) > 400 and len(nat.levels(-1, FULL)) > 400
    assert nat.imbalance(5) == pytest.approx(ref.imbalance(5), rel=1e-15)


def test_ws_capture_book_frames(marketdata_dir):
    by_topic = defaultdict(list)
    for m in iter_ws_capture(marketdata_dir / "bybit/ws/BYBIT.jsonl.zst"):
        by_topic[m["topic"]].append(m)
    assert set(by_topic) == {f"orderbook.200.{s}USDT" for s in ("BTC", "ETH", "SOL", "DOGE")}
    total = 0
    for topic, msgs in by_topic.items():
        pd, sd = level_decimals(msgs)
        nat, _ = _feed(msgs, pd, sd)
        total += len(msgs)
        # the capture is a clean stream: every frame applies
        assert nat.counts["OK"] == len(msgs), (topic, nat.counts)
        assert nat.valid and nat.best_bid()[0] < nat.best_ask()[0]
    assert total == 2148


def snap(book, u=10, seq=100):
    return book.apply(True, [("100.0", "5"), ("99.5", "3"), ("99.0", "10")],
                      [("100.5", "2"), ("101.0", "4"), ("102.0", "8")], u, seq, 1)


@pytest.mark.parametrize("cls", [OrderBook, ReferenceBook])
def test_rules(cls):
    b = cls(1, 0)
    assert b.apply(False, [("100.0", "1")], [], 1, 1, 0) == "NO_SNAPSHOT"
    assert snap(b) == "OK"
    assert b.apply(False, [("100.0", "0")], [("100.5", "7")], 11, 101, 2) == "OK"  # size 0 deletes
    assert b.best_bid() == (995, 3) and b.best_ask() == (1005, 7)
    assert b.apply(False, [("99.5", "1")], [], 11, 102, 3) == "STALE"  # repeated u
    assert b.apply(False, [("99.5", "1")], [], 12, 99, 3) == "STALE"  # seq backwards
    # crossed: rolled back, then the book needs a snapshot
    assert b.apply(False, [("101.0", "1")], [], 12, 103, 4) == "CROSSED"
    assert b.best_bid() == (995, 3)
    assert b.apply(False, [("99.5", "1")], [], 13, 104, 5) == "NO_SNAPSHOT"
    assert snap(b, u=1, seq=5) == "OK"  # any snapshot (u == 1 after a restart) replaces the book
    assert b.apply(False, [("99.5", "1")], [], 3, 6, 6) == "GAP"  # u jumped from 1 to 3
    assert b.apply(False, [("99.5", "1")], [], 2, 6, 6) == "NO_SNAPSHOT"
    for bad in (("NaN", "1"), ("100.0", "inf"), ("100.0", "-1"), ("1e2", "1"), ("100.05", "1"), ("", "1"),
                ("100.0", "1.5"), ("-100", "1"), ("0", "1"), ("100.0", "99999999999999999999999")):
        assert snap(b) == "OK"
        assert b.apply(False, [bad], [], 11, 101, 7) == "BAD", bad
        assert b.best_bid() == (1000, 5)
    assert b.apply(True, [("100.0", "0")], [("101.0", "1")], 20, 200, 8) == "BAD"  # zero size in a snapshot
    assert b.apply(True, [("101.0", "1")], [("100.0", "1")], 20, 200, 8) == "CROSSED"
    c = b.counts
    assert c["BAD"] == 11 and c["CROSSED"] == 2 and c["GAP"] == 1 and c["STALE"] == 2 and c["NO_SNAPSHOT"] == 3


def test_queries():
    b = OrderBook(1, 0)
    snap(b)
    assert b.spread() == pytest.approx(0.5)
    assert b.mid() == 100.25
    assert b.microprice() == pytest.approx((100.0 * 2 + 100.5 * 5) / 7)
    w = [1, 1 / 2, 1 / 3]
    num = w[0] * (5 - 2) + w[1] * (3 - 4) + w[2] * (10 - 8)
    den = w[0] * 7 + w[1] * 7 + w[2] * 18
    assert b.imbalance(3) == pytest.approx(num / den)
    r = b.sweep_cost(1, 500.0)  # buy 500 USDT: 2 @ 100.5 = 201, 2 @ 101 = 202, then 97 left < 102
    assert r["qty"] == 4 and r["notional"] == pytest.approx(403.0) and r["complete"] and r["levels"] == 2
    r = b.sweep_cost(-1, 10_000.0)  # more than the bids hold
    assert not r["complete"] and r["qty"] == 18
    assert r["slippage_bps"] > 0
    e = OrderBook(1, 0)
    assert math.isnan(e.mid()) and math.isnan(e.imbalance(5)) and not e.valid


def test_paper_matching_on_the_recorded_btcusdt_stream(marketdata_dir):
    """Book frames and public trades of the real capture through the PaperMatcher:
    a taker fill at the recorded best ask, a post-only bid resting in the queue."""
    from decimal import Decimal as D

    from hean.engine.book import matcher_for, replay_market
    from hean.marketdata import Instrument

    msgs = list(iter_ws_capture(marketdata_dir / "bybit/ws/BYBIT.jsonl.zst", ""))
    inst = Instrument("BTCUSDT", "linear", D("0.10"), D("0.001"), D("0.001"), D("5"), D("100"))
    # the book carries sizes to 1e-6 and prices to 0.01: the instrument's scales are too
    # coarse (those frames are BAD and counted), so take the data's
    assert replay_market(msgs, matcher_for(inst), "BTCUSDT")["book"]["BAD"] > 0
    pd, sd = level_decimals([x for x in msgs if x.get("topic") == "orderbook.200.BTCUSDT"])
    m = matcher_for(inst, price_decimals=pd, qty_decimals=sd)
    one = 10 ** (sd - 3)  # 0.001 BTC in size units
    seen = {}

    def strategy(kind, msg, mt):
        if kind == "book" and "taker" not in seen and mt.book.valid:
            seen["ask"] = mt.book.best_ask()
            seen["bid"] = mt.book.best_bid()
            seen["taker"] = mt.submit(1, "Buy", "Market", one)
            seen["maker"] = mt.submit(2, "Buy", "Limit", one, seen["bid"][0], "PostOnly")
            seen["queue"] = mt.order(2)["queue_ahead"]

    res = replay_market(msgs, m, "BTCUSDT", strategy)
    assert res["book"]["OK"] == 714 and res["malformed"] == 0
    # the capture holds 10 BTCUSDT trades stamped up to 37 s before an earlier one:
    # rejected as out of order and counted, never traded on
    assert res["bad_trades"] == 10 and m.rejected_trades == 10
    assert res["trades"] > 20
    assert seen["taker"][2] == "Filled" and seen["maker"][2] == "New"
    first = m.fills()[0]
    assert first[3] == seen["ask"][0] and first[6] == "taker"  # the recorded best ask
    assert seen["queue"] == seen["bid"][1]  # queued behind the visible size
    o = m.order(2)
    assert o["queue_ahead"] <= seen["queue"]
    assert m.position == sum(f[4] if f[2] == "Buy" else -f[4] for f in m.fills())
