"""Limit-first order routing for the paper engine (Quantum Trader's hybrid orders).

``RiskPolicy.spec.orderRouter.mode: limitFirst`` turns the orders a strategy sends
(entries and its own exits; never stop-losses, HARD_STOP or profit-capture
flattening, which stay market orders) into resting limit orders:

* price: the decision price (the candle's close) moved ``limitOffsetBps`` basis
  points to the passive side (a Buy below, a Sell above), rounded to the tick on the
  passive side. A ``postOnly`` order that would cross the market at placement (not
  possible at offset >= 0 against the last trade) is rejected like Bybit's
  ``PostOnly`` (retCode 110xxx family, counted as ``POST_ONLY_WOULD_TAKE``).
* fill: a resting Buy fills at its limit price when a later candle trades *through*
  it (``low < limit``; a Sell when ``high > limit``), the whole quantity, as maker
  (maker fee, ``liquidity="maker"``). Touching the price is not enough: the order
  is assumed to be last in the queue.
* fallback: at the close of a candle where it did not fill, if ``timeoutSeconds``
  passed since placement (market time) or the close moved more than ``maxChaseBps``
  basis points away from the limit (up for a Buy, down for a Sell), the limit is
  cancelled and a market order is sent in its place (filled at the next candle's
  open as every paper market order, taker fee).

Exits sent through the router stay reduce-only (the engine never lets them increase
a position; with no position left they are rejected). Exchange modes
(testnet/demo/live) keep market orders: the router only models the paper venue.
"""

from __future__ import annotations

from decimal import Decimal

BPS = Decimal("0.0001")
LIMIT = "Limit"
MARKET = "Market"
#: order reasons that are never routed as limits (safety exits must not wait)
NEVER_ROUTED = frozenset({"HARD_STOP", "STOP_LOSS", "TAKE_PROFIT", "PROFIT_CAPTURE", "FLASH_CRASH"})

FILL = "fill"
FALLBACK_TIMEOUT = "LIMIT_TIMEOUT"
FALLBACK_CHASE = "LIMIT_PRICE_MOVED"


def routes(spec, reason: str, exchange: bool) -> bool:
    """True if an order with ``reason`` becomes a limit order under ``spec``
    (OrderRouterSpec or None)."""
    return spec is not None and spec.mode == "limitFirst" and not exchange and reason not in NEVER_ROUTED


def limit_price(spec, side: str, ref: Decimal, instrument) -> Decimal:
    """The resting limit price for ``side`` from the decision price ``ref`` (USDT),
    ``limitOffsetBps`` on the passive side, rounded to ``instrument.tick_size``
    towards the passive side."""
    off = Decimal(repr(spec.limitOffsetBps)) * BPS
    if side == "Buy":
        return instrument.round_price(ref * (1 - off), "down")
    return instrument.round_price(ref * (1 + off), "up")


def would_take(side: str, price: Decimal, last: Decimal) -> bool:
    """True if a limit at ``price`` would cross the market whose last trade is
    ``last`` (a post-only order is then rejected)."""
    return price > last if side == "Buy" else price < last


def on_bar(spec, order, bar) -> str | None:
    """Decide what happens to resting limit ``order`` on candle ``bar``.

    Returns :data:`FILL` (fill at ``order.price`` as maker), :data:`FALLBACK_TIMEOUT`
    or :data:`FALLBACK_CHASE` (replace by a market order at the next open), or None
    (keep resting)."""
    px = order.price
    if (order.side == "Buy" and bar.low < px) or (order.side == "Sell" and bar.high > px):
        return FILL
    if bar.ts_ms - order.created_ts_ms >= spec.timeoutSeconds * 1000:
        return FALLBACK_TIMEOUT
    chase = Decimal(repr(spec.maxChaseBps)) * BPS
    if order.side == "Buy" and bar.close > px * (1 + chase):
        return FALLBACK_CHASE
    if order.side == "Sell" and bar.close < px * (1 - chase):
        return FALLBACK_CHASE
    return None
