"""Pure reconcile functions of the hean operator: desired children and conditions.

Nothing here talks to the API server. Each function takes plain dicts (the objects
as the API server returns them) and returns plain dicts, so every rule can be unit
tested and the kopf handlers in :mod:`hean.operator.handlers` only wire them.

Conventions: conditions follow ``metav1.Condition`` (type, status, reason, message,
lastTransitionTime, observedGeneration), ``lastTransitionTime`` changes only when
``status`` changes; reasons are CamelCase. Owned objects carry a controller owner
reference to their TradingStrategy so deletion cascades through the garbage
collector (https://kubernetes.io/docs/concepts/architecture/garbage-collection/).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from hean import api
from hean.quarantine import auto_quarantine_name, parse_time, quarantine_active, quarantine_expiry, selector_matches

HEARTBEAT_TIMEOUT_SECONDS = 30
POD_BACKOFF_BASE_SECONDS = 2.0
POD_BACKOFF_MAX_SECONDS = 300.0
STRUCTURAL_FIELDS = ("strategy", "symbols", "category", "mode", "capital", "maxLeverage", "marketData",
                     "credentialsSecretRef", "bybit")


@dataclass(frozen=True)
class OperatorConfig:
    """Operator settings (from the chart through environment variables).

    ``marketdata_host_path`` is mounted read-only at ``marketdata_mount_path`` in
    every worker; ``worker_resources`` is a V1ResourceRequirements dict;
    ``status_interval`` is the workers' status write period in seconds.
    """

    worker_image: str = "ghcr.io/hean/hean:0.1.0"
    marketdata_host_path: str = "/var/lib/hean/marketdata"
    marketdata_mount_path: str = "/var/lib/hean/marketdata"
    live_trading_enabled: bool = False
    status_interval: float = 1.0
    # Seconds without an answer from the Kubernetes API after which workers stop
    # opening positions (env HEAN_WORKER_API_UNREACHABLE_SECONDS -> worker
    # HEAN_API_UNREACHABLE_SECONDS).
    api_unreachable_seconds: float = 30.0
    worker_resources: dict = field(default_factory=lambda: {
        "requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}})
    image_pull_policy: str = "IfNotPresent"
    worker_log_level: str = "INFO"
    # Bybit-v5-compatible base URL per mode (e.g. a test exchange for "testnet"), from
    # HEAN_BYBIT_<MODE>_URL; absent = Bybit's own hosts (docs/bybit.md).
    bybit_urls: dict = field(default_factory=dict)
    # Parent of each exchange-mode worker's state directory (orderLinkId sequence,
    # shared rate budget): an emptyDir mounted at <root>/<namespace>/<name>.
    worker_state_root: str = "/var/lib/hean/state"
    # Worker Bybit settings passed through from operator env HEAN_WORKER_BYBIT_<X>
    # (e.g. DCP_SECONDS, RECONCILE_SECONDS) as HEAN_BYBIT_<X> to live-data workers.
    worker_bybit_env: dict = field(default_factory=dict)
    # Worker state in Redis (issue 7; docs/reliability.md): the operator's own
    # HEAN_REDIS_URL / HEAN_REDIS_PASSWORD. Workers get both through the Secret
    # WORKER_REDIS_SECRET that the operator keeps in each strategy's namespace, so
    # neither appears in a pod spec. Empty URL: workers keep state in memory.
    redis_url: str = field(default="", repr=False)
    redis_password: str = field(default="", repr=False)
    # Seconds the finalizer of an exchange-mode strategy waits for its worker to
    # report flat (status.openPositions == 0) before stopping it anyway.
    flatten_timeout_seconds: float = 60.0


def _fmt(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def camel(code: str) -> str:
    """``SYMBOL_QUARANTINED`` -> ``SymbolQuarantined`` (a valid condition reason)."""
    out = "".join(p.capitalize() for p in code.replace("-", "_").split("_") if p)
    return out if out and out[0].isalpha() else "Unknown"


# ---- names, hashes, ownership ----------------------------------------------------
def worker_name(strategy_name: str) -> str:
    """Name of the worker Pod, ServiceAccount, Role and RoleBinding of a strategy."""
    return f"{strategy_name}-worker"


def structural_hash(spec: dict) -> str:
    """Hash (16 hex chars) of the spec fields whose change needs a new worker pod;
    parameters, ``paused`` and the RiskPolicy apply live and are not part of it."""
    # "bybit" counts only when present, so that strategies without it keep the hash they had
    # before the field existed (an operator upgrade does not replace their pods).
    material = json.dumps({k: spec.get(k) for k in STRUCTURAL_FIELDS if k != "bybit" or spec.get(k) is not None},
                          sort_keys=True, separators=(",", ":"))
    if spec.get("promotionEffective") is not None:  # the promotion stage/step the pod runs (operator/promoter.py)
        material += json.dumps(spec["promotionEffective"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def owner_reference(strategy: dict) -> dict:
    """A controller owner reference to ``strategy`` (deletion cascades)."""
    meta = strategy["metadata"]
    return {"apiVersion": api.API_VERSION, "kind": api.STRATEGY_KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def worker_labels(strategy_name: str) -> dict:
    """Labels every worker object carries (selectable by ``hean.io/strategy``)."""
    return {api.LABEL_NAME: api.WORKER_APP, api.LABEL_MANAGED_BY: api.MANAGED_BY,
            api.LABEL_COMPONENT: "worker", api.LABEL_STRATEGY: strategy_name}


# ---- admission: may this strategy run at all? -------------------------------------
@dataclass(frozen=True)
class Admission:
    """Whether the operator will run a worker for a strategy; if not, the
    ``Ready=False`` reason and message."""

    ok: bool
    reason: str = ""
    message: str = ""
    keep_worker: bool = False  # a bad live-tunable edit: keep the running worker on its last good spec


EXCHANGE_MODES = ("testnet", "demo", "live")
WORKER_REDIS_SECRET = "hean-worker-redis"  # per namespace, keys "url" and "password"


def validate_params(spec: dict) -> str | None:
    """Validate ``spec.params`` against the typed model of ``spec.strategy`` and
    ``spec.scanner`` (pydantic, :mod:`hean.worker.strategies.params`): None if valid,
    else a message naming every bad field, e.g. ``spec.params.grid.levels: Input
    should be less than or equal to 200``. Covers what the CRD schema cannot
    (cross-field rules, a CRD older than the models)."""
    from pydantic import ValidationError

    from hean.worker.strategies import ParamsError, ScannerSpec, parse_params

    problems = []
    try:
        parse_params(spec.get("strategy", ""), spec.get("params"))
    except ParamsError as e:
        problems.append(str(e))
    scanner = spec.get("scanner")
    if scanner is not None:
        try:
            ScannerSpec.model_validate(scanner)
            missing = [s for s in scanner.get("universe") or [] if s not in (spec.get("symbols") or [])]
            if missing:
                problems.append(f"spec.scanner.universe: {', '.join(missing)} not in spec.symbols "
                                "(every universe symbol must also be listed in spec.symbols)")
        except ValidationError as e:
            for err in e.errors():
                msg = str(err.get("msg", ""))
                loc = ".".join(str(x) for x in err.get("loc", ()))
                problems.append(msg[len("Value error, "):] if msg.startswith("Value error, spec.")
                                else f"spec.scanner.{loc}: {msg}" if loc else f"spec.scanner: {msg}")
    return "; ".join(problems) or None


def admit(spec: dict, cfg: OperatorConfig, policy_exists: bool = True) -> Admission:
    """Gate the worker on what the operator may run (the live-trading gates).

    1. ``live`` needs the operator installed with live trading enabled (helm value
       ``liveTrading.enabled``, env ``HEAN_LIVE_TRADING_ENABLED``);
    2. the confirmation phrase is enforced by the CRD's CEL rule;
    3. ``testnet``/``demo``/``live`` need ``credentialsSecretRef`` (also CEL), and
       ``live`` needs its RiskPolicy to exist before a worker is created.
    Exchange modes trade on live market data only (``spec.marketData.source:
    live``): a replay would send real orders on old prices.

    First of all, ``spec.params``/``spec.scanner`` must pass :func:`validate_params`
    (reason ``InvalidParams``; a running worker is kept on its last good parameters,
    none is created).
    """
    problem = validate_params(spec)
    if problem:
        return Admission(False, "InvalidParams", problem, keep_worker=True)
    mode = spec.get("mode", "paper")
    if mode == "live" and not cfg.live_trading_enabled:
        return Admission(False, "LiveTradingDisabled",
                         "spec.mode is 'live' but the operator was installed with liveTrading.enabled=false")
    if mode in EXCHANGE_MODES and not (spec.get("credentialsSecretRef") or {}).get("name"):
        return Admission(False, "CredentialsRequired",
                         f"spec.credentialsSecretRef.name is required when spec.mode is {mode!r}")
    if mode == "live" and not policy_exists:
        return Admission(False, "RiskPolicyRequired",
                         f"spec.mode is 'live': RiskPolicy {(spec.get('riskPolicyRef') or {}).get('name')!r} "
                         "must exist before a live worker is created")
    if mode in EXCHANGE_MODES and (spec.get("marketData") or {}).get("source", "replay") != "live":
        return Admission(False, "LiveMarketDataRequired",
                         f"spec.mode {mode!r} sends real orders and needs spec.marketData.source 'live'")
    return Admission(True)


def bybit_env(spec: dict, cfg: OperatorConfig) -> list[dict]:
    """Worker env for Bybit: the endpoint overrides of the strategy's mode (if the
    operator has one) and, for exchange modes, the API key and secret as
    ``secretKeyRef`` references (the values never pass through the operator)."""
    mode = spec.get("mode", "paper")
    env: list[dict] = []
    if mode in EXCHANGE_MODES or (spec.get("marketData") or {}).get("source") == "live":
        env += [{"name": f"HEAN_BYBIT_{k}", "value": str(v)} for k, v in sorted(cfg.worker_bybit_env.items())
                if k not in ("API_KEY", "API_SECRET", "STATE_DIR", "REST_URL", "WS_PUBLIC_URL", "WS_PRIVATE_URL")]
    base = cfg.bybit_urls.get(mode)
    if base:
        ws = "ws" + base[len("http"):] if base.startswith("http") else base
        ws = ws.rstrip("/")
        env += [{"name": "HEAN_BYBIT_REST_URL", "value": base.rstrip("/")},
                {"name": "HEAN_BYBIT_WS_PUBLIC_URL", "value": ws + "/v5/public/{CHANNEL_TYPE}"},
                {"name": "HEAN_BYBIT_WS_PRIVATE_URL", "value": ws + "/v5/private"}]
    ref = spec.get("credentialsSecretRef") or {}
    if mode in EXCHANGE_MODES and ref.get("name"):
        env += [{"name": "BYBIT_API_KEY", "valueFrom": {"secretKeyRef": {
                    "name": ref["name"], "key": ref.get("apiKeyKey") or "apiKey"}}},
                {"name": "BYBIT_API_SECRET", "valueFrom": {"secretKeyRef": {
                    "name": ref["name"], "key": ref.get("apiSecretKey") or "apiSecret"}}}]
    return env


def mode_change_manager(obj: dict) -> str:
    """Who last wrote ``spec.mode``: the managedFields manager owning ``f:spec`` /
    ``f:mode`` with the latest time (``unknown`` if none says so)."""
    best, best_time = "unknown", ""
    for mf in (obj.get("metadata") or {}).get("managedFields") or []:
        fields = ((mf.get("fieldsV1") or {}).get("f:spec") or {})
        if "f:mode" in fields and (mf.get("time") or "") >= best_time:
            best, best_time = mf.get("manager") or "unknown", mf.get("time") or ""
    return best


def mode_change_event(old: dict | None, new: dict) -> tuple[str, str, str] | None:
    """``(reason, message, type)`` of the Event recording a change of ``spec.mode``
    (e.g. testnet -> live) with the manager who made it; None if the mode did not
    change."""
    if old is None:
        return None
    a, b = (old.get("spec") or {}).get("mode", "paper"), (new.get("spec") or {}).get("mode", "paper")
    if a == b:
        return None
    who = mode_change_manager(new)
    gen = (new.get("metadata") or {}).get("generation")
    warn = b == "live" or a == "live"
    return ("ModeChanged", f"spec.mode changed from {a!r} to {b!r} by {who!r} (generation {gen})",
            "Warning" if warn else "Normal")


# ---- desired children ----------------------------------------------------------------
def desired_service_account(strategy: dict) -> dict:
    """The worker's dedicated ServiceAccount."""
    meta = strategy["metadata"]
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": worker_name(meta["name"]), "namespace": meta["namespace"],
                         "labels": worker_labels(meta["name"]), "ownerReferences": [owner_reference(strategy)]},
            "automountServiceAccountToken": True}


