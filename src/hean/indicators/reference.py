"""Pure-Python reference implementation of :mod:`hean.indicators`.

Same functions, classes, semantics and error messages as the native kernels in
``native/src/indicators.cpp`` (exposed as :mod:`hean._native`), written with the
:mod:`math` module and lists of floats only. Every floating-point operation is
done in the same order as in C++ (which is compiled without FMA contraction or
fast-math), so in practice the results are bit-identical; the test-suite
requires agreement to 1e-12 relative.

It exists to test the native code and to document it in a readable form; it is
~100x slower, so production code uses :mod:`hean.indicators`.

Formulas (TA-Lib semantics; J. Welles Wilder, *New Concepts in Technical
Trading Systems*, 1978, for the true range and ATR smoothing):

* ``ema(x, period)``: alpha = 2/(period+1); NaN for i < period-1;
  out[period-1] = mean(x[0..period-1]); out[i] = out[i-1] + alpha*(x[i]-out[i-1]).
* ``rolling_log_return_std(close, window)``: r[i] = ln(close[i]/close[i-1]);
  out[i] = sample std (ddof=1) of r[i-window+1..i] for i >= window, NaN before.
  Fraction per bar (not percent, not annualised).
* ``atr(high, low, close, period)``: TR[i] = max(high[i]-low[i],
  |high[i]-close[i-1]|, |low[i]-close[i-1]|) for i >= 1;
  out[period] = mean(TR[1..period]); out[i] = (out[i-1]*(period-1) + TR[i])/period;
  NaN before index period.
"""

from __future__ import annotations

import math
import operator
import sys
from collections.abc import Sequence

__all__ = [
    "MAX_PERIOD",
    "ATR",
    "EMA",
    "RollingLogReturnStd",
    "atr",
    "ema",
    "rolling_log_return_std",
    "SMA", "RSI", "Bollinger", "ZScore", "VWAP", "OFI",
    "sma", "rsi", "bollinger", "zscore", "vwap", "ofi", "fused", "FUSED_KEYS",
]

#: Largest accepted period / window (same as ``hean._native.MAX_PERIOD``).
MAX_PERIOD = 1_000_000

_NAN = math.nan
_FLOAT_MAX = sys.float_info.max
# RollingLogReturnStd recomputes exactly when M2 < _CANCEL_GUARD * (largest M2
# since the last recompute); a power of two, so the product is exact.
_CANCEL_GUARD = 1.0 / 256.0


def _check_period(name: str, value: int, lo: int) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if v < lo or v > MAX_PERIOD:
        raise ValueError(f"{name} must be an integer in [{lo}, {MAX_PERIOD}], got {v}")
    return v


def _valid_close(close: float) -> bool:
    # NaN fails ``close > 0.0``; +inf fails ``close <= max``.
    return close > 0.0 and close <= _FLOAT_MAX


def _bad_close(close: float, index: int | None = None) -> ValueError:
    msg = f"close must be finite and > 0, got {close!r}"
    if index is not None:
        msg += f" at index {index}"
    return ValueError(msg)


def _true_range(high: float, low: float, prev_close: float) -> float:
    # The same comparison chain as TA-Lib's TRANGE (and the C++ code), so NaN
    # inputs behave identically too.
    greatest = high - low
    v2 = math.fabs(prev_close - high)
    if v2 > greatest:
        greatest = v2
    v3 = math.fabs(low - prev_close)
    if v3 > greatest:
        greatest = v3
    return greatest


def _floats(name: str, values: Sequence[float]) -> list[float]:
    try:
        return [float(v) for v in values]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of floats") from None


# ---------------------------------------------------------------------------
# Streaming classes
# ---------------------------------------------------------------------------


