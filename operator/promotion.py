"""The progressive-promotion state machine (pure: no I/O, no clock of its own).

Argo Rollouts and Flagger walk a Deployment through canary steps gated by metric
analysis; this walks a strategy *revision* (the hash of ``spec.params``, see
:func:`hean.promotion.params_revision`) through the trading stages ``paper`` ->
``testnet`` -> ``live`` and the live capital steps of ``spec.promotion``
(:class:`hean.promotion.PromotionSpec`). One call of :func:`step` takes everything
the decision needs (the spec, the current ``status.promotion``, the analysis
measurement taken now if one was due, the anti-overfitting gate report, active
quarantines, the risk state, the approvals, the open positions, the live-trading
admission per mode, the time) and returns the next ``status.promotion``, the
``Promoted`` and ``Stalled`` conditions, the Events to post and what the worker pods
must run (:class:`Effective`). The kopf wiring (:mod:`hean.operator.promoter`) does
the I/O.

Sub-states (``status.promotion.state``, also the ``Promoted`` condition's reason):

* ``Soaking`` - the revision runs at its position for ``soakSeconds`` of the stage;
  at the end of the paper soak the anti-overfitting gates (and, beside a promoted
  revision, the shadow comparison) must pass: not enough trades keeps it soaking,
  a failed gate is ``Refused``.
* ``Analyzing`` - measurements ``intervalSeconds`` apart (after
  ``initialDelaySeconds``) until ``count`` of them succeeded (Event
  ``PromotionStepSucceeded``); more than ``failureLimit`` failures fail the stage,
  more than ``inconclusiveLimit`` inconclusive ones (no data included) pause for
  approval.
* ``AwaitingApproval`` - entering live, a live step above the approval fraction,
  or an inconclusive analysis, until ``hean.io/approve-promotion`` names
  ``<revision>/<gate>``.
* ``Paused`` - an active SymbolQuarantine on one of the strategy's symbols, a risk
  state above ``NORMAL``, or a live-trading gate that does not admit the next
  mode; on resume the current stage's soak starts over.
* ``Flattening`` - a failed exchange stage: the worker is halted (flattens, no new
  entries) until it reports no open position, then ``Demoted``.
* ``Demoted`` / ``Halted`` / ``Refused`` - the revision failed (``Stalled=True``);
  it is not retried until ``spec.params`` changes.
* ``Succeeded`` - every stage passed; the revision is the promoted revision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from hean import api
from hean.promotion import (
    COND_PROMOTED,
    COND_STALLED,
    AnalysisSpec,
    PromotionSpec,
    condition_holds,
    gate_id,
    params_revision,
)

MAX_RESULTS = 10
EXCHANGE_STAGES = ("testnet", "live")

SOAKING, ANALYZING, AWAITING, PAUSED = "Soaking", "Analyzing", "AwaitingApproval", "Paused"
FLATTENING, DEMOTED, HALTED, REFUSED, SUCCEEDED = "Flattening", "Demoted", "Halted", "Refused", "Succeeded"
STALLED_STATES = (FLATTENING, DEMOTED, HALTED, REFUSED)


def _fmt(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(s: str | None) -> datetime | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


# ---- measurements ----------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """One analysis measurement: ``outcome`` ``Successful``, ``Failed`` or
    ``Inconclusive``; ``message`` lists each query's value."""

    outcome: str
    message: str = ""


