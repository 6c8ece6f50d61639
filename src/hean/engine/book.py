"""L2 order book and paper matching: the native classes, readers for recorded Bybit
book data, and a pure-Python reference book with identical semantics.

* :class:`OrderBook` (``hean._native.OrderBook``): applies Bybit v5
  ``orderbook.<depth>.<symbol>`` snapshots and deltas
  (https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook) with exact
  fixed-point prices/sizes and answers best bid/ask, spread, mid, microprice,
  depth-weighted imbalance and the cost to sweep a notional. ``apply`` returns
  ``"OK"``, ``"GAP"`` (``u`` jumped: re-snapshot; later deltas are refused until a
  snapshot arrives), ``"STALE"`` (``u``/``seq`` not increasing), ``"CROSSED"``
  (rolled back; needs a snapshot), ``"BAD"`` (NaN, inf, negative, unparsable or
  over-precise number, or a zero size in a snapshot; nothing applied) or
  ``"NO_SNAPSHOT"``; every outcome is counted in ``counts``.
* :class:`PaperMatcher` (``hean._native.PaperMatcher``): market / limit GTC, IOC, FOK,
  PostOnly, reduce-only orders against that book and public trades, queue position
  for resting orders, exact maker/taker fees, Bybit retCodes (see
  ``native/include/hean/matcher.hpp``). :func:`matcher_for` builds one from an
  :class:`hean.marketdata.Instrument`.
* :class:`ReferenceBook`: the same book in plain Python (dicts of ints), used by the
  tests to check the native one message by message.
"""

from __future__ import annotations

import io
import json
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Iterator

from hean._native import BOOK_STATUS, OrderBook, PaperMatcher, parse_fixed

__all__ = ["BOOK_STATUS", "OrderBook", "PaperMatcher", "ReferenceBook", "parse_fixed", "matcher_for",
           "iter_orderbook_zip", "iter_ws_capture", "level_decimals", "replay_market"]

MAKER_TAKER = {"linear": ("0.0002", "0.00055"), "spot": ("0.001", "0.001")}


