"""Constants of hean's Kubernetes API (group ``hean.io``, version ``v1alpha1``).

One place for the group, version, plurals, label keys, condition types and risk
states, so the operator, the worker, the tests and the CRDs in ``crds/`` agree.
The field names follow the Kubernetes API conventions
(https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md).
"""

from __future__ import annotations

GROUP = "hean.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

STRATEGY_KIND = "TradingStrategy"
STRATEGY_PLURAL = "tradingstrategies"
POLICY_KIND = "RiskPolicy"
POLICY_PLURAL = "riskpolicies"
QUARANTINE_KIND = "SymbolQuarantine"
QUARANTINE_PLURAL = "symbolquarantines"

# Labels and annotations on the objects the operator creates.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_STRATEGY = "hean.io/strategy"
MANAGED_BY = "hean-operator"
WORKER_APP = "hean-worker"
ANNOTATION_SPEC_HASH = "hean.io/spec-hash"
# A human clears a latched HARD_STOP by setting this annotation on the
# TradingStrategy to an RFC 3339 timestamp later than the stop (kubectl annotate).
ANNOTATION_CLEAR_HARD_STOP = "hean.io/clear-hard-stop"

# Condition types (metav1.Condition) on TradingStrategy.status.conditions.
COND_READY = "Ready"
COND_POLICY_RESOLVED = "PolicyResolved"
COND_TRADING = "Trading"
COND_RISK_LIMITED = "RiskLimited"

# Risk Governor states, least to most severe (HEAN's Risk Governor).
RISK_NORMAL = "NORMAL"
RISK_SOFT_BRAKE = "SOFT_BRAKE"
RISK_QUARANTINE = "QUARANTINE"
RISK_HARD_STOP = "HARD_STOP"
RISK_STATES = (RISK_NORMAL, RISK_SOFT_BRAKE, RISK_QUARANTINE, RISK_HARD_STOP)


def risk_severity(state: str | None) -> int:
    """Return the severity rank of a risk state: 0 for ``NORMAL`` .. 3 for ``HARD_STOP``.

    Unknown or missing states rank -1 so that they never count as the worst state.
    """
    try:
        return RISK_STATES.index(state or "")
    except ValueError:
        return -1


LIVE_CONFIRMATION_PHRASE = "I_UNDERSTAND_LIVE_TRADING"