class EMA:
    """Streaming EMA with TA-Lib seeding (see module docstring)."""

    __slots__ = ("_period", "_alpha", "_sum", "_value", "_count")

    def __init__(self, period: int) -> None:
        self._period = _check_period("period", period, 1)
        self._alpha = 2.0 / (float(self._period) + 1.0)
        self.reset()

    def update(self, x: float) -> float:
        """Feed one value; returns the EMA, NaN until ready."""
        x = float(x)
        self._count += 1
        if self._count < self._period:
            self._sum += x
            return _NAN
        if self._count == self._period:
            self._sum += x
            self._value = self._sum / float(self._period)
            return self._value
        self._value = self._value + self._alpha * (x - self._value)
        return self._value

    def reset(self) -> None:
        self._sum = 0.0
        self._value = _NAN
        self._count = 0

    @property
    def value(self) -> float:
        return self._value

    @property
    def ready(self) -> bool:
        return self._count >= self._period

    @property
    def count(self) -> int:
        return self._count

    @property
    def period(self) -> int:
        return self._period

    def __repr__(self) -> str:
        return f"EMA(period={self._period}, count={self._count}, value={self._value!r})"


class RollingLogReturnStd:
    """Streaming sample std (ddof=1) of the last ``window`` log returns.

    Method (identical to the C++ code): the returns live in a ring buffer; mean
    and M2 are updated with the sliding-window Welford update (replace the oldest
    return by the newest) and recomputed exactly (two-pass over the ring) every
    time the ring wraps (every ``window`` returns) and whenever M2 falls below
    1/256 of its largest value since the last recompute (cancellation guard).
    """

    __slots__ = ("_window", "_ring", "_pos", "_full", "_prev_close", "_mean", "_m2",
                 "_m2_ref", "_value", "_count")

    def __init__(self, window: int) -> None:
        self._window = _check_period("window", window, 2)
        self.reset()

    def update(self, close: float) -> float:
        """Feed one close (finite, > 0, else ValueError and the state is unchanged)."""
        close = float(close)
        if not _valid_close(close):
            raise _bad_close(close)
        return self._update_unchecked(close)

    def _recompute(self) -> None:
        n = float(self._window)
        s = 0.0
        for v in self._ring:
            s += v
        mean = s / n
        m2 = 0.0
        for v in self._ring:
            d = v - mean
            m2 += d * d
        self._mean = mean
        self._m2 = m2
        self._m2_ref = m2

    def _update_unchecked(self, close: float) -> float:
        self._count += 1
        if self._count == 1:
            self._prev_close = close
            return _NAN
        r = math.log(close / self._prev_close)
        self._prev_close = close
        w = self._window
        if not self._full:
            self._ring[self._pos] = r
            self._pos += 1
            if self._pos < w:
                return _NAN
            self._pos = 0
            self._full = True
            self._recompute()
        else:
            n = float(w)
            old = self._ring[self._pos]
            self._ring[self._pos] = r
            delta = r - old
            new_mean = self._mean + delta / n
            self._m2 += delta * ((r - new_mean) + (old - self._mean))
            self._mean = new_mean
            self._pos += 1
            if self._pos == w:
                self._pos = 0
                self._recompute()
            elif self._m2 < self._m2_ref * _CANCEL_GUARD:
                self._recompute()
            elif self._m2 > self._m2_ref:
                self._m2_ref = self._m2
        m2 = self._m2 if self._m2 > 0.0 else 0.0
        self._value = math.sqrt(m2 / float(w - 1))
        return self._value

    def reset(self) -> None:
        self._ring = [0.0] * self._window
        self._pos = 0
        self._full = False
        self._prev_close = _NAN
        self._mean = 0.0
        self._m2 = 0.0
        self._m2_ref = 0.0
        self._value = _NAN
        self._count = 0

    @property
    def value(self) -> float:
        return self._value

    @property
    def ready(self) -> bool:
        return self._count > self._window

    @property
    def count(self) -> int:
        return self._count

    @property
    def window(self) -> int:
        return self._window

    def __repr__(self) -> str:
        return (f"RollingLogReturnStd(window={self._window}, count={self._count}, "
                f"value={self._value!r})")


