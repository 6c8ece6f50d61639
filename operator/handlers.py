"""kopf wiring of the hean operator. Handlers only keep caches and schedule reconciles;
every decision is made by the pure functions in :mod:`hean.operator.reconcile`.

Design (level-triggered, as controllers should be): kopf's watches feed event
handlers that update in-memory caches of TradingStrategies, RiskPolicies,
SymbolQuarantines and worker Pods, then schedule a coalesced reconcile of the
affected strategy. One background task re-reconciles everything every
``RESYNC_SECONDS`` (quarantine expiry, heartbeat staleness, pod backoff), doing no API
call unless something must change. All API calls use the asyncio client; nothing
blocks the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from collections import defaultdict
from datetime import datetime, timezone

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from hean import api
from hean.kube import load_config, patch_status, post_event

from . import metrics
from . import promoter as pro
from . import reconcile as rc

log = logging.getLogger("hean.operator")
RESYNC_SECONDS = 1.0
# Every strategy is re-reconciled by the timer once per STRATEGY_RESYNC_SECONDS, a
# fifth of them per tick (events still reconcile at once). Only time-driven rules
# need the timer (heartbeat staleness, 30 s); at 1,000 strategies a full pass every
# second cost about a third of a core.
STRATEGY_RESYNC_SECONDS = 5.0


def config_from_env() -> rc.OperatorConfig:
    """Operator settings from ``HEAN_*`` environment variables set by the Helm chart.

    Raises ValueError naming the variable and what it must be if
    ``HEAN_WORKER_RESOURCES`` is not a JSON object or ``HEAN_WORKER_STATUS_INTERVAL`` is
    not a positive number of seconds, or ``HEAN_WORKER_API_UNREACHABLE_SECONDS`` (passed
    to workers as ``HEAN_API_UNREACHABLE_SECONDS``) is not a positive number of seconds.
    """
    d = rc.OperatorConfig()
    resources = d.worker_resources
    if os.environ.get("HEAN_WORKER_RESOURCES"):
        try:
            resources = json.loads(os.environ["HEAN_WORKER_RESOURCES"])
        except json.JSONDecodeError as e:
            raise ValueError(f"HEAN_WORKER_RESOURCES must be a JSON object "
                             f"(V1ResourceRequirements, e.g. {{\"limits\": {{\"cpu\": \"1\"}}}}): {e}") from None
        if not isinstance(resources, dict):
            raise ValueError(f"HEAN_WORKER_RESOURCES must be a JSON object, got {type(resources).__name__}")
    raw_interval = os.environ.get("HEAN_WORKER_STATUS_INTERVAL", str(d.status_interval))
    try:
        interval = float(raw_interval)
    except ValueError:
        interval = -1.0
    if not interval > 0:
        raise ValueError(f"HEAN_WORKER_STATUS_INTERVAL must be a positive number of seconds, got {raw_interval!r}")
    raw_unreachable = os.environ.get("HEAN_WORKER_API_UNREACHABLE_SECONDS", str(d.api_unreachable_seconds))
    try:
        unreachable = float(raw_unreachable)
    except ValueError:
        unreachable = -1.0
    if not 0 < unreachable < float("inf"):
        raise ValueError("HEAN_WORKER_API_UNREACHABLE_SECONDS must be a positive number of seconds, "
                         f"got {raw_unreachable!r}")
    return rc.OperatorConfig(
        worker_image=os.environ.get("HEAN_WORKER_IMAGE", d.worker_image),
        marketdata_host_path=os.environ.get("HEAN_MARKETDATA_HOST_PATH", d.marketdata_host_path),
        marketdata_mount_path=os.environ.get("HEAN_MARKETDATA_MOUNT_PATH", d.marketdata_mount_path),
        live_trading_enabled=os.environ.get("HEAN_LIVE_TRADING_ENABLED", "false").lower() in ("1", "true", "yes"),
        status_interval=interval,
        api_unreachable_seconds=unreachable,
        worker_resources=resources,
        image_pull_policy=os.environ.get("HEAN_WORKER_IMAGE_PULL_POLICY", d.image_pull_policy),
        worker_log_level=os.environ.get("HEAN_WORKER_LOG_LEVEL", d.worker_log_level),
        bybit_urls={m: os.environ[f"HEAN_BYBIT_{m.upper()}_URL"] for m in ("paper", "testnet", "demo", "live")
                    if os.environ.get(f"HEAN_BYBIT_{m.upper()}_URL")},
        worker_state_root=os.environ.get("HEAN_WORKER_STATE_ROOT", d.worker_state_root),
        worker_bybit_env={k[len("HEAN_WORKER_BYBIT_"):]: v for k, v in os.environ.items()
                          if k.startswith("HEAN_WORKER_BYBIT_")},
        redis_url=os.environ.get("HEAN_REDIS_URL", "").strip(),
        redis_password=os.environ.get("HEAN_REDIS_PASSWORD", ""),
    )


class OperatorState:
    """Caches keyed by ``(namespace, name)`` plus per-strategy bookkeeping."""

    def __init__(self, cfg: rc.OperatorConfig, api_client: client.ApiClient):
        self.cfg = cfg
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.strategies: dict[tuple[str, str], dict] = {}
        self.policies: dict[tuple[str, str], dict] = {}
        self.quarantines: dict[tuple[str, str], dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}  # keyed by (namespace, strategy name)
        self.failures: dict[tuple[str, str], int] = defaultdict(int)
        self.last_create: dict[tuple[str, str], datetime] = {}
        self.rbac_done: set[str] = set()  # rc.rbac_key of strategies whose RBAC is in place
        self.redis_secret_done: set[str] = set()  # namespaces whose worker Redis Secret is current
        self.locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self.scheduled: set[tuple[str, str]] = set()
        self.quarantine_seen_active: dict[str, bool] = {}
        self.reconciles = 0
        self.errors = 0
        self.promoter = pro.Promoter()  # progressive promotion (docs/promotion.md)

    def schedule(self, key: tuple[str, str], delay: float = 0.0) -> None:
        """Coalesce: at most one pending reconcile per strategy."""
        if key in self.scheduled:
            return
        self.scheduled.add(key)

        async def run():
            if delay:
                await asyncio.sleep(delay)
            self.scheduled.discard(key)
            await reconcile_strategy(self, key)

        asyncio.get_running_loop().create_task(run())


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def ensure_rbac(state: OperatorState, strategy: dict) -> None:
    """Create the worker's ServiceAccount, Role and RoleBinding if missing (once per
    strategy uid and symbol set per operator run). A Role that already existed (409)
    is patched to the desired rules; a freshly created one already has them."""
    key = rc.rbac_key(strategy)  # uid + symbols: a symbols change re-patches the Role
    if key in state.rbac_done:
        return
    ns = strategy["metadata"]["namespace"]
    sa, role, rb = rc.desired_service_account(strategy), rc.desired_role(strategy), rc.desired_role_binding(strategy)
    existed = {}
    for kind, create, body in (("sa", lambda b: state.core.create_namespaced_service_account(ns, b), sa),
                               ("role", lambda b: state.rbac.create_namespaced_role(ns, b), role),
                               ("rb", lambda b: state.rbac.create_namespaced_role_binding(ns, b), rb)):
        try:
            await create(body)
            existed[kind] = False
        except ApiException as e:
            if e.status != 409:
                raise
            existed[kind] = True
    if existed["role"]:
        await state.rbac.patch_namespaced_role(role["metadata"]["name"], ns, {"rules": role["rules"]})
    state.rbac_done.add(key)


async def ensure_redis_secret(state: OperatorState, namespace: str) -> None:
    """Create (or update) the workers' Redis Secret in ``namespace`` once per operator run."""
    if namespace in state.redis_secret_done:
        return
    body = rc.desired_redis_secret(namespace, state.cfg)
    if body is None:
        return
    try:
        await state.core.create_namespaced_secret(namespace, body)
    except ApiException as e:
        if e.status != 409:
            raise
        await state.core.patch_namespaced_secret(rc.WORKER_REDIS_SECRET, namespace, {"data": body["data"]})
    state.redis_secret_done.add(namespace)
