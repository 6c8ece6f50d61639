"""Technical indicators for the impulse strategy, backed by C++ kernels.

The kernels live in ``native/`` and are exposed as :mod:`hean._native`
(nanobind). This module re-exports them with documentation; the pure-Python
:mod:`hean.indicators.reference` implements the same API with identical
semantics and error messages, and the tests hold the three (native batch,
native streaming, reference) to 1e-12 relative agreement (in practice they are
bit-identical).

Batch functions take 1-D array-likes (converted to C-contiguous ``float64``;
a copy is made only if needed) and return a new 1-D ``numpy.float64`` array of
the same length. Warm-up positions are NaN. The ``*_into`` variants write into a
caller's ``out`` array instead (a writable, C-contiguous ``numpy.float64`` array
of the same length, never converted; ``out`` may be one of the inputs) and
return None. The GIL is released while a batch kernel runs.

Streaming classes (:class:`EMA`, :class:`RollingLogReturnStd`, :class:`ATR`)
take one bar per ``update(...)`` call and return the newest value, NaN until
warm; ``value``, ``ready`` and ``count`` are read-only properties and
``reset()`` returns to the freshly constructed state. ``update`` returns exactly
(bit for bit) what the batch function returns at the same index: both run the
same compiled C++ step code. Feeding arrays one element at a time from Python
costs ~50 ns per call; use the batch functions for history.

Indicators (``period``/``window`` are bar counts in ``[lo, MAX_PERIOD]``):

``ema(x, period)``, ``EMA(period)``, period >= 1
    Exponential moving average with TA-Lib's seeding: alpha = 2/(period+1);
    out[i] = NaN for i < period-1; out[period-1] = mean(x[0..period-1]);
    then out[i] = out[i-1] + alpha*(x[i] - out[i-1]). Units of ``x``.
    NaN in ``x`` propagates to every later output. Source: TA-Lib ``TA_EMA``.

``rolling_log_return_std(close, window)``, ``RollingLogReturnStd(window)``, window >= 2
    r[i] = ln(close[i]/close[i-1]); out[i] = sample standard deviation (ddof=1)
    of r[i-window+1..i] for i >= window, NaN before. Units: fraction per bar
    (not percent, not annualised). Every close must be finite and > 0, else
    ValueError("close must be finite and > 0, got <v> at index <i>"); the
    streaming ``update`` raises the same error (without the index) and leaves
    the state unchanged (the worker drops and counts such bars before calling).
    Method: returns in a ring buffer, sliding-window Welford update of mean and
    M2, exact two-pass recompute every ``window`` returns (no drift beyond one
    window) and whenever M2 falls below 1/256 of its largest value since the
    last recompute (guards against cancellation when volatility collapses). On
    the recorded 1-minute candles it agrees with an extended-precision two-pass
    std to < 4e-12 relative for windows of 2-5 returns and < 2e-14 for 60+.

``atr(high, low, close, period)``, ``ATR(period)``, period >= 1
    Wilder's average true range as TA-Lib computes it: TR[i] = max(high[i]-low[i],
    |high[i]-close[i-1]|, |low[i]-close[i-1]|) for i >= 1;
    out[period] = mean(TR[1..period]); out[i] = (out[i-1]*(period-1) + TR[i])/period;
    NaN before index ``period``. Price units. Sources: J. Welles Wilder, *New
    Concepts in Technical Trading Systems* (1978); TA-Lib ``TA_ATR``/``TA_TRANGE``.

Invalid arguments raise ValueError naming the argument and its allowed range:
``period must be an integer in [1, 1000000], got 0``, ``window must be an integer
in [2, 1000000], got 1``, ``low must have the same length as high (10), got 9``,
``out must have length 10 (the length of x), got 9``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hean import _native
from hean._native import ATR, EMA, MAX_PERIOD, RollingLogReturnStd

__all__ = [
    "MAX_PERIOD",
    "ATR",
    "EMA",
    "RollingLogReturnStd",
    "atr",
    "atr_into",
    "ema",
    "ema_into",
    "rolling_log_return_std",
    "rolling_log_return_std_into",
]

FloatArray = NDArray[np.float64]


def _as_input(name: str, values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _check_out(out: Any) -> None:
    if not (isinstance(out, np.ndarray) and out.dtype == np.float64
            and out.flags.c_contiguous and out.flags.writeable):
        got = (f"dtype={out.dtype}, c_contiguous={out.flags.c_contiguous}, "
               f"writeable={out.flags.writeable}" if isinstance(out, np.ndarray)
               else type(out).__name__)
        raise TypeError(f"out must be a writable C-contiguous numpy float64 array, got {got}")


def ema(x: ArrayLike, period: int) -> FloatArray:
    """Exponential moving average with TA-Lib seeding.

    Args:
        x: 1-D values (any units), converted to C-contiguous float64.
        period: bars, in [1, MAX_PERIOD]; alpha = 2/(period+1).

    Returns:
        New float64 array, shape ``(len(x),)``, units of ``x``. NaN for
        indices < period-1; out[period-1] = mean(x[:period]); then
        out[i] = out[i-1] + alpha*(x[i] - out[i-1]). Source: TA-Lib TA_EMA.
    """
    return _native.ema(_as_input("x", x), period)


def ema_into(x: ArrayLike, period: int, out: FloatArray) -> None:
    """:func:`ema` written into ``out`` (writable C-contiguous float64, shape ``(len(x),)``)."""
    _check_out(out)
    _native.ema_into(_as_input("x", x), period, out)


def rolling_log_return_std(close: ArrayLike, window: int) -> FloatArray:
    """Rolling sample standard deviation of log returns (per-bar volatility).

    Args:
        close: 1-D close prices, each finite and > 0 (else ValueError naming
            the first bad index), converted to C-contiguous float64.
        window: number of log returns per window, in [2, MAX_PERIOD].

    Returns:
        New float64 array, shape ``(len(close),)``, fraction per bar (not
        percent, not annualised). r[i] = ln(close[i]/close[i-1]);
        out[i] = std(r[i-window+1..i], ddof=1) for i >= window, NaN before.
        Sliding Welford update with an exact two-pass recompute every
        ``window`` returns and on cancellation (see the module docstring).
    """
    return _native.rolling_log_return_std(_as_input("close", close), window)


def rolling_log_return_std_into(close: ArrayLike, window: int, out: FloatArray) -> None:
    """:func:`rolling_log_return_std` written into ``out`` (writable C-contiguous
    float64, shape ``(len(close),)``). Nothing is written if a close is invalid."""
    _check_out(out)
    _native.rolling_log_return_std_into(_as_input("close", close), window, out)


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int) -> FloatArray:
    """Wilder's average true range, as TA-Lib computes it.

    Args:
        high, low, close: 1-D bar prices of equal length, converted to
            C-contiguous float64.
        period: bars, in [1, MAX_PERIOD].

    Returns:
        New float64 array, shape ``(len(high),)``, price units.
        TR[i] = max(high[i]-low[i], |high[i]-close[i-1]|, |low[i]-close[i-1]|)
        for i >= 1; out[period] = mean(TR[1..period]);
        out[i] = (out[i-1]*(period-1) + TR[i]) / period; NaN before index
        ``period``. Sources: Wilder (1978); TA-Lib TA_ATR.
    """
    return _native.atr(_as_input("high", high), _as_input("low", low),
                       _as_input("close", close), period)


def atr_into(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int,
             out: FloatArray) -> None:
    """:func:`atr` written into ``out`` (writable C-contiguous float64, shape ``(len(high),)``)."""
    _check_out(out)
    _native.atr_into(_as_input("high", high), _as_input("low", low),
                     _as_input("close", close), period, out)
