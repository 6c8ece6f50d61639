"""The one-call native market replay (candles + trades + L2 book -> strategy -> risk ->
matching -> ledger) against the pure-Python pipeline on the recorded Bybit files, with
bad input injected, an independent ledger recomputation and a fuzzer."""

from __future__ import annotations

import copy
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hean import _native
from hean.engine.market import (
    EV_BOOK_DELTA,
    EV_BOOK_SNAPSHOT,
    EV_CANDLE,
    EV_MALFORMED,
    EV_TRADE,
    MarketParams,
    MarketRisk,
    encode_frames,
    market_engine,
    market_symbols,
    read_market_frames,
    replay_market_native,
    replay_market_reference,
)
from hean.marketdata import load_instruments

WS_SYMBOLS = ["BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT"]


@pytest.fixture(scope="module")
def instruments(marketdata_dir):
    return {s: i for (cat, s), i in load_instruments(marketdata_dir).items() if cat == "linear"}


@pytest.fixture(scope="module")
def ws_frames(marketdata_dir):
    return read_market_frames(marketdata_dir / "bybit" / "ws" / "BYBIT.jsonl.zst")


@pytest.fixture(scope="module")
def ws_symbols(ws_frames, instruments):
    return market_symbols(ws_frames, WS_SYMBOLS, instruments)


def assert_identical(a, b):
    assert set(a.fills) == set(b.fills)
    for k in a.fills:
        np.testing.assert_array_equal(a.fills[k], b.fills[k], err_msg=k)
    assert a.equity.shape == b.equity.shape
    np.testing.assert_array_equal(a.equity, b.equity)  # bit for bit
    assert a.counters == b.counters
    assert a.figures == b.figures
    assert a.money_decimals == b.money_decimals


def ledger_equity(result, symbols, marks, capital=Decimal("10000")):
    """Final equity recomputed from the fills alone (exact Decimals): capital - buys +
    sells - fees + positions at their closing touch."""
    cash = capital
    pos = [0] * len(symbols)
    f = result.fills
    for i in range(len(f["ts_ms"])):
        s = symbols[int(f["symbol"][i])]
        px = Decimal(int(f["price"][i])).scaleb(-s.price_decimals)
        q = Decimal(int(f["qty"][i])).scaleb(-s.size_decimals)
        side = int(f["side"][i])
        cash += -px * q if side > 0 else px * q
        cash -= Decimal(int(f["fee_e8"][i])).scaleb(-8)
        pos[int(f["symbol"][i])] += side * int(f["qty"][i])
    eq = cash
    for k, s in enumerate(symbols):
        if pos[k]:
            bid, ask = marks[k]
            eq += Decimal(pos[k]).scaleb(-s.size_decimals) * Decimal(bid if pos[k] > 0 else ask).scaleb(-s.price_decimals)
    return eq, pos


PARAM_SETS = [
    (MarketParams(), MarketRisk()),
    (MarketParams(entry_imbalance=0.1, exit_imbalance=0.05, cooldown_ms=200), MarketRisk()),
    (MarketParams(entry_imbalance=0.1, exit_imbalance=0.0, trend_period=1, cooldown_ms=0, max_hold_ms=3000),
     MarketRisk(order_notional=Decimal("1000"), max_position_notional=Decimal("700"), max_orders_per_minute=12)),
    (MarketParams(post_only=True, entry_imbalance=0.1, order_ttl_ms=30000, cooldown_ms=0),
     MarketRisk(order_notional=Decimal("5000"))),
    (MarketParams(entry_imbalance=0.05, exit_imbalance=0.02, cooldown_ms=0),
     MarketRisk(order_notional=Decimal("50000"), hard_drawdown_bps=2)),
]


