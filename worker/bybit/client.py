"""The REST client: pybit ``HTTP`` with HEAN's error policy.

* The session's base URL is ``session.endpoint`` (pybit resolves it once at
  construction; we overwrite it with the configured URL, the supported way).
* retCodes (https://bybit-exchange.github.io/docs/v5/error):
  - 10002 (timestamp outside recv_window): measure the offset to the exchange clock
    (``/v5/market/time``), sign with the corrected time, retry.
  - 10006 / HTTP 429 / HTTP 403 (rate or IP limit): wait for the shared budget's
    reset time (or back off), retry.
  - auth and parameter errors (10001, 10003, 10004, 10005, 110007, ...): fail fast
    with :class:`Rejected` (``code``, a bounded ``label``), never retried.
  - HTTP 5xx, connection errors: reads are retried with backoff; an order create
    raises :class:`OutcomeUnknown` (the order may exist: look it up by orderLinkId).
  - a read timeout: reads retried; order create -> :class:`OutcomeUnknown`.
* pybit's own retry loop (retCodes 10002/10006) is switched off by default: it sleeps
  the calling thread outside the shared budget, and raises a bare ``ValueError``
  ("sleep length must be non-negative") when ``X-Bapi-Limit-Reset-Timestamp`` is in
  the past. With ``pybit_retries=True`` pybit's loop is used and that ValueError is
  caught here and treated as a rate-limit answer.

Keys are passed to pybit only; they are never logged, and errors carry pybit's
request text with the signature headers stripped.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter

import requests
from pybit import _helpers
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

from .budget import RateBudget

log = logging.getLogger("hean.worker.bybit")

REJECT_LABELS = {
    10001: "PARAMETER_ERROR",
    10003: "INVALID_API_KEY",
    10004: "INVALID_SIGNATURE",
    10005: "PERMISSION_DENIED",
    10010: "IP_NOT_WHITELISTED",
    10016: "EXCHANGE_ERROR",
    110001: "ORDER_NOT_FOUND",
    110007: "INSUFFICIENT_BALANCE",
    110017: "REDUCE_ONLY_REJECTED",
    110072: "DUPLICATE_ORDER_LINK_ID",
    110094: "BELOW_MIN_NOTIONAL",
    170140: "BELOW_MIN_NOTIONAL",
    170141: "DUPLICATE_ORDER_LINK_ID",
    170131: "INSUFFICIENT_BALANCE",
}
ORDER_METHODS = {"place_order", "cancel_order", "amend_order", "cancel_all_orders"}


def key_fingerprint(api_key: str) -> str:
    """12 hex chars of SHA-256 of the key: safe to show, stable per key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


def reject_label(code: int) -> str:
    return REJECT_LABELS.get(code, "REJECTED_OTHER")


class BybitError(Exception):
    """Base class; ``code`` is Bybit's retCode (or HTTP status), ``label`` bounded."""

    def __init__(self, message: str, code: int = 0, label: str = "ERROR"):
        super().__init__(message)
        self.code, self.label = code, label


class Rejected(BybitError):
    """The exchange refused the request for a reason a retry cannot fix."""


class RateLimited(BybitError):
    """Still rate limited after every allowed attempt."""


class Unavailable(BybitError):
    """The exchange did not answer usefully after every allowed attempt."""


class OutcomeUnknown(BybitError):
    """An order request may or may not have reached the matching engine (timeout,
    5xx, dropped connection): look the order up by its orderLinkId."""


