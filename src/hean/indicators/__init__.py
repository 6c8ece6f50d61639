"""Technical indicators for the impulse strategy, backed by C++ kernels.

The kernels live in ``native/`` and are exposed as :mod:`hean._native`
(nanobind). This module re-exports them with documentation; the pure-Python
:mod:`hean.indicators.reference` implements the same API with identical
semantics and error messages, and the tests hold the three (native batch,
native streaming, reference) to 1e-12 relative agreement.

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
(bit for bit) what the batch function with ``exact=True`` returns at the same
index (both run the same compiled C++ step code), and what the default batch
function returns to 1e-12 relative (see "Batch forms" below). Feeding arrays one
element at a time from Python costs ~25-50 ns per call; use the batch functions
for history.

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

``sma(x, period)``, ``SMA(period)``, period >= 1
    Simple moving average with TA-Lib's operation order (running sum: add the
    new value, divide, subtract the oldest), bit-identical to ``TA_SMA``. NaN for
    i < period-1. Units of ``x``.

``rsi(x, period)``, ``RSI(period)``, period >= 1
    Wilder's relative strength index, TA-Lib seeding: NaN for i < period;
    avg gain/loss at index period = simple means of the first ``period``
    changes; then avg = (avg*(period-1) + move)/period; RSI = 100*g/(g+l) in
    [0, 100], 0 when g+l == 0 (TA-Lib: when |g+l| < 1e-8). Sources: Wilder
    (1978); TA-Lib ``TA_RSI``.

``bollinger(x, period, k=2.0)``, ``Bollinger(period, k)``
    (upper, middle, lower): middle = sma(x, period); upper/lower = middle ±
    k * population std (ddof=0) of the same window. The std uses the sliding
    Welford update with exact recompute (TA-Lib's sum-of-squares form cancels
    on prices; they agree to ~1e-9 relative). Source: J. Bollinger (2001);
    TA-Lib ``TA_BBANDS`` with SMA.

``zscore(x, window)``, ``ZScore(window)``, window >= 2
    (x[i] - mean)/pstd over x[i-window+1..i] (ddof=0), 0 when pstd == 0,
    NaN for i < window-1. Dimensionless.

``vwap(price, volume, window)``, ``VWAP(window)``, window >= 1
    Rolling volume-weighted average price: sum(price*volume)/sum(volume) over
    the last ``window`` bars; NaN while warming up or while the window's
    volume is 0. ``price`` finite > 0 (e.g. the typical price (h+l+c)/3, USDT),
    ``volume`` finite >= 0 (base coin), else ValueError naming the index.
    Running sums with an exact recompute every ``window`` bars.

``ofi(bid_px, bid_sz, ask_px, ask_sz, window)``, ``OFI(window)``, window >= 1
    Order-flow imbalance of top-of-book updates (R. Cont, A. Kukanov, S.
    Stoikov, "The price impact of order book events", J. Financial
    Econometrics 12(1), 2014): e[i] = 1{Pb[i]>=Pb[i-1]}qb[i] -
    1{Pb[i]<=Pb[i-1]}qb[i-1] - 1{Pa[i]<=Pa[i-1]}qa[i] + 1{Pa[i]>=Pa[i-1]}qa[i-1];
    out[i] = sum of e over the last ``window`` updates, NaN for i < window.
    Units of size (base coin); positive = net buying pressure.

``fused(high, low, close, ema_fast=20, ema_slow=100, sma=20, rsi=14, atr=14, bb=20, bb_k=2.0, exact=False)``
    One sweep over the bars (blocks of 16384 bars) computing the EMA pair, SMA,
    RSI, ATR and Bollinger bands; returns a dict of float64 arrays keyed by
    ``FUSED_KEYS``, each within 1e-12 relative of the single-indicator result
    (``exact=True``: one loop of the streaming step code, each output
    bit-identical to the exact single-indicator result).

Batch forms. ``ema``, ``sma``, ``rsi``, ``atr``, ``bollinger``, ``fused`` and their
``_into`` forms run by default the *fast* form: the same formula with another
operation order (the recurrences v = c*v + u with a 4-step look-ahead
v[i+k] = c^k v[i-1] + s_k; SMA as S += x[i] - x[i-p] re-summed exactly every
max(1024, p) outputs; Bollinger's sliding Welford update with multiplications by
1/p), vectorised, compiled for AVX2 and the x86-64 baseline (identical bits;
``hean._native.batch_isa()``), writing large outputs with non-temporal stores.
It agrees with the streaming class to ~1e-14 relative of the input's scale
(tested: 1e-12, the accuracy contract) and NaN/inf inputs give the streaming
class's NaN/inf outputs (a non-finite input switches the kernel to the exact
step). ``exact=True`` runs the streaming classes' operations: bit-identical to
``update()`` (and to TA-Lib's ``TA_SMA``/``TA_EMA``/middle band). The deprecated
``lookahead=`` (ema/sma/rsi/atr) and ``fast=`` (bollinger/fused) still work:
``True`` = the default, ``False`` = ``exact=True`` (DeprecationWarning). With
``out`` overlapping an input, EMA/SMA/ATR/Bollinger/fused run the exact form.

Invalid arguments raise ValueError naming the argument and its allowed range:
``period must be an integer in [1, 1000000], got 0``, ``window must be an integer
in [2, 1000000], got 1``, ``low must have the same length as high (10), got 9``,
``out must have length 10 (the length of x), got 9``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hean import _native
from hean._native import ATR, EMA, MAX_PERIOD, OFI, RSI, SMA, VWAP, Bollinger, RollingLogReturnStd, ZScore

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
    "SMA", "RSI", "Bollinger", "VWAP", "ZScore", "OFI",
    "sma", "sma_into", "rsi", "rsi_into", "bollinger", "bollinger_into",
    "vwap", "vwap_into", "zscore", "zscore_into", "ofi", "ofi_into",
    "fused", "fused_into", "FUSED_KEYS",
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


def _exact(exact: bool, alias: bool | None, alias_name: str) -> bool:
    """The ``exact`` flag passed to the kernel, honouring the deprecated alias
    (``lookahead=True``/``fast=True`` = the fast form, now the default;
    ``lookahead=False``/``fast=False`` = the exact form)."""
    if alias is None:
        return bool(exact)
    warnings.warn(f"{alias_name}= is deprecated: the fast form is the default now; "
                  f"pass exact=True for the form bit-identical to the streaming class",
                  DeprecationWarning, stacklevel=3)
    if alias and exact:
        raise ValueError(f"exact=True contradicts {alias_name}=True")
    return bool(exact) or not alias


def ema(x: ArrayLike, period: int, *, exact: bool = False,
        lookahead: bool | None = None) -> FloatArray:
    """Exponential moving average with TA-Lib seeding.

    Args:
        x: 1-D values (any units), converted to C-contiguous float64.
        period: bars, in [1, MAX_PERIOD]; alpha = 2/(period+1).
        exact: True: the streaming formula, bit-identical to ``EMA.update``
            and ``TA_EMA``; False (default): (1-alpha)*v + alpha*x with a 4-step
            look-ahead, ~1e-14 relative from it (see the module docstring).
        lookahead: deprecated alias (True = default, False = exact=True).

    Returns:
        New float64 array, shape ``(len(x),)``, units of ``x``. NaN for
        indices < period-1; out[period-1] = mean(x[:period]); then
        out[i] = out[i-1] + alpha*(x[i] - out[i-1]). Source: TA-Lib TA_EMA.
    """
    return _native.ema(_as_input("x", x), period, _exact(exact, lookahead, "lookahead"))


def ema_into(x: ArrayLike, period: int, out: FloatArray, *, exact: bool = False,
        lookahead: bool | None = None) -> None:
    """:func:`ema` written into ``out`` (writable C-contiguous float64, shape ``(len(x),)``)."""
    _check_out(out)
    _native.ema_into(_as_input("x", x), period, out, _exact(exact, lookahead, "lookahead"))


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


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int,
        *, exact: bool = False, lookahead: bool | None = None) -> FloatArray:
    """Wilder's average true range, as TA-Lib computes it.

    Args:
        high, low, close: 1-D bar prices of equal length, converted to
            C-contiguous float64.
        period: bars, in [1, MAX_PERIOD].
        exact: True: bit-identical to ``ATR.update``; False (default): the fast
            form (c*v + TR/period with a 4-step look-ahead, ~1e-14 relative).
        lookahead: deprecated alias (True = default, False = exact=True).

    Returns:
        New float64 array, shape ``(len(high),)``, price units.
        TR[i] = max(high[i]-low[i], |high[i]-close[i-1]|, |low[i]-close[i-1]|)
        for i >= 1; out[period] = mean(TR[1..period]);
        out[i] = (out[i-1]*(period-1) + TR[i]) / period; NaN before index
        ``period``. Sources: Wilder (1978); TA-Lib TA_ATR.
    """
    return _native.atr(_as_input("high", high), _as_input("low", low),
                       _as_input("close", close), period, _exact(exact, lookahead, "lookahead"))


def atr_into(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int,
             out: FloatArray, *, exact: bool = False,
        lookahead: bool | None = None) -> None:
    """:func:`atr` written into ``out`` (writable C-contiguous float64, shape ``(len(high),)``)."""
    _check_out(out)
    _native.atr_into(_as_input("high", high), _as_input("low", low),
                     _as_input("close", close), period, out, _exact(exact, lookahead, "lookahead"))


# ---------------------------------------------------------------------------
# SMA, RSI, Bollinger, z-score, VWAP, OFI, fused
# ---------------------------------------------------------------------------

#: Keys of the dict returned by :func:`fused`.
FUSED_KEYS = ("ema_fast", "ema_slow", "sma", "rsi", "atr", "bb_upper", "bb_middle", "bb_lower")


def sma(x: ArrayLike, period: int, *, exact: bool = False,
        lookahead: bool | None = None) -> FloatArray:
    """Simple moving average (TA-Lib ``TA_SMA``, bit-identical).

    Args:
        x: 1-D values, converted to C-contiguous float64.
        period: bars, in [1, MAX_PERIOD].
        exact: True: TA-Lib's running sum, bit-identical to ``SMA.update`` and
            ``TA_SMA``; False (default): S += x[i] - x[i-period] with a 4-step
            look-ahead, re-summed exactly every max(1024, period) outputs
            (~1e-15 relative).
        lookahead: deprecated alias (True = default, False = exact=True).

    Returns:
        float64 array, shape ``(len(x),)``, units of ``x``; NaN for i < period-1.
    """
    return _native.sma(_as_input("x", x), period, _exact(exact, lookahead, "lookahead"))


def sma_into(x: ArrayLike, period: int, out: FloatArray, *, exact: bool = False,
        lookahead: bool | None = None) -> None:
    """:func:`sma` written into ``out`` (writable C-contiguous float64, shape ``(len(x),)``)."""
    _check_out(out)
    _native.sma_into(_as_input("x", x), period, out, _exact(exact, lookahead, "lookahead"))


def rsi(x: ArrayLike, period: int = 14, *, exact: bool = False,
        lookahead: bool | None = None) -> FloatArray:
    """Wilder's RSI with TA-Lib seeding (``TA_RSI``).

    Args:
        x: 1-D prices, converted to C-contiguous float64.
        period: bars, in [1, MAX_PERIOD].
        exact: True: bit-identical to ``RSI.update``; False (default): the
            averages as c*avg + move/period with a 4-step look-ahead (~1e-14
            relative).
        lookahead: deprecated alias (True = default, False = exact=True).

    Returns:
        float64 array, shape ``(len(x),)``, values in [0, 100]; NaN for i < period.
    """
    return _native.rsi(_as_input("x", x), period, _exact(exact, lookahead, "lookahead"))


def rsi_into(x: ArrayLike, period: int, out: FloatArray, *, exact: bool = False,
        lookahead: bool | None = None) -> None:
    """:func:`rsi` written into ``out`` (writable C-contiguous float64, shape ``(len(x),)``)."""
    _check_out(out)
    _native.rsi_into(_as_input("x", x), period, out, _exact(exact, lookahead, "lookahead"))


def bollinger(x: ArrayLike, period: int = 20, k: float = 2.0, *, exact: bool = False,
              fast: bool | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bollinger bands.

    Args:
        x: 1-D prices, converted to C-contiguous float64.
        period: window in bars, in [1, MAX_PERIOD].
        k: band width in population standard deviations, in [0, 1000].
        exact: True: bit-identical to ``Bollinger.update`` (middle = TA-Lib's
            running-sum SMA); False (default): the sliding Welford update with
            multiplications by 1/period, re-summed every multiple of period >=
            128 outputs, middle = the Welford mean (~1e-14 relative).
        fast: deprecated alias (True = default, False = exact=True).

    Returns:
        ``(upper, middle, lower)``, float64 arrays of shape ``(len(x),)`` in the
        units of ``x``; middle = sma(x, period); NaN for i < period-1.
    """
    return _native.bollinger(_as_input("x", x), period, float(k), _exact(exact, fast, "fast"))