class ATR:
    """Streaming Wilder ATR as TA-Lib computes it (see module docstring)."""

    __slots__ = ("_period", "_sum", "_prev_close", "_value", "_count")

    def __init__(self, period: int) -> None:
        self._period = _check_period("period", period, 1)
        self.reset()

    def update(self, high: float, low: float, close: float) -> float:
        """Feed one bar; returns the ATR (price units), NaN until ready."""
        high = float(high)
        low = float(low)
        close = float(close)
        self._count += 1
        if self._count == 1:
            self._prev_close = close
            return _NAN
        tr = _true_range(high, low, self._prev_close)
        self._prev_close = close
        n_tr = self._count - 1
        if n_tr < self._period:
            self._sum += tr
            return _NAN
        p = float(self._period)
        if n_tr == self._period:
            self._sum += tr
            self._value = self._sum / p
            return self._value
        self._value = (self._value * (p - 1.0) + tr) / p
        return self._value

    def reset(self) -> None:
        self._sum = 0.0
        self._prev_close = _NAN
        self._value = _NAN
        self._count = 0

    @property
    def value(self) -> float:
        return self._value

    @property
    def ready(self) -> bool:
        return self._count > self._period

    @property
    def count(self) -> int:
        return self._count

    @property
    def period(self) -> int:
        return self._period

    def __repr__(self) -> str:
        return f"ATR(period={self._period}, count={self._count}, value={self._value!r})"


# ---------------------------------------------------------------------------
# Batch functions: out[i] is what the streaming class returns for update i.
# ---------------------------------------------------------------------------


def ema(x: Sequence[float], period: int) -> list[float]:
    """EMA of ``x`` (TA-Lib seeding); a list of ``len(x)`` floats."""
    st = EMA(period)
    return [st.update(v) for v in _floats("x", x)]


def rolling_log_return_std(close: Sequence[float], window: int) -> list[float]:
    """Sample std (ddof=1) of the last ``window`` log returns; fraction per bar."""
    st = RollingLogReturnStd(window)
    closes = _floats("close", close)
    for i, c in enumerate(closes):
        if not _valid_close(c):
            raise _bad_close(c, i)
    return [st._update_unchecked(c) for c in closes]


def atr(high: Sequence[float], low: Sequence[float], close: Sequence[float],
        period: int) -> list[float]:
    """Wilder's ATR (TA-Lib semantics); a list of ``len(high)`` floats, price units."""
    _check_period("period", period, 1)
    h = _floats("high", high)
    lo = _floats("low", low)
    c = _floats("close", close)
    n = len(h)
    if len(lo) != n:
        raise ValueError(f"low must have the same length as high ({n}), got {len(lo)}")
    if len(c) != n:
        raise ValueError(f"close must have the same length as high ({n}), got {len(c)}")
    st = ATR(period)
    return [st.update(h[i], lo[i], c[i]) for i in range(n)]


# ---------------------------------------------------------------------------
# SMA, RSI, Bollinger, z-score, VWAP, OFI (same operation order as the C++
# streaming classes in native/src/indicators.cpp)
# ---------------------------------------------------------------------------


class SMA:
    """Streaming SMA, TA-Lib operation order: sum += x; out = sum/p; sum -= oldest."""

    __slots__ = ("_period", "_ring", "_pos", "_sum", "_value", "_count")

    def __init__(self, period: int) -> None:
        self._period = _check_period("period", period, 1)
        self.reset()

    def update(self, x: float) -> float:
        x = float(x)
        self._count += 1
        self._sum += x
        self._ring[self._pos] = x
        self._pos += 1
        if self._pos == self._period:
            self._pos = 0
        if self._count < self._period:
            return _NAN
        self._value = self._sum / float(self._period)
        self._sum -= self._ring[self._pos]
        return self._value

    def reset(self) -> None:
        self._ring = [0.0] * self._period
        self._pos = 0
        self._sum = 0.0
        self._value = _NAN
        self._count = 0

    value = property(lambda self: self._value)
    ready = property(lambda self: self._count >= self._period)
    count = property(lambda self: self._count)
    period = property(lambda self: self._period)


