"""The worker process: ``python -m hean.worker``.

Reads its TradingStrategy, the namespace's RiskPolicies and SymbolQuarantines from the
API server and keeps watching them, so a spec change, a new quarantine or a tighter
limit takes effect on the next candle without a restart. Replays the recorded Bybit
candles of its symbols through :class:`hean.worker.engine.Engine`, serves
``/metrics``, ``/healthz``, ``/readyz``, ``/why`` and ``/ledger`` on
``HEAN_HTTP_PORT``, merge-patches its runtime figures into the strategy's ``status``
at most once per ``HEAN_STATUS_INTERVAL`` seconds, and posts an Event on every
risk-state change.

Configuration comes from the environment (see :class:`WorkerSettings`). With
``spec.marketData.source: live`` the candles come from Bybit's public WebSocket
instead of files, and with ``spec.mode`` ``testnet``/``demo``/``live`` orders go to
Bybit through :mod:`hean.worker.bybit` (API keys only from the environment variables
the operator fills from the strategy's Secret; never logged). See docs/bybit.md.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections import deque
import logging
import random
import signal
import time
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from hean import api
from hean.kube import Informer, load_config, now_rfc3339, patch_status, post_event
from hean.marketdata import KlineStream, load_instruments

from .config import (
    RiskPolicySpec,
    StrategySpec,
    describe_validation_error,
    parse_time,
    quarantine_applies,
    quarantine_expiry,
)
from .engine import R_NO_DATA, Engine

try:  # the asyncio port's exception carries the HTTP status of an API answer
    from kubernetes_asyncio.client.exceptions import ApiException
except ImportError:  # pragma: no cover - kubernetes_asyncio is a dependency
    ApiException = ()  # type: ignore[assignment,misc]

log = logging.getLogger("hean.worker")

HEARTBEAT_SECONDS = 10.0  # an unchanged status is still re-written this often (liveness)
QUARANTINE_RECHECK_SECONDS = 30.0  # the quarantine expiry timer re-checks at least this often
STRUCTURAL_FIELDS = ("strategy", "symbols", "category", "mode", "capital", "maxLeverage", "marketData", "bybit")


class WorkerSettings(BaseSettings):
    """Worker settings from environment variables prefixed ``HEAN_``.

    ``strategy_name`` and ``namespace`` name the TradingStrategy; ``marketdata_dir``
    is where ``../shared/marketdata`` is mounted; ``http_port``/``bind_address`` for
    the HTTP endpoints (the operator binds the pod IP); ``status_interval`` seconds
    between status patches (bounded write rate); ``api_unreachable_seconds``
    (``HEAN_API_UNREACHABLE_SECONDS``, > 0, default 30): after this many seconds
    without a successful call to the Kubernetes API (status patch, list or watch
    event) the worker goes defensive: no new entries, exits still act, until the API
    answers again (docs/design.md, "Kubernetes API unreachable").
    """

    model_config = SettingsConfigDict(env_prefix="HEAN_")

    strategy_name: str
    namespace: str = "default"
    pod_name: str = "hean-worker"
    marketdata_dir: Path = Path("/var/lib/hean/marketdata")
    http_port: int = 8080
    bind_address: str = "0.0.0.0"
    status_interval: float = 1.0
    api_unreachable_seconds: float = Field(30.0, gt=0)
    log_level: str = "INFO"
    # Bybit (docs/bybit.md). Keys are NOT settings: they are read from BYBIT_API_KEY /
    # BYBIT_API_SECRET by hean.worker.bybit.runtime and never stored here.
    bybit_state_dir: Path = Path("/var/lib/hean/state")
    bybit_reconcile_seconds: float = 30.0
    bybit_stale_seconds: float = 10.0
    bybit_orderbook_depth: int = 50
    bybit_record_dir: Path | None = None
    bybit_timeout: float = 5.0
    bybit_order_rate: int = 10
    bybit_dcp_seconds: int = 0  # exchange-side dead-man switch window, 3..300; 0 = off
    bybit_recv_window_ms: int = 5000  # spec.bybit (if set) wins over these HEAN_BYBIT_* defaults
    # Progressive promotion (docs/promotion.md), set by the operator on the pod: the
    # stage's mode, the capital fraction, the params of the revision this pod runs,
    # halted (flatten, no entries), role "worker" or "candidate" (a shadow: no status
    # writes, no Events) and the revision (hash of the params).
    effective_mode: str | None = None
    capital_fraction: float = 1.0
    params_json: str | None = None
    promotion_halted: bool = False
    role: str = "worker"
    revision: str | None = None


def _tagged(symbol: str, bars, start_ms: int | None):
    """``(ts_ms, symbol, bar)`` for each bar at or after ``start_ms`` (merge keys)."""
    for b in bars:
        if start_ms is None or b.ts_ms >= start_ms:
            yield b.ts_ms, symbol, b


def structural(spec: dict) -> dict:
    """The spec fields whose change needs a new worker (the operator replaces the pod)."""
    return {k: spec.get(k) for k in STRUCTURAL_FIELDS}


class Worker:
    """One strategy's worker: state shared by the replay loop, the watchers, the status
    writer and the HTTP handlers (all on one asyncio loop, so no locks are needed)."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self.api_client = None
        self.engine: Engine | None = None
        self.strategy_obj: dict | None = None
        self.spec_error: str | None = None
        self.policy_error: str | None = None
        self.data_error: str | None = None
        self.started_structure: dict | None = None
        self.ready = False
        self.cursor_ms: int | None = None
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.replay_done = False
        self.events_total = 0
        self.status_patches = 0
        self.status_errors = 0
        self.last_heartbeat: str | None = None
        self.last_status_write = 0.0  # unix seconds of the last successful status patch
        self.quarantined_symbols: set[str] = set()
        self.quarantine_changed_at: float | None = None  # unix seconds, for latency measurements
        self.risk_state_changed_at: float | None = None  # unix seconds of the last risk-state transition
        # Wall-clock time HARD_STOP was entered: the clear annotation (a human's wall-clock
        # time) must be later than this. The engine's own stop time is on the data clock,
        # which in a replay is in the past, so a stale annotation would clear every stop.
        self.hard_stop_wall_at: datetime | None = None
        # Status freshness: unix time of the oldest change (candle, risk transition) not yet
        # in a status write, and the age of the figures at each write (seconds).
        self.dirty_since: float | None = None
        self.status_ages: deque = deque(maxlen=200)
        self.spec_applied_generation: int | None = None  # metadata.generation the engine runs on
        self.spec_applied_at: float | None = None  # unix seconds it was applied
        self.started = time.time()
        self.strategies = None
        self.policies = None
        self.quarantines = None
        self._policy_name: str | None = None
        self._engine_ready = asyncio.Event()
        self._status_wake = asyncio.Event()  # a risk-state change waits to be written: write now
        self._quarantine_wake = asyncio.Event()  # a quarantine changed: re-arm the expiry timer
        self.exchange = None   # hean.worker.bybit.runtime.ExchangeRuntime (testnet/demo/live)
        self.live_data = None  # hean.worker.bybit.runtime.LiveData (marketData.source live)
        self.instruments_doc: dict | None = None
        self.funding: dict[str, list] = {}
        self.state = None  # hean.worker.state.WorkerState (Redis or in-memory), set in run()
        self.paper_state = None  # hean.worker.state.PaperDurability (paper mode on Redis)
        self.deleting = False  # the strategy is being deleted (its finalizer waits for us)
        self._clear_ignored: str | None = None
        self.auto_quarantines_created = 0
        self.auto_quarantine_errors = 0
        # Kubernetes API reachability (defensive mode, see api_watchdog).
        self.api_last_ok = time.monotonic()  # monotonic seconds of the last API answer
        self.api_reachable = True
        self.api_unreachable_since: float | None = None  # unix seconds the worker went defensive
        self.api_outages = 0  # times the worker went defensive
        self._api_resync: asyncio.Task | None = None

    # ---- Kubernetes API reachability ----------------------------------------------
    def api_contact(self) -> None:
        """Record an answer from the API server (a status patch, list or watch event)."""
        self.api_last_ok = time.monotonic()

    def api_contact_age(self) -> float:
        """Seconds since the API server last answered."""
        return max(0.0, time.monotonic() - self.api_last_ok)

    def check_api(self) -> bool:
        """Go defensive (``engine.api_unreachable``: no new entries, exits still act)
        when the API server has not answered for ``api_unreachable_seconds``. When it
        answers again, first re-list the strategy, RiskPolicies and
        SymbolQuarantines (a pause, limit or quarantine set during the outage
        applies before any new entry), then resume. Returns whether the API counts
        as reachable."""
        fresh = self.api_contact_age() <= self.settings.api_unreachable_seconds
        if not fresh and self.api_reachable:
            self.api_reachable = False
            self.api_outages += 1
            self.api_unreachable_since = time.time()
            log.warning("Kubernetes API unreachable for %.1fs (> HEAN_API_UNREACHABLE_SECONDS=%s): "
                        "no new entries until it is back; exits still act",
                        self.api_contact_age(), self.settings.api_unreachable_seconds)
        elif fresh and not self.api_reachable:
            if self.strategies is None:  # no informers (not running): nothing to re-list
                self._api_back()
            elif self._api_resync is None:
                self._api_resync = asyncio.get_running_loop().create_task(self._resync_after_outage())
        if self.engine is not None:
            self.engine.api_unreachable = not self.api_reachable
        return self.api_reachable

    async def _resync_after_outage(self) -> None:
        try:
            timeout = min(5.0, max(1.0, self.settings.api_unreachable_seconds / 3))
            for informer in (self.strategies, self.policies, self.quarantines):
                await asyncio.wait_for(informer.relist(), timeout)
            self.api_contact()
            self._api_back()
        except Exception as e:  # noqa: BLE001 - stay defensive; retried on the next check
            log.warning("re-list after the API outage failed: %r", e)
        finally:
            self._api_resync = None

    def _api_back(self) -> None:
        lasted = time.time() - (self.api_unreachable_since or time.time())
        self.api_reachable = True
        self.api_unreachable_since = None
        if self.engine is not None:
            self.engine.api_unreachable = False
        log.warning("Kubernetes API reachable again after %.1fs defensive; state re-listed, entries resume", lasted)
        self._post(self.strategy_obj, "KubernetesApiReachable",
                   f"the Kubernetes API was unreachable; entries were stopped for {lasted:.1f}s and resume now")

    async def api_watchdog(self) -> None:
        """Evaluate API reachability (see :meth:`check_api`) when it can change: while
        reachable, sleep until the last contact would be ``api_unreachable_seconds`` old
        (every contact moves that deadline, so an idle worker wakes about once per
        heartbeat instead of 4 times a second); while unreachable, every 0.25 s, so
        the first answer after an outage is acted on within 0.25 s."""
        while True:
            self.check_api()
            if self.api_reachable and self._api_resync is None:
                left = self.settings.api_unreachable_seconds - self.api_contact_age()
                await asyncio.sleep(min(max(left, 0.0) + 0.001, 60.0))
            else:
                await asyncio.sleep(0.25)

    # ---- watch callbacks --------------------------------------------------------
    def _apply_strategy(self, obj: dict) -> None:
        self.strategy_obj = obj
        spec = obj.get("spec") or {}
        try:
            parsed = StrategySpec.model_validate(self._effective(spec))
        except ValidationError as e:
            self.spec_error = describe_validation_error("spec", e)
            log.error("invalid TradingStrategy spec: %s", self.spec_error)
            return
        self.spec_error = None
        self._policy_name = parsed.riskPolicyRef.name
        if self.engine is None:
            return
        if (obj.get("metadata") or {}).get("deletionTimestamp") and not self.deleting:
            # The operator's finalizer waits: no new entries; on an exchange, flatten
            # (reduce-only market orders) so that the strategy leaves no position behind.
            self.deleting = True
            log.warning("TradingStrategy is being deleted: no new entries%s",
                        "; flattening" if self.engine.spec.mode != "paper" else "")
            self.engine.update_policy(None)
            if self.engine.spec.mode != "paper":
                self.engine._flatten_all("STRATEGY_DELETED")
        if self.started_structure is not None and structural(spec) != self.started_structure:
            log.info("structural spec change: the operator replaces this worker; keeping the old structure meanwhile")
        self.engine.update_spec(parsed.model_copy(update={
            k: getattr(self.engine.spec, k) for k in ("symbols", "category", "capital", "maxLeverage", "marketData", "mode")
        }))
        self.engine.labels = dict((obj.get("metadata") or {}).get("labels") or {})
        generation = (obj.get("metadata") or {}).get("generation")
        if generation != self.spec_applied_generation:
            self.spec_applied_generation = generation
            self.spec_applied_at = time.time()
        clear = ((obj.get("metadata") or {}).get("annotations") or {}).get(api.ANNOTATION_CLEAR_HARD_STOP)
        if clear:
            try:
                at = parse_time(clear)
            except ValueError:
                log.warning("annotation %s is not an RFC 3339 time: %r", api.ANNOTATION_CLEAR_HARD_STOP, clear)
                at = None
            wall_at = self.hard_stop_wall_at  # compared on the wall clock (a replay's data clock is in the past)
            if (at is not None and wall_at is not None and at > wall_at
                    and self.engine.clear_hard_stop(at)):
                self.hard_stop_wall_at = None
                self._post(obj, "HardStopCleared", f"HARD_STOP (latched at {wall_at:%Y-%m-%dT%H:%M:%SZ}) cleared "
                           f"by annotation {api.ANNOTATION_CLEAR_HARD_STOP}={clear}")
            elif at is not None and wall_at is not None and clear != self._clear_ignored:
                self._clear_ignored = clear
                self._post(obj, "HardStopClearIgnored", f"annotation {api.ANNOTATION_CLEAR_HARD_STOP}={clear} is not "
                           f"after the HARD_STOP at {wall_at:%Y-%m-%dT%H:%M:%SZ}; set a later time", "Warning")
        self._apply_policy()
        self._apply_quarantines()

    def _apply_policy(self) -> None:
        if self.engine is None or self.policies is None:
            return
        if self.deleting:
            self.engine.update_policy(None)
            return
        obj = self.policies.cache.get(self._policy_name or "")
        if obj is None:
            self.policy_error = f"RiskPolicy {self._policy_name!r} not found in namespace {self.settings.namespace!r}"
            self.engine.update_policy(None)
            return
        try:
            pol = RiskPolicySpec.model_validate(obj.get("spec") or {})
        except ValidationError as e:
            self.policy_error = describe_validation_error(f"RiskPolicy {self._policy_name}: spec", e)
            self.engine.update_policy(None)
            return
        self.policy_error = None
        self.engine.update_policy(pol)
        self._drain_risk_events()

    def _apply_quarantines(self) -> None:
        if self.engine is None or self.quarantines is None:
            return
        now = datetime.now(timezone.utc)
        blocked = {
            sym for sym in self.engine.symbols
            for q in self.quarantines.cache.values()
            if quarantine_applies(q, sym, self.engine.labels, now)
        }
        if blocked != self.quarantined_symbols:
            self.quarantined_symbols = blocked
            self.quarantine_changed_at = time.time()
        self.engine.set_quarantined(blocked)
        self._drain_risk_events()

    async def _on_strategy(self, etype: str, obj: dict) -> None:
        self.api_contact()
        if etype == "DELETED":
            log.info("TradingStrategy deleted; stopping entries")
            if self.engine is not None:
                self.engine.update_policy(None)
            return
        self._apply_strategy(obj)

    async def _on_policy(self, etype: str, obj: dict) -> None:
        self.api_contact()
        self._apply_policy()

    async def _on_quarantine(self, etype: str, obj: dict) -> None:
        self.api_contact()
        self._apply_quarantines()
        self._quarantine_wake.set()

    def _effective(self, spec: dict) -> dict:
        """``spec`` with the promotion overrides of the pod env applied (mode, capital
        x fraction, params); unchanged without them (docs/promotion.md)."""
        s = self.settings
        if not (s.effective_mode or s.params_json or s.capital_fraction != 1.0):
            return spec
        out = dict(spec)
        if s.effective_mode:
            out["mode"] = s.effective_mode
        if s.params_json:
            out["params"] = json.loads(s.params_json)
        if s.capital_fraction != 1.0 and spec.get("capital") is not None:
            out["capital"] = str(Decimal(str(spec["capital"])) * Decimal(str(s.capital_fraction)))
        return out

    # ---- events -----------------------------------------------------------------
    def _post(self, obj: dict | None, reason: str, message: str, type_: str = "Normal", delay: float = 0.0) -> None:
        """Post an Event about ``obj`` in the background (``delay`` seconds from now)."""
        if obj is None or self.api_client is None or self.settings.role == "candidate":
            return
        loop = asyncio.get_running_loop()

        def send() -> None:
            loop.create_task(post_event(self.api_client, obj, reason, message, type_, "hean-worker"))

        if delay > 0:
            loop.call_later(delay, send)
        else:
            send()

    def _drain_risk_events(self) -> None:
        if self.engine is None:
            return
        self._create_auto_quarantines()
        while self.engine.risk_events:
            old, new, reasons = self.engine.risk_events.pop(0)
            self.risk_state_changed_at = time.time()
            # A HARD_STOP reaches status (and its Event is posted) at once. Other
            # transitions, e.g. the QUARANTINE that one SymbolQuarantine puts every
            # worker of a namespace into at the same moment, are written at the
            # worker's next status tick and their Event is posted within one status
            # interval, spread at random: 50 workers writing at once took the CPU
            # that the other workers needed to apply the quarantine itself (fleet
            # latency p50 0.55 s instead of 0.06 s with 3 workers; BENCHMARKS.md).
            urgent = new == api.RISK_HARD_STOP
            if urgent:
                self._status_wake.set()
            if new == api.RISK_HARD_STOP:
                self.hard_stop_wall_at = datetime.fromtimestamp(self.risk_state_changed_at, timezone.utc)
            if self.dirty_since is None:
                self.dirty_since = self.risk_state_changed_at
            dd = self.engine.drawdown_percent().quantize(Decimal("0.01"))
            msg = f"risk state {old} -> {new} ({', '.join(reasons) or 'limits clear'}); drawdown {dd}%"
            log.warning(msg)
            self._post(self.strategy_obj, "RiskStateChanged", msg, "Normal" if new == api.RISK_NORMAL else "Warning",
                       0.0 if urgent else random.uniform(0.0, self.settings.status_interval))

    def _create_auto_quarantines(self) -> None:
        """Turn the engine's auto-quarantine requests (RiskPolicy spec.autoQuarantine)
        into SymbolQuarantine objects (create, or re-arm ``expiresAt`` if it exists)."""
        reqs = self.engine.safety.autoq.requests if self.engine is not None else []
        while reqs:
            req = reqs.pop(0)
            if self.api_client is None or self.strategy_obj is None:
                continue
            asyncio.get_running_loop().create_task(self._create_quarantine(req))

    async def _create_quarantine(self, req: dict) -> None:
        from kubernetes_asyncio import client as kclient
        from kubernetes_asyncio.client.exceptions import ApiException

        from .risk import auto_quarantine_manifest

        body = auto_quarantine_manifest(self.strategy_obj, req, datetime.now(timezone.utc))
        custom = kclient.CustomObjectsApi(self.api_client)
        ns, name = self.settings.namespace, body["metadata"]["name"]
        try:
            try:
                await custom.create_namespaced_custom_object(api.GROUP, api.VERSION, ns, api.QUARANTINE_PLURAL, body)
            except ApiException as e:
                if e.status != 409:
                    raise
                await custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, ns, api.QUARANTINE_PLURAL, name,
                                                            {"spec": body["spec"]},
                                                            _content_type="application/merge-patch+json")
            self.auto_quarantines_created += 1
            self._post(self.strategy_obj, "SymbolAutoQuarantined",
                       f"SymbolQuarantine {name} for {req['symbol']} until {body['spec']['expiresAt']}: {req['reason']}",
                       "Warning")
        except Exception as e:  # noqa: BLE001 - the engine blocks the symbol itself anyway
            self.auto_quarantine_errors += 1
            log.warning("could not create SymbolQuarantine %s: %r", name, e)

    # ---- the replay -------------------------------------------------------------
    def _load(self, spec: StrategySpec):
        instruments_all = load_instruments(self.settings.marketdata_dir, [(spec.category, s) for s in spec.symbols])
        instruments = {s: instruments_all[(spec.category, s)] for s in spec.symbols if (spec.category, s) in instruments_all}
        missing = [s for s in spec.symbols if s not in instruments]
        if missing:
            raise FileNotFoundError(f"no instrument info for {spec.category} symbols {missing}")
        # Lazy: only the first/last rows are read now; candles are parsed as the replay
        # consumes them (a worker is Ready without parsing a month of candles).
        series = {s: KlineStream(self.settings.marketdata_dir, s, spec.marketData.replay.interval) for s in spec.symbols}
        return instruments, series

    async def _build_engine(self) -> tuple[Engine, dict]:
        while True:
            obj = self.strategies.cache.get(self.settings.strategy_name) if self.strategies else None
            if obj is not None and self.spec_error is None:
                spec = StrategySpec.model_validate(self._effective(obj.get("spec") or {}))
                if spec.mode != "paper" and spec.marketData.source != "live":
                    self.data_error = (f"spec.mode {spec.mode!r} trades on the exchange and needs "
                                       "spec.marketData.source 'live' (replayed candles would trade on old prices)")
                elif spec.marketData.source == "live":
                    try:
                        engine = await self._build_live_engine(obj, spec)
                        self.data_error = None
                        return engine, None
                    except Exception as e:  # noqa: BLE001 - reported, retried
                        self.data_error = f"live market data: {type(e).__name__}: {e}"
                else:
                    try:
                        instruments, series = await asyncio.to_thread(self._load, spec)
                        self.data_error = None
                        engine = Engine(self.settings.strategy_name, spec, None, instruments,
                                        (obj.get("metadata") or {}).get("labels"))
                        self.started_structure = structural(obj.get("spec") or {})
                        return engine, series
                    except (FileNotFoundError, ValueError, KeyError) as e:
                        self.data_error = str(e)
                log.error("cannot start trading: %s", self.data_error)
            await asyncio.sleep(2)

    async def _build_live_engine(self, obj: dict, spec: StrategySpec) -> Engine:
        from .bybit import endpoints_for
        from .bybit.runtime import fetch_instruments_doc

        ep = endpoints_for(spec.mode)
        instruments, self.instruments_doc = await asyncio.to_thread(
            fetch_instruments_doc, ep.rest, spec.category, spec.symbols)
        engine = Engine(self.settings.strategy_name, spec, None, instruments, (obj.get("metadata") or {}).get("labels"))
        self.started_structure = structural(obj.get("spec") or {})
        return engine

    async def run_live(self, engine: Engine) -> None:
        """Live public data (and, for testnet/demo/live, exchange execution)."""
        from .bybit import endpoints_for
        from .bybit.runtime import Blocks, ExchangeRuntime, LiveData, connection_settings

        s = self.settings
        cs = connection_settings(engine.spec, s)  # spec.bybit, else HEAN_BYBIT_* env
        ep = endpoints_for(engine.spec.mode)
        blocks = Blocks()
        blocks.engine = engine
        tasks = []
        try:
            if engine.spec.mode != "paper":
                try:
                    self.exchange = ExchangeRuntime(engine, s.namespace, s.strategy_name, ep, s.bybit_state_dir, blocks,
                                                    cs.reconcile_seconds, s.bybit_timeout, s.bybit_order_rate,
                                                    dcp_seconds=cs.dcp_seconds, recv_window_ms=cs.recv_window_ms,
                                                    state=self.state)
                except (ValueError, OSError) as e:
                    self.data_error = f"exchange execution cannot start: {e}"
                    engine.blocked_reason = "EXCHANGE_NOT_CONFIGURED"
                    self.ready = False  # /readyz answers 503 with the reason; nothing trades
                    log.error("%s", self.data_error)
                    return
                self.exchange.execution.on_repair = lambda msg: self._post(self.strategy_obj, "ReconcileRepaired",
                                                                           msg, "Warning")
                obs = getattr(self, "obs", None)  # set by hean.worker.http.build_app
                if obs is not None:
                    self.exchange.execution.obs = obs
                    self.exchange.client.on_rate_limited = obs.count_rate_limited
                    self.exchange.private.on_reconnect = obs.count_reconnect
                tasks.append(asyncio.create_task(self.exchange.run()))
            self.live_data = LiveData(engine, ep, engine.spec.marketData.replay.interval, cs.orderbook_depth,
                                      cs.stale_seconds, blocks, s.bybit_record_dir, self.instruments_doc)
            tasks.append(asyncio.create_task(self._load_funding(ep, engine)))

            if engine.spec.mode == "paper":
                # Paper on live data with Redis: the account (ledger, positions, stops,
                # risk state) survives a restart; there is no cursor to resume, the
                # market simply goes on.
                await self._restore_paper(engine)

            def on_bar(symbol, bar):
                self.cursor_ms = bar.ts_ms
                self.events_total += 1
                if self.paper_state is not None:
                    why = self.state.blocked()  # Redis down or fenced: no new entries
                    if why is not None:
                        engine.blocked_reason = why
                    elif engine.blocked_reason in ("STATE_STORE_DOWN", "LEASE_HELD", "LEASE_EXPIRED"):
                        engine.blocked_reason = None
                    self.paper_state.after_bar(engine, bar.ts_ms)
                if engine.risk_events or engine.safety.autoq.requests:
                    self._drain_risk_events()
            self.live_data.on_bar = on_bar
            if getattr(self, "obs", None) is not None:
                self.live_data.feed.socket.on_reconnect = self.obs.count_reconnect
            await self.live_data.run()
        finally:
            for t in tasks:
                t.cancel()

    async def _load_funding(self, ep, engine: Engine) -> None:
        """Funding-rate history of the symbols over REST (shown in ``/bybit``; best effort)."""
        from .bybit import BybitClient, BybitError

        client = BybitClient(None, None, ep.rest)
        for sym in engine.symbols:
            try:
                rows = await asyncio.to_thread(client.funding_history, engine.spec.category, sym, 20)
                self.funding[sym] = [{"rate": r.get("fundingRate"), "ts": r.get("fundingRateTimestamp")} for r in rows]
            except BybitError as e:
                log.warning("funding history of %s unavailable: %s", sym, e.label)

    async def replay(self) -> None:
        """Build the engine, then feed it the merged candles of all symbols in time
        order, paced by ``spec.marketData.replay.speed`` (or run the live feed)."""
        engine, series = await self._build_engine()
        engine.halted = self.settings.promotion_halted
        self.engine = engine
        if series is None:
            self._apply_strategy(self.strategy_obj)
            self.ready = True
            self._engine_ready.set()
            await self.run_live(engine)
            return
        self._apply_strategy(self.strategy_obj)
        resume_ms = await self._restore_paper(engine)
        self.ready = True
        self._engine_ready.set()
        spec = engine.spec.marketData.replay
        start_ms = int(spec.start.timestamp() * 1000) if spec.start else None
        passes = 0
        while True:
            # Malformed rows are counted once (first pass), as they are reached.
            dropped = engine.dropped if passes == 0 else Counter()
            passes += 1
            # the same (ts_ms, symbol) feed order as `hean backtest` (hean.backtest.merge_bars)
            streams = [_tagged(sym, s.bars(dropped), start_ms) for sym, s in series.items()]
            merged = heapq.merge(*streams, key=lambda t: (t[0], t[1]))
            if resume_ms is not None:  # restored from Redis: continue after the saved cursor
                merged = (t for t in merged if t[0] > resume_ms)
            first = next(merged, None)
            if first is None and resume_ms is not None:
                self.replay_done = True  # restored after the last candle: nothing left to play
                engine.finish()
                return
            resume_ms = None
            if first is None:
                self.data_error = "no candles at or after spec.marketData.replay.start"
                self.replay_done = True
                engine.finish()
                return
            self.first_ms = first[0]
            self.last_ms = max([first[0]] + [s.last_ms for s in series.values() if s.last_ms is not None])
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i, (ts, sym, bar) in enumerate(itertools.chain([first], merged)):
                target = t0 + (ts - self.first_ms) / 1000.0 / engine.spec.marketData.replay.speed
                delay = target - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif i % 64 == 0:
                    await asyncio.sleep(0)
                if self.paper_state is not None and not await self._paper_may_trade(engine):
                    return
                engine.on_bar(sym, bar)
                if self.dirty_since is None:
                    self.dirty_since = time.time()
                self.cursor_ms = ts
                self.events_total += 1
                if self.paper_state is not None:
                    self.paper_state.after_bar(engine, ts)
                if engine.risk_events or engine.safety.autoq.requests:
                    self._drain_risk_events()
            if not spec.loop:
                break
            for st in engine.symbols.values():
                st.reset_indicators(st.params)
        self.replay_done = True
        engine.finish()
        log.info("replay finished: %d candles, equity %s", self.events_total, engine.equity())

    # ---- durable paper state (issue 7, hean.worker.state) ---------------------------
    async def _restore_paper(self, engine: Engine) -> int | None:
        """Paper mode with Redis: take the lease, restore ledger and engine state, start
        the lease and writer tasks; returns the committed data cursor (epoch ms) or None."""
        from .state import PaperDurability

        if self.state is None or self.state.store is None:
            return None
        self.paper_state = PaperDurability(self.state)
        engine.blocked_reason = "LEASE_HELD"
        info = await self.paper_state.start(engine)
        engine.blocked_reason = None

        def recovered():  # Redis may have lost its last second: commit the account again
            from .state import engine_snapshot, position_view

            self.state.writer.submit(fills=list(engine.ledger.fills), positions=position_view(engine.ledger),
                                     blob=("engine", engine_snapshot(engine, self.cursor_ms)))
        self.state.on_recovered = recovered
        loop = asyncio.get_running_loop()
        self._state_tasks = [loop.create_task(self.state.lease_loop()), loop.create_task(self.state.writer.run())]
        return info["cursorMs"]

    async def _paper_may_trade(self, engine: Engine) -> bool:
        """Before each candle: pause while Redis is unreachable (the paper account cannot
        be made durable), stop for good when fenced. False = stop the replay."""
        while True:
            why = self.state.blocked()
            if why is None:
                if engine.blocked_reason in ("STATE_STORE_DOWN", "LEASE_HELD"):
                    engine.blocked_reason = None
                return True
            engine.blocked_reason = why
            if why == "FENCED":
                log.error("fenced: another worker owns this strategy's state; the replay stops here")
                return False
            await asyncio.sleep(0.25)

    async def _stop_state(self) -> None:
        """Graceful stop: commit pending writes (a few seconds at most), release the lease."""
        st = self.state
        if st is None or st.store is None:
            return
        try:
            if st.writer.pending() and not st.store.fenced:
                await asyncio.wait_for(st.writer.flush(), 3)
        except Exception as e:  # noqa: BLE001 - reconciliation repairs what is lost
            log.warning("state flush at stop failed: %r", e)
        await st.release()
        await st.store.aclose()

    # ---- status -----------------------------------------------------------------
    def runtime_status(self) -> dict:
        """The worker-owned ``status`` keys (see docs/design.md), money as decimal
        strings rounded to 0.01 USDT."""
        q = Decimal("0.01")
        st: dict = {"lastHeartbeat": now_rfc3339()}
        e = self.engine
        if self.strategy_obj is not None:
            st["workerObservedGeneration"] = (self.strategy_obj.get("metadata") or {}).get("generation")
        if e is None:
            reason = "SPEC_INVALID" if self.spec_error else R_NO_DATA if self.data_error else "STARTING"
            st.update({"tradingActive": False, "notTradingReasons": [{"reason": reason, "count": 1}]})
            return st
        marks = e.marks()
        realized, fees = e.ledger.realized_pnl, e.ledger.fees
        unreal = e.ledger.unrealized_pnl(marks)
        active = e.trading_active() and not self.replay_done
        reasons = e.top_reasons()
        if self.replay_done:
            reasons = [{"reason": "REPLAY_FINISHED", "count": 1}] + reasons[:4]
        gov = e.governor_status()
        st.update({
            "riskState": e.risk_state,
            "riskReasons": list(e.risk_reasons),
            "riskGovernor": {k: gov[k] for k in ("since", "recommendedAction", "clearRule", "hardStopAt")
                             if gov[k] is not None},
            "tradingActive": active,
            "equity": str(e.equity().quantize(q)),
            "realizedPnl": str(realized.quantize(q)),
            "unrealizedPnl": str(unreal.quantize(q)),
            "fees": str(fees.quantize(q)),
            "pnl": str((realized - fees + unreal + getattr(e, "funding", 0)).quantize(q)),
            "drawdownPercent": str(e.drawdown_percent().quantize(q)),
            "openPositions": len(e.ledger.open_positions()),
            "positions": [
                {"symbol": p.symbol, "side": p.side, "size": str(p.size.copy_abs()),
                 "entryPrice": str(p.entry_price.quantize(e.symbols[p.symbol.split(".")[0]].instrument.tick_size)),
                 "markPrice": str(marks[p.symbol]),
                 "unrealizedPnl": str(p.unrealized_pnl(marks[p.symbol]).quantize(q))}
                for p in e.ledger.open_positions()
            ],
            "trades": e.ledger.closed_trades,
            "orders": e.orders_sent,
            "notTradingReasons": reasons,
            "symbolStates": [
                {"symbol": s.symbol, "quarantined": s.quarantined, "entryOrders": s.entry_orders,
                 "lastReason": s.last_reason}
                for s in e.symbols.values()
            ],
        })
        if getattr(e, "scanner", None) is not None:
            st["scanner"] = e.scanner.status()
        if self.cursor_ms is not None and self.first_ms is not None and self.last_ms is not None:
            span = max(self.last_ms - self.first_ms, 1)
            st["replay"] = {
                "cursor": datetime.fromtimestamp(self.cursor_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "progress": str((Decimal(self.cursor_ms - self.first_ms) / span).quantize(Decimal("0.0001"))),
                "done": self.replay_done,
            }
        return st

    async def status_loop(self) -> None:
        """Coalesced status writes: at most one patch per ``status_interval`` seconds,
        and only when a figure changed or the heartbeat is ``HEARTBEAT_SECONDS`` old
        (an idle worker writes every 10 s, a busy one at most once per interval).
        Failures are counted and retried next interval.

        The heartbeat doubles as the API reachability probe: it is written at least
        every ``min(10, api_unreachable_seconds / 3)`` seconds, each patch times out
        after ``min(5, max(1, api_unreachable_seconds / 3))`` seconds, and an answer
        other than 5xx counts as contact (:meth:`check_api`)."""
        last_sent: dict | None = None
        threshold = self.settings.api_unreachable_seconds
        heartbeat = min(HEARTBEAT_SECONDS, threshold / 3)
        timeout = min(5.0, max(1.0, threshold / 3))
        while True:
            self._status_wake.clear()  # a transition from now on wakes the next pause
            since, self.dirty_since = self.dirty_since, None
            status = self.runtime_status()
            figures = {k: v for k, v in status.items() if k != "lastHeartbeat"}
            if figures == last_sent and time.time() - self.last_status_write < heartbeat:
                await self._status_pause()
                continue
            try:
                await asyncio.wait_for(patch_status(self.api_client, api.STRATEGY_PLURAL, self.settings.namespace,
                                                    self.settings.strategy_name, status), timeout)
                self.api_contact()
                self.status_patches += 1
                self.last_heartbeat = status["lastHeartbeat"]
                self.last_status_write = time.time()
                if since is not None and figures != last_sent:
                    self.status_ages.append(self.last_status_write - since)
                last_sent = figures
            except Exception as e:  # noqa: BLE001 - keep trading; retry next interval
                if isinstance(e, ApiException) and e.status and e.status < 500:
                    self.api_contact()  # the API answered (e.g. 404, 422): reachable
                if since is not None and (self.dirty_since is None or since < self.dirty_since):
                    self.dirty_since = since  # still unwritten
                self.status_errors += 1
                log.warning("status patch failed: %r", e)
            self.check_api()
            await self._status_pause()

    async def _status_pause(self) -> None:
        """Wait one status interval, or less when a HARD_STOP is waiting to be written
        (it reaches ``status`` at once: at most one extra write per stop, so writes stay
        bounded; other risk-state changes wait for the next tick, see
        :meth:`_drain_risk_events`)."""
        try:
            await asyncio.wait_for(self._status_wake.wait(), self.settings.status_interval)
        except asyncio.TimeoutError:
            pass

    def next_quarantine_expiry(self, now: datetime) -> float | None:
        """Seconds from ``now`` (aware UTC) to the earliest future expiry among the
        namespace's SymbolQuarantines (``spec.expiresAt`` or creation + ``ttlSeconds``),
        or None if none expires later. Malformed times are skipped (such an object
        blocks nothing, see :func:`hean.quarantine.quarantine_applies`)."""
        best: float | None = None
        for q in (self.quarantines.cache.values() if self.quarantines is not None else ()):
            try:
                exp = quarantine_expiry(q)
            except (ValueError, TypeError):
                continue
            if exp is not None and exp > now:
                dt = (exp - now).total_seconds()
                best = dt if best is None else min(best, dt)
        return best

    async def quarantine_clock(self) -> None:
        """Apply quarantine expiry when it happens (expiry is wall-clock time): one
        timer set to the earliest future expiry, re-armed whenever a quarantine
        changes, and at least every ``QUARANTINE_RECHECK_SECONDS`` as a safety net (was:
        a check every 0.25 s, about a third of an idle worker's CPU)."""
        while True:
            self._quarantine_wake.clear()
            delay = self.next_quarantine_expiry(datetime.now(timezone.utc))
            delay = QUARANTINE_RECHECK_SECONDS if delay is None else min(delay + 0.001, QUARANTINE_RECHECK_SECONDS)
            try:
                await asyncio.wait_for(self._quarantine_wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
            self._apply_quarantines()

    # ---- Bybit endpoints ----------------------------------------------------------
    async def bybit_snapshot(self) -> dict:
        """``/bybit``: exchange execution and live-data health (never any key)."""
        out: dict = {"mode": self.engine.spec.mode if self.engine else None}
        if self.exchange is not None:
            out["exchange"] = self.exchange.snapshot()
        if self.live_data is not None:
            out["marketData"] = self.live_data.feed.snapshot()
            out["funding"] = self.funding
        if self.engine is not None:
            out["blockedReason"] = self.engine.blocked_reason
            from dataclasses import asdict

            from .bybit.runtime import connection_settings
            out["connection"] = asdict(connection_settings(self.engine.spec, self.settings))
        return out

    async def bybit_metrics(self):
        """``/metrics/bybit``: Prometheus text of the Bybit counters."""
        from fastapi import Response
        from prometheus_client import CONTENT_TYPE_LATEST

        from .bybit.metrics import render

        return Response(render(self), media_type=CONTENT_TYPE_LATEST)

    # ---- main -------------------------------------------------------------------
    async def run(self) -> None:
        """Start the watchers, HTTP server, replay and status writer; run until
        SIGTERM/SIGINT, then write a last status and exit."""
        import uvicorn

        from .http import build_app, quiet_server, with_probe_fast_path

        self.api_client = await load_config()
        ns = self.settings.namespace
        from .state import WorkerState

        self.state = WorkerState.from_env(ns, self.settings.strategy_name, self.settings.pod_name)
        self.strategies = Informer(self.api_client, api.STRATEGY_PLURAL, ns, self._on_strategy,
                                   field_selector=f"metadata.name={self.settings.strategy_name}")
        self.policies = Informer(self.api_client, api.POLICY_PLURAL, ns, self._on_policy)
        self.quarantines = Informer(self.api_client, api.QUARANTINE_PLURAL, ns, self._on_quarantine)
        app = build_app(self)
        app.add_api_route("/bybit", self.bybit_snapshot, methods=["GET"])
        app.add_api_route("/metrics/bybit", self.bybit_metrics, methods=["GET"])
        from .selection import trades_snapshot

        async def trades(window: int = 60):
            try:
                return await trades_snapshot(self, window)
            except ValueError as e:
                from fastapi.responses import JSONResponse

                return JSONResponse({"error": str(e)}, status_code=400)
        app.add_api_route("/trades", trades, methods=["GET"])
        server = quiet_server(uvicorn.Config(with_probe_fast_path(app, self), host=self.settings.bind_address,
                                             port=self.settings.http_port, log_level="warning",
                                             access_log=False))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(c) for c in (
            self.strategies.run(), self.policies.run(), self.quarantines.run(), server.serve(),
        )]
        await self.strategies.synced.wait()
        await self.policies.synced.wait()
        await self.quarantines.synced.wait()
        loops = (self.replay(), self.quarantine_clock(), self.api_watchdog()) + \
            ((self.status_loop(),) if self.settings.role != "candidate" else ())
        tasks += [asyncio.create_task(c) for c in loops]
        await stop.wait()
        log.info("stopping")
        server.request_exit()
        serve_task = tasks[3]
        try:
            await asyncio.wait_for(asyncio.shield(serve_task), 5)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001
            pass
        try:
            if self.settings.role != "candidate":
                await asyncio.wait_for(patch_status(self.api_client, api.STRATEGY_PLURAL, ns,
                                                    self.settings.strategy_name,
                                                    {**self.runtime_status(), "tradingActive": False}), 3)
        except Exception:  # noqa: BLE001
            pass
        for t in tasks + getattr(self, "_state_tasks", []):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._stop_state()
        await self.api_client.close()
        # pybit's WebSocket threads are daemons that may outlive the loop: drop what
        # could still reach native objects so they are freed before interpreter exit.
        self.live_data = self.exchange = self.engine = None


def main() -> None:
    """Entry point of ``python -m hean.worker``."""
    settings = WorkerSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(Worker(settings).run())
    import gc

    gc.collect()