def bollinger_into(x: ArrayLike, period: int, k: float, upper: FloatArray, middle: FloatArray,
                   lower: FloatArray, *, exact: bool = False, fast: bool | None = None) -> None:
    """:func:`bollinger` written into three caller arrays (writable C-contiguous float64)."""
    for o in (upper, middle, lower):
        _check_out(o)
    _native.bollinger_into(_as_input("x", x), period, float(k), upper, middle, lower,
                            _exact(exact, fast, "fast"))


def zscore(x: ArrayLike, window: int) -> FloatArray:
    """Rolling z-score (x - mean)/pstd over the last ``window`` values (ddof=0).

    Returns a float64 array of shape ``(len(x),)``, dimensionless; 0 where the
    window's std is 0; NaN for i < window-1. window in [2, MAX_PERIOD].
    """
    return _native.zscore(_as_input("x", x), window)


def zscore_into(x: ArrayLike, window: int, out: FloatArray) -> None:
    """:func:`zscore` written into ``out``."""
    _check_out(out)
    _native.zscore_into(_as_input("x", x), window, out)


def vwap(price: ArrayLike, volume: ArrayLike, window: int) -> FloatArray:
    """Rolling volume-weighted average price.

    Args:
        price: 1-D prices (finite, > 0), e.g. typical price (h+l+c)/3, USDT.
        volume: 1-D volumes (finite, >= 0), base coin, same length.
        window: bars, in [1, MAX_PERIOD].

    Returns:
        float64 array, shape ``(len(price),)``, price units:
        sum(price*volume)/sum(volume) over the last ``window`` bars; NaN for
        i < window-1 and where the window's volume is 0. ValueError naming the
        first bad index (nothing written) for an invalid price or volume.
    """
    return _native.vwap(_as_input("price", price), _as_input("volume", volume), window)


