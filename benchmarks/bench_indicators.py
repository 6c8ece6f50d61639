"""Batch indicators on 10 million float64: hean vs TA-Lib vs pandas, the fused pass,
each also as a fraction of this machine's single-core copy bandwidth (np.copyto).

    .venv/bin/python benchmarks/bench_indicators.py [--n 10000000] [--trials 7]

Run side by side in one process; every figure is the median of ``--trials`` runs.
Needs the ``bench`` extra (TA-Lib, pandas).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

#: the timer: wall clock by default, this thread's CPU time with --clock cpu (a loaded,
#: shared machine deschedules the process; CPU time leaves that out)
CLOCK = time.perf_counter

import numpy as np


def median_time(fn, trials: int) -> float:
    return median_times([fn], trials)[0]


def median_times(fns, trials: int) -> list[float]:
    """Median wall time of each callable; the callables run interleaved (round-robin
    per trial) so that load changes on a shared machine hit all of them alike."""
    live = [f for f in fns if f is not None]
    for f in live:
        f()  # warm-up (first allocation's page faults, imports)
    ts: dict[int, list[float]] = {i: [] for i in range(len(fns))}
    for _ in range(trials):
        for i, f in enumerate(fns):
            if f is None:
                continue
            t = CLOCK()
            f()
            ts[i].append(CLOCK() - t)
    return [float(np.median(ts[i])) if ts[i] else float("nan") for i in range(len(fns))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--json", default="")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter; cpu: time.thread_time (for a loaded machine)")
    ap.add_argument("--isa", choices=("auto", "avx2", "baseline"), default="auto",
                    help="compiled form of hean's fast batch kernels (default: the CPU's best)")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if a.clock == "wall" else time.thread_time

    import pandas as pd
    import talib

    from hean import _native
    from hean import indicators as ind

    _native.set_batch_isa(a.isa)

    n, k = a.n, a.trials
    rng = np.random.default_rng(42)
    close = 100_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    high = close * (1 + rng.random(n) * 1e-3)
    low = close * (1 - rng.random(n) * 1e-3)
    out = np.empty(n)
    outs = [np.empty(n) for _ in range(3)]

    copy_t = median_time(lambda: np.copyto(out, close), k)
    copy_bw = 16 * n / copy_t  # bytes read + written per second

    s_close, s_high, s_low = pd.Series(close), pd.Series(high), pd.Series(low)

    def pd_rsi(p=14):
        d = s_close.diff()
        g = d.clip(lower=0).ewm(alpha=1 / p, adjust=False).mean()
        l_ = (-d.clip(upper=0)).ewm(alpha=1 / p, adjust=False).mean()
        return 100 * g / (g + l_)

    def pd_atr(p=14):
        pc = s_close.shift()
        tr = pd.concat([s_high - s_low, (s_high - pc).abs(), (s_low - pc).abs()], axis=1).max(axis=1)
        return tr.ewm(alpha=1 / p, adjust=False).mean()

    def pd_bb(p=20):
        m = s_close.rolling(p).mean()
        sd = s_close.rolling(p).std(ddof=0)
        return m + 2 * sd, m, m - 2 * sd

    cases = {
        # name: (bytes touched per element, hean, hean _into, talib, pandas)
        "EMA(20)": (16, lambda: ind.ema(close, 20), lambda: ind.ema_into(close, 20, out),
                    lambda: talib.EMA(close, 20), lambda: s_close.ewm(span=20, adjust=False).mean()),
        "EMA(20) exact": (16, lambda: ind.ema(close, 20, exact=True),
                          lambda: ind.ema_into(close, 20, out, exact=True), None, None),
        "SMA(20)": (16, lambda: ind.sma(close, 20), lambda: ind.sma_into(close, 20, out),
                    lambda: talib.SMA(close, 20), lambda: s_close.rolling(20).mean()),
        "SMA(20) exact": (16, lambda: ind.sma(close, 20, exact=True),
                          lambda: ind.sma_into(close, 20, out, exact=True), None, None),
        "RSI(14)": (16, lambda: ind.rsi(close, 14), lambda: ind.rsi_into(close, 14, out),
                    lambda: talib.RSI(close, 14), pd_rsi),
        "RSI(14) exact": (16, lambda: ind.rsi(close, 14, exact=True),
                          lambda: ind.rsi_into(close, 14, out, exact=True), None, None),
        "ATR(14)": (32, lambda: ind.atr(high, low, close, 14), lambda: ind.atr_into(high, low, close, 14, out),
                    lambda: talib.ATR(high, low, close, 14), pd_atr),
        "ATR(14) exact": (32, lambda: ind.atr(high, low, close, 14, exact=True),
                          lambda: ind.atr_into(high, low, close, 14, out, exact=True), None, None),
        "Bollinger(20,2)": (32, lambda: ind.bollinger(close, 20, 2.0),
                            lambda: ind.bollinger_into(close, 20, 2.0, *outs),
                            lambda: talib.BBANDS(close, 20, 2.0, 2.0, 0), pd_bb),
        "Bollinger(20,2) exact": (32, lambda: ind.bollinger(close, 20, 2.0, exact=True),
                                  lambda: ind.bollinger_into(close, 20, 2.0, *outs, exact=True), None, None),
    }
    rows = []
    ta_of = {"EMA(20) exact": "EMA(20)", "SMA(20) exact": "SMA(20)", "RSI(14) exact": "RSI(14)",
             "ATR(14) exact": "ATR(14)", "Bollinger(20,2) exact": "Bollinger(20,2)"}
    for name, (bpe, ours, ours_into, ta, pdf) in cases.items():
        if ta is None:  # the exact rows race the same TA-Lib / pandas calls as their exact row
            ta, pdf = cases[ta_of[name]][3], cases[ta_of[name]][4]
        t_ours, t_into, t_ta, t_pd = median_times([ours, ours_into, ta, pdf], k)
        rows.append({
            "indicator": name, "hean_ms": t_ours * 1e3, "hean_into_ms": t_into * 1e3,
            "talib_ms": t_ta * 1e3, "pandas_ms": t_pd * 1e3,
            "vs_talib": t_ta / t_ours, "vs_pandas": t_pd / t_ours, "into_vs_pandas": t_pd / t_into,
            "into_vs_talib": t_ta / t_into,
            "frac_copy_bw": (bpe * n / t_into) / copy_bw,
        })

    fo = {key: np.empty(n) for key in ind.FUSED_KEYS}
    sep = {k2: np.empty(n) for k2 in ind.FUSED_KEYS}

    def separate_fast():  # the same six indicators, one default (fast) batch kernel each
        ind.ema_into(close, 20, sep["ema_fast"])
        ind.ema_into(close, 100, sep["ema_slow"])
        ind.sma_into(close, 20, sep["sma"])
        ind.rsi_into(close, 14, sep["rsi"])
        ind.atr_into(high, low, close, 14, sep["atr"])
        ind.bollinger_into(close, 20, 2.0, sep["bb_upper"], sep["bb_middle"], sep["bb_lower"])

    t_fused, t_fused_into, t_fast, t_fast_into, t_sep, t_ta_all, t_ta_ema100 = median_times([
        lambda: ind.fused(high, low, close, exact=True),
        lambda: ind.fused_into(high, low, close, fo, exact=True),
        lambda: ind.fused(high, low, close),
        lambda: ind.fused_into(high, low, close, fo),
        separate_fast,
        lambda: (talib.EMA(close, 20), talib.EMA(close, 100), talib.SMA(close, 20), talib.RSI(close, 14),
                 talib.ATR(high, low, close, 14), talib.BBANDS(close, 20, 2.0, 2.0, 0)),
        lambda: talib.EMA(close, 100)], k)
    # a steadier baseline: the sum of the per-indicator TA-Lib medians measured above
    by_name = {r["indicator"]: r["talib_ms"] for r in rows}
    t_ta_sum = (by_name["EMA(20)"] + by_name["SMA(20)"] + by_name["RSI(14)"] + by_name["ATR(14)"]
                + by_name["Bollinger(20,2)"]) / 1e3 + t_ta_ema100
    fused = {"talib_sum_ms": t_ta_sum * 1e3, "into_vs_talib_sum": t_ta_sum / t_fused_into,
             "fast_into_vs_talib_sum": t_ta_sum / t_fast_into, "vs_talib_sum": t_ta_sum / t_fused,
             "fast_vs_talib_sum": t_ta_sum / t_fast, "separate_fast_vs_talib_sum": t_ta_sum / t_sep,"fused_ms": t_fused * 1e3, "fused_into_ms": t_fused_into * 1e3, "fused_fast_ms": t_fast * 1e3,
             "fused_fast_into_ms": t_fast_into * 1e3, "separate_fast_into_ms": t_sep * 1e3,
             "talib_each_ms": t_ta_all * 1e3,
             "vs_talib": t_ta_all / t_fused, "into_vs_talib": t_ta_all / t_fused_into,
             "fast_vs_talib": t_ta_all / t_fast, "fast_into_vs_talib": t_ta_all / t_fast_into,
             "separate_fast_vs_talib": t_ta_all / t_sep,
             # 3 inputs read + 8 outputs written
             "frac_copy_bw": (88 * n / t_fused_into) / copy_bw,
             "fast_frac_copy_bw": (88 * n / t_fast_into) / copy_bw}

    res = {"n": n, "trials": k, "machine": platform.processor() or platform.machine(),
           "python": platform.python_version(), "isa": _native.batch_isa(), "copy_ms": copy_t * 1e3, "copy_GBps": copy_bw / 1e9,
           "rows": rows, "fused": fused}
    print(f"hean fast kernels: {_native.batch_isa()}")
    print(f"n={n} trials={k} np.copyto {copy_t*1e3:.1f} ms = {copy_bw/1e9:.1f} GB/s (read+write)")
    print(f"{'indicator':20s} {'hean':>8s} {'_into':>8s} {'TA-Lib':>8s} {'pandas':>8s} {'xTA':>6s} {'xTA_into':>8s} {'xPD':>6s} {'bw':>5s}")
    for r in rows:
        print(f"{r['indicator']:20s} {r['hean_ms']:8.1f} {r['hean_into_ms']:8.1f} {r['talib_ms']:8.1f} "
              f"{r['pandas_ms']:8.1f} {r['vs_talib']:6.2f} {r['into_vs_talib']:8.2f} {r['vs_pandas']:6.1f} "
              f"{r['frac_copy_bw']:5.2f}")
    print(f"TA-Lib one call each (EMA20, EMA100, SMA20, RSI14, ATR14, BBANDS20): {t_ta_all*1e3:.1f} ms in one "
          f"timed block; {t_ta_sum*1e3:.1f} ms as the sum of the per-indicator medians")
    print(f"  fused exact   {t_fused*1e3:7.1f} ms (into {t_fused_into*1e3:7.1f}) = {fused['vs_talib']:.2f}x "
          f"(into {fused['into_vs_talib']:.2f}x); vs the sum: {fused['vs_talib_sum']:.2f}x "
          f"(into {fused['into_vs_talib_sum']:.2f}x); {fused['frac_copy_bw']:.2f} of copy bandwidth")
    print(f"  fused default {t_fast*1e3:7.1f} ms (into {t_fast_into*1e3:7.1f}) = {fused['fast_vs_talib']:.2f}x "
          f"(into {fused['fast_into_vs_talib']:.2f}x); vs the sum: {fused['fast_vs_talib_sum']:.2f}x "
          f"(into {fused['fast_into_vs_talib_sum']:.2f}x); {fused['fast_frac_copy_bw']:.2f} of copy bandwidth")
    print(f"  six default kernels, into: {t_sep*1e3:7.1f} ms = {fused['separate_fast_vs_talib']:.2f}x; vs the sum "
          f"{fused['separate_fast_vs_talib_sum']:.2f}x")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
