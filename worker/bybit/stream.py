"""A pybit WebSocket that HEAN reconnects itself.

pybit reconnects only on some errors (a clean close from the server leaves it
disconnected), keeps its own order book without ``u``/``seq`` checks and raises
``KeyError`` inside its thread on a failed subscription ack. So HEAN gives pybit a raw
``callback_function`` (every frame, untouched, including acks) and
``restart_on_error=False``, and :class:`ManagedSocket` owns the connection: a
watchdog notices a dead socket (or a silent one, see ``feed``), closes it and opens a
new one with exponential backoff (``backoff_base`` doubling to ``backoff_max``
seconds), resubscribing. The URL comes from pybit's module templates
(``pybit.unified_trading.PUBLIC_WSS``/``PRIVATE_WSS``), set from the endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("hean.worker.bybit")


def set_pybit_urls(ws_public_template: str, ws_private: str) -> None:
    """Point pybit's WebSocket URL templates at the configured endpoints."""
    from pybit import unified_trading

    unified_trading.PUBLIC_WSS = ws_public_template
    if ws_private:
        unified_trading.PRIVATE_WSS = ws_private


class ManagedSocket:
    """One pybit ``WebSocket`` (``channel`` ``linear``/``spot``/``private``) with
    ``topics``; ``on_frame(dict)`` is called on pybit's thread for every frame."""

    def __init__(self, channel: str, topics: list[str], on_frame, api_key: str | None = None,
                 api_secret: str | None = None, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 name: str = "public"):
        self.channel, self.topics, self.on_frame = channel, list(topics), on_frame
        self._key, self._secret = api_key, api_secret
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.name = name
        self.ws = None
        self.connects = 0
        self.reconnects = 0
        self.failures = 0
        self.next_attempt = 0.0
        self._force = False
        self.on_reconnect = None  # hook (worker.obs.count_reconnect)
        self.auth_expire_s = 10  # private auth signature validity; raised by the clock offset
        self.on_healthy = lambda: True  # "is this connection useful?" (private: authenticated)

    def _open(self) -> None:
        from pybit.unified_trading import WebSocket

        kw = dict(channel_type=self.channel, callback_function=self._raw, restart_on_error=False, retries=2, testnet=False,
                  ping_interval=20, ping_timeout=10)
        if self.channel == "private":
            kw.update(api_key=self._key, api_secret=self._secret, private_auth_expire=int(self.auth_expire_s))
        ws = WebSocket(**kw)
        if self.channel == "private":
            for t in self.topics:
                if "." in t:  # e.g. "dcp.future": pybit formats non-standard topics through its filter slot
                    base, arg = t.split(".", 1)
                    ws.subscribe(base + ".{symbol}", callback=lambda m: None, symbol=arg)
                else:
                    ws.subscribe(t, callback=lambda m: None)
        else:  # one subscribe message with every topic ("{symbol}" is pybit's filter slot)
            ws.subscribe("{symbol}", callback=lambda m: None, symbol=list(self.topics))
        self.ws = ws

    def _raw(self, msg: dict) -> None:
        try:
            self.on_frame(msg)
        except Exception:  # noqa: BLE001 - never kill pybit's thread
            log.exception("%s socket: frame handler failed", self.name)

    def back_off(self, why: str) -> None:
        """The connection is useless (e.g. authentication refused): reconnect after
        the next backoff delay."""
        self.failures += 1
        delay = min(self.backoff_base * 2 ** min(self.failures - 1, 10), self.backoff_max)
        self.next_attempt = time.monotonic() + delay
        self._force = True
        log.warning("%s socket: %s; reconnecting in %.1fs", self.name, why, delay)

    def shutdown(self) -> None:
        """Close for good and drop the handler, so pybit's lingering daemon thread
        holds no reference to the engine at interpreter exit."""
        self.on_frame = lambda msg: None
        self.on_healthy = lambda: True
        self.on_reconnect = None
        self.close()

    def connected(self) -> bool:
        return self.ws is not None and self.ws.is_connected()

    def request_reconnect(self) -> None:
        """Ask the watchdog to reconnect now (e.g. after a book gap)."""
        self._force = True

    def close(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.exit()
            except Exception:  # noqa: BLE001
                pass

    async def ensure(self) -> bool:
        """Connect if needed (respecting the backoff); returns True when connected."""
        if self._force and time.monotonic() >= self.next_attempt:
            self._force = False
            await asyncio.to_thread(self.close)
        if self.connected():
            if self.failures and self.on_healthy():
                self.failures = 0
            return True
        now = time.monotonic()
        if now < self.next_attempt:
            return False
        if self.ws is not None:
            await asyncio.to_thread(self.close)
        try:
            await asyncio.to_thread(self._open)
        except Exception as e:  # noqa: BLE001 - any connect failure backs off
            self.failures += 1
            delay = min(self.backoff_base * 2 ** min(self.failures - 1, 10), self.backoff_max)
            self.next_attempt = time.monotonic() + delay
            text = str(e)
            for secret in (self._key, self._secret):
                if secret:
                    text = text.replace(secret, "***")
            log.warning("%s socket: connect failed (%s: %s); next attempt in %.1fs", self.name, type(e).__name__,
                        text[:200], delay)
            await asyncio.to_thread(self.close)
            return False
        if self.connects:
            self.reconnects += 1
            log.warning("%s socket: reconnected (%d reconnects)", self.name, self.reconnects)
            if self.on_reconnect is not None:
                self.on_reconnect()
        self.connects += 1
        return True