async def prime_caches(state: OperatorState) -> None:
    """At start-up, before the watches: one LIST each of worker Pods, ServiceAccounts,
    Roles and RoleBindings (raw JSON, no model objects), so that the first reconcile
    of every strategy after an operator restart neither re-creates a pod that exists
    (a 409 per strategy) nor re-issues its RBAC (three creates and a patch per
    strategy). Primed pods are marked and confirmed by the first watch event for them
    or re-read by :func:`confirm_primed_pods`. Best effort: on an API error the
    operator starts with empty caches as before."""
    namespaces = [n.strip() for n in os.environ.get("HEAN_WATCH_NAMESPACES", "").split(",") if n.strip()]
    sel = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
    rbac = client.RbacAuthorizationV1Api(state.api_client)

    async def items(all_ns, per_ns) -> list[dict]:
        calls = [per_ns(ns, label_selector=sel, _preload_content=False) for ns in namespaces] if namespaces else \
            [all_ns(label_selector=sel, _preload_content=False)]
        out: list[dict] = []
        for call in calls:
            resp = await call
            out += json.loads(await resp.read()).get("items") or []
        return out

    try:
        pods = await items(state.core.list_pod_for_all_namespaces, state.core.list_namespaced_pod)
        sas = await items(state.core.list_service_account_for_all_namespaces, state.core.list_namespaced_service_account)
        roles = await items(rbac.list_role_for_all_namespaces, rbac.list_namespaced_role)
        rbs = await items(rbac.list_role_binding_for_all_namespaces, rbac.list_namespaced_role_binding)
    except ApiException as e:
        log.warning("start-up cache priming skipped: API error %s %s", e.status, e.reason)
        return
    for pod in pods:
        strategy = (pod["metadata"].get("labels") or {}).get(api.LABEL_STRATEGY)
        if strategy:
            pod["_primed"] = True
            state.pods.setdefault((pod["metadata"]["namespace"], strategy), pod)
    state.rbac_done |= rc.rbac_in_place(sas, roles, rbs)
    log.info("primed caches: %d worker pods, RBAC in place for %d strategies", len(pods), len(state.rbac_done))


