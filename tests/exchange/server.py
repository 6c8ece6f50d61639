"""A Bybit-v5-compatible exchange on loopback, for tests only (never shipped).

pybit cannot reach Bybit from here, so the tests point real pybit sessions at this
server: ``HTTP(...).endpoint = exchange.rest_url`` and the WebSocket URL templates
``pybit.unified_trading.PUBLIC_WSS``/``PRIVATE_WSS`` (see :func:`point_pybit_at`).

What it speaks (https://bybit-exchange.github.io/docs/v5/intro):

* REST: signed requests verified like Bybit (HMAC-SHA256 over ``timestamp + apiKey +
  recvWindow + queryString|body``; 10003 unknown key, 10004 bad signature, 10002
  timestamp outside ``recv_window``), the ``retCode/retMsg/result/retExtInfo/time``
  envelope, ``X-Bapi-Limit*`` headers and a per-account order rate limit (10006),
  an IP limit (HTTP 403). Endpoints: market time, instruments-info, kline, orderbook,
  funding history, recent trades; order create/cancel/realtime, execution list,
  position list, wallet balance.
* WebSockets: ``/v5/public/linear`` (``kline.<i>.<sym>``, ``orderbook.<n>.<sym>``,
  ``publicTrade.<sym>``, ``tickers.<sym>``, ping/pong) and ``/v5/private`` (auth,
  ``order``, ``execution``, ``position``, ``wallet``).
* Data: candles from ``bybit/klines/<SYM>_1m.csv`` (each published as a confirmed
  kline, ``kline_period`` seconds apart); order-book, trade and ticker frames
  replayed from the real capture ``bybit/ws/BYBIT.jsonl.zst``; instrument rules from
  the capture's instruments-info response. Market orders fill at the last published
  close (rounded to the tick against the taker), limit orders when the close crosses
  them; taker 0.055 %, maker 0.02 % (the worker's paper fee table).
* Faults on demand (:meth:`BybitTestExchange.inject`): ``rate_limit`` (10006 with or
  without headers, reset in the past or future), ``http_status`` (5xx/403/429),
  ``timeout_after_accept`` (the order is placed, the answer comes too late),
  ``reject`` (any retCode), ``partial_fill``, ``ws_drop``, ``seq_gap``, ``stale``,
  plus ``clock_skew_ms`` (the exchange's clock runs ahead: 10002).

Every response and frame is checked against the official examples' shapes
(:mod:`shapes`) before it is sent; a mismatch is a bug in this server and is
recorded in ``shape_errors`` (tests assert it stays empty).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import itertools
import json
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, quote

from aiohttp import WSMsgType, web

from hean.marketdata import Instrument, _instrument_from_record
from hean.engine.book import matcher_for
from hean.worker.engine import FEES

from .shapes import Shapes, ShapeError

ZERO = Decimal(0)
ORDER_PATHS = ("/v5/order/create", "/v5/order/cancel", "/v5/order/amend")
CAPTURE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")


def now_ms() -> int:
    return int(time.time() * 1000)


def sign(secret: str, payload: str) -> str:
    """Bybit's HMAC-SHA256 hex signature."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def dstr(x: Decimal) -> str:
    """A decimal as Bybit prints it (no exponent, no trailing zeros beyond need)."""
    s = format(x.normalize(), "f")
    return s if s not in ("-0",) else "0"


def fill(template: dict, values: dict) -> dict:
    """Override example values; a key the example lacks is a programming error."""
    for k, v in values.items():
        if k not in template:
            raise ShapeError(f"{k!r} is not a field of the official example")
        template[k] = v
    return template


@dataclass
class Fault:
    kind: str
    path: str | None = None
    count: int = 1
    params: dict = field(default_factory=dict)


@dataclass
class XOrder:
    order_id: str
    link: str
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal
    reduce_only: bool
    tif: str
    created: int
    status: str = "New"
    cum_qty: Decimal = ZERO
    cum_value: Decimal = ZERO
    cum_fee: Decimal = ZERO
    updated: int = 0
    reject_reason: str = "EC_NoError"
    closed_pnl: Decimal = ZERO
    n: int = 0
    category: str = "linear"  # creation number: the stable key of order-list cursors

    @property
    def leaves(self) -> Decimal:
        return self.qty - self.cum_qty if self.status in ("New", "PartiallyFilled") else ZERO


@dataclass
class XPosition:
    symbol: str
    size: Decimal = ZERO  # signed
    avg: Decimal = ZERO
    cum_realised: Decimal = ZERO
    seq: int = 0
    created: int = 0
    updated: int = 0


@dataclass
class Account:
    api_key: str
    secret: str
    wallet: Decimal
    orders: dict = field(default_factory=dict)   # orderId -> XOrder
    by_link: dict = field(default_factory=dict)  # orderLinkId -> XOrder
    executions: list = field(default_factory=list)  # dicts (internal), oldest first
    positions: dict = field(default_factory=dict)   # symbol -> XPosition
    order_calls: deque = field(default_factory=deque)  # ms timestamps of order requests
    private_ws: set = field(default_factory=set)
    by_n: dict = field(default_factory=dict)  # order number (the native matcher's id) -> XOrder
    coins: dict = field(default_factory=dict)  # spot: base coin -> balance (USDT is ``wallet``)
    dcp_allowed: bool = False  # Bybit enables Disconnection Protect per account on request
    dcp_window_s: int = 0      # 0 = off
    dcp_product: str = "OPTIONS"
    recv_windows: set = field(default_factory=set)  # X-BAPI-RECV-WINDOW values seen (ms)
    dcp_cancelled: int = 0


