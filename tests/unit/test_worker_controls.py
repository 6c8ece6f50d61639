"""The worker's reaction to control objects, without a cluster: a latched HARD_STOP is
cleared only by a ``hean.io/clear-hard-stop`` annotation set after the stop (wall
clock), also in a replay whose data clock is in the past."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

from hean import api
from hean.marketdata import load_instruments
from hean.worker.app import Worker, WorkerSettings
from hean.worker.config import StrategySpec
from hean.worker.engine import Engine


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_clear_annotation_must_be_later_than_the_stop(marketdata_dir):
    spec = {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 10000, "riskPolicyRef": {"name": "p"}}
    policy = {"spec": {"softMaxDrawdownPercent": 5, "hardMaxDrawdownPercent": 10, "maxDailyLossUsdt": 1e6,
                       "maxPositionNotionalUsdt": 20000}}
    w = Worker(WorkerSettings(strategy_name="x", marketdata_dir=marketdata_dir))
    inst = load_instruments(marketdata_dir)
    w.engine = Engine("x", StrategySpec.model_validate(spec), None, {"BTCUSDT": inst[("linear", "BTCUSDT")]})
    w.engine.now_ms = 1_748_623_140_000  # a replay: the data clock is in 2025
    w.policies = SimpleNamespace(cache={"p": policy})
    w.quarantines = SimpleNamespace(cache={})
    before = datetime.now(timezone.utc) - timedelta(minutes=5)  # a stale annotation from an earlier stop
    obj = {"metadata": {"name": "x", "generation": 1, "annotations": {api.ANNOTATION_CLEAR_HARD_STOP: rfc3339(before)}},
           "spec": spec}
    w._apply_strategy(obj)
    assert w.engine.risk_state == api.RISK_NORMAL
    w.engine.peak_equity = Decimal(20000)  # equity 10,000: a 50 % drawdown breaches the 10 % hard limit
    w._apply_policy()
    assert w.engine.risk_state == api.RISK_HARD_STOP and w.risk_state_changed_at is not None
    # any later event on the strategy (e.g. a status write) re-applies the stale annotation: still stopped
    w._apply_strategy(obj)
    assert w.engine.risk_state == api.RISK_HARD_STOP
    time.sleep(1.01)  # annotations have one-second resolution
    obj["metadata"]["annotations"][api.ANNOTATION_CLEAR_HARD_STOP] = rfc3339(datetime.now(timezone.utc) + timedelta(seconds=1))
    w._apply_strategy(obj)
    assert w.engine.risk_state == api.RISK_NORMAL  # cleared: the peak is reset to the current equity
    assert w.engine.drawdown_percent() == 0


def test_quarantine_expiry_is_applied_by_one_timer_at_the_expiry(marketdata_dir):
    """The worker sleeps until the earliest expiry (not a fixed poll) and lifts the
    block right after it; a new quarantine re-arms the timer at once."""
    import asyncio

    spec = {"strategy": "impulse", "symbols": ["BTCUSDT", "ETHUSDT"], "capital": 10000, "riskPolicyRef": {"name": "p"}}
    w = Worker(WorkerSettings(strategy_name="x", marketdata_dir=marketdata_dir))
    inst = load_instruments(marketdata_dir)
    w.engine = Engine("x", StrategySpec.model_validate(spec), None,
                      {s: inst[("linear", s)] for s in spec["symbols"]})
    now = datetime.now(timezone.utc)

    def q(name, symbol, expires):
        return {"metadata": {"name": name, "creationTimestamp": rfc3339(now)},
                "spec": {"symbol": symbol, "reason": "t", "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}

    soon = now + timedelta(seconds=0.6)
    w.quarantines = SimpleNamespace(cache={"a": q("a", "BTCUSDT", soon),
                                           "later": q("later", "ETHUSDT", now + timedelta(hours=1)),
                                           "bad": {"metadata": {"name": "bad"}, "spec": {"symbol": "X", "expiresAt": "nonsense"}}})
    assert abs(w.next_quarantine_expiry(now) - 0.6) < 1e-6  # the earliest; the malformed one is skipped
    assert w.next_quarantine_expiry(now + timedelta(hours=2)) is None

    async def run():
        w._apply_quarantines()
        assert w.quarantined_symbols == {"BTCUSDT", "ETHUSDT"}
        clock = asyncio.create_task(w.quarantine_clock())
        t0 = time.monotonic()
        while "BTCUSDT" in w.quarantined_symbols and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.01)
        lifted = time.monotonic() - t0
        # a new quarantine (as the informer reports it) re-arms the timer
        w.quarantines.cache["b"] = q("b", "BTCUSDT", datetime.now(timezone.utc) + timedelta(seconds=0.3))
        await w._on_quarantine("ADDED", w.quarantines.cache["b"])
        blocked_again = "BTCUSDT" in w.quarantined_symbols
        t1 = time.monotonic()
        while "BTCUSDT" in w.quarantined_symbols and time.monotonic() - t1 < 5:
            await asyncio.sleep(0.01)
        clock.cancel()
        return lifted, blocked_again, time.monotonic() - t1

    lifted, blocked_again, lifted_again = asyncio.run(run())
    assert 0.4 < lifted < 1.5, lifted
    assert blocked_again and lifted_again < 1.5, lifted_again
    assert w.quarantined_symbols == {"ETHUSDT"}
