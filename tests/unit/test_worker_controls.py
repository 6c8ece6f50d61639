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
