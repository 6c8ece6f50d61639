"""Backtests as a product feature: replay a TradingStrategy manifest on recorded data.

``hean backtest strategy.yaml [--policy policy.yaml] --out report/`` (or
``python -m hean.backtest ...``) builds the **same** engine object the live paper
worker runs (:class:`hean.worker.engine.Engine`, whatever ``spec.strategy`` names),
feeds it the recorded data of ``spec.symbols`` that the strategy needs
(:mod:`hean.backtest.feeds`; ``--feed`` overrides):

* impulse, momentum, grid: Bybit candles (in the order of :func:`merge_bars`, also
  used by the worker's replay loop);
* scalping: recorded Bybit order-book frames (``--book FILE``);
* funding_harvest: funding-rate history + mark-price candles (``--funding FILE --mark FILE``);
* basis_arbitrage: the perpetual candles plus a spot leg (``--spot-leg constructed|FILE``);

and writes a report directory:

* ``summary.json`` / ``summary.md``: total return, max drawdown, Sharpe and Sortino,
  win rate, trade count, fees, funding, turnover, exposure, the truth-layer totals.
* ``ledger.csv``: one row per fill (trade id = execution id, unique) and one per
  funding settlement, with realized PnL, fee, funding, rewards, opportunity cost and
  truth-layer ``total`` (column sums = the report's figures).
* ``equity.csv``: equity (USDT) and drawdown (percent) after each event time.
* ``equity.png``: equity curve and drawdown (matplotlib).

Metric definitions (documented in docs/backtests.md):

* total return = final equity / capital - 1 (final equity marks open positions at
  the last close).
* max drawdown = max over candle times of (running peak - equity) / running peak.
* Sharpe, Sortino: from **hourly** equity returns (the last equity at or before each
  UTC hour boundary), risk-free rate 0, annualised by sqrt(24 * 365) because crypto
  trades around the clock. Sortino's denominator is the downside deviation
  sqrt(mean(min(r, 0)^2)) over all hours. None when undefined (< 2 returns or zero
  deviation).
* win rate = round trips with PnL > 0 before fees / round trips (the ledger's
  count, Bybit's average-entry accounting).
* turnover = sum of |qty| * price over fills (USDT); ``turnoverRatio`` = turnover /
  capital.
* exposure = share of candle times with an open position; ``averageLeverage`` =
  mean of gross notional / equity over candle times.
"""

from __future__ import annotations

import csv
import heapq
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from hean import api
from hean.marketdata import Bar, load_instruments, load_klines

HOURS_PER_YEAR = 24 * 365
ZERO = Decimal(0)


class BacktestError(ValueError):
    """A bad manifest, missing data or a bad option; the message names the field/file."""


def merge_bars(series: dict[str, Any], start_ms: int | None = None, end_ms: int | None = None) -> list[tuple[int, str, Bar]]:
    """Merge candle series (symbol -> :class:`hean.marketdata.KlineSeries`) into one
    time-ordered list of ``(ts_ms, symbol, bar)``, ties broken by symbol name, keeping
    ``start_ms <= ts_ms < end_ms`` (either bound optional). The worker's replay loop
    and the backtest both use it, so they feed the engine identically."""
    streams = [[(b.ts_ms, sym, b) for b in s.bars
                if (start_ms is None or b.ts_ms >= start_ms) and (end_ms is None or b.ts_ms < end_ms)]
               for sym, s in series.items()]
    return list(heapq.merge(*streams, key=lambda t: (t[0], t[1])))


def load_manifests(paths: Iterable[Path]) -> tuple[dict, dict | None]:
    """Read YAML files (multi-document allowed) and return the TradingStrategy and
    the RiskPolicy objects found (the policy may be None). Raises BacktestError if
    there is not exactly one TradingStrategy or more than one RiskPolicy."""
    strategies, policies = [], []
    for p in paths:
        try:
            docs = list(yaml.safe_load_all(Path(p).read_text()))
        except (OSError, yaml.YAMLError) as e:
            raise BacktestError(f"{p}: cannot read manifest: {e}") from e
        for d in docs:
            if not isinstance(d, dict):
                continue
            if d.get("kind") == api.STRATEGY_KIND:
                strategies.append(d)
            elif d.get("kind") == api.POLICY_KIND:
                policies.append(d)
    if len(strategies) != 1:
        raise BacktestError(f"expected exactly one kind: {api.STRATEGY_KIND} in the manifests, found {len(strategies)}")
    if len(policies) > 1:
        raise BacktestError(f"expected at most one kind: {api.POLICY_KIND}, found {len(policies)}")
    return strategies[0], (policies[0] if policies else None)


