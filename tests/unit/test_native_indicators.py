"""SMA, RSI, Bollinger, z-score, VWAP, OFI, the fused pass and the fast batch
forms: default (fast) batch == native streaming == pure-Python reference to 1e-12
relative, ``exact=True`` batch == streaming bit for bit, both compiled forms of the
fast kernels (AVX2, x86-64 baseline) identical, plus numpy / TA-Lib / hand-computed
cross-checks on recorded Bybit 1-minute candles."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from hean import indicators as ind
from hean.indicators import reference as ref

MARKETDATA = Path(__file__).resolve().parents[2].parent / "shared" / "marketdata"
KLINES = MARKETDATA / "bybit" / "klines"
N = 20_000  # candles per symbol (the pure-Python reference is the slow side)
RTOL = 1e-12

_CACHE: dict[str, dict[str, np.ndarray]] = {}


def _load(symbol: str) -> dict[str, np.ndarray]:
    path = KLINES / f"{symbol}_1m.csv"
    if not path.is_file():
        pytest.skip(f"recorded market data not found at {path}")
    cols: dict[str, list[float]] = {"high": [], "low": [], "close": [], "volume": []}
    with path.open(newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= N:
                break
            for k in cols:
                cols[k].append(float(row[k]))
    return {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}


@pytest.fixture(params=["BTCUSDT", "ETHUSDT"])
def bars(request) -> dict[str, np.ndarray]:
    if request.param not in _CACHE:
        _CACHE[request.param] = _load(request.param)
    return _CACHE[request.param]


def assert_close(actual, expected, rtol: float = RTOL, atol: float = 0.0) -> None:
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape
    na, nb = np.isnan(a), np.isnan(b)
    assert np.array_equal(na, nb), f"NaN positions differ first at {int(np.flatnonzero(na != nb)[0])}"
    diff = np.abs(a[~na] - b[~nb])
    scale = np.maximum(np.abs(a[~na]), np.abs(b[~nb]))
    bad = diff > np.maximum(rtol * scale, atol)
    assert not bad.any(), f"{int(bad.sum())} values differ; max rel {float((diff / np.where(scale > 0, scale, 1)).max()):.3g}"


def stream(obj, *cols) -> np.ndarray:
    return np.array([obj.update(*v) for v in zip(*[np.asarray(c).tolist() for c in cols])], dtype=np.float64)


def leading_nans(a) -> int:
    f = np.flatnonzero(~np.isnan(np.asarray(a)))
    return int(f[0]) if f.size else len(a)


# ---------------------------------------------------------------------------
# batch == streaming == reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("period", [1, 2, 20, 200])
def test_sma(bars, period):
    x = bars["close"]
    b = ind.sma(x, period)
    st = stream(ind.SMA(period), x)
    assert_close(b, st)
    assert np.array_equal(ind.sma(x, period, exact=True), st, equal_nan=True)
    assert_close(b, ref.sma(x.tolist(), period))
    assert leading_nans(b) == period - 1
    # against a fresh mean per window
    w = np.lib.stride_tricks.sliding_window_view(x, period).mean(axis=1)
    assert_close(b[period - 1:], w, rtol=1e-11)


@pytest.mark.parametrize("period", [1, 2, 14, 100])
def test_rsi(bars, period):
    x = bars["close"]
    b = ind.rsi(x, period)
    st = stream(ind.RSI(period), x)
    assert_close(b, st)
    assert np.array_equal(ind.rsi(x, period, exact=True), st, equal_nan=True)
    assert_close(b, ref.rsi(x.tolist(), period))
    assert leading_nans(b) == period
    assert np.nanmin(b) >= 0 and np.nanmax(b) <= 100


@pytest.mark.parametrize("period,k", [(2, 1.0), (20, 2.0), (100, 2.5)])
def test_bollinger(bars, period, k):
    x = bars["close"]
    u, m, lo = ind.bollinger(x, period, k)
    st = ind.Bollinger(period, k)
    rows = [st.update(v) for v in x.tolist()]
    for i, band in enumerate((u, m, lo)):
        assert_close(band, [r[i] for r in rows])
    for i, band in enumerate(ind.bollinger(x, period, k, exact=True)):
        assert np.array_equal(band, [r[i] for r in rows], equal_nan=True)
    ru, rm, rl = ref.bollinger(x.tolist(), period, k)
    assert_close(u, ru)
    assert_close(m, rm)
    assert_close(lo, rl)
    assert_close(m, ind.sma(x, period))
    assert np.array_equal(ind.bollinger(x, period, k, exact=True)[1], ind.sma(x, period, exact=True),
                          equal_nan=True)
    sd = np.lib.stride_tricks.sliding_window_view(x, period).std(axis=1)
    assert_close((u - m)[period - 1:], k * sd, rtol=1e-8, atol=1e-9)


def test_bollinger_fast_form(bars):
    x = bars["close"]
    for p in (1, 2, 20, 100, 300):
        exact = ind.bollinger(x, p, 2.0, exact=True)
        fast = ind.bollinger(x, p, 2.0)
        for a, b in zip(exact, fast):
            assert_close(b, a)
        outs = [np.empty_like(x) for _ in range(3)]
        ind.bollinger_into(x, p, 2.0, *outs)
        for a, b in zip(outs, fast):
            assert np.array_equal(a, b, equal_nan=True)
    # flat stretches and a 1e5x jump: the exact two-pass fallback keeps it right
    y = np.r_[np.full(300, 5.0), np.full(300, 5e5), np.linspace(1.0, 2.0, 300)]
    for a, b in zip(ind.bollinger(y, 10, 2.0, exact=True), ind.bollinger(y, 10, 2.0)):
        assert_close(b, a, atol=1e-9)


@pytest.mark.parametrize("window", [2, 20, 300])
def test_zscore(bars, window):
    x = bars["close"]
    z = ind.zscore(x, window)
    assert np.array_equal(z, stream(ind.ZScore(window), x), equal_nan=True)
    assert_close(z, ref.zscore(x.tolist(), window))
    v = np.lib.stride_tricks.sliding_window_view(x, window)
    sd = v.std(axis=1)
    expect = np.where(sd > 0, (x[window - 1:] - v.mean(axis=1)) / np.where(sd > 0, sd, 1), 0.0)
    assert_close(z[window - 1:], expect, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("window", [1, 5, 60])
def test_vwap(bars, window):
    tp = (bars["high"] + bars["low"] + bars["close"]) / 3
    vol = bars["volume"]
    b = ind.vwap(tp, vol, window)
    assert np.array_equal(b, stream(ind.VWAP(window), tp, vol), equal_nan=True)
    assert_close(b, ref.vwap(tp.tolist(), vol.tolist(), window))
    pv = np.lib.stride_tricks.sliding_window_view(tp * vol, window).sum(axis=1)
    vv = np.lib.stride_tricks.sliding_window_view(vol, window).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expect = np.where(vv > 0, pv / vv, np.nan)
    assert_close(b[window - 1:], expect, rtol=1e-9)


def _book_series(n=5000, seed=7):
    rng = np.random.default_rng(seed)
    mid = 100 + np.cumsum(rng.integers(-1, 2, n)) * 0.5
    spread = rng.integers(1, 3, n) * 0.5
    return mid - spread / 2, rng.integers(1, 50, n).astype(float), mid + spread / 2, rng.integers(1, 50, n).astype(float)


@pytest.mark.parametrize("window", [1, 3, 100])
def test_ofi(window):
    bp, bs, ap, as_ = _book_series()
    b = ind.ofi(bp, bs, ap, as_, window)
    assert np.array_equal(b, stream(ind.OFI(window), bp, bs, ap, as_), equal_nan=True)
    assert_close(b, ref.ofi(bp.tolist(), bs.tolist(), ap.tolist(), as_.tolist(), window))
    e = ((bp[1:] >= bp[:-1]) * bs[1:] - (bp[1:] <= bp[:-1]) * bs[:-1]
         - (ap[1:] <= ap[:-1]) * as_[1:] + (ap[1:] >= ap[:-1]) * as_[:-1])
    expect = np.convolve(e, np.ones(window))[window - 1:len(e)]
    assert leading_nans(b) == window
    assert_close(b[window:], expect, atol=1e-9)


def test_ofi_hand_example():
    # bid up with new size, ask unchanged: e = +qb_new - 0 - qa_new + qa_old
    out = ind.ofi([10.0, 10.5], [3.0, 4.0], [11.0, 11.0], [5.0, 2.0], 1)
    assert np.isnan(out[0]) and out[1] == 4.0 - 2.0 + 5.0


def test_fused_equals_single_indicators(bars):
    h, lo, c = bars["high"], bars["low"], bars["close"]
    f = ind.fused(h, lo, c, ema_fast=12, ema_slow=48, sma=30, rsi=14, atr=14, bb=20, bb_k=2.0, exact=True)
    assert set(f) == set(ind.FUSED_KEYS)
    assert np.array_equal(f["ema_fast"], ind.ema(c, 12, exact=True), equal_nan=True)
    assert np.array_equal(f["ema_slow"], ind.ema(c, 48, exact=True), equal_nan=True)
    assert np.array_equal(f["sma"], ind.sma(c, 30, exact=True), equal_nan=True)
    assert np.array_equal(f["rsi"], ind.rsi(c, 14, exact=True), equal_nan=True)
    assert np.array_equal(f["atr"], ind.atr(h, lo, c, 14, exact=True), equal_nan=True)
    u, m, lw = ind.bollinger(c, 20, 2.0, exact=True)
    assert np.array_equal(f["bb_upper"], u, equal_nan=True)
    assert np.array_equal(f["bb_middle"], m, equal_nan=True)
    assert np.array_equal(f["bb_lower"], lw, equal_nan=True)
    r = ref.fused(h[:3000].tolist(), lo[:3000].tolist(), c[:3000].tolist(), ema_fast=12, ema_slow=48, sma=30)
    for k in ind.FUSED_KEYS:
        assert_close(f[k][:3000] if k not in ("ema_fast", "ema_slow", "sma") else f[k][:3000], r[k])
    fast = ind.fused(h, lo, c, ema_fast=12, ema_slow=48, sma=30, rsi=14, atr=14, bb=20, bb_k=2.0)
    for k in ind.FUSED_KEYS:
        assert_close(fast[k], f[k])
    single = dict(ema_fast=ind.ema(c, 12), ema_slow=ind.ema(c, 48), sma=ind.sma(c, 30), rsi=ind.rsi(c, 14),
                  atr=ind.atr(h, lo, c, 14))
    single["bb_upper"], single["bb_middle"], single["bb_lower"] = ind.bollinger(c, 20, 2.0)
    for k in ind.FUSED_KEYS:
        assert_close(fast[k], single[k])
    out = {k: np.full(len(c), -1.0) for k in ind.FUSED_KEYS}
    ind.fused_into(h, lo, c, out, ema_fast=12, ema_slow=48, sma=30)
    for k in ind.FUSED_KEYS:
        assert np.array_equal(out[k], fast[k], equal_nan=True)
    ind.fused_into(h, lo, c, out, ema_fast=12, ema_slow=48, sma=30, exact=True)
    for k in ind.FUSED_KEYS:
        assert np.array_equal(out[k], f[k], equal_nan=True)


def test_fused_fast_with_periods_across_blocks(bars):
    # the fast pass works in blocks of 16384 bars: warm-ups longer than a block
    h, lo, c = bars["high"], bars["low"], bars["close"]
    kw = dict(ema_fast=16385, ema_slow=18000, sma=17000, rsi=16500, atr=16384, bb=16400, bb_k=1.5)
    exact, fast = ind.fused(h, lo, c, exact=True, **kw), ind.fused(h, lo, c, **kw)
    for k in ind.FUSED_KEYS:
        assert_close(fast[k], exact[k])
    small = ind.fused(h[:3], lo[:3], c[:3])
    assert all(np.isnan(v).all() for k, v in small.items() if k != "rsi")


@pytest.mark.parametrize("name", ["ema", "atr", "rsi", "sma"])
def test_fast_forms_agree(bars, name):
    h, lo, c = bars["high"], bars["low"], bars["close"]
    for p in (1, 2, 14, 100, 5000):
        if name == "atr":
            exact, fast = ind.atr(h, lo, c, p, exact=True), ind.atr(h, lo, c, p)
        else:
            fn = getattr(ind, name)
            exact, fast = fn(c, p, exact=True), fn(c, p)
        assert_close(fast, exact)
        # in place (out aliases the input) gives the same answer
        y = c.copy()
        if name == "atr":
            ind.atr_into(h, lo, y, p, y)
        else:
            getattr(ind, name + "_into")(y, p, y)
        assert_close(y, exact)


def test_deprecated_aliases():
    x = np.linspace(100.0, 200.0, 500) + np.sin(np.arange(500.0))
    for fn in (ind.ema, ind.sma, ind.rsi):
        with pytest.warns(DeprecationWarning, match="lookahead= is deprecated"):
            assert np.array_equal(fn(x, 14, lookahead=True), fn(x, 14), equal_nan=True)
        with pytest.warns(DeprecationWarning):
            assert np.array_equal(fn(x, 14, lookahead=False), fn(x, 14, exact=True), equal_nan=True)
        with pytest.raises(ValueError, match="exact=True contradicts lookahead=True"), pytest.warns(DeprecationWarning):
            fn(x, 14, exact=True, lookahead=True)
    with pytest.warns(DeprecationWarning, match="fast= is deprecated"):
        for a, b in zip(ind.bollinger(x, 20, 2.0, fast=False), ind.bollinger(x, 20, 2.0, exact=True)):
            assert np.array_equal(a, b, equal_nan=True)
    with pytest.warns(DeprecationWarning):
        f = ind.fused(x, x, x, fast=False)
    g = ind.fused(x, x, x, exact=True)
    assert all(np.array_equal(f[k], g[k], equal_nan=True) for k in ind.FUSED_KEYS)


def _all_fast(h, lo, c):
    out = {"ema": ind.ema(c, 20), "ema1": ind.ema(c, 1), "sma": ind.sma(c, 20), "rsi": ind.rsi(c, 14),
           "atr": ind.atr(h, lo, c, 14)}
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = ind.bollinger(c, 20, 2.0)
    for k, v in ind.fused(h, lo, c).items():
        out["fused_" + k] = v
    return out


def _all_exact(h, lo, c):
    out = {"ema": ind.ema(c, 20, exact=True), "ema1": ind.ema(c, 1, exact=True),
           "sma": ind.sma(c, 20, exact=True), "rsi": ind.rsi(c, 14, exact=True),
           "atr": ind.atr(h, lo, c, 14, exact=True)}
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = ind.bollinger(c, 20, 2.0, exact=True)
    for k, v in ind.fused(h, lo, c, exact=True).items():
        out["fused_" + k] = v
    return out


def _isas():
    import hean._native as nat
    have = ["baseline"]
    try:
        nat.set_batch_isa("avx2")
        have.append("avx2")
    except ValueError:
        pass
    nat.set_batch_isa("auto")
    return nat, have


def test_both_compiled_forms_against_reference(bars):
    """The AVX2 and the baseline (SSE2) forms of the fast kernels: identical bits, and
    each within 1e-12 of the pure-Python reference (first 3000 bars) and of the exact
    forms (all bars)."""
    nat, isas = _isas()
    h, lo, c = bars["high"], bars["low"], bars["close"]
    n = 3000
    r = {"ema": ref.ema(c[:n].tolist(), 20), "ema1": ref.ema(c[:n].tolist(), 1),
         "sma": ref.sma(c[:n].tolist(), 20), "rsi": ref.rsi(c[:n].tolist(), 14),
         "atr": ref.atr(h[:n].tolist(), lo[:n].tolist(), c[:n].tolist(), 14)}
    r["bb_upper"], r["bb_middle"], r["bb_lower"] = ref.bollinger(c[:n].tolist(), 20, 2.0)
    exact = _all_exact(h, lo, c)
    got = {}
    try:
        for isa in isas:
            nat.set_batch_isa(isa)
            assert nat.batch_isa() == isa
            got[isa] = _all_fast(h, lo, c)
    finally:
        nat.set_batch_isa("auto")
    for isa in isas:
        for k, v in got[isa].items():
            assert_close(v, exact[k])
            if k in r:
                assert_close(v[:n], r[k])
            assert np.array_equal(v, got["baseline"][k], equal_nan=True), (isa, k)
    with pytest.raises(ValueError, match="isa must be one of"):
        nat.set_batch_isa("sse9")


def test_large_inputs_non_temporal_path():
    """>= 2**19 outputs take the non-temporal-store path, with any alignment of out."""
    nat, isas = _isas()
    rng = np.random.default_rng(7)
    n = (1 << 19) + 4099
    c = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    h, lo = c * (1 + rng.random(n) * 1e-3), c * (1 - rng.random(n) * 1e-3)
    exact = _all_exact(h, lo, c)
    try:
        for isa in isas:
            nat.set_batch_isa(isa)
            got = _all_fast(h, lo, c)
            for k, v in got.items():
                assert_close(v, exact[k])
            # out starting 8 bytes past a 16-byte boundary
            buf = np.empty(n + 1)
            out = buf[1:] if buf[1:].ctypes.data % 16 else buf[:-1]
            ind.rsi_into(c, 14, out)
            assert np.array_equal(out, got["rsi"], equal_nan=True)
    finally:
        nat.set_batch_isa("auto")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_as_exact(bars, bad):
    """NaN/inf handling of the fast forms is the streaming classes': a non-finite input
    switches the kernel to the exact step from the block that holds it."""
    h, lo, c = (bars[k][:6000].copy() for k in ("high", "low", "close"))
    for i in (30, 2500, 5990):
        c[i] = bad
        h[i + 3] = bad
    fast, exact = _all_fast(h, lo, c), _all_exact(h, lo, c)
    np.seterr(invalid="ignore")  # inf - inf in assert_close's differences
    for k in fast:
        assert_close(fast[k], exact[k], atol=0.0)
        fin = np.isfinite(exact[k])
        assert np.array_equal(fin, np.isfinite(fast[k])), k
        assert np.array_equal(fast[k][~fin & ~np.isnan(exact[k])], exact[k][~fin & ~np.isnan(exact[k])]), k


def test_into_variants(bars):
    c = bars["close"]
    for fn, args in ((ind.sma_into, (20,)), (ind.rsi_into, (14,)), (ind.zscore_into, (20,))):
        out = np.empty_like(c)
        fn(c, *args, out)
        assert np.array_equal(out, getattr(ind, fn.__name__.removesuffix("_into"))(c, *args), equal_nan=True)
        y = c.copy()
        fn(y, *args, y)  # in place (SMA: the exact ring-buffer form)
        assert_close(y, out)
    u, m, lo = (np.empty_like(c) for _ in range(3))
    ind.bollinger_into(c, 20, 2.0, u, m, lo)
    assert_close(m, ind.sma(c, 20))
    out = np.empty_like(c)
    ind.vwap_into(c, bars["volume"], 10, out)
    assert np.array_equal(out, ind.vwap(c, bars["volume"], 10), equal_nan=True)


# ---------------------------------------------------------------------------
# TA-Lib cross-checks (seeding notes in hean.indicators)
# ---------------------------------------------------------------------------


def test_against_talib(bars):
    talib = pytest.importorskip("talib")
    h, lo, c = bars["high"], bars["low"], bars["close"]
    for p in (2, 14, 30):
        # same op order
        assert np.array_equal(ind.sma(c, p, exact=True), talib.SMA(c, timeperiod=p), equal_nan=True)
        assert_close(ind.rsi(c, p, exact=True), talib.RSI(c, timeperiod=p))
        assert_close(ind.rsi(c, p), talib.RSI(c, timeperiod=p))
        assert_close(ind.ema(c, p), talib.EMA(c, timeperiod=p))
        assert_close(ind.sma(c, p), talib.SMA(c, timeperiod=p))
        assert_close(ind.atr(h, lo, c, p), talib.ATR(h, lo, c, timeperiod=p))
    tu, tm, tl = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0)
    assert np.array_equal(ind.bollinger(c, 20, 2.0, exact=True)[1], tm, equal_nan=True)
    u, m, lw = ind.bollinger(c, 20, 2.0)
    assert_close(m, tm)
    # TA-Lib's sum-of-squares variance cancels on ~1e5 prices: only ~1e-9 agreement
    assert_close(u, tu, rtol=1e-9)
    assert_close(lw, tl, rtol=1e-9)


# ---------------------------------------------------------------------------
# errors and edge cases
# ---------------------------------------------------------------------------


def test_argument_errors():
    x = np.arange(1.0, 11.0)
    with pytest.raises(ValueError, match=r"period must be an integer in \[1, 1000000\], got 0"):
        ind.sma(x, 0)
    with pytest.raises(ValueError, match=r"window must be an integer in \[2, 1000000\], got 1"):
        ind.zscore(x, 1)
    with pytest.raises(ValueError, match=r"k must be a finite number"):
        ind.bollinger(x, 5, float("nan"))
    with pytest.raises(ValueError, match=r"volume must be finite and >= 0, got -1.0 at index 3"):
        v = np.ones(10)
        v[3] = -1
        ind.vwap(x, v, 2)
    with pytest.raises(ValueError, match=r"price must be finite and > 0, got nan at index 0"):
        ind.vwap(np.r_[np.nan, x[1:]], np.ones(10), 2)
    with pytest.raises(ValueError, match="volume must have the same length as price"):
        ind.vwap(x, np.ones(9), 2)
    with pytest.raises(ValueError, match="ask_sz must have the same length as bid_px"):
        ind.ofi(x, x, x, x[:5], 2)
    with pytest.raises(ValueError, match=r"out must have length 10"):
        ind.sma_into(x, 2, np.empty(9))
    with pytest.raises(TypeError):
        ind.rsi_into(x, 2, np.empty(10, dtype=np.float32))
    with pytest.raises(ValueError, match="missing the key"):
        ind.fused_into(x, x, x, {"ema_fast": np.empty(10)})
    st = ind.VWAP(3)
    with pytest.raises(ValueError, match="price must be finite and > 0, got inf"):
        st.update(float("inf"), 1.0)
    assert st.count == 0
    for cls in (ref.VWAP,):
        with pytest.raises(ValueError, match="volume must be finite and >= 0"):
            cls(3).update(1.0, float("nan"))


def test_flat_series_edge_cases():
    x = np.full(50, 7.25)
    assert np.all(ind.rsi(x, 14)[14:] == 0.0)  # TA-Lib convention for no movement
    assert np.all(ind.zscore(x, 10)[9:] == 0.0)
    u, m, lo = ind.bollinger(x, 10, 2.0)
    assert np.all(u[9:] == 7.25) and np.all(lo[9:] == 7.25)
    assert np.all(np.isnan(ind.vwap(x, np.zeros(50), 5)))
    assert np.array_equal(ind.sma(np.array([]), 3), np.array([]))
    assert ind.rsi(np.array([1.0]), 14).tolist() != [0.0]


def test_fast_update_paths_keep_semantics():
    """update() of EMA/SMA/RSI/ZScore/RollingLogReturnStd/Bollinger is a METH_O fast
    path: type errors, value errors (state unchanged), wrong-class calls and values
    the caller keeps behave as for any method."""
    from hean import _native as n

    for cls in (n.EMA, n.SMA, n.RSI, n.ZScore, n.RollingLogReturnStd):
        o = cls(3)
        with pytest.raises(TypeError):
            o.update("1.0")
        with pytest.raises(TypeError):
            o.update()
        assert o.count == 0
    with pytest.raises(TypeError):
        n.EMA.update(n.SMA(3), 1.0)
    v = n.RollingLogReturnStd(2)
    v.update(100.0)
    with pytest.raises(ValueError, match="finite"):
        v.update(float("nan"))
    assert v.count == 1
    assert n.EMA(1).update(3) == 3.0  # ints are accepted as floats
    # Bollinger reuses its result tuple only when the caller has dropped it: values the
    # caller holds never change
    b = n.Bollinger(2, 2.0)
    kept = [b.update(x) for x in (1.0, 3.0, 5.0, 4.0)]
    assert kept[1] == (4.0, 2.0, 0.0) and kept[2] == (6.0, 4.0, 2.0) and kept[3] == (5.5, 4.5, 3.5)
    first = b.update(10.0)[0]  # window (4, 10): mean 7, pstd 3; the tuple is dropped, the float kept
    again = b.update(20.0)  # window (10, 20): mean 15, pstd 5
    assert first == 13.0 and again == (25.0, 15.0, 5.0)
    upper, middle, lower = again
    del again
    assert b.update(30.0) == (35.0, 25.0, 15.0)
    assert (upper, middle, lower) == (25.0, 15.0, 5.0)
    assert kept[3] == (5.5, 4.5, 3.5) and first == 13.0
