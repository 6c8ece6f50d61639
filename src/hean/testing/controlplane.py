"""A real, local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager.

Test/dev harness only. The binaries are the real upstream ones built from the Go
module proxy (:mod:`hean.testing.bins`); the PKI is generated per run
(:mod:`hean.testing.pki`). There is no scheduler and no kubelet: pair it with
:class:`hean.testing.nodeagent.NodeAgent` to get pods bound and run.

Usage::

    with ControlPlane() as cp:
        cp.kubectl("get", "ns")
        print(cp.kubeconfig, cp.server)

Every process runs in its own process group with stdout/stderr in
``<workdir>/logs/<component>.log``; :meth:`ControlPlane.stop` terminates them in
reverse order (SIGTERM to the group, SIGKILL after a timeout) and removes the
temporary work directory unless ``keep=True`` (a work directory passed in by the
caller is never removed).
"""

from __future__ import annotations

import atexit
import base64
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .bins import ensure_binaries, missing_binaries
from .pki import PKI

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    """The control plane failed to start (the message carries the log tail)."""


class ToolError(subprocess.CalledProcessError):
    """A kubectl/helm invocation failed; ``str()`` includes its stderr/stdout."""

    def __str__(self) -> str:  # pragma: no cover - formatting only
        base = super().__str__()
        parts = [base]
        if self.stderr:
            parts.append(f"stderr:\n{str(self.stderr).strip()}")
        if self.stdout and not self.stderr:
            parts.append(f"stdout:\n{str(self.stdout).strip()[-2000:]}")
        return "\n".join(parts)


def run_tool(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run a CLI tool, capturing text stdout/stderr; raise :class:`ToolError` on failure
    when ``check``."""
    proc = subprocess.run(
        list(argv),
        input=input,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise ToolError(proc.returncode, list(argv), proc.stdout, proc.stderr)
    return proc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def kubeconfig_dict(
    server: str,
    ca_pem: bytes,
    *,
    cluster: str = "hean-local",
    user: str = "hean-admin",
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A self-contained kubeconfig (certificates embedded as data)."""
    u: dict[str, Any] = {}
    if client_cert_pem is not None:
        u["client-certificate-data"] = base64.b64encode(client_cert_pem).decode()
    if client_key_pem is not None:
        u["client-key-data"] = base64.b64encode(client_key_pem).decode()
    if token is not None:
        u["token"] = token
    ctx: dict[str, Any] = {"cluster": cluster, "user": user}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": u}],
        "contexts": [{"name": cluster, "context": ctx}],
        "current-context": cluster,
    }


