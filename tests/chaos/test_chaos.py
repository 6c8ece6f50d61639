"""Chaos suite for worker state (issue 7, scenarios 1, 2, 5, 6 and 7).

Real parts only: worker processes (``chaosworker.py``: the worker's exchange-execution
path with the Redis state layer) trading through real pybit against the Bybit-v5 test
exchange (tests/exchange/), a real ``redis-server`` with AOF (``appendfsync
everysec``), real signals. After every run the invariants are checked against the
exchange's own books and Redis (:func:`check_invariants`):

* no orderLinkId was accepted twice, and no create was attempted again for an order
  whose outcome was unknown after a crash (restarts look orders up, never resend);
* every order the exchange accepted has a write-ahead intent in Redis;
* exchange executions == ledger fills (execIds, both ways), each booked once;
* the exchange position == the ledger's position (sum of signed fill quantities);
* the ledger replays cleanly (``Ledger.check``) and the fills hash == the ledger Stream.

Size: the default suite runs a few runs per scenario (well under 90 s). The full
counts (100 SIGKILL runs, 20 pod-deletion runs, ...) run with::

    HEAN_CHAOS_RUNS=full .venv/bin/python -m pytest -q tests/chaos -s

``HEAN_CHAOS_REPORT=<file>`` writes the figures (runs, faults, violations, recovery
p50/p99) as JSON; docs/reliability.md records them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.worker.ledger import LedgerError
from hean.worker.state import fill_from_json, rebuild_ledger, strategy_prefix
from redisserver import redis_server  # noqa: F401 - fixture

WORKER = Path(__file__).with_name("chaosworker.py")
FULL = os.environ.get("HEAN_CHAOS_RUNS", "") == "full"
RUNS = {"sigkill": 100, "delete": 20, "redis_restart": 10, "fencing": 5} if FULL else \
    {"sigkill": 4, "delete": 1, "redis_restart": 1, "fencing": 1}
POINTS = ("before_send", "after_send", "after_fill")
FAULTS = ("timeout_after_accept", "http_status", "partial_fill", "rate_limit", "ws_drop", "none")
LEASE_S = 1.0
FIGURES: dict = {}
pytestmark = pytest.mark.timeout(7200 if FULL else 600)


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return round(xs[k], 3)


def record(scenario: str, **kw) -> None:
    f = FIGURES.setdefault(scenario, {"runs": 0, "faults": Counter(), "violations": 0, "recovery_s": []})
    f["runs"] += kw.get("runs", 0)
    f["violations"] += kw.get("violations", 0)
    for k, v in (kw.get("faults") or {}).items():
        f["faults"][k] += v
    f["recovery_s"] += kw.get("recovery_s", [])
    for k, v in kw.get("extra", {}).items():
        f[k] = f.get(k, 0) + v


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    out = {k: {**v, "faults": dict(v["faults"]), "recovery_p50_s": pct(v["recovery_s"], 50),
               "recovery_p99_s": pct(v["recovery_s"], 99), "recovery_s": None}
           for k, v in FIGURES.items()}
    text = json.dumps({"full": FULL, "runs": RUNS, "scenarios": out}, indent=1, default=str)
    print("\nchaos figures:", text)
    if os.environ.get("HEAN_CHAOS_REPORT"):
        Path(os.environ["HEAN_CHAOS_REPORT"]).write_text(text)


class Attempts:
    """Counts order-create *attempts* per orderLinkId at the test exchange (accepted or
    refused as duplicate), with their times: instrumentation of the test exchange's own
    handler, so a resend that Bybit's uniqueness would refuse is still seen."""

    def __init__(self, x):
        self.x = x
        self.by_link: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        orig = x._order_create

        def counted(p, acc, _orig=orig):
            link = str(p.get("orderLinkId") or "")
            with self.lock:
                self.by_link.setdefault(link, []).append(time.time())
            return _orig(p, acc)
        x._order_create = counted
        self.orig = orig

    def since(self, t: float) -> list[str]:
        with self.lock:
            return [k for k, ts in self.by_link.items() if any(x >= t for x in ts)]

    def close(self):
        self.x._order_create = self.orig


@pytest.fixture
def chaos(bybit_exchange, account, redis_server):  # noqa: F811
    import redis as _r

    _r.Redis.from_url(redis_server.url).flushall()
    att = Attempts(bybit_exchange)
    yield bybit_exchange, account, redis_server, att
    att.close()