class BybitTestExchange:
    """The exchange. ``start()`` runs it on a background thread's event loop and
    returns the REST base URL; ``stop()`` ends it. Thread-safe control methods:
    :meth:`add_account`, :meth:`inject`, :meth:`set_clock_skew`."""

    def __init__(self, marketdata_dir: Path, symbols=("BTCUSDT", "ETHUSDT"), kline_period: float = 0.25,
                 frame_period: float = 0.05, order_limit_per_s: int = 10, ip_limit_per_5s: int = 600,
                 host: str = "127.0.0.1", port: int = 0, start_bar: int = 0, autoplay: bool = True,
                 dcp_time_scale: float = 1.0):
        self.md = Path(marketdata_dir)
        self.shapes = Shapes(self.md)
        self.symbols = list(symbols)
        self.kline_period = kline_period
        self.frame_period = frame_period
        self.order_limit = order_limit_per_s
        self.ip_limit = ip_limit_per_5s
        self.host, self.port = host, port
        self.autoplay = autoplay
        self.dcp_time_scale = dcp_time_scale  # tests shrink DCP's 3..300 s windows
        self.accounts: dict[str, Account] = {}
        self.categories = ("linear", "spot")
        self.matchers: dict = {}       # (apiKey, category, symbol) -> hean._native.PaperMatcher
        self.matcher_seen: dict = {}   # -> fills already booked
        self.matcher_u: dict = {}      # -> update id of the last quote
        self.matcher_pending_requote: set = set()
        self.faults: list[Fault] = []
        self.clock_skew_ms = 0
        self.lock = threading.RLock()
        self.shape_errors: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every REST request
        self.order_creates: dict = defaultdict(int)  # (apiKey, orderLinkId) -> accepted creates
        self.ip_calls: deque = deque()
        self.public_ws: set = set()
        self.subs: dict = {}  # ws -> set(topics)
        self.conn_ids: dict = {}
        self.gap_next: set[str] = set()
        self.stale_until = 0.0
        self._ids = itertools.count(1)
        self._seq = itertools.count(5_000_000_000)
        self._load_market(start_bar)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.rest_url = ""
        self.ws_public_url = ""
        self.ws_private_url = ""

    # ---- data ---------------------------------------------------------------------
    def _load_market(self, start_bar: int) -> None:
        import zstandard

        inst_doc = self.shapes.example("rest.instruments.linear")
        self.instrument_records = {it["symbol"]: it for it in inst_doc["result"]["list"]}
        self.instruments: dict[str, Instrument] = {
            s: _instrument_from_record("linear", r) for s, r in self.instrument_records.items()}
        spot_doc = self.shapes.example("rest.instruments.spot")
        self.spot_records = {it["symbol"]: it for it in spot_doc["result"]["list"]}
        self.spot_instruments: dict[str, Instrument] = {
            s: _instrument_from_record("spot", r) for s, r in self.spot_records.items()}
        self.bars: dict[str, list] = {}
        self.cursor: dict[str, int] = {}
        for s in self.symbols:
            if s not in self.instruments:
                raise ValueError(f"test exchange: no instrument info for {s} in the capture subset")
            text = (self.md / "bybit" / "klines" / f"{s}_1m.csv").read_text()
            rows = list(csv.DictReader(io.StringIO(text)))
            self.bars[s] = [(int(datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp() * 1000),
                             r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in rows]
            self.cursor[s] = start_bar
        self.frames: dict[str, list[dict]] = defaultdict(list)
        with (self.md / "bybit" / "ws" / "BYBIT.jsonl.zst").open("rb") as raw:
            reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
            linear_conns: set = set()
            for line in reader:
                if '"connect"' in line[:40]:
                    rec = json.loads(line)
                    if str(rec.get("addr", "")).endswith("/v5/public/linear"):
                        linear_conns.add(rec.get("conn"))
                    continue
                if '"recv"' not in line[:40]:
                    continue
                rec = json.loads(line)
                if rec.get("conn") not in linear_conns:
                    continue  # the capture also holds spot streams with the same topic names
                try:
                    msg = json.loads(rec["data"])
                except (TypeError, ValueError):
                    continue
                topic = msg.get("topic", "")
                kind = topic.split(".")[0]
                if kind in ("orderbook", "publicTrade", "tickers"):
                    self.frames[topic.rsplit(".", 1)[1]].append(msg)
        self.frame_cursor = {s: 0 for s in self.frames}
        self.books: dict[str, dict] = {s: {"b": {}, "a": {}, "u": 0, "seq": 0} for s in self.frames}
        self.tickers: dict[str, dict] = {}

    def inst(self, category: str, symbol: str) -> Instrument | None:
        """The instrument rules of ``symbol`` in ``category`` (``linear`` or ``spot``), None if unknown."""
        return (self.spot_instruments if category == "spot" else self.instruments).get(symbol)

    def last_price(self, symbol: str) -> Decimal:
        i = max(self.cursor[symbol] - 1, 0)
        return Decimal(self.bars[symbol][i][4])

    # ---- control (any thread) ------------------------------------------------------
    def add_account(self, api_key: str, secret: str, usdt: Decimal | str = "100000") -> Account:
        with self.lock:
            acc = self.accounts[api_key] = Account(api_key, secret, Decimal(usdt))
            return acc

    def inject(self, kind: str, path: str | None = None, count: int = 1, **params) -> None:
        """Queue a fault; it fires on the next ``count`` matching requests/frames."""
        with self.lock:
            if kind == "ws_drop":
                self._call_soon(self._drop_ws(params.get("channel", "both")))
                return
            if kind == "seq_gap":
                self.gap_next.add(params["symbol"])
                return
            if kind == "stale":
                self.stale_until = time.monotonic() + float(params.get("seconds", 5))
                return
            self.faults.append(Fault(kind, path, count, params))

    def trade_history(self, api_key: str, category: str, symbol: str, links: list[str], qty: str,
                      sides=("Buy", "Sell")) -> list[XOrder]:
        """Give an account a trading history without going through REST (no rate limit):
        one filled Market order per orderLinkId in ``links`` (``qty`` base coin, sides
        cycling through ``sides``), matched and booked by the same code as a REST order, so
        ``/v5/execution/list`` and ``/v5/order/history`` have more rows than one page."""
        out = []
        with self.lock:
            acc = self.accounts[api_key]
            for i, link in enumerate(links):
                t = self.time_ms()
                o = XOrder(str(uuid.uuid4()), link, symbol, sides[i % len(sides)], "Market", Decimal(qty), ZERO,
                           False, "IOC", t, updated=t, n=next(self._ids), category=category)
                self._try_match(acc, o)
                out.append(o)
        return out

    def set_clock_skew(self, ms: int) -> None:
        self.clock_skew_ms = ms

    def time_ms(self) -> int:
        return now_ms() + self.clock_skew_ms

    def _take_fault(self, kinds: tuple, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.kind in kinds and (f.path is None or f.path == path):
                    f.count -= 1
                    if f.count <= 0:
                        self.faults.remove(f)
                    return f
        return None

    def _call_soon(self, coro) -> None:
        if self.loop is None:
            coro.close()
            return
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    # ---- lifecycle --------------------------------------------------------------------
    def start(self) -> str:
        started = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._start_server())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="bybit-test-exchange", daemon=True)
        self.thread.start()
        if not started.wait(30):
            raise RuntimeError("test exchange did not start")
        return self.rest_url

    async def _start_server(self) -> None:
        app = web.Application()
        app.router.add_get("/v5/public/linear", self._ws_public)
        app.router.add_get("/v5/public/spot", self._ws_public_spot)
        app.router.add_get("/v5/private", self._ws_private)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.rest_url = f"http://{self.host}:{self.port}"
        self.ws_public_url = f"ws://{self.host}:{self.port}/v5/public/linear"
        self.ws_private_url = f"ws://{self.host}:{self.port}/v5/private"
        self.feed_task = asyncio.get_running_loop().create_task(self._feed())

    def stop(self) -> None:
        if self.loop is None:
            return

        async def down():
            self.feed_task.cancel()
            for ws in list(self.public_ws) + [w for a in self.accounts.values() for w in a.private_ws]:
                await ws.close()
            await self.runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(down(), self.loop)
        try:
            fut.result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop = None

    # ---- REST ----------------------------------------------------------------------
    def _envelope(self, code: int, msg: str, result: dict | None = None) -> dict:
        return {"retCode": code, "retMsg": msg, "result": result if result is not None else {},
                "retExtInfo": {}, "time": self.time_ms()}

    def _respond(self, body: dict, kind: str | None, headers: dict | None = None, status: int = 200):
        try:
            self.shapes.validate(kind if body["retCode"] == 0 and kind else "rest.envelope", body)
        except ShapeError as e:
            self.shape_errors.append(f"{kind}: {e}")
            raise
        return web.Response(text=json.dumps(body), status=status, content_type="application/json",
                            headers=headers or {})

    def _limit_headers(self, acc: Account, path: str, at: int) -> dict:
        limit = self.order_limit if path in ORDER_PATHS else 50
        window = [t for t in acc.order_calls if t > at - 1000] if path in ORDER_PATHS else []
        remaining = max(limit - len(window), 0)
        reset = (window[0] + 1000) if window else at
        return {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(remaining),
                "X-Bapi-Limit-Reset-Timestamp": str(reset)}

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests.append((request.method, path))
        t = time.monotonic()
        self.ip_calls.append(t)
        while self.ip_calls and self.ip_calls[0] < t - 5:
            self.ip_calls.popleft()
        if len(self.ip_calls) > self.ip_limit:
            return web.Response(status=403, text="403 Forbidden: access too frequent")
        f = self._take_fault(("http_status",), path)
        if f is not None:
            return web.Response(status=int(f.params.get("status", 502)), text="Bad Gateway")
        body_text = await request.text()
        if request.method == "GET":
            raw_query = request.rel_url.raw_query_string  # as sent: Bybit signs the raw string
            params = dict(parse_qsl(raw_query, keep_blank_values=True))
            sign_payload = raw_query
        else:
            try:
                params = json.loads(body_text) if body_text else {}
            except ValueError:
                return self._respond(self._envelope(10001, "Request parameter error: body is not JSON"), None)
            sign_payload = body_text
        public = path.startswith("/v5/market/")
        handler = {
            "/v5/market/time": self._market_time, "/v5/market/instruments-info": self._market_instruments,
            "/v5/market/kline": self._market_kline, "/v5/market/orderbook": self._market_orderbook,
            "/v5/market/funding/history": self._market_funding, "/v5/market/recent-trade": self._market_trades,
            "/v5/order/create": self._order_create, "/v5/order/cancel": self._order_cancel,
            "/v5/order/realtime": self._order_realtime, "/v5/order/history": self._order_history,
            "/v5/execution/list": self._execution_list,
            "/v5/position/list": self._position_list, "/v5/account/wallet-balance": self._wallet_balance,
            "/v5/order/disconnected-cancel-all": self._set_dcp,
        }.get(path)
        if handler is None:
            return web.Response(status=404, text="404 page not found")
        if public:
            body, kind = handler(params)
            return self._respond(body, kind)
        # -- authentication, exactly as Bybit checks it
        key = request.headers.get("X-BAPI-API-KEY", "")
        ts = request.headers.get("X-BAPI-TIMESTAMP", "")
        recv = request.headers.get("X-BAPI-RECV-WINDOW", "5000")
        sig = request.headers.get("X-BAPI-SIGN", "")
        acc = self.accounts.get(key)
        if acc is None:
            return self._respond(self._envelope(10003, "API key is invalid."), None)
        if not hmac.compare_digest(sign(acc.secret, ts + key + recv + sign_payload), sig):
            return self._respond(self._envelope(
                10004, "error sign! origin_string[" + ts + key + recv + "...]"), None)
        server = self.time_ms()
        try:
            ts_i, recv_i = int(ts), int(recv)
        except ValueError:
            return self._respond(self._envelope(10001, "X-BAPI-TIMESTAMP and X-BAPI-RECV-WINDOW must be integers"), None)
        acc.recv_windows.add(recv_i)
        if not (server - recv_i <= ts_i < server + 1000):
            return self._respond(self._envelope(
                10002, f"invalid request, please check your server timestamp or recv_window param. "
                       f"req_timestamp[{ts_i}],server_timestamp[{server}],recv_window[{recv_i}]"), None)
        f = self._take_fault(("rate_limit",), path)
        if f is not None:
            headers = {}
            if f.params.get("headers", True):
                headers = {"X-Bapi-Limit": str(self.order_limit), "X-Bapi-Limit-Status": "0",
                           "X-Bapi-Limit-Reset-Timestamp": str(server + int(f.params.get("reset_in_ms", 300)))}
            return self._respond(self._envelope(10006, "Too many visits. Exceeded the API Rate Limit."), None, headers)
        if path in ORDER_PATHS:
            while acc.order_calls and acc.order_calls[0] <= server - 1000:
                acc.order_calls.popleft()
            if len(acc.order_calls) >= self.order_limit:
                return self._respond(self._envelope(10006, "Too many visits. Exceeded the API Rate Limit."), None,
                                     self._limit_headers(acc, path, server))
            acc.order_calls.append(server)
        f = self._take_fault(("reject",), path)
        if f is not None:
            return self._respond(self._envelope(int(f.params["retCode"]), f.params.get("retMsg", "rejected")),
                                 None, self._limit_headers(acc, path, server))
        with self.lock:
            body, kind = handler(params, acc)
        f = self._take_fault(("timeout_after_accept",), path)
        if f is not None:
            await asyncio.sleep(float(f.params.get("delay", 3)))
        return self._respond(body, kind, self._limit_headers(acc, path, server))

    # -- market
    def _market_time(self, p):
        t = self.time_ms()
        return self._envelope(0, "OK", {"timeSecond": str(t // 1000), "timeNano": str(t * 1_000_000)}), "rest.time"

    def _market_instruments(self, p):
        if p.get("category") not in self.categories:
            return self._envelope(10001, "params error: category only 'linear' or 'spot' on this test exchange"), None
        kind = "rest.instruments." + p["category"]
        doc = self.shapes.example(kind)
        if p.get("symbol"):
            doc["result"]["list"] = [it for it in doc["result"]["list"] if it["symbol"] == p["symbol"]]
        doc["time"] = self.time_ms()
        return doc, kind

    def _market_kline(self, p):
        sym = p.get("symbol")
        if sym not in self.bars or p.get("interval") != "1":
            return self._envelope(10001, "params error: symbol or interval (test exchange: interval 1)"), None
        limit = min(int(p.get("limit", 200)), 1000)
        end = self.cursor[sym]
        rows = self.bars[sym][max(end - limit, 0):end]
        lst = [[str(b[0]), b[1], b[2], b[3], b[4], b[5], dstr(Decimal(b[4]) * Decimal(b[5]))] for b in reversed(rows)]
        return self._envelope(0, "OK", {"symbol": sym, "category": "linear", "list": lst}), "rest.kline"

    def _book_levels(self, sym: str, depth: int):
        book = self.books[sym]
        bids = sorted(book["b"].items(), key=lambda kv: -Decimal(kv[0]))[:depth]
        asks = sorted(book["a"].items(), key=lambda kv: Decimal(kv[0]))[:depth]
        return [[p, q] for p, q in bids], [[p, q] for p, q in asks]

    def _market_orderbook(self, p):
        sym = p.get("symbol")
        if sym not in self.books:
            return self._envelope(10001, f"params error: symbol {sym} has no book on this test exchange"), None
        b, a = self._book_levels(sym, int(p.get("limit", 25)))
        book = self.books[sym]
        return self._envelope(0, "OK", {"s": sym, "a": a, "b": b, "ts": self.time_ms(), "u": book["u"],
                                        "seq": book["seq"], "cts": self.time_ms()}), "rest.orderbook"

    def _market_funding(self, p):
        sym = p.get("symbol")
        if not sym:
            return self._envelope(10001, "params error: symbol is required"), None
        fix = json.loads((self.md / "bybit" / "api" / "fixtures" / "http_get_funding_history.json").read_text())
        lst = [{"symbol": sym, "fundingRate": it["fundingRate"], "fundingRateTimestamp": it["fundingRateTimestamp"]}
               for it in fix["result"]["list"]]
        return self._envelope(0, "OK", {"category": "linear", "list": lst}), "rest.funding"

    def _market_trades(self, p):
        sym = p.get("symbol")
        trades = [d for m in self.frames.get(sym, []) if m["topic"].startswith("publicTrade") for d in m["data"]]
        tmpl = self.shapes.template("rest.recent_trade", "result", "list", 0)
        lst = []
        for d in trades[-int(p.get("limit", 60)):]:
            item = dict(tmpl)
            for k_ws, k_rest in (("i", "execId"), ("s", "symbol"), ("p", "price"), ("v", "size"), ("S", "side")):
                if k_rest in item:
                    item[k_rest] = d[k_ws]
            if "time" in item:
                item["time"] = str(d["T"])
            lst.append(item)
        doc = self.shapes.example("rest.recent_trade")
        doc["result"]["list"] = lst
        doc["time"] = self.time_ms()
        return doc, "rest.recent_trade"

    # -- trading
    def _order_create(self, p, acc: Account):
        cat, sym, side, otype = p.get("category"), p.get("symbol"), p.get("side"), p.get("orderType")
        if cat not in self.categories:
            return self._envelope(10001, "params error: category must be linear or spot"), None
        if self.inst(cat, sym) is None or sym not in self.bars:
            return self._envelope(10001, f"params error: symbol invalid ({sym})"), None
        if side not in ("Buy", "Sell"):
            return self._envelope(10001, "params error: side invalid"), None
        if otype not in ("Market", "Limit"):
            return self._envelope(10001, "params error: orderType invalid"), None
        inst = self.inst(cat, sym)
        try:
            qty = Decimal(str(p.get("qty")))
            price = Decimal(str(p["price"])) if otype == "Limit" else ZERO
        except Exception:  # noqa: BLE001
            return self._envelope(10001, "params error: qty/price must be decimal strings"), None
        if cat == "spot":
            return self._spot_create(p, acc, inst, side, otype, qty, price)
        if qty <= 0 or qty % inst.qty_step != 0 or qty < inst.min_order_qty:
            return self._envelope(10001, f"Qty invalid: {p.get('qty')} (step {inst.qty_step}, min {inst.min_order_qty})"), None
        if otype == "Limit" and (price <= 0 or price % inst.tick_size != 0):
            return self._envelope(10001, f"params error: price invalid: {p.get('price')}"), None
        link = str(p.get("orderLinkId") or "")
        if len(link) > 36:
            return self._envelope(10001, "params error: orderLinkId is longer than 36 characters"), None
        if link and link in acc.by_link:
            return self._envelope(110072, "OrderLinkedID is duplicate"), None
        ref = price if otype == "Limit" else self.last_price(sym)
        reduce_only = bool(p.get("reduceOnly", False))
        if not reduce_only:  # reduce-only (110017, clamp to the position) is the native matcher's rule
            need = qty * ref / 10 + qty * ref * FEES["linear"][0]
            if need > self._available(acc):
                return self._envelope(110007, "ab not enough for new order"), None
        t = self.time_ms()
        o = XOrder(str(uuid.uuid4()), link, sym, side, otype, qty, price, reduce_only,
                   str(p.get("timeInForce") or ("IOC" if otype == "Market" else "GTC")), t, updated=t,
                   n=next(self._ids))
        err = self._submit(acc, o, partial=self._take_fault(("partial_fill",), None) is not None)
        if err is not None:
            return err, None
        return self._envelope(0, "OK", {"orderId": o.order_id, "orderLinkId": link}), "rest.order.create"

    def _spot_create(self, p, acc: Account, inst: Instrument, side: str, otype: str, qty: Decimal, price: Decimal):
        """A spot order (https://bybit-exchange.github.io/docs/v5/order/create-order): no
        ``reduceOnly`` (10001 here), no short (selling more base coin than the account holds
        is 170131 insufficient balance), a Market Buy's ``qty`` is in the quote coin unless
        ``marketUnit`` is ``baseCoin`` (a Sell's is in the base coin), base qty a multiple of
        ``basePrecision`` and at least ``minOrderQty``, value at least ``minOrderAmt`` (170140)."""
        sym, link = p["symbol"], str(p.get("orderLinkId") or "")
        if p.get("reduceOnly") not in (None, False, "false"):
            return self._envelope(10001, "params error: reduceOnly is not supported for spot"), None
        unit = p.get("marketUnit") or ("quoteCoin" if otype == "Market" and side == "Buy" else "baseCoin")
        if unit not in ("baseCoin", "quoteCoin"):
            return self._envelope(10001, "params error: marketUnit must be baseCoin or quoteCoin"), None
        ref = price if otype == "Limit" else self.last_price(sym)
        if otype == "Market" and unit == "quoteCoin":
            if qty <= 0:
                return self._envelope(10001, f"Qty invalid: {p.get('qty')}"), None
            quote_amount, qty = qty, inst.round_qty(qty / ref)
        else:
            quote_amount = qty * ref
        if qty <= 0 or qty % inst.qty_step != 0 or qty < inst.min_order_qty:
            return self._envelope(10001, f"Qty invalid: {p.get('qty')} (basePrecision {inst.qty_step}, "
                                         f"min {inst.min_order_qty})"), None
        if otype == "Limit" and (price <= 0 or price % inst.tick_size != 0):
            return self._envelope(10001, f"params error: price invalid: {p.get('price')}"), None
        if quote_amount < inst.min_notional:
            return self._envelope(170140, "Order value exceeded lower limit."), None
        if len(link) > 36:
            return self._envelope(10001, "params error: orderLinkId is longer than 36 characters"), None
        if link and link in acc.by_link:
            return self._envelope(170141, "Duplicate clientOrderId."), None
        base = self._base_coin(sym)
        if (side == "Buy" and quote_amount > acc.wallet) or (side == "Sell" and qty > acc.coins.get(base, ZERO)):
            return self._envelope(170131, "Insufficient balance."), None
        t = self.time_ms()
        o = XOrder(str(uuid.uuid4()), link, sym, side, otype, qty, price, False,
                   str(p.get("timeInForce") or ("IOC" if otype == "Market" else "GTC")), t, updated=t,
                   n=next(self._ids), category="spot")
        err = self._submit(acc, o, partial=self._take_fault(("partial_fill",), None) is not None)
        if err is not None:
            return err, None
        return self._envelope(0, "OK", {"orderId": o.order_id, "orderLinkId": link}), "rest.order.create"

    def _base_coin(self, symbol: str) -> str:
        return self.spot_records[symbol]["baseCoin"] if symbol in self.spot_records else symbol[:-4]

    def _available(self, acc: Account) -> Decimal:
        used = sum((abs(p.size) * p.avg / 10 for p in acc.positions.values()), ZERO)
        return acc.wallet - used

    # ---- matching: the native paper engine (hean._native.PaperMatcher) ----------------------
    def _matcher(self, acc: Account, category: str, symbol: str):
        """The native matcher of one account's ``category``/``symbol`` (its own position and
        orders, like an account's book on Bybit), quoting the current price."""
        key = (acc.api_key, category, symbol)
        m = self.matchers.get(key)
        if m is None:
            m = self.matchers[key] = matcher_for(self.inst(category, symbol))
            self.matcher_seen[key] = 0
            self.matcher_u[key] = 0
            self._quote(key, m)
        return key, m

    def _quote(self, key: tuple, m, thin: tuple | None = None) -> None:
        """Give the matcher a book at the last published close: best bid the close rounded
        down to the tick, best ask one tick above, each 1,000,000 base coin deep (the candle
        data has no depth). ``thin=(side, qty units)`` leaves only that much on the side a
        ``side`` order takes (the ``partial_fill`` fault). ``on_book`` also re-checks resting
        limit orders against the new prices (native ``recheck_resting``)."""
        _, category, symbol = key
        inst = self.inst(category, symbol)
        bid = inst.round_price(self.last_price(symbol), "down")
        ask = bid + inst.tick_size
        deep = "1000000"
        bq = aq = deep
        if thin is not None:
            q = dstr(Decimal(thin[1]).scaleb(-m.book.size_decimals))
            if thin[0] == "Buy":
                aq = q
            else:
                bq = q
        self.matcher_u[key] += 1
        u = self.matcher_u[key]
        st = m.on_book(True, [(dstr(bid), bq)], [(dstr(ask), aq)], u, u, self.time_ms())
        if st != "OK":
            self.shape_errors.append(f"native matcher refused the quote {bid}/{ask} for {symbol}: {st}")

    def _submit(self, acc: Account, o: XOrder, partial: bool = False) -> dict | None:
        """Match ``o`` with the native engine; on success store it, publish it, book its fills
        and return None, else return the matcher's reject envelope (nothing is stored)."""
        key, m = self._matcher(acc, o.category, o.symbol)
        pd, qd = m.book.price_decimals, m.book.size_decimals
        qty_u = int(o.qty.scaleb(qd))
        px_u = int(o.price.scaleb(pd)) if o.order_type == "Limit" else 0
        tif = o.tif if o.tif in ("GTC", "IOC", "FOK", "PostOnly") else "GTC"
        if partial:
            self._quote(key, m, thin=(o.side, max(qty_u // 2, 1)))
        try:
            code, msg, _ = m.submit(o.n, o.side, o.order_type, qty_u, px_u, tif, o.reduce_only, self.time_ms())
        finally:
            if partial:
                self.matcher_pending_requote.add(key)
        if code:
            self.matcher_seen[key] = len(m.fills())
            return self._envelope(int(code), msg)
        acc.orders[o.order_id] = o
        acc.by_n[o.n] = o
        if o.link:
            acc.by_link[o.link] = o
            self.order_creates[(acc.api_key, o.link)] += 1
        self._push_order(acc, o)
        self._collect(acc, key, m)
        self._sync(acc, m, o)
        if key in self.matcher_pending_requote:
            self.matcher_pending_requote.discard(key)
            self._requote(acc, key, m)
        return None

    def _collect(self, acc: Account, key: tuple, m) -> None:
        """Book the matcher's new fills (prices/qty in its units, fee in 1e-8 USDT)."""
        fills = m.fills()
        new, self.matcher_seen[key] = fills[self.matcher_seen[key]:], len(fills)
        pd, qd = m.book.price_decimals, m.book.size_decimals
        for oid, _ts, _side, price, qty, fee_e8, liquidity in new:
            o = acc.by_n[oid]
            self._execute(acc, o, Decimal(qty).scaleb(-qd), Decimal(price).scaleb(-pd), liquidity == "maker",
                          Decimal(fee_e8).scaleb(-8))

    def _sync(self, acc: Account, m, o: XOrder) -> None:
        """Take over the matcher's verdict on ``o`` (IOC/FOK/PostOnly remainders cancelled, a
        reduce-only order left without a position): Bybit's Cancelled or PartiallyFilledCanceled."""
        d = m.order(o.n)
        if d is not None and d["status"] == "Cancelled" and o.status in ("New", "PartiallyFilled"):
            o.status = "PartiallyFilledCanceled" if o.cum_qty > 0 else "Cancelled"
            o.updated = self.time_ms()
            self._push_order(acc, o)

    def _requote(self, acc: Account, key: tuple, m) -> None:
        self._quote(key, m)
        self._collect(acc, key, m)
        for o in list(acc.orders.values()):
            if o.category == key[1] and o.symbol == key[2] and o.status in ("New", "PartiallyFilled"):
                self._sync(acc, m, o)

    def _try_match(self, acc: Account, o: XOrder, partial: bool = False) -> None:
        """(History seeding) submit an order built outside REST to the native matcher."""
        err = self._submit(acc, o, partial)
        if err is not None:
            raise ValueError(f"test exchange: history order refused: {err['retMsg']}")

    def _execute(self, acc: Account, o: XOrder, qty: Decimal, px: Decimal, maker: bool, fee: Decimal) -> None:
        """Book one fill of the native matcher on the account (position, wallet, order) and
        publish execution, order, position and wallet frames. ``fee`` in USDT (the matcher's)."""
        if qty <= 0 or o.status not in ("New", "PartiallyFilled"):
            return
        if o.category == "spot":
            return self._execute_spot(acc, o, qty, px, maker)
        rate = FEES["linear"][1 if maker else 0]
        value = qty * px
        pos = acc.positions.setdefault(o.symbol, XPosition(o.symbol, created=self.time_ms()))
        signed = qty if o.side == "Buy" else -qty
        closed = ZERO
        pnl = ZERO
        if pos.size == 0 or (pos.size > 0) == (signed > 0):
            new = pos.size + signed
            pos.avg = (pos.avg * abs(pos.size) + px * qty) / abs(new)
            pos.size = new
        else:
            closed = min(qty, abs(pos.size))
            direction = 1 if pos.size > 0 else -1
            pnl = (px - pos.avg) * closed * direction
            rem = pos.size + signed
            if rem == 0:
                pos.avg = ZERO
            elif (rem > 0) != (pos.size > 0):
                pos.avg = px
            pos.size = rem
        pos.cum_realised += pnl - fee
        pos.seq = next(self._seq)
        pos.updated = self.time_ms()
        acc.wallet += pnl - fee
        o.cum_qty += qty
        o.cum_value += value
        o.cum_fee += fee
        o.closed_pnl += pnl
        o.status = "Filled" if o.cum_qty >= o.qty else "PartiallyFilled"
        o.updated = self.time_ms()
        ex = {"execId": str(uuid.uuid4()), "orderId": o.order_id, "orderLinkId": o.link, "symbol": o.symbol,
              "side": o.side, "execPrice": dstr(px), "execQty": dstr(qty), "execValue": dstr(value),
              "execFee": dstr(fee), "feeRate": dstr(rate), "isMaker": maker, "execTime": str(o.updated),
              "orderType": o.order_type, "orderQty": dstr(o.qty), "orderPrice": dstr(o.price if o.price else px),
              "leavesQty": dstr(o.qty - o.cum_qty), "closedSize": dstr(closed), "markPrice": dstr(self.last_price(o.symbol)),
              "execPnl": dstr(pnl), "seq": next(self._seq), "category": "linear", "feeCurrency": "USDT"}
        acc.executions.append(ex)
        self._push_private(acc, "execution", self._ws_execution(ex))
        self._push_order(acc, o)
        self._push_private(acc, "position", self._ws_position(pos))
        self._push_private(acc, "wallet", self._ws_wallet(acc))

    def _execute_spot(self, acc: Account, o: XOrder, qty: Decimal, px: Decimal, maker: bool) -> None:
        """A spot fill: the fee is charged in the coin received (base coin on a Buy, to 8
        decimals - finer than ``basePrecision``, so a holding can end in unsellable dust;
        USDT on a Sell), balances move, there is no position."""
        rate = FEES["spot"][1 if maker else 0]
        value = qty * px
        base = self._base_coin(o.symbol)
        if o.side == "Buy":
            fee = (qty * rate).quantize(Decimal("0.00000001"), rounding="ROUND_HALF_UP")
            fee_ccy = base
            acc.coins[base] = acc.coins.get(base, ZERO) + qty - fee
            acc.wallet -= value
            fee_usdt = fee * px
        else:
            fee = (value * rate).quantize(Decimal("0.00000001"))
            fee_ccy, fee_usdt = "USDT", fee
            acc.coins[base] = acc.coins.get(base, ZERO) - qty
            acc.wallet += value - fee
        o.cum_qty += qty
        o.cum_value += value
        o.cum_fee += fee_usdt
        o.status = "Filled" if o.cum_qty >= o.qty else "PartiallyFilled"
        o.updated = self.time_ms()
        ex = {"execId": str(uuid.uuid4()), "orderId": o.order_id, "orderLinkId": o.link, "symbol": o.symbol,
              "side": o.side, "execPrice": dstr(px), "execQty": dstr(qty), "execValue": dstr(value),
              "execFee": dstr(fee), "feeRate": dstr(rate), "isMaker": maker, "execTime": str(o.updated),
              "orderType": o.order_type, "orderQty": dstr(o.qty), "orderPrice": dstr(o.price if o.price else px),
              "leavesQty": dstr(o.qty - o.cum_qty), "closedSize": "", "markPrice": dstr(self.last_price(o.symbol)),
              "execPnl": "0", "seq": next(self._seq), "category": "spot", "feeCurrency": fee_ccy}
        acc.executions.append(ex)
        self._push_private(acc, "execution", self._ws_execution(ex))
        self._push_order(acc, o)
        self._push_private(acc, "wallet", self._ws_wallet(acc))

    def _order_values(self, o: XOrder) -> dict:
        avg = o.cum_value / o.cum_qty if o.cum_qty else ZERO
        return {"orderId": o.order_id, "orderLinkId": o.link, "symbol": o.symbol, "price": dstr(o.price),
                "qty": dstr(o.qty), "side": o.side, "positionIdx": 0, "orderStatus": o.status,
                "rejectReason": o.reject_reason, "avgPrice": dstr(avg), "leavesQty": dstr(o.leaves),
                "leavesValue": dstr(o.leaves * (o.price or self.last_price(o.symbol))), "cumExecQty": dstr(o.cum_qty),
                "cumExecValue": dstr(o.cum_value), "cumExecFee": dstr(o.cum_fee), "timeInForce": o.tif,
                "orderType": o.order_type, "reduceOnly": o.reduce_only, "createdTime": str(o.created),
                "updatedTime": str(o.updated), "cancelType": "UNKNOWN", "stopOrderType": "", "takeProfit": "",
                "stopLoss": "", "triggerPrice": "", "cumFeeDetail": {"USDT": dstr(o.cum_fee)}}

    def _set_dcp(self, p, acc: Account):
        """Disconnection Protect (https://bybit-exchange.github.io/docs/v5/order/dcp):
        all open orders are cancelled when the account's private WebSocket stays
        disconnected longer than ``timeWindow`` seconds (3..300)."""
        try:
            window = int(p.get("timeWindow"))
        except (TypeError, ValueError):
            return self._envelope(10001, "params error: timeWindow must be an integer"), None
        if not 3 <= window <= 300:
            return self._envelope(10001, "params error: timeWindow must be 3..300"), None
        if p.get("product", "OPTIONS") not in ("OPTIONS", "DERIVATIVES", "SPOT"):
            return self._envelope(10001, "params error: product must be OPTIONS, DERIVATIVES or SPOT"), None
        if not acc.dcp_allowed:
            return self._envelope(10005, "Permission denied, please check your API key permissions."), None
        acc.dcp_window_s = window
        acc.dcp_product = p.get("product", "OPTIONS")
        return self._envelope(0, "OK"), "rest.envelope"

    def _dcp_alive(self, acc: Account) -> bool:
        """Is any private connection of ``acc`` subscribed to a ``dcp.*`` topic? DCP fires only
        when all of them are gone (https://bybit-exchange.github.io/docs/v5/websocket/private/dcp)."""
        return any(t.startswith("dcp.") for w in acc.private_ws for t in self.subs.get(w, ()))

    async def _dcp_watch(self, acc: Account) -> None:
        await asyncio.sleep(acc.dcp_window_s * self.dcp_time_scale)
        with self.lock:
            if self._dcp_alive(acc):
                return  # reconnected (and subscribed to dcp) in time
            category = {"DERIVATIVES": "linear", "SPOT": "spot"}.get(acc.dcp_product)
            for o in acc.orders.values():
                if o.status in ("New", "PartiallyFilled") and o.category == category:
                    self._native_cancel(acc, o)
                    o.status, o.updated, o.reject_reason = "Cancelled", self.time_ms(), "EC_NoError"
                    acc.dcp_cancelled += 1

    def _native_cancel(self, acc: Account, o: XOrder) -> None:
        m = self.matchers.get((acc.api_key, o.category, o.symbol))
        if m is not None:
            m.cancel(o.n)

    def _order_cancel(self, p, acc: Account):
        o = acc.orders.get(p.get("orderId") or "") or acc.by_link.get(p.get("orderLinkId") or "")
        if o is None or o.status not in ("New", "PartiallyFilled"):
            return self._envelope(110001, "order not exists or too late to cancel"), None
        self._native_cancel(acc, o)
        o.status, o.updated = "Cancelled", self.time_ms()
        self._push_order(acc, o)
        return self._envelope(0, "OK", {"orderId": o.order_id, "orderLinkId": o.link}), "rest.order.cancel"

    @staticmethod
    def _page(items: list, p: dict, key, default: int, maximum: int):
        """Bybit's cursor paging over ``items`` (newest first, ``key(item)`` strictly
        decreasing): ``limit`` in 1..``maximum`` (default ``default``), ``cursor`` = the
        previous answer's ``nextPageCursor``. The cursor names the key of the last row
        returned (``"<key>:<page>,<key>:<page>"``, URL-encoded like Bybit's
        ``"132766%3A2%2C132766%3A2"``), so rows added between pages neither repeat nor
        shift the next page. Returns ``(page, nextPageCursor)`` ("" on the last page) or
        ``None`` for a bad ``limit``/``cursor`` (the caller answers 10001)."""
        try:
            limit = int(p.get("limit") or default)
        except ValueError:
            return None
        if not 1 <= limit <= maximum:
            return None
        after, page_no = None, 1
        if p.get("cursor"):
            try:
                first = p["cursor"].split(",")[0]
                after, page_no = int(first.split(":")[0]), int(first.split(":")[1]) + 1
            except (ValueError, IndexError):
                return None
        rest = [it for it in items if after is None or key(it) < after]
        page = rest[:limit]
        cursor = ""
        if len(rest) > limit:
            k = f"{key(page[-1])}:{page_no}"
            cursor = quote(f"{k},{k}", safe="")
        return page, cursor

    def _order_list(self, kind: str, orders: list, p: dict, default: int, maximum: int):
        paged = self._page(sorted(orders, key=lambda o: -o.n), p, lambda o: o.n, default, maximum)
        if paged is None:
            return self._envelope(10001, f"params error: limit must be 1..{maximum} and cursor a nextPageCursor"), None
        page, cursor = paged
        tmpl = self.shapes.template(kind, "result", "list", 0)
        lst = []
        for o in page:
            v = {k: val for k, val in self._order_values(o).items() if k in tmpl}
            lst.append(fill(json.loads(json.dumps(tmpl)), v))
        return self._envelope(0, "OK", {"list": lst, "nextPageCursor": cursor, "category": p["category"]}), kind

    def _order_realtime(self, p, acc: Account):
        """GET /v5/order/realtime: with ``openOnly=0`` (the default) open orders only, also
        when queried by orderId/orderLinkId (https://bybit-exchange.github.io/docs/v5/order/open-order);
        ``limit`` 1..50 (default 20), cursor paging."""
        if p.get("category") not in self.categories:
            return self._envelope(10001, "params error: category"), None
        orders = [o for o in self._select_orders(acc, p) if o.status in ("New", "PartiallyFilled")]
        return self._order_list("rest.order.realtime", orders, p, 20, 50)

    def _order_history(self, p, acc: Account):
        """GET /v5/order/history: finished orders (Filled, Cancelled, Rejected,
        PartiallyFilledCanceled) newest first (https://bybit-exchange.github.io/docs/v5/order/order-list);
        ``limit`` 1..50 (default 20), cursor paging, ``startTime`` in ms."""
        if p.get("category") not in self.categories:
            return self._envelope(10001, "params error: category"), None
        orders = [o for o in self._select_orders(acc, p) if o.status not in ("New", "PartiallyFilled")
                  and (not p.get("startTime") or o.created >= int(p["startTime"]))]
        body, kind = self._order_list("rest.order.history", orders, p, 20, 50)
        if kind:
            body["result"].pop("category")  # the documented history answer has no category
        return body, kind

    def _select_orders(self, acc: Account, p: dict) -> list:
        if p.get("orderId") or p.get("orderLinkId"):
            o = acc.orders.get(p.get("orderId") or "") or acc.by_link.get(p.get("orderLinkId") or "")
            return [o] if o is not None and o.category == p["category"] else []
        return [o for o in acc.orders.values() if o.category == p["category"]
                and (not p.get("symbol") or o.symbol == p["symbol"])]

    def _execution_list(self, p, acc: Account):
        """GET /v5/execution/list, newest first, ``limit`` 1..100 (default 50), cursor paging
        (https://bybit-exchange.github.io/docs/v5/order/execution)."""
        cat = p.get("category")
        exs = [e for e in acc.executions if e["category"] == cat and (not p.get("symbol") or e["symbol"] == p["symbol"])
               and (not p.get("orderLinkId") or e["orderLinkId"] == p["orderLinkId"])
               and (not p.get("startTime") or int(e["execTime"]) >= int(p["startTime"]))]
        paged = self._page(list(reversed(exs)), p, lambda e: e["seq"], 50, 100)
        if paged is None:
            return self._envelope(10001, "params error: limit must be 1..100 and cursor a nextPageCursor"), None
        page, cursor = paged
        tmpl = self.shapes.template("rest.execution.list", "result", "list", 0)
        lst = []
        for e in page:
            v = {k: e[k] for k in e if k in tmpl}
            v.update({"stopOrderType": "UNKNOWN", "execType": "Trade"})
            lst.append(fill(dict(tmpl), v))
        return self._envelope(0, "OK", {"nextPageCursor": cursor, "category": cat, "list": lst}), "rest.execution.list"

    def _position_values(self, pos: XPosition) -> dict:
        mark = self.last_price(pos.symbol) if pos.symbol in self.bars else pos.avg
        return {"positionIdx": 0, "symbol": pos.symbol, "side": "Buy" if pos.size > 0 else "Sell" if pos.size < 0 else "",
                "size": dstr(abs(pos.size)), "positionValue": dstr(abs(pos.size) * pos.avg), "leverage": "10",
                "markPrice": dstr(mark), "unrealisedPnl": dstr((mark - pos.avg) * pos.size if pos.size else ZERO),
                "cumRealisedPnl": dstr(pos.cum_realised), "seq": pos.seq, "createdTime": str(pos.created),
                "updatedTime": str(pos.updated), "tradeMode": 0, "positionStatus": "Normal"}

    def _position_list(self, p, acc: Account):
        if p.get("category") != "linear":
            return self._envelope(10001, "params error: category must be linear"), None
        if not p.get("symbol") and not p.get("settleCoin"):
            return self._envelope(10001, "params error: symbol or settleCoin is required"), None
        tmpl = self.shapes.template("rest.position.list", "result", "list", 0)
        poss = [x for x in acc.positions.values() if (p.get("symbol") and x.symbol == p["symbol"])
                or (not p.get("symbol") and x.size != 0)]
        if p.get("symbol") and not poss and p["symbol"] in self.instruments:
            poss = [XPosition(p["symbol"])]
        lst = []
        for x in poss:
            v = self._position_values(x)
            v["avgPrice"] = dstr(x.avg)
            lst.append(fill(dict(tmpl), v))
        return self._envelope(0, "OK", {"list": lst, "nextPageCursor": "", "category": "linear"}), "rest.position.list"

    def _spot_coins(self, acc: Account) -> list[dict]:
        """Wallet ``coin`` entries of the spot base coins held (valued at the last close)."""
        out = []
        for coin, bal in sorted(acc.coins.items()):
            sym = coin + "USDT"
            usd = bal * self.last_price(sym) if sym in self.bars else ZERO
            out.append({"coin": coin, "equity": dstr(bal), "usdValue": dstr(usd), "walletBalance": dstr(bal),
                        "unrealisedPnl": "0", "cumRealisedPnl": "0", "locked": "0"})
        return out

    def _wallet_values(self, acc: Account) -> tuple[dict, dict]:
        upl = sum(((self.last_price(x.symbol) - x.avg) * x.size for x in acc.positions.values() if x.size), ZERO)
        eq = acc.wallet + upl + sum((Decimal(c["usdValue"]) for c in self._spot_coins(acc)), ZERO)
        top = {"totalEquity": dstr(eq), "totalWalletBalance": dstr(acc.wallet), "totalMarginBalance": dstr(eq),
               "totalAvailableBalance": dstr(self._available(acc)), "totalPerpUPL": dstr(upl), "accountType": "UNIFIED"}
        coin = {"coin": "USDT", "equity": dstr(eq), "usdValue": dstr(eq), "walletBalance": dstr(acc.wallet),
                "unrealisedPnl": dstr(upl), "cumRealisedPnl": dstr(sum((x.cum_realised for x in acc.positions.values()), ZERO)),
                "locked": "0"}
        return top, coin

    def _wallet_balance(self, p, acc: Account):
        if p.get("accountType") != "UNIFIED":
            return self._envelope(10001, "accountType only support UNIFIED"), None
        item = self.shapes.template("rest.wallet", "result", "list", 0)
        top, coin = self._wallet_values(acc)
        fill(item, top)
        item["coin"] = [fill(json.loads(json.dumps(item["coin"][0])), c) for c in [coin] + self._spot_coins(acc)]
        return self._envelope(0, "OK", {"list": [item]}), "rest.wallet"

    # ---- private WebSocket ----------------------------------------------------------
    def _ws_execution(self, ex: dict) -> dict:
        d = self.shapes.template("ws.execution", "data", 0)
        v = {k: ex[k] for k in ex if k in d}
        v.update({"execType": "Trade", "stopOrderType": "UNKNOWN", "isLeverage": "0",
                  "createType": "CreateByUser", "extraFees": []})
        fill(d, v)
        return {"topic": "execution", "id": f"{uuid.uuid4()}", "creationTime": self.time_ms(), "data": [d]}

    def _ws_position(self, pos: XPosition) -> dict:
        d = self.shapes.template("ws.position", "data", 0)
        v = self._position_values(pos)
        v.update({"entryPrice": dstr(pos.avg), "category": "linear"})  # positions exist on linear only
        fill(d, v)
        return {"id": str(uuid.uuid4()), "topic": "position", "creationTime": self.time_ms(), "data": [d]}

    def _ws_wallet(self, acc: Account) -> dict:
        d = self.shapes.template("ws.wallet", "data", 0)
        top, coin = self._wallet_values(acc)
        fill(d, top)
        d["coin"] = [fill(json.loads(json.dumps(d["coin"][0])), c) for c in [coin] + self._spot_coins(acc)]
        return {"id": str(uuid.uuid4()), "topic": "wallet", "creationTime": self.time_ms(), "data": [d]}

    def _push_order(self, acc: Account, o: XOrder) -> None:
        d = self.shapes.template("ws.order", "data", 0)
        v = {k: val for k, val in self._order_values(o).items() if k in d}
        v.update({"category": o.category, "closedPnl": dstr(o.closed_pnl), "feeCurrency": "USDT"})
        fill(d, v)
        self._push_private(acc, "order", {"id": str(uuid.uuid4()), "topic": "order",
                                           "creationTime": self.time_ms(), "data": [d]})

    def _push_private(self, acc: Account, topic: str, frame: dict) -> None:
        self._check("ws." + topic, frame)
        for ws in list(acc.private_ws):
            if topic in self.subs.get(ws, ()):
                self._call_soon(self._send(ws, frame))

    async def _send(self, ws, frame: dict) -> None:
        try:
            await ws.send_str(json.dumps(frame))
        except (ConnectionError, RuntimeError):
            pass

    def _check(self, kind: str, frame: dict, mode: str = "exact") -> None:
        try:
            self.shapes.validate(kind, frame, mode)
        except ShapeError as e:
            self.shape_errors.append(f"{kind}: {e}")
            raise

    async def _ws_common(self, request, private: bool, channel: str = "linear"):
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = str(uuid.uuid4())
        self.conn_ids[ws] = conn
        self.subs[ws] = set()
        acc: Account | None = None
        if not private:
            self.public_ws.add(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    continue
                op = req.get("op")
                if op == "ping" and channel == "spot":
                    frame = {"success": True, "ret_msg": "pong", "conn_id": conn, "op": "ping"}
                    self._check("ws.pong.spot", frame)
                    await ws.send_str(json.dumps(frame))
                elif op == "ping":
                    frame = {"success": True, "ret_msg": "pong", "conn_id": conn, "req_id": str(req.get("req_id", "")),
                             "op": "ping"}
                    self._check("ws.pong", frame)
                    await ws.send_str(json.dumps(frame))
                elif op == "auth" and private:
                    args = req.get("args") or []
                    key = args[0] if args else ""
                    a = self.accounts.get(key)
                    ok = (a is not None and len(args) == 3 and int(args[1]) > self.time_ms()
                          and hmac.compare_digest(sign(a.secret, f"GET/realtime{args[1]}"), str(args[2])))
                    if ok:
                        acc = a
                        acc.private_ws.add(ws)
                        frame = {"success": True, "ret_msg": "", "op": "auth", "conn_id": conn}
                        self._check("ws.auth", frame)
                    else:
                        frame = {"op": "auth", "success": False, "retCode": 10003 if a is None else 10004,
                                 "retMsg": "Invalid apikey" if a is None else "Invalid sign or expired", "connId": conn}
                        self._check("ws.auth.failure", frame)
                    await ws.send_str(json.dumps(frame))
                elif op == "subscribe":
                    topics = list(req.get("args") or [])
                    bad = [t for t in topics if not self._topic_ok(t, private, acc, channel)]
                    if bad:
                        frame = {"success": False, "ret_msg": f"Invalid topic: {bad[0]}", "conn_id": conn,
                                 "op": "subscribe"}
                        self._check("ws.subscribe.failure", frame)
                        await ws.send_str(json.dumps(frame))
                        continue
                    self.subs[ws].update(topics)
                    if private:
                        frame = {"success": True, "ret_msg": "", "op": "subscribe", "conn_id": conn}
                        self._check("ws.subscribe.private", frame)
                    elif channel == "spot":
                        frame = {"success": True, "ret_msg": "subscribe", "conn_id": conn,
                                 "req_id": str(req.get("req_id", "")), "op": "subscribe"}
                        self._check("ws.subscribe.public.spot", frame)
                    else:
                        frame = {"success": True, "ret_msg": "", "conn_id": conn,
                                 "req_id": str(req.get("req_id", "")), "op": "subscribe"}
                        self._check("ws.subscribe.public", frame)
                    await ws.send_str(json.dumps(frame))
                    for t in topics:
                        if t.startswith("orderbook."):
                            await ws.send_str(json.dumps(self._snapshot_frame(t)))
        finally:
            self.public_ws.discard(ws)
            if acc is not None:
                acc.private_ws.discard(ws)
                had_dcp = any(t.startswith("dcp.") for t in self.subs.get(ws, ()))
                if acc.dcp_window_s and had_dcp and not self._dcp_alive(acc):
                    asyncio.get_running_loop().create_task(self._dcp_watch(acc))
            self.subs.pop(ws, None)
        return ws

    def _topic_ok(self, t: str, private: bool, acc, channel: str = "linear") -> bool:
        if private:
            return acc is not None and t in ("order", "execution", "position", "wallet", "dcp.future", "dcp.spot",
                                             "dcp.option")
        parts = t.split(".")
        if parts[0] == "kline" and len(parts) == 3:
            return parts[1] == "1" and parts[2] in self.bars
        if parts[0] == "orderbook" and len(parts) == 3:
            # https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook: depths per category
            depths = ("1", "50", "200", "1000")  # linear and spot alike
            return parts[1] in depths and parts[2] in self.books
        if parts[0] in ("publicTrade", "tickers") and len(parts) == 2:
            return parts[1] in self.books
        return False

    async def _ws_public(self, request):
        return await self._ws_common(request, False)

    async def _ws_public_spot(self, request):
        """``/v5/public/spot``: the spot acks and pongs, the same replayed frames as linear."""
        return await self._ws_common(request, False, "spot")

    async def _ws_private(self, request):
        return await self._ws_common(request, True)

    async def _drop_ws(self, channel: str) -> None:
        targets = []
        if channel in ("public", "both"):
            targets += list(self.public_ws)
        if channel in ("private", "both"):
            targets += [w for a in self.accounts.values() for w in a.private_ws]
        for ws in targets:
            # Abrupt: no close frame, like a network drop.
            transport = getattr(getattr(ws, "_req", None), "transport", None)
            if transport is not None:
                transport.abort()
            else:
                await ws.close()

    # ---- public feed ------------------------------------------------------------------
    def _snapshot_frame(self, topic: str) -> dict:
        sym = topic.rsplit(".", 1)[1]
        depth = int(topic.split(".")[1])
        b, a = self._book_levels(sym, depth)
        book = self.books[sym]
        frame = {"topic": topic, "type": "snapshot", "ts": self.time_ms(),
                 "data": {"s": sym, "b": b, "a": a, "u": book["u"], "seq": book["seq"]}, "cts": self.time_ms()}
        self._check("ws.orderbook.snapshot", frame)
        return frame

    def _apply_book(self, sym: str, msg: dict) -> None:
        book = self.books[sym]
        d = msg["data"]
        if msg["type"] == "snapshot":
            book["b"] = {p: q for p, q in d["b"]}
            book["a"] = {p: q for p, q in d["a"]}
        else:
            for side in ("b", "a"):
                for p, q in d[side]:
                    if Decimal(q) == 0:
                        book[side].pop(p, None)
                    else:
                        book[side][p] = q
        book["u"], book["seq"] = d["u"], d["seq"]

    async def _broadcast(self, topic_match, frame_for) -> None:
        for ws in list(self.public_ws):
            for t in list(self.subs.get(ws, ())):
                if topic_match(t):
                    frame = frame_for(t)
                    if frame is not None:
                        await self._send(ws, frame)

    async def _feed(self) -> None:
        """Publish one frame per symbol every ``frame_period`` and one confirmed kline
        every ``kline_period`` seconds."""
        loop = asyncio.get_running_loop()
        next_kline = loop.time()
        while True:
            try:
                await asyncio.sleep(self.frame_period)
                if not self.autoplay:
                    continue
                stale = time.monotonic() < self.stale_until
                for sym, frames in self.frames.items():
                    i = self.frame_cursor[sym]
                    if i >= len(frames):
                        i = 0  # loop the capture: start with its first snapshot again
                        first_snap = next(k for k, m in enumerate(frames) if m.get("type") == "snapshot"
                                          and m["topic"].startswith("orderbook"))
                        i = first_snap
                    msg = frames[i]
                    self.frame_cursor[sym] = i + 1
                    kind = msg["topic"].split(".")[0]
                    if kind == "orderbook":
                        self._apply_book(sym, msg)
                        if stale:
                            continue
                        if msg["type"] == "delta" and sym in self.gap_next:
                            self.gap_next.discard(sym)
                            continue  # swallow one delta: the clients see a gap in u
                        def ob_frame(t, msg=msg, sym=sym):
                            if msg["type"] == "snapshot":
                                return self._snapshot_frame(t)
                            fr = dict(msg, topic=t)
                            self._check("ws.orderbook.delta", fr)
                            return fr
                        await self._broadcast(lambda t, sym=sym: t.startswith("orderbook.") and t.endswith("." + sym),
                                              ob_frame)
                    elif not stale:
                        if kind == "publicTrade":
                            self._check("ws.trade", msg, "superset")
                        else:
                            self._check("ws.tickers", msg, "superset" if msg.get("type") == "snapshot" else "partial")
                        await self._broadcast(lambda t, top=msg["topic"]: t == top, lambda t, msg=msg: msg)
                if loop.time() >= next_kline:
                    next_kline = loop.time() + self.kline_period
                    with self.lock:
                        for sym in self.symbols:
                            if self.cursor[sym] >= len(self.bars[sym]):
                                continue
                            bar = self.bars[sym][self.cursor[sym]]
                            self.cursor[sym] += 1
                            for key, m in list(self.matchers.items()):
                                if key[2] == sym:  # the new close: requote, resting orders may fill
                                    self._requote(self.accounts[key[0]], key, m)
                            if stale:
                                continue
                            frame = {"topic": f"kline.1.{sym}", "data": [{
                                "start": bar[0], "end": bar[0] + 59_999, "interval": "1", "open": bar[1],
                                "close": bar[4], "high": bar[2], "low": bar[3], "volume": bar[5],
                                "turnover": dstr(Decimal(bar[4]) * Decimal(bar[5])), "confirm": True,
                                "timestamp": self.time_ms()}], "ts": self.time_ms(), "type": "snapshot"}
                            self._check("ws.kline", frame)
                            await self._broadcast(lambda t, sym=sym: t == f"kline.1.{sym}", lambda t, f=frame: f)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a test server must keep serving; record it
                self.shape_errors.append(f"feed: {e!r}")


def point_pybit_at(exchange: BybitTestExchange) -> None:
    """Point pybit's WebSocket URL templates at ``exchange`` (the supported way; the
    HTTP session's ``endpoint`` is set per session by the worker's client)."""
    from pybit import unified_trading

    unified_trading.PUBLIC_WSS = f"ws://{exchange.host}:{exchange.port}/v5/public/{{CHANNEL_TYPE}}"
    unified_trading.PRIVATE_WSS = exchange.ws_private_url
