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


def test_instruments_can_be_loaded_for_the_wanted_symbols_only(marketdata_dir):
    full = load_instruments(marketdata_dir)
    wanted = [("linear", "BTCUSDT"), ("spot", "ETHUSDT"), ("linear", "NOSUCHUSDT")]
    some = load_instruments(marketdata_dir, wanted)
    assert set(some) == {("linear", "BTCUSDT"), ("spot", "ETHUSDT")}
    assert all(some[k] == full[k] for k in some)
    assert len(full) > 1000


def test_kline_stream_is_load_klines_read_lazily(marketdata_dir):
    from collections import Counter

    from hean.marketdata import KlineStream

    stream = KlineStream(marketdata_dir, "ETHUSDT", "1")
    eager = load_klines(marketdata_dir, "ETHUSDT", "1")
    # first and last row of the file, read by hand
    lines = (marketdata_dir / "bybit" / "klines" / "ETHUSDT_1m.csv").read_text().splitlines()
    from datetime import datetime
    to_ms = lambda line: int(datetime.fromisoformat(line.split(",")[0]).timestamp() * 1000)  # noqa: E731
    assert (stream.first_ms, stream.last_ms) == (to_ms(lines[1]), to_ms(lines[-1]))
    dropped = Counter()
    lazy = stream.bars(dropped)
    head = [next(lazy) for _ in range(3)]
    assert [b.close for b in head] == [D(lines[i].split(",")[4]) for i in (1, 2, 3)]
    rest = list(lazy)
    assert head + rest == eager.bars and dropped == eager.dropped


def test_kline_stream_counts_bad_rows_as_it_reaches_them(tmp_path):
    from collections import Counter

    from hean.marketdata import KlineStream

    d = tmp_path / "bybit" / "klines"
    d.mkdir(parents=True)
    (d / "BTCUSDT_1m.csv").write_text(
        "timestamp,open,high,low,close,volume\n"
        "garbage,1,1,1,1,1\n"
        "2025-01-01T00:00:00Z,10,11,9,10.5,1\n"
        "2025-01-01T00:01:00Z,10,11,9,-1,1\n"
        "2025-01-01T00:02:00Z,10,11,9,10,1\n"
        "2025-01-01T00:03:00Z,10\n")
    s = KlineStream(tmp_path, "BTCUSDT", "1")
    assert (s.first_ms, s.last_ms) == (1735689600000, 1735689720000)
    dropped = Counter()
    it = s.bars(dropped)
    assert next(it).close == D("10.5") and dropped == {"bad_timestamp": 1}
    assert [b.close for b in it] == [D("10")] and dropped == {"bad_timestamp": 1, "non_positive_price": 1, "short_row": 1}
    (d / "BTCUSDT_1m.csv").write_text("ts,o,h,l,c\n")
    with pytest.raises(ValueError, match="header"):
        KlineStream(tmp_path, "BTCUSDT", "1")
    with pytest.raises(FileNotFoundError, match="ETHUSDT"):
        KlineStream(tmp_path, "ETHUSDT", "1")