class RSI:
    """Streaming Wilder RSI with TA-Lib seeding (TA_RSI)."""

    __slots__ = ("_period", "_prev", "_gain", "_loss", "_value", "_count")

    def __init__(self, period: int) -> None:
        self._period = _check_period("period", period, 1)
        self.reset()

    def update(self, x: float) -> float:
        x = float(x)
        self._count += 1
        if self._count == 1:
            self._prev = x
            return _NAN
        d = x - self._prev
        self._prev = x
        n = self._count - 1
        p = float(self._period)
        if n > self._period:
            self._loss *= p - 1.0
            self._gain *= p - 1.0
        if d < 0.0:
            self._loss -= d
        else:
            self._gain += d
        if n < self._period:
            return _NAN
        self._loss /= p
        self._gain /= p
        s = self._gain + self._loss
        self._value = 100.0 * (self._gain / s) if s != 0.0 else 0.0
        return self._value

    def reset(self) -> None:
        self._prev = _NAN
        self._gain = 0.0
        self._loss = 0.0
        self._value = _NAN
        self._count = 0

    value = property(lambda self: self._value)
    ready = property(lambda self: self._count > self._period)
    count = property(lambda self: self._count)
    period = property(lambda self: self._period)


class _RollingMoments:
    """Rolling mean/M2: ring + sliding Welford + exact recompute (as RollingLogReturnStd)."""

    def __init__(self, window: int, lo: int = 1) -> None:
        self.window = _check_period("window", window, lo)
        self.reset()

    def reset(self) -> None:
        self.ring = [0.0] * self.window
        self.pos = 0
        self.full = False
        self.mean = 0.0
        self.m2 = 0.0
        self.m2_ref = 0.0

    def _recompute(self) -> None:
        n = float(self.window)
        s = 0.0
        for v in self.ring:
            s += v
        mean = s / n
        m2 = 0.0
        for v in self.ring:
            d = v - mean
            m2 += d * d
        self.mean, self.m2, self.m2_ref = mean, m2, m2

    def update(self, x: float) -> bool:
        w = self.window
        if not self.full:
            self.ring[self.pos] = x
            self.pos += 1
            if self.pos < w:
                return False
            self.pos = 0
            self.full = True
            self._recompute()
            return True
        n = float(w)
        old = self.ring[self.pos]
        self.ring[self.pos] = x
        delta = x - old
        new_mean = self.mean + delta / n
        self.m2 += delta * ((x - new_mean) + (old - self.mean))
        self.mean = new_mean
        self.pos += 1
        if self.pos == w:
            self.pos = 0
            self._recompute()
        elif self.m2 < self.m2_ref * _CANCEL_GUARD:
            self._recompute()
        elif self.m2 > self.m2_ref:
            self.m2_ref = self.m2
        return True

    def pstd(self) -> float:
        m2 = self.m2 if self.m2 > 0.0 else 0.0
        return math.sqrt(m2 / float(self.window))


def _check_k(k: float) -> float:
    k = float(k)
    if not (0.0 <= k <= 1000.0):
        raise ValueError(f"k must be a finite number in [0, 1000], got {k!r}")
    return k


class Bollinger:
    """Streaming Bollinger bands: (upper, middle, lower), middle = SMA, width k * pstd."""

    def __init__(self, period: int, k: float = 2.0) -> None:
        self._sma = SMA(period)
        self._mom = _RollingMoments(period)
        self._k = _check_k(k)
        self._value = (_NAN, _NAN, _NAN)

    def update(self, x: float) -> tuple[float, float, float]:
        x = float(x)
        mid = self._sma.update(x)
        if not self._mom.update(x):
            return self._value
        w = self._k * self._mom.pstd()
        self._value = (mid + w, mid, mid - w)
        return self._value

    def reset(self) -> None:
        self._sma.reset()
        self._mom.reset()
        self._value = (_NAN, _NAN, _NAN)

    value = property(lambda self: self._value)
    ready = property(lambda self: self._sma.ready)
    count = property(lambda self: self._sma.count)
    period = property(lambda self: self._sma.period)
    k = property(lambda self: self._k)