def spawn(acc, url: str, name: str, orders: int, crash: str | None = None, holder: str | None = None,
          extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **acc.env, "HEAN_REDIS_URL": url, "HEAN_STATE_LEASE_SECONDS": str(LEASE_S),
           "CHAOS_NAME": name, "CHAOS_ORDERS": str(orders), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    env.pop("HEAN_CHAOS_CRASH", None)
    if crash:
        env["HEAN_CHAOS_CRASH"] = crash
    if holder:
        env["CHAOS_HOLDER"] = holder
    return subprocess.Popen([sys.executable, str(WORKER)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def events(proc: subprocess.Popen, timeout: float = 60) -> list[dict]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"chaos worker hung; stderr tail: {err[-3000:]}")
    evs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    proc._hean_err = err  # for failure messages
    return evs


def recover(x, acc, url, name, att) -> float:
    """Start a fresh worker that restores, reconciles and exits; returns the recovery
    time (process start -> lease held, state loaded, reconciled, trading allowed).
    Fails if it attempted any order create (a restart must never resend)."""
    t0 = time.time()
    p = spawn(acc, url, name, 0)
    evs = events(p)
    ready = [e for e in evs if e["event"] == "ready"]
    assert ready and p.returncode == 0, (evs, p._hean_err[-3000:])
    assert not att.since(t0), f"the recovering worker sent orders: {att.since(t0)}"
    return ready[0]["t"] - t0


def check_invariants(x, acc, url: str, name: str, intents_lost: bool = False) -> list[str]:
    """The invariants of the module docstring; returns the violations (empty = all hold).
    ``intents_lost``: Redis lost its last second of writes (a simulated node crash), so
    an order may be on the exchange without its intent; then it must still be fully
    booked (the fill checks below), which is what reconciliation guarantees."""
    bad = []
    r = redis.Redis.from_url(url, decode_responses=True)
    p = strategy_prefix("chaos", name)
    prefix_links = {link for (k, link), n in x.order_creates.items() if k == acc.key}
    for (k, link), n in x.order_creates.items():
        if k == acc.key and n != 1:
            bad.append(f"orderLinkId {link} accepted {n} times")
    intents = r.hgetall(p + "intents")
    for link in prefix_links:
        if link not in intents and not intents_lost:
            bad.append(f"order {link} is on the exchange without a write-ahead intent")
    stream = [fill_from_json(f["fill"]) for _, f in r.xrange(p + "ledger")]
    fills_hash = r.hgetall(p + "fills")
    if len(stream) != len(fills_hash) or {f.exec_id for f in stream} != set(fills_hash):
        bad.append(f"ledger Stream ({len(stream)}) != fills hash ({len(fills_hash)})")
    exch = {e["execId"] for e in x.accounts[acc.key].executions}
    booked = [f.exec_id for f in stream if not f.exec_id.startswith("reconcile-")]
    if len(booked) != len(set(booked)):
        bad.append("an execution is booked twice")
    if set(booked) != exch:
        bad.append(f"exchange fills != ledger fills: missing {sorted(exch - set(booked))[:3]}, "
                   f"extra {sorted(set(booked) - exch)[:3]}")
    try:
        led = rebuild_ledger(Decimal(10000), stream)
        led.check()
    except LedgerError as e:
        bad.append(f"ledger invariant: {e}")
        return bad
    pos = x.accounts[acc.key].positions.get("BTCUSDT")
    if led.position("BTCUSDT").size != (pos.size if pos else 0):
        bad.append(f"position: ledger {led.position('BTCUSDT').size} != exchange {pos.size if pos else 0}")
    view = r.hget(p + "positions", "BTCUSDT")
    if stream and view and Decimal(json.loads(view)["size"]) != led.position("BTCUSDT").size:
        bad.append("positions view != ledger")
    return bad


def inject_random_fault(x, rng) -> str:
    kind = rng.choice(FAULTS)
    if kind == "timeout_after_accept":
        x.inject(kind, "/v5/order/create", delay=1.5)
    elif kind == "http_status":
        x.inject(kind, "/v5/order/create", status=502)
    elif kind == "partial_fill":
        x.inject(kind)
    elif kind == "rate_limit":
        x.inject(kind, "/v5/order/create", reset_in_ms=200)
    elif kind == "ws_drop":
        x.inject(kind, channel="private")
    return kind


# ---- 1 + 7: SIGKILL at random submission points, with exchange faults ------------------------
def test_sigkill_at_random_submission_points(chaos):
    x, acc, srv, att = chaos
    rng = random.Random(int(os.environ.get("HEAN_CHAOS_SEED", "7")))
    name = "kill"
    rec, faults, kills, viol = [], Counter(), Counter(), 0
    for run in range(RUNS["sigkill"]):
        point = rng.choice(POINTS)
        faults[inject_random_fault(x, rng)] += 1
        p = spawn(acc, srv.url, name, orders=rng.randint(3, 8), crash=f"{point}:{rng.uniform(0.2, 0.6):.2f}")
        evs = events(p)
        if p.returncode == -signal.SIGKILL:
            kills[point] += 1
        else:
            assert p.returncode == 0, (evs, p._hean_err[-3000:])
        x.faults.clear()
        rec.append(recover(x, acc, srv.url, name, att))
        bad = check_invariants(x, acc, srv.url, name)
        viol += len(bad)
        assert not bad, f"run {run} ({point}): {bad}"
    assert sum(kills.values()) >= max(1, RUNS["sigkill"] // 3), f"too few crashes happened: {kills}"
    record("1_sigkill", runs=RUNS["sigkill"], violations=viol, recovery_s=rec,
           faults={**{f"sigkill_{k}": v for k, v in kills.items()}, **{f"exchange_{k}": v for k, v in faults.items()}})


# ---- 2: the worker pod is deleted (SIGTERM, then SIGKILL after the grace period) -------------
def test_pod_deletion_while_orders_are_in_flight(chaos):
    x, acc, srv, att = chaos
    rng = random.Random(11)
    name = "delete"
    rec, viol, graceful = [], 0, 0
    for run in range(RUNS["delete"]):
        x.inject("timeout_after_accept", "/v5/order/create", count=2, delay=1.0)  # orders stay in flight
        p = spawn(acc, srv.url, name, orders=50)
        # wait for ready, then delete the "pod" at a random moment of its order flow
        line = p.stdout.readline()
        assert line.startswith("{"), p.stderr.read()[-3000:]
        time.sleep(rng.uniform(0.05, 0.8))
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(3)  # the pod's terminationGracePeriodSeconds, scaled down
            graceful += 1
        except subprocess.TimeoutExpired:
            p.kill()
        events(p)
        x.faults.clear()
        rec.append(recover(x, acc, srv.url, name, att))
        bad = check_invariants(x, acc, srv.url, name)
        viol += len(bad)
        assert not bad, f"run {run}: {bad}"
    record("2_pod_delete", runs=RUNS["delete"], violations=viol, recovery_s=rec,
           faults={"sigterm": RUNS["delete"], "exchange_timeout_after_accept": RUNS["delete"]},
           extra={"graceful_exits": graceful})


def forget_last_second(r, prefix: str, t_kill: float) -> tuple[int, int]:
    """Simulate what a *node* crash can cost with ``appendfsync everysec``: the writes of
    the last second before ``t_kill`` (a SIGKILL of redis-server alone loses nothing the
    kernel already has, so this is done by hand): ledger Stream entries and their fills,
    intents and order states, the lease, and one step of the token counter. Returns
    (fills forgotten, intents forgotten)."""
    lo, hi = int((t_kill - 1.0) * 1000), int(t_kill * 1000)
    fills = 0
    for sid, f in r.xrange(prefix + "ledger", min=f"{lo}-0", max=f"{hi}-0"):
        r.xdel(prefix + "ledger", sid)
        r.hdel(prefix + "fills", f["execId"])
        fills += 1
    intents = [k for k, v in r.hgetall(prefix + "intents").items()
               if t_kill - 1.0 <= json.loads(v)["recordedAt"] < t_kill]
    for k in intents:
        r.hdel(prefix + "intents", k)
        r.hdel(prefix + "orders", k)
    r.delete(prefix + "lease")
    r.set(prefix + "token", max(int(r.get(prefix + "token") or 0) - 1, 0))
    return fills, len(intents)


# ---- 5: Redis restarts under load (clean shutdown, and a crash: AOF everysec) ------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["shutdown", "crash"])
def test_redis_restart_under_load(chaos, sig):
    x, acc, srv, att = chaos
    name = f"redis-{sig.name.lower()}"
    rng = random.Random(5)
    rec, viol, lost_total, ack_total, forgot_f, forgot_i = [], 0, 0, 0, 0, 0
    r = redis.Redis.from_url(srv.url, decode_responses=True)
    key = strategy_prefix("chaos", name) + "fills"
    for run in range(RUNS["redis_restart"]):
        p = spawn(acc, srv.url, name, orders=40)
        assert p.stdout.readline().startswith("{")
        time.sleep(rng.uniform(0.3, 1.0))
        acked = set(r.hkeys(key))  # state Redis acknowledged before the restart
        time.sleep(1.2 if sig == signal.SIGTERM else 0.0)  # SIGTERM: >1 s later, all of it is fsynced
        t_kill = time.time()
        srv.stop(sig)
        time.sleep(rng.uniform(0.5, 2.0))
        srv.start()
        after = set(r.hkeys(key))
        lost = acked - after
        if sig == signal.SIGKILL:
            nf, ni = forget_last_second(r, strategy_prefix("chaos", name), t_kill)
            forgot_f += nf
            forgot_i += ni
        ack_total += len(acked)
        lost_total += len(lost)
        if sig == signal.SIGTERM:
            assert not lost, f"a clean Redis restart lost acknowledged fills: {sorted(lost)[:3]}"
        evs = events(p, 90)
        assert p.returncode == 0, (evs, p._hean_err[-3000:])
        done = [e for e in evs if e["event"] == "done"][0]
        assert done["state"]["unavailable"] >= 1  # it noticed the outage (and stopped sending meanwhile)
        rec.append(recover(x, acc, srv.url, name, att))
        bad = check_invariants(x, acc, srv.url, name, intents_lost=sig == signal.SIGKILL)
        viol += len(bad)
        assert not bad, f"run {run}: {bad}"
    record(f"5_redis_restart_{sig.name}", runs=RUNS["redis_restart"], violations=viol, recovery_s=rec,
           faults={f"redis_{sig.name}": RUNS["redis_restart"]},
           extra={"fills_in_redis_before_restart_summed": ack_total, "fills_lost_by_the_restart": lost_total,
                  "simulated_node_crash_fills_forgotten": forgot_f,
                  "simulated_node_crash_intents_forgotten": forgot_i})


# ---- 6: a second worker for the same strategy is fenced out ------------------------------------
def test_a_second_worker_is_fenced_out(chaos):
    x, acc, srv, att = chaos
    name = "fence"
    viol, refused = 0, 0
    for run in range(RUNS["fencing"]):
        a = spawn(acc, srv.url, name, orders=400, holder=f"pod-a-{run}")
        assert a.stdout.readline().startswith("{")
        # while A is alive and renewing, B (started by hand) never gets the lease
        b = spawn(acc, srv.url, name, orders=5, holder=f"pod-b-{run}")
        time.sleep(3 * LEASE_S)
        assert b.poll() is None
        r = redis.Redis.from_url(srv.url, decode_responses=True)
        assert r.hget(strategy_prefix("chaos", name) + "lease", "holder").split("/")[0] == f"pod-a-{run}"
        # A's node is partitioned / the process is frozen: its lease expires, B takes over
        a.send_signal(signal.SIGSTOP)
        line = b.stdout.readline()
        assert line.startswith("{") and json.loads(line)["event"] == "ready", b.stderr.read()[-3000:]
        t_b = json.loads(line)["t"]
        a.send_signal(signal.SIGCONT)  # the zombie wakes up and tries to go on trading
        evs_a = events(a)
        assert any(e["event"] == "fenced" for e in evs_a), (evs_a, a._hean_err[-3000:])
        refused += sum(e.get("refused", 0) for e in evs_a)
        assert a.returncode == 3
        evs_b = events(b)
        assert b.returncode == 0, (evs_b, b._hean_err[-3000:])
        # no order of the zombie was written after B took over
        intents = {k: json.loads(v) for k, v in r.hgetall(strategy_prefix("chaos", name) + "intents").items()}
        late = [k for k, v in intents.items() if v["holder"].split("/")[0] == f"pod-a-{run}" and v["recordedAt"] > t_b]
        assert not late, late
        bad = check_invariants(x, acc, srv.url, name)
        viol += len(bad) + len(late)
        assert not bad, f"run {run}: {bad}"
    record("6_second_worker", runs=RUNS["fencing"], violations=viol, faults={"sigstop_zombie": RUNS["fencing"]},
           extra={"zombie_orders_refused": refused})
