"""Durable worker state in Redis (issue 7): write-ahead order intents, fills exactly
once, the ledger as an append-only Stream, positions, component state, the
orderLinkId sequence, the shared order-rate budget and a fenced lease per strategy.

Configured by ``HEAN_REDIS_URL`` (``redis://host:port/db``; the chart's Redis or an
external one) and, if the server wants one, ``HEAN_REDIS_PASSWORD`` (from a Secret).
Without ``HEAN_REDIS_URL`` the worker keeps its in-memory ledger and the per-node
files of :mod:`hean.worker.bybit.orderlink` / :mod:`hean.worker.bybit.budget`, and
says so in ``/why`` and the metric ``hean_worker_state_backend``.

Keys (all of one strategy share the Redis Cluster hash tag ``{<namespace>/<name>}``,
so they live on one slot and a Lua script may touch them together)::

    hean:{ns/name}:lease      hash  holder (pod name), token; PEXPIRE = lease TTL
    hean:{ns/name}:token      int   fencing-token counter (INCR on every new lease)
    hean:{ns/name}:intents    hash  orderLinkId -> JSON intent (written BEFORE the send)
    hean:{ns/name}:orders     hash  orderLinkId -> JSON {state, orderId, cumQty, reason}
    hean:{ns/name}:fills      hash  execId -> JSON fill (HSETNX: exactly once)
    hean:{ns/name}:ledger     stream one entry per booked fill (append-only)
    hean:{ns/name}:positions  hash  symbol -> JSON {size, entryPrice} (a view; the ledger is the truth)
    hean:{ns/name}:blob:<c>   string JSON {version, data} of component <c> (engine, replay, ...)
    hean:{ns/name}:seq        int   orderLinkId sequence (INCRBY)
    hean:budget:{<fp>}:calls  zset  order-request times of one API key (fp = key fingerprint)
    hean:budget:{<fp>}:block  string unix seconds until which every sharer waits

Fencing (Martin Kleppmann, "How to do distributed locking", 2016): a worker takes
the lease with ``SET``-like semantics in :data:`ACQUIRE_LUA` and gets a fresh token
from the ``token`` counter. Every order intent and every state commit runs a Lua
script that first compares the caller's token with the lease's token and refuses
(returns ``FENCED``) if another worker took the lease since; Redis runs a script
atomically, so no write of a zombie can land between the check and the write.

The synchronous client is used only from threads (the rate budget, called from
``asyncio.to_thread``) and at start-up; on the event loop the asyncio client
(``redis.asyncio``) is used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import time
import uuid
from dataclasses import asdict
from decimal import Decimal

import redis
import redis.asyncio as aredis

from .ledger import Fill, Ledger

log = logging.getLogger("hean.worker.state")

FENCED = "FENCED"
STATE_DOWN = "STATE_STORE_DOWN"
LEASE_TTL_S = 10.0

# KEYS: lease, token. ARGV: holder, ttl_ms. -> {1, token} (held) or {0, token of the holder}
ACQUIRE_LUA = """
local h = redis.call('HGET', KEYS[1], 'holder')
if h and h ~= ARGV[1] then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'token'))}
end
if h == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('HGET', KEYS[1], 'token'))}
end
local t = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', t)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, t}
"""

# KEYS: lease. ARGV: token, ttl_ms. -> 1 renewed, -1 another worker's lease, -2 no lease (expired)
RENEW_LUA = """
local t = redis.call('HGET', KEYS[1], 'token')
if not t then return -2 end
if t ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease, intents, orders. ARGV: token, orderLinkId, intent JSON, order JSON
# -> 1 recorded, 2 already recorded (a resend of the same order), -1 fenced, -2 lease expired
INTENT_LUA = """
local t = redis.call('HGET', KEYS[1], 'token')
if not t then return -2 end
if t ~= ARGV[1] then return -1 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 2 end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
return 1
"""

# KEYS: lease, fills, ledger, positions, orders, blob(optional, '' = none)
# ARGV: token, nfills, nposition, norders, blob JSON or '', then nfills x (execId, fill JSON),
#       npositions x (symbol, JSON), norders x (orderLinkId, JSON)
# -> number of new fills, -1 fenced, -2 lease expired (nothing written). Fills are booked exactly once (HSETNX), each new
# one appended to the ledger Stream; positions, order states and the blob are set.
COMMIT_LUA = """
local t = redis.call('HGET', KEYS[1], 'token')
if not t then return -2 end
if t ~= ARGV[1] then return -1 end
local nf, np, no = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local i, new = 6, 0
for _ = 1, nf do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('XADD', KEYS[3], '*', 'execId', ARGV[i], 'fill', ARGV[i + 1])
    new = new + 1
  end
  i = i + 2
end
for _ = 1, np do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2 end
for _ = 1, no do redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1]); i = i + 2 end
if ARGV[5] ~= '' then redis.call('SET', KEYS[6], ARGV[5]) end
return new
"""

