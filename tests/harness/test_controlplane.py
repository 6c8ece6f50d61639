"""The local control plane is a real Kubernetes control plane.

Version pin, RBAC, kube-controller-manager's controllers (namespace, deployment,
replicaset) and a clean teardown. The tests using ``kube`` also run against an
existing cluster (``HEAN_E2E_KUBECONFIG``, e.g. kind); the harness-only ones skip
there.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import time

import httpx
import pytest

from hean.testing import wait_for
from hean.testing.bins import read_versions
from hean.testing.controlplane import ControlPlane, processes_referencing

pytestmark = pytest.mark.e2e

IMAGE = "python:3.12-slim"  # used by real clusters only; the local agent ignores images


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def local_only(kube) -> None:
    if not kube.is_local:
        pytest.skip("checks the local harness itself")


# ---------------------------------------------------------------------------------------
def test_teardown_leaves_no_processes_and_starts_fast() -> None:
    """A separate short-lived ControlPlane + NodeAgent with a running pod (which has a
    child process of its own): after stop() nothing that belonged to them survives."""
    if os.environ.get("HEAN_E2E_KUBECONFIG"):
        pytest.skip("harness-only test (an external cluster is in use)")
    from hean.testing.nodeagent import NodeAgent

    cp = ControlPlane()
    agent = None
    try:
        cp.start()
        assert cp.startup_seconds is not None and cp.startup_seconds < 30, cp.startup_seconds
        workdir = cp.workdir
        assert workdir is not None and (workdir / "kubeconfig").is_file()
        agent = NodeAgent(cp.kubeconfig, node_name="hean-teardown-node", workdir=workdir / "agent")
        agent.start()
        cp.kubectl("create", "namespace", "td")
        wait_for(lambda: cp.kubectl("get", "sa", "default", "-n", "td", check=False).returncode == 0,
                 timeout=30, message="default ServiceAccount in td")
        marker = f"hean-teardown-child-{secrets.token_hex(4)}"  # unique on a shared machine
        child = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}]); time.sleep(600)"
        cp.kubectl("apply", "-n", "td", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
            "spec": {"containers": [{"name": "main", "image": IMAGE, "command": ["python", "-c", child]}]},
        }))
        wait_for(lambda: agent.container_pid("td", "sleeper"), timeout=30, message="sleeper running")
        pod_pid = agent.container_pid("td", "sleeper")
        assert pod_pid is not None

        def pod_children() -> list[int]:
            return [p for p, cmd in processes_referencing(marker) if pid_alive(p)]

        wait_for(pod_children, timeout=10, message="the pod's child process")
        component_pids = list(cp.pids.values())
        assert len(component_pids) == 3 and all(pid_alive(p) for p in component_pids)

        agent.stop()
        agent = None
        # The agent deregistered its Node.
        r = cp.kubectl("get", "node", "hean-teardown-node", check=False)
        assert r.returncode != 0 and "NotFound" in r.stderr, r
        assert not pid_alive(pod_pid)
        assert pod_children() == []

        cp.stop()
        for p in component_pids:
            assert not pid_alive(p), f"pid {p} survived ControlPlane.stop()"
        assert processes_referencing(workdir) == []
        assert not workdir.exists(), "the temporary work directory was not removed"
    finally:
        if agent is not None:
            agent.stop()
        cp.stop()


def test_start_failure_reports_log_tail(tmp_path) -> None:
    """A broken flag makes the apiserver exit; the exception carries its log."""
    if os.environ.get("HEAN_E2E_KUBECONFIG"):
        pytest.skip("harness-only test (an external cluster is in use)")
    cp = ControlPlane(workdir=tmp_path / "cp", extra_apiserver_args=["--no-such-flag=1"])
    with pytest.raises(Exception) as ei:
        cp.start()
    msg = str(ei.value)
    assert "kube-apiserver exited" in msg and "no-such-flag" in msg, msg
    assert processes_referencing(tmp_path / "cp") == []


# ---------------------------------------------------------------------------------------
def test_server_version_is_the_pinned_one(kube) -> None:
    local_only(kube)  # an external cluster runs whatever version it runs
    want = read_versions()["KUBERNETES_VERSION"]
    out = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == want
    assert out["clientVersion"]["gitVersion"] == want
    from kubernetes import client

    with kube.api_client() as api:
        assert client.VersionApi(api).get_code().git_version == want
    # helm is the pinned one too, and reaches the cluster with the harness's settings
    helm_version = kube.helm("version", "--template", "{{.Version}}").stdout.strip()
    assert helm_version == read_versions()["HELM_VERSION"]
    assert isinstance(json.loads(kube.helm("list", "--all-namespaces", "-o", "json").stdout or "[]"), list)


def test_rbac_is_enforced(kube, namespace) -> None:
    sa = "nobody"
    kube.kubectl("create", "serviceaccount", sa, "-n", namespace)
    who = f"--as=system:serviceaccount:{namespace}:{sa}"
    r = kube.kubectl("auth", "can-i", "list", "pods", "-n", namespace, who, check=False)
    assert r.returncode != 0 and r.stdout.strip() == "no", r
    r = kube.kubectl("auth", "can-i", "list", "pods", "-n", namespace)
    assert r.stdout.strip() == "yes"

    # A real request with the ServiceAccount's own token is authenticated and denied.
    token = kube.kubectl("create", "token", sa, "-n", namespace, "--duration=10m").stdout.strip()
    ctx = ssl.create_default_context(cadata=kube.ca_pem.decode()) if kube.ca_pem else False
    url = f"{kube.server}/api/v1/namespaces/{namespace}/pods"
    with httpx.Client(verify=ctx, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        resp = http.get(url)
        assert resp.status_code == 403, resp.text
        body = resp.json()
        assert body["reason"] == "Forbidden"
        assert f"system:serviceaccount:{namespace}:{sa}" in body["message"]

        # ...and the denial is RBAC's: granting a Role makes the same request succeed.
        kube.kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace)
        kube.kubectl("create", "rolebinding", "pod-reader", "--role=pod-reader",
                     f"--serviceaccount={namespace}:{sa}", "-n", namespace)
        wait_for(lambda: http.get(url).status_code == 200, timeout=30,
                 message="the RoleBinding to take effect")
        assert http.get(f"{kube.server}/api/v1/namespaces/{namespace}/secrets").status_code == 403


def test_namespace_deletion_completes(kube) -> None:
    """kcm's namespace controller empties and removes a namespace, including a
    running pod that the node agent terminates."""
    ns = f"hean-t-{secrets.token_hex(3)}"
    kube.kubectl("create", "namespace", ns)
    try:
        wait_for(lambda: kube.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0,
                 timeout=60, message=f"ServiceAccount {ns}/default")
        kube.kubectl("create", "configmap", "cfg", "--from-literal=a=b", "-n", ns)
        kube.kubectl("create", "secret", "generic", "sec", "--from-literal=a=b", "-n", ns)
        kube.apply({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                "name": "main", "image": IMAGE,
                "command": ["python", "-c", "import time; time.sleep(600)"]}]},
        }, namespace=ns)
        wait_for(lambda: (kube.get("pod", "sleeper", ns).get("status") or {}).get("phase") == "Running",
                 timeout=120, message="pod sleeper Running")
        pid = kube.agent.container_pid(ns, "sleeper") if kube.is_local else None
        t0 = time.monotonic()
        kube.kubectl("delete", "namespace", ns, "--wait=false")
        wait_for(lambda: kube.kubectl("get", "namespace", ns, check=False).returncode != 0,
                 timeout=120, interval=0.5,
                 message=lambda: f"namespace {ns} to disappear: "
                 + kube.kubectl("get", "namespace", ns, "-o", "json", check=False).stdout[-1500:])
        print(f"namespace deletion took {time.monotonic() - t0:.1f}s")
        if pid is not None:
            assert not pid_alive(pid)
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def test_deployment_gets_replicaset_and_ready_pod(kube, namespace) -> None:
    kube.apply({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "main", "image": IMAGE,
                    "command": ["python", "-c", "import time; print('up', flush=True); time.sleep(3600)"],
                }]},
            },
        },
    }, namespace=namespace)
    kube.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=120s", timeout=130)

    rs_list = kube.get("replicasets", namespace=namespace)["items"]
    assert len(rs_list) == 1
    owner = rs_list[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("Deployment", "web", True)

    pods = kube.get("pods", namespace=namespace)["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["ownerReferences"][0]["name"] == rs_list[0]["metadata"]["name"]
    assert pod["status"]["phase"] == "Running"
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds["Ready"] == "True" and conds["ContainersReady"] == "True"
    cs = pod["status"]["containerStatuses"][0]
    assert cs["ready"] is True and "running" in cs["state"]

    dep = kube.get("deployment", "web", namespace)
    assert dep["status"].get("availableReplicas") == 1

    if kube.is_local:
        name = pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == kube.agent.node_name
        pid = kube.agent.container_pid(namespace, name)
        assert pid is not None and pid_alive(pid)
        wait_for(lambda: "up" in kube.logs(namespace, name), timeout=10, message="pod output")


def test_node_is_registered_and_kept_alive(kube) -> None:
    local_only(kube)
    node = kube.get("node", kube.agent.node_name)
    assert node["metadata"]["labels"]["hean.io/local-node"] == "true"
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    assert not [t for t in node["spec"].get("taints") or [] if t["effect"] == "NoExecute"]
    lease = kube.get("lease", kube.agent.node_name, "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == kube.agent.node_name
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
