"""Tests of hean.indicators: native batch == native streaming == pure-Python reference,
plus independent checks (numpy, hand computations, optionally TA-Lib) on recorded
Bybit 1-minute candles."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hean import _native
from hean import indicators as ind
from hean.indicators import reference as ref

MARKETDATA = Path(__file__).resolve().parents[2].parent / "shared" / "marketdata"
KLINES = MARKETDATA / "bybit" / "klines"
SYMBOLS = ("BTCUSDT", "ETHUSDT")

RTOL = 1e-12


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _load(symbol: str) -> dict[str, np.ndarray]:
    path = KLINES / f"{symbol}_1m.csv"
    if not path.is_file():
        pytest.skip(f"recorded market data not found at {path} "
                    f"(expected ../shared/marketdata next to the repository)")
    cols: dict[str, list[float]] = {"high": [], "low": [], "close": []}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            for k in cols:
                cols[k].append(float(row[k]))
    out = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    assert len(out["close"]) > 10_000, f"{path} is unexpectedly short"
    return out


_CACHE: dict[str, dict[str, np.ndarray]] = {}


@pytest.fixture(params=SYMBOLS)
def bars(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    if request.param not in _CACHE:
        _CACHE[request.param] = _load(request.param)
    return _CACHE[request.param]


def assert_close(actual, expected, rtol: float = RTOL, atol: float = 0.0) -> None:
    """NaN positions equal; finite values within rtol (relative to the larger magnitude)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    na, nb = np.isnan(a), np.isnan(b)
    if not np.array_equal(na, nb):
        i = int(np.flatnonzero(na != nb)[0])
        raise AssertionError(f"NaN positions differ first at index {i}: {a[i]!r} vs {b[i]!r}")
    fa, fb = a[~na], b[~nb]
    diff = np.abs(fa - fb)
    scale = np.maximum(np.abs(fa), np.abs(fb))
    bad = diff > np.maximum(rtol * scale, atol)
    if bad.any():
        i = int(np.flatnonzero(~na)[np.flatnonzero(bad)[0]])
        raise AssertionError(
            f"{int(bad.sum())} values differ beyond rtol={rtol} atol={atol}; first at index {i}: "
            f"{a[i]!r} vs {b[i]!r} (max rel {float((diff / np.where(scale > 0, scale, 1)).max()):.3g})")


def stream(obj, *cols: np.ndarray) -> np.ndarray:
    lists = [c.tolist() for c in cols]
    return np.array([obj.update(*vals) for vals in zip(*lists)], dtype=np.float64)


def leading_nans(a: np.ndarray) -> int:
    finite = np.flatnonzero(~np.isnan(a))
    return int(finite[0]) if finite.size else len(a)


# ---------------------------------------------------------------------------
# the module
# ---------------------------------------------------------------------------


def test_native_module_imports_outside_repo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import numpy as np, hean._native as n, hean.indicators as i; "
            "assert n.__name__ == 'hean._native', n.__name__; "
            "assert i.EMA is n.EMA; "
            "print(n.ema(np.array([1.0, 2.0, 3.0, 4.0]), 3).tolist())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[nan, nan, 2.0, 3.0]"


def test_public_api() -> None:
    for name in ("ema", "ema_into", "rolling_log_return_std", "rolling_log_return_std_into",
                 "atr", "atr_into", "EMA", "RollingLogReturnStd", "ATR", "MAX_PERIOD"):
        assert name in ind.__all__, name
        assert hasattr(ref, name.removesuffix("_into")), name
        assert getattr(ind, name).__doc__ or name == "MAX_PERIOD", name
    assert ind.EMA is _native.EMA and ind.ATR is _native.ATR
    assert ind.RollingLogReturnStd is _native.RollingLogReturnStd
    assert ind.MAX_PERIOD == ref.MAX_PERIOD == 1_000_000


# ---------------------------------------------------------------------------
# native batch == native streaming == reference, on real candles
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("period", [1, 2, 12, 48, 500])
def test_ema_batch_streaming_reference(bars, period: int) -> None:
    x = bars["close"]
    batch = ind.ema(x, period)
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float64 and batch.shape == x.shape
    st = ind.EMA(period)
    streamed = stream(st, x)
    # the default (fast) batch form: within 1e-12 relative of the streaming class;
    # exact=True runs the same compiled step code: bit-identical, not merely close.
    assert_close(batch, streamed)
    assert np.array_equal(ind.ema(x, period, exact=True), streamed, equal_nan=True)
    assert st.value == pytest.approx(batch[-1], rel=1e-12, abs=0.0) and st.count == len(x) and st.ready
    assert_close(batch, ref.ema(x.tolist(), period))
    assert leading_nans(batch) == period - 1
    assert not np.isnan(batch[period - 1:]).any()


