"""Readers for the recorded Bybit market data in ``../shared/marketdata/``.

Two formats are read here:

* Bybit v5 linear 1/5/60-minute candles as CSV (``bybit/klines/<SYMBOL>_<N>m.csv``,
  header ``timestamp,open,high,low,close,volume``; ``timestamp`` is the ISO-8601 UTC
  candle open time, ``volume`` is in base coin), as fetched from
  ``/v5/market/kline`` (https://bybit-exchange.github.io/docs/v5/market/kline).
* Instrument info (tick size, qty step, minimum order qty and notional) from the
  REST ``/v5/market/instruments-info`` responses inside the raw mainnet capture
  ``bybit/ws/BYBIT.jsonl.zst``
  (https://bybit-exchange.github.io/docs/v5/market/instrument).

Prices and sizes stay decimal strings until they reach :class:`decimal.Decimal`, so no
exchange-precision value passes through a binary float on its way to the ledger.
Malformed rows are dropped and counted, never traded on.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

KLINE_INTERVALS = ("1", "5", "60")


@dataclass(frozen=True)
class Bar:
    """One candle. ``ts_ms`` is the open time in epoch milliseconds (UTC); prices in
    quote currency (USDT) and ``volume`` in base coin, all exact decimals."""

    ts_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass
class KlineSeries:
    """Candles of one symbol, oldest first, plus what was dropped while reading.

    ``bars`` is a list of :class:`Bar`; ``dropped`` counts rejected rows by reason
    (``bad_number``, ``non_positive_price``, ``high_below_low``, ``out_of_order``,
    ``duplicate_timestamp``, ``bad_timestamp``, ``short_row``).
    """

    symbol: str
    interval: str
    bars: list[Bar]
    dropped: Counter = field(default_factory=Counter)

    @property
    def ts_ms(self) -> np.ndarray:
        """Open times as an int64 array of epoch milliseconds, shape (n,)."""
        return np.fromiter((b.ts_ms for b in self.bars), dtype=np.int64, count=len(self.bars))


def kline_path(marketdata_dir: Path, symbol: str, interval: str) -> Path:
    """Path of the recorded candle file for ``symbol`` at ``interval`` minutes.

    Raises ValueError if ``interval`` is not one of ``"1"``, ``"5"``, ``"60"``.
    """
    if interval not in KLINE_INTERVALS:
        raise ValueError(f"interval must be one of {KLINE_INTERVALS}, got {interval!r}")
    return Path(marketdata_dir) / "bybit" / "klines" / f"{symbol}_{interval}m.csv"


def _parse_ts(text: str) -> int:
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def parse_kline_rows(symbol: str, interval: str, text_rows) -> KlineSeries:
    """Parse CSV rows (an iterable of lists of strings, header excluded) into a
    :class:`KlineSeries`, dropping and counting every malformed row.

    A row is dropped if a number does not parse or is not finite, a price is <= 0,
    ``high < low``, ``open``/``close`` fall outside ``[low, high]``, volume < 0, or
    its timestamp is not strictly later than the previous kept row's.
    """
    dropped: Counter = Counter()
    bars = list(iter_kline_rows(text_rows, dropped))
    return KlineSeries(symbol=symbol, interval=interval, bars=bars, dropped=dropped)


def _parse_row(row: list[str]) -> Bar | str:
    """One CSV row -> a :class:`Bar`, or the drop reason (ordering not checked)."""
    if len(row) < 6:
        return "short_row"
    try:
        ts = _parse_ts(row[0])
    except ValueError:
        return "bad_timestamp"
    try:
        o, h, lo, c, v = (Decimal(x.strip()) for x in row[1:6])
    except (InvalidOperation, ValueError):
        return "bad_number"
    if not all(x.is_finite() for x in (o, h, lo, c, v)):
        return "bad_number"
    if min(o, h, lo, c) <= 0 or v < 0:
        return "non_positive_price"
    if h < lo or not (lo <= o <= h and lo <= c <= h):
        return "high_below_low"
    return Bar(ts, o, h, lo, c, v)


def iter_kline_rows(text_rows: Iterable[list[str]], dropped: Counter) -> Iterator[Bar]:
    """The generator behind :func:`parse_kline_rows`: yields the kept candles one at
    a time and counts each dropped row in ``dropped`` (by reason) as it goes."""
    last_ts = -1
    for row in text_rows:
        bar = _parse_row(row)
        if isinstance(bar, str):
            dropped[bar] += 1
            continue
        if bar.ts_ms == last_ts:
            dropped["duplicate_timestamp"] += 1
            continue
        if bar.ts_ms < last_ts:
            dropped["out_of_order"] += 1
            continue
        last_ts = bar.ts_ms
        yield bar


def load_klines(marketdata_dir: Path, symbol: str, interval: str = "1") -> KlineSeries:
    """Read ``bybit/klines/<symbol>_<interval>m.csv`` under ``marketdata_dir``.

    Raises FileNotFoundError naming the path if the symbol has no recording, and
    ValueError if the header is not ``timestamp,open,high,low,close,volume``.
    """
    path = kline_path(marketdata_dir, symbol, interval)
    if not path.is_file():
        raise FileNotFoundError(f"no recorded {interval}m candles for {symbol}: {path} does not exist")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header[:6] != ["timestamp", "open", "high", "low", "close", "volume"]:
            raise ValueError(f"{path}: header must be timestamp,open,high,low,close,volume, got {header}")
        return parse_kline_rows(symbol, interval, reader)


class KlineStream:
    """The recorded candles of one symbol, read lazily (the light form of
    :func:`load_klines` used by the worker's replay).

    Opening checks the file and header and reads only its first and last kept
    candles (``first_ms``, ``last_ms``: open times in epoch milliseconds, None if the
    file has no valid row), so a worker is ready in milliseconds instead of parsing a
    month of candles up front; :meth:`bars` then parses the rows as the replay
    consumes them, with the same validation as :func:`parse_kline_rows`.

    Raises FileNotFoundError naming the path if the symbol has no recording, and
    ValueError if the header is not ``timestamp,open,high,low,close,volume``.
    """

    def __init__(self, marketdata_dir: Path, symbol: str, interval: str = "1"):
        self.symbol = symbol
        self.interval = interval
        self.path = kline_path(marketdata_dir, symbol, interval)
        if not self.path.is_file():
            raise FileNotFoundError(f"no recorded {interval}m candles for {symbol}: {self.path} does not exist")
        with self.path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if header[:6] != ["timestamp", "open", "high", "low", "close", "volume"]:
                raise ValueError(f"{self.path}: header must be timestamp,open,high,low,close,volume, got {header}")
            first = next(iter_kline_rows(reader, Counter()), None)
        self.first_ms: int | None = first.ts_ms if first is not None else None
        self.last_ms: int | None = self._last_ts() if first is not None else None

    def _last_ts(self) -> int | None:
        """Open time of the last row that parses (read from the file's tail)."""
        size = self.path.stat().st_size
        with self.path.open("rb") as fh:
            fh.seek(max(0, size - 16384))
            tail = fh.read().decode("utf-8", errors="replace").splitlines()
        for row in csv.reader(reversed(tail[1:] if size > 16384 else tail)):
            bar = _parse_row(row)
            if not isinstance(bar, str):
                return bar.ts_ms
        return self.first_ms

    def bars(self, dropped: Counter) -> Iterator[Bar]:
        """Yield the kept candles, oldest first, parsing as it goes; every dropped
        row is counted in ``dropped`` by reason when it is reached."""
        with self.path.open(newline="") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            yield from iter_kline_rows(reader, dropped)


@dataclass(frozen=True)
class Instrument:
    """Trading rules of one Bybit instrument (from ``/v5/market/instruments-info``).

    ``tick_size`` (price increment, USDT), ``qty_step`` (size increment, base coin),
    ``min_order_qty`` (base coin), ``min_notional`` (USDT; linear ``minNotionalValue``,
    spot ``minOrderAmt``), ``max_leverage`` (1 for spot).
    """

    symbol: str
    category: str
    tick_size: Decimal
    qty_step: Decimal
    min_order_qty: Decimal
    min_notional: Decimal
    max_leverage: Decimal

    def round_price(self, price: Decimal, direction: str = "nearest") -> Decimal:
        """Round ``price`` to a multiple of ``tick_size``.

        ``direction``: ``"down"``, ``"up"`` or ``"nearest"`` (half up). Use the side
        that is worse for the trader when modelling slippage. Raises ValueError for
        another direction.
        """
        steps = price / self.tick_size
        if direction == "down":
            n = steps.to_integral_value(rounding=ROUND_FLOOR)
        elif direction == "up":
            n = steps.to_integral_value(rounding=ROUND_CEILING)
        elif direction == "nearest":
            n = (steps + Decimal("0.5")).to_integral_value(rounding=ROUND_FLOOR)
        else:
            raise ValueError(f"direction must be 'down', 'up' or 'nearest', got {direction!r}")
        return (n * self.tick_size).quantize(self.tick_size)

    def round_qty(self, qty: Decimal) -> Decimal:
        """Round ``qty`` down to a multiple of ``qty_step`` (never sizes up)."""
        n = (qty / self.qty_step).to_integral_value(rounding=ROUND_FLOOR)
        return (n * self.qty_step).quantize(self.qty_step)


def _instrument_from_record(category: str, it: dict) -> Instrument:
    lot = it["lotSizeFilter"]
    if category == "spot":
        qty_step = Decimal(lot["basePrecision"])
        min_notional = Decimal(lot.get("minOrderAmt", "0"))
        max_lev = Decimal(1)
    else:
        qty_step = Decimal(lot["qtyStep"])
        min_notional = Decimal(lot.get("minNotionalValue", "0"))
        max_lev = Decimal(it.get("leverageFilter", {}).get("maxLeverage", "1"))
    return Instrument(
        symbol=it["symbol"],
        category=category,
        tick_size=Decimal(it["priceFilter"]["tickSize"]),
        qty_step=qty_step,
        min_order_qty=Decimal(lot["minOrderQty"]),
        min_notional=min_notional,
        max_leverage=max_lev,
    )


def load_instruments(marketdata_dir: Path,
                     wanted: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], Instrument]:
    """Instrument rules keyed by ``(category, symbol)`` from the REST responses in
    ``bybit/ws/BYBIT.jsonl.zst`` (a real Bybit mainnet capture; 800 linear and 557 spot
    symbols).

    ``wanted``: only these ``(category, symbol)`` pairs are built (a worker needs two
    of 1,357; building all costs ~50 ms of CPU per worker start). Pairs absent from
    the capture are simply missing from the result.

    Raises FileNotFoundError naming the path if the capture is absent.
    """
    import zstandard

    path = Path(marketdata_dir) / "bybit" / "ws" / "BYBIT.jsonl.zst"
    if not path.is_file():
        raise FileNotFoundError(f"instrument info capture not found: {path}")
    want = None if wanted is None else set(wanted)
    want_categories = None if want is None else {c for c, _ in want}
    out: dict[tuple[str, str], Instrument] = {}
    with path.open("rb") as raw:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        for line in reader:
            if '"http"' not in line[:40]:
                continue
            if want_categories is not None and not any(f"category={c}&" in line[:300] or f"category={c}\"" in line[:300]
                                                       for c in want_categories):
                continue  # another category's response: not even JSON-decoded
            rec = json.loads(line)
            if rec.get("t") != "http" or "instruments-info" not in rec.get("url", ""):
                continue
            data = rec["data"] if isinstance(rec["data"], dict) else json.loads(rec["data"])
            result = data.get("result", {})
            category = result.get("category")
            for it in result.get("list", []):
                if want is not None and (category, it.get("symbol")) not in want:
                    continue
                try:
                    out[(category, it["symbol"])] = _instrument_from_record(category, it)
                except (KeyError, InvalidOperation):
                    continue
    return out


def finite_positive(x: float) -> bool:
    """True if ``x`` is a finite float greater than zero."""
    return math.isfinite(x) and x > 0
