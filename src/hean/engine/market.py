"""Replay of recorded Bybit candles, public trades and L2 book updates in one native call.

Pipeline (per event, one account over several symbols):

* **indicators**: the book's depth-weighted imbalance of the top ``imbalance_levels``
  levels (``sum w_k (bid_k - ask_k) / sum w_k (bid_k + ask_k)``, ``w_k = 1/(k+1)``),
  an EMA of the signed trade size (base coin, + for Buy aggressors), an EMA of
  confirmed candle closes (USDT), both with TA-Lib seeding (:class:`hean.indicators.EMA`);
* **strategy kernel** (on every applied book message, when the book is valid): flat ->
  enter long if imbalance > ``entry_imbalance`` (short if < -``entry_imbalance``), unless
  a warm flow EMA or a warm trend EMA (mid vs EMA) disagrees; in a position -> exit
  (reduce-only market) when the imbalance against it is below -``exit_imbalance`` or
  after ``max_hold_ms``; entries are market orders, or PostOnly limits at the near touch
  (``post_only``; cancelled after ``order_ttl_ms``);
* **risk checks**: cooldown per symbol, ``max_orders_per_minute`` (sliding 60 s), order
  size ``order_notional`` USDT rounded down to the qty step, capped by
  ``max_position_notional``, min order qty; a hard stop at ``hard_drawdown_bps`` below
  peak equity cancels resting orders, flattens every position and blocks entries;
* **matching**: one :class:`hean._native.PaperMatcher` per symbol (book, queue position,
  Bybit retCodes, exact maker/taker fees);
* **ledger**: exact integer cash (``10**-money_decimals`` USDT); equity = cash + positions
  marked at the touch they would close at (longs at the best bid, shorts at the best ask).

Bad input is rejected and counted, never traded on: book messages by
:class:`hean.engine.OrderBook` status (``BAD`` for NaN/inf/negative/unparsable numbers,
``GAP``/``STALE``/``CROSSED``/``NO_SNAPSHOT``), trades with a non-positive or unparsable
price/size, unknown aggressor side or an older timestamp (``bad_trades``), candles with
a non-positive price or high/low inconsistent with open/close (``rejected_candles``) or
not after the previous candle (``dropped_candles``), frames without the expected fields
(``malformed``).

:func:`replay_market_native` runs a :class:`MarketTape` (flat numpy arrays, built once by
:func:`encode_frames` from the JSON frames) through :class:`hean._native.MarketEngine`
with the GIL released. :func:`replay_market_reference` is the same pipeline written in
Python over the raw frames (strategy, risk and ledger in Python; books and matching
through the same PaperMatcher class fed with the exchange's decimal strings); the tests
hold the two fill-for-fill and equity-for-equity identical on the recorded files.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import deque
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from hean import _native
from hean.engine.book import MAKER_TAKER, iter_ws_capture, matcher_for, parse_fixed
from hean.indicators.reference import EMA as _RefEMA

__all__ = [
    "EV_CANDLE", "EV_TRADE", "EV_BOOK_SNAPSHOT", "EV_BOOK_DELTA", "EV_MALFORMED",
    "MARKET_FILL_REASONS", "MARKET_REASONS", "MarketParams", "MarketRisk", "MarketSymbol",
    "MarketTape", "MarketReplayResult", "read_market_frames", "market_symbols", "encode_frames",
    "replay_market_native", "replay_market_reference",
]

EV_CANDLE, EV_TRADE, EV_BOOK_SNAPSHOT, EV_BOOK_DELTA, EV_MALFORMED = range(5)
#: Fill reason codes by index (``fills["reason"]``).
MARKET_FILL_REASONS = ("ENTRY", "EXIT_SIGNAL", "EXIT_TIME", "HARD_STOP")
#: Reasons an entry was not made, by index (``counters["reasons"]`` keys).
MARKET_REASONS = tuple(_native.MARKET_REASONS)
_TOPICS = ("orderbook.", "publicTrade.", "kline.")
_SIDES = {"Buy": 1, "Sell": -1}
_BOOK_STATUS = ("OK", "GAP", "STALE", "CROSSED", "BAD", "NO_SNAPSHOT")


@dataclass(frozen=True)
class MarketParams:
    """Strategy parameters: ``imbalance_levels`` (book levels per side), ``entry_imbalance``
    / ``exit_imbalance`` (fractions in [0, 1]), ``flow_period`` (trades) and
    ``trend_period`` (candles) of the EMAs, ``cooldown_ms`` between orders of a symbol,
    ``max_hold_ms``, ``post_only`` entries with ``order_ttl_ms``."""

    imbalance_levels: int = 5
    entry_imbalance: float = 0.3
    exit_imbalance: float = 0.1
    flow_period: int = 20
    trend_period: int = 3
    cooldown_ms: int = 1000
    max_hold_ms: int = 60000
    post_only: bool = False
    order_ttl_ms: int = 2000


@dataclass(frozen=True)
class MarketRisk:
    """Risk limits: ``order_notional`` USDT per entry, ``max_position_notional`` USDT
    (0 = none), ``max_orders_per_minute`` (every order, exits included, sliding 60 s),
    ``hard_drawdown_bps`` below peak equity (0 = off)."""

    order_notional: Decimal = Decimal("200")
    max_position_notional: Decimal = Decimal("0")
    max_orders_per_minute: int = 60
    hard_drawdown_bps: int = 0


@dataclass(frozen=True)
class MarketSymbol:
    """One symbol's fixed-point scales and trading rules (``instrument``:
    :class:`hean.marketdata.Instrument`)."""

    symbol: str
    price_decimals: int
    size_decimals: int
    instrument: Any


@dataclass
class MarketTape:
    """A recorded stream as flat arrays (shape ``(n,)`` per event unless noted):
    ``kind`` int8 (``EV_*``), ``sym`` int32 index into ``symbols``, ``ts`` int64 ms,
    ``x0..x3`` int64 (candle: open, high, low, close in price units; trade: price,
    size in size units, aggressor +1/-1/0; book: u, seq, first and end row in the level
    table), and the level table ``level_side`` int8 (+1 bid / -1 ask), ``level_price``,
    ``level_size`` int64 (shape ``(m,)``). Unparsable numbers are -1 (rejected and
    counted downstream)."""

    symbols: list[MarketSymbol]
    kind: np.ndarray
    sym: np.ndarray
    ts: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    x3: np.ndarray
    level_side: np.ndarray
    level_price: np.ndarray
    level_size: np.ndarray

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def tiled(self, copies: int) -> "MarketTape":
        """The tape repeated ``copies`` times with ts, u and seq shifted past the
        previous copy (for benchmarks: each copy starts again from its snapshots)."""
        n, m = len(self), int(self.level_side.shape[0])
        book = (self.kind == EV_BOOK_SNAPSHOT) | (self.kind == EV_BOOK_DELTA)
        span_ts = int(self.ts.max() - self.ts.min()) + 1 if n else 1
        span_u = int(self.x0[book].max()) + 1 if book.any() else 1
        span_seq = int(self.x1[book].max()) + 1 if book.any() else 1
        k = np.repeat(np.arange(copies, dtype=np.int64), n)

        def rep(a):
            return np.tile(a, copies)

        x0, x1, x2, x3 = rep(self.x0), rep(self.x1), rep(self.x2), rep(self.x3)
        bk = np.tile(book, copies)
        x0 = np.where(bk, x0 + k * span_u, x0)
        x1 = np.where(bk, x1 + k * span_seq, x1)
        x2 = np.where(bk, x2 + k * m, x2)
        x3 = np.where(bk, x3 + k * m, x3)
        return MarketTape(self.symbols, rep(self.kind), rep(self.sym), rep(self.ts) + k * span_ts, x0, x1, x2, x3,
                          rep(self.level_side), rep(self.level_price), rep(self.level_size))


@dataclass
class MarketReplayResult:
    """``fills``: dict of arrays (``ts_ms``, ``symbol``, ``side`` +1/-1, ``qty`` size
    units, ``price`` price units, ``fee_e8`` 1e-8 USDT, ``order_id``, ``reason`` index
    into :data:`MARKET_FILL_REASONS`, ``maker`` 1/0); ``equity`` float64 ``(n,)`` USDT
    after each event; ``counters`` (see ``MarketEngine.counters``); ``figures``: exact
    ``equity_units`` / ``cash_units`` / ``peak_units`` ints in ``10**-money_decimals``
    USDT; ``money_decimals``."""

    fills: dict[str, np.ndarray]
    equity: np.ndarray
    counters: dict[str, Any]
    figures: dict[str, int]
    money_decimals: int


# ---- reading recorded data ------------------------------------------------------------

def read_market_frames(path: Path) -> list[dict]:
    """Frames (decoded JSON objects) of a recording, in file order: a cryptofeed capture
    (``*.jsonl.zst``: the ``recv`` frames whose topic starts with ``orderbook.``,
    ``publicTrade.`` or ``kline.``) or a Bybit historical order-book archive (``*.zip``
    of JSON lines). Undecodable lines of the archive become ``{"topic": None}`` so that
    they are counted as malformed downstream only if they name no symbol (they are
    skipped). Raises FileNotFoundError naming the path if it is absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"market data file not found: {path}")
    out: list[dict] = []
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                with z.open(name) as fh:
                    for line in io.TextIOWrapper(fh, encoding="utf-8"):
                        if line.strip():
                            try:
                                out.append(json.loads(line))
                            except ValueError:
                                continue
        return out
    out.extend(iter_ws_capture(path, _TOPICS))
    return out


