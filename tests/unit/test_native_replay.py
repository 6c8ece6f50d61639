"""The native engine (hean.engine) against the pure-Python reference pipeline
(hean.worker.engine.Engine) on recorded Bybit candles: identical fills (timestamps,
sides, quantities, prices, fees, order link ids, reasons), equity, counters and
risk transitions, for the one-call replay, the batched Python-strategy callback
and the per-candle object the live worker could use."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

import numpy as np
import pytest

from hean.engine import NativeEngine, impulse_strategy, merge_klines, replay
from hean.marketdata import Bar, load_instruments, load_klines
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine

POLICY = dict(softMaxDrawdownPercent=5, hardMaxDrawdownPercent=10, maxDailyLossUsdt=1000, maxLeverage=3,
              maxPositionNotionalUsdt=20000, maxOpenPositions=4, maxOrdersPerMinute=60)
SYMS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture(scope="module")
def data(marketdata_dir):
    inst = load_instruments(marketdata_dir)
    series = {s: load_klines(marketdata_dir, s, "1") for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")}
    return inst, series


def make(data, symbols=SYMS, policy=POLICY, category="linear", **spec):
    inst, _ = data
    sp = StrategySpec.model_validate({"strategy": "impulse", "symbols": list(symbols), "capital": 10000,
                                      "riskPolicyRef": {"name": "p"}, "category": category, **spec})
    pol = RiskPolicySpec.model_validate(policy) if policy is not None else None
    instruments = {s: inst[(category, s)] for s in symbols}
    return sp, pol, instruments


def rows(data, symbols, n):
    _, series = data
    return sorted(((b.ts_ms, s, b) for s in symbols for b in series[s].bars[:n]), key=lambda t: (t[0], t[1]))


def fill_key(f):
    return (f.ts_ms, f.symbol, f.side, f.qty, f.price, f.fee, f.reason, f.order_link_id, f.exec_id)


def assert_same(py: Engine, nat: NativeEngine) -> None:
    pf = [fill_key(f) for f in py.ledger.fills]
    nf = [fill_key(f) for f in nat.fills()]
    for i, (a, b) in enumerate(zip(pf, nf)):
        assert a == b, f"fill {i} differs: python {a} native {b}"
    assert len(pf) == len(nf)
    fig = nat.figures()
    assert fig["equity"] == py.equity()
    assert fig["fees"] == py.ledger.fees
    assert fig["realized_pnl"] == py.ledger.realized_pnl
    assert fig["peak_equity"] == py.peak_equity
    assert fig["drawdown_percent"] == py.drawdown_percent()
    assert fig["risk_state"] == py.risk_state
    assert fig["risk_reasons"] == py.risk_reasons
    c = nat.counters()
    assert c["reasons"] == +py.reasons
    assert c["rejects"] == +py.rejects
    assert c["dropped"] == +py.dropped
    assert c["orders_sent"] == py.orders_sent
    assert c["order_seq"] == py.order_seq
    assert c["bars_processed"] == py.bars_processed
    assert c["closed_trades"] == py.ledger.closed_trades
    assert c["winning_trades"] == py.ledger.winning_trades
    assert nat.risk_events() == py.risk_events
    pos = nat.positions()
    for s, st in py.symbols.items():
        p = py.ledger.positions.get(s)
        assert pos[s]["size"] == (p.size if p else 0), s
        assert pos[s]["stop_price"] == st.stop_price and pos[s]["target_price"] == st.target_price
        assert pos[s]["pending"] == (st.pending is not None)


def run_both(data, n, symbols=SYMS, strategy=False, batch=65536, **kw):
    sp, pol, instruments = make(data, symbols, **kw)
    py = Engine("equiv-test", sp, pol, instruments)
    curve_py = []
    for _, s, b in rows(data, symbols, n):
        py.on_bar(s, b)
        curve_py.append(float(py.equity()))
    _, series = data
    probe = NativeEngine("equiv-test", sp, pol, instruments)
    stream = merge_klines(series, symbols, probe.price_decimals, n)
    res = replay("equiv-test", sp, pol, instruments, stream,
                 strategy=impulse_strategy(sp.params) if strategy else None, batch=batch)
    assert_same(py, res.engine)
    assert np.array_equal(res.equity, np.array(curve_py))
    return py, res


def test_replay_identical_to_python_engine_20k(data):
    py, res = run_both(data, 20_000)
    assert len(py.ledger.fills) > 50
    reasons = {f.reason for f in py.ledger.fills}
    assert {"IMPULSE_ENTRY", "STOP_LOSS"} <= reasons
    # arrays: exact integers at the engine's scales
    e = res.engine
    f = res.fills
    assert f["qty"].dtype == np.int64 and f["price"].dtype == np.int64 and f["fee_e8"].dtype == np.int64
    assert len(f["ts_ms"]) == len(py.ledger.fills)
    assert D(int(f["fee_e8"].sum())).scaleb(-8) == py.ledger.fees
    assert e.price_decimals == 2 and e.qty_decimals == 3


def test_callback_strategy_identical_to_builtin(data):
    # odd batch size: decisions straddle batch boundaries
    run_both(data, 12_000, strategy=True, batch=777)


def test_soft_brake_scenarios(data):
    py, _ = run_both(data, 8000, policy=dict(POLICY, softMaxDrawdownPercent=0))
    assert py.risk_state == "SOFT_BRAKE"
    assert any(f.reason == "IMPULSE_ENTRY" for f in py.ledger.fills)
    py, _ = run_both(data, 6000, policy=dict(POLICY, softMaxDrawdownPercent=0, softBrakeSizeFactor=0))
    assert py.reasons["SOFT_BRAKE"] > 0 and not py.ledger.fills
    # brake engages and releases with hysteresis
    py, _ = run_both(data, 20_000, policy=dict(POLICY, softMaxDrawdownPercent=D("0.7"), softBrakeSizeFactor=D("0.3")))
    assert ("NORMAL", "SOFT_BRAKE", ["SOFT_DRAWDOWN"]) in py.risk_events


def test_hard_stop_scenarios(data):
    py, _ = run_both(data, 20_000, policy=dict(POLICY, softMaxDrawdownPercent=D("0.5"), hardMaxDrawdownPercent=D("1.5")))
    assert py.risk_state == "HARD_STOP" and any(f.reason == "HARD_STOP" for f in py.ledger.fills)
    py, _ = run_both(data, 20_000, policy=dict(POLICY, maxDailyLossUsdt=D("60.5")))
    assert any(new == "HARD_STOP" and "DAILY_LOSS" in why for _, new, why in py.risk_events)


def test_other_parameters_and_symbols(data):
    params = dict(emaFastPeriod=7, emaSlowPeriod=31, volatilityWindow=17, impulseLookback=3, impulseThreshold=1.7,
                  atrPeriod=9, stopLossAtr=3.3, takeProfitAtr=7.1, cooldownBars=4, riskPerTradeFraction=0.0123)
    py, _ = run_both(data, 6000, symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"), params=params,
                     execution={"slippageBps": 7.3}, maxLeverage=2,
                     policy=dict(POLICY, maxOpenPositions=2, maxOrdersPerMinute=2, maxPositionNotionalUsdt=D("2500.5")))
    assert len(py.ledger.fills) > 50
    assert py.reasons["MAX_OPEN_POSITIONS"] + py.reasons["ORDER_RATE_LIMIT"] > 0


def test_spot_never_shorts(data):
    py, _ = run_both(data, 6000, symbols=("BTCUSDT",), category="spot",
                     params=dict(impulseThreshold=1.0, cooldownBars=5))
    assert py.reasons["SPOT_NO_SHORT"] > 0
    assert all(f.side == "Buy" for f in py.ledger.fills if f.reason == "IMPULSE_ENTRY")


def test_missing_policy_and_paused(data):
    py, _ = run_both(data, 3000, policy=None)
    assert py.reasons["NO_RISK_POLICY"] > 0
    py, _ = run_both(data, 3000, paused=True)
    assert py.reasons["PAUSED"] > 0


def test_per_candle_object_with_control_changes(data):
    """The live-worker path: NativeEngine.on_bar per candle, control changes between
    candles (quarantine, pause, policy -> HARD_STOP, clear), out-of-order candles."""
    sp, pol, instruments = make(data)
    py = Engine("live", sp, pol, instruments)
    nat = NativeEngine("live", sp, pol, instruments)
    feed = rows(data, SYMS, 14_000)

    def step(i):
        _, s, b = feed[i]
        py.on_bar(s, b)
        nat.on_bar(s, b)

    for i in range(0, 4000):
        step(i)
    py.set_quarantined({"BTCUSDT"})
    nat.set_quarantined({"BTCUSDT"})
    for i in range(4000, 6000):
        step(i)
    py.set_quarantined(set())
    nat.set_quarantined(set())
    # a duplicate and an older candle are dropped and counted
    for _, s, b in (feed[5999], feed[5990]):
        py.on_bar(s, b)
        nat.on_bar(s, b)
    for i in range(6000, 9000):
        step(i)
    assert_same(py, nat)
    hard = RiskPolicySpec.model_validate(dict(POLICY, softMaxDrawdownPercent=0,
                                              hardMaxDrawdownPercent=max(py.drawdown_percent() / 2, D("0.0001"))))
    py.update_policy(hard)
    nat.update_policy(hard)
    assert nat.risk_state == "HARD_STOP" == py.risk_state
    for i in range(9000, 10_000):
        step(i)
    assert_same(py, nat)
    for at in (datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)):
        assert py.clear_hard_stop(at) == nat.clear_hard_stop(at)
    py.update_policy(pol)
    nat.update_policy(pol)
    py.spec = sp.model_copy(update={"paused": True})
    nat.set_paused(True)
    for i in range(10_000, 11_000):
        step(i)
    py.spec = sp
    nat.set_paused(False)
    # live-tunable spec changes: same periods (no reset), then new periods (warm-up again)
    tuned = sp.model_copy(update={"params": sp.params.model_copy(update={"impulseThreshold": 2.0, "cooldownBars": 3}),
                                  "execution": sp.execution.model_copy(update={"slippageBps": 4.5})})
    py.update_spec(tuned)
    nat.update_spec(tuned)
    for i in range(11_000, 11_500):
        step(i)
    retuned = tuned.model_copy(update={"params": tuned.params.model_copy(update={"emaFastPeriod": 10, "impulseLookback": 3})})
    py.update_spec(retuned)
    nat.update_spec(retuned)
    assert_same(py, nat)
    assert nat.trading_active() == py.trading_active()
    # same counts; equal counts may be listed in another order
    assert [r["count"] for r in nat.top_reasons()] == [r["count"] for r in py.top_reasons()]
    blocked = hasattr(py, "blocked_reason")  # the exchange-execution gate of the worker
    if blocked:
        py.blocked_reason = "MARKET_DATA_STALE"
        nat.set_blocked_reason("MARKET_DATA_STALE")
    for i in range(11_500, 12_000):
        step(i)
    if blocked:
        py.blocked_reason = None
        nat.set_blocked_reason(None)
        assert py.reasons["MARKET_DATA_STALE"] > 0
    for i in range(12_000, len(feed)):
        step(i)
    assert_same(py, nat)
    assert py.dropped["out_of_order"] == 2


def test_invalid_candles_are_rejected_and_counted(data):
    sp, pol, instruments = make(data)
    nat = NativeEngine("x", sp, pol, instruments)
    nat._e.on_bar(0, 1, 100, 90, 95, 96)  # high < low
    nat._e.on_bar(0, 2, 0, 100, 90, 95)  # zero open
    nat._e.on_bar(0, 3, 100, 120, 90, 130)  # close above high
    assert nat.counters()["rejected_bars"] == 3 and nat.counters()["bars_processed"] == 0
    with pytest.raises(ValueError, match="more than 2 decimals"):
        nat.on_bar("BTCUSDT", Bar(1, D("1.001"), D("2"), D("1"), D("1.5"), D(1)))
    with pytest.raises(ValueError, match="symbol index out of range"):
        nat._e.run(np.array([5], np.int32), *(np.array([1], np.int64) for _ in range(5)))


def reference_path(data, n, policy):
    """Drawdown (percent) and daily loss (USDT) after each bar of the Python engine."""
    sp, pol, instruments = make(data, policy=policy)
    py = Engine("equiv-test", sp, pol, instruments)
    dds, losses = [], []
    for _, s, b in rows(data, SYMS, n):
        py.on_bar(s, b)
        dds.append(py.drawdown_percent())
        losses.append(py.daily_loss())
    return dds, losses


def test_risk_lines_exactly_at_a_reached_value(data):
    """A soft, hard or daily-loss line equal to a drawdown / daily loss the account
    actually reaches (28-digit Decimals): the transition happens at that bar in both
    engines (the native engine's integer bounds hand such ties to the exact test)."""
    n = 6000
    calm = dict(POLICY, softMaxDrawdownPercent=D("98"), hardMaxDrawdownPercent=D("99"), maxDailyLossUsdt=D("1e6"))
    dds, losses = reference_path(data, n, calm)
    x = max(dds[: n // 2])
    first = dds.index(x)
    assert x > 0 and x.as_tuple().exponent < -6  # a long decimal, not a round number
    # soft line at x: NORMAL -> SOFT_BRAKE exactly at the first bar with dd == x
    py, _ = run_both(data, n, policy=dict(calm, softMaxDrawdownPercent=x))
    assert py.risk_events[0] == ("NORMAL", "SOFT_BRAKE", ["SOFT_DRAWDOWN"])
    sp, pol, instruments = make(data, policy=dict(calm, softMaxDrawdownPercent=x))
    e = Engine("equiv-test", sp, pol, instruments)
    states = []
    for _, s, b in rows(data, SYMS, n)[: first + 1]:
        e.on_bar(s, b)
        states.append(e.risk_state)
    assert states[-1] == "SOFT_BRAKE" and set(states[:-1]) == {"NORMAL"}
    # hard line at a reached value while braking from the first bar (soft line 0)
    braking = dict(calm, softMaxDrawdownPercent=0)
    dds0, _ = reference_path(data, n, braking)
    h = max(dds0[: n // 2])
    py, _ = run_both(data, n, policy=dict(braking, hardMaxDrawdownPercent=h))
    assert ("SOFT_BRAKE", "HARD_STOP", ["HARD_DRAWDOWN", "SOFT_DRAWDOWN"]) in py.risk_events
    # daily-loss line at a reached loss
    m = max(losses[: n // 2])
    assert m > 0
    py, _ = run_both(data, n, policy=dict(calm, maxDailyLossUsdt=m))
    assert any(new == "HARD_STOP" and "DAILY_LOSS" in why for _, new, why in py.risk_events)