async def confirm_primed_pods(state: OperatorState) -> None:
    """Re-read every primed pod that no watch event has replaced yet (a pod deleted
    between the priming LIST and the watch would otherwise stay in the cache)."""
    for key, pod in list(state.pods.items()):
        if not pod.get("_primed"):
            continue
        try:
            resp = await state.core.read_namespaced_pod(pod["metadata"]["name"], key[0], _preload_content=False)
            fresh = json.loads(await resp.read())
            if state.pods.get(key) is pod:
                state.pods[key] = fresh
        except ApiException as e:
            if e.status == 404 and state.pods.get(key) is pod:
                state.pods.pop(key, None)
                state.schedule(key)


def _event_type(c: dict) -> str:
    return "Normal" if c["status"] == "True" or c["reason"] in ("Paused", "WorkerPending") else "Warning"


@metrics.timed("TradingStrategy")
async def reconcile_strategy(state: OperatorState, key: tuple[str, str]) -> None:
    """Bring one TradingStrategy's children and status to the desired state."""
    async with state.locks[key]:
        strategy = state.strategies.get(key)
        if strategy is None or strategy["metadata"].get("deletionTimestamp"):
            return
        state.reconciles += 1
        ns, name = key
        spec = strategy.get("spec") or {}
        now = _now()
        policy = state.policies.get((ns, (spec.get("riskPolicyRef") or {}).get("name", "")))
        pod = state.pods.get(key)
        # promotion: the worker runs the stage's mode/capital/params (operator/promoter.py)
        try:
            promo = await pro.prepare(state.promoter, key, strategy, state.cfg, policy is not None,
                                      list(state.quarantines.values()), pod, now)
        except Exception:  # noqa: BLE001 - a promotion error must not stop the reconcile
            log.exception("promotion of %s/%s failed", ns, name)
            promo = None
        run = pro.effective_strategy(strategy, promo.decision.worker) if promo else strategy
        admission = rc.admit(run.get("spec") or {}, state.cfg, policy is not None)
        try:
            if admission.ok:
                await ensure_rbac(state, strategy)
                await ensure_redis_secret(state, ns)
            action = rc.pod_action(run, pod, admission, policy is not None, state.failures[key],
                                   state.last_create.get(key), now)
            if action.kind == "create":
                body = rc.desired_pod(run, state.cfg)
                if promo:
                    pro.decorate_pod(body, promo.decision.worker)
                try:
                    created = await state.core.create_namespaced_pod(ns, body)
                    state.pods[key] = state.api_client.sanitize_for_serialization(created)
                    pod = state.pods[key]
                    await post_event(state.api_client, strategy, "WorkerCreated",
                                     f"created worker pod {body['metadata']['name']}", component="hean-operator")
                except ApiException as e:
                    if e.status != 409:
                        state.rbac_done.discard(rc.rbac_key(strategy))  # re-check RBAC next time
                        raise
                state.last_create[key] = now
            elif action.kind == "delete" and pod is not None:
                if action.reason.startswith("Worker"):
                    state.failures[key] += 1
                try:
                    await state.core.delete_namespaced_pod(pod["metadata"]["name"], ns)
                except ApiException as e:
                    if e.status != 404:
                        raise
                await post_event(state.api_client, strategy, "WorkerReplaced" if action.reason == "SpecChanged" else "WorkerDeleted",
                                 f"deleted worker pod {pod['metadata']['name']}: {action.reason}",
                                 "Normal" if action.reason == "SpecChanged" else "Warning", "hean-operator")
            elif action.kind == "wait":
                state.schedule(key, action.after_seconds)
            if admission.ok:
                await pro.reconcile_candidate(state.promoter, state, key, strategy, promo)
        except ApiException as e:
            state.errors += 1
            metrics.record_error("TradingStrategy")
            log.warning("reconcile %s/%s: API error %s %s", ns, name, e.status, e.reason)
            state.schedule(key, 2.0)
        desired = rc.strategy_status(run, admission, policy, pod, state.failures[key], now)
        current = strategy.get("status") or {}
        desired = pro.merge_status(desired, promo, current, now)
        if rc.status_changed(current, desired):
            transitions = rc.condition_transitions(current.get("conditions"), desired["conditions"])
            try:
                updated = await patch_status(state.api_client, api.STRATEGY_PLURAL, ns, name, desired)
                if key in state.strategies:
                    state.strategies[key] = updated
            except ApiException as e:
                state.errors += 1
                metrics.record_error("TradingStrategy")
                log.warning("status patch %s/%s failed: %s %s", ns, name, e.status, e.reason)
                return
            await pro.post_events(state.promoter, state, key, strategy, promo)
            old_by = {c.get("type"): c for c in current.get("conditions") or []}
            for c in transitions:
                if c["type"] == api.COND_RISK_LIMITED:
                    continue  # the worker posts RiskStateChanged itself
                if c["type"] == api.COND_TRADING and (old_by.get(c["type"]) or {}).get("status") == c["status"]:
                    continue  # only status flips of Trading are Events
                if not rc.event_worthy(old_by.get(c["type"]), c):
                    continue  # start-up progress (pending, not ready yet) is not an Event
                await post_event(state.api_client, strategy, c["reason"], f"{c['type']}={c['status']}: {c['message']}",
                                 _event_type(c), "hean-operator")


