"""Every strategy of hean.worker.strategies through the paper engine on real recorded
data from ../shared/marketdata (Bybit 1-minute klines; Bybit order-book frames for
scalping; Binance XRPUSDT funding history and mark price for funding_harvest; a
spot/perp pair constructed from real BTCUSDT candles for basis_arbitrage). Expected
values are recomputed here from the data, not taken from the strategies."""

from __future__ import annotations

import math
from datetime import timezone
from decimal import Decimal as D

import numpy as np
import pytest

from hean.engine import NativeEngine
from hean.engine.book import OrderBook, iter_orderbook_zip, iter_ws_capture, level_decimals
from hean.marketdata import Bar, Instrument, load_instruments, load_klines
from hean.worker.config import RiskPolicySpec, StrategySpec, describe_validation_error
from hean.worker.engine import Engine
from hean.worker.strategies import BookTop, OrderIntent, ParamsError, parse_params
from hean.worker.strategies.scalping import book_top
from hean.worker.strategies.scanner import rank

POLICY = dict(softMaxDrawdownPercent=20, hardMaxDrawdownPercent=40, maxDailyLossUsdt=5000, maxLeverage=5,
              maxPositionNotionalUsdt=50000, maxOpenPositions=4, maxOrdersPerMinute=60)
SYMS4 = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


@pytest.fixture(scope="module")
def inst(marketdata_dir):
    return load_instruments(marketdata_dir)


@pytest.fixture(scope="module")
def klines(marketdata_dir):
    return {s: load_klines(marketdata_dir, s, "1") for s in SYMS4}


def spec_of(strategy, symbols, params=None, **kw):
    body = {"strategy": strategy, "symbols": list(symbols), "capital": 10000, "riskPolicyRef": {"name": "p"},
            "maxLeverage": 3, **kw}
    if params is not None:
        body["params"] = params
    return StrategySpec.model_validate(body)


def engine_for(inst, strategy, symbols, params=None, policy=POLICY, extra_instruments=None, **kw):
    sp = spec_of(strategy, symbols, params, **kw)
    instruments = {s: inst[(sp.category, s)] for s in symbols}
    instruments.update(extra_instruments or {})
    return Engine(f"t-{strategy}", sp, RiskPolicySpec.model_validate(policy), instruments)


def feed(eng, klines, symbols, n):
    rows = sorted(((b.ts_ms, s, b) for s in symbols for b in klines[s].bars[:n]), key=lambda t: (t[0], t[1]))
    for _, s, b in rows:
        eng.on_bar(s, b)
    return rows


# ---- params ---------------------------------------------------------------------------
def test_params_models_name_the_field():
    assert parse_params("grid", {"grid": {"levels": 50}}).levels == 50
    assert parse_params("grid", None).levels == 10  # absent block: defaults
    with pytest.raises(ParamsError, match=r"spec\.params\.grid\.levels: Input should be less than or equal to 200"):
        parse_params("grid", {"grid": {"levels": 500}})
    with pytest.raises(ParamsError, match=r"spec\.params\.grid\.lowerPrice \(200\.0\) must be less than"):
        parse_params("grid", {"grid": {"lowerPrice": 200, "upperPrice": 100}})
    with pytest.raises(ParamsError, match=r"spec\.params\.scalping\.spreadLimit: Extra inputs are not permitted"):
        parse_params("scalping", {"scalping": {"spreadLimit": 1}})
    with pytest.raises(ParamsError, match=r"spec\.params\.grid: only allowed when spec\.strategy is 'grid'"):
        parse_params("momentum", {"grid": {}})
    with pytest.raises(ParamsError, match="spec.strategy: must be one of impulse, momentum, grid"):
        parse_params("martingale", {})
    with pytest.raises(ParamsError, match="exitFundingRateBps"):
        parse_params("funding_harvest", {"fundingHarvest": {"minFundingRateBps": 1, "exitFundingRateBps": 2}})
    # through the whole spec: the message names the parameter
    from pydantic import ValidationError
    with pytest.raises(ValidationError) as ei:
        StrategySpec.model_validate({"strategy": "basis_arbitrage", "symbols": ["BTCUSDT"], "capital": 10,
                                     "riskPolicyRef": {"name": "p"}, "params": {"basisArbitrage": {"entryBasisBps": -1}}})
    msg = describe_validation_error("spec", ei.value)
    assert "spec.params.basisArbitrage.entryBasisBps: Input should be greater than 0" in msg


