"""The Bybit-v5-compatible test exchange itself: shapes of the official examples,
signature checks like Bybit's, the envelope and rate-limit headers, public and private
WebSockets. Real HTTP (requests/pybit) and WebSocket (websocket-client) clients on
loopback; nothing mocked."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import requests
import websocket

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from exchange.shapes import EXAMPLES, Shapes, ShapeError, strip_jsonc


def signed_get(x, acc, path, query, ts=None, secret=None, recv="5000"):
    ts = str(ts or int(time.time() * 1000))
    sig = hmac.new((secret or acc.secret).encode(), (ts + acc.key + recv + query).encode(), hashlib.sha256).hexdigest()
    return requests.get(f"{x.rest_url}{path}?{query}", headers={
        "X-BAPI-API-KEY": acc.key, "X-BAPI-SIGN": sig, "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": recv}, timeout=5)


def test_every_official_example_has_its_own_shape_and_a_changed_one_does_not(marketdata_dir):
    shapes = Shapes(marketdata_dir)
    for kind in EXAMPLES:
        shapes.validate(kind, shapes.example(kind))
    order = shapes.example("rest.order.realtime")
    order["result"]["list"][0]["invented"] = "x"
    with pytest.raises(ShapeError, match="extra \\['invented'\\]"):
        shapes.validate("rest.order.realtime", order)
    ex = shapes.example("ws.execution")
    del ex["data"][0]["execId"]
    with pytest.raises(ShapeError, match="missing \\['execId'\\]"):
        shapes.validate("ws.execution", ex)
    k = shapes.example("ws.kline")
    k["data"][0]["confirm"] = "true"
    with pytest.raises(ShapeError, match="confirm: expected bool"):
        shapes.validate("ws.kline", k)


def test_jsonc_examples_are_read_without_comments_or_ellipses():
    text = '{\n "a": 1, // note\n "b": [\n ...,\n ["1", "2"]\n ],\n "u": "x//y"\n}'
    assert json.loads(strip_jsonc(text)) == {"a": 1, "b": [["1", "2"]], "u": "x//y"}


def test_signatures_are_verified_like_bybit(bybit_exchange, account):
    x = bybit_exchange
    ok = signed_get(x, account, "/v5/account/wallet-balance", "accountType=UNIFIED")
    body = ok.json()
    assert body["retCode"] == 0 and set(body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert body["result"]["list"][0]["coin"][0]["coin"] == "USDT"
    assert {"X-Bapi-Limit", "X-Bapi-Limit-Status", "X-Bapi-Limit-Reset-Timestamp"} <= set(ok.headers)
    assert signed_get(x, account, "/v5/account/wallet-balance", "accountType=UNIFIED", secret="wrong").json()["retCode"] == 10004
    assert signed_get(x, account, "/v5/account/wallet-balance", "accountType=UNIFIED",
                      ts=int(time.time() * 1000) - 60_000).json()["retCode"] == 10002
    account.key = "nobody"
    assert signed_get(x, account, "/v5/account/wallet-balance", "accountType=UNIFIED").json()["retCode"] == 10003


def test_order_rate_limit_and_headers(bybit_exchange, account):
    from hean.worker.bybit import BybitClient
    from hean.worker.bybit.budget import RateBudget

    class NoBudget(RateBudget):  # let every request through: the exchange must refuse the 11th
        def acquire(self, order=True):
            return 0.0

    import tempfile
    c = BybitClient(account.key, account.secret, bybit_exchange.rest_url, max_attempts=1,
                    budget=NoBudget("t", state_dir=tempfile.mkdtemp()))
    statuses, codes = [], []
    for i in range(12):
        try:
            c.place_order("linear", "BTCUSDT", "Buy", "0.001", f"rl-{account.key}-{i}")
            statuses.append(int(c.last_headers["X-Bapi-Limit-Status"]))
        except Exception as e:  # noqa: BLE001
            codes.append(getattr(e, "code", None))
    assert statuses[:3] == [9, 8, 7]
    assert 10006 in codes


def test_public_and_private_websockets(bybit_exchange, account):
    x = bybit_exchange
    pub = websocket.create_connection(x.ws_public_url, timeout=5)
    pub.send(json.dumps({"op": "subscribe", "req_id": "r1", "args": ["orderbook.50.BTCUSDT", "kline.1.BTCUSDT"]}))
    frames = [json.loads(pub.recv()) for _ in range(6)]
    assert frames[0]["success"] is True and frames[0]["req_id"] == "r1"
    assert frames[1]["type"] == "snapshot" and frames[1]["topic"] == "orderbook.50.BTCUSDT"
    pub.send(json.dumps({"op": "subscribe", "args": ["nonsense.BTCUSDT"]}))
    pub.send(json.dumps({"op": "ping", "req_id": "p"}))
    seen = [json.loads(pub.recv()) for _ in range(40)]
    assert any(f.get("op") == "subscribe" and f["success"] is False and "nonsense" in f["ret_msg"] for f in seen)
    assert any(f.get("ret_msg") == "pong" for f in seen)
    assert any(f.get("topic") == "kline.1.BTCUSDT" and f["data"][0]["confirm"] is True for f in seen)
    pub.close()

    priv = websocket.create_connection(x.ws_private_url, timeout=5)
    expires = int(time.time() * 1000) + 10_000
    bad = hmac.new(b"wrong", f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    priv.send(json.dumps({"op": "auth", "args": [account.key, expires, bad]}))
    assert json.loads(priv.recv())["success"] is False
    priv.send(json.dumps({"op": "subscribe", "args": ["order"]}))
    assert json.loads(priv.recv())["success"] is False  # not authenticated
    good = hmac.new(account.secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    priv.send(json.dumps({"op": "auth", "args": [account.key, expires, good]}))
    assert json.loads(priv.recv())["success"] is True
    priv.close()
    assert not x.shape_errors


def test_replayed_real_frames_are_checked_too(marketdata_dir):
    """Real frames may carry fields newer than the docs (RPI, singleOpenInterest...):
    documented keys must be present with their types; a delta only types."""
    shapes = Shapes(marketdata_dir)
    trade = shapes.example("ws.trade")
    trade["data"][0]["RPI"] = False
    shapes.validate("ws.trade", trade, "superset")
    with pytest.raises(ShapeError):
        shapes.validate("ws.trade", trade)
    del trade["data"][0]["p"]
    with pytest.raises(ShapeError, match="missing \\['p'\\]"):
        shapes.validate("ws.trade", trade, "superset")
    delta = {"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "BTCUSDT", "lastPrice": 1.5},
             "cs": 1, "ts": 2}
    with pytest.raises(ShapeError, match="lastPrice: expected string"):
        shapes.validate("ws.tickers", delta, "partial")
