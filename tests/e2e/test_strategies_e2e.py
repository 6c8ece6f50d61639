"""End to end on a real control plane: the new strategies' params blocks through the
operator (Ready=False/InvalidParams with an Event naming the parameter, no worker;
fixed -> a worker), and a running worker picking up parameter and scanner edits
without a restart, publishing the scanner's picks in status."""

from __future__ import annotations

import time

import pytest

from hean.testing import wait_for
from test_walking_skeleton import K, hean_installed, policy, strategy  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e


def test_invalid_params_block_is_ready_false_with_an_event_then_fixed(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    # passes the schema (bounds), breaks a cross-field rule only the model knows
    k.apply(strategy("badgrid", ["SOLUSDT"], strategy="grid",
                     params={"grid": {"lowerPrice": 200, "upperPrice": 100}}))
    wait_for(lambda: (k.cond("badgrid", "Ready") or {}).get("reason") == "InvalidParams", 30,
             message="Ready=False/InvalidParams")
    ready = k.cond("badgrid", "Ready")
    assert ready["status"] == "False"
    assert "spec.params.grid.lowerPrice (200.0) must be less than spec.params.grid.upperPrice (100.0)" in ready["message"]
    ev = wait_for(lambda: [e for e in k.events("InvalidParams") if e.involved_object.name == "badgrid"], 15,
                  message="an InvalidParams Event")
    assert "spec.params.grid.lowerPrice" in ev[0].message
    time.sleep(2)
    assert k.pod("badgrid-worker") is None
    k.patch("tradingstrategies", "badgrid", {"spec": {"params": {"grid": {"lowerPrice": 100, "upperPrice": 200}}}})
    wait_for(lambda: (k.cond("badgrid", "Ready") or {}).get("status") == "True", 120, message="Ready=True once fixed")


def test_scanner_picks_in_status_and_live_param_updates(kube, namespace, hean_installed):
    k = K(kube, namespace)
    k.apply(policy())
    syms = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]
    k.apply(strategy("scan", syms, speed=20000, strategy="momentum",
                     params={"momentum": {"lookbackBars": 30, "trendEmaPeriod": 60}},
                     scanner={"universe": syms, "topN": 2, "lookbackBars": 60, "rerankBars": 60}))
    wait_for(lambda: len(((k.strategy("scan").get("status") or {}).get("scanner") or {}).get("picks") or []) == 2,
             120, message="status.scanner.picks")
    sc = k.strategy("scan")["status"]["scanner"]
    assert set(sc["picks"]) <= set(syms) and sc["rankedAt"].endswith("Z") and len(sc["ranking"]) == 4
    pod_uid = k.pod("scan-worker").metadata.uid
    gen = k.patch("tradingstrategies", "scan", {"spec": {"scanner": {"topN": 1},
                                                          "params": {"momentum": {"entryThresholdBps": 40}}}})
    new_gen = gen["metadata"]["generation"]
    wait_for(lambda: k.strategy("scan")["status"].get("workerObservedGeneration") == new_gen, 30,
             message="the worker to run the new generation")
    wait_for(lambda: len(k.strategy("scan")["status"]["scanner"]["picks"]) == 1, 30, message="one pick")
    why = k.worker_get("scan-worker", "/why")
    assert k.pod("scan-worker").metadata.uid == pod_uid, "a parameter edit must not replace the worker"
    assert k.pod("scan-worker").status.container_statuses[0].restart_count == 0
    assert why is not None