def desired_role(strategy: dict) -> dict:
    """The worker's Role: read the three kinds in its namespace, patch the status of
    its own TradingStrategy only, create Events, and create SymbolQuarantines / patch
    its own ``auto-<strategy>-<symbol>`` ones (RiskPolicy ``spec.autoQuarantine``).
    Nothing else (no Secrets, no Pods)."""
    meta = strategy["metadata"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": worker_name(meta["name"]), "namespace": meta["namespace"],
                     "labels": worker_labels(meta["name"]), "ownerReferences": [owner_reference(strategy)]},
        "rules": [
            {"apiGroups": [api.GROUP], "resources": [api.STRATEGY_PLURAL, api.POLICY_PLURAL, api.QUARANTINE_PLURAL],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [api.GROUP], "resources": [f"{api.STRATEGY_PLURAL}/status"],
             "resourceNames": [meta["name"]], "verbs": ["get", "patch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            # RiskPolicy spec.autoQuarantine: the worker creates SymbolQuarantines itself
            # (create cannot be limited by name; patch only its own auto-<name>-<symbol>).
            {"apiGroups": [api.GROUP], "resources": [api.QUARANTINE_PLURAL], "verbs": ["create"]},
            {"apiGroups": [api.GROUP], "resources": [api.QUARANTINE_PLURAL], "verbs": ["patch"],
             "resourceNames": sorted(auto_quarantine_name(meta["name"], s)
                                     for s in ((strategy.get("spec") or {}).get("symbols") or []))},
        ],
    }


def desired_role_binding(strategy: dict) -> dict:
    """Binds the worker's Role to its ServiceAccount."""
    meta = strategy["metadata"]
    name = worker_name(meta["name"])
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": worker_labels(meta["name"]),
                     "ownerReferences": [owner_reference(strategy)]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": meta["namespace"]}],
    }


