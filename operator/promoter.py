"""I/O around the promotion state machine (:mod:`hean.operator.promotion`).

Called from :func:`hean.operator.handlers.reconcile_strategy` for strategies with
``spec.promotion``:

1. :func:`prepare` gathers the inputs - the analysis measurement (PromQL over HTTP
   against ``HEAN_PROMETHEUS_URL`` with an async httpx client, when one is due), the
   anti-overfitting gate report (the workers' ``/trades`` over HTTP, evaluated with
   :func:`hean.selector.evaluate`, at most every :data:`GATES_EVERY_SECONDS`),
   active quarantines, the risk state, the approvals, the live-trading admission per
   exchange mode - and runs one :func:`hean.operator.promotion.step`;
2. :func:`effective_strategy` gives the copy of the strategy the ordinary
   reconcile runs the worker pod from (``spec.mode`` = the stage, ``spec.params`` =
   the revision it runs) and :func:`decorate_pod` adds the promotion env and a
   spec-hash that changes with the stage, the capital fraction, the revision and the
   halt flag - so a change replaces the worker pod (the chosen mechanism: a restart
   per stage/step change; the worker reads ``HEAN_EFFECTIVE_MODE``,
   ``HEAN_CAPITAL_FRACTION``, ``HEAN_PARAMS_JSON``, ``HEAN_PROMOTION_HALTED``,
   ``HEAN_ROLE``, ``HEAN_REVISION``);
3. :func:`reconcile_candidate` creates or deletes the shadow pod
   ``<name>-candidate`` (paper, the candidate's params, no status writes);
4. :func:`merge_status` adds ``status.promotion`` and the ``Promoted``/``Stalled``
   conditions to the operator's status patch; :func:`post_events` posts the Events.

Every live-trading gate still applies: the effective strategy goes through
``reconcile.admit`` like any other (the operator's live switch, the CEL-enforced
phrase, the Secret, the RiskPolicy), and the state machine does not enter an
exchange stage whose admission fails.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime

import httpx
from pydantic import ValidationError

from hean import api
from hean.kube import post_event
from hean.promotion import COND_PROMOTED, COND_STALLED, PromotionSpec, approvals
from hean.quarantine import quarantine_active, selector_matches
from hean.selector import Trade, evaluate

from . import promotion as pm
from . import reconcile as rc

log = logging.getLogger("hean.operator.promotion")
GATES_EVERY_SECONDS = 3.0
HTTP_TIMEOUT = 3.0
LABEL_ROLE = "hean.io/role"
EFFECTIVE_KEY = "promotionEffective"  # operator-internal key of the effective spec (never written)


def prometheus_url() -> str | None:
    """``HEAN_PROMETHEUS_URL`` (helm value ``promotion.prometheusUrl``), or None."""
    return (os.environ.get("HEAN_PROMETHEUS_URL") or "").rstrip("/") or None


def candidate_name(strategy_name: str) -> str:
    """Name of the shadow candidate pod of a strategy."""
    return f"{strategy_name}-candidate"


@dataclass
class Ctx:
    """One strategy's promotion decision for this reconcile."""

    spec: PromotionSpec
    decision: pm.Decision


class Promoter:
    """Per-operator promotion bookkeeping: the last written ``status.promotion`` per
    strategy (authoritative over a stale watch cache), gate report cache, candidate
    pods, the HTTP client."""

    def __init__(self) -> None:
        self.written: dict[tuple[str, str], dict] = {}
        self.gates: dict[tuple[str, str], tuple[float, str, pm.GateReport | None]] = {}
        self.candidates: dict[tuple[str, str], dict] = {}
        self.http = httpx.AsyncClient(timeout=HTTP_TIMEOUT)


# ---- inputs ----------------------------------------------------------------------------
def render_query(query: str, namespace: str, strategy: str, pod: str) -> str:
    """Substitute ``{{namespace}}``, ``{{strategy}}`` and ``{{pod}}`` in a PromQL query."""
    return query.replace("{{namespace}}", namespace).replace("{{strategy}}", strategy).replace("{{pod}}", pod)


