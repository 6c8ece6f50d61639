"""Hypothesis robustness tests of the native code: no input crashes the number
parser, the order book, the matcher, the paper engine or the indicators; bad
inputs are rejected and counted; the native book always agrees with the
pure-Python reference."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hean import _native
from hean import indicators as ind
from hean.engine.book import OrderBook, ReferenceBook, parse_fixed

# database=None: no .hypothesis/ directory in the repository
FAST = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

numberish = st.one_of(
    st.text(alphabet="0123456789.-+eE", max_size=12),
    st.text(max_size=8),
    st.sampled_from(["NaN", "nan", "inf", "-inf", "Infinity", "", ".", "0", "0.0", "1e5", "-1", "99999999999999999999",
                     "1.000000000000", "00012.50", "1.5"]),
    st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False).map(str),
)


@FAST
@given(numberish, st.integers(0, 6))
def test_parse_fixed_matches_reference(text, decimals):
    ref = ReferenceBook(decimals, 0)._parse(text, decimals)
    assert parse_fixed(text, decimals) == ref


level = st.tuples(st.one_of(st.integers(1, 30).map(lambda p: f"{p / 2:.1f}"), numberish),
                  st.one_of(st.integers(0, 9).map(str), numberish))
message = st.tuples(st.booleans(), st.lists(level, max_size=6), st.lists(level, max_size=6),
                    st.integers(-2, 40), st.integers(-2, 40))


@FAST
@given(st.lists(message, max_size=40))
def test_book_never_crashes_and_matches_reference(msgs):
    nat, ref = OrderBook(1, 0), ReferenceBook(1, 0)
    for snap, bids, asks, u, seq in msgs:
        assert nat.apply(snap, bids, asks, u, seq, 0) == ref.apply(snap, bids, asks, u, seq, 0)
        assert nat.best_bid() == ref.best_bid() and nat.best_ask() == ref.best_ask()
        if nat.best_bid()[1] and nat.best_ask()[1]:
            assert nat.best_bid()[0] < nat.best_ask()[0]  # never crossed
        nat.mid(), nat.microprice(), nat.imbalance(3), nat.sweep_cost(1, 1e6), nat.sweep_cost(-1, 0.0)
    assert nat.counts == ref.counts
    assert sum(nat.counts.values()) == len(msgs)


op = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 30), st.sampled_from(["Buy", "Sell", "Hold"]),
              st.sampled_from(["Market", "Limit", "Stop"]), st.integers(-5, 5000), st.integers(-5, 40),
              st.sampled_from(["GTC", "IOC", "FOK", "PostOnly", "Day"]), st.booleans()),
    st.tuples(st.just("trade"), st.integers(-5, 40), st.integers(-5, 3000), st.sampled_from(["Buy", "Sell", "x"]),
              st.integers(0, 100)),
    st.tuples(st.just("book"), message),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
)


@FAST
@given(st.lists(op, max_size=60))
def test_matcher_never_crashes_and_keeps_its_invariants(ops):
    m = _native.PaperMatcher(1, 3, 1, 1, 1, "0.5", "0.0002", "0.00055", False)
    m.on_book(True, [("1.0", "5"), ("0.5", "3")], [("1.5", "2"), ("2.0", "4")], 1, 1, 0)
    for o in ops:
        if o[0] == "submit":
            _, oid, side, typ, qty, px, tif, ro = o
            code, msg, status = m.submit(oid, side, typ, qty, px, tif, ro, 0)
            assert isinstance(code, int) and status in ("New", "PartiallyFilled", "Filled", "Cancelled", "Rejected")
        elif o[0] == "trade":
            m.on_trade(o[4], o[1], o[2], o[3])
        elif o[0] == "book":
            snap, bids, asks, u, seq = o[1]
            m.on_book(snap, bids, asks, u, seq, 0)
        else:
            m.cancel(o[1])
    fills = m.fills()
    assert m.position == sum(q if s == "Buy" else -q for _, _, s, _, q, _, _ in fills)
    assert m.fees_e8 == sum(f[5] for f in fills)
    assert all(q > 0 and p > 0 for _, _, _, p, q, _, _ in fills)
    for oid in range(31):
        od = m.order(oid)
        if od is not None:
            assert 0 <= od["filled"] <= od["qty"] and od["leaves"] >= 0


bar = st.tuples(st.integers(0, 3), st.integers(-10, 10**6), st.integers(-5, 10**6), st.integers(-5, 10**6),
                st.integers(-5, 10**6), st.integers(-5, 10**6))


@FAST
@given(st.lists(bar, max_size=80), st.sampled_from(["10000", "1e3", "abc", "-5", "0.000000001", "NaN"]))
def test_paper_engine_never_crashes(bars, capital):
    args = dict(price_decimals=1, qty_decimals=3, money_decimals=8, spot=False, capital=capital,
                max_leverage="1", slippage_bps="2.0", taker_fee="0.00055", paused=False,
                params={"emaFastPeriod": 2, "emaSlowPeriod": 3, "volatilityWindow": 5, "impulseLookback": 1,
                        "atrPeriod": 2, "cooldownBars": 0, "impulseThreshold": 0.1},
                instruments=[(1, 1, 1, "5", "100")] * 4)
    try:
        e = _native.PaperEngine(**args)
    except ValueError:
        return
    e.set_policy({"softMaxDrawdownPercent": "5", "hardMaxDrawdownPercent": "10", "maxDailyLossUsdt": "100",
                  "maxLeverage": "3", "maxPositionNotionalUsdt": "1000", "softBrakeSizeFactor": "0.5",
                  "maxOpenPositions": 4, "maxOrdersPerMinute": 60})
    ts = 0
    for sym, dt, o, h, lo, c in bars:
        ts += dt
        e.on_bar(sym, ts, o, h, lo, c)
    cnt = e.counters()
    assert cnt["bars_processed"] + cnt["dropped_out_of_order"] + cnt["rejected_bars"] == len(bars)


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@FAST
@given(st.lists(floats, max_size=60), st.integers(1, 8))
def test_indicators_never_crash(xs, p):
    x = np.array(xs, dtype=np.float64)
    for fn in (ind.sma, ind.rsi, ind.ema):
        assert fn(x, p).shape == x.shape
    ind.bollinger(x, p, 2.0)
    if p >= 2:
        ind.zscore(x, p)
    ind.atr(x, x, x, p)
    ind.fused(x, x, x, ema_fast=p, ema_slow=p + 1, sma=p, rsi=p, atr=p, bb=p)
    ind.fused(x, x, x, ema_fast=p, ema_slow=p + 1, sma=p, rsi=p, atr=p, bb=p, exact=True)
    ind.bollinger(x, p, 2.0, exact=True)
    for fn in (ind.sma, ind.rsi, ind.ema):
        fn(x, p, exact=True)
    ind.atr(x, x, x, p, exact=True)
    ind.ofi(x, x, x, x, p)
    bad = ~((x > 0) & np.isfinite(x))
    if bad.any():
        with pytest.raises(ValueError):
            ind.vwap(x, np.ones_like(x), p)
        with pytest.raises(ValueError):
            ind.rolling_log_return_std(x, max(p, 2))
    elif len(x):
        ind.vwap(x, np.ones_like(x), p)


@FAST
@given(st.lists(st.floats(min_value=1e-3, max_value=1e6), min_size=1, max_size=80), st.integers(1, 10))
def test_streaming_equals_batch_on_random_series(xs, p):
    x = np.array(xs)
    for cls, fn in ((ind.SMA, ind.sma), (ind.RSI, ind.rsi), (ind.EMA, ind.ema)):
        s = cls(p)
        assert np.array_equal(np.array([s.update(v) for v in xs]), fn(x, p, exact=True), equal_nan=True)
    got = ind.ema(x, p)
    exp = ind.ema(x, p, exact=True)
    ok = np.isnan(exp) == np.isnan(got)
    assert ok.all()
    m = ~np.isnan(exp)
    # the two forms differ by rounding, bounded relative to the input's scale (the
    # streaming form x + a*(y - x) itself cancels when a value jumps by 1e4x)
    assert np.all(np.abs(got[m] - exp[m]) <= 1e-12 * np.max(np.abs(x)))
    z = ind.ZScore(max(p, 2))
    assert np.array_equal([z.update(v) for v in xs], ind.zscore(x, max(p, 2)), equal_nan=True)
    assert all(math.isfinite(v) or math.isnan(v) for v in ind.zscore(x, max(p, 2)))


def _candle(sym, dt, base, d_open, d_close, up, down, corrupt):
    o, c = base + d_open, base + d_close
    h, lo = max(o, c) + up, min(o, c) - down
    if corrupt == 1:
        h, lo = lo, h  # high < low unless flat
    elif corrupt == 2:
        o = 0
    return sym, dt, o, h, lo, c


# mostly valid candles of a random walk-ish price, some corrupt, some late or duplicate
candle = st.builds(_candle, st.integers(0, 3), st.sampled_from([60_000] * 8 + [0, -60_000, 1]),
                   st.integers(900, 1100), st.integers(-40, 40), st.integers(-40, 40), st.integers(0, 30),
                   st.integers(0, 30), st.sampled_from([0] * 18 + [1, 2]))


@FAST
@given(st.lists(candle, min_size=40, max_size=160), st.integers(0, 2))
def test_paper_engine_run_equals_on_bar(bars, soft):
    """PaperEngine.run over a stream (invalid, duplicate and out-of-order candles
    included) leaves the same fills, counters, figures and risk transitions as on_bar
    per candle, and its equity curve is the equity after each candle."""
    args = dict(price_decimals=1, qty_decimals=3, money_decimals=8, spot=False, capital="10000",
                max_leverage="3", slippage_bps="2.0", taker_fee="0.00055", paused=False,
                params={"emaFastPeriod": 2, "emaSlowPeriod": 3, "volatilityWindow": 3, "impulseLookback": 1,
                        "atrPeriod": 2, "cooldownBars": 1, "impulseThreshold": 0.01, "stopLossAtr": 1.0,
                        "takeProfitAtr": 2.0, "riskPerTradeFraction": 0.05},
                instruments=[(1, 1, 1, "5", "100")] * 4)
    policy = {"softMaxDrawdownPercent": ("5", "0", "0.5")[soft], "hardMaxDrawdownPercent": "30",
              "maxDailyLossUsdt": "2000", "maxLeverage": "3", "maxPositionNotionalUsdt": "100000",
              "softBrakeSizeFactor": "0.5", "maxOpenPositions": 4, "maxOrdersPerMinute": 60}
    a, b = _native.PaperEngine(**args), _native.PaperEngine(**args)
    a.set_policy(policy, evaluate=False)
    b.set_policy(policy, evaluate=False)
    ts, rows, curve = 0, [], []
    for sym, dt, o, h, lo, c in bars:
        ts += dt
        rows.append((sym, ts, o, h, lo, c))
        a.on_bar(sym, ts, o, h, lo, c)
        curve.append(float(Decimal(a.figures()["equity"])))
    cols = list(zip(*rows)) if rows else [()] * 6
    got = b.run(np.array(cols[0], np.int32), *(np.array(col, np.int64) for col in cols[1:]))
    assert list(got) == curve
    assert a.counters() == b.counters()
    assert a.figures() == b.figures()
    assert a.risk_events() == b.risk_events()
    fa, fb = a.fills(0), b.fills(0)
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)