@pytest.mark.parametrize("window", [2, 5, 60, 1000])
def test_rolling_std_batch_streaming_reference(bars, window: int) -> None:
    close = bars["close"]
    batch = ind.rolling_log_return_std(close, window)
    assert batch.dtype == np.float64 and batch.shape == close.shape
    st = ind.RollingLogReturnStd(window)
    streamed = stream(st, close)
    assert np.array_equal(batch, streamed, equal_nan=True)
    assert st.value == batch[-1] and st.count == len(close) and st.ready
    assert_close(batch, ref.rolling_log_return_std(close.tolist(), window))
    assert leading_nans(batch) == window
    assert not np.isnan(batch[window:]).any()
    assert (batch[window:] >= 0).all()


@pytest.mark.parametrize("period", [1, 2, 14, 100])
def test_atr_batch_streaming_reference(bars, period: int) -> None:
    h, lo, c = bars["high"], bars["low"], bars["close"]
    batch = ind.atr(h, lo, c, period)
    assert batch.dtype == np.float64 and batch.shape == c.shape
    st = ind.ATR(period)
    streamed = stream(st, h, lo, c)
    assert_close(batch, streamed)
    assert np.array_equal(ind.atr(h, lo, c, period, exact=True), streamed, equal_nan=True)
    assert st.value == pytest.approx(batch[-1], rel=1e-12, abs=0.0) and st.count == len(c) and st.ready
    assert_close(batch, ref.atr(h.tolist(), lo.tolist(), c.tolist(), period))
    assert leading_nans(batch) == period
    assert not np.isnan(batch[period:]).any()
    assert (batch[period:] > 0).all()


def test_reference_streaming_matches_reference_batch(bars) -> None:
    c = bars["close"][:3000]
    h, lo = bars["high"][:3000], bars["low"][:3000]
    assert_close(stream(ref.EMA(12), c), ref.ema(c.tolist(), 12), rtol=0.0)
    assert_close(stream(ref.RollingLogReturnStd(60), c),
                 ref.rolling_log_return_std(c.tolist(), 60), rtol=0.0)
    assert_close(stream(ref.ATR(14), h, lo, c), ref.atr(h.tolist(), lo.tolist(), c.tolist(), 14),
                 rtol=0.0)


# ---------------------------------------------------------------------------
# independent checks
# ---------------------------------------------------------------------------


def test_ema_hand_computed() -> None:
    # alpha = 2/(3+1) = 0.5; seed = mean(1, 2, 3) = 2; 2 + .5*(4-2) = 3; 3 + .5*(5-3) = 4
    expected = [math.nan, math.nan, 2.0, 3.0, 4.0]
    assert_close(ind.ema([1.0, 2.0, 3.0, 4.0, 5.0], 3), expected, rtol=0.0)
    assert_close(ref.ema([1.0, 2.0, 3.0, 4.0, 5.0], 3), expected, rtol=0.0)
    # period 1: alpha = 1, the EMA is the input itself
    assert_close(ind.ema([3.0, -1.0, 7.5], 1), [3.0, -1.0, 7.5], rtol=0.0)


def test_ema_against_numpy_closed_form(bars) -> None:
    x = bars["close"]
    p, m = 12, 300
    a = 2.0 / (p + 1)
    out = ind.ema(x, p)
    seed = float(np.mean(x[:p]))
    assert out[p - 1] == pytest.approx(seed, rel=1e-13)
    # EMA[p-1+m] = (1-a)^m * seed + sum_{j=1..m} a (1-a)^(m-j) x[p-1+j]
    j = np.arange(1, m + 1)
    closed = (1 - a) ** m * seed + float(np.sum(a * (1 - a) ** (m - j) * x[p - 1 + j]))
    assert out[p - 1 + m] == pytest.approx(closed, rel=1e-11)


def test_rolling_std_against_numpy(bars) -> None:
    close = bars["close"]
    r = np.log(close[1:] / close[:-1])
    for window in (2, 60, 1000):
        out = ind.rolling_log_return_std(close, window)
        # one window by hand: out[i] uses r[i-window+1..i] (r indexed by bar: r_bar[i] = r[i-1])
        i = window + 123
        assert out[i] == pytest.approx(np.std(r[i - window:i], ddof=1), rel=1e-12)
        # and every window of the series against numpy's two-pass std: the sliding update
        # with a recompute every `window` returns does not drift.
        expected = np.lib.stride_tricks.sliding_window_view(r, window).std(axis=1, ddof=1)
        assert_close(out[window:], expected, rtol=1e-10, atol=1e-16)
    # units: fraction per bar, so 1-minute BTC/ETH volatility is well below 1 %
    out60 = ind.rolling_log_return_std(close, 60)
    assert 1e-5 < float(np.nanmedian(out60)) < 1e-2