class _HTTP(HTTP):
    """pybit's session, signing with a clock corrected by ``offset_ms``."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.offset_ms = 0

    def _prepare_headers(self, payload, recv_window, content_type="application/json"):  # noqa: D401
        timestamp = _helpers.generate_timestamp() + self.offset_ms
        return {
            "Content-Type": content_type,
            "X-BAPI-API-KEY": self.api_key,
            "X-BAPI-SIGN": self._auth(payload=payload, recv_window=recv_window, timestamp=timestamp),
            "X-BAPI-SIGN-TYPE": "2",
            "X-BAPI-TIMESTAMP": str(timestamp),
            "X-BAPI-RECV-WINDOW": str(recv_window),
        }


class BybitClient:
    """One account's REST session. ``budget`` is the shared order budget; ``sleep``
    is injectable for tests of the waiting logic only."""

    def __init__(self, api_key: str | None, api_secret: str | None, rest_url: str, budget: RateBudget | None = None,
                 timeout: float = 5.0, recv_window: int = 5000, max_attempts: int = 5, pybit_retries: bool = False,
                 sleep=time.sleep):
        kw = dict(api_key=api_key, api_secret=api_secret, timeout=timeout, recv_window=recv_window,
                  return_response_headers=True, max_retries=3 if pybit_retries else 1)
        if not pybit_retries:
            kw["retry_codes"] = {-1}  # non-empty so pybit keeps it; matches no retCode
        else:
            kw["retry_delay"] = 0
        self.http = _HTTP(**kw)
        self.http.endpoint = rest_url.rstrip("/")
        self.fingerprint = key_fingerprint(api_key) if api_key else "public"
        self.budget = budget or RateBudget(self.fingerprint)
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.rejects: Counter = Counter()  # label -> count
        self.errors: Counter = Counter()   # kind -> count (rate_limited, clock_fixed, http_5xx, timeout, ...)
        self.last_headers: dict = {}
        self._secrets = [x for x in (api_key, api_secret) if x]
        self.on_rate_limited = None  # hook: called once per rate-limit answer (worker.obs)

    def scrub(self, text: str) -> str:
        """``text`` with the API key and secret replaced by ``***`` (Bybit echoes the
        key in 10004 messages: ``origin_string[<ts><key><recv>...]``)."""
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    # ---- clock ------------------------------------------------------------------------
    def sync_clock(self) -> int:
        """Set the signing clock offset from ``/v5/market/time``; returns it (ms)."""
        t0 = _helpers.generate_timestamp()
        resp, _, _ = self.http.get_server_time()
        t1 = _helpers.generate_timestamp()
        server_ms = int(resp["result"]["timeNano"]) // 1_000_000
        self.http.offset_ms = server_ms - (t0 + t1) // 2
        self.errors["clock_fixed"] += 1
        log.warning("clock offset to the exchange set to %d ms (retCode 10002)", self.http.offset_ms)
        return self.http.offset_ms

    # ---- the one call path ---------------------------------------------------------------
    def call(self, method: str, **params) -> dict:
        """Call pybit ``HTTP.<method>(**params)`` under the policy above and return
        ``result``. Raises Rejected, RateLimited, Unavailable or OutcomeUnknown."""
        is_order = method in ORDER_METHODS
        creates = method == "place_order"
        what = f"{method}({params.get('symbol', '')}{' ' + params['orderLinkId'] if params.get('orderLinkId') else ''})"
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            self.budget.acquire(order=is_order)
            try:
                resp, _elapsed, headers = getattr(self.http, method)(**params)
                self.last_headers = dict(headers or {})
                self.budget.observe(headers, self.http.offset_ms)
                return resp.get("result") or {}
            except InvalidRequestError as e:
                code = int(e.status_code)
                if code == 10002:
                    self.sync_clock()
                    last = e
                    continue
                if code == 10006:
                    self.errors["rate_limited"] += 1
                    self._hook()
                    waited = self.budget.penalize(e.resp_headers, self.http.offset_ms)
                    log.warning("%s: rate limited (10006), waiting %.2fs (attempt %d)", what, waited, attempt)
                    last = e
                    continue
                label = reject_label(code)
                self.rejects[label] += 1
                msg = self.scrub(str(e.message))
                log.error("%s rejected: retCode %d %s (%s), not retried", what, code, msg, label)
                raise Rejected(f"{what}: retCode {code} {msg}", code, label) from None
            except FailedRequestError as e:
                status = int(e.status_code)
                if status in (403, 429):
                    self.errors["http_%d" % status] += 1
                    self._hook()
                    waited = self.budget.penalize(e.resp_headers, self.http.offset_ms)
                    log.warning("%s: HTTP %d (IP/rate limit), waiting %.2fs", what, status, waited)
                    last = e
                    continue
                self.errors["http_error"] += 1
                if creates:
                    raise OutcomeUnknown(f"{what}: HTTP {status}", status, "HTTP_ERROR") from None
                last = e
                self.sleep(min(0.2 * 2 ** (attempt - 1), 2.0))
                continue
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as e:
                kind = "timeout" if isinstance(e, requests.exceptions.Timeout) else "connection"
                self.errors[kind] += 1
                if creates:
                    raise OutcomeUnknown(f"{what}: {kind}", 0, kind.upper()) from None
                last = e
                self.sleep(min(0.2 * 2 ** (attempt - 1), 2.0))
                continue
            except ValueError as e:
                # pybit's retry loop slept until a reset timestamp in the past.
                if "sleep length" not in str(e) and "non-negative" not in str(e):
                    raise
                self.errors["rate_limited"] += 1
                self.errors["pybit_past_reset"] += 1
                self._hook()
                self.budget.penalize(None)
                log.warning("%s: rate limited with a reset time in the past (pybit ValueError); backing off", what)
                last = e
                continue
        if isinstance(last, InvalidRequestError) and int(last.status_code) == 10006 or \
                isinstance(last, FailedRequestError) and int(last.status_code) in (403, 429) or isinstance(last, ValueError):
            raise RateLimited(f"{what}: still rate limited after {self.max_attempts} attempts", 10006, "RATE_LIMITED")
        raise Unavailable(f"{what}: gave up after {self.max_attempts} attempts: {type(last).__name__}", 0, "UNAVAILABLE")

    def _hook(self) -> None:
        if self.on_rate_limited is not None:
            try:
                self.on_rate_limited()
            except Exception:  # noqa: BLE001 - metrics never break trading
                log.exception("rate-limit hook failed")

    # ---- typed helpers -------------------------------------------------------------------
    def instruments(self, category: str, symbol: str | None = None) -> list[dict]:
        """Instrument rules (tick size, qty step, min qty/notional) as Bybit's ``list`` of dicts.
        GET /v5/market/instruments-info (https://bybit-exchange.github.io/docs/v5/market/instrument).
        """
        return self.call("get_instruments_info", category=category, symbol=symbol).get("list", [])

    def place_order(self, category: str, symbol: str, side: str, qty: str, order_link_id: str,
                    order_type: str = "Market", price: str | None = None, reduce_only: bool = False,
                    time_in_force: str | None = None, market_unit: str | None = None) -> dict:
        """Create an order; returns ``{orderId, orderLinkId}`` only (the state comes from the
        private stream or :meth:`order_by_link`). ``qty``/``price`` are decimal strings already
        rounded to the instrument's qty step / tick. ``market_unit`` (spot only: ``baseCoin`` or
        ``quoteCoin``) says what a spot Market order's ``qty`` counts; Bybit's default for a spot
        Market Buy is ``quoteCoin`` (USDT), so HEAN always sends ``baseCoin``. ``reduce_only`` does
        not exist on spot (the caller never sets it there). Raises the BybitError subclass for the
        retCode (see :func:`reject_label`). POST /v5/order/create (https://bybit-exchange.github.io/docs/v5/order/create-order).
        """
        return self.call("place_order", category=category, symbol=symbol, side=side, orderType=order_type,
                         qty=qty, price=price, orderLinkId=order_link_id, reduceOnly=reduce_only or None,
                         timeInForce=time_in_force, marketUnit=market_unit)

    def paged(self, method: str, limit: int, max_pages: int = 50, **params) -> list[dict]:
        """All rows of a cursor-paged list endpoint: ``method`` is called with ``limit`` and the
        previous answer's ``nextPageCursor`` as ``cursor`` until the cursor is empty, a page is
        empty or a cursor repeats (Bybit may hand out a cursor on the last page), at most
        ``max_pages`` pages (then ``errors["pages_truncated"]`` is counted and a warning logged).
        The cursor is passed back exactly as received: Bybit sends it URL-encoded
        (``"132766%3A2%2C132766%3A2"``) and pybit puts query values into the URL unencoded.
        Cursor paging: https://bybit-exchange.github.io/docs/v5/order/execution (``cursor``,
        ``limit``, ``nextPageCursor``), the same for /v5/order/realtime and /v5/order/history.
        Raises what :meth:`call` raises.
        """
        rows: list[dict] = []
        cursor, seen = None, set()
        for _ in range(max_pages):
            res = self.call(method, limit=limit, cursor=cursor, **params)
            page = res.get("list") or []
            rows.extend(page)
            cursor = res.get("nextPageCursor") or ""
            if not page or not cursor or cursor in seen:
                return rows
            seen.add(cursor)
            self.errors["pages_followed"] += 1
        self.errors["pages_truncated"] += 1
        log.warning("%s: stopped after %d pages of %d rows (more remain)", method, max_pages, limit)
        return rows

    def order_by_link(self, category: str, order_link_id: str) -> dict | None:
        """The order with this ``orderLinkId`` (open or closed), or None if the exchange does
        not know it: how a timed-out create is resolved without a second order. Open orders
        come from GET /v5/order/realtime (``openOnly=0`` lists open orders only,
        https://bybit-exchange.github.io/docs/v5/order/open-order), finished ones (a market
        order is usually filled before the answer) from GET /v5/order/history
        (https://bybit-exchange.github.io/docs/v5/order/order-list).
        """
        lst = self.call("get_open_orders", category=category, orderLinkId=order_link_id, openOnly=0).get("list", [])
        if not lst:
            lst = self.call("get_order_history", category=category, orderLinkId=order_link_id).get("list", [])
        return lst[0] if lst else None

    def open_orders(self, category: str, symbol: str | None = None) -> list[dict]:
        """Every open order of ``symbol`` (all USDT-settled ones if None; spot: all), following
        ``nextPageCursor`` 50 rows a page (the endpoint's maximum). GET /v5/order/realtime."""
        kw = {"symbol": symbol} if symbol else {} if category == "spot" else {"settleCoin": "USDT"}
        return self.paged("get_open_orders", 50, category=category, openOnly=0, **kw)

    def order_history(self, category: str, symbol: str | None = None, start_ms: int | None = None,
                      max_pages: int = 20) -> list[dict]:
        """Finished orders (newest first) of ``symbol`` since ``start_ms`` (epoch ms; Bybit
        keeps a 7-day window), 50 a page, at most ``max_pages`` pages.
        GET /v5/order/history (https://bybit-exchange.github.io/docs/v5/order/order-list).
        """
        return self.paged("get_order_history", 50, max_pages, category=category, symbol=symbol, startTime=start_ms)

    def positions(self, category: str, symbol: str | None = None) -> list[dict]:
        """Positions of ``symbol`` (all USDT-settled ones if None); sizes are decimal strings.
        GET /v5/position/list (https://bybit-exchange.github.io/docs/v5/position).
        """
        kw = {"symbol": symbol} if symbol else {"settleCoin": "USDT"}
        return self.call("get_positions", category=category, **kw).get("list", [])

    def executions(self, category: str, symbol: str | None = None, start_ms: int | None = None,
                   limit: int = 100, max_pages: int = 50) -> list[dict]:
        """Every execution (newest first) of ``symbol`` since ``start_ms`` (epoch ms; Bybit
        answers at most 7 days from it), ``limit`` (1..100) a page, following
        ``nextPageCursor`` for at most ``max_pages`` pages (see :meth:`paged`).
        GET /v5/execution/list (https://bybit-exchange.github.io/docs/v5/order/execution).
        """
        return self.paged("get_executions", limit, max_pages, category=category, symbol=symbol,
                          startTime=start_ms)

    def wallet(self) -> dict:
        """The UNIFIED account's wallet entry (``totalEquity`` etc. as decimal strings), {} if none.
        GET /v5/account/wallet-balance.
        """
        lst = self.call("get_wallet_balance", accountType="UNIFIED").get("list", [])
        return lst[0] if lst else {}

    def orderbook(self, category: str, symbol: str, limit: int = 50) -> dict:
        """A REST order-book snapshot (``b``, ``a``, ``u``, ``seq``) used to re-seed the book after a
        gap. GET /v5/market/orderbook (https://bybit-exchange.github.io/docs/v5/market/orderbook).
        """
        return self.call("get_orderbook", category=category, symbol=symbol, limit=limit)

    def funding_history(self, category: str, symbol: str, limit: int = 200) -> list[dict]:
        """Funding-rate history (``fundingRate`` as a decimal-string fraction per interval, newest
        first). GET /v5/market/funding/history (https://bybit-exchange.github.io/docs/v5/market/history-fund-rate).
        """
        return self.call("get_funding_rate_history", category=category, symbol=symbol, limit=limit).get("list", [])