def vwap_into(price: ArrayLike, volume: ArrayLike, window: int, out: FloatArray) -> None:
    """:func:`vwap` written into ``out``."""
    _check_out(out)
    _native.vwap_into(_as_input("price", price), _as_input("volume", volume), window, out)


def ofi(bid_px: ArrayLike, bid_sz: ArrayLike, ask_px: ArrayLike, ask_sz: ArrayLike,
        window: int = 1) -> FloatArray:
    """Order-flow imbalance (Cont, Kukanov & Stoikov 2014) of top-of-book updates.

    Args:
        bid_px, bid_sz, ask_px, ask_sz: 1-D best bid/ask price (USDT) and size
            (base coin) per book update, equal lengths.
        window: number of updates summed, in [1, MAX_PERIOD].

    Returns:
        float64 array, shape ``(len(bid_px),)``, base-coin size; NaN for i < window.
    """
    return _native.ofi(_as_input("bid_px", bid_px), _as_input("bid_sz", bid_sz),
                       _as_input("ask_px", ask_px), _as_input("ask_sz", ask_sz), window)


def ofi_into(bid_px: ArrayLike, bid_sz: ArrayLike, ask_px: ArrayLike, ask_sz: ArrayLike,
             window: int, out: FloatArray) -> None:
    """:func:`ofi` written into ``out``."""
    _check_out(out)
    _native.ofi_into(_as_input("bid_px", bid_px), _as_input("bid_sz", bid_sz),
                     _as_input("ask_px", ask_px), _as_input("ask_sz", ask_sz), window, out)


