"""Risk Governor explanations and the safety features of a RiskPolicy.

Everything here is pure (no I/O, no clock): the engine feeds it market time
(``ts_ms``, epoch milliseconds of the candle being processed) and equity, so a replay
and a live paper run take the same decisions. What lives here:

* :data:`REASONS` / :data:`STATES` and :func:`governor_status`: HEAN's
  ``/risk/governor/status`` -- the state, the reason codes that caused it, a
  recommended action and the rule that clears it.
* :class:`FlashCrashDetector`: a drop of ``dropPercent`` % of a value (equity or a
  price) below its maximum over the last ``windowSeconds`` seconds (Quantum Trader's
  detector, default 3 % in 10 s). Candles give it two samples each: the open at the
  candle's start and the close at its end, so on 1-minute candles a window shorter
  than a minute sees open -> close moves only; a tick feed is exact.
* :class:`ProfitCapture`: HEAN's lock-in at a target gain with a trailing give-back.
* :class:`VolatilityRegimes`: a volatility reading ranked against its own history
  (percentile) -> ``normal`` / ``high`` / ``extreme`` and the stop-distance multiplier
  (Quantum Trader: 1.5x high, 2.5x extreme).
* :class:`AutoQuarantine`: N consecutive order rejects on a symbol, or a quoted
  spread above a bound, asks for a SymbolQuarantine with a TTL.
* :class:`DecisionLog`: every order decision with its gating flags (bounded ring,
  consecutive identical blocks folded into one record with a count).

Every feature is off unless its RiskPolicy block enables it, so a default policy
trades exactly as the native replay kernel does (tests/unit/test_native_replay.py).
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from hean import api
from hean.quarantine import auto_quarantine_name

# ---- risk reason codes (why the state is above NORMAL) -----------------------------
RR_SOFT_DD = "SOFT_DRAWDOWN"
RR_HARD_DD = "HARD_DRAWDOWN"
RR_DAILY_LOSS = "DAILY_LOSS"
RR_QUARANTINE = "SYMBOL_QUARANTINE"
RR_LATCHED = "HARD_STOP_LATCHED"
RR_FLASH_CRASH = "FLASH_CRASH"
RR_AUTO_QUARANTINE = "AUTO_QUARANTINE"

# ---- entry-block reason codes added by the safety features -------------------------
R_FLASH_CRASH = "FLASH_CRASH_HOLD"
R_PROFIT_PAUSE = "PROFIT_CAPTURE_PAUSED"
R_AUTO_QUARANTINED = "SYMBOL_AUTO_QUARANTINED"
R_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"

CLEAR_ANNOTATION = api.ANNOTATION_CLEAR_HARD_STOP

#: reason code -> (what it means, recommended action, the rule that clears it)
REASONS: dict[str, tuple[str, str, str]] = {
    RR_SOFT_DD: (
        "drawdown from peak equity reached spec.softMaxDrawdownPercent",
        "new entries are scaled by softBrakeSizeFactor; review the strategy's recent trades",
        "automatic: drawdown falls below 80 % of spec.softMaxDrawdownPercent",
    ),
    RR_HARD_DD: (
        "drawdown from peak equity reached spec.hardMaxDrawdownPercent",
        "positions were flattened; find the cause before clearing",
        f"manual: kubectl annotate tradingstrategy <name> --overwrite {CLEAR_ANNOTATION}=<RFC 3339 time after the stop>",
    ),
    RR_DAILY_LOSS: (
        "loss since the start of the UTC day reached spec.maxDailyLossUsdt",
        "positions were flattened; find the cause before clearing",
        f"manual: kubectl annotate tradingstrategy <name> --overwrite {CLEAR_ANNOTATION}=<RFC 3339 time after the stop>",
    ),
    RR_LATCHED: (
        "HARD_STOP stays latched after the limit that caused it cleared",
        "confirm the account and the market are sane, then clear by annotation",
        f"manual: kubectl annotate tradingstrategy <name> --overwrite {CLEAR_ANNOTATION}=<RFC 3339 time after the stop>",
    ),
    RR_QUARANTINE: (
        "a SymbolQuarantine blocks new entries on one of the strategy's symbols",
        "kubectl get symbolquarantines to see which symbol and why",
        "automatic: the quarantine expires (ttlSeconds/expiresAt) or is deleted",
    ),
    RR_AUTO_QUARANTINE: (
        "the worker quarantined a symbol itself (spec.autoQuarantine: consecutive rejects or spread)",
        "check the symbol's order rejects (/why) or its order book",
        "automatic: after spec.autoQuarantine.ttlSeconds",
    ),
    RR_FLASH_CRASH: (
        "equity or a price fell spec.flashCrash.dropPercent % within spec.flashCrash.windowSeconds",
        "check the market before resuming; at HARD_STOP positions were flattened",
        "HARD_STOP: manual annotation; SOFT_BRAKE/QUARANTINE: automatic after spec.flashCrash.holdSeconds",
    ),
}

#: state -> (recommended action, the rule that clears it)
STATES: dict[str, tuple[str, str]] = {
    api.RISK_NORMAL: ("none: trading within limits", "-"),
    api.RISK_SOFT_BRAKE: ("new entries are reduced (softBrakeSizeFactor); watch the drawdown",
                          "automatic, when every reason below clears"),
    api.RISK_QUARANTINE: ("no new entries on quarantined symbols; other symbols trade",
                          "automatic, when the quarantines expire"),
    api.RISK_HARD_STOP: ("no new orders; positions flattened; investigate before clearing",
                         f"manual only: kubectl annotate tradingstrategy <name> --overwrite "
                         f"{CLEAR_ANNOTATION}=$(date -u +%Y-%m-%dT%H:%M:%SZ) (a time after the stop); "
                         "recorded as a HardStopCleared Event"),
}


def _rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def governor_status(state: str, reasons: list[str], since_ms: int | None = None,
                    hard_stop_at: datetime | None = None, cleared_at: datetime | None = None,
                    transitions: list[dict] | None = None) -> dict:
    """HEAN's ``/risk/governor/status`` for one strategy.

    Returns ``{state, since, reasonCodes, reasons: [{code, description,
    recommendedAction, clearRule}], recommendedAction, clearRule, hardStopAt,
    hardStopClearedAt, clearAnnotation, transitions}``; times are RFC 3339 strings
    (``since`` is market time of the transition into ``state``).
    """
    action, rule = STATES.get(state, ("unknown state", "-"))
    return {
        "state": state,
        "since": _rfc3339(since_ms),
        "reasonCodes": list(reasons),
        "reasons": [
            {"code": r, "description": REASONS.get(r, ("", "", ""))[0],
             "recommendedAction": REASONS.get(r, ("", "", ""))[1], "clearRule": REASONS.get(r, ("", "", ""))[2]}
            for r in reasons
        ],
        "recommendedAction": action,
        "clearRule": rule,
        "hardStopAt": hard_stop_at.strftime("%Y-%m-%dT%H:%M:%SZ") if hard_stop_at else None,
        "hardStopClearedAt": cleared_at.strftime("%Y-%m-%dT%H:%M:%SZ") if cleared_at else None,
        "clearAnnotation": CLEAR_ANNOTATION,
        "transitions": list(transitions or [])[-20:],
    }


class FlashCrashDetector:
    """Sliding-window drop detector for one series (equity, or one symbol's price).

    :meth:`observe` takes samples in time order (``ts_ms`` epoch ms, ``value`` > 0) and
    returns the drop in percent (Decimal) from the window's maximum to ``value`` when
    it is at least ``drop_percent``, else None. The window is ``window_seconds`` long
    and includes its ends. A monotonic deque keeps the maximum in O(1) amortised.
    """

    def __init__(self) -> None:
        self._q: deque[tuple[int, Decimal]] = deque()

    def observe(self, ts_ms: int, value: Decimal, window_seconds: int, drop_percent: Decimal) -> Decimal | None:
        q = self._q
        while q and q[-1][1] <= value:
            q.pop()
        q.append((ts_ms, value))
        lo = ts_ms - window_seconds * 1000
        while q and q[0][0] < lo:
            q.popleft()
        peak = q[0][1]
        if peak <= 0:
            return None
        drop = (peak - value) / peak * 100
        return drop if drop >= drop_percent else None


@dataclass
class FlashCrashState:
    """Flash-crash detectors of one engine: ``equity`` plus one per symbol; ``until_ms``
    end of the hold of a non-HARD_STOP escalation; ``last`` the latest detection as
    ``{source, dropPercent, at}``."""

    equity: FlashCrashDetector = field(default_factory=FlashCrashDetector)
    prices: dict[str, FlashCrashDetector] = field(default_factory=dict)
    until_ms: int = -1
    state: str | None = None
    last: dict | None = None
    detections: int = 0

    def observe(self, spec, ts_ms: int, symbol: str | None, price_samples: list[tuple[int, Decimal]],
                equity: Decimal | None) -> dict | None:
        """Feed one evaluation (``spec``: FlashCrashSpec). Returns the detection
        ``{source, dropPercent, at}`` or None."""
        if not spec.enabled:
            return None
        hit = None
        if spec.source in ("price", "both") and symbol is not None:
            det = self.prices.setdefault(symbol, FlashCrashDetector())
            for ts, px in price_samples:
                d = det.observe(ts, px, spec.windowSeconds, spec.dropPercent)
                if d is not None:
                    hit = {"source": f"price:{symbol}", "dropPercent": str(d.quantize(Decimal("0.01")))}
        if spec.source in ("equity", "both") and equity is not None and equity > 0:
            d = self.equity.observe(ts_ms, equity, spec.windowSeconds, spec.dropPercent)
            if d is not None:
                hit = {"source": "equity", "dropPercent": str(d.quantize(Decimal("0.01")))}
        if hit is not None:
            hit["at"] = _rfc3339(ts_ms)
            self.last = hit
            self.detections += 1
            self.state = spec.escalateTo
            self.until_ms = ts_ms + spec.holdSeconds * 1000
        return hit

    def active_state(self, ts_ms: int) -> str | None:
        """The escalation state still held at ``ts_ms`` (HARD_STOP is latched by the
        engine itself, so it is reported only in the evaluation that detected it)."""
        if self.state is None:
            return None
        if self.state == api.RISK_HARD_STOP:
            s, self.state = self.state, None
            return s
        if ts_ms <= self.until_ms:
            return self.state
        self.state = None
        return None


@dataclass
class ProfitCapture:
    """HEAN's profit capture over one cycle (``spec``: ProfitCaptureSpec).

    ``baseline`` is the equity at the start of the cycle; the gain is
    ``(equity - baseline) / baseline * 100`` percent. At ``targetPercent`` it arms and
    tracks the best gain; it captures when the gain falls to ``best * (1 -
    trailFraction)`` or below (``trailFraction`` 0: at once). :meth:`update` returns
    ``"full"`` or ``"partial"`` on the evaluation that captures, else None.
    """

    baseline: Decimal | None = None
    armed: bool = False
    best_gain: Decimal = Decimal(0)
    paused_day: int | None = None  # UTC day (epoch days) on which entries are paused
    captures: int = 0
    last: dict | None = None

    def update(self, spec, equity: Decimal, day: int, ts_ms: int) -> str | None:
        if not spec.enabled:
            return None
        if self.baseline is None or self.baseline <= 0:
            self.baseline = equity
            return None
        if self.paused_day is not None and day != self.paused_day:
            self.paused_day = None
            self.baseline, self.armed, self.best_gain = equity, False, Decimal(0)
        if self.paused_day is not None:
            return None
        gain = (equity - self.baseline) / self.baseline * 100
        if not self.armed:
            if gain < spec.targetPercent:
                return None
            self.armed = True
            self.best_gain = gain
        self.best_gain = max(self.best_gain, gain)
        if gain > self.best_gain * (1 - spec.trailFraction):
            return None
        self.captures += 1
        self.last = {"at": _rfc3339(ts_ms), "gainPercent": str(gain.quantize(Decimal("0.01"))),
                     "bestGainPercent": str(self.best_gain.quantize(Decimal("0.01"))), "mode": spec.mode}
        if spec.afterCapture == "pause":
            self.paused_day = day
        else:
            self.baseline, self.armed, self.best_gain = equity, False, Decimal(0)
        return spec.mode

    def paused(self, spec, day: int | None) -> bool:
        """True while entries are paused after a capture (until the next UTC day)."""
        return spec.enabled and self.paused_day is not None and day == self.paused_day


class VolatilityRegimes:
    """Per-symbol volatility regime (``spec``: VolatilityRegimesSpec).

    :meth:`observe` adds a reading (e.g. the rolling sigma of log returns, any unit,
    NaN ignored) to the symbol's history of the last ``historyBars`` readings;
    :meth:`classify` ranks a reading in that history: percentile = share of the
    history strictly below it, times 100. ``>= extremePercentile`` -> ``extreme``,
    ``>= highPercentile`` -> ``high``, else ``normal`` (also while fewer than 10
    readings exist). Returns ``(regime, multiplier)``.
    """

    def __init__(self) -> None:
        self._hist: dict[str, deque] = {}
        self._sorted: dict[str, list] = {}

    def observe(self, spec, symbol: str, value: float) -> None:
        if not spec.enabled or value != value:
            return
        h = self._hist.setdefault(symbol, deque())
        srt = self._sorted.setdefault(symbol, [])
        h.append(value)
        bisect.insort(srt, value)
        while len(h) > spec.historyBars:
            old = h.popleft()
            del srt[bisect.bisect_left(srt, old)]

    def classify(self, spec, symbol: str, value: float) -> tuple[str, Decimal]:
        srt = self._sorted.get(symbol) or []
        if not spec.enabled or len(srt) < 10 or value != value:
            return "normal", Decimal(1)
        pct = bisect.bisect_left(srt, value) / len(srt) * 100
        if pct >= spec.extremePercentile:
            return "extreme", spec.extremeMultiplier
        if pct >= spec.highPercentile:
            return "high", spec.highMultiplier
        return "normal", Decimal(1)


@dataclass
class AutoQuarantine:
    """Auto-quarantine rules (``spec``: AutoQuarantineSpec).

    Counts consecutive order rejects per symbol (an accepted order or a fill resets
    it) and checks quoted spreads. When a rule fires it returns a request
    ``{symbol, reason, ttlSeconds}`` once and blocks the symbol locally until
    ``ts_ms + ttlSeconds`` (market time), so a replay without an API server behaves
    as the live worker does; the worker also creates the SymbolQuarantine object.
    """

    consecutive: dict[str, int] = field(default_factory=dict)
    until_ms: dict[str, int] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)

    def _fire(self, spec, symbol: str, ts_ms: int, reason: str) -> dict | None:
        if self.blocked(symbol, ts_ms):
            return None
        self.until_ms[symbol] = ts_ms + spec.ttlSeconds * 1000
        req = {"symbol": symbol, "reason": reason, "ttlSeconds": spec.ttlSeconds, "at": _rfc3339(ts_ms)}
        self.requests.append(req)
        self.history.append(req)
        self.consecutive[symbol] = 0
        return req

    def on_reject(self, spec, symbol: str, ts_ms: int, code: str) -> dict | None:
        """Count a reject (``code``) of ``symbol``; returns the request if the rule fires."""
        n = self.consecutive.get(symbol, 0) + 1
        self.consecutive[symbol] = n
        if spec.consecutiveRejects is not None and n >= spec.consecutiveRejects:
            return self._fire(spec, symbol, ts_ms, f"{n} consecutive order rejects (last {code})")
        return None

    def on_accept(self, symbol: str) -> None:
        """A fill on ``symbol``: the consecutive-reject count starts again."""
        self.consecutive[symbol] = 0

    def on_spread(self, spec, symbol: str, ts_ms: int, bid: Decimal, ask: Decimal) -> dict | None:
        """Check the best ``bid``/``ask`` (USDT): spread in bps of the mid above
        ``maxSpreadBps`` fires the rule (returns the request)."""
        if spec.maxSpreadBps is None or bid <= 0 or ask <= 0:
            return None
        mid = (bid + ask) / 2
        bps = (ask - bid) / mid * 10000
        if bps > Decimal(repr(spec.maxSpreadBps)):
            return self._fire(spec, symbol, ts_ms, f"spread {bps.quantize(Decimal('0.0001'))} bps above "
                                                   f"{spec.maxSpreadBps} bps")
        return None

    def blocked(self, symbol: str, ts_ms: int) -> bool:
        """True while ``symbol``'s auto-quarantine lasts at market time ``ts_ms``."""
        return ts_ms < self.until_ms.get(symbol, -1)

    def any_blocked(self, ts_ms: int) -> bool:
        """True while any symbol's auto-quarantine lasts."""
        return any(ts_ms < u for u in self.until_ms.values())


class DecisionLog:
    """The last ``maxlen`` order decisions with their gating flags.

    A record is ``{at, symbol, side, outcome, reason, flags, count}``: ``outcome``
    ``sent`` / ``blocked`` / ``rejected``; ``flags`` the gates that shaped or stopped
    the order (risk state, size factor, volatility regime, caps applied, router).
    Consecutive identical blocks of one symbol fold into one record (``count``).
    """

    def __init__(self, maxlen: int = 200) -> None:
        self.records: deque = deque(maxlen=maxlen)
        self._last: dict[str, dict] = {}

    def add(self, ts_ms: int, symbol: str, side: str, outcome: str, reason: str, flags: dict) -> None:
        """Record one decision at market time ``ts_ms`` (epoch ms); ``side`` ``Buy``,
        ``Sell`` or ``""`` when no order side was reached."""
        last = self._last.get(symbol)
        if last is not None and outcome == "blocked" and last["outcome"] == "blocked" \
                and last["reason"] == reason and last["flags"] == flags:
            last["count"] += 1
            last["lastAt"] = _rfc3339(ts_ms)
            return
        rec = {"at": _rfc3339(ts_ms), "symbol": symbol, "side": side, "outcome": outcome, "reason": reason,
               "flags": flags, "count": 1}
        self.records.append(rec)
        self._last[symbol] = rec

    def recent(self, n: int = 50) -> list[dict]:
        """The last ``n`` records, oldest first."""
        return list(self.records)[-n:]


class Safety:
    """The per-engine state of every safety feature, plus the governor's transition
    history (``transitions``: ``{at, from, to, reasons}``, market time) and the
    market time the current state was entered (``since_ms``)."""

    def __init__(self) -> None:
        self.flash = FlashCrashState()
        self.profit = ProfitCapture()
        self.regimes = VolatilityRegimes()
        self.autoq = AutoQuarantine()
        self.decisions = DecisionLog()
        self.transitions: list[dict] = []
        self.since_ms: int | None = None
        self.regime: dict[str, tuple[str, Decimal]] = {}
        self.entry_flags: dict = {}
        self.last_reject: str = ""

    def transition(self, ts_ms: int, old: str, new: str, reasons: list[str]) -> None:
        """Record a state change at market time ``ts_ms`` (keeps the last 50)."""
        self.since_ms = ts_ms
        self.transitions.append({"at": _rfc3339(ts_ms), "from": old, "to": new, "reasons": list(reasons)})
        del self.transitions[:-50]


def auto_quarantine_manifest(strategy_obj: dict, request: dict, now: datetime) -> dict:
    """The SymbolQuarantine for an auto-quarantine ``request`` (``{symbol, reason,
    ttlSeconds}``) of the TradingStrategy ``strategy_obj``: expiry ``now +
    ttlSeconds`` as ``spec.expiresAt`` (wall clock), no ``strategySelector`` (the
    rules are about the symbol's market, so every strategy in the namespace stops
    entering it), owned by the strategy (garbage-collected with it)."""
    from datetime import timedelta

    meta = strategy_obj.get("metadata") or {}
    name = meta.get("name", "strategy")
    expires = (now + timedelta(seconds=int(request["ttlSeconds"]))).strftime("%Y-%m-%dT%H:%M:%SZ")
    owner = [{"apiVersion": api.API_VERSION, "kind": api.STRATEGY_KIND, "name": name, "uid": meta["uid"],
              "controller": False, "blockOwnerDeletion": False}] if meta.get("uid") else []
    return {
        "apiVersion": api.API_VERSION, "kind": api.QUARANTINE_KIND,
        "metadata": {"name": auto_quarantine_name(name, request["symbol"]), "namespace": meta.get("namespace"),
                     "labels": {api.LABEL_STRATEGY: name, api.LABEL_MANAGED_BY: "hean-worker",
                                "hean.io/auto-quarantine": "true"},
                     "ownerReferences": owner},
        "spec": {"symbol": request["symbol"], "reason": f"auto-quarantine by {name}: {request['reason']}"[:256],
                 "expiresAt": expires},
    }
