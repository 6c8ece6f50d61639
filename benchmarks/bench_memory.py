"""Peak memory of a native replay and its growth with input length.

    .venv/bin/python benchmarks/bench_memory.py [--multiples 0.125,0.25,0.5,1,2,4]

The one-month four-symbol 1-minute stream (BTC/ETH/SOL/BNB, 172,800 events) is
merged once; each length runs in a fresh subprocess that loads the stream, records
its RSS and resets the peak (VmHWM, via /proc/self/clear_refs), runs the replay
(NativeEngine.run: equity curve + fills) and reads the peak. Lengths above one month tile the month with shifted
timestamps. The reported growth is (peak after - peak before) per event.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# loose risk limits so that the tiled months keep trading (fills grow with the input)
POLICY = dict(softMaxDrawdownPercent=90, hardMaxDrawdownPercent=100, maxDailyLossUsdt=1e9, maxLeverage=3,
              maxPositionNotionalUsdt=20000, maxOpenPositions=4, maxOrdersPerMinute=60)
SYMS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]

CHILD = r"""
import json, pickle, resource, sys
import numpy as np
from hean.engine import NativeEngine, ReplayInput
sp, pol, instruments, pd = pickle.load(open(sys.argv[1] + ".pkl", "rb"))
z = np.load(sys.argv[1] + ".npz")
mult = float(sys.argv[2])
n0 = len(z["symbol"])
reps = max(1, int(np.ceil(mult)))
cols = {}
month_ms = 30 * 86_400_000
for k in ("symbol", "ts_ms", "open", "high", "low", "close"):
    parts = [z[k] + (i * month_ms if k == "ts_ms" else 0) for i in range(reps)]
    cols[k] = np.ascontiguousarray(np.concatenate(parts)[: int(round(n0 * mult))])
stream = ReplayInput(list(sp.symbols), pd, **cols)
del z, parts
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current RSS
    fh.write("5")
before = status("VmRSS")
e = NativeEngine("mem", sp, pol, instruments)
curve = e.run(stream)
fills = e.fill_arrays()
after = status("VmHWM")
print(json.dumps({"events": len(stream), "fills": len(fills["ts_ms"]), "rss_before_kb": before,
                  "rss_after_kb": after, "delta_kb": after - before}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--marketdata", default=str(Path(__file__).resolve().parents[2] / "shared" / "marketdata"))
    ap.add_argument("--multiples", default="0.125,0.25,0.5,1,2,4")
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    import pickle

    from hean.engine import NativeEngine, merge_klines
    from hean.marketdata import load_instruments, load_klines
    from hean.worker.config import RiskPolicySpec, StrategySpec

    md = Path(a.marketdata)
    inst = load_instruments(md)
    series = {s: load_klines(md, s, "1") for s in SYMS}
    sp = StrategySpec.model_validate({"strategy": "impulse", "symbols": SYMS, "capital": 10000,
                                      "riskPolicyRef": {"name": "p"}})
    pol = RiskPolicySpec.model_validate(POLICY)
    instruments = {s: inst[("linear", s)] for s in SYMS}
    pd = NativeEngine("mem", sp, pol, instruments).price_decimals
    stream = merge_klines(series, SYMS, pd)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = str(Path(tmp) / "stream")
        np.savez(base + ".npz", symbol=stream.symbol, ts_ms=stream.ts_ms, open=stream.open, high=stream.high,
                 low=stream.low, close=stream.close)
        with open(base + ".pkl", "wb") as fh:
            pickle.dump((sp, pol, instruments, pd), fh)
        for m in a.multiples.split(","):
            out = subprocess.run([sys.executable, "-c", CHILD, base, m], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["multiple"] = float(m)
            rows.append(r)
            print(f"x{float(m):<6} events {r['events']:>8} fills {r['fills']:>6}  peak RSS before {r['rss_before_kb']/1024:7.1f} MiB"
                  f"  after {r['rss_after_kb']/1024:7.1f} MiB  growth {r['delta_kb']/1024:6.2f} MiB")
    ev = np.array([r["events"] for r in rows], float)
    dk = np.array([r["delta_kb"] for r in rows], float) * 1024
    slope, icpt = np.polyfit(ev, dk, 1)
    print(f"linear fit: {slope:.1f} bytes/event + {icpt/1024/1024:.2f} MiB "
          f"(the equity curve alone is 8 bytes/event; fills 56 bytes each)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"rows": rows, "bytes_per_event": slope, "intercept_bytes": icpt}, fh, indent=1)


if __name__ == "__main__":
    main()