# KEYS: seq. ARGV: n -> raise the sequence to at least n; returns it
ENSURE_ABOVE_LUA = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]); return tonumber(ARGV[1]) end
return cur
"""

# KEYS: calls zset, block key. ARGV: now (s), window (s), per_window, order (1/0), member
# -> seconds to wait (0: a slot was taken)
BUDGET_LUA = """
local now, window, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then return tostring(blocked - now) end
if ARGV[4] == '1' then
  if redis.call('ZCARD', KEYS[1]) >= n then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return tostring(tonumber(first[2]) + window - now)
  end
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('EXPIRE', KEYS[1], 60)
end
return '0'
"""

# KEYS: block key. ARGV: until (unix s)
BLOCK_LUA = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'EX', 600) end
return 1
"""


class Fenced(RuntimeError):
    """Another worker holds this strategy's lease (a newer fencing token): this one must
    not submit orders or write state."""


class StateUnavailable(RuntimeError):
    """Redis cannot be reached (connection refused, timeout, loading AOF)."""


class LeaseExpired(StateUnavailable):
    """This worker's lease expired (e.g. Redis was down longer than the TTL) and nobody
    else took it yet: writes wait until the lease loop re-acquires it."""


def strategy_prefix(namespace: str, name: str) -> str:
    """``hean:{<namespace>/<name>}:`` - the key prefix of one strategy (hash-tagged)."""
    return f"hean:{{{namespace}/{name}}}:"


def redis_settings_from_env(env=None) -> tuple[str | None, str | None]:
    """``(HEAN_REDIS_URL, HEAN_REDIS_PASSWORD)`` from the environment; URL None if unset."""
    env = os.environ if env is None else env
    url = (env.get("HEAN_REDIS_URL") or "").strip() or None
    pw = env.get("HEAN_REDIS_PASSWORD") or None
    return url, pw


def fill_to_json(f: Fill) -> str:
    """A :class:`Fill` as JSON; Decimals as strings (exact)."""
    d = asdict(f)
    for k in ("qty", "price", "fee"):
        d[k] = str(d[k])
    return json.dumps(d, separators=(",", ":"))


def fill_from_json(text: str | bytes) -> Fill:
    """Inverse of :func:`fill_to_json`."""
    d = json.loads(text)
    for k in ("qty", "price", "fee"):
        d[k] = Decimal(d[k])
    return Fill(**d)


def crash_point(name: str) -> None:
    """Chaos hook: ``HEAN_CHAOS_CRASH=<point>[,<point>...]:<probability>`` SIGKILLs this
    process at a named point (``before_send``, ``after_send``, ``after_fill``) with the
    given probability (0..1). Unset (production) it does nothing. Used by tests/chaos."""
    spec = os.environ.get("HEAN_CHAOS_CRASH")
    if not spec:
        return
    points, _, p = spec.partition(":")
    if name in points.split(",") and random.random() < float(p or 1):
        log.warning("chaos: SIGKILL at %s", name)
        os.kill(os.getpid(), signal.SIGKILL)