def parse_specs(strategy_obj: dict, policy_obj: dict | None):
    """Validate the manifests' specs (the worker's models). Returns ``(name, spec,
    policy)``; raises BacktestError naming the field of a bad value."""
    from hean.worker.config import RiskPolicySpec, StrategySpec, describe_validation_error

    name = (strategy_obj.get("metadata") or {}).get("name") or "backtest"
    try:
        spec = StrategySpec.model_validate(strategy_obj.get("spec") or {})
    except ValidationError as e:
        raise BacktestError(f"TradingStrategy {name}: {describe_validation_error('spec', e)}") from e
    if policy_obj is None:
        raise BacktestError(f"TradingStrategy {name} references RiskPolicy {spec.riskPolicyRef.name!r}: "
                            "pass its manifest with --policy (or in the same file)")
    pname = (policy_obj.get("metadata") or {}).get("name")
    if pname and pname != spec.riskPolicyRef.name:
        print(f"note: using RiskPolicy {pname!r} although spec.riskPolicyRef.name is "
              f"{spec.riskPolicyRef.name!r}", file=sys.stderr)
    try:
        policy = RiskPolicySpec.model_validate(policy_obj.get("spec") or {})
    except ValidationError as e:
        raise BacktestError(f"RiskPolicy {pname}: {describe_validation_error('spec', e)}") from e
    return name, spec, policy


def make_engine(name: str, spec, policy, instruments: dict, labels: dict | None = None):
    """The engine the live paper worker builds for ``spec`` (one place to change when
    strategies get their own engines)."""
    from hean.worker.engine import Engine

    return Engine(name, spec, policy, instruments, labels)


@dataclass
class BacktestResult:
    """What :func:`run_backtest` returns: the engine after the run, the equity curve
    (``times`` epoch ms, ``equity`` float USDT, ``gross`` float USDT gross notional,
    one entry per candle time), and the per-fill realized PnL (exec id -> USDT)."""

    name: str
    spec: Any
    policy: Any
    engine: Any
    times: list[int] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    gross: list[float] = field(default_factory=list)
    open_flags: list[bool] = field(default_factory=list)
    realized_by_fill: dict[str, Decimal] = field(default_factory=dict)
    bars: int = 0
    events: int = 0
    feed: str = "candles"


@dataclass
class FeedOptions:
    """Which recorded data feeds the engine (``hean backtest`` options).

    ``feed``: ``auto`` (from ``spec.strategy``, :data:`hean.backtest.feeds.DEFAULT_FEED`)
    or one of ``candles``, ``book``, ``funding``, ``basis``. ``book``: order-book capture
    (default ``<data>/bybit/ws/BYBIT.jsonl.zst``). ``funding``/``mark``: funding-rate and
    mark-price feather files (default: the shared Binance history of the symbol).
    ``spot_leg``: ``["constructed"]`` (default) or ``FILE`` (one symbol) / ``SYMBOL=FILE``
    entries, spot candles in the klines CSV layout."""

    feed: str = "auto"
    book: Path | None = None
    funding: Path | None = None
    mark: Path | None = None
    spot_leg: list[str] = field(default_factory=lambda: ["constructed"])


def resolve_feed(spec, opts: FeedOptions) -> str:
    """The feed name for ``spec`` under ``opts`` (raises BacktestError for a bad one)."""
    from hean.backtest.feeds import DEFAULT_FEED, FEEDS

    feed = DEFAULT_FEED.get(spec.strategy, "candles") if opts.feed == "auto" else opts.feed
    if feed not in FEEDS:
        raise BacktestError(f"--feed: {feed!r} is not one of auto, {', '.join(FEEDS)}")
    if feed == "funding" and (opts.funding is None) != (opts.mark is None):
        raise BacktestError("--funding and --mark go together (funding-rate file and mark-price file)")
    if feed == "funding" and opts.funding is not None and len(spec.symbols) != 1:
        raise BacktestError(f"--funding FILE: spec.symbols must name one symbol, got {list(spec.symbols)}")
    return feed