def test_native_kernel_refuses_what_it_does_not_implement(inst):
    insts = {"BTCUSDT": inst[("linear", "BTCUSDT")]}
    with pytest.raises(ValueError, match="'impulse' only, not 'grid'"):
        NativeEngine("x", spec_of("grid", ["BTCUSDT"]), None, insts)
    with pytest.raises(ValueError, match="spec.params.confirmationBars"):
        NativeEngine("x", spec_of("impulse", ["BTCUSDT"], {"confirmationBars": 2}), None, insts)


# ---- impulse gates ----------------------------------------------------------------------
def test_impulse_gates_each_refuse_entries(inst, klines):
    base = engine_for(inst, "impulse", ["BTCUSDT", "ETHUSDT"], {"impulseThreshold": 2.0, "cooldownBars": 5})
    feed(base, klines, ("BTCUSDT", "ETHUSDT"), 12_000)
    n_base = sum(st.entry_orders for st in base.symbols.values())
    assert n_base > 20
    cases = {
        "VOLATILITY_ABOVE_PERCENTILE": {"maxVolatilityPercentile": 50, "volatilityPercentileWindow": 600},
        "LOW_VOLUME": {"minVolumeRatio": 3.0},
        "REGIME_NOT_TRENDING": {"minTrendStrengthBps": 15},
        "EDGE_BELOW_THRESHOLD": {"minEdgeBps": 60},
        "AWAITING_CONFIRMATION": {"confirmationBars": 1},
    }
    for reason, gate in cases.items():
        eng = engine_for(inst, "impulse", ["BTCUSDT", "ETHUSDT"], {"impulseThreshold": 2.0, "cooldownBars": 5, **gate})
        feed(eng, klines, ("BTCUSDT", "ETHUSDT"), 12_000)
        n = sum(st.entry_orders for st in eng.symbols.values())
        assert eng.reasons[reason] > 0, reason
        assert n < n_base, reason
        eng.ledger.check()


def test_volatility_percentile_is_nearest_rank(inst, klines):
    eng = engine_for(inst, "impulse", ["BTCUSDT"], {"maxVolatilityPercentile": 95, "volatilityPercentileWindow": 500})
    feed(eng, klines, ("BTCUSDT",), 3000)
    strat = eng.symbols["BTCUSDT"].strategy
    vals = np.array(list(strat.sigmas))
    assert len(vals) == 500
    assert strat.volatility_percentile_cap() == np.percentile(vals, 95, method="inverted_cdf")
    # the history is the last 500 volatility values, recomputed from the closes
    closes = np.array([float(b.close) for b in klines["BTCUSDT"].bars[:3000]])
    rets = np.diff(np.log(closes))
    sig = np.array([rets[i - 60:i].std(ddof=1) for i in range(len(rets) - 499, len(rets) + 1)])
    assert np.allclose(np.sort(sig), np.sort(vals), rtol=1e-9, atol=1e-15)


def test_impulse_spread_filter_uses_book_when_present(inst, klines):
    p = {"impulseThreshold": 2.0, "cooldownBars": 5, "maxSpreadBps": 1.0}
    eng = engine_for(inst, "impulse", ["BTCUSDT"], p)
    for b in klines["BTCUSDT"].bars[:8000]:
        # a book 4 bps wide around each close (a stressed market)
        half = b.close * D("0.0002")
        eng.on_book("BTCUSDT", BookTop(b.ts_ms, b.close - half, b.close + half, D(1), D(1)))
        eng.on_bar("BTCUSDT", b)
    assert eng.reasons["SPREAD_TOO_WIDE"] > 0 and eng.symbols["BTCUSDT"].entry_orders == 0
    no_book = engine_for(inst, "impulse", ["BTCUSDT"], p)
    feed(no_book, klines, ("BTCUSDT",), 8000)
    assert no_book.symbols["BTCUSDT"].entry_orders > 0 and no_book.reasons["SPREAD_TOO_WIDE"] == 0