def _decimals_of(text: str) -> int:
    return len(text) - text.index(".") - 1 if "." in text else 0


def _dec_places(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


def market_symbols(frames: Iterable[dict], symbols: Sequence[str], instruments: Mapping[str, Any]) -> list[MarketSymbol]:
    """Scales for ``symbols``: price decimals = max(tick size's, any price string's in the
    frames), size decimals = max(qty step's, min order qty's, any size string's), capped at
    12. ``instruments``: symbol -> :class:`hean.marketdata.Instrument` (KeyError naming a
    missing symbol)."""
    pd = {s: _dec_places(instruments[s].tick_size) for s in symbols}
    sd = {s: max(_dec_places(instruments[s].qty_step), _dec_places(instruments[s].min_order_qty)) for s in symbols}
    for m in frames:
        topic = str(m.get("topic", "")) if isinstance(m, dict) else ""
        s = topic.rsplit(".", 1)[-1]
        if s not in pd:
            continue
        d = m.get("data")
        try:
            if topic.startswith("orderbook."):
                for key in ("b", "a"):
                    for px, sz in d.get(key, ()):
                        pd[s] = max(pd[s], _decimals_of(str(px)))
                        sd[s] = max(sd[s], _decimals_of(str(sz)))
            elif topic.startswith("publicTrade."):
                for t in d:
                    pd[s] = max(pd[s], _decimals_of(str(t.get("p", ""))))
                    sd[s] = max(sd[s], _decimals_of(str(t.get("v", ""))))
            elif topic.startswith("kline."):
                for k in d:
                    for f in ("open", "high", "low", "close"):
                        pd[s] = max(pd[s], _decimals_of(str(k.get(f, ""))))
        except (AttributeError, TypeError, ValueError):
            continue
    return [MarketSymbol(s, min(pd[s], 12), min(sd[s], 12), instruments[s]) for s in symbols]


def _levels(d: dict, key: str) -> list[tuple[str, str]]:
    """The ``[[price, size], ...]`` of one side as string pairs; TypeError/ValueError for
    any other shape (the frame is then malformed)."""
    out = []
    for lv in d[key]:
        px, sz = lv
        if not isinstance(px, str) or not isinstance(sz, str):
            raise TypeError("book levels must be [price, size] strings")
        out.append((px, sz))
    return out


def _i64(v) -> int:
    """int(v) for a timestamp / sequence field; ValueError unless it fits in int64."""
    i = int(v)
    if not -(2**63) <= i < 2**63:
        raise ValueError("integer field out of int64 range")
    return i


_BAD_FRAME = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def _fixed(text: str, decimals: int) -> int:
    v = parse_fixed(text, decimals)
    return -1 if v is None else v


def encode_frames(frames: Iterable[dict], symbols: Sequence[MarketSymbol]) -> MarketTape:
    """Encode decoded Bybit public frames into a :class:`MarketTape`.

    ``orderbook.*`` -> one book event (snapshot/delta) with its levels; ``publicTrade.*``
    -> one trade event per trade; ``kline.*`` -> one candle event per confirmed candle
    (``confirm`` true; open time ``start``). Frames of other symbols or topics are
    skipped. A frame missing a field or with a wrong shape becomes one ``EV_MALFORMED``
    event (trades before the bad one in the same frame are kept). Numbers are parsed
    exactly at the symbol's scales (:func:`hean.engine.book.parse_fixed`); unparsable,
    signed or over-precise ones become -1."""
    index = {s.symbol: i for i, s in enumerate(symbols)}
    kind: list[int] = []
    sym: list[int] = []
    ts: list[int] = []
    xs: list[list[int]] = [[], [], [], []]
    lside: list[int] = []
    lprice: list[int] = []
    lsize: list[int] = []

    def emit(k, s, t, a=0, b=0, c=0, d=0):
        kind.append(k)
        sym.append(s)
        ts.append(t)
        for col, v in zip(xs, (a, b, c, d)):
            col.append(v)

    for m in frames:
        topic = str(m.get("topic", "")) if isinstance(m, dict) else ""
        s = index.get(topic.rsplit(".", 1)[-1])
        if s is None or not topic.startswith(_TOPICS):
            continue
        pd, sd = symbols[s].price_decimals, symbols[s].size_decimals
        try:
            if topic.startswith("orderbook."):
                d = m["data"]
                snapshot = m["type"] == "snapshot"
                bids, asks = _levels(d, "b"), _levels(d, "a")
                u, seq, t = _i64(d["u"]), _i64(d.get("seq", 0)), _i64(m.get("ts", 0))
                start = len(lside)
                for side, rows in ((1, bids), (-1, asks)):
                    for px, sz in rows:
                        lside.append(side)
                        lprice.append(_fixed(px, pd))
                        lsize.append(_fixed(sz, sd))
                emit(EV_BOOK_SNAPSHOT if snapshot else EV_BOOK_DELTA, s, t, u, seq, start, len(lside))
            elif topic.startswith("publicTrade."):
                for tr in m["data"]:
                    emit(EV_TRADE, s, _i64(tr["T"]), _fixed(str(tr["p"]), pd), _fixed(str(tr["v"]), sd),
                         _SIDES.get(str(tr["S"]), 0))
            else:
                for k in m["data"]:
                    if k.get("confirm") is True:
                        emit(EV_CANDLE, s, _i64(k["start"]), *(_fixed(str(k[f]), pd) for f in ("open", "high", "low", "close")))
        except _BAD_FRAME:
            emit(EV_MALFORMED, s, 0)

    def arr(v, dt):
        return np.ascontiguousarray(np.asarray(v, dtype=dt))

    return MarketTape(list(symbols), arr(kind, np.int8), arr(sym, np.int32), arr(ts, np.int64),
                      *(arr(c, np.int64) for c in xs), arr(lside, np.int8), arr(lprice, np.int64),
                      arr(lsize, np.int64))


# ---- the native one-call replay ------------------------------------------------------------

def _money_decimals(symbols: Sequence[MarketSymbol], capital: Decimal, risk: MarketRisk) -> int:
    return max([8, _dec_places(Decimal(capital)), _dec_places(risk.order_notional),
                _dec_places(risk.max_position_notional)] + [s.price_decimals + s.size_decimals for s in symbols])


def _symbol_row(s: MarketSymbol) -> tuple:
    inst = s.instrument
    maker, taker = MAKER_TAKER[inst.category]
    return (s.price_decimals, s.size_decimals, int(inst.tick_size.scaleb(s.price_decimals)),
            int(inst.qty_step.scaleb(s.size_decimals)), int(inst.min_order_qty.scaleb(s.size_decimals)),
            str(inst.min_notional), maker, taker, inst.category == "spot")


def market_engine(symbols: Sequence[MarketSymbol], capital: Decimal, params: MarketParams,
                  risk: MarketRisk) -> tuple[Any, int]:
    """A fresh :class:`hean._native.MarketEngine` and its money decimals."""
    md = _money_decimals(symbols, capital, risk)
    r = {"order_notional": str(risk.order_notional), "max_position_notional": str(risk.max_position_notional),
         "max_orders_per_minute": int(risk.max_orders_per_minute), "hard_drawdown_bps": int(risk.hard_drawdown_bps)}
    return _native.MarketEngine([_symbol_row(s) for s in symbols], md, str(capital), asdict(params), r), md


def replay_market_native(tape: MarketTape, capital: Decimal = Decimal("10000"),
                         params: MarketParams = MarketParams(), risk: MarketRisk = MarketRisk()) -> MarketReplayResult:
    """Run the whole tape through :class:`hean._native.MarketEngine` in one call (GIL
    released) and return fills, the equity after each event and counters."""
    eng, md = market_engine(tape.symbols, capital, params, risk)
    curve = eng.run(tape.kind, tape.sym, tape.ts, tape.x0, tape.x1, tape.x2, tape.x3, tape.level_side,
                    tape.level_price, tape.level_size)
    return MarketReplayResult(eng.fills(), curve, eng.counters(), eng.figures(), md)


# ---- the pure-Python pipeline ------------------------------------------------------------------

class _RefSym:
    def __init__(self, spec: MarketSymbol, params: MarketParams, md: int) -> None:
        self.spec = spec
        self.m = matcher_for(spec.instrument, spec.price_decimals, spec.size_decimals)
        self.flow = _RefEMA(params.flow_period)
        self.trend = _RefEMA(params.trend_period)
        self.p10 = float(10 ** spec.price_decimals)
        self.s10 = float(10 ** spec.size_decimals)
        self.mpq = 10 ** (md - spec.price_decimals - spec.size_decimals)
        self.step = int(spec.instrument.qty_step.scaleb(spec.size_decimals))
        self.min_qty = int(spec.instrument.min_order_qty.scaleb(spec.size_decimals))
        self.seen = 0
        self.mark_bid = self.mark_ask = 0
        self.last_candle_ts = -1
        self.last_order_ts = 0
        self.ordered = False
        self.entry_ts = 0
        self.resting_id = 0
        self.resting_ts = 0


class _RefEngine:
    """hean::MarketEngine in Python, step for step (see native/src/market.cpp)."""

    def __init__(self, symbols: Sequence[MarketSymbol], capital: Decimal, params: MarketParams, risk: MarketRisk):
        self.md = _money_decimals(symbols, capital, risk)
        self.scale_f = float(10 ** self.md)
        self.p, self.r = params, risk
        self.sym = [_RefSym(s, params, self.md) for s in symbols]
        self.cash = self.peak = int(Decimal(capital).scaleb(self.md))
        self.order_notional = int(risk.order_notional.scaleb(self.md))
        self.max_pos = int(risk.max_position_notional.scaleb(self.md))
        self.money_per_fee = 10 ** (self.md - 8)
        self.hard_stop = False
        self.order_times: deque[int] = deque()
        self.order_reason = [0]
        self.order_seq = 0
        self.fills: list[tuple] = []
        self.reasons = {k: 0 for k in MARKET_REASONS}
        self.c = {k: 0 for k in ("events", "trades", "bad_trades", "candles", "rejected_candles", "dropped_candles",
                                 "malformed", "orders_sent", "order_rejects", "cancels")}

    def to_double(self, v: int) -> float:
        if -(2**53) < v < 2**53:
            return float(v) / self.scale_f
        return float(Decimal(v).scaleb(-self.md))

    def equity(self) -> int:
        eq = self.cash
        for st in self.sym:
            pos = st.m.position
            if pos:
                eq += pos * (st.mark_bid if pos > 0 else st.mark_ask) * st.mpq
        return eq

    def absorb(self, s: int) -> None:
        st = self.sym[s]
        new = st.m.fills(st.seen)
        for oid, ts, side, price, qty, fee, liq in new:
            notional = price * qty * st.mpq
            self.cash += -notional if side == "Buy" else notional
            self.cash -= fee * self.money_per_fee
            reason = self.order_reason[oid] if 0 < oid < len(self.order_reason) else 0
            self.fills.append((ts, s, 1 if side == "Buy" else -1, qty, price, fee, oid, reason,
                               1 if liq == "maker" else 0))
        st.seen += len(new)

    def submit(self, s, ts, side, otype, tif, qty, price, reduce_only, reason):
        st = self.sym[s]
        self.order_seq += 1
        oid = self.order_seq
        self.order_reason.append(reason)
        self.c["orders_sent"] += 1
        self.order_times.append(ts)
        st.ordered = True
        st.last_order_ts = ts
        code, _msg, status = st.m.submit(oid, "Buy" if side > 0 else "Sell", otype, qty, price, tif, reduce_only, ts)
        if code != 0:
            self.c["order_rejects"] += 1
        if tif == "PostOnly" and status in ("New", "PartiallyFilled"):
            st.resting_id, st.resting_ts = oid, ts
        self.absorb(s)

    def imbalance(self, st: _RefSym) -> float:
        n = self.p.imbalance_levels
        b, a = st.m.book.levels(1, n), st.m.book.levels(-1, n)
        num = den = 0.0
        for k in range(n):
            w = 1.0 / float(k + 1)
            qb = b[k][1] / st.s10 if k < len(b) else 0.0
            qa = a[k][1] / st.s10 if k < len(a) else 0.0
            num += w * (qb - qa)
            den += w * (qb + qa)
        return num / den if den > 0 else float("nan")

    def decide(self, s: int, ts: int) -> None:
        if self.hard_stop:
            self.reasons["HARD_STOP"] += 1
            return
        st = self.sym[s]
        book = st.m.book
        bb, ba = book.best_bid()[0], book.best_ask()[0]
        if not book.valid or bb == 0 or ba == 0:
            self.reasons["BOOK_NOT_READY"] += 1
            return
        if st.resting_id:
            if st.m.order(st.resting_id)["status"] in ("New", "PartiallyFilled"):
                if ts - st.resting_ts >= self.p.order_ttl_ms:
                    st.m.cancel(st.resting_id)
                    self.c["cancels"] += 1
                    st.resting_id = 0
            else:
                st.resting_id = 0
        imb = self.imbalance(st)
        pos = st.m.position
        if pos != 0:
            d = 1 if pos > 0 else -1
            if imb * d < -self.p.exit_imbalance:
                self.submit(s, ts, -d, "Market", "IOC", abs(pos), 0, True, 1)
            elif ts - st.entry_ts >= self.p.max_hold_ms:
                self.submit(s, ts, -d, "Market", "IOC", abs(pos), 0, True, 2)
            return
        if st.resting_id:
            self.reasons["ORDER_PENDING"] += 1
            return
        signal = 1 if imb > self.p.entry_imbalance else -1 if imb < -self.p.entry_imbalance else 0
        if signal == 0:
            self.reasons["NO_SIGNAL"] += 1
            return
        if st.flow.ready and st.flow.value * signal <= 0:
            self.reasons["FLOW_DISAGREES"] += 1
            return
        if st.trend.ready:
            mid = float(bb + ba) / (2.0 * st.p10)
            if (mid - st.trend.value) * signal < 0:
                self.reasons["TREND_DISAGREES"] += 1
                return
        if st.ordered and ts - st.last_order_ts < self.p.cooldown_ms:
            self.reasons["COOLDOWN"] += 1
            return
        while self.order_times and self.order_times[0] <= ts - 60000:
            self.order_times.popleft()
        if len(self.order_times) >= self.r.max_orders_per_minute:
            self.reasons["ORDER_RATE_LIMIT"] += 1
            return
        ref = (bb if signal > 0 else ba) if self.p.post_only else (ba if signal > 0 else bb)
        unit = ref * st.mpq
        qty = self.order_notional // unit // st.step * st.step
        if self.max_pos > 0 and qty * unit > self.max_pos:
            qty = self.max_pos // unit // st.step * st.step
            if qty <= 0:
                self.reasons["MAX_POSITION_NOTIONAL"] += 1
                return
        if qty <= 0 or qty < st.min_qty:
            self.reasons["BELOW_MIN_ORDER"] += 1
            return
        st.entry_ts = ts
        if self.p.post_only:
            self.submit(s, ts, signal, "Limit", "PostOnly", qty, ref, False, 0)
        else:
            self.submit(s, ts, signal, "Market", "IOC", qty, 0, False, 0)

    def check_hard_stop(self, ts: int) -> None:
        eq = self.equity()
        if eq > self.peak:
            self.peak = eq
        if self.hard_stop or self.r.hard_drawdown_bps <= 0:
            return
        if (self.peak - eq) * 10000 < self.r.hard_drawdown_bps * self.peak:
            return
        self.hard_stop = True
        for s, st in enumerate(self.sym):
            if st.resting_id:
                if st.m.cancel(st.resting_id):
                    self.c["cancels"] += 1
                st.resting_id = 0
            pos = st.m.position
            if pos:
                self.submit(s, ts, -1 if pos > 0 else 1, "Market", "IOC", abs(pos), 0, True, 3)

    def on_book(self, s: int, m: dict) -> None:
        st = self.sym[s]
        d = m["data"]
        snapshot = m["type"] == "snapshot"
        bids, asks = _levels(d, "b"), _levels(d, "a")
        u, seq, t = _i64(d["u"]), _i64(d.get("seq", 0)), _i64(m.get("ts", 0))
        status = st.m.on_book(snapshot, bids, asks, u, seq, t)  # raises before any change if a string is unusable
        self.c["events"] += 1
        self.absorb(s)
        if status == "OK":
            bb, ba = st.m.book.best_bid()[0], st.m.book.best_ask()[0]
            if bb and ba:
                st.mark_bid, st.mark_ask = bb, ba
            self.decide(s, t)
        self.check_hard_stop(t)

    def on_trade(self, s: int, tr: dict) -> None:
        st = self.sym[s]
        t = _i64(tr["T"])
        px = parse_fixed(str(tr["p"]), st.spec.price_decimals)
        qty = parse_fixed(str(tr["v"]), st.spec.size_decimals)
        side = str(tr["S"])
        self.c["events"] += 1
        if st.m.on_trade(t, -1 if px is None else px, -1 if qty is None else qty, side):
            self.c["trades"] += 1
            st.flow.update(float(_SIDES[side]) * (qty / st.s10))
            self.absorb(s)
        else:
            self.c["bad_trades"] += 1
        self.check_hard_stop(t)

    def on_candle(self, s: int, k: dict) -> None:
        st = self.sym[s]
        t = _i64(k["start"])
        o, h, lo, c = (parse_fixed(str(k[f]), st.spec.price_decimals) for f in ("open", "high", "low", "close"))
        self.c["events"] += 1
        if None in (o, h, lo, c) or min(o, h, lo, c) <= 0 or lo > h or not (lo <= o <= h) or not (lo <= c <= h):
            self.c["rejected_candles"] += 1
        elif t <= st.last_candle_ts:
            self.c["dropped_candles"] += 1
        else:
            st.last_candle_ts = t
            self.c["candles"] += 1
            st.trend.update(c / st.p10)
        self.check_hard_stop(t)


def replay_market_reference(frames: Iterable[dict], symbols: Sequence[MarketSymbol],
                            capital: Decimal = Decimal("10000"), params: MarketParams = MarketParams(),
                            risk: MarketRisk = MarketRisk()) -> MarketReplayResult:
    """The same pipeline as :func:`replay_market_native` in Python over the raw frames
    (same frame rules as :func:`encode_frames`); slower, identical results."""
    e = _RefEngine(symbols, capital, params, risk)
    index = {s.symbol: i for i, s in enumerate(symbols)}
    curve: list[float] = []
    for m in frames:
        topic = str(m.get("topic", "")) if isinstance(m, dict) else ""
        s = index.get(topic.rsplit(".", 1)[-1])
        if s is None or not topic.startswith(_TOPICS):
            continue
        try:
            if topic.startswith("orderbook."):
                e.on_book(s, m)
                curve.append(e.to_double(e.equity()))
            elif topic.startswith("publicTrade."):
                for tr in m["data"]:
                    e.on_trade(s, tr)
                    curve.append(e.to_double(e.equity()))
            else:
                for k in m["data"]:
                    if k.get("confirm") is True:
                        e.on_candle(s, k)
                        curve.append(e.to_double(e.equity()))
        except _BAD_FRAME:
            e.c["events"] += 1
            e.c["malformed"] += 1
            curve.append(e.to_double(e.equity()))
    cols = ("ts_ms", "symbol", "side", "qty", "price", "fee_e8", "order_id", "reason", "maker")
    dts = (np.int64, np.int32, np.int8, np.int64, np.int64, np.int64, np.int64, np.int8, np.int8)
    fills = {c: np.asarray([f[i] for f in e.fills], dtype=dt) for i, (c, dt) in enumerate(zip(cols, dts))}
    book = {k: 0 for k in _BOOK_STATUS}
    for st in e.sym:
        for k, v in st.m.book.counts.items():
            book[k] += v
    counters = dict(e.c, reasons=dict(e.reasons), book=book, hard_stop=e.hard_stop,
                    positions=[st.m.position for st in e.sym])
    figures = {"equity_units": e.equity(), "cash_units": e.cash, "peak_units": e.peak}
    return MarketReplayResult(fills, np.asarray(curve, dtype=np.float64), counters, figures, e.md)