def test_rolling_std_after_volatility_collapse() -> None:
    # 50 returns of +-5 % followed by returns of ~1e-7: the sliding update alone would
    # leave an error of ~eps * 2.5e-3 in an M2 of ~5e-13 (relative ~1e-6); the
    # cancellation guard recomputes exactly.
    rng = np.random.default_rng(7)
    window = 50
    r = np.concatenate([np.tile([0.05, -0.05], 40), rng.normal(0.0, 1e-7, 300)])
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    rr = np.log(close[1:] / close[:-1])
    expected = np.lib.stride_tricks.sliding_window_view(rr, window).std(axis=1, ddof=1)
    out = ind.rolling_log_return_std(close, window)
    assert_close(out[window:], expected, rtol=1e-10)
    assert_close(ref.rolling_log_return_std(close.tolist(), window), out)


def test_rolling_std_hand_computed() -> None:
    close = [100.0, 110.0, 99.0, 99.0]
    r1, r2, r3 = math.log(1.1), math.log(0.9), 0.0
    m = (r1 + r2) / 2
    s12 = math.sqrt(((r1 - m) ** 2 + (r2 - m) ** 2) / 1)
    m = (r2 + r3) / 2
    s23 = math.sqrt(((r2 - m) ** 2 + (r3 - m) ** 2) / 1)
    expected = [math.nan, math.nan, s12, s23]
    assert_close(ind.rolling_log_return_std(close, 2), expected, rtol=1e-14)
    assert_close(ref.rolling_log_return_std(close, 2), expected, rtol=1e-14)
    # constant prices: zero volatility, exactly
    assert_close(ind.rolling_log_return_std([5.0] * 10, 3), [math.nan] * 3 + [0.0] * 7, rtol=0.0)


def test_atr_hand_computed() -> None:
    high = [10.0, 11.0, 12.0, 11.0]
    low = [9.0, 10.0, 10.0, 9.0]
    close = [9.5, 10.5, 11.0, 10.0]
    # TR1 = max(1, |11-9.5|, |10-9.5|) = 1.5; TR2 = max(2, 1.5, .5) = 2; TR3 = max(2, 0, 2) = 2
    # ATR[2] = (1.5+2)/2 = 1.75; ATR[3] = (1.75*1 + 2)/2 = 1.875
    expected = [math.nan, math.nan, 1.75, 1.875]
    assert_close(ind.atr(high, low, close, 2), expected, rtol=0.0)
    assert_close(ref.atr(high, low, close, 2), expected, rtol=0.0)


def test_atr_against_numpy_true_range(bars) -> None:
    h, lo, c = bars["high"], bars["low"], bars["close"]
    p = 14
    tr = np.full_like(c, np.nan)
    tr[1:] = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - c[:-1]), np.abs(lo[1:] - c[:-1])])
    expected = np.full_like(c, np.nan)
    expected[p] = tr[1:p + 1].mean()
    for i in range(p + 1, len(c)):
        expected[i] = (expected[i - 1] * (p - 1) + tr[i]) / p
    assert_close(ind.atr(h, lo, c, p), expected, rtol=1e-12)


def test_against_talib_if_installed(bars) -> None:
    talib = pytest.importorskip("talib", reason="TA-Lib not installed (optional cross-check)")
    h, lo, c = bars["high"], bars["low"], bars["close"]
    for p in (2, 12, 48):
        assert_close(ind.ema(c, p), talib.EMA(c, timeperiod=p))
    for p in (1, 14, 100):
        assert_close(ind.atr(h, lo, c, p), talib.ATR(h, lo, c, timeperiod=p))


# ---------------------------------------------------------------------------
# streaming behaviour
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("impl", [ind, ref], ids=["native", "reference"])
def test_streaming_ready_count_reset(impl) -> None:
    cases = [
        (impl.EMA(3), 3, lambda k: (100.0 + k,)),
        (impl.RollingLogReturnStd(3), 4, lambda k: (100.0 + (k % 3),)),
        (impl.ATR(3), 4, lambda k: (101.0 + k, 99.0 + k, 100.0 + k)),
    ]
    for st, warm, bar in cases:
        assert st.count == 0 and not st.ready and math.isnan(st.value)
        first = []
        for k in range(10):
            v = st.update(*bar(k))
            first.append(v)
            assert st.count == k + 1
            assert st.ready == (k + 1 >= warm), (st, k)
            assert math.isnan(v) == (k + 1 < warm), (st, k, v)
            assert (math.isnan(st.value) and math.isnan(v)) or st.value == v
        st.reset()
        assert st.count == 0 and not st.ready and math.isnan(st.value)
        assert_close([st.update(*bar(k)) for k in range(10)], first, rtol=0.0)
        assert type(st).__name__ in repr(st) and "count=10" in repr(st)
    with pytest.raises(AttributeError):
        cases[0][0].value = 1.0  # read-only