# ---- momentum ---------------------------------------------------------------------------
def test_momentum_entries_follow_the_rate_of_change(inst, klines):
    eng = engine_for(inst, "momentum", ["BTCUSDT", "ETHUSDT"])
    feed(eng, klines, ("BTCUSDT", "ETHUSDT"), 20_000)
    entries = [f for f in eng.ledger.fills if f.reason == "MOMENTUM_ENTRY"]
    assert len(entries) >= 3
    assert {f.reason for f in eng.ledger.fills} - {"MOMENTUM_ENTRY", "MOMENTUM_EXIT", "STOP_LOSS", "TAKE_PROFIT"} == set()
    for f in entries:
        bars = klines[f.symbol].bars
        i = next(k for k, b in enumerate(bars) if b.ts_ms == f.ts_ms) - 1  # the decision candle
        closes = np.array([float(b.close) for b in bars[: i + 1]])
        roc = (closes[-1] / closes[-61] - 1) * 1e4
        alpha = 2 / 241
        ema = closes[:240].mean()  # SMA seed, as the indicator library does
        for c in closes[240:]:
            ema = alpha * c + (1 - alpha) * ema
        if f.side == "Buy":
            assert roc >= 80 and closes[-1] > ema
        else:
            assert roc <= -80 and closes[-1] < ema
    eng.ledger.check()


# ---- grid ---------------------------------------------------------------------------------
def test_grid_inventory_follows_the_levels(inst, klines):
    params = {"grid": {"levels": 11, "rangePercent": 4.0, "levelNotionalUsdt": 300, "breakoutBars": 5}}
    eng = engine_for(inst, "grid", ["SOLUSDT"], params)
    strat = eng.symbols["SOLUSDT"].strategy
    sizes, seen = [], {}
    bars = klines["SOLUSDT"].bars[:20_000]
    for b in bars:
        eng.on_bar("SOLUSDT", b)
        sizes.append(eng.ledger.position("SOLUSDT").size)
        seen[b.ts_ms] = (b.close, strat.centre, strat.lower, strat.upper, strat.level_qty)
    reasons = {f.reason for f in eng.ledger.fills}
    assert {"GRID_BUY", "GRID_SELL"} <= reasons
    assert strat.recenters >= 1 and "GRID_RECENTER" in reasons
    lq = strat.level_qty
    assert lq == inst[("linear", "SOLUSDT")].round_qty(D(300) / strat.centre)
    assert min(sizes) >= 0 and max(sizes) <= 5 * lq * 2  # never short; bounded inventory
    # every buy was decided on a close below the grid centre of its time (and its size a
    # whole number of levels), every sell on a close above a line; one order per candle
    ts = [b.ts_ms for b in bars]
    for f in eng.ledger.fills:
        close, centre, lower, upper, level_qty = seen[ts[ts.index(f.ts_ms) - 1]]
        if f.reason == "GRID_BUY":
            assert close < centre and f.qty % level_qty == 0
        elif f.reason == "GRID_SELL":
            assert close > lower
    assert len({f.ts_ms for f in eng.ledger.fills}) == len(eng.ledger.fills)
    eng.ledger.check()


def test_grid_params_update_live(inst, klines):
    eng = engine_for(inst, "grid", ["SOLUSDT"], {"grid": {"levels": 11}})
    bars = klines["SOLUSDT"].bars
    for b in bars[:500]:
        eng.on_bar("SOLUSDT", b)
    old_centre = eng.symbols["SOLUSDT"].strategy.centre
    eng.update_spec(spec_of("grid", ["SOLUSDT"], {"grid": {"levels": 21, "rangePercent": 1.0}}))
    strat = eng.symbols["SOLUSDT"].strategy
    assert strat.params.levels == 21 and strat.centre is None  # rebuilt on the new grid
    eng.on_bar("SOLUSDT", bars[500])
    assert strat.centre == bars[500].close and len(strat.lines()) == 21 and old_centre is not None
    assert strat.upper - strat.lower == bars[500].close * D("1.0") / 100


