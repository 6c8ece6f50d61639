"""SymbolQuarantine semantics shared by the operator and the worker.

A quarantine blocks new entries on ``spec.symbol`` from its creation until its
expiry, for the strategies its ``spec.strategySelector`` (a metav1.LabelSelector;
absent = all in the namespace) matches. The expiry is ``spec.expiresAt`` or
``metadata.creationTimestamp + spec.ttlSeconds`` (the CRD requires exactly one).
Label-selector semantics follow
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def parse_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp as the API server writes it (``...Z``) to an aware
    UTC datetime; None for None or empty. Raises ValueError for malformed text."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def selector_matches(selector: dict | None, labels: dict[str, str]) -> bool:
    """True if ``labels`` satisfy a metav1.LabelSelector dict (``matchLabels`` AND every
    ``matchExpressions`` term with operators In, NotIn, Exists, DoesNotExist). A None
    or empty selector matches everything; an unknown operator matches nothing."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key"), req.get("operator"), req.get("values") or []
        has = key in labels
        if op == "In":
            ok = has and labels[key] in values
        elif op == "NotIn":
            ok = not has or labels[key] not in values
        elif op == "Exists":
            ok = has
        elif op == "DoesNotExist":
            ok = not has
        else:
            ok = False
        if not ok:
            return False
    return True


def quarantine_expiry(obj: dict) -> datetime | None:
    """When a SymbolQuarantine object stops blocking (aware UTC), or None if neither
    ``spec.expiresAt`` nor ``creationTimestamp + spec.ttlSeconds`` is known."""
    spec = obj.get("spec") or {}
    if spec.get("expiresAt"):
        return parse_time(spec["expiresAt"])
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    if created is not None and spec.get("ttlSeconds"):
        return created + timedelta(seconds=int(spec["ttlSeconds"]))
    return None


def quarantine_active(obj: dict, now: datetime) -> bool:
    """True if the quarantine exists (not being deleted) and ``now`` is before its expiry."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return False
    expiry = quarantine_expiry(obj)
    return expiry is not None and now < expiry


def quarantine_applies(obj: dict, symbol: str, strategy_labels: dict[str, str], now: datetime) -> bool:
    """True if SymbolQuarantine ``obj`` blocks new entries on ``symbol`` for a strategy
    labelled ``strategy_labels`` at ``now``. A malformed object (bad times) does not
    apply; the operator reports it."""
    spec = obj.get("spec") or {}
    if spec.get("symbol") != symbol:
        return False
    try:
        if not quarantine_active(obj, now):
            return False
    except (ValueError, TypeError):
        return False
    return selector_matches(spec.get("strategySelector"), strategy_labels)


def auto_quarantine_name(strategy: str, symbol: str) -> str:
    """Deterministic name of the SymbolQuarantine a strategy's worker creates for
    ``symbol`` under RiskPolicy ``spec.autoQuarantine``: ``auto-<strategy>-<symbol lower
    case>`` (at most 253 characters). One object per (strategy, symbol), re-armed by
    patching ``spec.expiresAt``; the worker's Role may patch exactly these names."""
    return f"auto-{strategy}-{symbol.lower()}"[:253]