class ZScore:
    """Streaming rolling z-score (x - mean)/pstd, 0 when pstd == 0."""

    def __init__(self, window: int) -> None:
        self._mom = _RollingMoments(window, 2)
        self._value = _NAN
        self._count = 0

    def update(self, x: float) -> float:
        x = float(x)
        self._count += 1
        if not self._mom.update(x):
            return _NAN
        sd = self._mom.pstd()
        self._value = (x - self._mom.mean) / sd if sd > 0.0 else 0.0
        return self._value

    def reset(self) -> None:
        self._mom.reset()
        self._value = _NAN
        self._count = 0

    value = property(lambda self: self._value)
    ready = property(lambda self: self._mom.full)
    count = property(lambda self: self._count)
    window = property(lambda self: self._mom.window)


class _RollingSum2:
    def __init__(self, window: int) -> None:
        self.window = _check_period("window", window, 1)
        self.reset()

    def reset(self) -> None:
        self.ra = [0.0] * self.window
        self.rb = [0.0] * self.window
        self.pos = 0
        self.full = False
        self.sa = 0.0
        self.sb = 0.0

    def update(self, a: float, b: float) -> bool:
        w = self.window
        if not self.full:
            self.ra[self.pos] = a
            self.rb[self.pos] = b
            self.sa += a
            self.sb += b
            self.pos += 1
            if self.pos < w:
                return False
            self.pos = 0
            self.full = True
            return True
        self.sa += a - self.ra[self.pos]
        self.sb += b - self.rb[self.pos]
        self.ra[self.pos] = a
        self.rb[self.pos] = b
        self.pos += 1
        if self.pos == w:
            self.pos = 0
            s1 = 0.0
            s2 = 0.0
            for i in range(w):
                s1 += self.ra[i]
                s2 += self.rb[i]
            self.sa, self.sb = s1, s2
        return True


def _valid_volume(v: float) -> bool:
    return 0.0 <= v <= _FLOAT_MAX


class VWAP:
    """Streaming rolling VWAP: sum(price*volume)/sum(volume) over ``window`` bars."""

    def __init__(self, window: int) -> None:
        self._sums = _RollingSum2(window)
        self._value = _NAN
        self._count = 0

    def update(self, price: float, volume: float) -> float:
        price = float(price)
        volume = float(volume)
        if not _valid_close(price):
            raise ValueError(f"price must be finite and > 0, got {price!r}")
        if not _valid_volume(volume):
            raise ValueError(f"volume must be finite and >= 0, got {volume!r}")
        return self._update_unchecked(price, volume)

    def _update_unchecked(self, price: float, volume: float) -> float:
        self._count += 1
        if not self._sums.update(price * volume, volume):
            return _NAN
        self._value = self._sums.sa / self._sums.sb if self._sums.sb > 0.0 else _NAN
        return self._value

    def reset(self) -> None:
        self._sums.reset()
        self._value = _NAN
        self._count = 0

    value = property(lambda self: self._value)
    ready = property(lambda self: self._sums.full)
    count = property(lambda self: self._count)
    window = property(lambda self: self._sums.window)


class OFI:
    """Streaming order-flow imbalance (Cont, Kukanov & Stoikov 2014), summed over ``window``."""

    def __init__(self, window: int) -> None:
        self._sums = _RollingSum2(window)
        self.reset()

    def update(self, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float) -> float:
        bp, bs, ap, as_ = float(bid_px), float(bid_sz), float(ask_px), float(ask_sz)
        self._count += 1
        if self._count == 1:
            self._prev = (bp, bs, ap, as_)
            return _NAN
        pb, qb, pa, qa = self._prev
        e = 0.0
        if bp >= pb:
            e += bs
        if bp <= pb:
            e -= qb
        if ap <= pa:
            e -= as_
        if ap >= pa:
            e += qa
        self._prev = (bp, bs, ap, as_)
        if not self._sums.update(e, 0.0):
            return _NAN
        self._value = self._sums.sa
        return self._value

    def reset(self) -> None:
        self._sums.reset()
        self._prev = (_NAN, _NAN, _NAN, _NAN)
        self._value = _NAN
        self._count = 0

    value = property(lambda self: self._value)
    ready = property(lambda self: self._sums.full)
    count = property(lambda self: self._count)
    window = property(lambda self: self._sums.window)