def _decimals(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


def matcher_for(instrument, price_decimals: int | None = None, qty_decimals: int | None = None,
                maker_fee: str | None = None, taker_fee: str | None = None) -> PaperMatcher:
    """A :class:`PaperMatcher` for a :class:`hean.marketdata.Instrument` (Bybit non-VIP
    fees of its category unless given). Scales default to the tick's and qty step's
    decimals."""
    pd = _decimals(instrument.tick_size) if price_decimals is None else price_decimals
    qd = max(_decimals(instrument.qty_step), _decimals(instrument.min_order_qty)) if qty_decimals is None else qty_decimals
    mk, tk = MAKER_TAKER[instrument.category]
    return PaperMatcher(pd, qd, int(instrument.tick_size.scaleb(pd)), int(instrument.qty_step.scaleb(qd)),
                        int(instrument.min_order_qty.scaleb(qd)), str(instrument.min_notional),
                        maker_fee or mk, taker_fee or tk, instrument.category == "spot")


def level_decimals(messages) -> tuple[int, int]:
    """The most price and size decimals appearing in Bybit book messages."""
    pd = sd = 0
    for m in messages:
        for side in ("b", "a"):
            for px, sz in m["data"].get(side, ()):
                if "." in px:
                    pd = max(pd, len(px) - px.index(".") - 1)
                if "." in sz:
                    sd = max(sd, len(sz) - sz.index(".") - 1)
    return pd, sd


def iter_orderbook_zip(path: Path) -> Iterator[dict]:
    """Messages of a Bybit historical order-book archive (zip of JSON lines)."""
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            with z.open(name) as fh:
                for line in io.TextIOWrapper(fh, encoding="utf-8"):
                    if line.strip():
                        yield json.loads(line)


def iter_ws_capture(path: Path, topic_prefix: str | tuple[str, ...] = "orderbook.") -> Iterator[dict]:
    """Public WebSocket frames whose topic starts with ``topic_prefix`` (a prefix or a
    tuple of prefixes) from a cryptofeed capture (``bybit/ws/BYBIT.jsonl.zst``);
    undecodable records are skipped."""
    import zstandard

    with Path(path).open("rb") as raw:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        for line in reader:
            if '"recv"' not in line[:40]:
                continue
            rec = json.loads(line)
            if rec.get("t") != "recv":
                continue
            try:
                msg = json.loads(rec["data"])
            except (TypeError, ValueError):
                continue
            if isinstance(msg, dict) and str(msg.get("topic", "")).startswith(topic_prefix):
                yield msg


def replay_market(messages, matcher: PaperMatcher, symbol: str, strategy=None) -> dict:
    """Feed recorded Bybit public frames of ``symbol`` (``orderbook.*`` snapshots and
    deltas, ``publicTrade.*``) in order into ``matcher``; after each frame that was
    applied call ``strategy(kind, message, matcher)`` (kind ``"book"`` or ``"trade"``),
    which may submit or cancel orders. Frames of other symbols are skipped.

    Returns counters: ``book`` (frames by OrderBook status), ``trades`` (applied),
    ``bad_trades`` (unparsable or rejected by the matcher: non-positive, out of
    order, a price/size finer than the matcher's scales), ``malformed`` (frames
    without the expected fields).
    """
    pd, sd = matcher.book.price_decimals, matcher.book.size_decimals
    out = {"book": {k: 0 for k in BOOK_STATUS}, "trades": 0, "bad_trades": 0, "malformed": 0}
    for m in messages:
        topic = str(m.get("topic", ""))
        if not topic.endswith("." + symbol):
            continue
        try:
            if topic.startswith("orderbook."):
                d = m["data"]
                st = matcher.on_book(m["type"] == "snapshot", [tuple(x) for x in d["b"]], [tuple(x) for x in d["a"]],
                                     int(d["u"]), int(d.get("seq", 0)), int(m.get("ts", 0)))
                out["book"][st] += 1
                if st == "OK" and strategy is not None:
                    strategy("book", m, matcher)
            elif topic.startswith("publicTrade."):
                for t in m["data"]:
                    px, qty = parse_fixed(str(t["p"]), pd), parse_fixed(str(t["v"]), sd)
                    if px is None or qty is None or not matcher.on_trade(int(t["T"]), px, qty, str(t["S"])):
                        out["bad_trades"] += 1
                        continue
                    out["trades"] += 1
                    if strategy is not None:
                        strategy("trade", t, matcher)
        except (KeyError, TypeError, ValueError):
            out["malformed"] += 1
    return out


class ReferenceBook:
    """Pure-Python reference of :class:`OrderBook` (same rules, statuses, counters)."""

    def __init__(self, price_decimals: int, size_decimals: int) -> None:
        self.pd, self.sd = price_decimals, size_decimals
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.has_snapshot = False
        self.needs = False
        self.last_u = 0
        self.last_seq = -1
        self.counts = {k: 0 for k in BOOK_STATUS}

    def _parse(self, text: str, decimals: int) -> int | None:
        if not text or len(text) > 40 or any(c not in "0123456789." for c in text) or text.count(".") > 1:
            return None
        if not any(c.isdigit() for c in text):
            return None
        whole, _, frac = text.partition(".")
        if len(frac) > decimals and set(frac[decimals:]) - {"0"}:
            return None
        frac = frac[:decimals].ljust(decimals, "0")
        v = int((whole or "0") + frac)
        return v if v < 2**63 else None

    def _status(self, s: str) -> str:
        self.counts[s] += 1
        return s

    def apply(self, snapshot: bool, bids, asks, u: int, seq: int, ts: int = 0) -> str:
        parsed = []
        for levels in (bids, asks):
            side = []
            for px, sz in levels:
                p, q = self._parse(px, self.pd), self._parse(sz, self.sd)
                if p is None or q is None or p <= 0 or (snapshot and q == 0):
                    return self._status("BAD")
                side.append((p, q))
            parsed.append(side)
        if snapshot:
            nb, na = dict(parsed[0]), dict(parsed[1])
            if nb and na and max(nb) >= min(na):
                self.needs = True
                return self._status("CROSSED")
            self.bids, self.asks = nb, na
            self.has_snapshot, self.needs = True, False
            self.last_u, self.last_seq = u, seq
            return self._status("OK")
        if not self.has_snapshot or self.needs:
            return self._status("NO_SNAPSHOT")
        if u <= self.last_u or seq < self.last_seq:
            return self._status("STALE")
        if u != self.last_u + 1:
            self.needs = True
            return self._status("GAP")
        nb, na = dict(self.bids), dict(self.asks)
        for book, side in ((nb, parsed[0]), (na, parsed[1])):
            for p, q in side:
                if q == 0:
                    book.pop(p, None)
                else:
                    book[p] = q
        if nb and na and max(nb) >= min(na):
            self.needs = True
            return self._status("CROSSED")
        self.bids, self.asks = nb, na
        self.last_u, self.last_seq = u, seq
        return self._status("OK")

    def best_bid(self) -> tuple[int, int]:
        if not self.bids:
            return (0, 0)
        p = max(self.bids)
        return (p, self.bids[p])

    def best_ask(self) -> tuple[int, int]:
        if not self.asks:
            return (0, 0)
        p = min(self.asks)
        return (p, self.asks[p])

    def levels(self, side: int, n: int) -> list[tuple[int, int]]:
        book = self.bids if side > 0 else self.asks
        keys = sorted(book, reverse=side > 0)[:n]
        return [(k, book[k]) for k in keys]

    def imbalance(self, levels: int = 5) -> float:
        b, a = self.levels(1, levels), self.levels(-1, levels)
        num = den = 0.0
        for k in range(levels):
            w = 1.0 / (k + 1)
            qb = b[k][1] / 10**self.sd if k < len(b) else 0.0
            qa = a[k][1] / 10**self.sd if k < len(a) else 0.0
            num += w * (qb - qa)
            den += w * (qb + qa)
        return num / den if den > 0 else float("nan")