def sample_value(body: dict) -> float | None:
    """The single number of a Prometheus ``/api/v1/query`` response: a scalar, or an
    instant vector with exactly one sample; None for no data, several samples, NaN
    or an error response (https://prometheus.io/docs/prometheus/latest/querying/api/)."""
    if body.get("status") != "success":
        return None
    data = body.get("data") or {}
    rtype, result = data.get("resultType"), data.get("result")
    try:
        if rtype == "scalar":
            v = float(result[1])
        elif rtype == "vector" and isinstance(result, list) and len(result) == 1:
            v = float(result[0]["value"][1])
        else:
            return None
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return v if math.isfinite(v) else None


async def measure(pr: Promoter, p: PromotionSpec, namespace: str, strategy: str, pod: str) -> pm.Measurement:
    """Run every analysis query once against Prometheus and judge the values."""
    assert p.analysis is not None
    url = prometheus_url()
    values: dict[str, float | None] = {}
    for q in p.analysis.queries:
        if url is None:
            values[q.name] = None
            continue
        expr = render_query(q.query, namespace, strategy, pod)
        try:
            r = await pr.http.get(f"{url}/api/v1/query", params={"query": expr})
            values[q.name] = sample_value(r.json())
        except (httpx.HTTPError, ValueError) as e:
            log.warning("analysis query %s of %s/%s failed: %s", q.name, namespace, strategy, e)
            values[q.name] = None
    m = pm.judge(p.analysis, values)
    if url is None:
        m = pm.Measurement(m.outcome, m.message + " (HEAN_PROMETHEUS_URL is not set)")
    return m


async def fetch_trades(pr: Promoter, pod: dict | None, window: int = 60) -> dict | None:
    """A worker pod's ``/trades?window=`` document, or None (no pod IP, not ready,
    error)."""
    ip = ((pod or {}).get("status") or {}).get("podIP")
    if not ip:
        return None
    try:
        r = await pr.http.get(f"http://{ip}:8080/trades", params={"window": window})
        if r.status_code != 200:
            return None
        doc = r.json()
        return doc if doc.get("ready") else None
    except (httpx.HTTPError, ValueError):
        return None


async def gate_report(pr: Promoter, key: tuple[str, str], p: PromotionSpec, rev: str, worker_pod: dict | None,
                      cand_pod: dict | None, promoted: str | None) -> pm.GateReport | None:
    """The gate report of the candidate revision: from the shadow pod when it runs
    beside a promoted revision (then with the shadow comparison), else from the
    worker pod if it runs that revision. Cached for :data:`GATES_EVERY_SECONDS`."""
    now = time.monotonic()
    cached = pr.gates.get(key)
    if cached is not None and cached[1] == rev and now - cached[0] < GATES_EVERY_SECONDS:
        return cached[2]
    shadowing = bool(promoted) and promoted != rev
    doc = await fetch_trades(pr, cand_pod if shadowing else worker_pod, p.gates.regimeWindowBars)
    report = None
    if doc is not None and doc.get("revision") == rev:
        trades = [Trade.from_dict(t) for t in doc.get("trades") or []]
        shadow = None
        if shadowing:
            other = await fetch_trades(pr, worker_pod, p.gates.regimeWindowBars)
            if other is not None:
                shadow = (float(doc.get("netPnlUsdt") or 0), float(other.get("netPnlUsdt") or 0),
                          p.shadow.toleranceUsdt)
        verdict, results = evaluate(trades, p.gates, shadow)
        if shadowing and shadow is None and verdict == "Passed":
            verdict = "Waiting"
            results.append({"name": "shadow", "passed": False, "message": "the promoted worker's figures are "
                                                                          "not available yet"})
        report = pm.GateReport(verdict, results)
    pr.gates[key] = (now, rev, report)
    return report


def quarantined_symbols(strategy: dict, quarantines: list[dict], now: datetime) -> tuple[str, ...]:
    """The strategy's symbols blocked by an active SymbolQuarantine of its namespace."""
    meta = strategy["metadata"]
    symbols = set((strategy.get("spec") or {}).get("symbols") or [])
    out = set()
    for q in quarantines:
        qs = q.get("spec") or {}
        if q["metadata"].get("namespace") != meta.get("namespace") or qs.get("symbol") not in symbols:
            continue
        if quarantine_active(q, now) and selector_matches(qs.get("strategySelector"), meta.get("labels") or {}):
            out.add(qs["symbol"])
    return tuple(sorted(out))