@metrics.timed("RiskPolicy")
async def reconcile_policies_and_quarantines(state: OperatorState) -> None:
    """Keep RiskPolicy and SymbolQuarantine statuses current; Event on quarantine
    activation and expiry."""
    now = _now()
    strategies = list(state.strategies.values())
    for key, pol in list(state.policies.items()):
        desired = rc.policy_status(pol, strategies, now)
        if rc.status_changed(pol.get("status"), desired):
            try:
                state.policies[key] = await patch_status(state.api_client, api.POLICY_PLURAL, key[0], key[1], desired)
            except ApiException as e:
                metrics.record_error("RiskPolicy")
                log.warning("RiskPolicy %s/%s status: %s", key[0], key[1], e.status)
    for key, q in list(state.quarantines.items()):
        desired = rc.quarantine_status(q, strategies, now)
        uid = q["metadata"]["uid"]
        was = state.quarantine_seen_active.get(uid)
        if was is not desired["active"]:
            state.quarantine_seen_active[uid] = desired["active"]
            sym = (q.get("spec") or {}).get("symbol")
            if desired["active"]:
                await post_event(state.api_client, q, "QuarantineActive",
                                 f"new entries on {sym} blocked until {desired['expiresAt']}: {(q.get('spec') or {}).get('reason', '')}",
                                 "Warning", "hean-operator")
            elif was is not None or (q.get("status") or {}).get("active"):
                await post_event(state.api_client, q, "QuarantineExpired",
                                 f"quarantine of {sym} expired at {desired['expiresAt']}", "Normal", "hean-operator")
        if rc.status_changed(q.get("status"), desired):
            try:
                state.quarantines[key] = await patch_status(state.api_client, api.QUARANTINE_PLURAL, key[0], key[1], desired)
            except ApiException as e:
                metrics.record_error("RiskPolicy")
                log.warning("SymbolQuarantine %s/%s status: %s", key[0], key[1], e.status)