def judge(analysis: AnalysisSpec, values: dict[str, float | None]) -> Measurement:
    """Judge one measurement from the queries' values (query name -> number, None =
    no data).

    A query with no data is inconclusive; one meeting its ``failureCondition`` (or,
    without one, missing its ``successCondition``) fails; one meeting neither is
    inconclusive. The measurement fails if any query failed, else is inconclusive
    if any was, else succeeds (Argo Rollouts' rule for multiple metrics).
    """
    failed, inconclusive, parts = [], [], []
    for q in analysis.queries:
        v = values.get(q.name)
        if v is None:
            inconclusive.append(q.name)
            parts.append(f"{q.name}=no data")
            continue
        parts.append(f"{q.name}={v:.6g}")
        if q.failureCondition is not None:
            if condition_holds(q.failureCondition, v):
                failed.append(q.name)
            elif not condition_holds(q.successCondition, v):
                inconclusive.append(q.name)
        elif not condition_holds(q.successCondition, v):
            failed.append(q.name)
    outcome = "Failed" if failed else "Inconclusive" if inconclusive else "Successful"
    why = f" (failed: {', '.join(failed)})" if failed else f" (inconclusive: {', '.join(inconclusive)})" \
        if inconclusive else ""
    return Measurement(outcome, ", ".join(parts) + why)


# ---- gate report (from hean.selector, evaluated by the wiring) --------------------------
@dataclass(frozen=True)
class GateReport:
    """The anti-overfitting gates of a revision: ``verdict`` ``Passed``, ``Waiting``
    (too few closed trades so far) or ``Refused``; ``results`` a list of ``{name,
    passed, message}`` dicts for ``status.promotion.gates``."""

    verdict: str
    results: list[dict] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """The failed gates' messages, joined (empty when none failed)."""
        return "; ".join(f"{r['name']}: {r['message']}" for r in self.results if not r.get("passed"))


