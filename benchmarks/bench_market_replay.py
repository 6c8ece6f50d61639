"""Benchmark: the one-call native market replay (candles + trades + L2 book updates ->
book-imbalance strategy -> risk -> PaperMatcher -> ledger) against the pure-Python
pipeline over the same recorded frames.

    .venv/bin/python benchmarks/bench_market_replay.py [--trials 7] [--copies 40] [--clock wall|cpu]

Input: the Bybit mainnet capture ``../shared/marketdata/bybit/ws/BYBIT.jsonl.zst``
(BTC/ETH/SOL/DOGE-USDT: 2,148 book messages, 347 trades, 6 confirmed candles = 2,501
events). Timed: ``replay_market_native`` (engine construction included) on the tape,
and ``replay_market_reference`` on the frames; fills are checked identical. For a
steadier events/s figure the tape is also tiled ``--copies`` times (ts, u, seq shifted;
each copy re-snapshots). Encoding the frames into the tape is not timed (it is the
loader, like reading CSVs for the candle replay).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

#: the timer: wall clock by default, this thread's CPU time with --clock cpu (a loaded,
#: shared machine deschedules the process; CPU time leaves that out)
CLOCK = time.perf_counter
from pathlib import Path

import numpy as np

from hean.engine.market import (MarketParams, encode_frames, market_symbols, read_market_frames,
                                replay_market_native, replay_market_reference)
from hean.marketdata import load_instruments

ROOT = Path(__file__).resolve().parents[1]
MD = ROOT.parent / "shared" / "marketdata"
SYMBOLS = ["BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT"]


def median_time(fn, trials):
    ts = []
    for _ in range(trials):
        t = CLOCK()
        fn()
        ts.append(CLOCK() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter; cpu: time.thread_time (for a loaded machine)")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if a.clock == "wall" else time.thread_time
    inst = {s: i for (c, s), i in load_instruments(MD).items() if c == "linear"}
    frames = read_market_frames(MD / "bybit" / "ws" / "BYBIT.jsonl.zst")
    syms = market_symbols(frames, SYMBOLS, inst)
    tape = encode_frames(frames, syms)
    params = MarketParams(entry_imbalance=0.1, exit_imbalance=0.05, cooldown_ms=200)
    nat = replay_market_native(tape, params=params)
    ref = replay_market_reference(frames, syms, params=params)
    same = all(np.array_equal(nat.fills[k], ref.fills[k]) for k in nat.fills) and np.array_equal(nat.equity, ref.equity)
    n = len(tape)
    print(f"{platform.processor() or platform.machine()}, clock {a.clock}, load {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"events {n}, fills {len(nat.fills['ts_ms'])}, identical to the Python pipeline: {same}")
    # interleave trials so that load changes hit both alike
    tn, tr = [], []
    for _ in range(a.trials):
        t = CLOCK(); replay_market_native(tape, params=params); tn.append(CLOCK() - t)
        t = CLOCK(); replay_market_reference(frames, syms, params=params); tr.append(CLOCK() - t)
    mn, mr = statistics.median(tn), statistics.median(tr)
    print(f"native  {mn * 1e3:8.3f} ms  {n / mn / 1e6:6.2f} M events/s")
    print(f"python  {mr * 1e3:8.3f} ms  {n / mr / 1e3:6.1f} k events/s   native x{mr / mn:.0f}")
    big = tape.tiled(a.copies)
    r = replay_market_native(big, params=params)
    mb = median_time(lambda: replay_market_native(big, params=params), a.trials)
    print(f"tiled x{a.copies}: {len(big)} events, {len(r.fills['ts_ms'])} fills, {mb * 1e3:.1f} ms, "
          f"{len(big) / mb / 1e6:.2f} M events/s; book {r.counters['book']}")


if __name__ == "__main__":
    main()