class StateStore:
    """One strategy's keys in Redis.

    ``url``/``password`` as in :func:`redis_settings_from_env`; ``holder`` names this
    worker (the pod name) in the lease; ``lease_ttl`` seconds. Methods prefixed ``a``
    are coroutines for the event loop; the others are synchronous (threads, start-up).
    Connection problems raise :class:`StateUnavailable`; a lost lease :class:`Fenced`.
    """

    def __init__(self, url: str, namespace: str, name: str, holder: str, password: str | None = None,
                 lease_ttl: float = LEASE_TTL_S, socket_timeout: float = 2.0):
        self.url, self.namespace, self.name, self.holder = url, namespace, name, holder
        self.prefix = strategy_prefix(namespace, name)
        self.lease_ttl = lease_ttl
        kw = dict(password=password, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                  decode_responses=True)
        self.r = redis.Redis.from_url(url, **kw)
        self.ar = aredis.Redis.from_url(url, **kw)
        self.token: int | None = None
        self.renewed_at = 0.0  # time.monotonic() of the last successful acquire/renew
        self.lease_lost = False  # the lease expired; re-acquire (if nobody else held it meanwhile)
        self.needs_recovery = False  # Redis was unreachable: re-check the lease and re-commit first
        self.fenced = False
        self.fenced_reason = ""
        self.available = True
        self.down_since: float | None = None
        self.counters: dict[str, int] = {"commits": 0, "fills_new": 0, "intents": 0, "fenced_writes": 0,
                                         "unavailable": 0, "lease_renewals": 0}
        self._acquire = self.ar.register_script(ACQUIRE_LUA)
        self._renew = self.ar.register_script(RENEW_LUA)
        self._intent = self.ar.register_script(INTENT_LUA)
        self._commit = self.ar.register_script(COMMIT_LUA)
        self._ensure = self.r.register_script(ENSURE_ABOVE_LUA)
        self._aensure = self.ar.register_script(ENSURE_ABOVE_LUA)

    def key(self, part: str) -> str:
        """The full key of ``part`` (e.g. ``"fills"``)."""
        return self.prefix + part

    # ---- availability ---------------------------------------------------------------
    def _down(self, e: Exception) -> StateUnavailable:
        if self.available:
            log.error("Redis unreachable (%s): no orders until it is back", type(e).__name__)
            self.down_since = time.time()
        self.available = False
        self.needs_recovery = True
        self.counters["unavailable"] += 1
        return StateUnavailable(f"Redis {self.url.split('@')[-1]}: {type(e).__name__}: {e}")

    def _up(self) -> None:
        if not self.available:
            log.warning("Redis reachable again after %.1fs", time.time() - (self.down_since or time.time()))
        self.available = True
        self.down_since = None

    async def _run(self, coro):
        try:
            out = await coro
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as e:
            raise self._down(e) from None
        self._up()
        return out

    # ---- lease and fencing --------------------------------------------------------------
    async def acquire(self) -> bool:
        """Take (or keep) the lease; True if this worker holds it (``self.token`` set).
        False while another holder's lease is live."""
        ok, token = await self._run(self._acquire(keys=[self.key("lease"), self.key("token")],
                                                  args=[self.holder, int(self.lease_ttl * 1000)]))
        if ok:
            if self.token is not None and token not in (self.token, self.token + 1):
                # someone else held the lease in between (tokens were issued): our memory
                # may be stale against what they wrote, so we never trade on it again
                self.token = None
                await self._run(self.ar.delete(self.key("lease")))  # the fresh lease we just took: give it up
                self._fence(f"another worker held the lease meanwhile (token now {token})")
                return False
            if self.token is not None and token != self.token:
                log.warning("lease re-acquired with fencing token %s (was %s; nobody held it meanwhile)",
                            token, self.token)
            self.token = int(token)
            self.lease_lost = False
            self.renewed_at = time.monotonic()
            self.fenced = False
            self.fenced_reason = ""
        return bool(ok)

    async def renew(self) -> bool:
        """Extend the lease; on a lost lease mark this worker fenced and return False."""
        if self.token is None:
            return False
        ok = await self._run(self._renew(keys=[self.key("lease")], args=[self.token, int(self.lease_ttl * 1000)]))
        if ok == -2:
            self.lease_lost = True
            return False
        if ok != 1:
            self._fence("the lease was taken by another worker")
            return False
        self.renewed_at = time.monotonic()
        self.counters["lease_renewals"] += 1
        return True

    def lease_valid(self, margin: float = 0.8) -> bool:
        """True if this worker's lease cannot have expired yet by its own clock: the last
        renewal is younger than ``margin`` x TTL. Checked right before every send, so a
        process that was frozen (SIGSTOP, a long GC pause, a partitioned node) does not
        send the order it had recorded before it froze; the monotonic clock keeps
        running while a process is stopped."""
        return (self.token is not None and not self.fenced and not self.lease_lost
                and time.monotonic() - self.renewed_at < self.lease_ttl * margin)

    def _fence(self, why: str) -> None:
        if not self.fenced:
            log.error("FENCED: %s; this worker stops trading (fencing token %s)", why, self.token)
        self.fenced = True
        self.fenced_reason = why

    async def current_holder(self) -> dict:
        """``{holder, token}`` of the live lease (empty if none)."""
        return await self._run(self.ar.hgetall(self.key("lease")))

    async def release(self) -> None:
        """Give the lease up (graceful stop) if still ours."""
        if self.token is None:
            return
        try:
            if await self.ar.hget(self.key("lease"), "token") == str(self.token):
                await self.ar.delete(self.key("lease"))
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass

    # ---- orders -------------------------------------------------------------------
    async def record_intent(self, link: str, intent: dict) -> bool:
        """Write-ahead: record the order ``intent`` (JSON-able dict) under ``link``
        before it is sent, if this worker still holds the lease. Returns True if new,
        False if it was recorded already. Raises :class:`Fenced` or :class:`StateUnavailable`."""
        if self.token is None or self.fenced:
            raise Fenced(self.fenced_reason or "no lease")
        tok = self.token
        res = await self._run(self._intent(
            keys=[self.key("lease"), self.key("intents"), self.key("orders")],
            args=[tok, link, json.dumps({**intent, "token": tok, "holder": self.holder,
                                                "recordedAt": time.time()}, separators=(",", ":")),
                  json.dumps({"state": "sending"})]))
        if res == -2:
            self.lease_lost = True
            raise LeaseExpired("the lease expired; waiting to re-acquire it")
        if res == -1 and self.token != tok:
            raise LeaseExpired("the lease was re-acquired during the write; not sent")
        if res == -1:
            self.counters["fenced_writes"] += 1
            self._fence("an order intent was refused: another worker holds a newer fencing token")
            raise Fenced(self.fenced_reason)
        self.counters["intents"] += 1
        return res == 1

    async def commit(self, fills=(), positions: dict | None = None, orders: dict | None = None,
                     blob: tuple[str, dict] | None = None) -> int:
        """One atomic, fenced write: new ``fills`` (exactly once by execId, appended to
        the ledger Stream), ``positions`` (symbol -> dict), ``orders`` (orderLinkId ->
        dict) and a component ``blob`` (``(component, data)``, stored with a version).
        Returns how many fills were new. Raises :class:`Fenced` / :class:`StateUnavailable`."""
        if self.token is None or self.fenced:
            raise Fenced(self.fenced_reason or "no lease")
        fills, positions, orders = list(fills), positions or {}, orders or {}
        tok = self.token
        args: list = [tok, len(fills), len(positions), len(orders), ""]
        if blob is not None:
            args[4] = json.dumps({"version": 1, "savedAt": time.time(), "data": blob[1]}, separators=(",", ":"))
        for f in fills:
            args += [f.exec_id, fill_to_json(f)]
        for sym, p in positions.items():
            args += [sym, json.dumps(p, separators=(",", ":"))]
        for link, o in orders.items():
            args += [link, json.dumps(o, separators=(",", ":"))]
        keys = [self.key(k) for k in ("lease", "fills", "ledger", "positions", "orders")]
        keys.append(self.key(f"blob:{blob[0]}") if blob else self.key("blob:none"))
        new = await self._run(self._commit(keys=keys, args=args))
        if new == -2:
            self.lease_lost = True
            raise LeaseExpired("the lease expired; waiting to re-acquire it")
        if new == -1 and self.token != tok:
            # our own lease loop re-acquired the lease (new token) while this write was
            # in flight: not a zombie; the writer retries with the new token
            raise LeaseExpired("the lease was re-acquired during the write; retrying")
        if new == -1:
            self.counters["fenced_writes"] += 1
            self._fence("a state write was refused: another worker holds a newer fencing token")
            raise Fenced(self.fenced_reason)
        self.counters["commits"] += 1
        self.counters["fills_new"] += int(new)
        return int(new)

    # ---- loading ----------------------------------------------------------------------
    async def load(self) -> dict:
        """Everything needed to resume: ``fills`` (ledger Stream order), ``intents`` and
        ``orders`` (orderLinkId -> dict), ``positions`` and ``blobs`` (component -> data)."""
        fills = []
        last = "-"
        while True:
            batch = await self._run(self.ar.xrange(self.key("ledger"), min=last, count=1000))
            if last != "-":
                batch = batch[1:]
            if not batch:
                break
            fills += [fill_from_json(fields["fill"]) for _, fields in batch]
            last = batch[-1][0]
        intents = {k: json.loads(v) for k, v in (await self._run(self.ar.hgetall(self.key("intents")))).items()}
        orders = {k: json.loads(v) for k, v in (await self._run(self.ar.hgetall(self.key("orders")))).items()}
        positions = {k: json.loads(v) for k, v in (await self._run(self.ar.hgetall(self.key("positions")))).items()}
        blobs = {}
        async for k in self.ar.scan_iter(match=self._escaped() + "blob:*", count=100):
            raw = await self._run(self.ar.get(k))
            if raw:
                blobs[k[len(self.prefix) + 5:]] = json.loads(raw).get("data")
        return {"fills": fills, "intents": intents, "orders": orders, "positions": positions, "blobs": blobs}

    def _escaped(self) -> str:
        return self.prefix.replace("[", "\\[").replace("?", "\\?").replace("*", "\\*")

    # ---- orderLinkId sequence -------------------------------------------------------------
    def incr_seq(self, n: int = 1) -> int:
        """Reserve ``n`` sequence numbers; returns the highest (synchronous)."""
        try:
            return int(self.r.incrby(self.key("seq"), n))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise self._down(e) from None

    async def aincr_seq(self, n: int = 1) -> int:
        """Coroutine of :meth:`incr_seq`."""
        return int(await self._run(self.ar.incrby(self.key("seq"), n)))

    async def aensure_seq_above(self, n: int) -> int:
        """Raise the sequence to at least ``n``."""
        return int(await self._run(self._aensure(keys=[self.key("seq")], args=[n])))

    async def aclose(self) -> None:
        """Close both clients."""
        await self.ar.aclose()
        self.r.close()