def rbac_key(strategy: dict) -> str:
    """What the worker RBAC of ``strategy`` depends on: its uid and its symbols (the
    Role names the strategy's ``auto-<strategy>-<symbol>`` SymbolQuarantines), as
    ``<uid>/<SYMBOL>,<SYMBOL>...`` (symbols sorted). A symbols change gives a new key,
    so the operator patches the Role again."""
    symbols = sorted(set((strategy.get("spec") or {}).get("symbols") or []))
    return f"{strategy['metadata']['uid']}/{','.join(symbols)}"


def rbac_in_place(service_accounts: list[dict], roles: list[dict], role_bindings: list[dict]) -> set[str]:
    """:func:`rbac_key` of the TradingStrategies whose worker ServiceAccount, Role
    (with exactly the rules of :func:`desired_role`) and RoleBinding (as
    :func:`desired_role_binding`) all exist, each with a controller owner reference to
    that strategy. The symbols are read back from the Role's auto-quarantine
    ``resourceNames`` (``auto-<strategy>-<symbol lower case>``).

    Inputs are the items of one LIST of each kind (plain dicts as the API returns
    them). A restarted operator seeds its "RBAC done" set from this instead of
    issuing three creates and a patch per strategy.
    """
    def owned(objs: list[dict]) -> dict[tuple[str, str, str], dict]:
        out = {}
        for o in objs:
            meta = o.get("metadata") or {}
            for ref in meta.get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") == api.STRATEGY_KIND:
                    out[(meta.get("namespace"), meta.get("name"), ref.get("uid"))] = o
        return out

    sas, rbs = owned(service_accounts), owned(role_bindings)
    done: set[str] = set()
    for (ns, name, uid), role in owned(roles).items():
        strategy_name = ((role.get("metadata") or {}).get("labels") or {}).get(api.LABEL_STRATEGY)
        if not strategy_name or worker_name(strategy_name) != name or (ns, name, uid) not in sas:
            continue
        rb = rbs.get((ns, name, uid))
        prefix = f"auto-{strategy_name}-"
        symbols = sorted({n[len(prefix):].upper() for r in role.get("rules") or []
                          for n in r.get("resourceNames") or [] if n.startswith(prefix)})
        want = {"metadata": {"name": strategy_name, "namespace": ns, "uid": uid}, "spec": {"symbols": symbols}}
        want_rb = desired_role_binding(want)
        if (rb is not None and role.get("rules") == desired_role(want)["rules"]
                and rb.get("roleRef") == want_rb["roleRef"] and rb.get("subjects") == want_rb["subjects"]):
            done.add(rbac_key(want))
    return done


