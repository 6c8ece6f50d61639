"""``/trades``: the closed round trips the promotion controller's anti-overfitting
gates read (docs/promotion.md), each labelled with the market regime at its entry.

The operator fetches it from the worker pod (and from the shadow candidate's pod)
and applies the thresholds of ``spec.promotion.gates`` with
:func:`hean.selector.evaluate`; the worker only reports facts. Bounded: the last
:data:`MAX_TRADES` trades.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import numpy as np

from hean.selector import REGIME_WINDOW, label_trades, regime_labels, round_trips

MAX_TRADES = 2000


def capture(worker) -> dict:
    """Copy what :func:`compute` needs from ``worker`` (a
    :class:`hean.worker.app.Worker`) on the event loop, so the engine is not read
    while it changes."""
    s = worker.settings
    e = worker.engine
    out = {"ready": e is not None, "role": s.role, "revision": s.revision}
    if e is None:
        return out
    equity = e.equity()
    return {**out, "mode": e.spec.mode, "capitalUsdt": str(e.ledger.capital),
            "netPnlUsdt": str((equity - e.ledger.capital).quantize(Decimal("0.01"))),
            "_fills": list(e.ledger.fills), "_hist": {sym: list(h) for sym, h in e.close_history.items()}}


def compute(cap: dict, window: int = REGIME_WINDOW) -> dict:
    """``{ready, role, revision, mode, capitalUsdt, netPnlUsdt, closedTrades, trades:
    [{symbol, side, entryTsMs, exitTsMs, pnlUsdt, regime}]}`` from :func:`capture`'s
    copy; money in USDT (net PnL = equity - capital, a decimal string)."""
    fills, hist = cap.pop("_fills", None), cap.pop("_hist", None)
    if fills is None:
        return {**cap, "closedTrades": 0, "trades": []}
    bars = {}
    for sym, h in hist.items():
        if h:
            ts = np.fromiter((t for t, _ in h), dtype=np.int64, count=len(h))
            closes = np.fromiter((c for _, c in h), dtype=np.float64, count=len(h))
            bars[sym] = (ts, regime_labels(closes, window))
    trips = label_trades(round_trips(fills), bars)
    return {**cap, "closedTrades": len(trips), "trades": [t.to_dict() for t in trips[-MAX_TRADES:]]}


async def trades_snapshot(worker, window: int = REGIME_WINDOW) -> dict:
    """The ``/trades`` document (``window``: bars of the regime labels, 5..10000;
    ValueError outside): captured on the loop, computed in a thread."""
    if not 5 <= window <= 10_000:
        raise ValueError(f"window must be 5..10000 bars, got {window}")
    return await asyncio.to_thread(compute, capture(worker), window)