def build_events(spec, marketdata_dir: Path, feed: str, opts: FeedOptions, instruments: dict,
                 dropped: Counter, start_ms: int | None, end_ms: int | None) -> list:
    """The time-ordered :class:`hean.backtest.feeds.Event` list of ``feed`` for
    ``spec.symbols`` clipped to ``[start_ms, end_ms)``. Adds the spot instruments
    (``<SYMBOL>.SPOT``) a two-leg strategy needs to ``instruments``. Raises BacktestError."""
    from hean.backtest import feeds as F

    interval = spec.marketData.replay.interval
    try:
        if feed == "book":
            ev = F.book_events(opts.book or F.default_book_path(marketdata_dir), spec.symbols,
                               getattr(spec.params, "depthLevels", 5), dropped)
            return F.clip(ev, start_ms, end_ms)
        if feed == "funding":
            streams = []
            for s in spec.symbols:
                fpath, mpath = (opts.funding, opts.mark) if opts.funding else F.default_funding_paths(marketdata_dir, s)
                streams.append(F.funding_events(s, fpath, mpath, dropped))
            return F.clip(F.merge_events(*streams), start_ms, end_ms)
        series = {s: load_klines(marketdata_dir, s, interval) for s in spec.symbols}
        for s in series.values():
            dropped.update(s.dropped)
        bars = {s: [b for b in ks.bars if (start_ms is None or b.ts_ms >= start_ms)
                    and (end_ms is None or b.ts_ms < end_ms)] for s, ks in series.items()}
        perp = [[F.Event(b.ts_ms, "bar", s, b) for b in bs] for s, bs in bars.items()]
        if feed == "candles":
            return F.merge_events(*perp)
        # basis: a spot leg per symbol
        files = {}
        for item in opts.spot_leg or ["constructed"]:
            if item == "constructed":
                continue
            sym, _, path = item.rpartition("=")
            if not sym:
                if len(spec.symbols) != 1:
                    raise BacktestError("--spot-leg FILE needs one symbol in spec.symbols; use SYMBOL=FILE")
                sym = spec.symbols[0]
            if sym not in spec.symbols:
                raise BacktestError(f"--spot-leg: {sym} is not in spec.symbols {list(spec.symbols)}")
            files[sym] = Path(path)
        legs = []
        for s, bs in bars.items():
            spot = F.load_spot_csv(files[s], s, interval) if s in files else \
                F.constructed_spot(bs, instruments[f"{s}.SPOT"].tick_size)
            legs.append(F.leg_events(s, spot, {b.ts_ms for b in bs}))
        return F.merge_events(*perp, *legs)
    except F.FeedError as e:
        raise BacktestError(str(e)) from e
    except (FileNotFoundError, ValueError) as e:
        raise BacktestError(str(e)) from e


def run_backtest(name: str, spec, policy, marketdata_dir: Path, start_ms: int | None = None,
                 end_ms: int | None = None, progress: bool | None = None,
                 feed_options: FeedOptions | None = None) -> BacktestResult:
    """Replay ``spec`` (StrategySpec) under ``policy`` (RiskPolicySpec) on the recorded
    data under ``marketdata_dir``: candles, order-book frames, funding history or a
    spot/perp pair, as :func:`resolve_feed` picks from ``spec.strategy`` and
    ``feed_options``. ``progress``: a tqdm bar on stderr (None: only when stderr is a
    terminal). Raises BacktestError for missing data or bad options."""
    from hean.backtest.feeds import dispatch
    from hean.worker.ledger import Ledger

    opts = feed_options or FeedOptions()
    feed = resolve_feed(spec, opts)
    inst_all = load_instruments(marketdata_dir)
    try:
        instruments = {s: inst_all[(spec.category, s)] for s in spec.symbols}
    except KeyError as e:
        raise BacktestError(f"no instrument info for {spec.category} symbol {e.args[0]} in {marketdata_dir}") from e
    if feed in ("basis", "funding") or spec.strategy in ("basis_arbitrage", "funding_harvest"):
        for s in spec.symbols:
            if ("spot", s) in inst_all:
                instruments[f"{s}.SPOT"] = inst_all[("spot", s)]
            elif feed == "basis":
                raise BacktestError(f"no spot instrument info for {s} in {marketdata_dir} (basis feed)")
    if start_ms is None and spec.marketData.replay.start is not None:
        start_ms = int(spec.marketData.replay.start.timestamp() * 1000)
    dropped: Counter = Counter()
    events = build_events(spec, marketdata_dir, feed, opts, instruments, dropped, start_ms, end_ms)
    if not events:
        raise BacktestError(f"no {feed} data in the selected time range")
    engine = make_engine(name, spec, policy, instruments)
    for reason, n in dropped.items():
        engine.dropped[reason] += n
    res = BacktestResult(name, spec, policy, engine)
    res.feed = feed
    # Realized PnL per fill: replay each new fill into a shadow ledger (the engine's
    # own ledger only keeps totals).
    shadow = Ledger(capital=spec.capital)
    if progress is None:
        progress = sys.stderr.isatty()
    pbar = None
    if progress:
        from tqdm import tqdm

        pbar = tqdm(total=len(events), unit="candle" if feed == "candles" else "event", desc=f"backtest {name}",
                    file=sys.stderr, mininterval=0.5)
    ledger = engine.ledger
    seen = 0
    last_ts = None
    for i, ev in enumerate(events):
        if last_ts is not None and ev.ts_ms != last_ts:
            _sample(res, engine, last_ts)
        dispatch(engine, ev)
        last_ts = ev.ts_ms
        if len(ledger.fills) != seen:
            for f in ledger.fills[seen:]:
                res.realized_by_fill[f.exec_id] = shadow.apply(f)
            seen = len(ledger.fills)
        if pbar is not None and i % 4096 == 4095:
            pbar.update(4096)
    _sample(res, engine, last_ts)
    if pbar is not None:
        pbar.update(len(events) - pbar.n)
        pbar.close()
    engine.finish()
    res.bars = sum(1 for ev in events if ev.kind == "bar")
    res.events = len(events)
    ledger.check()
    return res