# ---- inputs and outputs ------------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    """Everything one decision reads.

    ``spec`` the TradingStrategy spec dict (``params`` included); ``promotion`` its
    parsed ``spec.promotion``; ``status`` the current ``status.promotion`` ({} at
    first); ``now`` an aware datetime; ``measurement`` the measurement taken now if
    :func:`measurement_due` said so; ``gates`` the gate report of the revision running
    in paper (None: not available yet); ``quarantined`` the strategy's symbols an
    active SymbolQuarantine blocks; ``risk_state`` the worst of the strategy's and its
    RiskPolicy's states; ``approvals`` from :func:`hean.promotion.approvals`;
    ``open_positions`` and ``positions_at`` the worker's ``status.openPositions`` and
    ``status.lastHeartbeat``; ``admissions`` mode -> ``(ok, reason)`` of the
    operator's live-trading gates (``reconcile.admit``) for each exchange mode;
    ``worker_ready`` whether the pod that runs the revision (the worker, or the
    shadow candidate) already runs the current position and is Ready - the soak
    clock starts only then.
    """

    spec: dict
    promotion: PromotionSpec
    status: dict
    now: datetime
    measurement: Measurement | None = None
    gates: GateReport | None = None
    quarantined: tuple[str, ...] = ()
    risk_state: str | None = api.RISK_NORMAL
    approvals: frozenset[str] = frozenset()
    open_positions: int = 0
    positions_at: datetime | None = None
    admissions: dict = field(default_factory=dict)
    worker_ready: bool = True


@dataclass(frozen=True)
class Effective:
    """What one worker pod runs: ``mode`` (paper/testnet/live), ``capital_fraction``
    of ``spec.capital``, ``params`` (a ``spec.params`` dict), its ``revision`` and
    ``halted`` (flatten, no new entries)."""

    mode: str
    capital_fraction: float
    params: dict
    revision: str
    halted: bool = False


@dataclass
class Decision:
    """The result of :func:`step`: the next ``status.promotion``, the ``Promoted`` and
    ``Stalled`` conditions (without ``lastTransitionTime``), Events as ``(reason,
    message, type)``, the main worker's :class:`Effective` and the shadow candidate's
    (None: no candidate pod)."""

    status: dict
    conditions: list[dict]
    events: list[tuple[str, str, str]]
    worker: Effective
    candidate: Effective | None


# ---- timing --------------------------------------------------------------------------------
def measurement_due(promotion: PromotionSpec, status: dict, now: datetime) -> bool:
    """True if the state is ``Analyzing`` and the next measurement's time has come:
    ``analysisStartedAt + initialDelaySeconds + k * intervalSeconds`` for the k-th
    (0-based) measurement."""
    if status.get("state") != ANALYZING or promotion.analysis is None:
        return False
    started = _parse(status.get("analysisStartedAt"))
    if started is None:
        return True
    a = promotion.analysis
    k = len(status.get("measurements") or [])
    return (now - started).total_seconds() >= a.initialDelaySeconds + k * a.intervalSeconds


def gates_due(status: dict) -> bool:
    """True if the wiring should evaluate the anti-overfitting gates now (the paper
    soak is running or ending)."""
    return status.get("stage", "paper") == "paper" and status.get("state") in (SOAKING, None)


# ---- the machine -----------------------------------------------------------------------------
def _condition(type_: str, status: bool, reason: str, message: str, gen: int | None) -> dict:
    return {"type": type_, "status": "True" if status else "False", "reason": reason, "message": message[:1024],
            "observedGeneration": gen}


def _result(now: datetime, rev: str, gate: str, phase: str, message: str) -> dict:
    return {"time": _fmt(now), "revision": rev, "gate": gate, "phase": phase, "message": message[:1024]}


class _Walk:
    """Mutable working copy of ``status.promotion`` during one :func:`step`."""

    def __init__(self, inp: Inputs):
        self.inp = inp
        self.p = inp.promotion
        self.st = dict(inp.status)
        self.events: list[tuple[str, str, str]] = []
        self.rev = params_revision(inp.spec)
        self.order = self.p.gates_list()

    # helpers
    @property
    def pos(self) -> tuple[str, int]:
        return self.st.get("stage", "paper"), int(self.st.get("step", 0))

    def gid(self, pos: tuple[str, int] | None = None) -> str:
        s, i = pos or self.pos
        return gate_id(s, i)

    def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.events.append((reason, message, type_))

    def record(self, phase: str, message: str) -> None:
        results = list(self.st.get("analysisResults") or []) + [
            _result(self.inp.now, self.rev, self.gid(), phase, message)]
        self.st["analysisResults"] = results[-MAX_RESULTS:]

    def enter(self, pos: tuple[str, int], state: str = SOAKING, message: str = "") -> None:
        stage, step = pos
        self.st.update({"stage": stage, "step": step, "state": state, "stageStartedAt": _fmt(self.inp.now),
                        "measurements": [], "analysisStartedAt": None, "awaitingApproval": None,
                        "message": message or f"{gate_id(stage, step)}: soaking {self.p.soak(stage)}s"})

    def next_pos(self) -> tuple[str, int] | None:
        i = self.order.index(self.pos) if self.pos in self.order else -1
        return self.order[i + 1] if 0 <= i < len(self.order) - 1 else None

    def prev_pos(self) -> tuple[str, int] | None:
        """The previous *stage* (a failed live step goes back to testnet, not to the
        smaller live step: a failed analysis leaves the exchange stage)."""
        stage, _ = self.pos
        i = self.p.stages.index(stage)
        if i == 0:
            return None
        prev = self.p.stages[i - 1]
        return (prev, 0)

    # transitions
    def advance(self) -> None:
        """The current position succeeded: record it and move on (or wait for an
        approval / a live-trading gate, or finish)."""
        nxt = self.next_pos()
        if nxt is None:
            self.st.update({"state": SUCCEEDED, "promotedRevision": self.rev,
                            "promotedParams": json.dumps(self.inp.spec.get("params") or {}, sort_keys=True,
                                                         separators=(",", ":")),
                            "awaitingApproval": None, "measurements": [],
                            "message": f"revision {self.rev} passed every stage"})
            self.event("PromotionSucceeded", f"revision {self.rev} is promoted at {self.gid()} "
                                             f"(capital fraction {self.p.fraction(*self.pos):g})")
            return
        self.try_enter(nxt)

    def try_enter(self, nxt: tuple[str, int]) -> None:
        want = f"{self.rev}/{gate_id(*nxt)}"
        if self.p.needs_approval(*nxt) and want not in self.inp.approvals:
            if self.st.get("state") != AWAITING or self.st.get("awaitingApproval") != want:
                self.event("PromotionAwaitingApproval",
                           f"{gate_id(*nxt)} needs approval: kubectl annotate tradingstrategy "
                           f"<name> hean.io/approve-promotion={want} --overwrite")
            self.st.update({"state": AWAITING, "awaitingApproval": want, "measurements": [],
                            "message": f"waiting for approval {want}"})
            return
        if nxt[0] in EXCHANGE_STAGES:
            ok, reason = self.inp.admissions.get(nxt[0], (True, ""))
            if not ok:
                msg = f"{gate_id(*nxt)} blocked by a live-trading gate: {reason}"
                if self.st.get("message") != msg:
                    self.event("PromotionBlocked", msg, "Warning")
                self.st.update({"state": PAUSED, "pausedFor": "gate:" + gate_id(*nxt), "message": msg})
                return
        frm = self.gid()
        if self.p.needs_approval(*nxt):
            self.event("PromotionApproved", f"approval {want} found")
        self.enter(nxt)
        self.event("PromotionStepSucceeded",
                   f"revision {self.rev}: {frm} -> {gate_id(*nxt)} (mode {nxt[0]}, capital fraction "
                   f"{self.p.fraction(*nxt):g})")

    def fail(self, why: str) -> None:
        """The current position failed: demote (flattening first on an exchange
        stage), or halt (onFailure Halt, paper has no previous stage, or the risk
        state is HARD_STOP). The revision is not retried until the spec changes."""
        self.record("Failed", why)
        self.st["failedRevision"] = self.rev
        halt = (self.p.onFailure == "Halt" or self.prev_pos() is None
                or self.inp.risk_state == api.RISK_HARD_STOP)
        self.event("PromotionFailed", f"revision {self.rev} failed at {self.gid()}: {why}", "Warning")
        if halt:
            self.st.update({"state": HALTED, "measurements": [], "message": f"halted at {self.gid()}: {why}"})
            self.event("PromotionHalted", f"revision {self.rev} halted at {self.gid()}: flatten, no new entries",
                       "Warning")
        elif self.pos[0] in EXCHANGE_STAGES:
            self.st.update({"state": FLATTENING, "flatteningSince": _fmt(self.inp.now), "measurements": [],
                            "message": f"flattening at {self.gid()} before demotion: {why}"})
        else:
            self.demote(why)

    def demote(self, why: str) -> None:
        prev = self.prev_pos()
        assert prev is not None
        frm = self.gid()
        self.enter(prev, DEMOTED, f"demoted from {frm} to {gate_id(*prev)}: {why}")
        self.event("PromotionDemoted", f"revision {self.rev} demoted from {frm} to {gate_id(*prev)}", "Warning")

    # per state
    def run(self) -> None:
        inp, st = self.inp, self.st
        if st.get("candidateRevision") != self.rev:
            self.start()
            return
        state = st.get("state")
        if state in (SUCCEEDED, DEMOTED, HALTED, REFUSED):
            return
        if state == FLATTENING:
            since = _parse(st.get("flatteningSince"))
            if inp.open_positions == 0 and inp.positions_at is not None and since is not None \
                    and inp.positions_at > since:
                self.demote("analysis failed")
            return
        if inp.risk_state == api.RISK_HARD_STOP:
            # the RiskPolicy's hard limit was hit: the worker already flattened and
            # stopped (HEAN's Risk Governor); the revision failed at this position
            self.fail(f"risk state {api.RISK_HARD_STOP} (the RiskPolicy halted and flattened the worker)")
            return
        # pauses: quarantine, risk state, (gate pauses re-check below)
        why = []
        if inp.quarantined:
            why.append(f"SymbolQuarantine active on {', '.join(sorted(inp.quarantined))}")
        if api.risk_severity(inp.risk_state) > api.risk_severity(api.RISK_NORMAL):
            why.append(f"risk state {inp.risk_state}")
        if why:
            msg = "paused: " + "; ".join(why)
            if state != PAUSED or st.get("pausedFor") != "risk":
                self.event("PromotionPaused", f"revision {self.rev} at {self.gid()} {msg}", "Warning")
            st.update({"state": PAUSED, "pausedFor": "risk", "message": msg, "measurements": [],
                       "analysisStartedAt": None})
            return
        if state == PAUSED:
            paused_for = st.pop("pausedFor", "risk")
            if paused_for.startswith("gate:"):
                st["state"] = SOAKING  # retry the move below
                nxt = self.next_pos()
                if nxt is not None:
                    self.try_enter(nxt)
                return
            self.event("PromotionResumed", f"revision {self.rev} at {self.gid()}: the soak starts over")
            self.enter(self.pos)
            return
        if state == AWAITING:
            want = st.get("awaitingApproval") or ""
            if want not in inp.approvals:
                return
            if want == f"{self.rev}/{self.gid()}":  # approval of an inconclusive result
                self.event("PromotionApproved", f"approval {want} found: the inconclusive analysis counts as passed")
                self.advance()
            else:
                nxt = self.next_pos()
                if nxt is not None:
                    self.try_enter(nxt)
            return
        if state == SOAKING and not inp.worker_ready:
            st["stageStartedAt"] = _fmt(inp.now)  # the soak starts when the pod of this position runs
            st["message"] = f"{self.gid()}: waiting for the worker pod of this stage to be ready"
            return
        if state == SOAKING:
            started = _parse(st.get("stageStartedAt")) or inp.now
            soaked = (inp.now - started).total_seconds() >= self.p.soak(self.pos[0])
            if self.pos[0] == "paper":
                g = inp.gates
                if g is not None:
                    st["gates"] = g.results
                if not soaked:
                    return
                if g is None or g.verdict == "Waiting":
                    st["message"] = "paper soak done; waiting for the anti-overfitting gates: " + (
                        g.reason if g is not None else "no trade history yet")
                    return
                if g.verdict == "Refused":
                    self.record("Refused", g.reason)
                    st.update({"state": REFUSED, "failedRevision": self.rev, "message": "refused: " + g.reason})
                    self.event("PromotionRefused", f"revision {self.rev} refused by the anti-overfitting "
                                                   f"gates: {g.reason}", "Warning")
                    return
            if not soaked:
                return
            if self.p.analysis is None:  # only for stages without live (CEL requires analysis for live)
                self.record("Successful", "no analysis configured")
                self.advance()
                return
            st.update({"state": ANALYZING, "analysisStartedAt": _fmt(inp.now), "measurements": [],
                       "message": f"{self.gid()}: analysis running"})
            state = ANALYZING
        if state == ANALYZING and inp.measurement is not None:
            self.measure(inp.measurement)

    def measure(self, m: Measurement) -> None:
        a = self.p.analysis
        assert a is not None
        ms = list(self.st.get("measurements") or []) + [m.outcome]
        self.st["measurements"] = ms
        self.st["message"] = f"{self.gid()}: measurement {len(ms)}/{a.count} {m.outcome}: {m.message}"
        failed, inconclusive = ms.count("Failed"), ms.count("Inconclusive")
        if failed > a.failureLimit:
            self.fail(f"{failed} failed measurements (limit {a.failureLimit}); last: {m.message}")
        elif inconclusive > a.inconclusiveLimit:
            self.record("Inconclusive", m.message)
            want = f"{self.rev}/{self.gid()}"
            self.st.update({"state": AWAITING, "awaitingApproval": want,
                            "message": f"inconclusive analysis ({m.message}); approve {want} to pass it"})
            self.event("PromotionInconclusive", f"revision {self.rev} at {self.gid()}: inconclusive "
                                                f"({m.message}); approve with hean.io/approve-promotion={want}",
                       "Warning")
        elif ms.count("Successful") >= a.count:
            self.record("Successful", m.message)
            self.advance()

    def start(self) -> None:
        """A new candidate revision (first sight, or spec.params changed)."""
        old = self.st.get("candidateRevision")
        promoted = self.st.get("promotedRevision")
        self.st["candidateRevision"] = self.rev
        self.st["failedRevision"] = None
        self.st["gates"] = []
        if promoted == self.rev:  # back to the promoted params: nothing to walk
            last = self.order[-1]
            self.enter(last, SUCCEEDED, f"revision {self.rev} is the promoted revision")
            self.event("PromotionSucceeded", f"spec.params are the promoted revision {self.rev} again")
            return
        self.enter(("paper", 0))
        shadow = f"; shadowing promoted revision {promoted}" if promoted else ""
        self.event("PromotionStarted", f"candidate revision {self.rev} starts in paper"
                                       + (f" (replaces candidate {old})" if old else "") + shadow)


def effective(promotion: PromotionSpec, spec: dict, status: dict) -> tuple[Effective, Effective | None]:
    """What the worker pods run for a ``status.promotion``:

    * while the candidate is in ``paper`` beside a different promoted revision, the
      main worker runs the promoted params at the last position of the walk (its
      stage and capital 1.0) and the candidate runs in a shadow paper pod;
    * otherwise the main worker runs the candidate (``spec.params``) at its stage and
      capital fraction, halted while ``Flattening`` or ``Halted``; no shadow pod.
    A failed (Stalled) candidate in paper gets no shadow pod either.
    """
    rev = params_revision(spec)
    stage, step = status.get("stage", "paper"), int(status.get("step", 0))
    state = status.get("state")
    promoted = status.get("promotedRevision")
    params = dict(spec.get("params") or {})
    if stage == "paper" and promoted and promoted != rev and status.get("promotedParams") is not None:
        last = promotion.gates_list()[-1]
        main = Effective(last[0], promotion.fraction(*last), json.loads(status["promotedParams"]), promoted)
        cand = None if state in STALLED_STATES else Effective("paper", 1.0, params, rev)
        return main, cand
    halted = state in (FLATTENING, HALTED)
    return Effective(stage, promotion.fraction(stage, step), params, rev, halted), None


def step(inp: Inputs, generation: int | None = None) -> Decision:
    """One decision of the promotion state machine (see the module docstring).

    Returns a :class:`Decision`; never raises for a valid :class:`Inputs`. Keys of
    ``status.promotion`` written: ``state``, ``stage``, ``step``,
    ``capitalFraction``, ``effectiveMode``, ``halted``, ``candidateRevision``,
    ``promotedRevision``, ``promotedParams``, ``failedRevision``, ``stageStartedAt``,
    ``analysisStartedAt``, ``measurements``, ``analysisResults`` (at most
    :data:`MAX_RESULTS`), ``gates``, ``awaitingApproval``, ``message``.
    """
    w = _Walk(inp)
    w.run()
    st = w.st
    main, cand = effective(inp.promotion, inp.spec, st)
    st["capitalFraction"] = main.capital_fraction
    st["effectiveMode"] = main.mode
    st["halted"] = main.halted
    st = {k: v for k, v in st.items() if v is not None}
    state = st.get("state", SOAKING)
    promoted = _condition(COND_PROMOTED, state == SUCCEEDED, state, st.get("message", ""), generation)
    if state in STALLED_STATES:
        reason = {FLATTENING: "AnalysisFailed", DEMOTED: "AnalysisFailed", HALTED: "AnalysisFailed",
                  REFUSED: "OverfitRefused"}[state]
        stalled = _condition(COND_STALLED, True, reason, f"revision {w.rev} is not retried until spec.params "
                                                         f"changes: {st.get('message', '')}", generation)
    else:
        stalled = _condition(COND_STALLED, False, "Progressing", "the promotion is not stalled", generation)
    return Decision(st, [promoted, stalled], w.events, main, cand)
