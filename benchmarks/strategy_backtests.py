"""Replay every strategy with its DEFAULT parameters on the shared recorded data and
print a markdown table (total return, max drawdown, trades, fees, funding).

    .venv/bin/python benchmarks/strategy_backtests.py [--marketdata ../shared/marketdata] [--bars N]

Data (see ../shared/marketdata/README.md):

* impulse, momentum, grid, scalping (on candles): the shared month of Bybit 1-minute
  klines of BTCUSDT, ETHUSDT, SOLUSDT, BNBUSDT (2025-05-30 .. 2025-06-29), one
  strategy trading all four symbols;
* scalping (on the book): the recorded Bybit mainnet order-book frames of BTCUSDT,
  ETHUSDT, SOLUSDT (about 45 s, bybit/ws/BYBIT.jsonl.zst) — the month has no book data;
* funding_harvest: the only funding history in the shared data, Binance XRPUSDT 8-h
  funding rates with the 8-h mark-price candles (2021-11-18 .. 2021-12-18);
* basis_arbitrage: a CONSTRUCTED spot/perp pair per symbol: the perpetual is the real
  1-minute series, the spot leg the same candles scaled by ``1 - 0.1 x (close / mean of
  the last 240 closes - 1)`` (the basis widens in rallies, as contango does). There is
  no recorded spot series for that month.

Account: 10,000 USDT, maxLeverage 2, the RiskPolicy of examples/riskpolicy.yaml; paper
fills at the next candle's open with 2 bps slippage and Bybit taker fees (book
strategies: at the touch). Numbers are what they are: no parameter was tuned.
The feeds (book frames, funding history, constructed spot leg) are those of
``hean backtest`` (:mod:`hean.backtest.feeds`); ``hean backtest`` with the manifests of
examples/backtest/ is the product path (docs/backtests.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from hean.backtest import feeds
from hean.backtest.feeds import dispatch
from hean.marketdata import load_instruments, load_klines
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


def policy() -> RiskPolicySpec:
    doc = yaml.safe_load((ROOT / "examples" / "riskpolicy.yaml").read_text())
    return RiskPolicySpec.model_validate(doc["spec"])


def make(strategy: str, symbols, instruments, extra=None) -> Engine:
    spec = StrategySpec.model_validate({"strategy": strategy, "symbols": list(symbols), "capital": 10000,
                                        "maxLeverage": 2, "riskPolicyRef": {"name": "default"}})
    inst = {s: instruments[("linear", s)] for s in symbols}
    inst.update(extra or {})
    return Engine(f"bt-{strategy}", spec, policy(), inst)


def summary(name: str, data: str, eng: Engine, curve: list[float], seconds: float) -> dict:
    eq = np.asarray(curve or [float(eng.equity())])
    peak = np.maximum.accumulate(np.concatenate([[float(eng.ledger.capital)], eq]))[1:]
    mdd = float(((peak - eq) / peak).max() * 100) if len(eq) else 0.0
    cap = float(eng.ledger.capital)
    return {"strategy": name, "data": data, "return_pct": (float(eng.equity()) - cap) / cap * 100,
            "max_dd_pct": mdd, "trades": eng.ledger.closed_trades, "fills": len(eng.ledger.fills),
            "fees": float(eng.ledger.fees), "funding": float(eng.funding), "seconds": seconds,
            "risk": eng.risk_state}


def run_klines(strategy: str, klines, instruments, bars: int | None) -> dict:
    eng = make(strategy, SYMS, instruments)
    rows = sorted(((b.ts_ms, s, b) for s in SYMS for b in klines[s].bars[:bars]), key=lambda t: (t[0], t[1]))
    curve = []
    t0 = time.perf_counter()
    for _, s, b in rows:
        eng.on_bar(s, b)
        curve.append(float(eng.equity()))
    return summary(strategy, "1m klines, 4 symbols, 30 days", eng, curve, time.perf_counter() - t0)


def _replay(eng: Engine, events) -> tuple[list[float], float]:
    curve = []
    t0 = time.perf_counter()
    for ev in events:
        dispatch(eng, ev)
        curve.append(float(eng.equity()))
    return curve, time.perf_counter() - t0


def run_scalping_book(md: Path, instruments) -> dict:
    syms = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    eng = make("scalping", syms, instruments)
    events = feeds.book_events(feeds.default_book_path(md), syms, eng.spec.params.depthLevels)
    curve, secs = _replay(eng, events)
    return summary("scalping", "recorded order book, 3 symbols, ~45 s", eng, curve, secs)


def run_funding(md: Path, instruments, hedged: bool) -> dict:
    spec = StrategySpec.model_validate({"strategy": "funding_harvest", "symbols": ["XRPUSDT"], "capital": 10000,
                                        "maxLeverage": 2, "riskPolicyRef": {"name": "default"},
                                        "params": {"fundingHarvest": {"hedged": hedged}}})
    eng = Engine("bt-funding", spec, policy(), {"XRPUSDT": instruments[("linear", "XRPUSDT")],
                                                "XRPUSDT.SPOT": instruments[("spot", "XRPUSDT")]})
    curve, secs = _replay(eng, feeds.funding_events("XRPUSDT", *feeds.default_funding_paths(md, "XRPUSDT")))
    name = "funding_harvest" + (" (hedged: true)" if hedged else "")
    return summary(name, "XRPUSDT 8h funding + mark, 30 days (Binance, 2021)", eng, curve, secs)


def run_basis(klines, instruments, bars: int | None) -> dict:
    extra = {f"{s}.SPOT": instruments[("spot", s)] for s in SYMS}
    eng = make("basis_arbitrage", SYMS, instruments, extra)
    perp = [[feeds.Event(b.ts_ms, "bar", s, b) for b in klines[s].bars[:bars]] for s in SYMS]
    legs = [feeds.leg_events(s, feeds.constructed_spot(klines[s].bars[:bars], instruments[("spot", s)].tick_size))
            for s in SYMS]
    curve, secs = _replay(eng, feeds.merge_events(*perp, *legs))
    return summary("basis_arbitrage", "CONSTRUCTED spot/perp pairs from the 1m klines, 4 symbols, 30 days", eng,
                   curve, secs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--marketdata", type=Path, default=ROOT.parent / "shared" / "marketdata")
    ap.add_argument("--bars", type=int, default=None, help="first N candles per symbol (default: all)")
    args = ap.parse_args(argv)
    md = args.marketdata
    instruments = load_instruments(md)
    klines = {s: load_klines(md, s, "1") for s in SYMS}
    results = [run_klines(s, klines, instruments, args.bars) for s in ("impulse", "momentum", "grid", "scalping")]
    results[-1]["strategy"] = "scalping (on candles)"
    results.append(run_scalping_book(md, instruments))
    results.append(run_funding(md, instruments, False))
    results.append(run_funding(md, instruments, True))
    results.append(run_basis(klines, instruments, args.bars))
    print("| strategy | data | total return % | max drawdown % | trades (closed) | fills | fees USDT | "
          "funding USDT | final risk state | replay s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        print(f"| {r['strategy']} | {r['data']} | {r['return_pct']:.2f} | {r['max_dd_pct']:.2f} | {r['trades']} | "
              f"{r['fills']} | {r['fees']:.2f} | {r['funding']:.2f} | {r['risk']} | {r['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
