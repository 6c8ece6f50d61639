"""A worker process for the chaos suite: the real exchange-execution path of
``hean.worker`` (``ExchangeRuntime`` with the Redis state, pybit against the test
exchange) driven by a simple order generator instead of candles, so that every run
sends many orders in a few seconds. Started by tests/chaos/test_chaos.py as
``python chaosworker.py``; configured by the environment:

* ``HEAN_REDIS_URL``, ``HEAN_STATE_LEASE_SECONDS`` - the state store (hean.worker.state)
* ``BYBIT_API_KEY``/``BYBIT_API_SECRET``, ``HEAN_BYBIT_*_URL`` - the test exchange
* ``CHAOS_NAME`` - the strategy name; ``CHAOS_HOLDER`` - the lease holder (pod) name
* ``CHAOS_ORDERS`` - how many orders to send (0: restore + reconcile only, then exit)
* ``HEAN_CHAOS_CRASH`` - ``<point>:<probability>``: SIGKILL at a submission point

It prints JSON lines on stdout: ``{"event": "ready", "t": unix s, "restored": ...}``
once the lease is held, the state loaded and the first reconciliation done;
``{"event": "fenced"}`` if it lost the lease; ``{"event": "done", ...}`` at the end.
SIGTERM (a pod deletion) stops it gracefully: pending state is committed, the lease
released.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sys
import tempfile
import time
from decimal import Decimal

from hean.worker.bybit import endpoints_for
from hean.worker.bybit.runtime import Blocks, ExchangeRuntime, fetch_instruments
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import Engine
from hean.worker.state import WorkerState


def emit(**kw) -> None:
    print(json.dumps(kw), flush=True)


async def main() -> int:
    env = os.environ
    name, holder = env["CHAOS_NAME"], env.get("CHAOS_HOLDER", f"pod-{os.getpid()}")
    n_orders = int(env.get("CHAOS_ORDERS", "0"))
    ep = endpoints_for("testnet", env)
    spec = StrategySpec.model_validate({"strategy": "impulse", "symbols": ["BTCUSDT"], "mode": "testnet",
                                        "capital": 10000, "riskPolicyRef": {"name": "p"},
                                        "marketData": {"source": "live"}})
    pol = RiskPolicySpec.model_validate({"maxDailyLossUsdt": 1e6, "maxPositionNotionalUsdt": 1e6})
    eng = Engine(name, spec, pol, await asyncio.to_thread(fetch_instruments, ep.rest, "linear", ["BTCUSDT"]))
    state = WorkerState.from_env("chaos", name, holder)
    blocks = Blocks()
    blocks.engine = eng
    rt = ExchangeRuntime(eng, "chaos", name, ep, tempfile.mkdtemp(prefix="chaosw-"), blocks,
                         reconcile_seconds=float(env.get("CHAOS_RECONCILE_SECONDS", "2")), timeout=1.0,
                         env=env, state=state)
    rt.execution.lookup_delay = 0.1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(rt.run())
    st = eng.symbols["BTCUSDT"]
    t0 = time.time()
    while not (rt.execution.reconciled and eng.blocked_reason is None and rt.private.connected()):
        if task.done():
            task.result()
        if stop.is_set():
            break
        if state.store.fenced:
            emit(event="fenced", reason=state.store.fenced_reason)
            return 3
        await asyncio.sleep(0.02)
    emit(event="ready", t=time.time(), t0=t0, token=state.store.token, loadSeconds=state.load_seconds,
         repairs=dict(rt.execution.repairs))
    sent = 0
    fenced_refusals = 0
    while sent < n_orders and not stop.is_set():
        if state.store.fenced:
            break
        if st.pending is not None or eng.blocked_reason is not None:
            await asyncio.sleep(0.01)
            continue
        if st.mark is None:
            st.mark = Decimal("60000")
        pos = eng.ledger.position("BTCUSDT").size
        if pos > 0 and (pos >= Decimal("0.01") or random.random() < 0.5):
            eng._queue(st, "Sell", pos, True, "CHAOS")
        else:
            eng._queue(st, "Buy", Decimal(random.randint(1, 5)) / 1000, False, "CHAOS")
        sent += 1
        await asyncio.sleep(random.uniform(0, 0.03))
    # wait for the last order to settle (or for a stop)
    t_end = time.monotonic() + 5
    while st.pending is not None and time.monotonic() < t_end and not stop.is_set() and not state.store.fenced:
        await asyncio.sleep(0.02)
    if state.store.fenced:
        emit(event="fenced", reason=state.store.fenced_reason, sent=sent,
             refused=rt.execution.engine.rejects.get("FENCED", 0))
        task.cancel()
        return 3
    # graceful end (SIGTERM or done): commit what is pending, release the lease
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    try:
        await asyncio.wait_for(state.writer.flush(), 5)
    except Exception as e:  # noqa: BLE001
        emit(event="flush_failed", error=repr(e))
    await state.release()
    emit(event="done", sent=sent, stopped=stop.is_set(), counters=dict(rt.execution.counters),
         rejects=dict(eng.rejects), fenced_refusals=fenced_refusals, state=dict(state.store.counters))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("HEAN_LOG_LEVEL", "WARNING"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    code = asyncio.run(main())
    os._exit(code)  # pybit's WebSocket threads must not keep a dead worker alive