def test_streaming_repr_identical() -> None:
    for n_st, r_st in [(ind.EMA(2), ref.EMA(2)), (ind.ATR(2), ref.ATR(2)),
                       (ind.RollingLogReturnStd(2), ref.RollingLogReturnStd(2))]:
        assert repr(n_st) == repr(r_st)
        for k in range(4):
            args = (101.0 + k, 99.5, 100.0 + 0.1 * k)
            args = args if isinstance(n_st, (ind.ATR,)) else args[2:]
            n_st.update(*args)
            r_st.update(*args)
        assert repr(n_st) == repr(r_st)


# ---------------------------------------------------------------------------
# _into variants and input handling
# ---------------------------------------------------------------------------


def test_into_variants(bars) -> None:
    h, lo, c = bars["high"], bars["low"], bars["close"]
    out = np.full_like(c, -7.0)
    ind.ema_into(c, 12, out)
    assert np.array_equal(out, ind.ema(c, 12), equal_nan=True)
    out[:] = -7.0
    assert _native.rolling_log_return_std_into(c, 60, out) is None
    assert np.array_equal(out, ind.rolling_log_return_std(c, 60), equal_nan=True)
    out[:] = -7.0
    ind.atr_into(h, lo, c, 14, out)
    assert np.array_equal(out, ind.atr(h, lo, c, 14), equal_nan=True)
    # in place: out may be the input itself (EMA/ATR then run the exact form)
    x = c.copy()
    ind.ema_into(x, 12, x)
    assert np.array_equal(x, ind.ema(c, 12, exact=True), equal_nan=True)
    assert_close(x, ind.ema(c, 12))
    x = c.copy()
    _native.rolling_log_return_std_into(x, 60, x)
    assert np.array_equal(x, ind.rolling_log_return_std(c, 60), equal_nan=True)
    x = c.copy()
    _native.atr_into(h, lo, x, 14, x)
    assert np.array_equal(x, ind.atr(h, lo, c, 14, exact=True), equal_nan=True)
    assert_close(x, ind.atr(h, lo, c, 14))


@pytest.mark.parametrize("module", [ind, _native], ids=["indicators", "native"])
def test_into_shape_and_type_errors(module) -> None:
    x = np.linspace(100.0, 110.0, 10)
    with pytest.raises(ValueError, match=r"^out must have length 10 \(the length of x\), got 9$"):
        module.ema_into(x, 3, np.empty(9))
    with pytest.raises(ValueError, match=r"^out must have length 10 \(the length of close\), got 11$"):
        module.rolling_log_return_std_into(x, 3, np.empty(11))
    with pytest.raises(ValueError, match=r"^out must have length 10 \(the length of high\), got 0$"):
        module.atr_into(x, x, x, 3, np.empty(0))
    with pytest.raises(ValueError, match=r"^out must be 1-D .*got shape \(2, 5\)$"):
        module.ema_into(x, 3, np.empty((2, 5)))
    for bad in (np.empty(10, dtype=np.float32), np.empty(20)[::2], list(range(10))):
        with pytest.raises(TypeError):
            module.ema_into(x, 3, bad)
    ro = np.empty(10)
    ro.flags.writeable = False
    with pytest.raises(TypeError):
        module.ema_into(x, 3, ro)


def test_input_conversion() -> None:
    x = np.linspace(100.0, 120.0, 50)
    expected = ind.ema(x, 5)
    assert np.array_equal(ind.ema(x.tolist(), 5), expected, equal_nan=True)
    assert np.array_equal(ind.ema(np.repeat(x, 2)[::2], 5), expected, equal_nan=True)
    assert np.array_equal(_native.ema(np.repeat(x, 2)[::2], 5), expected, equal_nan=True)
    ro = x.copy()
    ro.flags.writeable = False
    assert np.array_equal(_native.ema(ro, 5), expected, equal_nan=True)
    with pytest.raises(ValueError, match=r"^x must be 1-D, got shape \(5, 10\)$"):
        ind.ema(x.reshape(5, 10), 5)
    for fn in (ind.ema, ref.ema):
        assert len(fn([], 3)) == 0
        assert_close(fn([1.0, 2.0], 3), [math.nan, math.nan], rtol=0.0)


