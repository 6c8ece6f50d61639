"""Replay throughput on real recorded candles: the native engine (built-in impulse
kernel and the batched Python-strategy callback) vs the pure-Python reference
pipeline hean.worker.engine.Engine, with a check that the fills are identical.

    .venv/bin/python benchmarks/bench_replay.py [--symbols BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT]
                                                [--trials 7] [--py-trials 3]

An event is one 1-minute candle of one symbol. Loading/merging the CSVs is not
timed; the native timings are of NativeEngine.run (construction included).
"""

from __future__ import annotations

import argparse
import json
import time

#: the timer: wall clock by default, this thread's CPU time with --clock cpu (a loaded,
#: shared machine deschedules the process; CPU time leaves that out)
CLOCK = time.perf_counter
from pathlib import Path

import numpy as np

POLICY = dict(softMaxDrawdownPercent=5, hardMaxDrawdownPercent=10, maxDailyLossUsdt=1000, maxLeverage=3,
              maxPositionNotionalUsdt=20000, maxOpenPositions=4, maxOrdersPerMinute=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--marketdata", default=str(Path(__file__).resolve().parents[2] / "shared" / "marketdata"))
    ap.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT")
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--py-trials", type=int, default=3)
    ap.add_argument("--json", default="")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter; cpu: time.thread_time (for a loaded machine)")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if a.clock == "wall" else time.thread_time

    from hean.engine import NativeEngine, impulse_strategy, merge_klines
    from hean.marketdata import load_instruments, load_klines
    from hean.worker.config import RiskPolicySpec, StrategySpec
    from hean.worker.engine import Engine

    md = Path(a.marketdata)
    syms = a.symbols.split(",")
    inst = load_instruments(md)
    series = {s: load_klines(md, s, "1") for s in syms}
    sp = StrategySpec.model_validate({"strategy": "impulse", "symbols": syms, "capital": 10000,
                                      "riskPolicyRef": {"name": "p"}})
    pol = RiskPolicySpec.model_validate(POLICY)
    instruments = {s: inst[("linear", s)] for s in syms}
    probe = NativeEngine("bench", sp, pol, instruments)
    stream = merge_klines(series, syms, probe.price_decimals)
    n = len(stream)
    rows = sorted(((b.ts_ms, s, b) for s in syms for b in series[s].bars), key=lambda t: (t[0], t[1]))

    def native(strategy=None):
        e = NativeEngine("bench", sp, pol, instruments)
        e.run(stream, strategy=strategy)
        return e

    strat = impulse_strategy(sp.params)
    ts_b, ts_c = [], []
    native()
    native(strat)
    for _ in range(a.trials):  # interleaved
        t = CLOCK()
        eb = native()
        ts_b.append(CLOCK() - t)
        t = CLOCK()
        ec = native(strat)
        ts_c.append(CLOCK() - t)
    ts_p = []
    for _ in range(a.py_trials):
        e = Engine("bench", sp, pol, instruments)
        t = CLOCK()
        for _, s, b in rows:
            e.on_bar(s, b)
        ts_p.append(CLOCK() - t)

    def key(fills):
        return [(f.ts_ms, f.symbol, f.side, f.qty, f.price, f.fee, f.reason, f.order_link_id) for f in fills]

    same_b = key(eb.fills()) == key(e.ledger.fills)
    same_c = key(ec.fills()) == key(e.ledger.fills)
    tb, tc, tp = float(np.median(ts_b)), float(np.median(ts_c)), float(np.median(ts_p))
    res = {"events": n, "symbols": syms, "fills": len(e.ledger.fills), "identical_builtin": same_b,
           "identical_callback": same_c, "native_s": tb, "callback_s": tc, "python_s": tp,
           "native_eps": n / tb, "callback_eps": n / tc, "python_eps": n / tp, "speedup": tp / tb,
           "callback_speedup": tp / tc}
    print(f"{n} events ({len(syms)} symbols x 1m candles), {res['fills']} fills; identical fills: "
          f"built-in {same_b}, callback {same_c}")
    print(f"  native built-in : {tb*1e3:8.2f} ms  {n/tb/1e6:6.2f} M events/s  ({tp/tb:.0f}x the Python reference)")
    print(f"  native callback : {tc*1e3:8.2f} ms  {n/tc/1e6:6.2f} M events/s  ({tp/tc:.0f}x)")
    print(f"  Python reference: {tp*1e3:8.1f} ms  {n/tp/1e3:6.1f} k events/s")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