class RedisOrderLinkIds:
    """:class:`hean.worker.bybit.orderlink.OrderLinkIds` with the sequence in Redis
    (same ``<prefix>-<b36(seq)>`` format). Ids are reserved in blocks of ``block``
    with ``INCRBY`` (asynchronously refilled when half used, so the event loop does not
    wait on Redis per order); ids of a block lost in a crash are simply skipped.
    """

    def __init__(self, namespace: str, name: str, store: StateStore, block: int = 32):
        from .bybit.orderlink import prefix_for

        self.prefix = prefix_for(namespace, name)
        self.store, self.block = store, block
        self.next_seq = 1
        self.hi = 0  # next_seq..hi are reserved for us
        self.seq = 0
        self._refilling = False

    async def start(self) -> None:
        """Reserve the first block (call before the first :meth:`next`)."""
        hi = await self.store.aincr_seq(self.block)
        self.next_seq, self.hi = hi - self.block + 1, hi

    def _refill_async(self) -> None:
        if self._refilling:
            return
        self._refilling = True

        async def refill():
            try:
                hi = await self.store.aincr_seq(self.block)
                self._spare = (hi - self.block + 1, hi)
            except StateUnavailable:
                pass
            finally:
                self._refilling = False
        try:
            asyncio.get_running_loop().create_task(refill())
        except RuntimeError:
            self._refilling = False

    def next(self) -> str:
        """A new id, unique for this strategy across restarts and nodes."""
        from .bybit.orderlink import MAX_LEN, b36

        if self.next_seq > self.hi:
            spare = getattr(self, "_spare", None)
            if spare is not None and spare[0] > self.seq:
                self.next_seq, self.hi = spare
                self._spare = None
            else:  # the refill has not landed yet: reserve synchronously (rare)
                hi = self.store.incr_seq(self.block)
                self.next_seq, self.hi = hi - self.block + 1, hi
        seq = self.next_seq
        self.next_seq += 1
        self.seq = seq
        if self.hi - self.next_seq < self.block // 2 and getattr(self, "_spare", None) is None:
            self._refill_async()
        link = f"{self.prefix}-{b36(seq)}"
        assert len(link) <= MAX_LEN, link
        return link

    def owns(self, link: str) -> bool:
        """True if ``link`` was issued under this strategy's prefix (the id format is
        :class:`~hean.worker.bybit.orderlink.OrderLinkIds`')."""
        from .bybit.orderlink import OrderLinkIds  # lazy: the bybit package imports pybit

        return OrderLinkIds.owns(self, link)

    def seq_of(self, link: str) -> int | None:
        """The sequence number inside ``link``, or None if it is not one of ours."""
        from .bybit.orderlink import OrderLinkIds

        return OrderLinkIds.seq_of(self, link)

    def ensure_above(self, links) -> int:
        """Raise the Redis sequence above every id of ours in ``links`` (the exchange's
        view). Synchronous (called from reconciliation)."""
        top = max((s for s in (self.seq_of(x) for x in links) if s is not None), default=0)
        if top >= self.next_seq:
            cur = int(self.store._ensure(keys=[self.store.key("seq")], args=[top]))
            hi = self.store.incr_seq(self.block)
            self.next_seq, self.hi = max(hi - self.block + 1, cur + 1), hi
            self._spare = None
        return max(top, self.seq)


