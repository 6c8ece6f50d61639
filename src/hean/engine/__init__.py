"""hean's native engine core (C++ via :mod:`hean._native`) with pure-Python references.

* :mod:`hean.engine.replay`: :class:`NativeEngine` (per-candle, for the live worker)
  and :func:`replay` (a whole recorded stream in one call), fill-for-fill identical
  to :class:`hean.worker.engine.Engine`.
* :mod:`hean.engine.book`: the L2 :class:`OrderBook` for Bybit v5 snapshots/deltas,
  the :class:`PaperMatcher` (market/limit/IOC/FOK/PostOnly/reduce-only, queue
  position, exact fees, Bybit retCodes), readers for recorded book data and a
  pure-Python :class:`ReferenceBook`; :func:`replay_market` feeds recorded book and
  trade frames through a matcher with a Python strategy hook.
* :mod:`hean.engine.fill`: the paper-fill model (C++ ``native/include/hean/fill.hpp``)
  at the Decimal boundary; the replay's fills and the live worker's paper fills are
  computed by the same functions.
* :mod:`hean.engine.market`: the one-call native replay of recorded candles, trades
  and book updates (:func:`replay_market_native` over a :class:`MarketTape` from
  :func:`encode_frames`) and its pure-Python twin :func:`replay_market_reference`.
"""

from hean.engine.book import OrderBook, PaperMatcher, ReferenceBook, matcher_for, replay_market
from hean.engine.market import (
    MarketParams,
    MarketReplayResult,
    MarketRisk,
    MarketSymbol,
    MarketTape,
    encode_frames,
    market_symbols,
    read_market_frames,
    replay_market_native,
    replay_market_reference,
)
from hean.engine.replay import (
    FILL_REASONS,
    REASONS,
    REJECTS,
    RISK_STATES,
    NativeEngine,
    ReplayInput,
    ReplayResult,
    impulse_strategy,
    merge_klines,
    replay,
)

__all__ = [
    "OrderBook",
    "PaperMatcher",
    "ReferenceBook",
    "matcher_for",
    "replay_market",
    "MarketParams",
    "MarketReplayResult",
    "MarketRisk",
    "MarketSymbol",
    "MarketTape",
    "encode_frames",
    "market_symbols",
    "read_market_frames",
    "replay_market_native",
    "replay_market_reference",
    "FILL_REASONS",
    "REASONS",
    "REJECTS",
    "RISK_STATES",
    "NativeEngine",
    "ReplayInput",
    "ReplayResult",
    "impulse_strategy",
    "merge_klines",
    "replay",
]
