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