def _sample(res: BacktestResult, engine, ts: int) -> None:
    marks = engine.marks()
    res.times.append(ts)
    res.equity.append(float(engine.ledger.equity(marks)))
    res.gross.append(float(engine.ledger.gross_notional(marks)))
    res.open_flags.append(bool(engine.ledger.open_positions()))


def _hourly_returns(times: list[int], equity: list[float]) -> list[float]:
    """Returns between the last equity at or before consecutive UTC hour boundaries."""
    if not times:
        return []
    samples = []
    hour = times[0] // 3_600_000
    last = equity[0]
    samples.append(equity[0])
    for t, e in zip(times, equity):
        h = t // 3_600_000
        while h > hour:
            samples.append(last)
            hour += 1
        last = e
    samples.append(last)
    return [b / a - 1 for a, b in zip(samples, samples[1:]) if a > 0]


def sharpe_sortino(returns: list[float]) -> tuple[float | None, float | None]:
    """Annualised Sharpe and Sortino of hourly ``returns`` (risk-free 0; see module)."""
    n = len(returns)
    if n < 2:
        return None, None
    mean = sum(returns) / n
    sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / (n - 1))
    dd = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / n)
    k = math.sqrt(HOURS_PER_YEAR)
    return (mean / sd * k if sd > 0 else None), (mean / dd * k if dd > 0 else None)