async def resync_forever(state: OperatorState) -> None:
    """The one timer that serves all objects (no per-object timers)."""
    confirm_at = asyncio.get_running_loop().time() + 30.0  # primed pods not seen by the watch by then
    slices = max(1, round(STRATEGY_RESYNC_SECONDS / RESYNC_SECONDS))
    tick = 0
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        tick += 1
        try:
            if confirm_at is not None and asyncio.get_running_loop().time() >= confirm_at:
                confirm_at = None
                await confirm_primed_pods(state)
            for i, key in enumerate(list(state.strategies)):
                if i % slices == tick % slices:
                    await reconcile_strategy(state, key)
            await reconcile_policies_and_quarantines(state)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - never let the loop die
            state.errors += 1
            metrics.record_error("Resync")
            log.exception("resync failed")


async def record_mode_change(state: OperatorState, old: dict | None, new: dict) -> None:
    """Post an Event when ``spec.mode`` changes (e.g. testnet -> live), naming the
    managed-fields manager that changed it (issue 5's audit of going live)."""
    ev = rc.mode_change_event(old, new)
    if ev is None:
        return
    reason, message, type_ = ev
    log.warning("%s/%s: %s", new["metadata"].get("namespace"), new["metadata"]["name"], message)
    try:
        await post_event(state.api_client, new, reason, message, type_, "hean-operator")
    except ApiException as e:
        log.warning("ModeChanged event not posted: %s", e.status)


# ---- kopf registration -----------------------------------------------------------------
@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    """kopf startup: operator settings (standalone, timeouts, Events only for warnings),
    the shared state and the single resync task.
    """
    settings.posting.level = logging.WARNING
    # kopf logs "Handler ... succeeded" at INFO for every watch event: one line per
    # worker status write (hundreds per second at scale). Warnings and errors stay.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.getLogger().level))
    settings.peering.standalone = True
    settings.watching.server_timeout = 240
    settings.watching.client_timeout = 300
    settings.networking.request_timeout = 30
    # The TradingStrategy finalizer (on_strategy_delete) and its progress bookkeeping.
    settings.persistence.finalizer = api.GROUP + "/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf." + api.GROUP)
    memo.state = OperatorState(config_from_env(), await load_config())
    await prime_caches(memo.state)
    memo.resync = asyncio.get_running_loop().create_task(resync_forever(memo.state))
    metrics.attach(memo.state)
    memo.metrics_server = metrics.serve()
    log.info("hean operator started: %s", memo.state.cfg)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    """kopf cleanup: stop the resync task and close the API client."""
    task = getattr(memo, "resync", None)
    if task is not None:
        task.cancel()
    state = getattr(memo, "state", None)
    if state is not None:
        await state.api_client.close()


def _key(obj: dict) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


@kopf.on.event(api.GROUP, api.VERSION, api.STRATEGY_PLURAL)
async def on_strategy(event: dict, memo: kopf.Memo, **_) -> None:
    """Cache a TradingStrategy event and schedule its reconcile (drops it on DELETED)."""
    obj = copy.deepcopy(event["object"])
    key = _key(obj)
    if event.get("type") == "DELETED":
        memo.state.strategies.pop(key, None)
        memo.state.failures.pop(key, None)
        return
    await record_mode_change(memo.state, memo.state.strategies.get(key), obj)
    memo.state.strategies[key] = obj
    memo.state.schedule(key)