def desired_pod(strategy: dict, cfg: OperatorConfig) -> dict:
    """The worker Pod: non-root, PSS-restricted security context, read-only root
    filesystem, market data mounted read-only, probes on the worker's endpoints.

    The pod binds its HTTP server to its own pod IP (``status.podIP``), which works
    on any cluster and lets several workers share a host in the local harness.
    """
    meta = strategy["metadata"]
    name = meta["name"]
    env = [
        {"name": "HEAN_STRATEGY_NAME", "value": name},
        {"name": "HEAN_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "HEAN_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "HEAN_BIND_ADDRESS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HEAN_HTTP_PORT", "value": "8080"},
        {"name": "HEAN_MARKETDATA_DIR", "value": cfg.marketdata_mount_path},
        {"name": "HEAN_STATUS_INTERVAL", "value": str(cfg.status_interval)},
        {"name": "HEAN_API_UNREACHABLE_SECONDS", "value": str(cfg.api_unreachable_seconds)},
        {"name": "HEAN_LOG_LEVEL", "value": cfg.worker_log_level},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    spec = strategy.get("spec") or {}
    env += bybit_env(spec, cfg)
    env += redis_env(cfg)
    mounts = [{"name": "marketdata", "mountPath": cfg.marketdata_mount_path, "readOnly": True}]
    volumes = [{"name": "marketdata", "hostPath": {"path": cfg.marketdata_host_path, "type": "Directory"}}]
    if spec.get("mode", "paper") in EXCHANGE_MODES:
        state = f"{cfg.worker_state_root.rstrip('/')}/{meta['namespace']}/{name}"
        env.append({"name": "HEAN_BYBIT_STATE_DIR", "value": state})
        mounts.append({"name": "state", "mountPath": state})
        volumes.append({"name": "state", "emptyDir": {"sizeLimit": "64Mi"}})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": worker_name(name), "namespace": meta["namespace"], "labels": worker_labels(name),
            "annotations": {api.ANNOTATION_SPEC_HASH: structural_hash(strategy.get("spec") or {})},
            "ownerReferences": [owner_reference(strategy)],
        },
        "spec": {
            "serviceAccountName": worker_name(name),
            "automountServiceAccountToken": True,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 15,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "worker",
                "image": cfg.worker_image,
                "imagePullPolicy": cfg.image_pull_policy,
                "command": ["python", "-m", "hean.worker"],
                "env": env,
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2,
                                   "timeoutSeconds": 2, "failureThreshold": 3},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 20,
                                  "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 6},
                "resources": cfg.worker_resources,
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        },
    }