def summarize(res: BacktestResult) -> dict:
    """The report's figures (JSON-ready: money as decimal strings, ratios as floats)."""
    e = res.engine
    led = e.ledger
    q = Decimal("0.01")
    marks = e.marks()
    final = led.equity(marks)
    unreal = led.unrealized_pnl(marks)
    peak, mdd = -math.inf, 0.0
    for v in res.equity:
        peak = max(peak, v)
        if peak > 0:
            mdd = max(mdd, (peak - v) / peak)
    sharpe, sortino = sharpe_sortino(_hourly_returns(res.times, res.equity))
    turnover = sum((f.qty * f.price for f in led.fills), ZERO)
    lev = [g / v for g, v in zip(res.gross, res.equity) if v > 0]
    spec = res.spec
    first = datetime.fromtimestamp(res.times[0] / 1000, timezone.utc) if res.times else None
    last = datetime.fromtimestamp(res.times[-1] / 1000, timezone.utc) if res.times else None
    return {
        "strategy": res.name,
        "strategyType": spec.strategy,
        "symbols": list(spec.symbols),
        "category": spec.category,
        "feed": res.feed,
        "interval": {"candles": spec.marketData.replay.interval, "basis": spec.marketData.replay.interval,
                     "funding": "480", "book": None}[res.feed],
        "from": first.strftime("%Y-%m-%dT%H:%M:%SZ") if first else None,
        "to": last.strftime("%Y-%m-%dT%H:%M:%SZ") if last else None,
        "candles": res.bars,
        "events": res.events,
        "capital": str(led.capital),
        "finalEquity": str(final.quantize(q)),
        "totalReturnPercent": float((final / led.capital - 1) * 100),
        "maxDrawdownPercent": mdd * 100,
        "sharpe": sharpe,
        "sortino": sortino,
        "annualisation": "hourly equity returns x sqrt(8760), risk-free 0",
        "trades": led.closed_trades,
        "winningTrades": led.winning_trades,
        "winRate": (led.winning_trades / led.closed_trades) if led.closed_trades else None,
        "fills": len(led.fills),
        "orders": e.orders_sent,
        "realizedPnl": str(led.realized_pnl),
        "funding": str(led.funding),
        "rewards": str(led.rewards),
        "fees": str(led.fees),
        "opportunityCost": str(led.opportunity_cost),
        "total": str(led.total()),
        "unrealizedPnl": str(unreal),
        "turnoverUsdt": str(turnover.quantize(q)),
        "turnoverRatio": float(turnover / led.capital),
        "exposure": (sum(res.open_flags) / len(res.open_flags)) if res.open_flags else 0.0,
        "averageLeverage": (sum(lev) / len(lev)) if lev else 0.0,
        "openPositionsAtEnd": len(led.open_positions()),
        "riskState": e.risk_state,
        "riskReasons": list(e.risk_reasons),
        "riskTransitions": len(e.risk_events),
        "topNotTradingReasons": e.top_reasons(10),
        "rejects": dict(e.rejects),
        "droppedCandles": dict(e.dropped),
    }


LEDGER_COLUMNS = ["trade_id", "order_link_id", "time", "ts_ms", "symbol", "side", "qty", "price", "notional",
                  "liquidity", "reason", "realized_pnl", "funding", "rewards", "fee", "opportunity_cost", "total"]


def write_ledger(res: BacktestResult, path: Path) -> None:
    """``ledger.csv``: one row per fill and one row per funding settlement (trade id
    ``funding-<SYMBOL>-<ts_ms>``, reason ``FUNDING``, ``funding`` = the amount received
    (> 0) or paid (< 0) USDT); ``total = realized_pnl + funding + rewards - fee -
    opportunity_cost`` on every row, so the column sums equal the report's figures.
    Rewards and opportunity cost (none in the paper engine) would get one adjustment row."""
    led = res.engine.ledger
    rows = []
    for f in led.fills:
        realized = res.realized_by_fill[f.exec_id]
        rows.append((f.ts_ms, 1, [f.exec_id, f.order_link_id, _iso(f.ts_ms), f.ts_ms, f.symbol, f.side, f.qty,
                                  f.price, f.qty * f.price, f.liquidity, f.reason, realized, ZERO, ZERO, f.fee, ZERO,
                                  realized - f.fee]))
    booked = ZERO
    for ts, sym, rate, amount in getattr(res.engine, "funding_events", []):
        booked += amount
        rows.append((ts, 0, [f"funding-{sym}-{ts}", "", _iso(ts), ts, sym, "", "", "", "", "", "FUNDING",
                             ZERO, amount, ZERO, ZERO, ZERO, amount]))
    rows.sort(key=lambda r: (r[0], r[1]))
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LEDGER_COLUMNS)
        for _, _, row in rows:
            w.writerow(row)
        rest = led.funding - booked
        if rest or led.rewards or led.opportunity_cost:
            w.writerow(["account-adjustments", "", "", "", "", "", "", "", "", "", "FUNDING_REWARDS_OPPORTUNITY",
                        ZERO, rest, led.rewards, ZERO, led.opportunity_cost,
                        rest + led.rewards - led.opportunity_cost])


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_equity(res: BacktestResult, path: Path) -> None:
    """``equity.csv``: ``time, ts_ms, equity_usdt, drawdown_percent`` per candle time."""
    peak = -math.inf
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "ts_ms", "equity_usdt", "drawdown_percent"])
        for t, v in zip(res.times, res.equity):
            peak = max(peak, v)
            dd = (peak - v) / peak * 100 if peak > 0 else 0.0
            w.writerow([datetime.fromtimestamp(t / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), t,
                        f"{v:.8f}", f"{dd:.6f}"])