def sma(x: Sequence[float], period: int) -> list[float]:
    """SMA of ``x`` (TA-Lib operation order)."""
    st = SMA(period)
    return [st.update(v) for v in _floats("x", x)]


def rsi(x: Sequence[float], period: int = 14) -> list[float]:
    """Wilder RSI of ``x`` (TA-Lib seeding)."""
    st = RSI(period)
    return [st.update(v) for v in _floats("x", x)]


def bollinger(x: Sequence[float], period: int = 20, k: float = 2.0) -> tuple[list[float], list[float], list[float]]:
    """Bollinger bands of ``x``: (upper, middle, lower) lists."""
    st = Bollinger(period, k)
    rows = [st.update(v) for v in _floats("x", x)]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def zscore(x: Sequence[float], window: int) -> list[float]:
    """Rolling z-score of ``x``."""
    st = ZScore(window)
    return [st.update(v) for v in _floats("x", x)]


def vwap(price: Sequence[float], volume: Sequence[float], window: int) -> list[float]:
    """Rolling VWAP; ValueError naming the first invalid index."""
    st = VWAP(window)
    p = _floats("price", price)
    v = _floats("volume", volume)
    if len(v) != len(p):
        raise ValueError(f"volume must have the same length as price ({len(p)}), got {len(v)}")
    for i in range(len(p)):
        if not _valid_close(p[i]):
            raise ValueError(f"price must be finite and > 0, got {p[i]!r} at index {i}")
        if not _valid_volume(v[i]):
            raise ValueError(f"volume must be finite and >= 0, got {v[i]!r} at index {i}")
    return [st._update_unchecked(p[i], v[i]) for i in range(len(p))]


def ofi(bid_px: Sequence[float], bid_sz: Sequence[float], ask_px: Sequence[float],
        ask_sz: Sequence[float], window: int = 1) -> list[float]:
    """Order-flow imbalance summed over ``window`` updates."""
    st = OFI(window)
    cols = [_floats(n, c) for n, c in (("bid_px", bid_px), ("bid_sz", bid_sz), ("ask_px", ask_px), ("ask_sz", ask_sz))]
    n = len(cols[0])
    for name, c in zip(("bid_sz", "ask_px", "ask_sz"), cols[1:]):
        if len(c) != n:
            raise ValueError(f"{name} must have the same length as bid_px ({n}), got {len(c)}")
    return [st.update(*row) for row in zip(*cols)]


FUSED_KEYS = ("ema_fast", "ema_slow", "sma", "rsi", "atr", "bb_upper", "bb_middle", "bb_lower")


def fused(high: Sequence[float], low: Sequence[float], close: Sequence[float], *, ema_fast: int = 20,
          ema_slow: int = 100, sma: int = 20, rsi: int = 14, atr: int = 14, bb: int = 20,
          bb_k: float = 2.0) -> dict[str, list[float]]:
    """The fused pass: the streaming indicators stepped together over the bars."""
    ef, es, sm, rs, at, bo = EMA(ema_fast), EMA(ema_slow), SMA(sma), RSI(rsi), ATR(atr), Bollinger(bb, bb_k)
    out: dict[str, list[float]] = {k: [] for k in FUSED_KEYS}
    for h, lo, c in zip(_floats("high", high), _floats("low", low), _floats("close", close)):
        out["ema_fast"].append(ef.update(c))
        out["ema_slow"].append(es.update(c))
        out["sma"].append(sm.update(c))
        out["rsi"].append(rs.update(c))
        out["atr"].append(at.update(h, lo, c))
        u, m, lw = bo.update(c)
        out["bb_upper"].append(u)
        out["bb_middle"].append(m)
        out["bb_lower"].append(lw)
    return out