def redis_env(cfg: OperatorConfig) -> list[dict]:
    """``HEAN_REDIS_URL`` (and ``HEAN_REDIS_PASSWORD`` if one is configured) for a worker,
    as ``secretKeyRef`` to :data:`WORKER_REDIS_SECRET` in the strategy's namespace (an
    external URL may carry credentials); none without Redis (state in memory)."""
    if not cfg.redis_url:
        return []
    env = [{"name": "HEAN_REDIS_URL", "valueFrom": {"secretKeyRef": {"name": WORKER_REDIS_SECRET, "key": "url"}}}]
    if cfg.redis_password:
        env.append({"name": "HEAN_REDIS_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": WORKER_REDIS_SECRET, "key": "password"}}})
    return env


def desired_redis_secret(namespace: str, cfg: OperatorConfig) -> dict | None:
    """The Secret :data:`WORKER_REDIS_SECRET` that hands the operator's Redis URL and
    password to the workers of ``namespace`` (None without Redis)."""
    import base64

    if not cfg.redis_url:
        return None
    data = {"url": cfg.redis_url}
    if cfg.redis_password:
        data["password"] = cfg.redis_password
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": WORKER_REDIS_SECRET, "namespace": namespace,
                         "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY}},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@dataclass(frozen=True)
class FinalizeAction:
    """What the TradingStrategy finalizer does next: ``delete-pod`` (stop the worker),
    ``wait`` (retry after ``after_seconds``), ``cleanup`` (the worker is gone: delete the
    strategy's Redis keys, then let the object go)."""

    kind: str
    reason: str = ""
    after_seconds: float = 0.0


def finalize_action(strategy: dict, pod: dict | None, cfg: OperatorConfig, now: datetime) -> FinalizeAction:
    """The finalizer's next step for a TradingStrategy being deleted.

    * paper: stop the worker at once (nothing to flatten: the paper account goes away);
    * exchange modes (testnet/demo/live): the worker sees the deletion and flattens
      (reduce-only market orders); the pod is stopped once the worker reports
      ``status.openPositions == 0`` or ``cfg.flatten_timeout_seconds`` after the
      deletion started (then positions may remain on the account: an Event says so);
    * a terminating pod: wait until it is gone (a replacement is never made);
    * no pod: ``cleanup`` - the worker cannot write anymore, the keys can go.
    """
    if pod is not None:
        if pod["metadata"].get("deletionTimestamp"):
            return FinalizeAction("wait", "WorkerTerminating", 1.0)
        spec = strategy.get("spec") or {}
        if spec.get("mode", "paper") in EXCHANGE_MODES:
            st = strategy.get("status") or {}
            started = parse_time(strategy["metadata"]["deletionTimestamp"]) \
                if strategy["metadata"].get("deletionTimestamp") else now
            waited = (now - started).total_seconds()
            if st.get("openPositions", 0) and waited < cfg.flatten_timeout_seconds:
                return FinalizeAction("wait", "WorkerFlattening", 1.0)
            if st.get("openPositions", 0):
                return FinalizeAction("delete-pod", "FlattenTimeout")
        return FinalizeAction("delete-pod", "StrategyDeleted")
    return FinalizeAction("cleanup", "WorkerGone")