def fused(high: ArrayLike, low: ArrayLike, close: ArrayLike, *, ema_fast: int = 20,
          ema_slow: int = 100, sma: int = 20, rsi: int = 14, atr: int = 14, bb: int = 20,
          bb_k: float = 2.0, exact: bool = False, fast: bool | None = None) -> dict[str, FloatArray]:
    """Several indicators in one sweep over the bars.

    Args:
        high, low, close: 1-D bar prices of equal length (float64).
        ema_fast, ema_slow, sma, rsi, atr, bb: periods in bars; bb_k band width.
        exact: False (default): one sweep in blocks of 16384 bars running each
            indicator's fast form over the block, state carried between blocks
            (~1e-14 relative); True: one loop of the streaming step code.
        fast: deprecated alias (True = default, False = exact=True).

    Returns:
        dict keyed by :data:`FUSED_KEYS`, each a float64 array of shape
        ``(len(close),)``, within 1e-12 relative of (``exact=True``: bit-identical
        to) the single-indicator function's result with the same ``exact``
        (ema(close, ema_fast), ema(close, ema_slow), sma(close, sma), rsi(close,
        rsi), atr(high, low, close, atr), bollinger(close, bb, bb_k)).
    """
    return _native.fused(_as_input("high", high), _as_input("low", low), _as_input("close", close),
                         ema_fast, ema_slow, sma, rsi, atr, bb, float(bb_k),
                         _exact(exact, fast, "fast"))


def fused_into(high: ArrayLike, low: ArrayLike, close: ArrayLike, out: dict[str, FloatArray], *,
               ema_fast: int = 20, ema_slow: int = 100, sma: int = 20, rsi: int = 14, atr: int = 14,
               bb: int = 20, bb_k: float = 2.0, exact: bool = False, fast: bool | None = None) -> None:
    """:func:`fused` written into ``out``, a dict of caller arrays keyed by :data:`FUSED_KEYS`."""
    for key in FUSED_KEYS:
        if key not in out:
            raise ValueError(f"out is missing the key {key!r}")
        _check_out(out[key])
    _native.fused_into(_as_input("high", high), _as_input("low", low), _as_input("close", close),
                       ema_fast, ema_slow, sma, rsi, atr, bb, float(bb_k), out,
                       _exact(exact, fast, "fast"))
