"""Streaming ``update()`` cost through nanobind, per call from a Python loop.

    .venv/bin/python benchmarks/bench_streaming.py [--n 1000000] [--trials 7]

Reports the median over trials of (loop time / n) for ``for v in xs: upd(v)`` with
the bound method cached, and the bare loop ``for v in xs: pass`` for reference.
"""

from __future__ import annotations

import argparse
import json
import time

#: the timer: wall clock by default, this thread's CPU time with --clock cpu (a loaded,
#: shared machine deschedules the process; CPU time leaves that out)
CLOCK = time.perf_counter

import numpy as np


def per_call_ns(fn, trials: int, n: int) -> float:
    fn()
    ts = []
    for _ in range(trials):
        t = CLOCK()
        fn()
        ts.append(CLOCK() - t)
    return float(np.median(ts)) / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--json", default="")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter; cpu: time.thread_time (for a loaded machine)")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if a.clock == "wall" else time.thread_time
    from hean import indicators as ind

    rng = np.random.default_rng(1)
    xs = (100 * np.exp(np.cumsum(rng.normal(0, 1e-3, a.n)))).tolist()
    n, k = a.n, a.trials

    def loop_empty():
        for v in xs:
            pass

    def run1(obj):
        upd = obj.update

        def f():
            for v in xs:
                upd(v)
        return f

    def run3(obj):
        upd = obj.update

        def f():
            for v in xs:
                upd(v, v, v)
        return f

    res = {"n": n, "trials": k, "empty_loop_ns": per_call_ns(loop_empty, k, n)}
    for name, f in (("EMA(20)", run1(ind.EMA(20))), ("SMA(20)", run1(ind.SMA(20))), ("RSI(14)", run1(ind.RSI(14))),
                    ("RollingLogReturnStd(60)", run1(ind.RollingLogReturnStd(60))), ("ZScore(20)", run1(ind.ZScore(20))),
                    ("Bollinger(20)", run1(ind.Bollinger(20, 2.0))), ("ATR(14)", run3(ind.ATR(14)))):
        res[name] = per_call_ns(f, k, n)
    print(f"n={n} trials={k}; ns per call from a Python for-loop (bare loop {res['empty_loop_ns']:.1f} ns)")
    for key, v in res.items():
        if key not in ("n", "trials", "empty_loop_ns"):
            print(f"  {key:26s} {v:6.1f} ns/call  ({v - res['empty_loop_ns']:5.1f} ns above the bare loop)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