def admissions(strategy: dict, cfg: rc.OperatorConfig, policy_exists: bool) -> dict:
    """``reconcile.admit`` of the strategy as it would run in each exchange stage."""
    out = {}
    for mode in ("testnet", "live"):
        spec = {**(strategy.get("spec") or {}), "mode": mode}
        a = rc.admit(spec, cfg, policy_exists)
        out[mode] = (a.ok, f"{a.reason}: {a.message}" if not a.ok else "")
    return out


async def prepare(pr: Promoter, key: tuple[str, str], strategy: dict, cfg: rc.OperatorConfig,
                  policy_exists: bool, quarantines: list[dict], worker_pod: dict | None,
                  now: datetime) -> Ctx | None:
    """Run one promotion decision for ``strategy`` (None without ``spec.promotion``
    or when it does not parse: the CRD validates it, so that only happens with an
    older CRD; the error is logged)."""
    spec = strategy.get("spec") or {}
    if not spec.get("promotion"):
        pr.written.pop(key, None)
        return None
    try:
        p = PromotionSpec.model_validate(spec["promotion"])
    except ValidationError as e:
        log.error("%s/%s: spec.promotion is invalid: %s", key[0], key[1], e)
        return None
    st = strategy.get("status") or {}
    current = pr.written.get(key, st.get("promotion") or {})
    measurement = None
    rev = pm.params_revision(spec)
    if current.get("candidateRevision") == rev and pm.measurement_due(p, current, now):
        shadowing = current.get("stage", "paper") == "paper" and current.get("promotedRevision") not in (None, rev)
        pod = candidate_name(key[1]) if shadowing else rc.worker_name(key[1])
        measurement = await measure(pr, p, key[0], key[1], pod)
    ready = True
    if current.get("candidateRevision") == rev:
        main, cand = pm.effective(p, spec, current)
        ready = (pod_current(strategy, cand, "candidate", pr.candidates.get(key)) if cand is not None
                 else pod_current(strategy, main, "worker", worker_pod))
    gates = None
    if current.get("candidateRevision") == rev and pm.gates_due(current):
        gates = await gate_report(pr, key, p, rev, worker_pod, pr.candidates.get(key),
                                  current.get("promotedRevision"))
    inputs = pm.Inputs(
        spec=spec, promotion=p, status=current, now=now, measurement=measurement, gates=gates,
        quarantined=quarantined_symbols(strategy, quarantines, now), risk_state=st.get("riskState"),
        approvals=frozenset(approvals(strategy["metadata"].get("annotations"))),
        open_positions=int(st.get("openPositions") or 0),
        positions_at=rc.parse_time(st.get("lastHeartbeat")),
        admissions=admissions(strategy, cfg, policy_exists), worker_ready=ready)
    return Ctx(p, pm.step(inputs, strategy["metadata"].get("generation")))


# ---- outputs -------------------------------------------------------------------------------
def effective_strategy(strategy: dict, eff: pm.Effective, role: str = "worker") -> dict:
    """A copy of ``strategy`` as the pod for ``eff`` runs it: ``spec.mode`` = the
    stage, ``spec.params`` = the revision's params, and the operator-internal
    :data:`EFFECTIVE_KEY` that ``reconcile.structural_hash`` includes (so any change
    of stage, fraction, revision, halt or role replaces the pod)."""
    s = copy.deepcopy(strategy)
    spec = s.setdefault("spec", {})
    spec["mode"] = eff.mode
    spec["params"] = dict(eff.params)
    spec[EFFECTIVE_KEY] = {"mode": eff.mode, "capitalFraction": eff.capital_fraction, "revision": eff.revision,
                           "halted": eff.halted, "role": role}
    return s