# ---- scalping -----------------------------------------------------------------------------
def _book_frames(marketdata_dir, symbol):
    return [m for m in iter_ws_capture(marketdata_dir / "bybit" / "ws" / "BYBIT.jsonl.zst", f"orderbook.200.{symbol}")]


def _run_scalper(inst, frames, symbol, params, category="linear"):
    pd, sd = level_decimals(frames)
    book = OrderBook(max(pd, 1), max(sd, 1))
    eng = engine_for(inst, "scalping", [symbol], {"scalping": params}, category=category)
    tops = []
    for m in frames:
        d = m["data"]
        st = book.apply(m["type"] == "snapshot", [tuple(x) for x in d["b"]], [tuple(x) for x in d["a"]],
                        int(d["u"]), int(d.get("seq", 0)), int(m["ts"]))
        if st != "OK":
            continue
        top = book_top(book, int(m["ts"]), params.get("depthLevels", 5))
        tops.append(top)
        eng.on_book(symbol, top)
    return eng, tops


def test_scalping_on_recorded_book(inst, marketdata_dir):
    frames = _book_frames(marketdata_dir, "BTCUSDT")
    params = {"maxSpreadBps": 1.0, "imbalanceThreshold": 0.3, "takeProfitTicks": 2, "stopLossTicks": 2,
              "maxHoldSeconds": 3, "orderNotionalUsdt": 500, "maxOrdersPerMinute": 4, "minOrderIntervalMs": 200}
    eng, tops = _run_scalper(inst, frames, "BTCUSDT", params)
    fills = eng.ledger.fills
    entries = [f for f in fills if f.reason == "SCALP_ENTRY"]
    assert entries, eng.reasons
    by_ts = {t.ts_ms: t for t in tops}
    for f in entries:  # the conditions, recomputed from the book top at the entry
        t = by_ts[f.ts_ms]
        spread = float((t.ask - t.bid) / ((t.ask + t.bid) / 2)) * 1e4
        imb = float((t.bid_qty - t.ask_qty) / (t.bid_qty + t.ask_qty))
        assert spread <= 1.0
        assert (imb >= 0.3 and f.side == "Buy" and f.price >= t.ask) or (imb <= -0.3 and f.side == "Sell" and f.price <= t.bid)
    # the strict order budget: never more than 4 orders in any 60 s, entries >= 200 ms apart
    ts = sorted(f.ts_ms for f in fills)
    assert max(sum(1 for x in ts if t0 <= x < t0 + 60_000) for t0 in ts) <= 4
    ets = sorted(f.ts_ms for f in entries)
    assert all(b - a >= 200 for a, b in zip(ets, ets[1:]))
    assert eng.reasons["ORDER_RATE_BUDGET"] > 0  # the budget bit on this capture
    assert {f.reason for f in fills} - {"SCALP_ENTRY", "SCALP_TAKE_PROFIT", "SCALP_STOP_LOSS", "SCALP_TIME_EXIT"} == set()
    eng.ledger.check()


def test_scalping_on_bybit_archive(inst, marketdata_dir):
    frames = list(iter_orderbook_zip(marketdata_dir / "bybit" / "orderbook" / "xrpusdt-ob500.data.zip"))
    eng, tops = _run_scalper(inst, frames, "XRPUSDT", {"maxSpreadBps": 5.0, "imbalanceThreshold": 0.2,
                                                        "orderNotionalUsdt": 100})
    assert len(tops) >= 40
    assert eng.symbols["XRPUSDT"].strategy.warm
    assert sum(eng.reasons.values()) + len(eng.ledger.fills) > 0
    eng.ledger.check()