# ---- observed pod state --------------------------------------------------------------
def pod_state(pod: dict | None) -> tuple[str, str]:
    """Classify a worker pod: ``Missing``, ``Terminating``, ``Pending``, ``CrashLooping``,
    ``Running`` (not ready), ``Ready``, ``Failed`` or ``Succeeded``, with a message."""
    if pod is None:
        return "Missing", "no worker pod"
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating", "worker pod is terminating"
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    if phase in ("Failed", "Succeeded"):
        return phase, f"worker pod {phase.lower()}: {status.get('reason') or status.get('message') or ''}".rstrip(": ")
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") == "CrashLoopBackOff":
            return "CrashLooping", f"worker container crash-looping (restarts: {cs.get('restartCount', 0)})"
    if phase == "Running":
        for c in status.get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") == "True":
                return "Ready", "worker pod is ready"
        return "Running", "worker pod is running but not ready"
    return "Pending", "worker pod is pending"


@dataclass(frozen=True)
class PodAction:
    """What to do with the worker pod: ``kind`` in ``none``, ``create``, ``delete``,
    ``wait`` (retry after ``after_seconds``), with the reason for the log/Event."""

    kind: str
    reason: str = ""
    after_seconds: float = 0.0


def pod_action(strategy: dict, pod: dict | None, admission: Admission, policy_exists: bool,
               failures: int, last_create: datetime | None, now: datetime) -> PodAction:
    """Decide the next step for a strategy's worker pod (at most one at a time).

    * not admitted (e.g. live disabled) -> delete any pod, create none;
    * a pod from an older structural spec, or one that ended (Failed/Succeeded) -> delete;
      the replacement is created only after the old pod is gone (never two at once).
      A pod force-deleted while its process still runs (a partitioned node) is covered
      by the worker's fenced lease in Redis: the replacement waits out the old lease
      and the old worker is fenced from then on (docs/reliability.md);
    * missing -> create, after an exponential backoff of ``2 s * 2^(failures-1)`` (max
      300 s) since the last creation when earlier pods failed.
    A missing RiskPolicy does not stop the pod: the worker runs and refuses entries.
    """
    if not admission.ok:
        if admission.keep_worker:
            return PodAction("none", admission.reason)
        return PodAction("delete", admission.reason) if pod is not None and not pod["metadata"].get("deletionTimestamp") else PodAction("none")
    if pod is not None:
        if pod["metadata"].get("deletionTimestamp"):
            return PodAction("none", "terminating")
        want = structural_hash(strategy.get("spec") or {})
        have = (pod["metadata"].get("annotations") or {}).get(api.ANNOTATION_SPEC_HASH)
        if have != want:
            return PodAction("delete", "SpecChanged")
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Failed", "Succeeded"):
            return PodAction("delete", f"Worker{phase}")
        return PodAction("none")
    if failures > 0 and last_create is not None:
        delay = min(POD_BACKOFF_BASE_SECONDS * 2 ** (failures - 1), POD_BACKOFF_MAX_SECONDS)
        ready_at = last_create + timedelta(seconds=delay)
        if now < ready_at:
            return PodAction("wait", "Backoff", (ready_at - now).total_seconds())
    return PodAction("create", "WorkerMissing")


# ---- conditions ------------------------------------------------------------------------
def condition(type_: str, status: bool | None, reason: str, message: str, generation: int | None) -> dict:
    """A metav1.Condition without ``lastTransitionTime`` (added by :func:`merge_conditions`)."""
    s = "Unknown" if status is None else ("True" if status else "False")
    return {"type": type_, "status": s, "reason": reason, "message": message[:1024], "observedGeneration": generation}


def merge_conditions(old: list[dict] | None, new: list[dict], now: datetime) -> list[dict]:
    """Return ``new`` with ``lastTransitionTime`` kept from ``old`` where a condition's
    status did not change, and set to ``now`` where it did or is new. Conditions of
    other types in ``old`` (owned by someone else) are kept."""
    old_by = {c.get("type"): c for c in old or []}
    out = []
    for c in new:
        prev = old_by.pop(c["type"], None)
        ltt = prev.get("lastTransitionTime") if prev and prev.get("status") == c["status"] else None
        out.append({**c, "lastTransitionTime": ltt or _fmt(now)})
    out.extend(old_by[t] for t in old_by if t not in {c["type"] for c in new})
    return out


