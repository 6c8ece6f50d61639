"""Fixtures of the control-plane chaos tests (test_operator_restarts.py,
test_api_outage.py): a dedicated local cluster, because these tests stop the API
server and run their own operator process, which must not disturb (or be disturbed
by) the session cluster and the Helm-installed operator of the other e2e tests."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def hean_chaos_cluster():
    """``SimpleNamespace(cp, agent, kubeconfig, kubectl)``: a ControlPlane + NodeAgent
    with the CRDs installed; local harness only (skips with HEAN_E2E_KUBECONFIG)."""
    if os.environ.get("HEAN_E2E_KUBECONFIG"):
        pytest.skip("control-plane chaos stops kube-apiserver: local harness only")
    from hean.testing import wait_for
    from hean.testing.controlplane import ControlPlane
    from hean.testing.nodeagent import NodeAgent

    cp = ControlPlane(keep=os.environ.get("HEAN_E2E_KEEP", "") not in ("", "0"))
    agent = None
    try:
        cp.start()
        agent = NodeAgent(cp.kubeconfig, workdir=cp.workdir / "agent").start()
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        for crd in ("tradingstrategies", "riskpolicies", "symbolquarantines"):
            # `kubectl wait` fails outright while a new CRD has no conditions yet.
            wait_for(lambda: cp.kubectl("wait", "--for=condition=Established", f"crd/{crd}.hean.io",
                                        "--timeout=30s", check=False).returncode == 0,
                     90, interval=0.5, message=f"CRD {crd}.hean.io Established")
        yield SimpleNamespace(cp=cp, agent=agent, kubeconfig=cp.kubeconfig, kubectl=cp.kubectl)
    finally:
        if agent is not None:
            agent.stop()
        cp.stop()