# ---- funding_harvest ------------------------------------------------------------------
def _xrp_funding(marketdata_dir):
    import pyarrow.feather as feather

    base = marketdata_dir / "binance" / "futures"
    fund = feather.read_table(base / "XRP_USDT_USDT-8h-funding_rate.feather").to_pydict()
    mark = feather.read_table(base / "XRP_USDT_USDT-8h-mark.feather").to_pydict()
    ms = lambda d: int(d.astimezone(timezone.utc).timestamp() * 1000) // 1000 * 1000  # noqa: E731
    bars = [Bar(ms(d), D(str(o)), D(str(h)), D(str(lo)), D(str(c)), D(str(v)))
            for d, o, h, lo, c, v in zip(mark["date"], mark["open"], mark["high"], mark["low"], mark["close"],
                                          mark["volume"])]
    rates = [(ms(d), D(str(r))) for d, r in zip(fund["date"], fund["open"])]
    return bars, rates


@pytest.mark.parametrize("hedged", [False, True])
def test_funding_harvest_on_xrp_history(inst, marketdata_dir, hedged):
    bars, rates = _xrp_funding(marketdata_dir)
    assert len(bars) == len(rates) == 91
    eng = engine_for(inst, "funding_harvest", ["XRPUSDT"], {"fundingHarvest": {"hedged": hedged}},
                     extra_instruments={"XRPUSDT.SPOT": inst[("spot", "XRPUSDT")]})
    rate_at = dict(rates)
    expected_funding = D(0)
    for b in bars:
        r = rate_at.get(b.ts_ms)
        if r is not None:
            pos = eng.ledger.position("XRPUSDT").size
            mark = eng.symbols["XRPUSDT"].mark
            if pos != 0:
                expected_funding += -(pos * mark * r)
            eng.on_funding("XRPUSDT", r, b.ts_ms, b.ts_ms + 8 * 3_600_000)
        eng.on_bar("XRPUSDT", b)
    fills = eng.ledger.fills
    entries = [f for f in fills if f.reason == "FUNDING_ENTRY"]
    assert entries and entries[0].side == "Sell"  # positive rates: shorts receive
    ts_list = [b.ts_ms for b in bars]
    for f in entries:  # the side that receives, recomputed from the last 3 settled rates
        decision = ts_list[ts_list.index(f.ts_ms) - 1]
        last3 = [r for t, r in rates if t <= decision][-3:]
        mean = sum(last3) / 3
        assert abs(mean) >= D("0.0001") and f.side == ("Sell" if mean > 0 else "Buy")
    assert eng.funding == expected_funding and eng.funding > 0
    if hedged:
        legs = [f for f in fills if f.symbol == "XRPUSDT.SPOT"]
        assert legs and legs[0].side == "Buy" and legs[0].qty == entries[0].qty
        perp, leg = eng.ledger.position("XRPUSDT").size, eng.ledger.position("XRPUSDT.SPOT").size
        assert perp == -leg
        # delta neutral: both legs are marked at the same price, so their unrealized PnL is only
        # the difference of the entry prices, q x (perp entry - spot entry), whatever the mark
        assert perp != 0  # still holding at the end of this history
        if perp != 0:
            p_pos, l_pos = eng.ledger.position("XRPUSDT"), eng.ledger.position("XRPUSDT.SPOT")
            assert eng.ledger.unrealized_pnl(eng.marks()) == abs(perp) * (p_pos.entry_price - l_pos.entry_price)
    eng.ledger.check()


# ---- basis_arbitrage ------------------------------------------------------------------
def _constructed_pair(klines, n=6000):
    """CONSTRUCTED spot/perp pair from real data: the perpetual is the real BTCUSDT
    1-minute series; the spot leg is the same candles scaled by (1 - premium), the
    premium being 0.1 x the real series' deviation from its 240-candle mean (so the
    basis widens in rallies, as contango does). Documented in docs/backtests.md."""
    bars = klines["BTCUSDT"].bars[:n]
    closes = np.array([float(b.close) for b in bars])
    spot = []
    for i, b in enumerate(bars):
        mean = closes[max(0, i - 239): i + 1].mean()
        prem = D(repr(round(float(0.1 * (closes[i] / mean - 1)), 6)))
        f = 1 - prem
        q = D("0.1")
        spot.append(Bar(b.ts_ms, (b.open * f).quantize(q), (b.high * f).quantize(q), (b.low * f).quantize(q),
                        (b.close * f).quantize(q), b.volume))
    return bars, spot