class RedisRateBudget:
    """:class:`hean.worker.bybit.budget.RateBudget` shared through Redis by every worker
    (on any node) that uses one API key. ``key_id`` is the key's fingerprint (a hash,
    never the key). Same interface: ``acquire()`` blocks (it runs in a thread),
    ``observe(headers)`` and ``penalize(headers)`` feed back the exchange's answers.
    If Redis is unreachable it falls back to the per-process window (logged once)."""

    def __init__(self, key_id: str, client: redis.Redis, per_second: int = 10, clock=time.time,
                 sleep=time.sleep, window_s: float = 1.1):
        from .bybit.budget import RateBudget

        if per_second < 1:
            raise ValueError(f"rate budget per_second must be >= 1, got {per_second}")
        self.local = RateBudget(key_id, per_second, clock=clock, sleep=sleep, window_s=window_s)
        self.r = client
        self.calls_key, self.block_key = f"hean:budget:{{{key_id}}}:calls", f"hean:budget:{{{key_id}}}:block"
        self.per_second, self.window_s = per_second, window_s
        self.clock, self.sleep = clock, sleep
        self.strikes = 0
        self.waited_s = 0.0
        self.penalties = 0
        self._script = client.register_script(BUDGET_LUA)
        self._block = client.register_script(BLOCK_LUA)
        self.fallbacks = 0

    def acquire(self, order: bool = True) -> float:
        """Wait for a slot (order requests only; others only honour a block); returns seconds waited."""
        from .bybit.budget import BACKOFF_MAX_S

        waited = 0.0
        while True:
            now = self.clock()
            try:
                delay = float(self._script(keys=[self.calls_key, self.block_key],
                                           args=[now, self.window_s, self.per_second, int(order),
                                                 f"{now}-{os.getpid()}-{random.random()}"]))
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                self.fallbacks += 1
                w = self.local.acquire(order)
                self.waited_s += waited + w
                return waited + w
            if delay <= 0:
                self.waited_s += waited
                return waited
            delay = min(delay, BACKOFF_MAX_S)
            self.sleep(delay)
            waited += delay

    def observe(self, headers, offset_ms: int = 0) -> None:
        """See :meth:`hean.worker.bybit.budget.RateBudget.observe`."""
        from .bybit.budget import _header

        self.strikes = 0
        status, reset = _header(headers, "X-Bapi-Limit-Status"), _header(headers, "X-Bapi-Limit-Reset-Timestamp")
        if status is not None and reset is not None and status.strip() == "0":
            self._block_until((int(reset) - offset_ms) / 1000.0)

    def penalize(self, headers, offset_ms: int = 0) -> float:
        """See :meth:`hean.worker.bybit.budget.RateBudget.penalize`."""
        from .bybit.budget import penalty_until

        self.penalties += 1
        self.strikes += 1
        now = self.clock()
        until = penalty_until(headers, offset_ms, now, self.strikes)
        self._block_until(until)
        return until - now

    def _block_until(self, t: float) -> None:
        try:
            self._block(keys=[self.block_key], args=[t])
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.local._block_until(t)