@pytest.mark.parametrize("params,risk", PARAM_SETS)
def test_ws_capture_native_equals_python_pipeline(ws_frames, ws_symbols, params, risk):
    tape = encode_frames(ws_frames, ws_symbols)
    nat = replay_market_native(tape, params=params, risk=risk)
    ref = replay_market_reference(ws_frames, ws_symbols, params=params, risk=risk)
    assert_identical(nat, ref)
    c = nat.counters
    # every recorded frame of the four symbols became an event: 2,148 book messages,
    # one event per trade and per confirmed candle
    assert c["events"] == len(tape) == len(nat.equity)
    assert c["book"]["OK"] == 2148 and sum(c["book"].values()) == 2148
    assert c["trades"] + c["bad_trades"] == int(np.sum(tape.kind == EV_TRADE))
    # the ledger agrees with an independent recomputation from the fills
    marks = []
    # marks: the last valid touch of each symbol, read from a plain book replay
    for k, s in enumerate(ws_symbols):
        book = _native.OrderBook(s.price_decimals, s.size_decimals)
        bid = ask = 0
        for m in ws_frames:
            if m["topic"] != f"orderbook.200.{s.symbol}":
                continue
            d = m["data"]
            if book.apply(m["type"] == "snapshot", [tuple(x) for x in d["b"]], [tuple(x) for x in d["a"]],
                          int(d["u"]), int(d.get("seq", 0)), int(m["ts"])) == "OK":
                bid, ask = book.best_bid()[0], book.best_ask()[0]
        marks.append((bid, ask))
    eq, pos = ledger_equity(nat, ws_symbols, marks)
    # paper fills consume book levels, so marks can differ from a plain replay only if a
    # paper fill took the whole touch; that does not happen at these sizes
    assert pos == c["positions"]
    assert Decimal(nat.figures["equity_units"]).scaleb(-nat.money_decimals) == eq


def test_ws_capture_trades_in_every_mode(ws_frames, ws_symbols):
    """The parameter sets above are not vacuous: entries, exits, maker fills, position
    caps, rate limits and the hard stop all happen on the recorded data."""
    res = [replay_market_native(encode_frames(ws_frames, ws_symbols), params=p, risk=r) for p, r in PARAM_SETS]
    assert len(res[0].fills["ts_ms"]) > 0
    assert set(np.unique(res[1].fills["reason"])) >= {0, 1}
    assert res[2].counters["reasons"]["ORDER_RATE_LIMIT"] > 0
    assert 2 in set(res[2].fills["reason"])  # exits on time
    # position cap: no entry above 700 USDT notional
    f = res[2].fills
    for i in np.nonzero(f["reason"] == 0)[0]:
        s = ws_symbols[int(f["symbol"][i])]
        notional = Decimal(int(f["price"][i])).scaleb(-s.price_decimals) * Decimal(int(f["qty"][i])).scaleb(-s.size_decimals)
        assert notional <= Decimal("700")
    assert res[3].fills["maker"].sum() > 0  # PostOnly entries filled as maker
    assert res[4].counters["hard_stop"] is True
    assert 3 in set(res[4].fills["reason"]) and res[4].counters["positions"] == [0, 0, 0, 0]
    assert res[4].counters["reasons"]["HARD_STOP"] > 0


def test_orderbook_archive_native_equals_python(marketdata_dir, instruments):
    frames = read_market_frames(marketdata_dir / "bybit" / "orderbook" / "xrpusdt-ob500.data.zip")
    syms = market_symbols(frames, ["XRPUSDT"], instruments)
    p = MarketParams(entry_imbalance=0.05, exit_imbalance=0.0, cooldown_ms=0)
    nat = replay_market_native(encode_frames(frames, syms), params=p)
    ref = replay_market_reference(frames, syms, params=p)
    assert_identical(nat, ref)
    assert nat.counters["book"]["OK"] == 50 and nat.counters["events"] == 50


