"""The node agent's opt-in fork server (hean.testing.zygote): a forked container must
look to its program and to the agent exactly like a fresh ``Popen`` (environment,
cwd, argv, own session, log file appended, exit status and death by signal)."""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

from hean.testing import wait_for
from hean.testing.zygote import Zygote

SHOW = ("import json, os, sys; print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd(), 'argv': sys.argv, "
        "'pid': os.getpid(), 'pgid': os.getpgid(0), 'sid': os.getsid(0), 'ppid': os.getppid(), "
        "'fds': sorted(int(f) for f in os.listdir('/proc/self/fd'))})); sys.exit(int(os.environ.get('CODE', '0')))")


@pytest.fixture
def zygote(tmp_path):
    z = Zygote(sys.executable, {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, ["-c"], tmp_path / "z.log").start()
    assert z.wait_ready(60), (tmp_path / "z.log").read_text()
    yield z
    z.stop()


def test_forked_container_is_like_a_fresh_process(zygote, tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CODE": "3", "POD_ONLY": "x"}
    log = tmp_path / "c.log"
    log.write_text("earlier run\n")
    argv = [sys.executable, "-c", SHOW, "arg1"]
    assert zygote.accepts(argv, sys.executable, env)
    p = zygote.spawn(argv, env, str(tmp_path), log)
    assert p.wait(30) == 3 and p.poll() == 3
    earlier, line = log.read_text().splitlines()
    assert earlier == "earlier run"  # appended, as the agent's Popen does
    out = json.loads(line)
    assert out["env"] == env  # exactly the pod's environment, nothing of the zygote's
    assert out["cwd"] == str(tmp_path) and out["argv"] == ["-c", "arg1"]
    assert out["pid"] == p.pid == out["pgid"] == out["sid"]  # session leader: killpg(pid) reaches it
    assert out["ppid"] == zygote.pid
    assert out["fds"] == [0, 1, 2, 3]  # stdio plus listdir's own descriptor; nothing inherited


def test_exit_status_signals_and_errors(zygote, tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "sleep.log"
    p = zygote.spawn([sys.executable, "-c", "import time; print('up'); time.sleep(60)"], env, "/", log)
    wait_for(lambda: "up" in log.read_text(), timeout=10, message="unbuffered output while running")
    with pytest.raises(Exception, match="timed out"):
        p.wait(0.1)
    os.killpg(p.pid, signal.SIGTERM)
    assert p.wait(10) == -signal.SIGTERM
    p = zygote.spawn([sys.executable, "-c", "raise ValueError('boom')"], env, "/", tmp_path / "err.log")
    assert p.wait(10) == 1
    assert "ValueError: boom" in (tmp_path / "err.log").read_text()
    with pytest.raises(OSError, match="No such file"):
        zygote.spawn([sys.executable, "-c", "pass"], env, str(tmp_path / "missing"), tmp_path / "x.log")
    # only the same interpreter with the same PYTHON* environment, and only served modules
    assert not zygote.accepts([sys.executable, "-c", "pass"], sys.executable, {**env, "PYTHONPATH": "/elsewhere"})
    assert not zygote.accepts([sys.executable, "-m", "hean.worker"], sys.executable, env)
    assert not zygote.accepts(["/bin/sh", "-c", "true"], "/bin/sh", env)


def test_node_agent_runs_pods_through_the_zygote(kube, namespace, tmp_path):
    """A second node agent with the zygote on the session's control plane: a pod's
    container is forked (its parent is the zygote), its log is served by ``kubectl
    logs`` and its exit code reaches the pod status."""
    if not kube.is_local:
        pytest.skip("local node agent only")
    from hean.testing.nodeagent import NodeAgent

    node = "hean-zygote-node"
    with NodeAgent(kube.kubeconfig, node_name=node, workdir=tmp_path / "agent", zygote=["-c"]) as agent:
        assert agent._zygote is not None and agent._zygote.wait_ready(60)
        kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "forked"},
                    "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "restartPolicy": "Never",
                             "containers": [{"name": "main", "image": "python:3.12-slim", "command": ["python"],
                                             "args": ["-c", SHOW], "env": [{"name": "CODE", "value": "7"}]}]}},
                   namespace=namespace)

        def terminated():
            st = kube.get("pod", "forked", namespace)["status"].get("containerStatuses") or [{}]
            return (st[0].get("state") or {}).get("terminated")

        term = wait_for(terminated, timeout=60, message="forked pod terminated")
        assert term["exitCode"] == 7
        out = json.loads(kube.kubectl("logs", "forked", "-n", namespace).stdout.splitlines()[-1])
        assert out["env"]["CODE"] == "7" and out["env"]["HOSTNAME"] == "forked"
        assert out["ppid"] == agent._zygote.pid and out["pid"] == out["sid"]
        assert agent._zygote.spawned == 1
