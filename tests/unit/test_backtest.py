"""`hean backtest` on real recorded candles: the report's figures are recomputed here
from the raw fills in ledger.csv and the raw candle files (cash flows, the fee
schedule, round trips, hourly returns), the ledger obeys the truth-layer invariant
with unique trade ids, and the fills are the native replay kernel's (the backtest
runs the live worker's engine, and the kernel is an independent implementation)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from hean.marketdata import load_instruments, load_klines

ROOT = Path(__file__).resolve().parents[2]
STRATEGY = """\
apiVersion: hean.io/v1alpha1
kind: TradingStrategy
metadata: {name: bt-test}
spec:
  strategy: impulse
  symbols: [BTCUSDT, ETHUSDT]
  capital: 10000
  riskPolicyRef: {name: p}
"""
POLICY = """\
apiVersion: hean.io/v1alpha1
kind: RiskPolicy
metadata: {name: p}
spec: {maxDailyLossUsdt: 1000, maxPositionNotionalUsdt: 20000, maxOpenPositions: 4}
"""
END = "2025-06-06T00:00:00Z"
FEE = {"taker": D("0.00055"), "maker": D("0.0002")}


def hean_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("hean")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hean.cli"]


@pytest.fixture(scope="module")
def report(tmp_path_factory, marketdata_dir):
    d = tmp_path_factory.mktemp("bt")
    (d / "s.yaml").write_text(STRATEGY)
    (d / "p.yaml").write_text(POLICY)
    out = d / "report"
    r = subprocess.run(hean_cmd() + ["backtest", str(d / "s.yaml"), "--policy", str(d / "p.yaml"), "--data",
                                     str(marketdata_dir), "--end", END, "--out", str(out), "--progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out, r


def read_ledger(out: Path) -> list[dict]:
    with (out / "ledger.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_report_files_and_progress(report):
    out, r = report
    for name in ("summary.json", "summary.md", "ledger.csv", "equity.csv", "equity.png"):
        assert (out / name).is_file(), name
    png = (out / "equity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert "candle" in r.stderr and "100%" in r.stderr  # the tqdm bar
    assert "return" in r.stdout
    md = (out / "summary.md").read_text()
    assert "sharpe" in md and "equity.png" in md


def test_ledger_truth_layer_and_unique_trade_ids(report):
    out, _ = report
    rows = read_ledger(out)
    s = json.loads((out / "summary.json").read_text())
    assert rows and len({r["trade_id"] for r in rows}) == len(rows)
    for r in rows:
        assert D(r["total"]) == D(r["realized_pnl"]) + D(r["funding"]) + D(r["rewards"]) - D(r["fee"]) \
            - D(r["opportunity_cost"])
    assert sum(D(r["realized_pnl"]) for r in rows) == D(s["realizedPnl"])
    assert sum(D(r["fee"]) for r in rows) == D(s["fees"])
    assert sum(D(r["total"]) for r in rows) == D(s["total"])
    assert D(s["total"]) == D(s["realizedPnl"]) + D(s["funding"]) + D(s["rewards"]) - D(s["fees"]) \
        - D(s["opportunityCost"])


def test_figures_recomputed_from_raw_fills_and_candles(report, marketdata_dir):
    out, _ = report
    rows = read_ledger(out)
    s = json.loads((out / "summary.json").read_text())
    end_ms = int(datetime.fromisoformat(END.replace("Z", "+00:00")).timestamp() * 1000)
    inst = load_instruments(marketdata_dir)
    cash, size, turnover = D(0), {}, D(0)
    for r in rows:
        qty, px, fee = D(r["qty"]), D(r["price"]), D(r["fee"])
        i = inst[("linear", r["symbol"])]
        assert fee == (qty * px * FEE[r["liquidity"]]).quantize(D("0.00000001"))
        assert qty % i.qty_step == 0 and px % i.tick_size == 0
        sign = 1 if r["side"] == "Buy" else -1
        cash += -sign * qty * px - fee
        size[r["symbol"]] = size.get(r["symbol"], D(0)) + sign * qty
        turnover += qty * px
    marks = {sym: [b for b in load_klines(marketdata_dir, sym, "1").bars if b.ts_ms < end_ms][-1].close
             for sym in ("BTCUSDT", "ETHUSDT")}
    final = D(10000) + cash + sum(q * marks[sym] for sym, q in size.items())
    assert D(s["finalEquity"]) == final.quantize(D("0.01"))
    assert math.isclose(s["totalReturnPercent"], float((final / 10000 - 1) * 100), rel_tol=1e-9)
    assert D(s["turnoverUsdt"]) == turnover.quantize(D("0.01"))
    # round trips from the raw fills: flat -> flat; PnL before fees = sum of cash flows
    trips, wins, pos, flow = 0, 0, {}, {}
    for r in rows:
        sym, sign = r["symbol"], (1 if r["side"] == "Buy" else -1)
        q = D(r["qty"])
        flow[sym] = flow.get(sym, D(0)) - sign * q * D(r["price"])
        pos[sym] = pos.get(sym, D(0)) + sign * q
        if pos[sym] == 0:
            trips += 1
            wins += flow[sym] > 0
            flow[sym] = D(0)
    assert s["trades"] == trips and s["winningTrades"] == wins
    assert s["winRate"] == pytest.approx(wins / trips)


def test_drawdown_sharpe_sortino_from_the_equity_curve(report):
    out, _ = report
    s = json.loads((out / "summary.json").read_text())
    with (out / "equity.csv").open() as fh:
        eq = [(int(r["ts_ms"]), float(r["equity_usdt"])) for r in csv.DictReader(fh)]
    t = np.array([x for x, _ in eq], dtype=np.int64)
    v = np.array([y for _, y in eq])
    peak = np.maximum.accumulate(v)
    assert s["maxDrawdownPercent"] == pytest.approx(float(np.max((peak - v) / peak) * 100), rel=1e-6)
    # hourly: the last equity at or before each hour boundary
    hours = np.arange(t[0] // 3_600_000 + 1, t[-1] // 3_600_000 + 1) * 3_600_000
    idx = np.searchsorted(t, hours, side="left") - 1
    samples = np.concatenate([[v[0]], v[idx], [v[-1]]])
    r = samples[1:] / samples[:-1] - 1
    sharpe = r.mean() / r.std(ddof=1) * math.sqrt(8760)
    sortino = r.mean() / math.sqrt(np.mean(np.minimum(r, 0) ** 2)) * math.sqrt(8760)
    assert s["sharpe"] == pytest.approx(sharpe, rel=1e-6)
    assert s["sortino"] == pytest.approx(sortino, rel=1e-6)
    assert 0 < s["exposure"] < 1


def test_backtest_fills_are_the_native_kernels(report, marketdata_dir):
    """Same candles through hean.engine.replay (C++): identical fills, so the backtest
    and the live paper worker (both hean.worker.engine.Engine) cannot drift."""
    import yaml

    from hean.engine import NativeEngine, merge_klines, replay
    from hean.worker.config import RiskPolicySpec, StrategySpec

    out, _ = report
    rows = read_ledger(out)
    spec = StrategySpec.model_validate(yaml.safe_load(STRATEGY)["spec"])
    pol = RiskPolicySpec.model_validate(yaml.safe_load(POLICY)["spec"])
    inst = load_instruments(marketdata_dir)
    end_ms = int(datetime.fromisoformat(END.replace("Z", "+00:00")).timestamp() * 1000)
    series = {}
    for sym in spec.symbols:
        ks = load_klines(marketdata_dir, sym, "1")
        ks.bars = [b for b in ks.bars if b.ts_ms < end_ms]
        series[sym] = ks
    instruments = {sym: inst[("linear", sym)] for sym in spec.symbols}
    probe = NativeEngine("bt-test", spec, pol, instruments)
    res = replay("bt-test", spec, pol, instruments, merge_klines(series, spec.symbols, probe.price_decimals))
    native = [(f.exec_id, f.ts_ms, f.symbol, f.side, f.qty, f.price, f.fee, f.reason) for f in res.fill_objects()]
    ours = [(r["trade_id"], int(r["ts_ms"]), r["symbol"], r["side"], D(r["qty"]), D(r["price"]), D(r["fee"]),
             r["reason"]) for r in rows]
    assert ours == native


def test_python_m_entry_point_and_clear_errors(tmp_path, marketdata_dir):
    (tmp_path / "s.yaml").write_text(STRATEGY)
    env = {**os.environ, "HEAN_MARKETDATA_DIR": str(marketdata_dir)}
    r = subprocess.run([sys.executable, "-m", "hean.backtest", str(tmp_path / "s.yaml")], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 2 and "--policy" in r.stderr and "'p'" in r.stderr
    (tmp_path / "p.yaml").write_text(POLICY)
    (tmp_path / "bad.yaml").write_text(STRATEGY.replace("capital: 10000", "capital: -1"))
    r = subprocess.run([sys.executable, "-m", "hean.backtest", str(tmp_path / "bad.yaml"), "--policy",
                        str(tmp_path / "p.yaml")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "spec.capital" in r.stderr
    r = subprocess.run([sys.executable, "-m", "hean.backtest", str(tmp_path / "s.yaml"), "--policy",
                        str(tmp_path / "p.yaml"), "--start", "2025-06-01", "--end", "2025-06-01T06:00:00",
                        "--no-plot", "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["from"] == "2025-06-01T00:00:00Z" and s["to"] == "2025-06-01T05:59:00Z"
    assert s["candles"] == 2 * 360 and not (tmp_path / "o" / "equity.png").exists()


def test_backtest_examples_are_valid_manifests():
    """examples/backtest/ (not applied by the demo) validates against the CRDs."""
    import yaml
    from test_crds_static import check_object

    for path in sorted((ROOT / "examples" / "backtest").glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            assert check_object(obj) == [], path.name


def test_safety_policy_backtest_keeps_the_ledger_consistent(tmp_path, marketdata_dir):
    """Every safety feature on (maker fills of the limit-first router, profit-capture
    and flash-crash exits): the same recomputation from raw fills holds."""
    from hean.backtest import load_manifests, parse_specs, run_backtest, write_report

    sobj, pobj = load_manifests([ROOT / "examples/backtest/impulse-majors.yaml",
                                 ROOT / "examples/backtest/riskpolicy-safety.yaml"])
    name, spec, pol = parse_specs(sobj, pobj)
    end_ms = int(datetime(2025, 6, 4, tzinfo=timezone.utc).timestamp() * 1000)
    res = run_backtest(name, spec, pol, marketdata_dir, end_ms=end_ms, progress=False)
    s = write_report(res, tmp_path, plot=False)
    rows = read_ledger(tmp_path)
    assert {r["liquidity"] for r in rows} == {"maker", "taker"}
    assert len({r["trade_id"] for r in rows}) == len(rows)
    cash, size = D(0), {}
    for r in rows:
        qty, px, fee = D(r["qty"]), D(r["price"]), D(r["fee"])
        assert fee == (qty * px * FEE[r["liquidity"]]).quantize(D("0.00000001"))
        sign = 1 if r["side"] == "Buy" else -1
        cash += -sign * qty * px - fee
        size[r["symbol"]] = size.get(r["symbol"], D(0)) + sign * qty
    marks = {sym: [b for b in load_klines(marketdata_dir, sym, "1").bars if b.ts_ms < end_ms][-1].close
             for sym in spec.symbols}
    final = D(10000) + cash + sum(q * marks[sym] for sym, q in size.items())
    assert D(s["finalEquity"]) == final.quantize(D("0.01"))
    assert sum(D(r["total"]) for r in rows) == D(s["total"])


# ---- the other feeds: order book, funding history, spot/perp pair (CLI path) -------------
def run_cli(args: list[str], tmp_path: Path, marketdata_dir: Path, name: str = "out") -> tuple[dict, list[dict]]:
    out = tmp_path / name
    r = subprocess.run(hean_cmd() + ["backtest", *args, "--policy", str(ROOT / "examples/riskpolicy.yaml"),
                                     "--data", str(marketdata_dir), "--no-plot", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "summary.json").read_text()), read_ledger(out)


def strategy_yaml(tmp_path: Path, strategy: str, symbols: list[str]) -> str:
    p = tmp_path / f"{strategy}.yaml"
    p.write_text(STRATEGY.replace("strategy: impulse", f"strategy: {strategy}")
                 .replace("[BTCUSDT, ETHUSDT]", "[" + ", ".join(symbols) + "]")
                 .replace("{name: p}", "{name: default}"))
    return str(p)


def cash_and_sizes(rows: list[dict]) -> tuple[D, dict[str, D]]:
    cash, size = D(0), {}
    for r in rows:
        if r["reason"] == "FUNDING":
            continue
        qty, px, fee = D(r["qty"]), D(r["price"]), D(r["fee"])
        sign = 1 if r["side"] == "Buy" else -1
        cash += -sign * qty * px - fee
        size[r["symbol"]] = size.get(r["symbol"], D(0)) + sign * qty
    return cash, size


def test_scalping_replays_the_recorded_order_book(tmp_path, marketdata_dir):
    """scalping defaults to the book feed; final equity is recomputed from the raw
    fills and the last mid of a pure-Python reference book built from the raw frames."""
    from hean.engine.book import ReferenceBook, iter_ws_capture, level_decimals

    s, rows = run_cli([strategy_yaml(tmp_path, "scalping", ["ETHUSDT"])], tmp_path, marketdata_dir)
    assert s["feed"] == "book" and s["candles"] == 0 and s["events"] > 100
    assert s["fills"] == len(rows) > 0
    frames = [m for m in iter_ws_capture(marketdata_dir / "bybit/ws/BYBIT.jsonl.zst", "orderbook.200.ETHUSDT")]
    pd, sd = level_decimals(frames)
    book, mid, times = ReferenceBook(max(pd, 1), max(sd, 1)), None, set()
    for m in frames:
        d = m["data"]
        if book.apply(m["type"] == "snapshot", [tuple(x) for x in d["b"]], [tuple(x) for x in d["a"]],
                      int(d["u"]), int(d.get("seq", 0)), int(m["ts"])) == "OK" and book.bids and book.asks:
            mid = (D(max(book.bids)) + D(min(book.asks))).scaleb(-book.pd) / 2
            times.add(int(m["ts"]))
    assert all(int(r["ts_ms"]) in times for r in rows)  # every fill at a book frame's time
    cash, size = cash_and_sizes(rows)
    final = D(10000) + cash + sum(q * mid for q in size.values())
    assert D(s["finalEquity"]) == final.quantize(D("0.01"))
    assert sum(D(r["total"]) for r in rows) == D(s["total"])


def test_funding_harvest_books_the_recorded_funding(tmp_path, marketdata_dir):
    """funding_harvest defaults to the Binance XRPUSDT funding feed; the funding figure
    is recomputed from the raw feather files: -sum(rate x position x mark) over the
    settlements, position from the raw fills before each settlement, mark = close of
    the 8-h mark candle ending at it. ledger.csv has one FUNDING row per settlement."""
    import pyarrow.feather as feather

    s, rows = run_cli([str(ROOT / "examples/backtest/funding-harvest-xrp.yaml")], tmp_path, marketdata_dir)
    assert s["feed"] == "funding" and s["interval"] == "480"
    base = marketdata_dir / "binance/futures"
    fund = feather.read_table(base / "XRP_USDT_USDT-8h-funding_rate.feather").to_pydict()
    mark = feather.read_table(base / "XRP_USDT_USDT-8h-mark.feather").to_pydict()
    ms = [int(d.timestamp() * 1000) for d in mark["date"]]
    close_at = {t + 8 * 3_600_000: D(str(c)) for t, c in zip(ms, mark["close"])}
    fills = [r for r in rows if r["reason"] != "FUNDING" and r["symbol"] == "XRPUSDT"]
    expected = {}
    for d, rate in zip(fund["date"], fund["open"]):
        t = int(d.timestamp()) * 1000  # settlement at the 8-h boundary (the files add a few ms)
        pos = sum((D(r["qty"]) * (1 if r["side"] == "Buy" else -1) for r in fills if int(r["ts_ms"]) < t), D(0))
        if pos != 0 and t in close_at:
            expected[t] = -(pos * close_at[t] * D(str(rate)))
    booked = {int(r["ts_ms"]): D(r["funding"]) for r in rows if r["reason"] == "FUNDING"}
    assert len(expected) > 10 and booked.keys() == expected.keys()
    for t, amount in expected.items():
        assert abs(booked[t] - amount) < D("1e-9"), t
    total_funding = sum(expected.values(), D(0))
    assert total_funding != 0 and abs(D(s["funding"]) - total_funding) < D("1e-8")
    assert sum(D(r["funding"]) for r in rows) == D(s["funding"])
    assert sum(D(r["total"]) for r in rows) == D(s["total"])
    assert D(s["total"]) == D(s["realizedPnl"]) + D(s["funding"]) + D(s["rewards"]) - D(s["fees"]) - D(
        s["opportunityCost"])
    # the same files given explicitly with --funding/--mark
    s2, rows2 = run_cli([str(ROOT / "examples/backtest/funding-harvest-xrp.yaml"),
                         "--funding", str(base / "XRP_USDT_USDT-8h-funding_rate.feather"),
                         "--mark", str(base / "XRP_USDT_USDT-8h-mark.feather")], tmp_path, marketdata_dir, "explicit")
    assert s2["feed"] == "funding" and s2["funding"] == s["funding"] and len(rows2) == len(rows)


def test_basis_arbitrage_with_the_constructed_spot_leg(tmp_path, marketdata_dir):
    """basis_arbitrage defaults to perpetual candles plus the CONSTRUCTED spot leg; the
    spot marks are recomputed here from the raw candles (numpy rolling mean), and the
    final equity from the raw fills of both legs."""
    s, rows = run_cli([strategy_yaml(tmp_path, "basis_arbitrage", ["SOLUSDT"]), "--end", "2025-06-02T00:00:00Z"],
                      tmp_path, marketdata_dir)
    assert s["feed"] == "basis"
    syms = {r["symbol"] for r in rows}
    assert syms == {"SOLUSDT", "SOLUSDT.SPOT"}, syms
    end_ms = int(datetime(2025, 6, 2, tzinfo=timezone.utc).timestamp() * 1000)
    bars = [b for b in load_klines(marketdata_dir, "SOLUSDT", "1").bars if b.ts_ms < end_ms]
    closes = np.array([float(b.close) for b in bars])
    i = len(closes) - 1
    mean = closes[max(0, i - 239): i + 1].mean()
    tick = load_instruments(marketdata_dir)[("spot", "SOLUSDT")].tick_size
    spot_mark = (bars[-1].close * (1 - D(repr(round(float(0.1 * (closes[i] / mean - 1)), 6))))).quantize(tick)
    cash, size = cash_and_sizes(rows)
    marks = {"SOLUSDT": bars[-1].close, "SOLUSDT.SPOT": spot_mark}
    final = D(10000) + cash + sum(q * marks[sym] for sym, q in size.items())
    assert D(s["finalEquity"]) == final.quantize(D("0.01"))
    assert sum(D(r["total"]) for r in rows) == D(s["total"])


def test_feed_options_give_clear_errors(tmp_path, marketdata_dir):
    """Bad feed options exit 2 with a message naming the option, before any replay."""
    base = hean_cmd() + ["backtest", "--policy", str(ROOT / "examples/riskpolicy.yaml"), "--data",
                         str(marketdata_dir), "--no-plot", "--out", str(tmp_path / "o")]
    cases = [
        ([str(ROOT / "examples/backtest/funding-harvest-xrp.yaml"), "--funding", str(tmp_path / "f.feather")],
         "--funding and --mark go together"),
        ([str(ROOT / "examples/backtest/scalping-book.yaml"), "--book", str(tmp_path / "none.jsonl.zst")],
         "--book: order-book capture"),
        ([strategy_yaml(tmp_path, "basis_arbitrage", ["SOLUSDT"]), "--spot-leg", f"BTCUSDT={tmp_path / 'x.csv'}"],
         "--spot-leg: BTCUSDT is not in spec.symbols"),
        ([strategy_yaml(tmp_path, "basis_arbitrage", ["SOLUSDT"]), "--spot-leg", str(tmp_path / "x.csv")],
         "--spot-leg: "),
        ([str(ROOT / "examples/backtest/funding-harvest-xrp.yaml"), "--feed", "candles", "--funding", "f", "--mark",
          "m"], "--funding needs --feed funding"),
    ]
    for args, message in cases:
        r = subprocess.run(base + args, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
    assert not (tmp_path / "o").exists()