def test_basis_arbitrage_on_constructed_pair(inst, klines):
    perp, spot = _constructed_pair(klines)
    eng = engine_for(inst, "basis_arbitrage", ["BTCUSDT"], {"basisArbitrage": {"entryBasisBps": 8, "exitBasisBps": 2}},
                     extra_instruments={"BTCUSDT.SPOT": inst[("spot", "BTCUSDT")]})
    for s, p in zip(spot, perp):
        eng.on_leg_bar("BTCUSDT", "spot", s)
        eng.on_bar("BTCUSDT", p)
    fills = eng.ledger.fills
    perp_entries = [f for f in fills if f.reason == "BASIS_ENTRY"]
    legs = [f for f in fills if f.reason == "BASIS_ENTRY_HEDGE"]
    assert perp_entries and len(legs) == len(perp_entries)
    spot_close = {b.ts_ms: b.close for b in spot}
    perp_close = {b.ts_ms: b.close for b in perp}
    ts_list = [b.ts_ms for b in perp]
    for f, g in zip(perp_entries, legs):
        assert f.ts_ms == g.ts_ms and f.side == "Sell" and g.side == "Buy" and f.qty == g.qty
        prev = ts_list[ts_list.index(f.ts_ms) - 1]  # the decision candle
        basis = (perp_close[prev] - spot_close[prev]) / spot_close[prev] * 10000
        assert basis >= 8
        assert g.price >= spot[ts_list.index(f.ts_ms)].open  # the leg filled at its own open (+ slippage)
    exits = [f for f in fills if f.reason == "BASIS_EXIT"]
    assert exits
    # legs always balanced: after every candle both legs are equal and opposite
    assert eng.ledger.position("BTCUSDT").size == -eng.ledger.position("BTCUSDT.SPOT").size
    eng.ledger.check()


def test_basis_arbitrage_refuses_unbalanced_legs(inst, klines):
    perp, spot = _constructed_pair(klines, 3000)
    coarse = Instrument("BTCUSDT", "spot", D("0.1"), D("0.01"), D("0.01"), D("5"), D("1"))
    eng = engine_for(inst, "basis_arbitrage", ["BTCUSDT"],
                     {"basisArbitrage": {"entryBasisBps": 5, "exitBasisBps": 1, "legNotionalUsdt": 1500,
                                         "maxLegImbalanceFraction": 0.05}},
                     extra_instruments={"BTCUSDT.SPOT": coarse})
    for s, p in zip(spot, perp):
        eng.on_leg_bar("BTCUSDT", "spot", s)
        eng.on_bar("BTCUSDT", p)
    # 1500 USDT is ~0.014 BTC: the 0.01 spot step leaves a ~30 % mismatch -> refused
    assert eng.reasons["LEG_IMBALANCE"] > 0 and not eng.ledger.fills


# ---- scanner ------------------------------------------------------------------------------
def test_scanner_ranking_recomputed(klines):
    n = 1440
    windows = {s: [(float(b.close), float(b.volume)) for b in klines[s].bars[:n]] for s in SYMS4}
    ranked = rank(windows, 0.5, 0.5)
    turnover = {s: sum(float(b.close) * float(b.volume) for b in klines[s].bars[:n]) for s in SYMS4}
    vol = {s: np.std(np.diff(np.log([float(b.close) for b in klines[s].bars[:n]])), ddof=1) * 1e4 for s in SYMS4}
    liq_rank = {s: i / 3 for i, s in enumerate(sorted(SYMS4, key=lambda s: turnover[s]))}
    vol_rank = {s: i / 3 for i, s in enumerate(sorted(SYMS4, key=lambda s: vol[s]))}
    score = {s: (liq_rank[s] + vol_rank[s]) / 2 for s in SYMS4}
    assert [r.symbol for r in ranked] == sorted(SYMS4, key=lambda s: (-score[s], s))
    for r in ranked:
        assert math.isclose(r.turnover_usdt, turnover[r.symbol], rel_tol=1e-9)
        assert math.isclose(r.volatility_bps, vol[r.symbol], rel_tol=1e-9)
    # liquidity only: BTCUSDT has by far the largest turnover
    assert rank(windows, 1, 0)[0].symbol == max(turnover, key=turnover.get) == "BTCUSDT"