def rebuild_ledger(capital: Decimal, fills: list[Fill]) -> Ledger:
    """A :class:`Ledger` with ``fills`` applied in order (the ledger Stream's order).
    Raises :class:`hean.worker.ledger.LedgerError` if the history is inconsistent."""
    led = Ledger(capital)
    for f in fills:
        led.apply(f)
    return led


def position_view(ledger: Ledger) -> dict:
    """``symbol -> {size, entryPrice}`` (decimal strings) of every position in ``ledger``."""
    return {s: {"size": str(p.size), "entryPrice": str(p.entry_price)} for s, p in ledger.positions.items()}


async def delete_strategy_keys(url: str, namespace: str, name: str, password: str | None = None,
                               batch: int = 500) -> int:
    """Delete every key of one strategy (``hean:{ns/name}:*``) with SCAN + UNLINK on the
    asyncio client; returns how many were deleted. Used by the operator's finalizer."""
    r = aredis.Redis.from_url(url, password=password, decode_responses=True, socket_timeout=5)
    prefix = strategy_prefix(namespace, name)
    pattern = prefix.replace("[", "\\[").replace("?", "\\?").replace("*", "\\*") + "*"
    n = 0
    try:
        chunk = []
        async for k in r.scan_iter(match=pattern, count=batch):
            chunk.append(k)
            if len(chunk) >= batch:
                n += await r.unlink(*chunk)
                chunk = []
        if chunk:
            n += await r.unlink(*chunk)
    finally:
        await r.aclose()
    return n


# ---- engine snapshot (component state that must survive a restart) -----------------------
def engine_snapshot(engine, cursor_ms: int | None = None) -> dict:
    """The engine's restart state as JSON-able data: per-symbol cooldown, stop and
    target prices, peak equity (drawdown base), the UTC day and its start equity (daily
    loss), the latched HARD_STOP time, order counters, the data cursor (epoch ms).
    Indicators are NOT saved: they warm up again (``WARMING_UP``) after a restart."""
    def d(x):
        return None if x is None else str(x)
    return {
        "symbols": {s: {"cooldownLeft": st.cooldown_left, "stopPrice": d(st.stop_price),
                        "targetPrice": d(st.target_price), "entryOrders": st.entry_orders}
                    for s, st in engine.symbols.items()},
        "peakEquity": str(engine.peak_equity), "day": engine.day, "dayStartEquity": str(engine.day_start_equity),
        "hardStopAt": engine.hard_stop_at.isoformat() if engine.hard_stop_at else None,
        "orderSeq": engine.order_seq, "ordersSent": engine.orders_sent, "nowMs": engine.now_ms,
        "cursorMs": cursor_ms, "funding": str(engine.ledger.funding),
    }


def restore_engine(engine, fills: list[Fill], snap: dict | None) -> None:
    """Put the ledger rebuilt from ``fills`` and the snapshot ``snap`` (from
    :func:`engine_snapshot`, may be None) into ``engine``."""
    from datetime import datetime

    # time order (stable): fills re-committed after a Redis data loss are appended late
    led = rebuild_ledger(engine.ledger.capital, sorted(fills, key=lambda f: f.ts_ms))
    engine.ledger = led
    if not snap:
        return
    led.funding = Decimal(snap.get("funding") or 0)  # funding is not a fill: kept in the snapshot
    for s, v in (snap.get("symbols") or {}).items():
        st = engine.symbols.get(s)
        if st is None:
            continue
        st.cooldown_left = int(v.get("cooldownLeft") or 0)
        st.stop_price = Decimal(v["stopPrice"]) if v.get("stopPrice") else None
        st.target_price = Decimal(v["targetPrice"]) if v.get("targetPrice") else None
        st.entry_orders = int(v.get("entryOrders") or 0)
        if led.position(s).size == 0:
            st.stop_price = st.target_price = None
    engine.peak_equity = Decimal(snap.get("peakEquity") or engine.peak_equity)
    engine.day = snap.get("day")
    engine.day_start_equity = Decimal(snap.get("dayStartEquity") or engine.day_start_equity)
    if snap.get("hardStopAt"):
        engine.hard_stop_at = datetime.fromisoformat(snap["hardStopAt"])
    engine.order_seq = max(engine.order_seq, int(snap.get("orderSeq") or 0))
    engine.orders_sent = max(engine.orders_sent, int(snap.get("ordersSent") or 0))
    engine.now_ms = max(engine.now_ms, int(snap.get("nowMs") or 0))


