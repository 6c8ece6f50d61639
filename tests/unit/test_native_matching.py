"""The paper matching engine: order types, partial fills, queue position, exact
fees, rounding and Bybit's validation retCodes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from hean.engine.book import PaperMatcher, matcher_for
from hean.marketdata import Instrument

BTC = Instrument("BTCUSDT", "linear", D("0.10"), D("0.001"), D("0.001"), D("5"), D("100"))
BTC_SPOT = Instrument("BTCUSDT", "spot", D("0.01"), D("0.000001"), D("0.000048"), D("1"), D("1"))


def fee_e8(price_units, qty_units, rate, pd=1, qd=3):
    v = (D(price_units).scaleb(-pd) * D(qty_units).scaleb(-qd) * D(rate)).quantize(D("1e-8"))
    return int(v.scaleb(8))


@pytest.fixture
def m() -> PaperMatcher:
    mt = matcher_for(BTC)  # price units 0.1, qty units 0.001
    st = mt.on_book(True, [("100000.0", "0.5"), ("99999.9", "1.0"), ("99999.0", "2")],
                    [("100000.1", "0.3"), ("100000.5", "0.7"), ("100001.0", "5")], 1, 1, 1000)
    assert st == "OK"
    return mt


def test_market_order_walks_the_book_with_taker_fees(m):
    assert m.submit(1, "Buy", "Market", 800) == (0, "OK", "Filled")  # 0.8 BTC
    fills = m.fills()
    assert [(f[3], f[4]) for f in fills] == [(1000001, 300), (1000005, 500)]
    assert all(f[6] == "taker" for f in fills)
    assert [f[5] for f in fills] == [fee_e8(1000001, 300, "0.00055"), fee_e8(1000005, 500, "0.00055")]
    assert m.position == 800
    assert m.book.best_ask() == (1000005, 200)  # paper fills consumed the levels


def test_market_remainder_is_cancelled_partial_fills_kept(m):
    assert m.submit(1, "Sell", "Market", 4000)[2] == "Cancelled"
    o = m.order(1)
    assert o["filled"] == 3500 and o["reason"] == "EC_NoImmediateQtyToFill"
    assert m.position == -3500


def test_limit_rests_with_queue_position_then_fills_as_maker(m):
    assert m.submit(1, "Buy", "Limit", 200, 1000000)[2] == "New"
    assert m.order(1)["queue_ahead"] == 500  # 0.5 BTC ahead of us at 100000.0
    assert m.on_trade(2000, 1000000, 300, "Sell")  # eats 0.3 of the queue
    assert m.order(1)["queue_ahead"] == 200 and m.order(1)["filled"] == 0
    assert m.on_trade(2001, 1000000, 300, "Sell")  # 0.2 queue, then 0.1 to us
    o = m.order(1)
    assert o["queue_ahead"] == 0 and o["filled"] == 100 and o["status"] == "PartiallyFilled"
    assert m.on_trade(2002, 999990, 500, "Sell")  # traded through our price: we fill at ours
    assert m.order(1)["status"] == "Filled"
    assert [(f[3], f[4], f[6]) for f in m.fills()] == [(1000000, 100, "maker"), (1000000, 100, "maker")]
    assert m.fills()[0][5] == fee_e8(1000000, 100, "0.0002")
    # a buy-aggressor trade never fills a resting buy
    assert m.submit(2, "Buy", "Limit", 100, 999990)[2] == "New"
    m.on_trade(2003, 999990, 1000, "Buy")
    assert m.order(2)["filled"] == 0


def test_queue_shrinks_with_the_level_and_book_cross_fills(m):
    m.submit(1, "Buy", "Limit", 100, 1000000)
    assert m.on_book(False, [("100000.0", "0.2")], [], 2, 2, 1100) == "OK"
    assert m.order(1)["queue_ahead"] == 200
    # the ask comes down to our price: the market trades through us
    assert m.on_book(False, [("100000.0", "0")], [("100000.0", "1"), ("100000.1", "0")], 3, 3, 1200) == "OK"
    assert m.order(1)["status"] == "Filled" and m.fills()[-1][6] == "maker"


def test_post_only_fok_ioc(m):
    assert m.submit(1, "Buy", "Limit", 100, 1000001, "PostOnly") == (0, "OK", "Cancelled")
    assert m.order(1)["reason"] == "EC_PostOnlyWillTakeLiquidity" and not m.fills()
    assert m.submit(2, "Buy", "Limit", 100, 1000000, "PostOnly")[2] == "New"
    assert m.submit(3, "Buy", "Limit", 1500, 1000005, "FOK")[2] == "Cancelled"  # only 1.0 up to 100000.5
    assert m.order(3)["reason"] == "EC_CancelForNoFullFill" and not m.fills()
    assert m.submit(4, "Buy", "Limit", 1000, 1000005, "FOK")[2] == "Filled"
    assert m.submit(5, "Sell", "Limit", 1000, 1000000, "IOC")[2] == "Cancelled"
    assert m.order(5)["filled"] == 500  # only the 100000.0 level is at or above the limit
    assert m.counters()["post_only_cancels"] == 1 and m.counters()["fok_cancels"] == 1
    assert m.submit(6, "Buy", "Market", 100, 0, "PostOnly")[:2] == (10001, "Market order cannot be post only")


def test_validation_retcodes_and_rounding(m):
    assert m.submit(1, "Buy", "Limit", 0, 1000000)[:2] == (10001, "Qty invalid")
    assert m.submit(2, "Buy", "Limit", 1, 1000000)[0] == 0  # 0.001 = min qty
    assert m.submit(2, "Buy", "Limit", 1, 1000000)[:2] == (110072, "OrderLinkedID is duplicate")
    assert m.submit(3, "Buy", "Limit", 1, 40000)[:2] == (110094, "Order does not meet minimum order value")
    assert m.submit(4, "Sell", "Limit", 100, 1000000, reduce_only=True)[:2] == (110017, "Reduce-only rule not satisfied")
    assert m.submit(5, "Buy", "Limit", 100, -5)[:2] == (10001, "Order price is invalid")
    assert m.counters()["rejects_by_retcode"] == {10001: 2, 110072: 1, 110094: 1, 110017: 1}
    # reduce-only caps at the position and exempts from min notional
    m.submit(10, "Buy", "Market", 100)
    assert m.position == 100
    assert m.submit(11, "Sell", "Market", 500, reduce_only=True)[2] == "Filled"
    assert m.order(11)["qty"] == 100 and m.position == 0
    spot = matcher_for(BTC_SPOT)
    spot.on_book(True, [("100000.00", "1.0")], [("100000.01", "1.0")], 1, 1, 0)
    assert spot.submit(1, "Buy", "Limit", 10, 10000000)[:2] == (170136, "Order quantity exceeded lower limit.")
    assert spot.submit(2, "Buy", "Limit", 48, 100000)[:2] == (170140, "Order value exceeded lower limit.")
    assert spot.submit(3, "Sell", "Market", 48, reduce_only=True)[0] == 10001
    # qty rounds down to the step; limit prices round away from the market
    inst = Instrument("X", "linear", D("0.5"), D("0.01"), D("0.01"), D("5"), D("10"))
    x = matcher_for(inst, price_decimals=1, qty_decimals=2)
    x.on_book(True, [("100.0", "1")], [("101.0", "1")], 1, 1, 0)
    x.submit(1, "Buy", "Limit", 257, 1004)  # 2.57 @ 100.4 -> price 100.0
    x.submit(2, "Sell", "Limit", 257, 1006)  # -> 101.0 (would cross? no: best bid 100.0)
    assert x.order(1)["price"] == 1000 and x.order(2)["price"] == 1010


def test_bad_trades_are_rejected_and_counted(m):
    assert not m.on_trade(5, 0, 100, "Buy")
    assert not m.on_trade(5, 1000000, -1, "Sell")
    assert not m.on_trade(5, 1000000, 1, "Up")
    assert m.on_trade(10, 1000000, 1, "Sell")
    assert not m.on_trade(9, 1000000, 1, "Sell")  # out of order
    assert m.rejected_trades == 4
