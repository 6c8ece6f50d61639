"""Market-data feeds of ``hean backtest`` (and of benchmarks/strategy_backtests.py).

A feed is a time-ordered list of :class:`Event` that :func:`dispatch` hands to the
engine's matching entry point (the live paper worker's entry points):

* ``bar``     -> ``Engine.on_bar(symbol, Bar)``: recorded Bybit candles
  (``bybit/klines/<SYMBOL>_<interval>m.csv``) or, for funding, the 8-h mark-price
  candles of the Binance XRPUSDT perpetual;
* ``book``    -> ``Engine.on_book(symbol, BookTop)``: recorded Bybit order-book frames
  (``bybit/ws/BYBIT.jsonl.zst``, topics ``orderbook.200.<SYMBOL>``) applied to the native
  :class:`hean.engine.book.OrderBook`, top-of-book via
  :func:`hean.worker.strategies.scalping.book_top`;
* ``funding`` -> ``Engine.on_funding(symbol, rate, ts_ms, next_funding_ms)``: settled
  funding rates (fraction per interval) from the Binance feather history
  (``binance/futures/<BASE>_USDT_USDT-8h-funding_rate.feather``, rate in column ``open``);
* ``leg``     -> ``Engine.on_leg_bar(symbol, "spot", Bar)``: the spot leg of a two-leg
  strategy, either a CSV with the kline header or CONSTRUCTED from the perpetual
  candles by :func:`constructed_spot`.

Ties at one timestamp are ordered by symbol, then ``funding`` < ``leg`` < ``bar`` <
``book``: a settlement is booked on the position held before the candle that opens at
the settlement time, and a spot-leg candle comes before the perpetual's candle of the
same open time (as ``Engine.on_leg_bar`` requires).
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from datetime import timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from hean.marketdata import Bar, parse_kline_rows

FEEDS = ("candles", "book", "funding", "basis")
"""Feed names of ``--feed``: what each strategy needs by default is :data:`DEFAULT_FEED`."""

DEFAULT_FEED = {"impulse": "candles", "momentum": "candles", "grid": "candles", "scalping": "book",
                "funding_harvest": "funding", "basis_arbitrage": "basis"}
"""``spec.strategy`` -> the feed ``hean backtest`` uses unless ``--feed`` says otherwise."""

_PRIO = {"funding": 0, "leg": 1, "bar": 2, "book": 3}
EIGHT_HOURS_MS = 8 * 3_600_000


class FeedError(ValueError):
    """Missing or unreadable market data; the message names the file or option."""


@dataclass(frozen=True)
class Event:
    """One feed event: ``ts_ms`` epoch milliseconds (UTC), ``kind`` one of ``bar``,
    ``book``, ``funding``, ``leg``, ``symbol`` the perpetual's symbol, ``payload`` a
    :class:`Bar`, a ``BookTop`` or ``(rate: Decimal fraction, next_funding_ms: int)``."""

    ts_ms: int
    kind: str
    symbol: str
    payload: Any

    def key(self) -> tuple[int, str, int]:
        return (self.ts_ms, self.symbol, _PRIO[self.kind])


def merge_events(*streams: Iterable[Event]) -> list[Event]:
    """Merge time-ordered event streams into one list ordered by :meth:`Event.key`."""
    return list(heapq.merge(*[sorted(s, key=Event.key) for s in streams], key=Event.key))


def clip(events: Iterable[Event], start_ms: int | None, end_ms: int | None) -> list[Event]:
    """Keep events with ``start_ms <= ts_ms < end_ms`` (either bound optional)."""
    return [e for e in events if (start_ms is None or e.ts_ms >= start_ms) and (end_ms is None or e.ts_ms < end_ms)]


def dispatch(engine, ev: Event) -> None:
    """Hand ``ev`` to the engine entry point of its kind (see module docstring)."""
    if ev.kind == "bar":
        engine.on_bar(ev.symbol, ev.payload)
    elif ev.kind == "book":
        engine.on_book(ev.symbol, ev.payload)
    elif ev.kind == "funding":
        rate, next_ms = ev.payload
        engine.on_funding(ev.symbol, rate, ev.ts_ms, next_ms)
    elif ev.kind == "leg":
        engine.on_leg_bar(ev.symbol, "spot", ev.payload)
    else:  # pragma: no cover - Event kinds are closed
        raise ValueError(f"unknown event kind {ev.kind!r}")


def bar_events(series: dict[str, Any]) -> list[Event]:
    """Candle events of ``symbol -> KlineSeries``."""
    return merge_events(*[[Event(b.ts_ms, "bar", s, b) for b in ks.bars] for s, ks in series.items()])


# ---- order book -------------------------------------------------------------------
def default_book_path(marketdata_dir: Path) -> Path:
    """The recorded Bybit mainnet WebSocket capture (order-book frames of BTCUSDT,
    ETHUSDT, SOLUSDT, about 45 s; ../shared/marketdata/README.md)."""
    return Path(marketdata_dir) / "bybit" / "ws" / "BYBIT.jsonl.zst"


def book_events(path: Path, symbols: Iterable[str], depth_levels: int = 5,
                dropped: Counter | None = None) -> list[Event]:
    """Apply the ``orderbook.200.<SYMBOL>`` frames of the capture ``path`` (zstd JSON
    lines, Bybit v5 public orderbook topic,
    https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook) to one native
    :class:`hean.engine.book.OrderBook` per symbol and return a ``book`` event with
    the top of book (sizes summed over ``depth_levels`` levels) after every frame the
    book accepted. A frame the book rejects (gap, stale ``u``) is dropped and counted in
    ``dropped["book_<status>"]``. Raises FeedError if the file is missing or holds no
    frame for a symbol."""
    from hean.engine.book import OrderBook, iter_ws_capture, level_decimals
    from hean.worker.strategies.scalping import book_top

    syms = list(symbols)
    path = Path(path)
    if not path.is_file():
        raise FeedError(f"--book: order-book capture {path} does not exist")
    frames = [m for m in iter_ws_capture(path, "orderbook.200.") if m["topic"].split(".")[-1] in syms]
    books = {}
    for s in syms:
        mine = [m for m in frames if m["topic"].split(".")[-1] == s]
        if not mine:
            raise FeedError(f"--book: {path} has no orderbook.200.{s} frames (spec.symbols)")
        pd, sd = level_decimals(mine)
        books[s] = OrderBook(max(pd, 1), max(sd, 1))
    out = []
    for m in frames:
        s = m["topic"].split(".")[-1]
        d = m["data"]
        status = books[s].apply(m["type"] == "snapshot", [tuple(x) for x in d["b"]], [tuple(x) for x in d["a"]],
                                int(d["u"]), int(d.get("seq", 0)), int(m["ts"]))
        if status != "OK":
            if dropped is not None:
                dropped[f"book_{status}"] += 1
            continue
        top = book_top(books[s], int(m["ts"]), depth_levels)
        if top is not None:
            out.append(Event(int(m["ts"]), "book", s, top))
    return out


# ---- funding ----------------------------------------------------------------------
def default_funding_paths(marketdata_dir: Path, symbol: str) -> tuple[Path, Path]:
    """``(funding-rate file, mark-price file)`` of ``symbol`` in the shared Binance
    history: ``binance/futures/<BASE>_USDT_USDT-8h-funding_rate.feather`` and
    ``...-8h-mark.feather`` (only XRPUSDT exists, 2021-11-18 .. 2021-12-18)."""
    base = symbol[:-4] if symbol.endswith("USDT") else symbol
    d = Path(marketdata_dir) / "binance" / "futures"
    return d / f"{base}_USDT_USDT-8h-funding_rate.feather", d / f"{base}_USDT_USDT-8h-mark.feather"


def _read_feather(path: Path, flag: str) -> dict:
    try:
        import pyarrow.feather as feather
    except ImportError as e:  # pragma: no cover - pyarrow is a test dependency
        raise FeedError(f"{flag}: reading {path} needs pyarrow (pip install pyarrow)") from e
    if not Path(path).is_file():
        raise FeedError(f"{flag}: {path} does not exist")
    cols = feather.read_table(path).to_pydict()
    missing = [c for c in ("date", "open", "high", "low", "close", "volume") if c not in cols]
    if missing:
        raise FeedError(f"{flag}: {path} lacks columns {missing} (needs date,open,high,low,close,volume)")
    return cols


def _ms(d) -> int:
    return int(d.astimezone(timezone.utc).timestamp() * 1000)


def funding_events(symbol: str, funding_path: Path, mark_path: Path,
                   dropped: Counter | None = None) -> list[Event]:
    """Funding and mark events of ``symbol`` from feather files with columns
    ``date,open,high,low,close,volume`` (freqtrade/Binance layout): the funding rate
    of the settlement at ``date`` is ``open`` (fraction per interval, > 0: longs pay
    shorts); the mark-price candles become ``bar`` events. ``next_funding_ms`` is the
    next row's time (the last row: its time + the previous spacing, else + 8 h).
    A non-finite rate or malformed mark candle is dropped and counted."""
    fund = _read_feather(funding_path, "--funding")
    mark = _read_feather(mark_path, "--mark")
    # Settlement times carry a few ms of exchange latency (e.g. 16:00:00.005); the
    # settlement belongs to the 8-h boundary, so it is truncated to the second and
    # booked before the mark candle that opens there (on the position held until then).
    times = [int(d.astimezone(timezone.utc).timestamp()) * 1000 for d in fund["date"]]
    out = []
    for i, (t, r) in enumerate(zip(times, fund["open"])):
        rate = Decimal(str(r))
        if not rate.is_finite():
            if dropped is not None:
                dropped["bad_funding_rate"] += 1
            continue
        nxt = times[i + 1] if i + 1 < len(times) else t + ((t - times[i - 1]) if i else EIGHT_HOURS_MS)
        out.append(Event(t, "funding", symbol, (rate, nxt)))
    rows = [[str(d.astimezone(timezone.utc).isoformat()), *(repr(float(mark[c][i])) for c in
             ("open", "high", "low", "close", "volume"))] for i, d in enumerate(mark["date"])]
    ks = parse_kline_rows(symbol, "480", rows)
    if dropped is not None:
        dropped.update(ks.dropped)
    if not ks.bars:
        raise FeedError(f"--mark: {mark_path} has no valid mark-price candles")
    return merge_events(out, [Event(b.ts_ms, "bar", symbol, b) for b in ks.bars])


# ---- spot leg ---------------------------------------------------------------------
def constructed_spot(bars: list[Bar], tick: Decimal) -> list[Bar]:
    """A CONSTRUCTED spot series from perpetual candles (there is no recorded spot
    series in the shared month): every price times ``1 - 0.1 * (close / mean of the
    last 240 closes - 1)``, rounded to ``tick`` (USDT), so the basis (perp over spot)
    widens in rallies as contango does. Same timestamps and volumes as ``bars``."""
    closes = [float(b.close) for b in bars]
    csum = [0.0]
    for c in closes:
        csum.append(csum[-1] + c)
    out = []
    for i, b in enumerate(bars):
        lo = max(0, i - 239)
        mean = (csum[i + 1] - csum[lo]) / (i + 1 - lo)
        f = 1 - Decimal(repr(round(float(0.1 * (closes[i] / mean - 1)), 6)))
        out.append(Bar(b.ts_ms, (b.open * f).quantize(tick), (b.high * f).quantize(tick), (b.low * f).quantize(tick),
                       (b.close * f).quantize(tick), b.volume))
    return out


def load_spot_csv(path: Path, symbol: str, interval: str) -> list[Bar]:
    """Spot candles of ``symbol`` from a CSV with the header
    ``timestamp,open,high,low,close,volume`` (the klines layout). Raises FeedError."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise FeedError(f"--spot-leg: {path} does not exist")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header[:6] != ["timestamp", "open", "high", "low", "close", "volume"]:
            raise FeedError(f"--spot-leg: {path}: header must be timestamp,open,high,low,close,volume")
        return parse_kline_rows(symbol, interval, reader).bars


def leg_events(symbol: str, spot_bars: list[Bar], perp_times: set[int] | None = None) -> list[Event]:
    """``leg`` events of ``symbol``'s spot candles (only at perpetual candle times when
    ``perp_times`` is given, so each spot candle precedes its perpetual candle)."""
    return [Event(b.ts_ms, "leg", symbol, b) for b in spot_bars if perp_times is None or b.ts_ms in perp_times]