def plot_equity(res: BacktestResult, summary: dict, path: Path) -> None:
    """``equity.png``: equity (USDT) above, drawdown (percent, filled) below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = [datetime.fromtimestamp(t / 1000, timezone.utc) for t in res.times]
    peak, dd = -math.inf, []
    for v in res.equity:
        peak = max(peak, v)
        dd.append(-(peak - v) / peak * 100 if peak > 0 else 0.0)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1.3]}, dpi=110)
    ax1.plot(times, res.equity, color="#1f77b4", linewidth=1.0, label="equity")
    ax1.axhline(float(res.engine.ledger.capital), color="grey", linewidth=0.8, linestyle="--", label="capital")
    ax1.set_ylabel("equity (USDT)")
    sh = summary["sharpe"]
    ax1.set_title(f"{summary['strategy']} ({summary['strategyType']}) on {', '.join(summary['symbols'])}, "
                  f"{summary['feed']} feed\nreturn {summary['totalReturnPercent']:.2f} %, "
                  f"max drawdown {summary['maxDrawdownPercent']:.2f} %, "
                  f"Sharpe {'n/a' if sh is None else f'{sh:.2f}'}, trades {summary['trades']}", fontsize=10)
    colors = {api.RISK_SOFT_BRAKE: "#ff7f0e", api.RISK_QUARANTINE: "#9467bd", api.RISK_HARD_STOP: "#d62728"}
    shown = set()
    for tr in getattr(getattr(res.engine, "safety", None), "transitions", []):
        if tr["to"] in colors:
            at = datetime.fromisoformat(tr["at"].replace("Z", "+00:00"))
            label = f"-> {tr['to']}" if tr["to"] not in shown else None
            shown.add(tr["to"])
            ax1.axvline(at, color=colors[tr["to"]], linewidth=0.9, linestyle=":", label=label)
    ax1.grid(alpha=0.3)
    ax1.legend(loc="best", fontsize=8)
    ax2.fill_between(times, dd, 0, color="#d62728", alpha=0.4, linewidth=0)
    ax2.plot(times, dd, color="#d62728", linewidth=0.7)
    ax2.set_ylabel("drawdown (%)")
    ax2.set_xlabel("time (UTC)")
    ax2.grid(alpha=0.3)
    ax2.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def write_report(res: BacktestResult, out: Path, plot: bool = True) -> dict:
    """Write ``summary.json``, ``summary.md``, ``ledger.csv``, ``equity.csv`` and
    (``plot``) ``equity.png`` into ``out`` (created). Returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(res)
    write_ledger(res, out / "ledger.csv")
    write_equity(res, out / "equity.csv")
    if plot:
        plot_equity(res, summary, out / "equity.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = [f"| {k} | {_fmt(summary[k])} |" for k in (
        "strategyType", "symbols", "feed", "interval", "from", "to", "candles", "events", "capital", "finalEquity",
        "totalReturnPercent", "maxDrawdownPercent", "sharpe", "sortino", "trades", "winRate", "fills", "fees",
        "funding", "realizedPnl", "total", "unrealizedPnl", "turnoverUsdt", "turnoverRatio", "exposure",
        "averageLeverage", "riskState")]
    md = [f"# Backtest {summary['strategy']}", "", "| figure | value |", "|---|---|", *rows, "",
          f"Sharpe/Sortino: {summary['annualisation']}.",
          "Truth layer: total = realizedPnl + funding + rewards - fees - opportunityCost.",
          "", "![equity and drawdown](equity.png)" if plot else "", ""]
    (out / "summary.md").write_text("\n".join(md))
    return summary