def test_scanner_picks_gate_entries_and_rerank(inst, klines):
    scanner = {"universe": list(SYMS4), "topN": 2, "lookbackBars": 720, "rerankBars": 720}
    eng = engine_for(inst, "impulse", SYMS4, {"impulseThreshold": 2.0, "cooldownBars": 5}, scanner=scanner)
    rows = sorted(((b.ts_ms, s, b) for s in SYMS4 for b in klines[s].bars[:6000]), key=lambda t: (t[0], t[1]))
    picks_over_time = []
    for _, s, b in rows:
        before = list(eng.scanner.picks or [])
        eng.on_bar(s, b)
        if (eng.scanner.picks or []) != before:
            picks_over_time.append((b.ts_ms, list(eng.scanner.picks)))
    assert eng.scanner.rankings >= 8 and len(picks_over_time) >= 2
    assert eng.reasons["NOT_SCANNER_PICK"] > 0
    # every entry was on a symbol picked at that time
    for f in (f for f in eng.ledger.fills if f.reason == "IMPULSE_ENTRY"):
        current = [p for t, p in picks_over_time if t < f.ts_ms][-1]
        assert f.symbol in current
    st = eng.scanner.status()
    assert len(st["picks"]) == 2 and st["rankedAt"].endswith("Z") and len(st["ranking"]) == 4
    # a rank at the last re-ranking, recomputed from the last 720 candles of each symbol
    last_ts = max(t for t, _ in picks_over_time) if picks_over_time else None
    assert last_ts is not None
    windows = {}
    for s in SYMS4:
        # the ranking ran on BTCUSDT's candle: symbols after it in the feed order lack that candle
        at = eng.scanner.ranked_at_ms
        bars = [b for b in klines[s].bars[:6000] if b.ts_ms < at or (b.ts_ms == at and s <= "BTCUSDT")]
        windows[s] = [(float(b.close), float(b.volume)) for b in bars[-720:]]
    assert st["picks"] == [r.symbol for r in rank(windows, 0.5, 0.5)[:2]]


# ---- live feed hooks --------------------------------------------------------------------
def test_live_feed_hands_books_and_settled_funding_to_the_engine(inst, marketdata_dir):
    """The worker's live path (LiveFeed -> book_to_engine / on_funding) on the recorded
    Bybit mainnet frames: a scalper trades on the real BTCUSDT book, and a ticker whose
    nextFundingTime moves on settles the previous rate. The capture has one ticker
    with funding fields; the second ticker frame (8 h later) is that frame with
    nextFundingTime advanced, constructed here."""
    from hean.worker.bybit.feed import LiveFeed
    from hean.worker.bybit.runtime import book_to_engine

    eng = engine_for(inst, "scalping", ["BTCUSDT"], {"scalping": {
        "maxSpreadBps": 1.0, "imbalanceThreshold": 0.3, "maxOrdersPerMinute": 4, "minOrderIntervalMs": 200}})
    feed = LiveFeed(["BTCUSDT"], "1", 200, lambda s, b: None, instruments={"BTCUSDT": inst[("linear", "BTCUSDT")]})
    feed.on_book = lambda s, book, ts: book_to_engine(eng, s, book, ts)
    settled = []
    feed.on_funding = lambda s, rate, at, nxt: (settled.append((s, rate, at, nxt)), eng.on_funding(s, rate, at, nxt))
    ticker = None
    for m in iter_ws_capture(marketdata_dir / "bybit" / "ws" / "BYBIT.jsonl.zst", ""):
        if m.get("topic") in ("orderbook.200.BTCUSDT", "tickers.BTCUSDT"):
            feed.handle(m)
            if m["topic"] == "tickers.BTCUSDT" and "nextFundingTime" in m["data"]:
                ticker = m
    assert eng.symbols["BTCUSDT"].strategy.warm and eng.symbols["BTCUSDT"].book is not None
    assert any(f.reason == "SCALP_ENTRY" for f in eng.ledger.fills)
    assert ticker is not None and not settled
    nxt = int(ticker["data"]["nextFundingTime"])
    pos = eng.ledger.position("BTCUSDT").size
    later = {**ticker, "data": {**ticker["data"], "nextFundingTime": str(nxt + 8 * 3_600_000)}}
    feed.handle(later)
    assert settled == [("BTCUSDT", D(ticker["data"]["fundingRate"]), nxt, nxt + 8 * 3_600_000)]
    assert eng.funding == (-(pos * eng.symbols["BTCUSDT"].mark * D(ticker["data"]["fundingRate"])) if pos else 0)
    feed.stop()


