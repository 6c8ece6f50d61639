"""A level-2 order book fed with Bybit's raw ``orderbook.<depth>.<symbol>`` frames
(https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook), checking
continuity, which pybit's own book does not do.

* A ``snapshot`` (including one with ``u == 1`` after a service restart) replaces
  the book.
* A ``delta`` must carry ``u == previous u + 1`` and a ``seq`` that does not go
  backwards; otherwise :class:`BookGap` is raised and the book is invalid until the
  next snapshot (the feed re-subscribes to get one). A level with size ``"0"`` is
  deleted; a new level is inserted in price order.
* A crossed book (best bid >= best ask) after a delta is a gap too.

Prices and sizes are :class:`decimal.Decimal` (never floats). The C++ book of
``hean._native`` can replace this class behind the same three methods.
"""

from __future__ import annotations

from decimal import Decimal

ZERO = Decimal(0)


class BookGap(Exception):
    """The stream skipped or reordered an update; the book needs a new snapshot."""


class OrderBook:
    """Pure-Python L2 book of one symbol in exact decimals (price -> size), fed Bybit v5
    ``orderbook.<depth>`` frames: a snapshot replaces the book, a delta level with size
    "0" deletes it, and ``u`` must increase by exactly one between deltas (else
    :class:`BookGap`: re-snapshot). Used when the native book cannot be sized for the
    instrument. Source: https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook.
    """
    def __init__(self, symbol: str):
        self.symbol = symbol
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.u: int | None = None
        self.seq: int | None = None
        self.valid = False
        self.updates = 0

    def apply(self, frame_type: str, data: dict) -> None:
        """Apply one frame's ``type`` and ``data`` (``s``, ``b``, ``a``, ``u``, ``seq``)."""
        u, seq = int(data["u"]), int(data.get("seq") or 0)
        if frame_type == "snapshot":
            self.bids = {Decimal(p): Decimal(q) for p, q in data["b"] if Decimal(q) != 0}
            self.asks = {Decimal(p): Decimal(q) for p, q in data["a"] if Decimal(q) != 0}
            self.u, self.seq, self.valid = u, seq, True
            self.updates += 1
            return
        if frame_type != "delta":
            raise ValueError(f"orderbook frame type must be 'snapshot' or 'delta', got {frame_type!r}")
        if not self.valid or self.u is None:
            raise BookGap(f"{self.symbol}: delta u={u} before any snapshot")
        if u != self.u + 1:
            self.valid = False
            raise BookGap(f"{self.symbol}: update id jumped from {self.u} to {u}")
        if self.seq is not None and seq and seq < self.seq:
            self.valid = False
            raise BookGap(f"{self.symbol}: seq went backwards from {self.seq} to {seq}")
        for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
            for p, q in levels:
                price, size = Decimal(p), Decimal(q)
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size
        self.u, self.seq = u, seq or self.seq
        self.updates += 1
        bb, ba = self.best_bid(), self.best_ask()
        if bb is not None and ba is not None and bb[0] >= ba[0]:
            self.valid = False
            raise BookGap(f"{self.symbol}: crossed book after u={u}: bid {bb[0]} >= ask {ba[0]}")

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        if not self.bids:
            return None
        p = max(self.bids)
        return p, self.bids[p]

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        if not self.asks:
            return None
        p = min(self.asks)
        return p, self.asks[p]

    def levels(self, side: str, n: int = 10) -> list[tuple[Decimal, Decimal]]:
        """Top ``n`` levels of ``side`` (``"b"`` best first = highest, ``"a"`` lowest)."""
        book = self.bids if side == "b" else self.asks
        keys = sorted(book, reverse=(side == "b"))[:n]
        return [(k, book[k]) for k in keys]

    def mid(self) -> Decimal | None:
        bb, ba = self.best_bid(), self.best_ask()
        if bb is None or ba is None:
            return None
        return (bb[0] + ba[0]) / 2


def _decimals(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


class NativeBook:
    """The same interface over the C++ book ``hean._native.OrderBook`` (exact fixed
    point; see :mod:`hean.engine.book`). ``price_decimals``/``size_decimals`` come
    from the instrument (tick size, qty step, each with two spare decimals). Outcomes
    ``GAP``, ``CROSSED``, ``BAD`` and ``NO_SNAPSHOT`` raise :class:`BookGap` (a new
    snapshot is needed); ``STALE`` (an update that is not newer) is ignored and
    counted in ``stale_updates``."""

    def __init__(self, symbol: str, price_decimals: int, size_decimals: int):
        from hean._native import OrderBook as _Native

        self.symbol = symbol
        self.pd, self.sd = price_decimals, size_decimals
        self._b = _Native(price_decimals, size_decimals)
        self.updates = 0
        self.stale_updates = 0

    @classmethod
    def for_instrument(cls, instrument) -> "NativeBook":
        # Bybit prints prices with the instrument's priceScale, which can exceed the
        # tick's decimals ("118600.10" with tick 0.10): two spare decimals on both.
        return cls(instrument.symbol, _decimals(instrument.tick_size) + 2,
                   max(_decimals(instrument.qty_step), _decimals(instrument.min_order_qty)) + 2)

    @property
    def valid(self) -> bool:
        return bool(self._b.valid)

    @property
    def u(self) -> int | None:
        return int(self._b.last_u) if self.updates else None

    def apply(self, frame_type: str, data: dict) -> None:
        if frame_type not in ("snapshot", "delta"):
            raise ValueError(f"orderbook frame type must be 'snapshot' or 'delta', got {frame_type!r}")
        out = self._b.apply(frame_type == "snapshot", [tuple(x) for x in data["b"]], [tuple(x) for x in data["a"]],
                            int(data["u"]), int(data.get("seq") or 0), 0)
        if out == "OK":
            self.updates += 1
            return
        if out == "STALE":
            self.stale_updates += 1
            return
        raise BookGap(f"{self.symbol}: native book says {out} at u={data['u']}")

    def _px(self, units: int) -> Decimal:
        return Decimal(units).scaleb(-self.pd)

    def _sz(self, units: int) -> Decimal:
        return Decimal(units).scaleb(-self.sd)

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        p, q = self._b.best_bid()
        return None if q == 0 else (self._px(p), self._sz(q))

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        p, q = self._b.best_ask()
        return None if q == 0 else (self._px(p), self._sz(q))

    def levels(self, side: str, n: int = 10) -> list[tuple[Decimal, Decimal]]:
        return [(self._px(p), self._sz(q)) for p, q in self._b.levels(1 if side == "b" else -1, n)]

    def mid(self) -> Decimal | None:
        bb, ba = self.best_bid(), self.best_ask()
        return None if bb is None or ba is None else (bb[0] + ba[0]) / 2


def make_book(symbol: str, instrument=None):
    """The native book when ``hean._native`` has one and the instrument is known,
    else the Python :class:`OrderBook`."""
    if instrument is not None:
        try:
            return NativeBook.for_instrument(instrument)
        except (ImportError, AttributeError):
            pass
    return OrderBook(symbol)