@kopf.on.delete(api.GROUP, api.VERSION, api.STRATEGY_PLURAL, retries=None, backoff=1.0)
async def on_strategy_delete(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Finalizer of a TradingStrategy: stop its worker (exchange modes: after the worker
    flattened or the flatten timeout), wait until the pod is gone, then delete the
    strategy's Redis keys. Decisions: :func:`hean.operator.reconcile.finalize_action`."""
    from hean.worker.state import delete_strategy_keys

    state: OperatorState = memo.state
    obj = copy.deepcopy(dict(body))
    key = _key(obj)
    action = rc.finalize_action(obj, state.pods.get(key), state.cfg, _now())
    if action.kind == "delete-pod":
        pod = state.pods[key]
        try:
            await state.core.delete_namespaced_pod(pod["metadata"]["name"], key[0])
        except ApiException as e:
            if e.status != 404:
                raise
        open_positions = (obj.get("status") or {}).get("openPositions", 0)
        msg = f"stopping worker pod {pod['metadata']['name']}: {action.reason}"
        if action.reason == "FlattenTimeout":
            msg += f"; {open_positions} position(s) may remain open on the exchange account"
        await post_event(state.api_client, obj, "WorkerStopping", msg,
                         "Warning" if action.reason == "FlattenTimeout" else "Normal", "hean-operator")
        raise kopf.TemporaryError("waiting for the worker pod to stop", delay=1.0)
    if action.kind == "wait":
        raise kopf.TemporaryError(action.reason, delay=action.after_seconds)
    if state.cfg.redis_url:
        n = await delete_strategy_keys(state.cfg.redis_url, key[0], key[1], state.cfg.redis_password or None)
        log.info("%s/%s deleted: removed %d Redis keys of its state", key[0], key[1], n)


@kopf.on.event(api.GROUP, api.VERSION, api.POLICY_PLURAL)
async def on_policy(event: dict, memo: kopf.Memo, **_) -> None:
    """Cache a RiskPolicy event and schedule every strategy that references it."""
    obj = copy.deepcopy(event["object"])
    key = _key(obj)
    if event.get("type") == "DELETED":
        memo.state.policies.pop(key, None)
    else:
        memo.state.policies[key] = obj
    for skey, s in list(memo.state.strategies.items()):
        if skey[0] == key[0] and (s.get("spec") or {}).get("riskPolicyRef", {}).get("name") == key[1]:
            memo.state.schedule(skey)


@kopf.on.event(api.GROUP, api.VERSION, api.QUARANTINE_PLURAL)
async def on_quarantine(event: dict, memo: kopf.Memo, **_) -> None:
    """Cache a SymbolQuarantine event (its status is kept by the resync loop)."""
    obj = copy.deepcopy(event["object"])
    key = _key(obj)
    if event.get("type") == "DELETED":
        memo.state.quarantines.pop(key, None)
    else:
        memo.state.quarantines[key] = obj


@kopf.on.event("", "v1", "pods", labels={api.LABEL_MANAGED_BY: api.MANAGED_BY})
async def on_pod(event: dict, memo: kopf.Memo, **_) -> None:
    """Cache a worker Pod event (keyed by its strategy label) and schedule that strategy."""
    obj = copy.deepcopy(event["object"])
    strategy = (obj["metadata"].get("labels") or {}).get(api.LABEL_STRATEGY)
    if not strategy:
        return
    key = (obj["metadata"]["namespace"], strategy)
    if (obj["metadata"].get("labels") or {}).get(pro.LABEL_ROLE) == "candidate":  # the shadow pod (promotion)
        cands = memo.state.promoter.candidates
        if event.get("type") != "DELETED":
            cands[key] = obj
        elif (cands.get(key) or {}).get("metadata", {}).get("uid") == obj["metadata"].get("uid"):
            cands.pop(key, None)
        memo.state.schedule(key)
        return
    if event.get("type") == "DELETED":
        cur = memo.state.pods.get(key)
        if cur is not None and cur["metadata"].get("uid") == obj["metadata"].get("uid"):
            memo.state.pods.pop(key, None)
    else:
        memo.state.pods[key] = obj
    memo.state.schedule(key)