def _parse_time(text: str | None, flag: str) -> int | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise BacktestError(f"{flag}: not an ISO 8601 date/time: {text!r}") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def build_parser(prog: str = "hean backtest"):
    """The argparse parser of the backtest command."""
    import argparse

    p = argparse.ArgumentParser(prog=prog, description="Replay a TradingStrategy manifest on recorded "
                                "data (candles, order book, funding history or a spot/perp pair, chosen "
                                "from spec.strategy) and write a report directory.")
    p.add_argument("manifests", nargs="+", type=Path, help="YAML file(s) with one TradingStrategy "
                   "(and optionally its RiskPolicy)")
    p.add_argument("--policy", type=Path, action="append", default=[], help="RiskPolicy manifest")
    p.add_argument("--data", type=Path, default=None, help="market-data folder (default: $HEAN_MARKETDATA_DIR, "
                   "else ../shared/marketdata)")
    p.add_argument("--out", type=Path, default=Path("backtest-report"), help="report directory (created)")
    p.add_argument("--start", default=None, help="first candle time, ISO 8601 UTC (default: "
                   "spec.marketData.replay.start or the start of the data)")
    p.add_argument("--end", default=None, help="stop before this time, ISO 8601 UTC")
    p.add_argument("--interval", choices=["1", "5", "60"], default=None,
                   help="override spec.marketData.replay.interval (minutes)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols overriding spec.symbols")
    p.add_argument("--no-plot", action="store_true", help="skip equity.png")
    p.add_argument("--feed", choices=["auto", "candles", "book", "funding", "basis"], default="auto",
                   help="what to replay (default auto: scalping -> book, funding_harvest -> funding, "
                   "basis_arbitrage -> basis, the others -> candles)")
    p.add_argument("--book", type=Path, default=None, help="order-book capture, zstd JSON lines of Bybit "
                   "orderbook.200 frames (default: <data>/bybit/ws/BYBIT.jsonl.zst); implies --feed book")
    p.add_argument("--funding", type=Path, default=None, help="funding-rate feather file (rate in column "
                   "open; default: <data>/binance/futures/<BASE>_USDT_USDT-8h-funding_rate.feather); "
                   "needs --mark; implies --feed funding")
    p.add_argument("--mark", type=Path, default=None, help="mark-price candle feather file "
                   "(default: <data>/binance/futures/<BASE>_USDT_USDT-8h-mark.feather)")
    p.add_argument("--spot-leg", action="append", default=None, metavar="constructed|FILE|SYMBOL=FILE",
                   help="spot leg of basis_arbitrage: constructed from the perpetual candles (default, see "
                   "docs/backtests.md) or a CSV with the klines header; implies --feed basis")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    return p


def main(argv: list[str] | None = None, prog: str = "hean backtest") -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input)."""
    args = build_parser(prog).parse_args(argv)
    try:
        sobj, pobj = load_manifests(list(args.manifests) + list(args.policy))
        name, spec, policy = parse_specs(sobj, pobj)
        if args.symbols:
            try:
                spec = type(spec).model_validate({**spec.model_dump(), "symbols": args.symbols.split(",")})
            except ValidationError as e:
                from hean.worker.config import describe_validation_error

                raise BacktestError(f"--symbols: {describe_validation_error('spec', e)}") from e
        if args.interval:
            spec = spec.model_copy(update={"marketData": spec.marketData.model_copy(update={
                "replay": spec.marketData.replay.model_copy(update={"interval": args.interval})})})
        data = args.data or Path(os.environ.get("HEAN_MARKETDATA_DIR") or Path("..") / "shared" / "marketdata")
        if not Path(data).is_dir():
            raise BacktestError(f"--data: market-data folder {data} does not exist")
        feed = args.feed
        for flag, given, needs in (("--book", args.book, "book"), ("--funding", args.funding, "funding"),
                                   ("--mark", args.mark, "funding"), ("--spot-leg", args.spot_leg, "basis")):
            if given and feed not in ("auto", needs):
                raise BacktestError(f"{flag} needs --feed {needs} (or auto), got --feed {feed}")
        if feed == "auto":
            feed = ("book" if args.book else "funding" if (args.funding or args.mark)
                    else "basis" if args.spot_leg else "auto")
        opts = FeedOptions(feed=feed, book=args.book, funding=args.funding, mark=args.mark,
                           spot_leg=args.spot_leg or ["constructed"])
        res = run_backtest(name, spec, policy, Path(data), _parse_time(args.start, "--start"),
                           _parse_time(args.end, "--end"), args.progress, opts)
        summary = write_report(res, args.out, plot=not args.no_plot)
    except BacktestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sh = summary["sharpe"]
    print(f"{name} ({summary['feed']} feed): return {summary['totalReturnPercent']:.2f} %, "
          f"max drawdown {summary['maxDrawdownPercent']:.2f} %, Sharpe {'n/a' if sh is None else f'{sh:.2f}'}, "
          f"trades {summary['trades']}, fees {Decimal(summary['fees']).quantize(Decimal('0.01'))} USDT, "
          f"funding {Decimal(summary['funding']).quantize(Decimal('0.01'))} USDT -> {args.out}")
    return 0
