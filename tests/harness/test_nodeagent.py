"""Pods run by the node (the local node agent here; a kubelet on kind).

Everything that can be observed through the API also runs against an existing
cluster (``HEAN_E2E_KUBECONFIG``); checks on local processes, paths and the agent's
kubeconfig are local-harness only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from hean.testing import wait_for
from hean.testing.controlplane import free_port

IMAGE = "python:3.12-slim"  # used by real clusters only; the local agent ignores images


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def local_only(kube) -> None:
    if not kube.is_local:
        pytest.skip("inspects local processes/paths of the local node agent")


def pod(name: str, code: str | None = None, *, command: list[str] | None = None,
        restart: str = "Never", grace: int = 2, labels: dict | None = None,
        container: dict | None = None, **spec: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "main", "image": IMAGE,
                         "command": command or ["python", "-c", code or "pass"]}
    c.update(container or {})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"test": name}},
        "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": grace,
                 "containers": [c], **spec},
    }


def get_pod(kube, ns: str, name: str) -> dict[str, Any] | None:
    return kube.get("pod", name, ns, check=False)


def wait_pod(kube, ns: str, name: str, pred: Callable[[dict], Any], what: str,
             timeout: float = 90) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def probe():
        p = get_pod(kube, ns, name)
        box["pod"] = p
        return p if p is not None and pred(p) else None

    return wait_for(probe, timeout=timeout, interval=0.3,
                    message=lambda: f"pod {ns}/{name} {what}; last seen: "
                    + json.dumps((box.get("pod") or {}).get("status"), indent=1)[-3000:])


def phase(p: dict) -> str | None:
    return (p.get("status") or {}).get("phase")


def cond(p: dict, ctype: str) -> str | None:
    for c in (p.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c["status"]
    return None


def cstatus(p: dict, name: str = "main") -> dict:
    for c in (p.get("status") or {}).get("containerStatuses") or []:
        if c["name"] == name:
            return c
    return {}


# ---------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_env_resolution(kube, namespace, tmp_path) -> None:
    out_dir = tmp_path / "out"  # hostPath mounted at the same path ("as a real path")
    kube.kubectl("create", "secret", "generic", "creds", "--from-literal=apiKey=k-123",
                 "--from-literal=apiSecret=s3cr3t", "-n", namespace)
    kube.kubectl("create", "configmap", "settings", "--from-literal=mode=paper",
                 "--from-literal=level=3", "-n", namespace)
    code = (
        "import json, os, sys\n"
        "d = dict(os.environ); d['ARGV'] = sys.argv[1:]\n"
        "s = json.dumps(d)\n"
        "open(os.path.join(os.environ['OUT_DIR'], 'env.json'), 'w').write(s)\n"
        "print(s, flush=True)\n"
    )
    ref = lambda path: {"valueFrom": {"fieldRef": {"fieldPath": path}}}  # noqa: E731
    env = [
        {"name": "POD_NAME", **ref("metadata.name")},
        {"name": "POD_NAMESPACE", **ref("metadata.namespace")},
        {"name": "POD_UID", **ref("metadata.uid")},
        {"name": "TIER", **ref("metadata.labels['tier']")},
        {"name": "NOTE", **ref("metadata.annotations['hean.io/note']")},
        {"name": "NODE_NAME", **ref("spec.nodeName")},
        {"name": "SA_NAME", **ref("spec.serviceAccountName")},
        {"name": "POD_IP", **ref("status.podIP")},
        {"name": "HOST_IP", **ref("status.hostIP")},
        {"name": "API_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "apiSecret"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope",
                                                              "optional": True}}},
        {"name": "MISSING_SECRET", "valueFrom": {"secretKeyRef": {"name": "no-such-secret",
                                                                  "key": "x", "optional": True}}},
        {"name": "GREETING", "value": "hello-$(POD_NAME)-$$(POD_NAME)-$(UNDEFINED)"},
        {"name": "OUT_DIR", "value": str(out_dir)},
    ]
    manifest = pod("envpod", code, labels={"tier": "backend"},
                   container={
                       "args": ["$(POD_NAME)", "$$(POD_NAME)"],
                       "command": ["python", "-c", code],
                       "env": env,
                       "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"},
                                   {"secretRef": {"name": "creds"}}],
                       "volumeMounts": [{"name": "out", "mountPath": str(out_dir)}],
                   },
                   volumes=[{"name": "out", "hostPath": {"path": str(out_dir),
                                                         "type": "DirectoryOrCreate"}}])
    manifest["metadata"]["annotations"] = {"hean.io/note": "annotated"}
    kube.apply(manifest, namespace=namespace)
    p = wait_pod(kube, namespace, "envpod", lambda p: phase(p) in ("Succeeded", "Failed"), "to finish")
    assert phase(p) == "Succeeded", p["status"]

    if kube.is_local:
        got = json.loads((out_dir / "env.json").read_text())
    else:
        got = json.loads(kube.logs(namespace, "envpod").strip().splitlines()[-1])
    meta, status = p["metadata"], p["status"]
    assert got["POD_NAME"] == "envpod"
    assert got["POD_NAMESPACE"] == namespace
    assert got["POD_UID"] == meta["uid"]
    assert got["TIER"] == "backend"
    assert got["NOTE"] == "annotated"
    assert got["NODE_NAME"] == p["spec"]["nodeName"]
    assert got["SA_NAME"] == "default"
    assert got["POD_IP"] == status["podIP"]
    assert got["HOST_IP"] == status["hostIP"]
    assert got["API_SECRET"] == "s3cr3t"
    assert got["MODE"] == "paper"
    assert "MISSING" not in got and "MISSING_SECRET" not in got
    assert got["CM_mode"] == "paper" and got["CM_level"] == "3"
    assert got["apiKey"] == "k-123"
    assert got["GREETING"] == "hello-envpod-$(POD_NAME)-$(UNDEFINED)"
    assert got["ARGV"] == ["envpod", "$(POD_NAME)"]
    if kube.is_local:
        assert status["podIP"].startswith("127.") and status["podIP"] != "127.0.0.1"
        assert status["hostIP"] == "127.0.0.1"
        assert got["HOSTNAME"] == "envpod"
        # `python` resolves to the agent's interpreter.
        assert got["PATH"].split(os.pathsep)[0] == os.path.dirname(kube.agent.python)
        kc = Path(got["KUBECONFIG"])
        assert kc.is_file() and kc.parent == kube.agent.log_path(namespace, "envpod").parent
        assert kube.agent.log_path(namespace, "envpod").name == "main.log"


@pytest.mark.e2e
def test_missing_secret_is_a_config_error_until_it_exists(kube, namespace) -> None:
    manifest = pod("needs-secret", "import os; print(os.environ['TOKEN'])", container={
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "t"}}}]})
    kube.apply(manifest, namespace=namespace)
    wait_pod(kube, namespace, "needs-secret",
             lambda p: cstatus(p).get("state", {}).get("waiting", {}).get("reason")
             == "CreateContainerConfigError", "to report CreateContainerConfigError")
    assert phase(get_pod(kube, namespace, "needs-secret")) == "Pending"
    kube.kubectl("create", "secret", "generic", "later", "--from-literal=t=tok", "-n", namespace)
    wait_pod(kube, namespace, "needs-secret", lambda p: phase(p) == "Succeeded", "to succeed",
             timeout=120)
    assert "tok" in kube.logs(namespace, "needs-secret")


@pytest.mark.e2e
def test_readiness_probe_http(kube, namespace) -> None:
    # A port nobody uses on this machine (other processes may listen on 0.0.0.0:8080,
    # which would also block 127.0.0.N:8080 for local pods).
    port = free_port() if kube.is_local else 8080
    server = {
        "command": ["python", "-m", "http.server", str(port), "--bind", "$(POD_IP)"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": port}],
    }
    ready = pod("web", restart="Always", container={
        **server,
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 1,
                           "periodSeconds": 1, "failureThreshold": 3},
    })
    unready = pod("web-unready", restart="Always", container={
        **server,
        "readinessProbe": {"httpGet": {"path": "/no-such-page", "port": port},
                           "periodSeconds": 1, "failureThreshold": 1},
    })
    kube.apply(ready, unready, namespace=namespace)
    p = wait_pod(kube, namespace, "web", lambda p: cond(p, "Ready") == "True", "to become Ready",
                 timeout=120)
    assert cstatus(p)["ready"] is True and phase(p) == "Running"
    q = wait_pod(kube, namespace, "web-unready",
                 lambda p: "running" in cstatus(p).get("state", {}), "to run", timeout=120)
    time.sleep(4)  # several probe periods: a 404 must keep it unready
    q = get_pod(kube, namespace, "web-unready")
    assert phase(q) == "Running"
    assert cond(q, "Ready") == "False" and cstatus(q)["ready"] is False
    assert p["status"]["podIP"] != q["status"]["podIP"]  # same port, each on its own IP
    if kube.is_local:
        log = kube.logs(namespace, "web")
        assert '"GET / HTTP/1.1" 200' in log, log
        assert '"GET /no-such-page HTTP/1.1" 404' in kube.logs(namespace, "web-unready")


@pytest.mark.e2e
def test_liveness_probe_restarts_container(kube, namespace) -> None:
    port = free_port() if kube.is_local else 8081  # nothing listens there
    kube.apply(pod("unhealthy", "import time; time.sleep(3600)", restart="Always", grace=1,
                   container={"livenessProbe": {
                       "httpGet": {"path": "/healthz", "port": port},
                       "periodSeconds": 1, "failureThreshold": 2, "timeoutSeconds": 1}}),
               namespace=namespace)
    p = wait_pod(kube, namespace, "unhealthy", lambda p: cstatus(p).get("restartCount", 0) >= 1,
                 "to be restarted by its liveness probe", timeout=120)
    last = cstatus(p)["lastState"]["terminated"]
    assert last["exitCode"] != 0


@pytest.mark.e2e
def test_restart_policy_on_failure(kube, namespace) -> None:
    kube.apply(pod("crasher", "import sys; print('crashing', flush=True); sys.exit(3)",
                   restart="OnFailure"),
               pod("finisher", "print('done')", restart="OnFailure"), namespace=namespace)
    seen: set[str] = set()

    def restarted_twice():
        p = get_pod(kube, namespace, "crasher")
        cs = cstatus(p or {})
        w = cs.get("state", {}).get("waiting")
        if w:
            seen.add(w.get("reason"))
        return p if cs.get("restartCount", 0) >= 2 else None

    p = wait_for(restarted_twice, timeout=180, interval=0.3, message="crasher restarted twice")
    cs = cstatus(p)
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert phase(p) not in ("Succeeded", "Failed")
    def saw_backoff() -> bool:
        restarted_twice()
        return "CrashLoopBackOff" in seen

    wait_for(saw_backoff, timeout=120, interval=0.3,
             message=lambda: f"state waiting/CrashLoopBackOff between restarts (seen {seen})")
    if kube.is_local:
        assert kube.logs(namespace, "crasher").count("crashing") >= 3

    f = wait_pod(kube, namespace, "finisher", lambda p: phase(p) == "Succeeded", "to succeed")
    assert cstatus(f)["restartCount"] == 0
    assert cstatus(f)["state"]["terminated"]["reason"] == "Completed"


@pytest.mark.e2e
def test_restart_policy_never_fails(kube, namespace) -> None:
    kube.apply(pod("once", "import sys; sys.exit(2)", restart="Never"), namespace=namespace)
    p = wait_pod(kube, namespace, "once", lambda p: phase(p) in ("Failed", "Succeeded"), "to finish")
    assert phase(p) == "Failed"
    cs = cstatus(p)
    assert cs["state"]["terminated"]["exitCode"] == 2
    assert cs["state"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 0 and cs["ready"] is False
    assert cond(p, "Ready") == "False"
    time.sleep(2)
    assert cstatus(get_pod(kube, namespace, "once"))["restartCount"] == 0


@pytest.mark.e2e
def test_init_container_and_emptydir(kube, namespace) -> None:
    scratch = f"/tmp/hean-e2e-{namespace}/scratch"  # does not exist: linked while in use
    manifest = pod("staged", f"print(open('{scratch}/msg').read())", container={
        "volumeMounts": [{"name": "scratch", "mountPath": scratch}]})
    manifest["spec"]["initContainers"] = [{
        "name": "prepare", "image": IMAGE,
        "command": ["python", "-c", f"open('{scratch}/msg', 'w').write('from-init-container')"],
        "volumeMounts": [{"name": "scratch", "mountPath": scratch}],
    }]
    manifest["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    kube.apply(manifest, namespace=namespace)
    p = wait_pod(kube, namespace, "staged", lambda p: phase(p) in ("Succeeded", "Failed"), "to finish")
    assert phase(p) == "Succeeded", p["status"]
    init = p["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0
    assert cond(p, "Initialized") == "True"
    assert "from-init-container" in kube.logs(namespace, "staged", "main")
    if kube.is_local:
        assert Path(scratch).is_symlink()
        kube.kubectl("delete", "pod", "staged", "-n", namespace, "--timeout=60s")
        # the link and the parent directories created for it go with the last user
        wait_for(lambda: not os.path.lexists(os.path.dirname(scratch)), timeout=10,
                 message=f"{scratch} and its created parent to be removed")


@pytest.mark.e2e
def test_hostpath_link_and_mount_conflict(kube, namespace, tmp_path) -> None:
    local_only(kube)
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello").write_text("hi from the host")
    link = tmp_path / "links" / "data"  # does not exist yet
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    vols = [{"name": "src", "hostPath": {"path": str(src), "type": "Directory"}}]
    kube.apply(
        pod("linker", f"import time; print(open('{link}/hello').read(), flush=True); time.sleep(600)",
            container={"volumeMounts": [{"name": "src", "mountPath": str(link)}]}, volumes=vols),
        pod("conflict", "print('never runs')",
            container={"volumeMounts": [{"name": "src", "mountPath": str(occupied)}]}, volumes=vols),
        namespace=namespace,
    )
    wait_pod(kube, namespace, "linker", lambda p: phase(p) == "Running", "to run")
    assert link.is_symlink() and link.resolve() == src.resolve()
    wait_for(lambda: "hi from the host" in kube.logs(namespace, "linker"), timeout=10,
             message="linker output")

    c = wait_pod(kube, namespace, "conflict", lambda p: phase(p) in ("Failed", "Succeeded"), "to fail")
    assert phase(c) == "Failed"
    term = cstatus(c)["state"]["terminated"]
    assert term["reason"] == "MountConflict"
    assert str(occupied) in term["message"] and "already exists" in term["message"]
    assert not (occupied / "hello").exists()

    kube.kubectl("delete", "pod", "linker", "-n", namespace, "--timeout=60s")
    assert not os.path.lexists(link), "the mount link is removed with its last pod"
    assert not (tmp_path / "links").exists()
    assert (src / "hello").read_text() == "hi from the host"


def _pid_pod(name: str, out: Path, *, ignore_term: bool = False, grace: int = 2) -> dict:
    handler = "signal.SIG_IGN" if ignore_term else "on_term"
    code = (
        "import os, signal, sys, time\n"
        f"OUT = {str(out)!r}\n"
        "def on_term(*_):\n"
        "    open(os.path.join(OUT, 'term'), 'w').write('SIGTERM'); sys.exit(0)\n"
        f"signal.signal(signal.SIGTERM, {handler})\n"
        "open(os.path.join(OUT, 'pid.tmp'), 'w').write(str(os.getpid()))\n"
        "os.replace(os.path.join(OUT, 'pid.tmp'), os.path.join(OUT, 'pid'))\n"
        "time.sleep(3600)\n"
    )
    return pod(name, code, restart="Always", grace=grace,
               container={"volumeMounts": [{"name": "out", "mountPath": str(out)}]},
               volumes=[{"name": "out", "hostPath": {"path": str(out), "type": "DirectoryOrCreate"}}])


def _running_pid(kube, ns: str, name: str, out: Path) -> int:
    wait_pod(kube, ns, name, lambda p: phase(p) == "Running", "to run")
    wait_for(lambda: (out / "pid").exists(), timeout=30, message=f"{out}/pid")
    pid = int((out / "pid").read_text())
    assert pid_alive(pid)
    assert kube.agent.container_pid(ns, name) == pid
    return pid


@pytest.mark.e2e
def test_deleting_a_pod_stops_its_process(kube, namespace, tmp_path) -> None:
    local_only(kube)
    # graceful: SIGTERM reaches the process, which exits on its own
    out = tmp_path / "graceful"
    kube.apply(_pid_pod("graceful", out), namespace=namespace)
    pid = _running_pid(kube, namespace, "graceful", out)
    kube.kubectl("delete", "pod", "graceful", "-n", namespace, "--timeout=60s")
    assert get_pod(kube, namespace, "graceful") is None
    assert not pid_alive(pid)
    assert (out / "term").read_text() == "SIGTERM"

    # SIGTERM ignored: SIGKILL after the grace period
    out = tmp_path / "stubborn"
    kube.apply(_pid_pod("stubborn", out, ignore_term=True, grace=2), namespace=namespace)
    pid = _running_pid(kube, namespace, "stubborn", out)
    t0 = time.monotonic()
    kube.kubectl("delete", "pod", "stubborn", "-n", namespace, "--timeout=60s")
    took = time.monotonic() - t0
    assert not pid_alive(pid)
    assert 1.5 <= took < 20, took

    # force-deleted (gone from the API at once): the process is stopped anyway
    out = tmp_path / "forced"
    kube.apply(_pid_pod("forced", out), namespace=namespace)
    pid = _running_pid(kube, namespace, "forced", out)
    kube.kubectl("delete", "pod", "forced", "-n", namespace, "--grace-period=0", "--force")
    wait_for(lambda: not pid_alive(pid), timeout=15, message=f"pid {pid} to exit")


@pytest.mark.e2e
def test_owner_reference_cascade(kube, namespace, tmp_path) -> None:
    kube.kubectl("create", "configmap", "owner", "--from-literal=a=b", "-n", namespace)
    owner_uid = kube.get("configmap", "owner", namespace)["metadata"]["uid"]
    out = tmp_path / "owned"
    manifest = _pid_pod("owned", out)
    manifest["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}]
    kube.apply(manifest, namespace=namespace)
    if kube.is_local:
        pid = _running_pid(kube, namespace, "owned", out)
    else:
        wait_pod(kube, namespace, "owned", lambda p: phase(p) == "Running", "to run")
    kube.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(lambda: get_pod(kube, namespace, "owned") is None, timeout=90, interval=0.5,
             message="the garbage collector to delete the owned pod")
    if kube.is_local:
        assert not pid_alive(pid)
        assert (out / "term").read_text() == "SIGTERM"


@pytest.mark.e2e
def test_serviceaccount_kubeconfig(kube, namespace) -> None:
    local_only(kube)  # the pod uses the harness's interpreter (with the kubernetes client)
    ns = namespace
    kube.kubectl("create", "serviceaccount", "reader", "-n", ns)
    kube.kubectl("create", "role", "cm-getter", "--verb=get", "--resource=configmaps", "-n", ns)
    kube.kubectl("create", "rolebinding", "cm-getter", "--role=cm-getter",
                 f"--serviceaccount={ns}:reader", "-n", ns)
    kube.kubectl("create", "configmap", "target", "--from-literal=answer=42", "-n", ns)
    kube.kubectl("create", "secret", "generic", "hidden", "--from-literal=x=y", "-n", ns)
    code = (
        "import json, os\n"
        "from kubernetes import client, config\n"
        "out = {'KUBECONFIG': os.environ.get('KUBECONFIG')}\n"
        "if out['KUBECONFIG']:\n"
        "    config.load_kube_config()\n"
        "    v1 = client.CoreV1Api()\n"
        f"    out['answer'] = v1.read_namespaced_config_map('target', {ns!r}).data['answer']\n"
        "    for what, call in (('secrets', v1.list_namespaced_secret),\n"
        "                       ('list_configmaps', v1.list_namespaced_config_map)):\n"
        "        try:\n"
        f"            call({ns!r}); out[what] = 'allowed'\n"
        "        except client.ApiException as e:\n"
        "            out[what] = e.status\n"
        "    r = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())\n"
        "    out['user'] = r.status.user_info.username\n"
        "print(json.dumps(out), flush=True)\n"
    )
    kube.apply(pod("sa-pod", code, serviceAccountName="reader"),
               pod("no-token", code, serviceAccountName="reader",
                   automountServiceAccountToken=False), namespace=ns)
    for name in ("sa-pod", "no-token"):
        p = wait_pod(kube, ns, name, lambda p: phase(p) in ("Succeeded", "Failed"), "to finish")
        assert phase(p) == "Succeeded", kube.logs(ns, name)
    got = json.loads(kube.logs(ns, "sa-pod").strip().splitlines()[-1])
    assert got["answer"] == "42"
    assert got["secrets"] == 403
    assert got["list_configmaps"] == 403
    assert got["user"] == f"system:serviceaccount:{ns}:reader"
    assert json.loads(kube.logs(ns, "no-token").strip().splitlines()[-1]) == {"KUBECONFIG": None}


@pytest.mark.e2e
def test_kubectl_logs(kube, namespace) -> None:
    """The agent serves /containerLogs, so `kubectl logs` (incl. -f and --tail) works
    exactly as with a kubelet."""
    code = "import time\nfor i in range(5):\n    print('line', i, flush=True); time.sleep(0.3)"
    kube.apply(pod("talker", code, restart="Never"), namespace=namespace)
    wait_pod(kube, namespace, "talker", lambda p: phase(p) in ("Running", "Succeeded"), "to start")
    out = kube.kubectl("logs", "-f", "talker", "-n", namespace, timeout=60).stdout
    assert out.splitlines() == [f"line {i}" for i in range(5)]
    assert kube.kubectl("logs", "talker", "-n", namespace, "--tail=2").stdout.splitlines() == [
        "line 3", "line 4"]


@pytest.mark.e2e
def test_watch_resumes_after_disconnect(kube, namespace) -> None:
    local_only(kube)
    resp = kube.agent._watch_resp
    assert resp is not None
    resp.shutdown()  # drop the agent's pod watch mid-stream
    kube.apply(pod("after-reconnect", "print('ok')"), namespace=namespace)
    wait_pod(kube, namespace, "after-reconnect", lambda p: phase(p) == "Succeeded", "to succeed")


# ---------------------------------------------------------------------------------------
# unit tests of agent internals (no cluster)
def test_expand_vars_matches_kubelet() -> None:
    from hean.testing.nodeagent import expand_vars

    env = {"A": "1", "B": "two"}
    cases = {
        "$(A)": "1",
        "x-$(A)-$(B)": "x-1-two",
        "$$(A)": "$(A)",
        "$$": "$",
        "$(MISSING)": "$(MISSING)",
        "$(A": "$(A",
        "$A": "$A",
        "a$": "a$",
        "$$$(A)": "$1",
        "": "",
        "no vars": "no vars",
    }
    for src, want in cases.items():
        assert expand_vars(src, env) == want, src


class _FakeResp:
    def __init__(self, events: list[dict]) -> None:
        self.data = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    def stream(self, amt=None, decode_content=False):
        # split mid-line to exercise the line buffering
        yield self.data[: len(self.data) // 2]
        yield self.data[len(self.data) // 2:]

    def release_conn(self) -> None:
        pass


def test_watch_relists_on_410_and_resumes_from_last_version(tmp_path) -> None:
    from hean.testing.nodeagent import NodeAgent

    agent = NodeAgent(tmp_path / "unused-kubeconfig", workdir=tmp_path)
    seen_rvs: list[str] = []
    relists: list[int] = []
    handled: list[tuple[str, str]] = []
    other = lambda name, rv: {"metadata": {"name": name, "namespace": "ns", "uid": name,  # noqa: E731
                                           "resourceVersion": rv},
                              "spec": {"nodeName": "some-other-node"}}

    class FakeApi:
        def get(self, path, **kw):
            relists.append(1)
            return {"metadata": {"resourceVersion": "100"}, "items": [other("listed", "90")]}

        def stream(self, path, query, timeout):
            seen_rvs.append(query["resourceVersion"])
            n = len(seen_rvs)
            if n == 1:
                return _FakeResp([{"type": "ADDED", "object": other("a", "5")},
                                  {"type": "ERROR", "object": {"code": 410, "message": "too old"}}])
            if n == 2:
                return _FakeResp([{"type": "MODIFIED", "object": other("b", "120")},
                                  {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "150"}}}])
            agent._stopping.set()
            return _FakeResp([])

    agent._api = FakeApi()  # type: ignore[assignment]
    orig = agent._on_pod
    agent._on_pod = lambda t, o: (handled.append((t, o["metadata"]["name"])), orig(t, o))  # type: ignore
    agent._watch_loop("4")
    assert seen_rvs == ["4", "100", "150"]
    assert len(relists) == 1
    assert handled == [("ADDED", "a"), ("ADDED", "listed"), ("MODIFIED", "b")]
