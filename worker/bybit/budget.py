"""The order rate-limit budget shared by every worker that uses one API key.

Bybit counts order create/amend/cancel per account (10 per second on linear by
default; https://bybit-exchange.github.io/docs/v5/rate-limit) and answers retCode
10006 when it is exceeded, with ``X-Bapi-Limit``, ``X-Bapi-Limit-Status`` (requests
left) and ``X-Bapi-Limit-Reset-Timestamp`` (ms) headers on every private response.

:class:`RateBudget` is a sliding-window budget kept in a small JSON file under a lock
(``fcntl.flock``), keyed by the key's fingerprint, so several workers (processes)
sharing a key on one node share one budget. It also learns from the headers: when the
exchange says 0 requests are left, or answers 10006 / HTTP 429 / 403, every sharer
waits until the reset time (or an exponential backoff when the headers are missing or
the reset time is already past). With ``HEAN_REDIS_URL`` the budget lives in Redis
(:class:`hean.worker.state.RedisRateBudget`) and is shared across
nodes; the interface stays.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 5.0


def _header(headers, name: str) -> str | None:
    if not headers:
        return None
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None



def penalty_until(headers, offset_ms: int, now: float, strikes: int) -> float:
    """When a rate refusal (10006, HTTP 429/403) ends, in epoch seconds: the
    exchange's ``X-Bapi-Limit-Reset-Timestamp`` (epoch ms, corrected by the clock
    ``offset_ms``) if it is in the future, else ``now`` plus an exponential back-off of
    ``BACKOFF_BASE_S * 2**(strikes-1)`` seconds, at most ``BACKOFF_MAX_S``. A reset in
    the past (pybit raises a bare ValueError there) or an unparsable header falls back
    to the back-off (https://bybit-exchange.github.io/docs/v5/rate-limit)."""
    reset = _header(headers, "X-Bapi-Limit-Reset-Timestamp")
    until = None
    if reset is not None:
        try:
            until = (int(reset) - offset_ms) / 1000.0
        except ValueError:
            until = None
    if until is None or until <= now:
        until = now + min(BACKOFF_BASE_S * 2 ** (strikes - 1), BACKOFF_MAX_S)
    return until

class RateBudget:
    """``per_second`` order requests per sliding second for the key with fingerprint
    ``key_id``. ``acquire()`` blocks (sleeps) until a request may be sent and returns
    the seconds waited; ``observe(headers)`` and ``penalize(headers)`` feed back what
    the exchange said."""

    def __init__(self, key_id: str, per_second: int = 10, state_dir: Path | None = None,
                 clock=time.time, sleep=time.sleep, window_s: float = 1.1):
        if per_second < 1:
            raise ValueError(f"rate budget per_second must be >= 1, got {per_second}")
        base = Path(state_dir) if state_dir else Path(tempfile.gettempdir()) / "hean-bybit-budget"
        base.mkdir(parents=True, exist_ok=True)
        self.path = base / f"{key_id}.json"
        self.per_second = per_second
        # The exchange counts arrivals, we count departures: a request delayed in
        # transit shrinks the gap the exchange sees, so the window has a 10 % margin.
        self.window_s = window_s
        self.clock, self.sleep = clock, sleep
        self.strikes = 0
        self.waited_s = 0.0
        self.penalties = 0

    @contextmanager
    def _locked(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "r+") as f:
                text = f.read()
                try:
                    state = json.loads(text) if text else {}
                except ValueError:
                    state = {}
                state.setdefault("calls", [])
                state.setdefault("blockedUntil", 0.0)
                yield state
                f.seek(0)
                f.truncate()
                f.write(json.dumps(state))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def acquire(self, order: bool = True) -> float:
        """Wait for a slot (order requests only; others only honour a block)."""
        waited = 0.0
        while True:
            with self._locked() as st:
                now = self.clock()
                st["calls"] = [t for t in st["calls"] if t > now - self.window_s]
                delay = max(st["blockedUntil"] - now, 0.0)
                if delay == 0 and order and len(st["calls"]) >= self.per_second:
                    delay = st["calls"][0] + self.window_s - now
                if delay <= 0:
                    if order:
                        st["calls"].append(now)
                    self.waited_s += waited
                    return waited
            delay = min(delay, BACKOFF_MAX_S)
            self.sleep(delay)
            waited += delay

    def observe(self, headers, offset_ms: int = 0) -> None:
        """A successful private response: block everyone until the reset time if the
        exchange says no requests are left."""
        self.strikes = 0
        status, reset = _header(headers, "X-Bapi-Limit-Status"), _header(headers, "X-Bapi-Limit-Reset-Timestamp")
        if status is not None and reset is not None and status.strip() == "0":
            self._block_until((int(reset) - offset_ms) / 1000.0)

    def penalize(self, headers, offset_ms: int = 0) -> float:
        """The exchange refused for rate (10006, HTTP 429/403): wait until its reset
        time if it sent one in the future, else back off exponentially. Returns the
        block length in seconds."""
        self.penalties += 1
        self.strikes += 1
        now = self.clock()
        until = penalty_until(headers, offset_ms, now, self.strikes)
        self._block_until(until)
        return until - now

    def _block_until(self, t: float) -> None:
        with self._locked() as st:
            st["blockedUntil"] = max(st["blockedUntil"], t)