def strategy_status(strategy: dict, admission: Admission, policy: dict | None, pod: dict | None,
                    failures: int, now: datetime) -> dict:
    """The operator-owned status keys of a TradingStrategy: ``observedGeneration``,
    ``conditions`` (Ready, PolicyResolved, Trading, RiskLimited), ``phase``,
    ``workerPod`` and ``restarts``. Reads the worker-owned keys (riskState,
    tradingActive, lastHeartbeat, notTradingReasons) to derive Trading and
    RiskLimited."""
    meta = strategy["metadata"]
    spec = strategy.get("spec") or {}
    st = strategy.get("status") or {}
    gen = meta.get("generation")
    policy_name = (spec.get("riskPolicyRef") or {}).get("name", "")
    pstate, pmsg = pod_state(pod)

    if policy is not None:
        resolved = condition(api.COND_POLICY_RESOLVED, True, "RiskPolicyFound", f"RiskPolicy {policy_name!r} found", gen)
    else:
        resolved = condition(api.COND_POLICY_RESOLVED, False, "RiskPolicyNotFound",
                             f"RiskPolicy {policy_name!r} not found in namespace {meta.get('namespace')!r}; "
                             "no entries are made until it exists", gen)

    if not admission.ok:
        ready = condition(api.COND_READY, False, admission.reason, admission.message, gen)
    elif policy is None:
        ready = condition(api.COND_READY, False, "RiskPolicyNotFound", resolved["message"], gen)
    elif pstate == "Ready":
        ready = condition(api.COND_READY, True, "WorkerReady", f"worker pod {worker_name(meta['name'])} is ready", gen)
    else:
        reason = {"Missing": "WorkerPending", "Pending": "WorkerPending", "Terminating": "WorkerRestarting",
                  "CrashLooping": "WorkerCrashLooping", "Running": "WorkerNotReady", "Failed": "WorkerFailed",
                  "Succeeded": "WorkerFailed"}[pstate]
        ready = condition(api.COND_READY, False, reason, pmsg, gen)

    heartbeat = parse_time(st.get("lastHeartbeat"))
    fresh = heartbeat is not None and (now - heartbeat).total_seconds() <= HEARTBEAT_TIMEOUT_SECONDS
    reasons = st.get("notTradingReasons") or []
    if ready["status"] != "True":
        trading = condition(api.COND_TRADING, False, "NotReady", "the worker is not ready", gen)
    elif spec.get("paused"):
        trading = condition(api.COND_TRADING, False, "Paused", "spec.paused is true: no new orders", gen)
    elif not fresh:
        trading = condition(api.COND_TRADING, False, "HeartbeatStale",
                            f"no worker heartbeat for more than {HEARTBEAT_TIMEOUT_SECONDS}s", gen)
    elif st.get("tradingActive"):
        trading = condition(api.COND_TRADING, True, "Trading",
                            f"trading {', '.join(spec.get('symbols') or [])} in {spec.get('mode', 'paper')} mode", gen)
    else:
        top = reasons[0]["reason"] if reasons else "Unknown"
        trading = condition(api.COND_TRADING, False, camel(top),
                            "not trading: " + ", ".join(r["reason"] for r in reasons[:5]), gen)

    risk = st.get("riskState")
    if risk is None:
        limited = condition(api.COND_RISK_LIMITED, None, "NoData", "the worker has not reported a risk state", gen)
    elif risk == api.RISK_NORMAL:
        limited = condition(api.COND_RISK_LIMITED, False, "Normal", "risk state NORMAL", gen)
    else:
        limited = condition(api.COND_RISK_LIMITED, True, camel(risk),
                            f"risk state {risk}: {', '.join(st.get('riskReasons') or [])}", gen)

    if not admission.ok:
        phase = "Failed"
    elif ready["status"] != "True":
        phase = "Pending"
    elif risk == api.RISK_HARD_STOP:
        phase = "Stopped"
    elif spec.get("paused"):
        phase = "Paused"
    else:
        phase = "Running"
    conditions = merge_conditions(st.get("conditions"), [ready, resolved, trading, limited], now)
    return {"observedGeneration": gen, "conditions": conditions, "phase": phase,
            "workerPod": worker_name(meta["name"]) if pod is not None else None, "restarts": failures}