def _bad_frames(ws_frames):
    """Recorded frames of SOLUSDT with bad messages injected; returns (frames, expected
    counters by hand)."""
    sol = [copy.deepcopy(m) for m in ws_frames if m["topic"].endswith(".SOLUSDT")]
    books = [i for i, m in enumerate(sol) if m["topic"].startswith("orderbook.")]
    trades = [i for i, m in enumerate(sol) if m["topic"].startswith("publicTrade.")]
    first_delta = next(i for i in books if sol[i]["type"] == "delta")
    d0 = sol[first_delta]
    out = list(sol)
    ins = []  # (position, frame)
    nan_book = copy.deepcopy(d0)
    nan_book["data"]["b"] = [["NaN", "1.0"]]
    neg_book = copy.deepcopy(d0)
    neg_book["data"]["a"] = [["150.000", "-3"]]
    inf_book = copy.deepcopy(d0)
    inf_book["data"]["a"] = [["inf", "3"]]
    crossed = copy.deepcopy(d0)
    crossed["data"]["b"] = [["999999.000", "1.0"]]  # a bid far above every ask
    crossed["data"]["a"] = []
    three = copy.deepcopy(d0)
    three["data"]["b"] = [["150.000", "1.0", "x"]]
    nodata = {"topic": d0["topic"], "type": "delta", "ts": d0["ts"]}
    t0 = sol[trades[3]]
    bad_tr = copy.deepcopy(t0)
    bad_tr["data"] = [dict(t0["data"][0], p="nan"), dict(t0["data"][0], v="0"), dict(t0["data"][0], S="Hold"),
                      dict(t0["data"][0], T=0), dict(t0["data"][0], p="-1")]
    bad_candle = {"topic": "kline.1.SOLUSDT", "type": "snapshot", "ts": 0,
                  "data": [{"start": 1, "open": "10", "high": "9", "low": "11", "close": "10", "confirm": True},
                           {"start": 2, "open": "inf", "high": "9", "low": "1", "close": "5", "confirm": True},
                           {"start": 3, "open": "0", "high": "0", "low": "0", "close": "0", "confirm": True}]}
    # each bad book message is placed before a real delta: it must not change the book
    # (BAD: nothing applied) so the real delta after it still applies
    pos = first_delta + 5
    ins += [(pos, nan_book), (pos, neg_book), (pos, inf_book), (pos, three), (pos, nodata)]
    ins += [(trades[3] + 1, bad_tr), (trades[3] + 1, bad_candle)]
    for p, fr in sorted(ins, key=lambda x: -x[0]):
        out.insert(p, fr)
    # a crossing delta near the end (rolled back; the book then needs a snapshot)
    at = len(out) - 3
    prev = next(m for m in reversed(out[:at]) if m["topic"].startswith("orderbook."))
    crossed["data"]["u"] = prev["data"]["u"] + 1  # in sequence: only the crossing is wrong
    crossed["data"]["seq"] = prev["data"]["seq"]
    out.insert(at, crossed)
    expected = {"BAD": 3, "CROSSED": 1, "malformed": 2, "bad_trades_min": 5, "rejected_candles": 3}
    return out, expected


def test_bad_input_is_rejected_counted_and_identical(ws_frames, ws_symbols):
    frames, exp = _bad_frames(ws_frames)
    sol = [s for s in ws_symbols if s.symbol == "SOLUSDT"]
    p = MarketParams(entry_imbalance=0.05, exit_imbalance=0.0, cooldown_ms=0, trend_period=1)
    nat = replay_market_native(encode_frames(frames, sol), params=p)
    ref = replay_market_reference(frames, sol, params=p)
    assert_identical(nat, ref)
    c = nat.counters
    assert c["book"]["BAD"] == exp["BAD"]
    assert c["book"]["CROSSED"] == exp["CROSSED"]
    assert c["malformed"] == exp["malformed"]
    assert c["rejected_candles"] == exp["rejected_candles"]
    clean = replay_market_native(encode_frames([m for m in ws_frames if m["topic"].endswith(".SOLUSDT")], sol),
                                 params=p)
    assert c["bad_trades"] >= clean.counters["bad_trades"] + exp["bad_trades_min"]
    # deltas after the crossing one are refused until a snapshot (none follows)
    assert c["book"]["NO_SNAPSHOT"] >= 1
    # nothing traded at a price the recorded book never showed
    assert np.all(nat.fills["price"] > 0)
    assert np.all(nat.fills["price"] < 999999000)
    assert np.all(np.isfinite(nat.equity))


