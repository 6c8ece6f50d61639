"""pytest fixtures for the Bybit test exchange (import them into a test module:
``from exchange.fixtures import bybit_exchange, account``).

``bybit_exchange`` (module scope) runs :class:`server.BybitTestExchange` on loopback
and points pybit at it - the one place that does: the HTTP base URL is handed to each
client (``session.endpoint``) through :attr:`ExchangeHandle.env`, the WebSocket URLs
through pybit's module templates (:func:`server.point_pybit_at`). ``account`` gives
each test a fresh API key/secret pair (so order state never leaks between tests) and
checks at teardown that no response or frame the exchange sent broke the official
shapes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

import pytest

from .server import BybitTestExchange, point_pybit_at


@dataclass
class Account:
    key: str
    secret: str
    env: dict


@pytest.fixture(scope="module")
def bybit_exchange(marketdata_dir):
    x = BybitTestExchange(marketdata_dir, symbols=("BTCUSDT", "ETHUSDT"), kline_period=0.1)
    x.start()
    point_pybit_at(x)
    yield x
    x.stop()
    assert not x.shape_errors, x.shape_errors


@pytest.fixture
def account(bybit_exchange) -> Account:
    key, secret = "k" + secrets.token_hex(8), secrets.token_hex(16)
    bybit_exchange.add_account(key, secret, Decimal("100000"))
    env = {"HEAN_BYBIT_REST_URL": bybit_exchange.rest_url,
           "HEAN_BYBIT_WS_PUBLIC_URL": f"ws://{bybit_exchange.host}:{bybit_exchange.port}/v5/public/{{CHANNEL_TYPE}}",
           "HEAN_BYBIT_WS_PRIVATE_URL": bybit_exchange.ws_private_url,
           "BYBIT_API_KEY": key, "BYBIT_API_SECRET": secret}
    yield Account(key, secret, env)
    bybit_exchange.faults.clear()
    bybit_exchange.set_clock_skew(0)
    assert not bybit_exchange.shape_errors, bybit_exchange.shape_errors
