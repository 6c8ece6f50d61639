"""NativePaperEngine (the worker's paper Engine surface on the C++ engine) against
hean.worker.engine.Engine, candle by candle on recorded Bybit data, with control
changes in between: same ledger, risk events, counters and per-symbol state."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hean.engine.worker_adapter import NativePaperEngine
from hean.worker.engine import Engine
from hean.worker.ledger import Ledger

from test_native_replay import data, fill_key, make, rows  # noqa: F401  (fixture)


def compare(py: Engine, nat: NativePaperEngine) -> None:
    assert [fill_key(f) for f in nat.ledger.fills] == [fill_key(f) for f in py.ledger.fills]
    for s in py.symbols:
        a, b = nat.ledger.position(s), py.ledger.position(s)
        assert (a.size, a.entry_price) == (b.size, b.entry_price), s
    assert nat.ledger.realized_pnl == py.ledger.realized_pnl and nat.ledger.fees == py.ledger.fees
    nat.ledger.check()
    assert nat.equity() == py.equity() == nat.ledger.equity(py.marks())
    assert nat.drawdown_percent() == py.drawdown_percent()
    assert nat.risk_events == py.risk_events
    assert (nat.risk_state, nat.risk_reasons, nat.peak_equity) == (py.risk_state, py.risk_reasons, py.peak_equity)
    assert nat.reasons == +py.reasons and nat.rejects == +py.rejects and nat.dropped == +py.dropped
    assert (nat.bars_processed, nat.orders_sent, nat.order_seq, nat.now_ms) == (
        py.bars_processed, py.orders_sent, py.order_seq, py.now_ms)
    assert nat.top_reasons() == py.top_reasons() and nat.trading_active() == py.trading_active()
    for s, st in py.symbols.items():
        v = nat.symbols[s]
        assert (v.mark, v.stop_price, v.target_price, v.entry_orders, v.last_reason, v.quarantined, v.pending) == (
            st.mark, st.stop_price, st.target_price, st.entry_orders, st.last_reason, st.quarantined,
            st.pending is not None), s
    assert nat.marks() == py.marks()


def test_adapter_matches_engine_with_control_changes(data):  # noqa: F811
    sp, pol, inst = make(data, symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"),
                         policy=dict(softMaxDrawdownPercent=1, hardMaxDrawdownPercent=3, maxDailyLossUsdt=150,
                                     maxLeverage=3, maxPositionNotionalUsdt=20000, maxOpenPositions=2,
                                     maxOrdersPerMinute=60))
    py = Engine("adapter", sp, pol, inst, {"team": "a"})
    nat = NativePaperEngine("adapter", sp, pol, inst, {"team": "a"})
    assert nat.labels == {"team": "a"} and isinstance(nat.ledger, Ledger) and nat.executor is None
    feed = rows(data, ("BTCUSDT", "ETHUSDT", "SOLUSDT"), 12000)
    for k, (_, s, b) in enumerate(feed):
        if k == 3000:
            for e in (py, nat):
                e.set_quarantined({"ETHUSDT"})
        if k == 6000:
            for e in (py, nat):
                e.set_quarantined(set())
                e.blocked_reason = "MARKET_DATA_STALE"
        if k == 7000:
            for e in (py, nat):
                e.blocked_reason = None
        if k == 9000 and py.risk_state == "HARD_STOP":
            at = datetime.fromtimestamp(b.ts_ms / 1000, timezone.utc) + timedelta(days=1)
            assert nat.clear_hard_stop(at) == py.clear_hard_stop(at)
        py.on_bar(s, b)
        nat.on_bar(s, b)
        if k % 1500 == 0:
            compare(py, nat)
    for e in (py, nat):
        e.finish()
    compare(py, nat)
    assert len(py.ledger.fills) > 10 and py.risk_events  # the comparison is not vacuous
    nat.risk_events.pop()  # the worker consumes events; later ones still arrive
    py.risk_events.pop()
    for e in (py, nat):
        e.update_policy(None)
    assert nat.risk_events == py.risk_events


def test_adapter_refuses_exchange_execution(data):  # noqa: F811
    sp, pol, inst = make(data)
    nat = NativePaperEngine("adapter", sp, pol, inst)
    with pytest.raises(ValueError, match="paper only"):
        nat.executor = object()
    live = sp.model_copy(update={"mode": "testnet"})
    with pytest.raises(ValueError, match="paper"):
        NativePaperEngine("adapter", live, pol, inst)