class StateWriter:
    """Ordered, coalescing writer on the event loop: :meth:`submit` never blocks; a task
    commits what is pending in one fenced script call (fills first, exactly once by
    execId, then positions, order states and the latest blob per component). While Redis
    is unreachable the pending writes are kept and retried every ``retry_s``; on
    :class:`Fenced` they are dropped (a newer worker owns the state)."""

    def __init__(self, store: StateStore, retry_s: float = 0.25):
        self.store, self.retry_s = store, retry_s
        self.fills: list[Fill] = []
        self.positions: dict = {}
        self.orders: dict = {}
        self.blobs: dict = {}
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.errors = 0

    def pending(self) -> bool:
        """True while something is not committed yet."""
        return bool(self.fills or self.positions or self.orders or self.blobs)

    def submit(self, fills=(), positions: dict | None = None, orders: dict | None = None,
               blob: tuple[str, dict] | None = None) -> None:
        """Queue a write (called on the loop; returns at once)."""
        self.fills.extend(fills)
        self.positions.update(positions or {})
        self.orders.update(orders or {})
        if blob is not None:
            self.blobs[blob[0]] = blob[1]
        self.idle.clear()
        self.wake.set()

    async def flush(self) -> None:
        """Commit everything pending now (raises like :meth:`StateStore.commit`)."""
        while self.pending():
            fills, positions, orders, blobs = self.fills, self.positions, self.orders, self.blobs
            self.fills, self.positions, self.orders, self.blobs = [], {}, {}, {}
            items = list(blobs.items()) or [None]
            try:
                for i, blob in enumerate(items):
                    if i == 0:
                        await self.store.commit(fills, positions, orders, blob)
                    else:
                        await self.store.commit(blob=blob)
            except StateUnavailable:
                # put it back in front (order kept: older fills first)
                self.fills = fills + self.fills
                self.positions = {**positions, **self.positions}
                self.orders = {**orders, **self.orders}
                self.blobs = {**blobs, **self.blobs}
                raise
        self.idle.set()

    async def run(self) -> None:
        """The writer task."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self.flush()
            except StateUnavailable:
                self.errors += 1
                await asyncio.sleep(self.retry_s)
                self.wake.set()
            except Fenced:
                self.fills, self.positions, self.orders, self.blobs = [], {}, {}, {}
                self.idle.set()


class WorkerState:
    """The worker's state backend: Redis (``store`` set) or in-memory (``store`` None).

    Holds the lease loop (renew every ``lease_ttl / 3`` s; re-acquire after a Redis
    outage; fenced when another worker took the lease), the writer, and what ``/why``
    and the metrics report. ``blocked()`` gives the reason orders must not be sent
    (``FENCED``, ``STATE_STORE_DOWN``, ``LEASE_HELD``) or None."""

    def __init__(self, store: StateStore | None):
        self.store = store
        self.writer = StateWriter(store) if store is not None else None
        self.loaded = False
        self.lease_wait_since: float | None = None
        self.recovered_at: float | None = None
        self.on_recovered = None  # callable() after Redis came back and the lease is ours again
        self.load_seconds: float | None = None

    @classmethod
    def from_env(cls, namespace: str, name: str, holder: str, env=None, lease_ttl: float | None = None):
        """Redis if ``HEAN_REDIS_URL`` is set, else in-memory. The lease TTL comes from
        ``HEAN_STATE_LEASE_SECONDS`` (default 10 s, 0.5..300); raises ValueError naming it."""
        env = os.environ if env is None else env
        url, pw = redis_settings_from_env(env)
        if lease_ttl is None:
            raw = env.get("HEAN_STATE_LEASE_SECONDS") or str(LEASE_TTL_S)
            try:
                lease_ttl = float(raw)
            except ValueError:
                lease_ttl = -1.0
            if not 0.5 <= lease_ttl <= 300:
                raise ValueError(f"HEAN_STATE_LEASE_SECONDS must be a number of seconds in 0.5..300, got {raw!r}")
        if url is None:
            log.warning("HEAN_REDIS_URL is not set: worker state is in memory (lost on restart) and the "
                        "orderLinkId sequence and rate budget are per-node files")
            return cls(None)
        # A replacement pod has the same name as the pod it replaces: the lease holder is
        # the pod name plus a per-process id, so the two are never taken for one holder.
        return cls(StateStore(url, namespace, name, f"{holder}/{uuid.uuid4().hex[:12]}", pw, lease_ttl=lease_ttl))

    @property
    def backend(self) -> str:
        """``redis`` or ``memory``."""
        return "redis" if self.store is not None else "memory"

    def blocked(self) -> str | None:
        """Why orders must not be sent now, or None."""
        s = self.store
        if s is None:
            return None
        if s.fenced:
            return FENCED
        if not s.available or s.needs_recovery:
            return STATE_DOWN
        if s.token is None:
            return "LEASE_HELD"
        if s.lease_lost:
            return "LEASE_EXPIRED"
        return None

    async def release(self) -> None:
        """Give the lease up (graceful stop)."""
        if self.store is not None:
            await self.store.release()

    async def acquire_lease(self, poll_s: float = 0.5) -> None:
        """Wait until this worker holds the lease (a live lease of another worker -
        e.g. a zombie of the pod this one replaces - is waited out, never broken)."""
        assert self.store is not None
        self.lease_wait_since = time.time()
        while True:
            try:
                if await self.store.acquire():
                    self.lease_wait_since = None
                    log.info("lease of %s acquired, fencing token %s", self.store.prefix, self.store.token)
                    return
                holder = await self.store.current_holder()
                log.warning("lease held by %s (token %s): waiting for it to expire", holder.get("holder"),
                            holder.get("token"))
            except StateUnavailable:
                pass
            await asyncio.sleep(poll_s)

    async def lease_loop(self) -> None:
        """Renew the lease; after an outage re-acquire it (or stay fenced)."""
        assert self.store is not None
        s = self.store
        while not s.fenced:
            await asyncio.sleep(s.lease_ttl / 3)
            try:
                if s.available and not s.lease_lost and not s.needs_recovery and await s.renew():
                    continue
                if s.fenced:
                    return
                # Redis was unreachable or the lease expired: take it again only if nobody
                # else held it meanwhile (StateStore.acquire), else this worker is fenced.
                if not await s.acquire():
                    if not s.fenced:
                        s._fence("another worker holds the lease")
                    return
                s.needs_recovery = False
                self.recovered_at = time.time()
                log.warning("state store and lease recovered (token %s): reconciling before trading", s.token)
                if self.on_recovered is not None:
                    self.on_recovered()
            except StateUnavailable:
                pass

    def snapshot(self) -> dict:
        """``/why`` view (never a password)."""
        if self.store is None:
            return {"backend": "memory", "durable": False,
                    "note": "HEAN_REDIS_URL not set: state is in memory and lost on restart"}
        s = self.store
        return {"backend": "redis", "durable": True, "keyPrefix": s.prefix, "available": s.available,
                "downSince": s.down_since, "fencingToken": s.token, "fenced": s.fenced,
                "fencedReason": s.fenced_reason or None, "leaseWaitSince": self.lease_wait_since,
                "pendingWrites": self.writer.pending() if self.writer else False, "loaded": self.loaded,
                "loadSeconds": self.load_seconds, "blocked": self.blocked(), "counters": dict(s.counters)}


def state_metric_families(state: WorkerState | None, base: list[str], lv: list[str]):
    """Prometheus families of the state backend (for the worker's collector); every
    family exists in both backends so alerts are well defined (docs/metrics.md)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    s = state.store if state is not None else None
    durable = GaugeMetricFamily("hean_worker_state_durable_active",
                                "1 when worker state is in Redis (survives a restart), 0 when in memory",
                                labels=base)
    durable.add_metric(lv, 1.0 if s is not None else 0.0)
    yield durable
    up = GaugeMetricFamily("hean_worker_state_store_up",
                           "1 when the state store answers (Redis reachable; always 1 in memory)", labels=base)
    up.add_metric(lv, 1.0 if s is None or s.available else 0.0)
    yield up
    fenced = GaugeMetricFamily("hean_worker_fenced_active",
                               "1 when another worker holds this strategy's lease: no orders are sent", labels=base)
    fenced.add_metric(lv, 1.0 if s is not None and s.fenced else 0.0)
    yield fenced
    c = CounterMetricFamily("hean_worker_state_writes", "State-store operations by kind (commits, intents, "
                            "fills_new, fenced_writes, unavailable, lease_renewals)", labels=base + ["kind"])
    for k, v in sorted((s.counters if s is not None else {}).items()):
        c.add_metric(lv + [k], float(v))
    yield c


class PaperDurability:
    """Paper mode on Redis: the paper engine is its own exchange, so its fills, positions
    and engine state (with the data cursor) are committed together, atomically and
    fenced, after every candle that produced a fill (and the cursor alone at most every
    ``cursor_every_s``). A restarted paper worker restores the ledger, equity, stops and
    cooldowns and resumes the replay after the committed cursor: a candle is never
    traded twice, and a crash loses at most the candles after the last commit (they
    are replayed from the restored state)."""

    def __init__(self, state: WorkerState, cursor_every_s: float = 1.0):
        self.state = state
        self.cursor_every_s = cursor_every_s
        self.booked = 0
        self.last_blob = 0.0
        self.resume_ms: int | None = None

    async def start(self, engine) -> dict:
        """Take the lease, load and restore; returns ``{fills, cursorMs}``."""
        st = self.state
        t0 = time.monotonic()
        await st.acquire_lease()
        data = await st.store.load()
        snap = data["blobs"].get("engine")
        restore_engine(engine, data["fills"], snap)
        self.booked = len(engine.ledger.fills)
        self.resume_ms = (snap or {}).get("cursorMs")
        st.loaded = True
        st.load_seconds = time.monotonic() - t0
        log.info("paper state restored from Redis: %d fills, resuming after cursor %s (lease token %s)",
                 self.booked, self.resume_ms, st.store.token)
        return {"fills": self.booked, "cursorMs": self.resume_ms}

    def after_bar(self, engine, cursor_ms: int) -> None:
        """Queue the commit of what the last candle changed (never blocks)."""
        fills = engine.ledger.fills
        now = time.monotonic()
        if len(fills) > self.booked:
            new = fills[self.booked:]
            self.booked = len(fills)
            view = position_view(engine.ledger)
            self.state.writer.submit(fills=new, positions={f.symbol: view[f.symbol] for f in new},
                                     blob=("engine", engine_snapshot(engine, cursor_ms)))
            self.last_blob = now
        elif now - self.last_blob >= self.cursor_every_s:
            self.state.writer.submit(blob=("engine", engine_snapshot(engine, cursor_ms)))
            self.last_blob = now