# ---------------------------------------------------------------------------
# argument errors: native and reference agree on type and message
# ---------------------------------------------------------------------------


def _error(fn, *args) -> tuple[type, str]:
    with pytest.raises((ValueError, TypeError)) as exc:
        fn(*args)
    return exc.type, str(exc.value)


@pytest.mark.parametrize("call, message", [
    (lambda m: m.ema([1.0, 2.0], 0), "period must be an integer in [1, 1000000], got 0"),
    (lambda m: m.ema([1.0, 2.0], -3), "period must be an integer in [1, 1000000], got -3"),
    (lambda m: m.ema([1.0, 2.0], 1_000_001),
     "period must be an integer in [1, 1000000], got 1000001"),
    (lambda m: m.EMA(0), "period must be an integer in [1, 1000000], got 0"),
    (lambda m: m.rolling_log_return_std([1.0, 2.0], 1),
     "window must be an integer in [2, 1000000], got 1"),
    (lambda m: m.RollingLogReturnStd(1), "window must be an integer in [2, 1000000], got 1"),
    (lambda m: m.atr([1.0], [1.0], [1.0], 0), "period must be an integer in [1, 1000000], got 0"),
    (lambda m: m.ATR(0), "period must be an integer in [1, 1000000], got 0"),
    (lambda m: m.atr([1.0, 2.0], [1.0], [1.0, 2.0], 3),
     "low must have the same length as high (2), got 1"),
    (lambda m: m.atr([1.0, 2.0], [1.0, 2.0], [1.0, 2.0, 3.0], 3),
     "close must have the same length as high (2), got 3"),
    (lambda m: m.rolling_log_return_std([1.0, 2.0, math.nan, -1.0], 2),
     "close must be finite and > 0, got nan at index 2"),
    (lambda m: m.rolling_log_return_std([1.0, 0.0], 2),
     "close must be finite and > 0, got 0.0 at index 1"),
    (lambda m: m.rolling_log_return_std([-2.5, 1.0], 2),
     "close must be finite and > 0, got -2.5 at index 0"),
    (lambda m: m.rolling_log_return_std([1.0, math.inf], 2),
     "close must be finite and > 0, got inf at index 1"),
    (lambda m: m.RollingLogReturnStd(2).update(-math.inf), "close must be finite and > 0, got -inf"),
    (lambda m: m.RollingLogReturnStd(2).update(1e-5 - 1e-5),
     "close must be finite and > 0, got 0.0"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_errors_identical(call, message: str) -> None:
    n_type, n_msg = _error(call, ind)
    r_type, r_msg = _error(call, ref)
    assert n_type is ValueError and r_type is ValueError
    assert n_msg == message
    assert r_msg == message


def test_float_formatting_in_messages_matches_python() -> None:
    st = ind.RollingLogReturnStd(2)
    for v in (-0.0, -1.0, -1e-05, -0.0001, -123456.789, -1e16, -1.5e300, -5e-324, -1e15):
        with pytest.raises(ValueError) as exc:
            st.update(v)
        assert str(exc.value) == f"close must be finite and > 0, got {v!r}"


@pytest.mark.parametrize("impl", [ind, ref], ids=["native", "reference"])
def test_streaming_bad_close_leaves_state_unchanged(impl) -> None:
    closes = [100.0, 101.0, 100.5, 102.0, 101.0, 103.0]
    clean = impl.RollingLogReturnStd(3)
    expected = [clean.update(c) for c in closes]
    st = impl.RollingLogReturnStd(3)
    got = []
    for k, c in enumerate(closes):
        if k in (2, 4):
            for bad in (math.nan, 0.0, -1.0, math.inf):
                with pytest.raises(ValueError, match=r"^close must be finite and > 0"):
                    st.update(bad)
        count = st.count
        got.append(st.update(c))
        assert st.count == count + 1
    assert_close(got, expected, rtol=0.0)


def test_batch_bad_close_writes_nothing() -> None:
    out = np.full(4, -7.0)
    with pytest.raises(ValueError, match=r"at index 3$"):
        ind.rolling_log_return_std_into([1.0, 2.0, 3.0, math.nan], 2, out)
    assert (out == -7.0).all()


def test_non_integer_period_is_type_error() -> None:
    for impl in (ind, ref):
        with pytest.raises(TypeError):
            impl.EMA(2.5)
        with pytest.raises(TypeError):
            impl.ema([1.0, 2.0, 3.0], 2.0)
