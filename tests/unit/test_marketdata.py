"""Reading the recorded Bybit candles and instrument info; bad rows are dropped and counted."""

from decimal import Decimal as D

import pytest

from hean.marketdata import load_instruments, load_klines, parse_kline_rows


def test_real_btcusdt_klines(marketdata_dir):
    s = load_klines(marketdata_dir, "BTCUSDT", "1")
    assert len(s.bars) + sum(s.dropped.values()) == 43_200  # the README's row count
    first = s.bars[0]
    # first data row of the file: 2025-05-30 16:39:00+00:00,104217.5,104402.7,104200.0,104337.8,477.605
    assert first.open == D("104217.5") and first.close == D("104337.8") and first.volume == D("477.605")
    ts = s.ts_ms
    assert (ts[1:] > ts[:-1]).all()


def test_bad_rows_are_dropped_and_counted():
    rows = [
        ["2025-01-01T00:00:00Z", "10", "11", "9", "10.5", "1"],
        ["2025-01-01T00:01:00Z", "nan", "11", "9", "10.5", "1"],
        ["2025-01-01T00:02:00Z", "10", "11", "9", "-1", "1"],
        ["2025-01-01T00:03:00Z", "10", "9", "11", "10", "1"],
        ["2024-12-31T23:59:00Z", "10", "11", "9", "10", "1"],
        ["2025-01-01T00:04:00Z", "x", "11", "9", "10", "1"],
        ["garbage", "10", "11", "9", "10", "1"],
        ["2025-01-01T00:05:00Z", "10"],
        ["2025-01-01T00:06:00Z", "10", "11", "9", "10", "2"],
    ]
    s = parse_kline_rows("BTCUSDT", "1", rows)
    assert [b.close for b in s.bars] == [D("10.5"), D("10")]
    assert s.dropped == {"bad_number": 2, "non_positive_price": 1, "high_below_low": 1, "out_of_order": 1,
                         "bad_timestamp": 1, "short_row": 1}


def test_instrument_rules_from_the_real_capture(marketdata_dir):
    inst = load_instruments(marketdata_dir)
    btc = inst[("linear", "BTCUSDT")]
    # values in bybit/ws/BYBIT.jsonl.zst (instruments-info, linear)
    assert (btc.tick_size, btc.qty_step, btc.min_order_qty, btc.min_notional) == (D("0.10"), D("0.001"), D("0.001"), D("5"))
    assert btc.round_qty(D("0.0129")) == D("0.012")
    assert btc.round_price(D("100.04"), "up") == D("100.10")
    assert btc.round_price(D("100.04"), "down") == D("100.00")
    assert inst[("spot", "ETHUSDT")].tick_size == D("0.01")
    with pytest.raises(ValueError, match="direction"):
        btc.round_price(D("1"), "sideways")
