"""Ledger accounting checked against hand-computed figures."""

from decimal import Decimal as D

import pytest

from hean.worker.ledger import Fill, Ledger, LedgerError


def fill(i, side, qty, price, fee="0", sym="BTCUSDT"):
    return Fill(f"e{i}", f"o{i}", sym, side, D(qty), D(price), D(fee), i)


def test_long_round_trip_realizes_price_difference_times_qty():
    led = Ledger(D("1000"))
    led.apply(fill(1, "Buy", "0.010", "100000.0", "0.55"))
    led.apply(fill(2, "Sell", "0.010", "101000.0", "0.5555"))
    # (101000 - 100000) * 0.01 = 10 USDT realized; fees 1.1055
    assert led.realized_pnl == D("10.000")
    assert led.fees == D("1.1055")
    assert led.equity({}) == D("1008.8945")
    assert led.closed_trades == 1 and led.winning_trades == 1
    led.check()


def test_short_partial_close_and_average_entry():
    led = Ledger(D("500"))
    led.apply(fill(1, "Sell", "2", "10"))
    led.apply(fill(2, "Sell", "2", "12"))  # average entry 11
    pos = led.position("BTCUSDT")
    assert pos.size == D("-4") and pos.entry_price == D("11")
    assert led.apply(fill(3, "Buy", "1", "9")) == D("2")  # short gains (11 - 9) * 1
    assert pos.size == D("-3") and pos.entry_price == D("11")
    assert led.unrealized_pnl({"BTCUSDT": D("10")}) == D("3")  # (10 - 11) * -3
    led.check()


def test_flip_through_zero_opens_remainder_at_fill_price():
    led = Ledger(D("500"))
    led.apply(fill(1, "Buy", "1", "100"))
    assert led.apply(fill(2, "Sell", "3", "110")) == D("10")
    pos = led.position("BTCUSDT")
    assert pos.size == D("-2") and pos.entry_price == D("110")
    led.check()


def test_duplicate_execution_is_rejected_and_changes_nothing():
    led = Ledger(D("100"))
    led.apply(fill(1, "Buy", "1", "10", "0.1"))
    with pytest.raises(LedgerError, match="already booked"):
        led.apply(fill(1, "Buy", "1", "10", "0.1"))
    assert led.position("BTCUSDT").size == D("1") and led.fees == D("0.1") and len(led.fills) == 1


@pytest.mark.parametrize("qty,price", [("0", "10"), ("-1", "10"), ("1", "0")])
def test_bad_fill_is_rejected(qty, price):
    led = Ledger(D("100"))
    with pytest.raises(LedgerError):
        led.apply(fill(1, "Buy", qty, price))
    assert led.fills == [] and led.positions.get("BTCUSDT") is None or led.position("BTCUSDT").size == 0


def test_check_detects_tampering():
    led = Ledger(D("100"))
    led.apply(fill(1, "Buy", "1", "10"))
    led.position("BTCUSDT").size = D("2")
    with pytest.raises(LedgerError):
        led.check()
