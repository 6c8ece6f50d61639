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
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import yaml

from hean.engine.book import OrderBook, iter_ws_capture, level_decimals
from hean.marketdata import Bar, load_instruments, load_klines
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine
from hean.worker.strategies.scalping import book_top

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


def run_scalping_book(md: Path, instruments) -> dict:
    syms = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    eng = make("scalping", syms, instruments)
    frames = [m for m in iter_ws_capture(md / "bybit" / "ws" / "BYBIT.jsonl.zst", "orderbook.200.")
              if m["topic"].split(".")[-1] in syms]
    books = {}
    for s in syms:
        pd, sd = level_decimals(m for m in frames if m["topic"].endswith(s))
        books[s] = OrderBook(max(pd, 1), max(sd, 1))
    curve = []
    t0 = time.perf_counter()
    for m in frames:
        s = m["topic"].split(".")[-1]
        d = m["data"]
        if books[s].apply(m["type"] == "snapshot", [tuple(x) for x in d["b"]], [tuple(x) for x in d["a"]],
                          int(d["u"]), int(d.get("seq", 0)), int(m["ts"])) != "OK":
            continue
        top = book_top(books[s], int(m["ts"]), eng.spec.params.depthLevels)
        if top is not None:
            eng.on_book(s, top)
            curve.append(float(eng.equity()))
    return summary("scalping", "recorded order book, 3 symbols, ~45 s", eng, curve, time.perf_counter() - t0)


def run_funding(md: Path, instruments, hedged: bool) -> dict:
    import pyarrow.feather as feather
    from datetime import timezone

    base = md / "binance" / "futures"
    fund = feather.read_table(base / "XRP_USDT_USDT-8h-funding_rate.feather").to_pydict()
    mark = feather.read_table(base / "XRP_USDT_USDT-8h-mark.feather").to_pydict()
    ms = lambda d: int(d.astimezone(timezone.utc).timestamp()) * 1000  # noqa: E731
    rates = {ms(d): D(str(r)) for d, r in zip(fund["date"], fund["open"])}
    spec = StrategySpec.model_validate({"strategy": "funding_harvest", "symbols": ["XRPUSDT"], "capital": 10000,
                                        "maxLeverage": 2, "riskPolicyRef": {"name": "default"},
                                        "params": {"fundingHarvest": {"hedged": hedged}}})
    eng = Engine("bt-funding", spec, policy(), {"XRPUSDT": instruments[("linear", "XRPUSDT")],
                                                "XRPUSDT.SPOT": instruments[("spot", "XRPUSDT")]})
    curve = []
    t0 = time.perf_counter()
    for d, o, h, lo, c, v in zip(mark["date"], mark["open"], mark["high"], mark["low"], mark["close"], mark["volume"]):
        b = Bar(ms(d), D(str(o)), D(str(h)), D(str(lo)), D(str(c)), D(str(v)))
        if b.ts_ms in rates:
            eng.on_funding("XRPUSDT", rates[b.ts_ms], b.ts_ms, b.ts_ms + 8 * 3_600_000)
        eng.on_bar("XRPUSDT", b)
        curve.append(float(eng.equity()))
    name = "funding_harvest" + (" (hedged: true)" if hedged else "")
    return summary(name, "XRPUSDT 8h funding + mark, 30 days (Binance, 2021)", eng, curve, time.perf_counter() - t0)


def constructed_spot(bars: list[Bar], tick: D) -> list[Bar]:
    closes = np.array([float(b.close) for b in bars])
    csum = np.concatenate([[0.0], np.cumsum(closes)])
    out = []
    for i, b in enumerate(bars):
        lo = max(0, i - 239)
        mean = (csum[i + 1] - csum[lo]) / (i + 1 - lo)
        f = 1 - D(repr(round(float(0.1 * (closes[i] / mean - 1)), 6)))
        out.append(Bar(b.ts_ms, (b.open * f).quantize(tick), (b.high * f).quantize(tick), (b.low * f).quantize(tick),
                       (b.close * f).quantize(tick), b.volume))
    return out


def run_basis(klines, instruments, bars: int | None) -> dict:
    extra = {f"{s}.SPOT": instruments[("spot", s)] for s in SYMS}
    eng = make("basis_arbitrage", SYMS, instruments, extra)
    spot = {s: {b.ts_ms: b for b in constructed_spot(klines[s].bars[:bars], instruments[("spot", s)].tick_size)}
            for s in SYMS}
    rows = sorted(((b.ts_ms, s, b) for s in SYMS for b in klines[s].bars[:bars]), key=lambda t: (t[0], t[1]))
    curve = []
    t0 = time.perf_counter()
    for ts, s, b in rows:
        eng.on_leg_bar(s, "spot", spot[s][ts])
        eng.on_bar(s, b)
        curve.append(float(eng.equity()))
    return summary("basis_arbitrage", "CONSTRUCTED spot/perp pairs from the 1m klines, 4 symbols, 30 days", eng,
                   curve, time.perf_counter() - t0)


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
