"""Shared pytest fixtures for the whole hean test suite.

Cluster fixtures (tests using them are marked ``e2e`` automatically):

* ``kube`` (session): a Kubernetes cluster handle. If ``HEAN_E2E_KUBECONFIG`` is set,
  that existing cluster is used (e.g. kind on a laptop) and nothing is started;
  kubectl/helm come from ``$HEAN_K8S_BIN_DIR`` or PATH. Otherwise the local harness
  starts for the session: a real etcd + kube-apiserver + kube-controller-manager
  (:class:`hean.testing.controlplane.ControlPlane`) and the local node agent
  (:class:`hean.testing.nodeagent.NodeAgent`, which runs pods as local processes:
  machines without a container runtime only). ``HEAN_E2E_KEEP=1`` keeps the
  harness's work directory (logs, etcd data) after the session.
* ``namespace`` (function): a fresh ``hean-t-<random6>`` namespace, deleted (without
  waiting) after the test.
* ``marketdata_dir`` (session): ``<repo>/../shared/marketdata``; skips if absent.

Run only the fast tests with ``-m "not e2e"``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

try:  # the package is normally installed (pip install -e .); fall back to src/
    import hean.testing  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(REPO_ROOT / "src"))

from hean.testing import wait_for  # noqa: E402
from hean.testing.controlplane import run_tool  # noqa: E402

E2E_KUBECONFIG_ENV = "HEAN_E2E_KUBECONFIG"


class Kube:
    """What tests get from the ``kube`` fixture."""

    def __init__(
        self,
        kubeconfig: Path,
        bin_dir: Path,
        *,
        is_local: bool,
        agent: Any = None,
        controlplane: Any = None,
        startup_seconds: float | None = None,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.bin_dir = Path(bin_dir)
        self.is_local = is_local
        self.agent = agent
        self.controlplane = controlplane
        self.startup_seconds = startup_seconds
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        ctx_name = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg.get("contexts") or [] if c["name"] == ctx_name), {})
        cluster = next(
            (c["cluster"] for c in cfg.get("clusters") or [] if c["name"] == ctx.get("cluster")),
            (cfg.get("clusters") or [{"cluster": {}}])[0]["cluster"],
        )
        self.server: str = cluster.get("server", "")
        ca: bytes | None = None
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            p = Path(cluster["certificate-authority"])
            ca = (p if p.is_absolute() else self.kubeconfig.parent / p).read_bytes()
        self.ca_pem: bytes | None = ca

    # -- tools -------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        if self.controlplane is not None:
            return self.controlplane.tool_env()
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def _tool(self, name: str) -> str:
        p = self.bin_dir / name
        return str(p) if p.exists() else (shutil.which(name) or name)

    def kubectl(
        self, *args: Any, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return run_tool([self._tool("kubectl"), *map(str, args)], env=self.env(), input=input,
                        check=check, timeout=timeout)

    def helm(
        self, *args: Any, input: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run_tool([self._tool("helm"), *map(str, args)], env=self.env(), input=input,
                        check=check, timeout=timeout)

    def api_client(self):
        """A fresh official ``kubernetes.client.ApiClient`` (admin); close it after use
        (it is a context manager)."""
        from kubernetes import config as kconfig

        return kconfig.new_client_from_config(config_file=str(self.kubeconfig))

    def log_path(self, namespace: str, pod: str, container: str | None = None) -> Path | None:
        """Local harness: the container's log file. Real cluster: None (use
        ``kubectl logs``)."""
        if self.agent is None:
            return None
        return self.agent.log_path(namespace, pod, container)

    # -- conveniences --------------------------------------------------------------------
    def apply(self, *objects: Any, namespace: str | None = None) -> None:
        """``kubectl apply`` manifests given as dicts (or YAML strings)."""
        docs = [o if isinstance(o, str) else yaml.safe_dump(o, sort_keys=False) for o in objects]
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input="\n---\n".join(docs))

    def get(self, kind: str, name: str | None = None, namespace: str | None = None,
            check: bool = True) -> dict[str, Any] | None:
        """``kubectl get -o json``; None if it fails (e.g. not found) and not ``check``."""
        argv = ["get", kind] + ([name] if name else []) + (["-n", namespace] if namespace else [])
        r = self.kubectl(*argv, "-o", "json", check=check)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """A container's output: the agent's log file locally, ``kubectl logs``
        elsewhere."""
        p = self.log_path(namespace, pod, container)
        if p is not None:
            return p.read_text(errors="replace") if p.exists() else ""
        args = ["logs", pod, "-n", namespace] + (["-c", container] if container else [])
        return self.kubectl(*args).stdout


def _kube_from_existing(kubeconfig: str) -> Kube:
    env_bin = os.environ.get("HEAN_K8S_BIN_DIR")
    if env_bin:
        bin_dir = Path(env_bin)
    else:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            pytest.fail(f"{E2E_KUBECONFIG_ENV} is set but kubectl is not on PATH "
                        "(or set HEAN_K8S_BIN_DIR)")
        bin_dir = Path(kubectl).parent
    return Kube(Path(kubeconfig).expanduser(), bin_dir, is_local=False)


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest) -> Iterator[Kube]:
    existing = os.environ.get(E2E_KUBECONFIG_ENV)
    if existing:
        yield _kube_from_existing(existing)
        return
    from hean.testing.controlplane import ControlPlane
    from hean.testing.nodeagent import NodeAgent

    keep = os.environ.get("HEAN_E2E_KEEP", "") not in ("", "0")
    cp = ControlPlane(keep=keep)
    agent = None
    t0 = time.monotonic()
    try:
        cp.start()
        agent = NodeAgent(cp.kubeconfig, workdir=cp.workdir / "agent")
        agent.start()
        k = Kube(cp.kubeconfig, cp.bin_dir, is_local=True, agent=agent, controlplane=cp,
                 startup_seconds=time.monotonic() - t0)
        request.config._hean_harness = {  # type: ignore[attr-defined]
            "controlplane_seconds": cp.startup_seconds,
            "total_seconds": k.startup_seconds,
            "workdir": str(cp.workdir),
            "keep": keep,
        }
        yield k
    finally:
        if agent is not None:
            agent.stop()
        cp.stop()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"hean-t-{secrets.token_hex(3)}"
    kube.kubectl("create", "namespace", name)
    kube.kubectl("label", "namespace", name, "hean.io/test=true")
    # Pods are rejected until kcm's serviceaccount controller made `default`.
    wait_for(
        lambda: kube.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=60, interval=0.2, message=f"ServiceAccount {name}/default",
    )
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="session")
def marketdata_dir() -> Path:
    d = REPO_ROOT.parent / "shared" / "marketdata"
    if not d.is_dir():
        pytest.skip(f"shared market data not found at {d} (expected next to the repository)")
    return d


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e = pytest.mark.e2e
    for item in items:
        if "kube" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("e2e"):
            item.add_marker(e2e)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    info = getattr(config, "_hean_harness", None)
    if info:
        terminalreporter.write_line(
            f"hean local harness: control plane ready in {info['controlplane_seconds']:.1f}s, "
            f"with node agent {info['total_seconds']:.1f}s"
            + (f" (kept: {info['workdir']})" if info["keep"] else "")
        )
