"""The paper engine on real recorded BTCUSDT/ETHUSDT candles.

Expected figures are recomputed here independently of the engine's own accounting:
equity from the raw fills (cash flows), fees from the fee schedule, and rounding
from the instrument rules read from the real Bybit capture.
"""

from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from hean import api
from hean.marketdata import load_instruments, load_klines
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine

POLICY = dict(softMaxDrawdownPercent=5, hardMaxDrawdownPercent=10, maxDailyLossUsdt=1000, maxLeverage=3,
              maxPositionNotionalUsdt=20000, maxOpenPositions=4, maxOrdersPerMinute=60)


@pytest.fixture(scope="module")
def data(marketdata_dir):
    inst = load_instruments(marketdata_dir)
    series = {s: load_klines(marketdata_dir, s, "1") for s in ("BTCUSDT", "ETHUSDT")}
    return inst, series


def make_engine(data, symbols=("BTCUSDT", "ETHUSDT"), policy=POLICY, **spec):
    inst, _ = data
    sp = StrategySpec.model_validate({"strategy": "impulse", "symbols": list(symbols), "capital": 10000,
                                      "riskPolicyRef": {"name": "p"}, **spec})
    instruments = {s: inst[("linear", s)] for s in symbols}
    return Engine("test", sp, RiskPolicySpec.model_validate(policy) if policy else None, instruments)


def run(engine, data, n=20000, symbols=("BTCUSDT", "ETHUSDT")):
    _, series = data
    rows = sorted(((b.ts_ms, s, b) for s in symbols for b in series[s].bars[:n]), key=lambda t: (t[0], t[1]))
    for _, s, b in rows:
        engine.on_bar(s, b)
    return engine


def test_replay_trades_and_ledger_reconciles_with_cash_flows(data):
    e = run(make_engine(data), data)
    fills = e.ledger.fills
    assert len(fills) > 20, "the impulse strategy should trade on 20k real candles"
    inst, _ = data
    cash = D(0)
    size = {"BTCUSDT": D(0), "ETHUSDT": D(0)}
    for f in fills:
        i = inst[("linear", f.symbol)]
        assert f.qty % i.qty_step == 0 and f.price % i.tick_size == 0
        assert f.qty >= i.min_order_qty and f.qty * f.price >= i.min_notional
        assert f.fee == (f.qty * f.price * D("0.00055")).quantize(D("0.00000001"))
        cash += (f.qty * f.price if f.side == "Sell" else -f.qty * f.price) - f.fee
        size[f.symbol] += f.qty if f.side == "Buy" else -f.qty
    marks = e.marks()
    expected_equity = D(10000) + cash + sum(size[s] * marks[s] for s in size)
    assert e.equity() == expected_equity
    assert {s: p.size for s, p in e.ledger.positions.items()} == {s: v for s, v in size.items() if s in e.ledger.positions}
    assert len({f.exec_id for f in fills}) == len(fills)
    assert all(len(f.order_link_id) <= 36 for f in fills)
    e.ledger.check()


def test_fills_happen_at_next_open_with_slippage_against_the_trader(data):
    _, series = data
    e = run(make_engine(data, symbols=("BTCUSDT",), execution={"slippageBps": 10}), data, 8000, ("BTCUSDT",))
    bars = {b.ts_ms: b for b in series["BTCUSDT"].bars}
    entries = [f for f in e.ledger.fills if f.reason == "IMPULSE_ENTRY"]
    assert entries
    for f in entries:
        o = bars[f.ts_ms].open
        if f.side == "Buy":
            assert f.price >= o * D("1.001") and f.price - o * D("1.001") < D("0.1")
        else:
            assert f.price <= o * D("0.999") and o * D("0.999") - f.price < D("0.1")


def test_quarantine_blocks_new_entries_only_on_that_symbol(data):
    e = make_engine(data)
    e.set_quarantined({"BTCUSDT"})
    assert e.risk_state == api.RISK_QUARANTINE
    run(e, data, 10000)
    assert not [f for f in e.ledger.fills if f.symbol == "BTCUSDT"]
    assert [f for f in e.ledger.fills if f.symbol == "ETHUSDT"]
    assert e.reasons["SYMBOL_QUARANTINED"] > 0


def test_paused_makes_no_orders(data):
    e = run(make_engine(data, paused=True), data, 5000)
    assert e.ledger.fills == [] and e.orders_sent == 0 and e.reasons["PAUSED"] > 0


def test_missing_policy_makes_no_orders(data):
    e = run(make_engine(data, policy=None), data, 5000)
    assert e.ledger.fills == [] and e.reasons["NO_RISK_POLICY"] > 0


def test_hard_stop_flattens_and_latches_until_cleared(data):
    e = make_engine(data)
    run(e, data, 6000)
    pol = dict(POLICY, softMaxDrawdownPercent=0)
    _, series = data
    # make sure there is some drawdown: walk on until equity is below peak
    i = 6000
    while e.drawdown_percent() == 0 and i < 20000:
        for s in ("BTCUSDT", "ETHUSDT"):
            e.on_bar(s, series[s].bars[i])
        i += 1
    pol["hardMaxDrawdownPercent"] = max(e.drawdown_percent() / 2, D("0.0001"))
    had_positions = bool(e.ledger.open_positions())
    n_fills = len(e.ledger.fills)
    e.update_policy(RiskPolicySpec.model_validate(pol))
    assert e.risk_state == api.RISK_HARD_STOP
    for j in range(i, i + 50):
        for s in ("BTCUSDT", "ETHUSDT"):
            e.on_bar(s, series[s].bars[j])
    assert e.ledger.open_positions() == []
    after = e.ledger.fills[n_fills:]
    assert all(f.reason == "HARD_STOP" for f in after)
    assert bool(after) == had_positions
    assert e.reasons["HARD_STOP"] > 0
    assert e.risk_state == api.RISK_HARD_STOP  # latched even if the limit is loosened
    e.update_policy(RiskPolicySpec.model_validate(POLICY))
    assert e.risk_state == api.RISK_HARD_STOP
    assert not e.clear_hard_stop(datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert e.clear_hard_stop(datetime(2100, 1, 1, tzinfo=timezone.utc))
    assert e.risk_state == api.RISK_NORMAL


def test_soft_brake_halves_entry_risk(data):
    full = run(make_engine(data, symbols=("ETHUSDT",)), data, 6000, ("ETHUSDT",))
    half = make_engine(data, symbols=("ETHUSDT",), policy=dict(POLICY, softMaxDrawdownPercent=0))
    run(half, data, 6000, ("ETHUSDT",))
    assert half.risk_state == api.RISK_SOFT_BRAKE
    f0 = next(f for f in full.ledger.fills if f.reason == "IMPULSE_ENTRY")
    f1 = next(f for f in half.ledger.fills if f.reason == "IMPULSE_ENTRY")
    assert f0.ts_ms == f1.ts_ms
    # half the risk budget -> half the size, up to one qty step of rounding
    assert abs(f1.qty * 2 - f0.qty) <= D("0.02")


def test_structural_spec_fields_validated_with_field_names():
    from pydantic import ValidationError

    from hean.worker.config import describe_validation_error

    with pytest.raises(ValidationError) as ei:
        StrategySpec.model_validate({"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": -5,
                                     "riskPolicyRef": {"name": "p"}, "params": {"emaFastPeriod": 50, "emaSlowPeriod": 20}})
    msg = describe_validation_error("spec", ei.value)
    assert "spec.capital" in msg and "emaFastPeriod" in msg