def test_a_strategy_change_keeps_the_running_strategy_until_replaced(inst, klines):
    eng = engine_for(inst, "impulse", ["BTCUSDT"])
    feed(eng, klines, ("BTCUSDT",), 300)
    eng.update_spec(spec_of("grid", ["BTCUSDT"], {"grid": {"levels": 20}}))  # structural: the operator replaces us
    assert eng.spec.strategy == "impulse" and eng.symbols["BTCUSDT"].strategy.name == "impulse"
    eng.update_spec(spec_of("impulse", ["BTCUSDT"], {"impulseThreshold": 2.5}))
    assert eng.symbols["BTCUSDT"].strategy.params.impulseThreshold == 2.5


def test_trade_hook_orders_fill_at_the_current_touch(inst, marketdata_dir):
    """Engine.on_trade with real recorded trades: a book strategy that answers a trade
    with an entry is filled at once at the current best ask (buy) plus slippage."""
    from hean.worker.strategies.scalping import ScalpingStrategy

    class TradeFollower(ScalpingStrategy):
        def on_book(self, top, view):
            self.warm = True
            return None

        def on_trade(self, ts_ms, price, qty, side, view):
            if view.size == 0 and side == "Buy" and not view.pending:
                return OrderIntent("Buy", "TRADE_FOLLOW", notional_usdt=D(1000))
            return None

    eng = engine_for(inst, "scalping", ["BTCUSDT"])
    st = eng.symbols["BTCUSDT"]
    st.strategy = TradeFollower("BTCUSDT", st.instrument, st.params)
    frames = [m for m in iter_ws_capture(marketdata_dir / "bybit" / "ws" / "BYBIT.jsonl.zst", "")
              if m.get("topic") in ("orderbook.200.BTCUSDT", "publicTrade.BTCUSDT")]
    book = OrderBook(2, 6)
    fills_at = None
    for m in frames:
        if m["topic"].startswith("orderbook"):
            d = m["data"]
            if book.apply(m["type"] == "snapshot", [tuple(x) for x in d["b"]], [tuple(x) for x in d["a"]],
                          int(d["u"]), int(d.get("seq", 0)), int(m["ts"])) == "OK":
                eng.on_book("BTCUSDT", book_top(book, int(m["ts"]), 5))
            continue
        for t in m["data"]:
            top = st.book
            eng.on_trade("BTCUSDT", int(t["T"]), D(t["p"]), D(t["v"]), t["S"])
            if eng.ledger.fills and fills_at is None:
                fills_at = top
    f = eng.ledger.fills[0]
    assert fills_at is not None and f.side == "Buy" and f.reason == "TRADE_FOLLOW"
    assert f.price == inst[("linear", "BTCUSDT")].round_price(fills_at.ask * (1 + D(2) / 10000), "up")
    assert len(eng.ledger.fills) == 1  # holds afterwards: no second entry
