"""The Risk Governor end to end on a real control plane: the worker explains its state
(``/risk/governor/status``, ``status.riskGovernor``), a HARD_STOP is cleared only by
the kubectl annotation with a later timestamp (recorded in an Event, an earlier one
is refused with a Warning Event), and the auto-quarantine rule makes the worker
create a SymbolQuarantine itself (its Role allows exactly that)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from test_walking_skeleton import K, hean_installed, policy, strategy  # noqa: F401  (fixture re-used)

from hean.testing import wait_for

pytestmark = pytest.mark.e2e


def test_hard_stop_explained_and_cleared_only_by_a_later_annotation(kube, namespace, hean_installed):  # noqa: F811
    k = K(kube, namespace)
    k.apply(policy())
    k.apply(strategy("gov", ["BTCUSDT", "ETHUSDT"], speed=6000))
    # the CRD's smallest limits are 0.1 %: wait for a drawdown above 0.25 %
    wait_for(lambda: D((k.strategy("gov").get("status") or {}).get("drawdownPercent", "0")) > D("0.25"), 240,
             interval=0.5, message="a drawdown above 0.25 % after the first trades")
    k.patch("riskpolicies", "default", {"spec": {"softMaxDrawdownPercent": 0.1, "hardMaxDrawdownPercent": 0.2}})
    wait_for(lambda: k.strategy("gov")["status"].get("riskState") == "HARD_STOP", 20, message="HARD_STOP")
    gov = wait_for(lambda: k.strategy("gov")["status"].get("riskGovernor"), 10, message="status.riskGovernor")
    assert gov["clearRule"].startswith("manual only") and "hean.io/clear-hard-stop" in gov["clearRule"]
    assert gov.get("hardStopAt")
    full = k.worker_get("gov-worker", "/risk/governor/status")
    assert full["state"] == "HARD_STOP" and "HARD_DRAWDOWN" in full["reasonCodes"]
    assert all(r["recommendedAction"] and r["clearRule"] for r in full["reasons"])
    why = k.worker_get("gov-worker", "/why")
    assert why["governor"]["state"] == "HARD_STOP" and why["recentDecisions"]
    # loosen the limits: still latched
    k.patch("riskpolicies", "default", {"spec": {"softMaxDrawdownPercent": 50, "hardMaxDrawdownPercent": 90}})
    wait_for(lambda: k.strategy("gov")["status"].get("riskReasons") == ["HARD_STOP_LATCHED"], 15,
             message="HARD_STOP latched")
    # an annotation time before the stop is refused, with a Warning Event
    kube.kubectl("annotate", "-n", namespace, "tradingstrategy", "gov", "--overwrite",
                 "hean.io/clear-hard-stop=2000-01-01T00:00:00Z")
    wait_for(lambda: k.events("HardStopClearIgnored"), 15, message="a HardStopClearIgnored Event")
    assert k.strategy("gov")["status"]["riskState"] == "HARD_STOP"
    # a later one clears it and is recorded with the timestamp
    at = (datetime.now(timezone.utc) + timedelta(days=3650)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.kubectl("annotate", "-n", namespace, "tradingstrategy", "gov", "--overwrite", f"hean.io/clear-hard-stop={at}")
    ev = wait_for(lambda: k.events("HardStopCleared"), 15, message="a HardStopCleared Event")
    assert at in ev[0].message
    wait_for(lambda: k.strategy("gov")["status"].get("riskState") != "HARD_STOP", 15, message="cleared")


def test_consecutive_rejects_make_the_worker_create_a_symbol_quarantine(kube, namespace, hean_installed):  # noqa: F811
    k = K(kube, namespace)
    k.apply(policy(autoQuarantine={"consecutiveRejects": 3, "ttlSeconds": 600}))
    # 20 USDT of capital: every entry is below Bybit's minimum order size -> rejected
    k.apply(strategy("aq", ["ETHUSDT"], speed=20000, capital=20, params={"cooldownBars": 0}))
    name = "auto-aq-ethusdt"

    def created():
        try:
            return k.get("symbolquarantines", name)
        except Exception:  # noqa: BLE001 - 404 until the worker creates it
            return None

    q = wait_for(created, 150, interval=1.0, message="the worker to create the SymbolQuarantine")
    assert q["spec"]["symbol"] == "ETHUSDT" and "consecutive order rejects" in q["spec"]["reason"]
    assert q["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hean-worker"
    assert q["metadata"]["ownerReferences"][0]["name"] == "aq"
    expires = datetime.fromisoformat(q["spec"]["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(seconds=500) < expires - datetime.now(timezone.utc) <= timedelta(seconds=600)
    wait_for(lambda: k.events("SymbolAutoQuarantined"), 15, message="a SymbolAutoQuarantined Event")
    wait_for(lambda: k.strategy("aq")["status"].get("riskState") == "QUARANTINE", 15, message="QUARANTINE")
    reasons = {r["reason"] for r in k.strategy("aq")["status"].get("notTradingReasons") or []}
    assert reasons & {"SYMBOL_QUARANTINED", "SYMBOL_AUTO_QUARANTINED", "BELOW_MIN_ORDER"}


def test_the_worker_role_follows_a_symbols_edit(kube, namespace, hean_installed):  # noqa: F811
    """A new strategy's Role is created with its rules (no extra patch); a symbols edit
    finds the Role existing and patches it, so the worker may patch the new symbol's
    auto-quarantine too."""
    from kubernetes import client

    k = K(kube, namespace)
    k.apply(policy())
    k.apply(strategy("roles", ["BTCUSDT"], speed=1))
    rbac = client.RbacAuthorizationV1Api(k.api)

    def names():
        try:
            role = rbac.read_namespaced_role("roles-worker", namespace)
        except Exception:  # noqa: BLE001 - 404 until the operator creates it
            return None
        return sorted(n for r in role.rules if "patch" in r.verbs and r.resources == ["symbolquarantines"]
                      for n in r.resource_names or [])

    assert wait_for(names, 60, message="the worker Role") == ["auto-roles-btcusdt"]
    k.patch("tradingstrategies", "roles", {"spec": {"symbols": ["BTCUSDT", "ETHUSDT"]}})
    wait_for(lambda: names() == ["auto-roles-btcusdt", "auto-roles-ethusdt"], 60,
             message="the Role patched for the new symbol")