def test_bad_arguments_raise_clear_errors(ws_symbols):
    with pytest.raises(ValueError, match="order_notional"):
        market_engine(ws_symbols, Decimal("10000"), MarketParams(), MarketRisk(order_notional=Decimal("0")))
    with pytest.raises(ValueError, match="imbalance_levels"):
        market_engine(ws_symbols, Decimal("10000"), MarketParams(imbalance_levels=0), MarketRisk())
    eng, _ = market_engine(ws_symbols, Decimal("10000"), MarketParams(), MarketRisk())
    z8, z32, z64 = np.zeros(3, np.int8), np.zeros(3, np.int32), np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="same length"):
        eng.run(z8, z32, z64, z64, z64, z64, np.zeros(2, np.int64), z8, z64, z64)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_tapes_never_crash(ws_symbols, data):
    """Arbitrary kinds, symbol indices, level ranges and numbers: every event is either
    processed or counted, the equity stays finite."""
    n = data.draw(st.integers(0, 60))
    m = data.draw(st.integers(0, 40))
    i64 = st.integers(-(2**40), 2**40)
    arr = lambda k, dt, el: np.asarray(data.draw(st.lists(el, min_size=k, max_size=k)), dtype=dt)  # noqa: E731
    kind = arr(n, np.int8, st.integers(-2, 6))
    sym = arr(n, np.int32, st.integers(-1, 5))
    ts = np.sort(arr(n, np.int64, st.integers(0, 10**6)))
    x = [arr(n, np.int64, st.one_of(st.integers(-3, m + 3), i64)) for _ in range(4)]
    lv_side = arr(m, np.int8, st.sampled_from([-1, 1, 0]))
    lv_price = arr(m, np.int64, st.one_of(st.integers(-5, 2000), i64))
    lv_size = arr(m, np.int64, st.one_of(st.integers(-5, 50), i64))
    eng, _ = market_engine(ws_symbols, Decimal("10000"), MarketParams(entry_imbalance=0.0, cooldown_ms=0),
                           MarketRisk(order_notional=Decimal("100")))
    curve = eng.run(kind, sym, ts, *x, lv_side, lv_price, lv_size)
    c = eng.counters()
    assert c["events"] == n and curve.shape == (n,)
    assert np.all(np.isfinite(curve))
    valid = (sym >= 0) & (sym < len(ws_symbols)) & (kind >= 0) & (kind <= EV_MALFORMED)
    assert c["malformed"] >= int(np.sum(~valid | (kind == EV_MALFORMED)))
    books = int(np.sum(valid & ((kind == EV_BOOK_SNAPSHOT) | (kind == EV_BOOK_DELTA))))
    assert sum(c["book"].values()) <= books
    assert c["trades"] + c["bad_trades"] == int(np.sum(valid & (kind == EV_TRADE)))
    assert c["candles"] + c["rejected_candles"] + c["dropped_candles"] == int(np.sum(valid & (kind == EV_CANDLE)))


JUNK = st.one_of(st.none(), st.just("nan"), st.just("inf"), st.just("-1"), st.just("0"), st.just(""),
                 st.just("1e5"), st.just("\ud800"), st.just(1e999), st.just(10**30), st.just(-5), st.just([]),
                 st.just({}), st.just(["1", "2", "3"]), st.text(max_size=6), st.integers(-(2**70), 2**70),
                 st.floats(allow_nan=True, allow_infinity=True))


def _mutate(frame, data):
    """Replace one field somewhere inside a copy of a recorded frame by junk."""
    f = copy.deepcopy(frame)
    node = f
    for _ in range(data.draw(st.integers(0, 3))):
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node, key=str)))
        elif isinstance(node, list) and node:
            key = data.draw(st.integers(0, len(node) - 1))
        else:
            break
        if not isinstance(node[key], (dict, list)):
            break
        node = node[key]
    if isinstance(node, dict):
        key = data.draw(st.one_of(st.sampled_from(sorted(node, key=str)) if node else st.just("x"), st.just("data")))
        if data.draw(st.booleans()) and key in node:
            del node[key]
        else:
            node[key] = data.draw(JUNK)
    elif isinstance(node, list) and node:
        node[data.draw(st.integers(0, len(node) - 1))] = data.draw(JUNK)
    return f


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_frames_never_crash_and_both_paths_agree(ws_frames, ws_symbols, data):
    """Recorded SOLUSDT frames with junk written into some of them (missing keys, NaN,
    inf, huge or negative numbers, wrong types, unencodable strings): the encoder and
    both pipelines never raise, count the bad input and stay identical."""
    sol = [m for m in ws_frames if m["topic"].endswith(".SOLUSDT")][:200]
    idx = data.draw(st.lists(st.integers(0, len(sol) - 1), min_size=1, max_size=8, unique=True))
    frames = [(_mutate(m, data) if i in idx else m) for i, m in enumerate(sol)]
    syms = [s for s in ws_symbols if s.symbol == "SOLUSDT"]
    p = MarketParams(entry_imbalance=0.05, exit_imbalance=0.0, cooldown_ms=0, trend_period=1)
    nat = replay_market_native(encode_frames(frames, syms), params=p)
    ref = replay_market_reference(frames, syms, params=p)
    assert_identical(nat, ref)
    assert np.all(np.isfinite(nat.equity))