def write_kubeconfig(path: str | Path, config: Mapping[str, Any]) -> Path:
    """Write a kubeconfig atomically with mode 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(dict(config), f, sort_keys=False)
    os.replace(tmp, path)
    return path


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<no log: {e}>"
    return "\n".join(data.splitlines()[-lines:])


def processes_referencing(needle: str | Path) -> list[tuple[int, str]]:
    """(pid, cmdline) of live processes whose command line or cwd mentions ``needle``
    (this process excluded). Used to prove teardown left nothing behind."""
    needle = str(needle)
    out: list[tuple[int, str]] = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # zombie: already dead, waiting for its parent
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                cwd = ""
        except (OSError, IndexError):
            continue
        if needle in cmd or cwd.startswith(needle):
            out.append((int(entry), cmd))
    return out


def terminate_group(proc: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
    """SIGTERM (``sig``) the process group led by ``proc``, wait up to ``timeout``, then
    SIGKILL the group; always SIGKILLs leftovers of the group at the end."""
    pgid = proc.pid
    if proc.poll() is None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    return proc.returncode


def pdeathsig_prefix(any_thread: bool = False) -> list[str]:
    """``setpriv --pdeathsig KILL --`` if available, so that a child dies with the
    harness even if the harness is SIGKILLed (no stray apiservers or pods).

    The kernel sends the signal when the *thread* that forked the child exits, so by
    default this is only used from the main thread; ``any_thread=True`` is for
    callers whose spawning thread outlives the child by construction (the node
    agent's pod workers). ``HEAN_NO_PDEATHSIG=1`` disables it."""
    import threading

    if os.environ.get("HEAN_NO_PDEATHSIG"):
        return []
    if not any_thread and threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class _Component:
    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                pdeathsig_prefix() + self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env),
                cwd=cwd,
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ControlPlaneError(
                f"{self.name} exited with code {self.proc.returncode} during start-up; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def stop(self, timeout: float) -> None:
        if self.proc is not None:
            terminate_group(self.proc, timeout)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1 with a fresh PKI.

    Attributes after :meth:`start`: ``kubeconfig`` (admin kubeconfig Path), ``server``
    (``https://127.0.0.1:<port>``), ``bin_dir``, ``workdir``, ``pki``, ``ca_pem``,
    ``startup_seconds``.
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        bin_dir: str | Path | None = None,
        *,
        keep: bool = False,
        startup_timeout: float = 120.0,
        stop_timeout: float = 15.0,
        extra_apiserver_args: Sequence[str] = (),
        extra_kcm_args: Sequence[str] = (),
    ) -> None:
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self._bin_dir_arg = Path(bin_dir) if bin_dir is not None else None
        self.keep = keep
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.extra_kcm_args = list(extra_kcm_args)
        self.workdir: Path | None = None
        self.bin_dir: Path | None = None
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self.pki: PKI | None = None
        self.ca_pem: bytes | None = None
        self.startup_seconds: float | None = None
        self._components: list[_Component] = []
        self._env: dict[str, str] = {}
        self._owns_workdir = False
        self._started = False

    # -- lifecycle ----------------------------------------------------------------
    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "ControlPlane":
        if self._started:
            return self
        t0 = time.monotonic()
        self.bin_dir = self._bin_dir_arg or ensure_binaries()
        miss = missing_binaries(self.bin_dir)
        if miss:
            raise ControlPlaneError(f"{self.bin_dir} lacks {', '.join(miss)}")
        if self._workdir_arg is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="hean-cp-"))
            self._owns_workdir = True
        else:
            self.workdir = self._workdir_arg.resolve()
            self.workdir.mkdir(parents=True, exist_ok=True)
            # Always a fresh cluster: old etcd data would not match the new PKI.
            for sub in ("etcd", "pki", "apiserver-certs"):
                shutil.rmtree(self.workdir / sub, ignore_errors=True)
        self._started = True
        atexit.register(self.stop)
        last_error: Exception | None = None
        try:
            for _attempt in range(3):
                try:
                    self._start_once()
                    break
                except ControlPlaneError as e:
                    last_error = e
                    self._stop_components()
                    if "address already in use" not in str(e):
                        raise
                    shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
            else:
                assert last_error is not None
                raise last_error
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _start_once(self) -> None:
        assert self.workdir is not None and self.bin_dir is not None
        wd = self.workdir
        self.pki = PKI(wd / "pki")
        self.ca_pem = self.pki.ca.cert_pem
        etcd_client, etcd_peer = free_port(), free_port()
        api_port = free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        (wd / "logs").mkdir(parents=True, exist_ok=True)

        self.kubeconfig = write_kubeconfig(
            wd / "kubeconfig",
            kubeconfig_dict(
                self.server,
                self.ca_pem,
                client_cert_pem=self.pki.admin.cert_pem,
                client_key_pem=self.pki.admin.key_pem,
            ),
        )
        kcm_kubeconfig = write_kubeconfig(
            wd / "kcm.kubeconfig",
            kubeconfig_dict(
                self.server,
                self.ca_pem,
                user="system:kube-controller-manager",
                client_cert_pem=self.pki.kcm.cert_pem,
                client_key_pem=self.pki.kcm.key_pem,
            ),
        )
        b = self.bin_dir
        p = self.pki
        etcd = _Component(
            "etcd",
            [
                str(b / "etcd"),
                "--name=hean",
                f"--data-dir={wd / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=hean=http://127.0.0.1:{etcd_peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            wd / "logs" / "etcd.log",
        )
        apiserver = _Component(
            "kube-apiserver",
            [
                str(b / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={wd / 'apiserver-certs'}",
                f"--tls-cert-file={p.apiserver.cert_path}",
                f"--tls-private-key-file={p.apiserver.key_path}",
                f"--client-ca-file={p.ca.cert_path}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={p.service_account.cert_path}",
                f"--service-account-signing-key-file={p.service_account.key_path}",
                "--allow-privileged=true",
                # The only address is loopback, which Endpoints validation rejects:
                # do not try to publish endpoints for the `kubernetes` Service.
                "--endpoint-reconciler-type=none",
                # The node agent serves /containerLogs (kubectl logs) on 127.0.0.1; its
                # Node's Hostname address does not resolve.
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--v=1",
                *self.extra_apiserver_args,
            ],
            wd / "logs" / "kube-apiserver.log",
        )
        kcm = _Component(
            "kube-controller-manager",
            [
                str(b / "kube-controller-manager"),
                f"--kubeconfig={kcm_kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                "--controllers=*",
                f"--service-account-private-key-file={p.service_account.key_path}",
                f"--root-ca-file={p.ca.cert_path}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={p.ca.cert_path}",
                f"--cluster-signing-key-file={p.ca.key_path}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--profiling=false",
                "--v=1",
                *self.extra_kcm_args,
            ],
            wd / "logs" / "kube-controller-manager.log",
        )
        self._components = [etcd, apiserver, kcm]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self._env = env
        # Start all three at once: the apiserver retries etcd and kcm waits for the
        # apiserver's /healthz, so this is safe and saves seconds.
        for c in self._components:
            c.start(env, wd)

        deadline = time.monotonic() + self.startup_timeout
        self._wait("kube-apiserver /readyz", deadline, lambda: self._get("/readyz")[0] == 200,
                   blame=apiserver)
        # The default ServiceAccount is created by kcm's serviceaccount controller:
        # its existence proves kcm is up and authorised.
        self._wait(
            "ServiceAccount default/default (kube-controller-manager)",
            deadline,
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            blame=kcm,
        )

    # -- fault injection (chaos tests) ------------------------------------------------
    def _component(self, name: str) -> _Component:
        for c in self._components:
            if c.name == name:
                return c
        raise KeyError(name)

    def stop_apiserver(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> None:
        """Stop kube-apiserver only (etcd and kube-controller-manager keep running):
        an API outage for everyone holding a kubeconfig. ``sig`` SIGTERM is a
        graceful shutdown, SIGKILL a crash; the process group is SIGKILLed after
        ``timeout`` (default ``stop_timeout``) seconds either way."""
        terminate_group(self._component("kube-apiserver").proc, self.stop_timeout if timeout is None else timeout,
                        sig)

    def start_apiserver(self, timeout: float | None = None) -> float:
        """Start kube-apiserver again with the same flags, port, certificates and
        etcd (its log is appended to); return the seconds until ``/readyz`` answered
        200. Raises ControlPlaneError if it does not within ``timeout`` (default
        ``startup_timeout``)."""
        assert self.workdir is not None
        api = self._component("kube-apiserver")
        if api.proc is not None and api.proc.poll() is None:
            return 0.0
        t0 = time.monotonic()
        api.start(self._env, self.workdir)
        deadline = t0 + (self.startup_timeout if timeout is None else timeout)
        self._wait("kube-apiserver /readyz after a restart", deadline, lambda: self._get("/readyz")[0] == 200,
                   blame=api)
        return time.monotonic() - t0

    @property
    def apiserver_running(self) -> bool:
        """Whether the kube-apiserver process is running."""
        p = self._component("kube-apiserver").proc
        return p is not None and p.poll() is None

    def _wait(self, what: str, deadline: float, probe, blame: _Component) -> None:
        last: Exception | None = None
        while True:
            for c in self._components:
                c.check_alive()
            try:
                if probe():
                    return
            except (OSError, http.client.HTTPException, ssl.SSLError) as e:
                last = e
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {self.startup_timeout:.0f} s waiting for {what}"
                    f"{f' (last error: {last})' if last else ''}; last lines of "
                    f"{blame.log_path}:\n{log_tail(blame.log_path)}"
                )
            time.sleep(0.2)

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert_path))
        ctx.load_cert_chain(str(self.pki.admin.cert_path), str(self.pki.admin.key_path))
        return ctx

    def _get(self, path: str) -> tuple[int, bytes]:
        assert self.server is not None
        host, port = self.server.removeprefix("https://").rsplit(":", 1)
        conn = http.client.HTTPSConnection(host, int(port), context=self._ssl_context(), timeout=5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def _stop_components(self) -> None:
        for c in reversed(self._components):
            c.stop(self.stop_timeout)

    def stop(self) -> None:
        """Terminate kcm, apiserver, etcd (in that order); remove the temp workdir
        unless ``keep``. Idempotent."""
        if not self._started:
            return
        self._started = False
        try:
            atexit.unregister(self.stop)
        except Exception:  # pragma: no cover
            pass
        self._stop_components()
        if self._owns_workdir and not self.keep and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- introspection --------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._started and all(
            c.proc is not None and c.proc.poll() is None for c in self._components
        )

    @property
    def pids(self) -> dict[str, int]:
        """Process (and process-group) ids of the components."""
        return {c.name: c.proc.pid for c in self._components if c.proc is not None}

    def log_path(self, component: str) -> Path:
        """``etcd``, ``kube-apiserver`` or ``kube-controller-manager`` log file."""
        assert self.workdir is not None
        return self.workdir / "logs" / f"{component}.log"

    # -- tools -----------------------------------------------------------------------
    def tool_env(self) -> dict[str, str]:
        """Environment for kubectl/helm: KUBECONFIG, kubectl cache and helm homes under
        the work directory (nothing is written to the user's ~/.kube or ~/.config)."""
        assert self.workdir is not None and self.kubeconfig is not None
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self.workdir / "kube-cache")
        env["HELM_CACHE_HOME"] = str(self.workdir / "helm" / "cache")
        env["HELM_CONFIG_HOME"] = str(self.workdir / "helm" / "config")
        env["HELM_DATA_HOME"] = str(self.workdir / "helm" / "data")
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        return run_tool(
            [str(self.bin_dir / "kubectl"), *map(str, args)],
            env=self.tool_env(), input=input, check=check, timeout=timeout,
        )

    def helm(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        return run_tool(
            [str(self.bin_dir / "helm"), *map(str, args)],
            env=self.tool_env(), input=input, check=check, timeout=timeout,
        )

    def api_client(self):
        """A fresh official ``kubernetes.client.ApiClient`` for the admin kubeconfig."""
        from kubernetes import config as kconfig

        return kconfig.new_client_from_config(config_file=str(self.kubeconfig))

    def info(self) -> dict[str, Any]:
        return {
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "bin_dir": str(self.bin_dir),
            "workdir": str(self.workdir),
            "pids": self.pids,
        }


__all__ = [
    "ControlPlane",
    "ControlPlaneError",
    "ToolError",
    "free_port",
    "kubeconfig_dict",
    "log_tail",
    "pdeathsig_prefix",
    "processes_referencing",
    "run_tool",
    "terminate_group",
    "write_kubeconfig",
]