def decorate_pod(body: dict, eff: pm.Effective, role: str = "worker") -> dict:
    """Add the promotion env (and, for the candidate, its name and role label) to a
    pod from ``reconcile.desired_pod``."""
    c = body["spec"]["containers"][0]
    c["env"] = [e for e in c["env"] if not e["name"].startswith("HEAN_PROMOTION_")] + [
        {"name": "HEAN_EFFECTIVE_MODE", "value": eff.mode},
        {"name": "HEAN_CAPITAL_FRACTION", "value": repr(float(eff.capital_fraction))},
        {"name": "HEAN_PARAMS_JSON", "value": json.dumps(eff.params, sort_keys=True, separators=(",", ":"))},
        {"name": "HEAN_PROMOTION_HALTED", "value": "true" if eff.halted else "false"},
        {"name": "HEAN_ROLE", "value": role},
        {"name": "HEAN_REVISION", "value": eff.revision},
    ]
    body["metadata"]["labels"][LABEL_ROLE] = role
    if role == "candidate":
        body["metadata"]["name"] = candidate_name(body["metadata"]["labels"][api.LABEL_STRATEGY])
    return body


def desired_candidate(strategy: dict, eff: pm.Effective, cfg: rc.OperatorConfig) -> dict:
    """The shadow candidate pod: paper, the candidate's params, role candidate."""
    s = effective_strategy(strategy, eff, "candidate")
    return decorate_pod(rc.desired_pod(s, cfg), eff, "candidate")


def pod_current(strategy: dict, eff: pm.Effective, role: str, pod: dict | None) -> bool:
    """True if ``pod`` runs ``eff`` (its spec-hash is the effective one) and is Ready."""
    if pod is None or pod["metadata"].get("deletionTimestamp"):
        return False
    want = rc.structural_hash(effective_strategy(strategy, eff, role)["spec"])
    if pod_hash(pod) != want:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_hash(pod: dict) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(api.ANNOTATION_SPEC_HASH)


async def reconcile_candidate(pr: Promoter, state, key: tuple[str, str], strategy: dict, ctx: Ctx | None) -> None:
    """Create, replace or delete the shadow candidate pod (one at a time)."""
    ns = key[0]
    have = pr.candidates.get(key)
    want = None
    if ctx is not None and ctx.decision.candidate is not None:
        want = desired_candidate(strategy, ctx.decision.candidate, state.cfg)
    from kubernetes_asyncio.client.exceptions import ApiException

    if have is not None and not have["metadata"].get("deletionTimestamp") and (
            want is None or pod_hash(have) != pod_hash(want)):
        try:
            await state.core.delete_namespaced_pod(have["metadata"]["name"], ns)
        except ApiException as e:
            if e.status != 404:
                raise
        return
    if want is not None and have is None:
        try:
            created = await state.core.create_namespaced_pod(ns, want)
            pr.candidates[key] = state.api_client.sanitize_for_serialization(created)
            await post_event(state.api_client, strategy, "CandidateCreated",
                             f"created shadow pod {want['metadata']['name']} for revision "
                             f"{ctx.decision.candidate.revision} (paper)", component="hean-operator")
        except ApiException as e:
            if e.status != 409:
                raise


def merge_status(desired: dict, ctx: Ctx | None, current: dict | None, now: datetime) -> dict:
    """Add ``status.promotion`` and the Promoted/Stalled conditions to the
    operator's status patch (``lastTransitionTime`` kept where status did not
    change)."""
    if ctx is None:
        return desired
    desired["promotion"] = ctx.decision.status
    old = [c for c in (current or {}).get("conditions") or [] if c.get("type") in (COND_PROMOTED, COND_STALLED)]
    mine = rc.merge_conditions(old, ctx.decision.conditions, now)
    desired["conditions"] = [c for c in desired["conditions"] if c["type"] not in (COND_PROMOTED, COND_STALLED)] + mine
    return desired


async def post_events(pr: Promoter, state, key: tuple[str, str], strategy: dict, ctx: Ctx | None) -> None:
    """Remember the written ``status.promotion`` and post the decision's Events."""
    if ctx is None:
        return
    pr.written[key] = ctx.decision.status
    for reason, message, type_ in ctx.decision.events:
        log.info("%s/%s: %s %s", key[0], key[1], reason, message)
        await post_event(state.api_client, strategy, reason, message, type_, "hean-operator")


def effective_hash(spec: dict) -> str:
    """Hash (16 hex) of the operator-internal effective-promotion key of a spec (""
    when absent): ``reconcile.structural_hash`` appends it."""
    eff = spec.get(EFFECTIVE_KEY)
    if eff is None:
        return ""
    return hashlib.sha256(json.dumps(eff, sort_keys=True).encode()).hexdigest()[:16]