def condition_transitions(old: list[dict] | None, new: list[dict]) -> list[dict]:
    """Conditions in ``new`` whose status or reason differ from ``old`` (each is one
    Event-worthy transition)."""
    old_by = {c.get("type"): c for c in old or []}
    out = []
    for c in new:
        p = old_by.get(c["type"])
        if p is None or p.get("status") != c["status"] or p.get("reason") != c["reason"]:
            out.append(c)
    return out


#: Reasons a condition passes through on every normal start-up (pod created, then
#: running, then ready). They are Events only when they are a regression, i.e. the
#: condition was True before: 200 strategies starting at once otherwise post 600
#: Events that say nothing a user acts on (and cost the API server 600 writes).
PROGRESS_REASONS = frozenset({"WorkerPending", "WorkerNotReady", "NotReady"})


def event_worthy(old: dict | None, new: dict) -> bool:
    """Whether the condition transition ``old`` -> ``new`` (condition dicts; ``old``
    None when the condition is new) deserves an Event: always, except entering a
    start-up progress reason (:data:`PROGRESS_REASONS`) from anything but True."""
    if new.get("reason") in PROGRESS_REASONS:
        return (old or {}).get("status") == "True"
    return True


def status_changed(current: dict | None, desired: dict) -> bool:
    """True if any key of ``desired`` differs from ``current`` (skip no-op writes)."""
    current = current or {}
    return any(current.get(k) != v for k, v in desired.items())


# ---- RiskPolicy and SymbolQuarantine status ---------------------------------------------
def policy_status(policy: dict, strategies: list[dict], now: datetime) -> dict:
    """RiskPolicy status: how many strategies reference it, their worst risk state,
    a count per state, and a ``Ready`` condition."""
    meta = policy["metadata"]
    users = [s for s in strategies if (s.get("spec") or {}).get("riskPolicyRef", {}).get("name") == meta["name"]
             and s["metadata"].get("namespace") == meta.get("namespace")]
    states: dict[str, int] = {}
    worst = api.RISK_NORMAL
    for s in users:
        r = (s.get("status") or {}).get("riskState")
        if r in api.RISK_STATES:
            states[r] = states.get(r, 0) + 1
            if api.risk_severity(r) > api.risk_severity(worst):
                worst = r
    gen = meta.get("generation")
    ready = condition("Ready", True, "Accepted", f"referenced by {len(users)} strategies", gen)
    old = (policy.get("status") or {}).get("conditions")
    return {"observedGeneration": gen, "strategies": len(users), "worstState": worst, "states": states,
            "conditions": merge_conditions(old, [ready], now)}


def quarantine_status(q: dict, strategies: list[dict], now: datetime) -> dict:
    """SymbolQuarantine status: ``active`` (now before expiry), computed
    ``expiresAt``, how many strategies in its namespace trade the symbol and match
    its selector, an ``Active`` condition, and a ``Ready`` condition that is False
    with reason ``NoMatchingStrategies`` while the quarantine applies to no
    TradingStrategy (a cross-object problem the schema cannot see: a selector or
    symbol that matches nothing blocks nothing)."""
    meta = q["metadata"]
    spec = q.get("spec") or {}
    expiry = quarantine_expiry(q)
    active = quarantine_active(q, now)
    affected = [s for s in strategies if s["metadata"].get("namespace") == meta.get("namespace")
                and spec.get("symbol") in ((s.get("spec") or {}).get("symbols") or [])
                and selector_matches(spec.get("strategySelector"), s["metadata"].get("labels") or {})]
    gen = meta.get("generation")
    if active:
        cond = condition("Active", True, "Active", f"new entries on {spec.get('symbol')} are blocked until {_fmt(expiry)}", gen)
    else:
        cond = condition("Active", False, "Expired", f"expired at {_fmt(expiry)}" if expiry else "no expiry", gen)
    if affected:
        ready = condition("Ready", True, "Applied",
                          f"applies to {len(affected)} TradingStrategies trading {spec.get('symbol')}", gen)
    else:
        ready = condition("Ready", False, "NoMatchingStrategies",
                          f"no TradingStrategy in namespace {meta.get('namespace')!r} trades {spec.get('symbol')} "
                          "and matches spec.strategySelector: the quarantine blocks nothing", gen)
    old = (q.get("status") or {}).get("conditions")
    return {"observedGeneration": gen, "active": active, "expiresAt": _fmt(expiry) if expiry else None,
            "affectedStrategies": len(affected), "conditions": merge_conditions(old, [cond, ready], now)}
