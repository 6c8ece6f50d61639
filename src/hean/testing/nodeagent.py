"""LOCAL NODE AGENT -- A TEST/DEV STAND-IN FOR A KUBELET. NOT A CONTAINER RUNTIME.

!!! This module exists ONLY so that pods can run on machines that have no container
!!! runtime (no Docker/containerd, so no kind). It runs every container of a pod as a
!!! plain local process of the current user: no images, no namespaces, no cgroups, no
!!! network isolation, no resource limits, no security context. Never point it at a
!!! cluster you care about, and never use it outside tests and local development.
!!! Where a container runtime exists, use kind and HEAN_E2E_KUBECONFIG instead.

What it does (see docs/harness.md for the full list of what is and is not emulated):

* registers a Node (label ``hean.io/local-node=true``, Ready, address 127.0.0.1) and
  keeps it alive (Ready heartbeat + Lease in ``kube-node-lease`` every ~10 s);
* binds pending pods without ``spec.nodeName`` to itself through the ``pods/binding``
  subresource (``nodeSelector`` is honoured against its own labels; affinity, taints
  and resources are ignored; pods with scheduling gates are left alone);
* runs init containers (sequentially) then containers as local processes: ``command``
  + ``args`` with kubelet ``$(VAR)`` expansion, ``workingDir``, env (literals,
  ``fieldRef``, ``resourceFieldRef``, ``secretKeyRef``, ``configMapKeyRef``,
  ``envFrom``); the image is ignored and ``PATH`` starts with the directory of the
  agent's ``python`` so ``python`` resolves to it. Each process is a session leader;
  output goes to ``<workdir>/pods/<ns>_<pod>_<uid>/<container>.log``;
* gives every pod a loopback IP ``127.0.0.N`` (N >= 2, reused after deletion);
* volumes as *real paths*: ``hostPath``/``emptyDir``/``configMap``/``secret``/
  ``downwardAPI`` are linked at their ``mountPath`` with a symlink (or used as is when
  the mountPath already resolves to the same place; anything else fails the
  container with reason ``MountConflict``). The service-account token volume is
  replaced by a kubeconfig (TokenRequest API, bound to the pod) written into the pod
  directory and exported as ``KUBECONFIG``;
* reports status like a kubelet (phase, conditions, container statuses), runs
  readiness/liveness/startup probes (httpGet, tcpSocket, exec), restarts containers
  per ``restartPolicy`` with exponential back-off, and performs graceful deletion
  (SIGTERM, grace period capped at 30 s, SIGKILL, delete with grace period 0).
"""

from __future__ import annotations

import atexit
import base64
import copy
import fcntl
import http.client
import itertools
import json
import logging
import math
import os
import platform
import queue
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import yaml

from .controlplane import kubeconfig_dict, pdeathsig_prefix, write_kubeconfig
from .pki import self_signed_cert
from .zygote import Zygote, ZygoteUnavailable

LOG = logging.getLogger("hean.testing.nodeagent")

NODE_LABEL = "hean.io/local-node"
MAX_GRACE_SECONDS = 30.0
FORCED_DELETE_GRACE = 2.0
TOKEN_EXPIRATION_SECONDS = 48 * 3600
_BASE_ENV_KEYS = (
    "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "PYTHONPATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
)
_KUBE_API_ACCESS_PREFIX = "kube-api-access-"


# ----------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expand_vars(s: str, env: Mapping[str, str]) -> str:
    """Kubelet's ``$(VAR)`` expansion (k8s third_party/forked/golang/expansion):
    ``$(NAME)`` becomes the value if NAME is defined and stays verbatim otherwise,
    ``$$`` becomes ``$`` (so ``$$(NAME)`` yields a literal ``$(NAME)``)."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(s)
    while cursor < n:
        if s[cursor] == "$" and cursor + 1 < n:
            out.append(s[checkpoint:cursor])
            rest = s[cursor + 1:]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = rest[1:close]
                    out.append(env[name] if name in env else f"$({name})")
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(s[checkpoint:])
    return "".join(out)


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _rv_int(obj: Mapping[str, Any]) -> int:
    try:
        return int(_meta(obj).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _pod_key(pod: Mapping[str, Any]) -> str:
    m = _meta(pod)
    return f"{m.get('namespace')}/{m.get('name')}"


class ApiError(Exception):
    """A non-2xx answer of the API server."""

    def __init__(self, status: int, reason: str, body: Any = None) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{status} {reason}: {msg}")


class _Api:
    """Raw-JSON REST access through the official client's transport (auth, TLS).

    The agent works on plain dicts (the API's own camelCase JSON) instead of the
    generated models: it needs arbitrary fieldRef paths and must round-trip status
    objects without losing fields the models do not know."""

    def __init__(self, kubeconfig: Path, pool_size: int = 32) -> None:
        from kubernetes import client as kclient
        from kubernetes import config as kconfig

        cfg = kclient.Configuration()
        kconfig.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = pool_size
        cfg.retries = 0
        self.configuration = cfg
        self.client = kclient.ApiClient(configuration=cfg)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # pragma: no cover
            pass

    def _call(self, method: str, path: str, query: Mapping[str, Any] | None, body: Any,
              content_type: str, timeout: Any):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        req = self.client.param_serialize(
            method, path, query_params=list((query or {}).items()) or None,
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        return self.client.call_api(*req, _request_timeout=timeout)

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str = "application/json",
                timeout: float = 30) -> Any:
        resp = self._call(method, path, query, body, content_type, timeout)
        data = resp.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode("utf-8", "replace")
        if not 200 <= resp.status <= 299:
            raise ApiError(resp.status, resp.reason or "", parsed)
        return parsed

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def get_or_none(self, path: str) -> Any:
        try:
            return self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def stream(self, path: str, query: Mapping[str, Any], timeout: Any):
        resp = self._call("GET", path, query, None, "application/json", timeout)
        if not 200 <= resp.status <= 299:
            data = resp.read()
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = data.decode("utf-8", "replace")
            raise ApiError(resp.status, resp.reason or "", parsed)
        return resp.response  # urllib3 response, not preloaded


def _iter_json_lines(resp) -> Iterator[dict[str, Any]]:
    buf = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if buf.strip():
        yield json.loads(buf)


class _ConfigError(Exception):
    """Container configuration cannot be resolved yet (CreateContainerConfigError)."""


class _StartError(Exception):
    """The container cannot be started; ``reason`` becomes the terminated reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ----------------------------------------------------------------------------------
# mounts ("volumes as real paths") and pod IPs
# ----------------------------------------------------------------------------------
class _Link:
    __slots__ = ("target", "source_real", "owned", "users", "created_dirs")

    def __init__(self, target: Path, source_real: str, owned: bool, created_dirs: list[Path]):
        self.target = target
        self.source_real = source_real
        self.owned = owned
        self.users: set[str] = set()
        self.created_dirs = created_dirs


class _MountTable:
    """Reference-counted symlinks at mountPaths shared by all pods of the agent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: dict[str, _Link] = {}

    def acquire(self, mount_path: str, source: str | Path, user: str, what: str) -> None:
        target = Path(os.path.normpath(mount_path))
        src_real = os.path.realpath(source)
        with self._lock:
            link = self._links.get(str(target))
            if link is not None:
                if link.source_real == src_real:
                    link.users.add(user)
                    return
                raise _StartError(
                    "MountConflict",
                    f"mountPath {target} is already linked to {link.source_real} for another "
                    f"pod; {what} ({src_real}) cannot be mounted there too (the local node "
                    "agent maps volumes as real paths on the host)",
                )
            if os.path.lexists(target):
                cur = os.path.realpath(target)
                if cur == src_real:
                    link = _Link(target, src_real, owned=False, created_dirs=[])
                    link.users.add(user)
                    self._links[str(target)] = link
                    return
                kind = (
                    f"a symlink to {os.readlink(target)}" if target.is_symlink()
                    else "a directory" if target.is_dir() else "a file"
                )
                raise _StartError(
                    "MountConflict",
                    f"mountPath {target} already exists on this machine as {kind} (resolving "
                    f"to {cur}), which is not {what} ({src_real}). The local node agent maps "
                    "volumes as real paths: use a mountPath that does not exist yet, or "
                    "mountPath == hostPath.",
                )
            created: list[Path] = []
            parent = target.parent
            missing: list[Path] = []
            while not os.path.lexists(parent):
                missing.append(parent)
                parent = parent.parent
            for d in reversed(missing):
                try:
                    d.mkdir()
                    created.append(d)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise _StartError("MountConflict", f"cannot create {d} for mountPath {target}: {e}")
            try:
                os.symlink(src_real, target)
            except OSError as e:
                raise _StartError("MountConflict", f"cannot link mountPath {target} -> {src_real}: {e}")
            link = _Link(target, src_real, owned=True, created_dirs=created)
            link.users.add(user)
            self._links[str(target)] = link

    def release(self, user: str) -> None:
        with self._lock:
            for key in list(self._links):
                link = self._links[key]
                if user not in link.users:
                    continue
                link.users.discard(user)
                if link.users:
                    continue
                del self._links[key]
                if not link.owned:
                    continue
                try:
                    if link.target.is_symlink() and os.path.realpath(link.target) == link.source_real:
                        link.target.unlink()
                except OSError as e:  # pragma: no cover
                    LOG.warning("cannot remove mount link %s: %s", link.target, e)
                for d in reversed(link.created_dirs):
                    try:
                        d.rmdir()
                    except OSError:
                        break

    def release_all(self) -> None:
        with self._lock:
            users = {u for link in self._links.values() for u in link.users}
        for u in users:
            self.release(u)


class _IpPool:
    """127.0.0.2, 127.0.0.3, ... (then 127.0.1.x, ...); lowest free first.

    Allocations are unique machine-wide, not just per agent: each IP is held with an
    ``flock`` on ``$TMPDIR/hean-pod-ips/<ip>.lock`` (released automatically if the
    process dies), so concurrent harnesses (two pytest sessions, or ``up`` next to
    a test run) never hand out the same pod IP."""

    def __init__(self, lock_dir: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # n -> fd holding the flock
        self.lock_dir = lock_dir or Path(tempfile.gettempdir()) / "hean-pod-ips"

    @staticmethod
    def _ip(n: int) -> str:
        return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def allocate(self) -> str:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for n in itertools.count(2):
                if n >= 1 << 24:
                    raise RuntimeError("out of loopback pod IPs")
                if n & 255 in (0, 255) or n in self._held:
                    continue
                ip = self._ip(n)
                fd = os.open(self.lock_dir / f"{ip}.lock", os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                self._held[n] = fd
                return ip
        raise AssertionError  # pragma: no cover

    def release(self, ip: str | None) -> None:
        if not ip or not ip.startswith("127."):
            return
        a, b, c = (int(x) for x in ip.split(".")[1:])
        with self._lock:
            fd = self._held.pop((a << 16) | (b << 8) | c, None)
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def release_all(self) -> None:
        with self._lock:
            ns = list(self._held)
        for n in ns:
            self.release(self._ip(n))


# ----------------------------------------------------------------------------------
# probes
# ----------------------------------------------------------------------------------
class _Probe:
    def __init__(self, kind: str, spec: Mapping[str, Any]) -> None:
        self.kind = kind
        self.spec = spec
        self.initial = float(spec.get("initialDelaySeconds") or 0)
        self.period = float(spec.get("periodSeconds") or 10)
        self.timeout = float(spec.get("timeoutSeconds") or 1)
        self.success_threshold = int(spec.get("successThreshold") or 1)
        self.failure_threshold = int(spec.get("failureThreshold") or 3)
        self.next_at: float | None = None
        self.successes = 0
        self.failures = 0
        self.last_message = ""

    def arm(self, t0: float) -> None:
        self.next_at = t0 + self.initial
        self.successes = 0
        self.failures = 0

    def disarm(self) -> None:
        self.next_at = None

    def due(self, now: float) -> bool:
        return self.next_at is not None and now >= self.next_at

    def record(self, ok: bool, msg: str, now: float) -> None:
        self.next_at = now + self.period
        self.last_message = msg
        if ok:
            self.successes += 1
            self.failures = 0
        else:
            self.failures += 1
            self.successes = 0


# ----------------------------------------------------------------------------------
# per-container and per-pod state
# ----------------------------------------------------------------------------------
class _Container:
    def __init__(self, spec: Mapping[str, Any], init: bool, has_init: bool) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        self.proc: subprocess.Popen | None = None
        waiting = "PodInitializing" if (has_init and not init) else "ContainerCreating"
        self.state: dict[str, Any] = {"waiting": {"reason": waiting}}
        self.last_state: dict[str, Any] = {}
        self.restart_count = 0
        self.attempts = 0
        self.ready = False
        self.started = False
        self.done = False  # init container completed / container terminated for good
        self.next_start = 0.0
        self.backoff_n = 0
        self.run_t0 = 0.0
        self.started_at = ""
        self.container_id = ""
        self.env: dict[str, str] = {}
        self.cwd: str = ""
        self.kill_deadline: float | None = None
        self.kill_message = ""
        self.probes: dict[str, _Probe] = {}
        for kind in ("startup", "readiness", "liveness"):
            p = spec.get(f"{kind}Probe")
            if p and not init:
                self.probes[kind] = _Probe(kind, p)

    @property
    def running(self) -> bool:
        return self.proc is not None

    def status(self, image_default: str = "") -> dict[str, Any]:
        image = self.spec.get("image") or image_default or "local"
        st: dict[str, Any] = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": image,
            "imageID": f"local://{image}",
            "started": self.started,
        }
        if self.container_id:
            st["containerID"] = self.container_id
        return st


class _PodWorker(threading.Thread):
    """Runs one pod: containers, probes, restarts, status, graceful deletion."""

    def __init__(self, agent: "NodeAgent", pod: dict[str, Any]) -> None:
        m = _meta(pod)
        super().__init__(name=f"pod-{m.get('namespace')}/{m.get('name')}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid: str = m["uid"]
        self.namespace: str = m["namespace"]
        self.pod_name: str = m["name"]
        spec = pod.get("spec") or {}
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        inits = spec.get("initContainers") or []
        self.init_containers = [_Container(c, True, bool(inits)) for c in inits]
        self.containers = [_Container(c, False, bool(inits)) for c in spec.get("containers") or []]
        self.dir = agent.workdir / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self.ip: str | None = None
        self.host_network = bool(spec.get("hostNetwork"))
        self.start_time = (pod.get("status") or {}).get("startTime") or _now()
        self.terminal_phase: str | None = None
        self.init_done = not self.init_containers
        self.init_failed = False
        self.kubeconfig_path: Path | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._gone = False
        self._cond_times: dict[str, tuple[str, str]] = {}
        self._last_status: dict[str, Any] | None = None
        self._finished = threading.Event()
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            # Already finished before this agent saw it: never run it again.
            self.terminal_phase = phase
            self.adopted_terminal = True
        else:
            self.adopted_terminal = False

    # -- inputs from the watch ------------------------------------------------------
    def update(self, pod: dict[str, Any]) -> None:
        with self._lock:
            if _rv_int(pod) >= _rv_int(self.pod):
                self.pod = pod
        self._wake.set()

    def api_deleted(self) -> None:
        with self._lock:
            self._gone = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def all_containers(self) -> list[_Container]:
        return self.init_containers + self.containers

    def container(self, name: str | None) -> _Container | None:
        if name is None:
            return self.containers[0] if self.containers else None
        for c in self.all_containers():
            if c.name == name:
                return c
        return None

    def log_path(self, container: str) -> Path:
        return self.dir / f"{container}.log"

    # -- main loop --------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception:
            LOG.exception("pod worker %s/%s crashed", self.namespace, self.pod_name)
            self._kill_all(FORCED_DELETE_GRACE)
            self._cleanup()
        finally:
            self._finished.set()

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "volumes").mkdir(exist_ok=True)
        if self.adopted_terminal:
            self.ip = (self.pod.get("status") or {}).get("podIP")
        elif self.host_network:
            self.ip = "127.0.0.1"
        else:
            self.ip = self.agent._ips.allocate()
        while True:
            with self._lock:
                pod, gone = self.pod, self._gone
            if self.agent._stopping.is_set():
                self._kill_all(min(self._grace(pod), self.agent.stop_grace))
                self._cleanup()
                return
            if gone:
                self._kill_all(FORCED_DELETE_GRACE)
                self._cleanup()
                return
            if _meta(pod).get("deletionTimestamp"):
                self._graceful_delete(pod)
                return
            self._reap()
            if self.terminal_phase is None:
                self._step()
            self._publish_status()
            timeout = self._next_timeout()
            self._wake.wait(timeout)
            self._wake.clear()

    def _grace(self, pod: Mapping[str, Any]) -> float:
        g = _meta(pod).get("deletionGracePeriodSeconds")
        if g is None:
            g = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        if g is None:
            g = 30
        return max(0.0, min(float(g), MAX_GRACE_SECONDS))

    def _next_timeout(self) -> float:
        now = time.monotonic()
        t = now + 2.0
        for c in self.all_containers():
            if c.running:
                for p in c.probes.values():
                    if p.next_at is not None:
                        t = min(t, p.next_at)
                if c.kill_deadline is not None:
                    t = min(t, c.kill_deadline)
            elif not c.done and c.next_start:
                t = min(t, c.next_start)
        return max(0.01, t - now)

    # -- container lifecycle ----------------------------------------------------------
    def _step(self) -> None:
        now = time.monotonic()
        if not self.init_done:
            for c in self.init_containers:
                if c.done:
                    continue
                if not c.running and now >= c.next_start:
                    self._start(c)
                break
            else:
                self.init_done = True
            if not self.init_done:
                return
        for c in self.containers:
            if c.running:
                self._probe(c, time.monotonic())
                if c.kill_deadline is not None and time.monotonic() >= c.kill_deadline:
                    self._signal(c, signal.SIGKILL)
            elif not c.done and now >= c.next_start:
                self._start(c)
                if c.running:  # readiness without a probe, and a first probe at t=0
                    self._probe(c, time.monotonic())

    def _start(self, c: _Container) -> None:
        now = time.monotonic()
        try:
            self._ensure_kubeconfig()
            self._mount(c)
            env = self._env(c)
            argv = [expand_vars(str(a), env) for a in (c.spec.get("command") or [])]
            argv += [expand_vars(str(a), env) for a in (c.spec.get("args") or [])]
            if not argv:
                raise _StartError(
                    "StartError",
                    f"container {c.name!r} has no command: the local node agent ignores images "
                    "(and their entrypoints), so every container needs `command`",
                )
            cwd = c.spec.get("workingDir") or str(self.dir)
            if not os.path.isdir(cwd):
                raise _StartError("StartError", f"workingDir {cwd} does not exist on this machine")
            env_full = dict(self.agent._base_env)
            env_full["HOSTNAME"] = (self.pod.get("spec") or {}).get("hostname") or self.pod_name
            env_full.update(env)
            exe = argv[0]
            if "/" in exe:
                found = os.path.join(cwd, exe) if not os.path.isabs(exe) else exe
                found = found if os.access(found, os.X_OK) and os.path.isfile(found) else None
            else:
                found = shutil.which(exe, path=env_full.get("PATH", ""))
            if found is None:
                raise _StartError(
                    "StartError",
                    f'exec: "{exe}": executable file not found in $PATH (the local node agent '
                    "runs commands on this machine; images are ignored)",
                )
            proc = None
            zyg = self.agent._zygote
            if zyg is not None and zyg.accepts(argv, found, env_full):
                try:  # same env, cwd, session, log file and exit status; see hean.testing.zygote
                    proc = zyg.spawn(argv, env_full, cwd, self.log_path(c.name))
                except ZygoteUnavailable as e:
                    LOG.warning("zygote unavailable (%s); starting %s/%s[%s] with Popen", e,
                                self.namespace, self.pod_name, c.name)
            if proc is None:
                with open(self.log_path(c.name), "ab") as log:
                    proc = subprocess.Popen(
                        pdeathsig_prefix(any_thread=True) + argv,
                        env=env_full,
                        cwd=cwd,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        close_fds=True,
                    )
        except _ConfigError as e:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            c.next_start = now + 2.0
            self.agent._event(self, "Warning", "Failed", f"Error: {e}", c.name)
            return
        except _StartError as e:
            self._count_attempt(c)
            self.agent._event(
                self, "Warning", "FailedMount" if e.reason == "MountConflict" else "Failed",
                e.message, c.name,
            )
            self._exited(c, 128, e.reason, e.message, started_at=_now())
            return
        except OSError as e:
            self._count_attempt(c)
            msg = f"failed to start {c.name!r}: {e}"
            self.agent._event(self, "Warning", "Failed", msg, c.name)
            self._exited(c, 128, "StartError", msg, started_at=_now())
            return
        self._count_attempt(c)
        c.proc = proc
        c.env = env_full
        c.cwd = cwd
        c.run_t0 = time.monotonic()
        c.started_at = _now()
        c.container_id = f"local://{self.uid}/{c.name}/{c.restart_count}/{proc.pid}"
        c.state = {"running": {"startedAt": c.started_at}}
        c.kill_deadline = None
        c.kill_message = ""
        c.ready = False
        c.started = "startup" not in c.probes and not c.init
        for kind, p in c.probes.items():
            if kind == "startup" or "startup" not in c.probes:
                p.arm(c.run_t0)
            else:
                p.disarm()
        self.agent._track(proc)
        threading.Thread(target=self._waiter, args=(proc,), daemon=True,
                         name=f"wait-{proc.pid}").start()
        LOG.info("started %s/%s[%s] pid %d: %s", self.namespace, self.pod_name, c.name,
                 proc.pid, argv)
        self.agent._event(self, "Normal", "Started", f"Started container {c.name} (pid {proc.pid})",
                          c.name)

    def _count_attempt(self, c: _Container) -> None:
        if c.attempts > 0:
            c.restart_count += 1
        c.attempts += 1

    def _waiter(self, proc: subprocess.Popen) -> None:
        try:
            proc.wait()
        except Exception:  # pragma: no cover
            pass
        self._wake.set()

    def _reap(self) -> None:
        for c in self.all_containers():
            if c.proc is not None and c.proc.poll() is not None:
                proc = c.proc
                try:  # a container's processes die with its main process
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.agent._untrack(proc)
                code = proc.returncode
                if code < 0:
                    code = 128 - code
                reason = "Completed" if code == 0 else "Error"
                self._exited(c, code, reason, c.kill_message or None, started_at=c.started_at)

    def _exited(self, c: _Container, code: int, reason: str, message: str | None,
                started_at: str, final: bool = False) -> None:
        now = time.monotonic()
        ran = now - c.run_t0 if c.proc is not None else 0.0
        c.proc = None
        c.ready = False
        c.started = False
        c.kill_deadline = None
        c.kill_message = ""
        for p in c.probes.values():
            p.disarm()
        term: dict[str, Any] = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started_at or _now(),
            "finishedAt": _now(),
        }
        if message:
            term["message"] = message
        if c.container_id:
            term["containerID"] = c.container_id
        LOG.info("%s/%s[%s] exited: code %d (%s)", self.namespace, self.pod_name, c.name, code, reason)
        if c.init:
            restart = code != 0 and self.restart_policy != "Never"
            if code == 0:
                c.done = True
                c.ready = True
        else:
            restart = self.restart_policy == "Always" or (
                self.restart_policy == "OnFailure" and code != 0
            )
        if final or self.agent._stopping.is_set():
            restart = False
        if restart:
            if ran >= max(600.0, 2 * self.agent.max_backoff):
                c.backoff_n = 0
            delay = min(self.agent.backoff_base * (2 ** c.backoff_n), self.agent.max_backoff)
            c.backoff_n += 1
            c.next_start = now + delay
            c.last_state = {"terminated": term}
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed container={c.name} "
                    f"pod={self.pod_name}_{self.namespace}({self.uid})"
                    + (f": {message}" if message and reason != "Error" else ""),
                }
            }
            self.agent._event(self, "Warning", "BackOff",
                              f"Back-off restarting failed container {c.name}", c.name)
        else:
            if not c.init or code == 0:
                c.done = True
            c.state = {"terminated": term}
            if c.init and code != 0:
                self.init_failed = True

    def _signal(self, c: _Container, sig: int) -> None:
        if c.proc is None:
            return
        try:
            os.killpg(c.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_for_restart(self, c: _Container, why: str) -> None:
        if c.kill_deadline is not None:
            return
        grace = c.spec.get("terminationGracePeriodSeconds")
        probe_grace = None
        for p in c.probes.values():
            probe_grace = p.spec.get("terminationGracePeriodSeconds", probe_grace)
        g = probe_grace if probe_grace is not None else grace
        if g is None:
            g = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        c.kill_message = why
        c.kill_deadline = time.monotonic() + min(float(g), MAX_GRACE_SECONDS)
        self.agent._event(self, "Normal", "Killing",
                          f"Container {c.name} {why}, will be restarted", c.name)
        self._signal(c, signal.SIGTERM)

    def _kill_all(self, grace: float) -> None:
        running = [c for c in self.all_containers() if c.proc is not None]
        for c in running:
            self._signal(c, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in running:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for c in running:
            self._signal(c, signal.SIGKILL)
            assert c.proc is not None
            try:
                c.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                LOG.error("pid %d survived SIGKILL", c.proc.pid)
        for c in running:
            proc = c.proc
            assert proc is not None
            self.agent._untrack(proc)
            code = proc.returncode if proc.returncode is not None else 137
            if code < 0:
                code = 128 - code
            self._exited(c, code, "Completed" if code == 0 else "Error", None,
                         started_at=c.started_at, final=True)

    # -- probes -------------------------------------------------------------------------
    def _probe(self, c: _Container, now: float) -> None:
        if c.kill_deadline is not None:
            return
        sp = c.probes.get("startup")
        if sp is not None and not c.started:
            if sp.due(now):
                ok, msg = self._run_probe(c, sp)
                sp.record(ok, msg, time.monotonic())
                if ok:
                    c.started = True
                    sp.disarm()
                    t0 = time.monotonic()
                    for kind in ("readiness", "liveness"):
                        if kind in c.probes:
                            c.probes[kind].arm(t0)
                elif sp.failures >= sp.failure_threshold:
                    self.agent._event(self, "Warning", "Unhealthy", f"Startup probe failed: {msg}", c.name)
                    self._kill_for_restart(c, "failed startup probe")
                    return
            if not c.started:
                return
        c.started = True
        rp = c.probes.get("readiness")
        if rp is None:
            c.ready = True
        elif rp.due(now):
            ok, msg = self._run_probe(c, rp)
            rp.record(ok, msg, time.monotonic())
            if ok and rp.successes >= rp.success_threshold:
                c.ready = True
            elif not ok and rp.failures >= rp.failure_threshold:
                if c.ready or rp.failures == rp.failure_threshold:
                    self.agent._event(self, "Warning", "Unhealthy", f"Readiness probe failed: {msg}", c.name)
                c.ready = False
        lp = c.probes.get("liveness")
        if lp is not None and lp.due(now):
            ok, msg = self._run_probe(c, lp)
            lp.record(ok, msg, time.monotonic())
            if not ok and lp.failures >= lp.failure_threshold:
                self.agent._event(self, "Warning", "Unhealthy", f"Liveness probe failed: {msg}", c.name)
                self._kill_for_restart(c, "failed liveness probe")

    def _resolve_port(self, c: _Container, port: Any) -> int:
        if isinstance(port, int):
            return port
        if isinstance(port, str) and port.isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"named port {port!r} not found in container {c.name}")

    def _run_probe(self, c: _Container, probe: _Probe) -> tuple[bool, str]:
        spec = probe.spec
        try:
            if "httpGet" in spec:
                hg = spec["httpGet"]
                host = hg.get("host") or self.ip or "127.0.0.1"
                port = self._resolve_port(c, hg.get("port"))
                path = hg.get("path") or "/"
                if not path.startswith("/"):
                    path = "/" + path
                headers = {h["name"]: h.get("value", "") for h in hg.get("httpHeaders") or []}
                headers.setdefault("User-Agent", "kube-probe/hean-local")
                if (hg.get("scheme") or "HTTP").upper() == "HTTPS":
                    conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                        host, port, timeout=probe.timeout, context=ssl._create_unverified_context()
                    )
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=probe.timeout)
                try:
                    conn.request("GET", path, headers=headers)
                    r = conn.getresponse()
                    r.read(10240)
                    ok = 200 <= r.status < 400
                    return ok, f"HTTP probe failed with statuscode: {r.status}" if not ok else "ok"
                finally:
                    conn.close()
            if "tcpSocket" in spec:
                ts = spec["tcpSocket"]
                host = ts.get("host") or self.ip or "127.0.0.1"
                port = self._resolve_port(c, ts.get("port"))
                with socket.create_connection((host, port), timeout=probe.timeout):
                    return True, "ok"
            if "exec" in spec:
                cmd = [str(a) for a in (spec["exec"].get("command") or [])]
                r = subprocess.run(
                    cmd, env=c.env or None, cwd=c.cwd or None, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=probe.timeout,
                    start_new_session=True,
                )
                out = r.stdout.decode("utf-8", "replace").strip()[-500:]
                return r.returncode == 0, out or f"exit code {r.returncode}"
            return True, "probe type not emulated (treated as success)"
        except subprocess.TimeoutExpired:
            return False, f"command timed out after {probe.timeout:g}s"
        except (OSError, http.client.HTTPException, ValueError) as e:
            return False, str(e)

    # -- configuration: env, mounts, kubeconfig ---------------------------------------
    def _ensure_kubeconfig(self) -> None:
        if self.kubeconfig_path is not None:
            return
        spec = self.pod.get("spec") or {}
        automount = spec.get("automountServiceAccountToken")
        has_volume = any(self._is_kube_api_access(v) for v in spec.get("volumes") or [])
        if automount is False or (automount is None and not has_volume):
            return
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.pod_name,
                                   "uid": self.uid},
            },
        }
        try:
            tr = self.agent._api.request(
                "POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token", body=body
            )
        except ApiError as e:
            raise _ConfigError(f"cannot get a token for ServiceAccount {self.namespace}/{sa}: {e}")
        token = tr["status"]["token"]
        cfg = kubeconfig_dict(
            self.agent.server, self.agent.ca_pem, cluster="hean-local",
            user=f"system:serviceaccount:{self.namespace}:{sa}", token=token,
            namespace=self.namespace,
        )
        if self.agent.ca_pem is None:
            cfg["clusters"][0]["cluster"].pop("certificate-authority-data", None)
            cfg["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
        self.kubeconfig_path = write_kubeconfig(self.dir / "kubeconfig", cfg)

    @staticmethod
    def _is_kube_api_access(vol: Mapping[str, Any]) -> bool:
        proj = vol.get("projected")
        if not proj:
            return False
        if vol.get("name", "").startswith(_KUBE_API_ACCESS_PREFIX):
            return True
        return any("serviceAccountToken" in s for s in proj.get("sources") or [])

    def _get_obj(self, kind: str, name: str, cache: dict) -> dict | None:
        key = (kind, name)
        if key not in cache:
            cache[key] = self.agent._api.get_or_none(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        return cache[key]

    @staticmethod
    def _obj_data(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
        if kind == "secrets":
            return {k: base64.b64decode(v).decode("utf-8", "surrogateescape")
                    for k, v in (obj.get("data") or {}).items()}
        out = dict(obj.get("data") or {})
        for k, v in (obj.get("binaryData") or {}).items():
            out.setdefault(k, base64.b64decode(v).decode("utf-8", "surrogateescape"))
        return out

    def _key_ref(self, kind: str, ref: Mapping[str, Any], cache: dict) -> str | None:
        label = "Secret" if kind == "secrets" else "ConfigMap"
        name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
        obj = self._get_obj(kind, name, cache)
        if obj is None:
            if optional:
                return None
            raise _ConfigError(f'{label.lower()} "{name}" not found')
        data = self._obj_data(kind, obj)
        if key not in data:
            if optional:
                return None
            raise _ConfigError(f"couldn't find key {key} in {label} {self.namespace}/{name}")
        return data[key]

    def _field(self, path: str) -> str:
        pod = self.pod
        m = _meta(pod)
        spec = pod.get("spec") or {}
        mt = re.fullmatch(r"metadata\.(labels|annotations)\[['\"](.+)['\"]\]", path)
        if mt:
            return str((m.get(mt.group(1)) or {}).get(mt.group(2), ""))
        simple: dict[str, Callable[[], Any]] = {
            "metadata.name": lambda: m.get("name"),
            "metadata.namespace": lambda: m.get("namespace"),
            "metadata.uid": lambda: m.get("uid"),
            "metadata.labels": lambda: "\n".join(f'{k}="{v}"' for k, v in sorted((m.get("labels") or {}).items())),
            "metadata.annotations": lambda: "\n".join(f'{k}="{v}"' for k, v in sorted((m.get("annotations") or {}).items())),
            "spec.nodeName": lambda: spec.get("nodeName") or self.agent.node_name,
            "spec.serviceAccountName": lambda: spec.get("serviceAccountName") or spec.get("serviceAccount"),
            "status.podIP": lambda: self.ip,
            "status.podIPs": lambda: self.ip,
            "status.hostIP": lambda: "127.0.0.1",
            "status.hostIPs": lambda: "127.0.0.1",
        }
        if path not in simple:
            raise _ConfigError(f"unsupported fieldRef fieldPath {path!r}")
        v = simple[path]()
        return "" if v is None else str(v)

    def _resource(self, c: _Container, ref: Mapping[str, Any]) -> str:
        from kubernetes.utils import parse_quantity

        target = c
        if ref.get("containerName"):
            target = self.container(ref["containerName"]) or c
        res = ref.get("resource", "")
        section, _, name = res.partition(".")
        value = ((target.spec.get("resources") or {}).get(section) or {}).get(name)
        if value is None:
            if section == "limits":
                value = self.agent._capacity.get(name, "0")
            elif section == "requests":
                value = ((target.spec.get("resources") or {}).get("limits") or {}).get(name, "0")
            else:
                raise _ConfigError(f"unsupported resourceFieldRef resource {res!r}")
        divisor = parse_quantity(ref.get("divisor") or "1")
        if divisor == 0:
            divisor = Decimal(1)
        return str(int(math.ceil(parse_quantity(value) / divisor)))

    def _env(self, c: _Container) -> dict[str, str]:
        cache: dict = {}
        defined: dict[str, str] = {}
        for ef in c.spec.get("envFrom") or []:
            prefix = ef.get("prefix") or ""
            for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                ref = ef.get(key)
                if ref is None:
                    continue
                obj = self._get_obj(kind, ref.get("name", ""), cache)
                if obj is None:
                    if ref.get("optional"):
                        continue
                    label = "secret" if kind == "secrets" else "configmap"
                    raise _ConfigError(f'{label} "{ref.get("name")}" not found')
                for k, v in self._obj_data(kind, obj).items():
                    if k and "=" not in k:
                        defined[prefix + k] = v
        for e in c.spec.get("env") or []:
            name = e["name"]
            vf = e.get("valueFrom")
            if not vf:
                defined[name] = expand_vars(str(e.get("value", "")), defined)
                continue
            if "fieldRef" in vf:
                defined[name] = self._field(vf["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in vf:
                defined[name] = self._resource(c, vf["resourceFieldRef"])
            elif "configMapKeyRef" in vf:
                v = self._key_ref("configmaps", vf["configMapKeyRef"], cache)
                if v is not None:
                    defined[name] = v
            elif "secretKeyRef" in vf:
                v = self._key_ref("secrets", vf["secretKeyRef"], cache)
                if v is not None:
                    defined[name] = v
            else:
                raise _ConfigError(f"env {name}: valueFrom {sorted(vf)} is not emulated")
        if self.kubeconfig_path is not None and "KUBECONFIG" not in defined:
            defined["KUBECONFIG"] = str(self.kubeconfig_path)
        return defined

    def _volume_source(self, c: _Container, vol: Mapping[str, Any]) -> Path | None:
        """Materialise a volume and return its directory/file on this machine; None for
        the service-account token volume (replaced by the kubeconfig)."""
        name = vol["name"]
        vdir = self.dir / "volumes" / name
        if self._is_kube_api_access(vol):
            return None
        if "hostPath" in vol:
            hp = vol["hostPath"]
            p = Path(hp["path"])
            typ = hp.get("type") or ""
            if typ in ("", "DirectoryOrCreate") and not os.path.lexists(p):
                p.mkdir(parents=True, exist_ok=True)
            elif typ == "FileOrCreate" and not os.path.lexists(p):
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
            elif typ and not p.exists():
                raise _StartError("MountConflict", f"hostPath {p} (type {typ}) does not exist")
            return p
        if "emptyDir" in vol:
            vdir.mkdir(parents=True, exist_ok=True)
            return vdir
        if "configMap" in vol or "secret" in vol:
            if "configMap" in vol:
                kind, src, name_key = "configmaps", vol["configMap"], "name"
            else:
                kind, src, name_key = "secrets", vol["secret"], "secretName"
            obj = self.agent._api.get_or_none(
                f"/api/v1/namespaces/{self.namespace}/{kind}/{src.get(name_key, '')}"
            )
            if obj is None and not src.get("optional"):
                raise _ConfigError(f"{kind[:-1]} {src.get(name_key)!r} for volume {name} not found")
            data = self._obj_data(kind, obj) if obj else {}
            items = src.get("items")
            files = {it["path"]: data.get(it["key"]) for it in items} if items else dict(data)
            self._write_files(vdir, {k: v for k, v in files.items() if v is not None},
                              0o600 if kind == "secrets" else 0o644)
            return vdir
        if "downwardAPI" in vol:
            files = {}
            for it in vol["downwardAPI"].get("items") or []:
                if "fieldRef" in it:
                    files[it["path"]] = self._field(it["fieldRef"].get("fieldPath", ""))
                elif "resourceFieldRef" in it:
                    files[it["path"]] = self._resource(c, it["resourceFieldRef"])
            self._write_files(vdir, files, 0o644)
            return vdir
        kinds = sorted(k for k in vol if k != "name")
        raise _StartError("StartError", f"volume {name}: {kinds} volumes are not emulated by the local node agent")

    @staticmethod
    def _write_files(vdir: Path, files: Mapping[str, str], mode: int) -> None:
        vdir.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            p = vdir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.tmp")
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(content)
            os.chmod(tmp, mode)
            os.replace(tmp, p)

    def _mount(self, c: _Container) -> None:
        vols = {v["name"]: v for v in (self.pod.get("spec") or {}).get("volumes") or []}
        for vm in c.spec.get("volumeMounts") or []:
            vol = vols.get(vm.get("name"))
            if vol is None:
                raise _StartError("StartError", f"volumeMount {vm.get('name')!r} has no volume")
            src = self._volume_source(c, vol)
            if src is None:
                continue
            if vm.get("subPath") or vm.get("subPathExpr"):
                sub = vm.get("subPath") or expand_vars(vm["subPathExpr"], self._env_for_subpath(c))
                src = src / sub
                if not os.path.lexists(src):
                    src.mkdir(parents=True, exist_ok=True)
            kind = "hostPath" if "hostPath" in vol else next((k for k in vol if k != "name"), "volume")
            self.agent._mounts.acquire(vm["mountPath"], src, self.uid,
                                       f"{kind} volume {vol['name']!r} -> {src}")

    def _env_for_subpath(self, c: _Container) -> dict[str, str]:
        try:
            return self._env(c)
        except _ConfigError:
            return {}

    # -- status ---------------------------------------------------------------------------
    def _phase(self) -> str:
        if self.terminal_phase:
            return self.terminal_phase
        if self.init_failed:
            return "Failed"
        if not self.init_done:
            return "Pending"
        running = waiting = stopped = succeeded = 0
        for c in self.containers:
            if c.running:
                running += 1
            elif "terminated" in c.state:
                stopped += 1
                if c.state["terminated"].get("exitCode") == 0:
                    succeeded += 1
            elif c.last_state.get("terminated"):
                stopped += 1
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if not stopped:
            return "Pending"
        if self.restart_policy == "Always":
            return "Running"
        if succeeded == stopped and all(c.done for c in self.containers):
            return "Succeeded"
        if self.restart_policy == "Never":
            return "Failed"
        return "Running"  # OnFailure: some are restarting

    def _cond(self, ctype: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict:
        status = "True" if ok else "False"
        prev = self._cond_times.get(ctype)
        if prev is None or prev[0] != status:
            self._cond_times[ctype] = (status, _now())
        cond: dict[str, Any] = {
            "type": ctype,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._cond_times[ctype][1],
        }
        if reason and not ok:
            cond["reason"] = reason
        if message and not ok:
            cond["message"] = message
        return cond

    def _compute_status(self) -> dict[str, Any]:
        phase = self._phase()
        if phase in ("Succeeded", "Failed"):
            self.terminal_phase = phase
        terminal = phase in ("Succeeded", "Failed")
        unready = [c.name for c in self.containers if not c.ready]
        if terminal:
            for c in self.containers:
                c.ready = False
        incomplete = [c.name for c in self.init_containers if not c.done]
        gates = [g.get("conditionType") for g in (self.pod.get("spec") or {}).get("readinessGates") or []]
        existing = {c.get("type"): c.get("status") for c in (self.pod.get("status") or {}).get("conditions") or []}
        gates_ok = all(existing.get(g) == "True" for g in gates)
        containers_ready = not unready and not terminal
        conds = [
            self._cond("PodReadyToStartContainers", True),
            self._cond("Initialized", self.init_done and not incomplete, "ContainersNotInitialized",
                       f"containers with incomplete status: [{' '.join(incomplete)}]"),
            self._cond("Ready", containers_ready and gates_ok,
                       "PodCompleted" if terminal else ("ContainersNotReady" if unready else "ReadinessGatesNotReady"),
                       None if terminal else (f"containers with unready status: [{' '.join(unready)}]"
                                              if unready else "the status of pod readiness gate is not set to True")),
            self._cond("ContainersReady", containers_ready,
                       "PodCompleted" if terminal else "ContainersNotReady",
                       None if terminal else f"containers with unready status: [{' '.join(unready)}]"),
            self._cond("PodScheduled", True),
        ]
        st: dict[str, Any] = {
            "phase": phase,
            "conditions": conds,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.ip:
            st["podIP"] = self.ip
            st["podIPs"] = [{"ip": self.ip}]
        if self.init_containers:
            st["initContainerStatuses"] = [c.status() for c in self.init_containers]
        return st

    def _api_diverged(self, status: dict[str, Any]) -> bool:
        """Whether the API server's copy disagrees with what this node last published
        (phase or the status of a condition it owns): someone else wrote it, e.g. the
        node-lifecycle controller marking pods not ready after missed node heartbeats
        (an API outage). A kubelet's status manager then writes its view again."""
        with self._lock:
            st = (self.pod or {}).get("status") or {}
        if st.get("phase") != status.get("phase"):
            return True
        api_conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        return any(api_conds.get(c["type"]) != c["status"] for c in status["conditions"])

    def _publish_status(self, best_effort: bool = False) -> None:
        if self.adopted_terminal:
            return
        status = self._compute_status()
        if status == self._last_status and not self._api_diverged(status):
            return
        owned = {c["type"] for c in status["conditions"]}
        for attempt in range(6):
            with self._lock:
                pod = copy.deepcopy(self.pod)
            st = pod.get("status") or {}
            foreign = [c for c in st.get("conditions") or [] if c.get("type") not in owned]
            st.update(copy.deepcopy(status))
            st["conditions"] = status["conditions"] + foreign
            pod["status"] = st
            try:
                fresh = self.agent._api.request(
                    "PUT", f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status", body=pod
                )
                self.update(fresh)
                self._last_status = status
                return
            except ApiError as e:
                if e.status == 409:
                    try:
                        fresh = self.agent._api.get(
                            f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}"
                        )
                    except ApiError as e2:
                        if e2.status == 404:
                            self.api_deleted()
                            return
                        raise
                    if _meta(fresh).get("uid") != self.uid:
                        self.api_deleted()
                        return
                    with self._lock:
                        self.pod = fresh
                    continue
                if e.status == 404:
                    self.api_deleted()
                    return
                if best_effort:
                    return
                LOG.warning("status update of %s/%s failed: %s", self.namespace, self.pod_name, e)
                return
            except Exception as e:  # connection problems: retry on the next tick
                if not best_effort:
                    LOG.warning("status update of %s/%s failed: %s", self.namespace, self.pod_name, e)
                return

    # -- deletion -------------------------------------------------------------------------
    def _graceful_delete(self, pod: Mapping[str, Any]) -> None:
        grace = self._grace(pod)
        if any(c.running for c in self.all_containers()):
            self.agent._event(self, "Normal", "Killing",
                              f"Stopping containers (grace period {grace:g}s)", None)
        self._kill_all(grace)
        self._publish_status(best_effort=True)
        try:
            self.agent._api.request(
                "DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
                body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                      "preconditions": {"uid": self.uid}},
            )
        except ApiError as e:
            if e.status not in (404, 409):
                LOG.warning("final delete of %s/%s failed: %s", self.namespace, self.pod_name, e)
        except Exception as e:
            LOG.warning("final delete of %s/%s failed: %s", self.namespace, self.pod_name, e)
        self._cleanup()

    def _cleanup(self) -> None:
        self.agent._mounts.release(self.uid)
        if self.ip and self.ip != "127.0.0.1":
            self.agent._ips.release(self.ip)
        self.ip = None if self.ip != "127.0.0.1" else self.ip
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)
        self.agent._forget(self)



# ----------------------------------------------------------------------------------
# a sliver of the kubelet API: /containerLogs (so `kubectl logs` works)
# ----------------------------------------------------------------------------------
class _KubeletServer:
    """HTTPS on 127.0.0.1:<free port>, advertised as the Node's kubelet endpoint.

    Serves ``/containerLogs/<ns>/<pod>/<container>`` (``tailLines``, ``limitBytes``,
    ``follow``) from the agent's log files and ``/healthz``. exec, attach and
    port-forward answer 501. Like any kubelet reached without
    ``--kubelet-certificate-authority``, the apiserver does not verify its
    self-signed certificate; it does not authenticate callers either (it listens on
    loopback only and serves files the current user can read anyway)."""

    def __init__(self, agent: "NodeAgent") -> None:
        self.agent = agent
        cert, key = self_signed_cert(agent.node_name, dns_names=[agent.node_name, "localhost"],
                                     ip_addresses=["127.0.0.1"])
        d = agent.workdir / "kubelet"
        d.mkdir(parents=True, exist_ok=True)
        (d / "kubelet.crt").write_bytes(cert)
        kp = d / "kubelet.key"
        kp.write_bytes(key)
        os.chmod(kp, 0o600)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(d / "kubelet.crt"), str(kp))
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                       name="nodeagent-kubelet-api", daemon=True)
        self.thread.start()

    def close(self) -> None:
        try:
            self.httpd.shutdown()
            self.httpd.server_close()
        except Exception:  # pragma: no cover
            pass

    def _handler(self):
        agent = self.agent

        class Handler(BaseHTTPRequestHandler):
            server_version = "hean-local-node-agent"

            def log_message(self, fmt: str, *args: Any) -> None:
                LOG.debug("kubelet api: " + fmt, *args)

            def _text(self, code: int, text: str) -> None:
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(url.query)
                parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
                if parts == ["healthz"]:
                    return self._text(200, "ok")
                if parts[0] != "containerLogs" or len(parts) != 4:
                    return self._text(
                        501, f"{url.path}: not supported by the hean local node agent "
                        "(only container logs are served; no exec/attach/port-forward)")
                _, ns, pod, container = parts
                try:
                    path = agent.log_path(ns, pod, container)
                except FileNotFoundError as e:
                    return self._text(404, str(e))
                if not path.exists():
                    return self._text(404, f"no log for container {container!r} of pod {ns}/{pod} yet")
                tail = int(q.get("tailLines", ["-1"])[0] or -1)
                limit = int(q.get("limitBytes", ["0"])[0] or 0)
                follow = q.get("follow", ["false"])[0] == "true"
                data = path.read_bytes()
                if tail >= 0:
                    lines = data.splitlines(keepends=True)
                    data = b"".join(lines[-tail:]) if tail else b""
                if limit > 0:
                    data = data[:limit]
                if not follow:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Connection", "close")
                self.end_headers()
                sent = len(data)
                offset = path.stat().st_size
                # like a kubelet: follow the current run of the container to its end
                pid = agent.container_pid(ns, pod, container)
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                    while not agent._stopping.is_set():
                        if limit > 0 and sent >= limit:
                            return
                        with open(path, "rb") as f:
                            f.seek(offset)
                            chunk = f.read(65536)
                        if chunk:
                            if limit > 0:
                                chunk = chunk[: limit - sent]
                            offset += len(chunk)
                            sent += len(chunk)
                            self.wfile.write(chunk)
                            self.wfile.flush()
                            continue
                        if pid is None or agent.container_pid(ns, pod, container) != pid:
                            return
                        time.sleep(0.2)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                    return

        return Handler


# ----------------------------------------------------------------------------------
# the agent
# ----------------------------------------------------------------------------------
class NodeAgent:
    """A local stand-in for a kubelet (see the module docstring: TEST/DEV ONLY).

    ``start()`` registers the Node and starts background threads; ``stop()`` kills
    every process it started and deletes its Node.
    """

    def __init__(
        self,
        kubeconfig: str | Path,
        node_name: str = "hean-local-node",
        workdir: str | Path | None = None,
        python: str | Path = sys.executable,
        backoff_base: float = 1.0,
        *,
        max_backoff: float = 60.0,
        heartbeat_interval: float = 10.0,
        stop_grace: float = 5.0,
        labels: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        keep: bool = False,
        zygote: Sequence[str] | None = None,
        namespaces: Sequence[str] | None = None,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        #: bind only pods of these namespaces (None = all); pods elsewhere stay Pending.
        #: For scale tests whose pods need not all run (docs/harness.md).
        self.namespaces = frozenset(namespaces) if namespaces is not None else None
        if zygote is None:
            raw = os.environ.get("HEAN_AGENT_ZYGOTE", "")
            zygote = () if raw.lower() in ("", "0", "false", "no") else (
                ("hean.worker",) if raw.lower() in ("1", "true", "yes") else
                tuple(m.strip() for m in raw.split(",") if m.strip()))
        #: modules run as ``python -m <module>`` through the pre-imported fork server
        #: (docs/harness.md, "Fast worker start"); empty = every container is a fresh Popen.
        self.zygote_modules = tuple(zygote)
        self._zygote: Zygote | None = None
        self.node_name = node_name
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self.workdir: Path = self._workdir_arg or Path(tempfile.gettempdir())
        self.python = str(python)
        self.backoff_base = float(backoff_base)
        self.max_backoff = float(max_backoff)
        self.heartbeat_interval = float(heartbeat_interval)
        self.stop_grace = float(stop_grace)
        self.keep = keep
        self.labels = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
            NODE_LABEL: "true",
            **(labels or {}),
        }
        self._extra_env = dict(extra_env or {})
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._workers: dict[str, _PodWorker] = {}
        self._procs: dict[int, subprocess.Popen] = {}
        self._mounts = _MountTable()
        self._ips = _IpPool()
        self._threads: list[threading.Thread] = []
        self._events: queue.Queue = queue.Queue(maxsize=1000)
        self._watch_resp = None
        self._api: _Api | None = None  # type: ignore[assignment]
        self._node_uid: str | None = None
        self._ready_since = _now()
        self._started = False
        self._owns_workdir = False
        self._log_handler: logging.Handler | None = None
        self._kubelet: _KubeletServer | None = None
        self.server: str = ""
        self.ca_pem: bytes | None = None
        self._capacity: dict[str, str] = {}

    # -- public API -----------------------------------------------------------------------
    def __enter__(self) -> "NodeAgent":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "NodeAgent":
        if self._started:
            return self
        if self._workdir_arg is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="hean-agent-"))
            self._owns_workdir = True
        else:
            self.workdir = self._workdir_arg.resolve()
        (self.workdir / "pods").mkdir(parents=True, exist_ok=True)
        self._log_handler = logging.FileHandler(self.workdir / "agent.log")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
        self._log_handler.setLevel(logging.DEBUG)
        LOG.addHandler(self._log_handler)
        if LOG.level == logging.NOTSET or LOG.level > logging.INFO:
            LOG.setLevel(logging.INFO)
        self._load_kubeconfig()
        self._api = _Api(self.kubeconfig)
        self._base_env = self._make_base_env()
        self._capacity = self._node_capacity()
        self._stopping.clear()
        self._started = True
        atexit.register(self.stop)
        if self.zygote_modules:
            self._zygote = Zygote(self.python, self._base_env, self.zygote_modules, self.workdir / "zygote.log",
                                  argv_prefix=pdeathsig_prefix()).start()
        try:
            self._kubelet = _KubeletServer(self)
            self._register_node()
            self._renew_lease()
            rv = self._relist()
        except BaseException:
            self.stop()
            raise
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._event_loop, "events"),
                             (lambda: self._watch_loop(rv), "pod-watch")):
            t = threading.Thread(target=target, name=f"nodeagent-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        LOG.info("node agent %s started (workdir %s)", self.node_name, self.workdir)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Kill every process started by the agent, deregister the Node, join threads."""
        if not self._started:
            return
        self._started = False
        try:
            atexit.unregister(self.stop)
        except Exception:  # pragma: no cover
            pass
        self._stopping.set()
        resp = self._watch_resp
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:
                pass
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.wake()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.join(timeout=max(0.1, deadline - time.monotonic()))
        with self._lock:  # belt and braces: nothing we started may survive
            leftovers = list(self._procs.values())
        for p in leftovers:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        if self._zygote is not None:
            self._zygote.stop()
            self._zygote = None
        self._mounts.release_all()
        self._ips.release_all()
        if self._api is not None:
            for path in (
                f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}",
                f"/api/v1/nodes/{self.node_name}",
            ):
                try:
                    self._api.request("DELETE", path, timeout=10)
                except Exception as e:
                    LOG.debug("cannot delete %s: %s", path, e)
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        if self._kubelet is not None:
            self._kubelet.close()
            self._kubelet = None
        if self._api is not None:
            self._api.close()
        if self._log_handler is not None:
            LOG.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        if self._owns_workdir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_path(self, namespace: str, pod: str, container: str | None = None) -> Path:
        """The log file of a container (default: the pod's first container).

        Works for running pods and for pods already deleted (their log files are kept
        until the agent's work directory is removed)."""
        with self._lock:
            w = next((w for w in self._workers.values()
                      if w.namespace == namespace and w.pod_name == pod), None)
        if w is not None:
            if container is None:
                c = w.container(None)
                container = c.name if c is not None else "main"
            return w.log_path(container)
        dirs = sorted((self.workdir / "pods").glob(f"{namespace}_{pod}_*"),
                      key=lambda p: p.stat().st_mtime)
        if not dirs:
            raise FileNotFoundError(f"the local node agent has never run pod {namespace}/{pod}")
        d = dirs[-1]
        if container is None:
            logs = sorted(d.glob("*.log"), key=lambda p: p.stat().st_mtime)
            if not logs:
                raise FileNotFoundError(f"pod {namespace}/{pod} has no container logs in {d}")
            return logs[0]
        return d / f"{container}.log"

    def pod_dir(self, namespace: str, pod: str) -> Path | None:
        """The pod's directory (logs, kubeconfig, volumes) while the agent runs it."""
        with self._lock:
            for w in self._workers.values():
                if w.namespace == namespace and w.pod_name == pod:
                    return w.dir
        return None

    def container_pid(self, namespace: str, pod: str, container: str | None = None) -> int | None:
        """pid (= process group id) of the container's current process, if running."""
        with self._lock:
            for w in self._workers.values():
                if w.namespace == namespace and w.pod_name == pod:
                    c = w.container(container)
                    proc = c.proc if c is not None else None
                    return proc.pid if proc is not None else None
        return None

    @property
    def pids(self) -> list[int]:
        """Every process group the agent currently runs."""
        with self._lock:
            return sorted(self._procs)

    # -- internals: config --------------------------------------------------------------
    def _load_kubeconfig(self) -> None:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        ctx_name = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg.get("contexts") or [] if c["name"] == ctx_name),
                   (cfg.get("contexts") or [{}])[0].get("context", {}))
        cluster = next((c["cluster"] for c in cfg.get("clusters") or []
                        if c["name"] == ctx.get("cluster")), cfg["clusters"][0]["cluster"])
        self.server = cluster["server"]
        if cluster.get("certificate-authority-data"):
            self.ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            ca = Path(cluster["certificate-authority"])
            if not ca.is_absolute():
                ca = self.kubeconfig.parent / ca
            self.ca_pem = ca.read_bytes()
        else:
            self.ca_pem = None

    def _make_base_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
        pydir = os.path.dirname(self.python)
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["PATH"] = f"{pydir}{os.pathsep}{path}" if pydir else path
        env.update(self._extra_env)
        return env

    @staticmethod
    def _node_capacity() -> dict[str, str]:
        mem_kib = 0
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        mem_kib = int(line.split()[1])
                        break
        except OSError:  # pragma: no cover
            pass
        return {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{mem_kib or 1024 * 1024}Ki",
            "pods": "110",
            "ephemeral-storage": f"{shutil.disk_usage('/').total // 1024}Ki",
        }

    # -- internals: node + lease ---------------------------------------------------------
    def _node_conditions(self) -> list[dict[str, Any]]:
        now = _now()
        conds = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "local node agent: not measured"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "local node agent: not measured"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "local node agent: not measured"),
            ("Ready", "True", "KubeletReady",
             "hean local node agent is posting ready status (pods run as local processes)"),
        ]
        return [
            {"type": t, "status": s, "reason": r, "message": m,
             "lastHeartbeatTime": now, "lastTransitionTime": self._ready_since}
            for t, s, r, m in conds
        ]

    def _node_status(self) -> dict[str, Any]:
        return {
            "capacity": self._capacity,
            "allocatable": self._capacity,
            "conditions": self._node_conditions(),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self._kubelet.port if self._kubelet else 0}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": f"{platform.system()} (hean local node agent, no container runtime)",
                "containerRuntimeVersion": "hean-local://processes",
                "kubeletVersion": "hean-local-node-agent",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.labels["kubernetes.io/arch"],
            },
        }

    def _register_node(self) -> None:
        assert self._api is not None
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": self.labels,
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "hean.io/local-node-agent": "pods run as local processes (test/dev only)",
                },
            },
            "spec": {},
            "status": self._node_status(),
        }
        try:
            node = self._api.request("POST", "/api/v1/nodes", body=body)
        except ApiError as e:
            if e.status != 409:
                raise
            node = self._api.request(
                "PATCH", f"/api/v1/nodes/{self.node_name}",
                body={"metadata": {"labels": self.labels}},
                content_type="application/merge-patch+json",
            )
        self._node_uid = _meta(node).get("uid")
        self._patch_node_status()

    def _patch_node_status(self) -> None:
        assert self._api is not None
        self._api.request(
            "PATCH", f"/api/v1/nodes/{self.node_name}/status",
            body={"status": self._node_status()},
            content_type="application/strategic-merge-patch+json",
            timeout=10,
        )

    def _renew_lease(self) -> None:
        assert self._api is not None
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": 40,
            "renewTime": _micro_now(),
        }
        try:
            self._api.request("PATCH", path, body={"spec": spec},
                              content_type="application/merge-patch+json", timeout=10)
        except ApiError as e:
            if e.status != 404:
                raise
            meta: dict[str, Any] = {"name": self.node_name, "namespace": "kube-node-lease"}
            if self._node_uid:
                meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node",
                                            "name": self.node_name, "uid": self._node_uid}]
            self._api.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                body={"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "metadata": meta, "spec": spec},
                timeout=10,
            )

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.heartbeat_interval):
            try:
                self._renew_lease()
                try:
                    self._patch_node_status()
                except ApiError as e:
                    if e.status == 404:  # someone deleted our Node: register again
                        LOG.warning("Node %s disappeared; registering again", self.node_name)
                        self._register_node()
                    else:
                        raise
            except Exception as e:
                if not self._stopping.is_set():
                    LOG.warning("heartbeat failed: %s", e)

    # -- internals: events ---------------------------------------------------------------
    def _event(self, w: _PodWorker, etype: str, reason: str, message: str, container: str | None) -> None:
        self._emit(w.namespace, w.pod_name, w.uid, etype, reason, message, container)

    def _emit(self, namespace: str, pod: str, uid: str, etype: str, reason: str, message: str,
              container: str | None) -> None:
        if self._stopping.is_set():
            return
        try:
            self._events.put_nowait((namespace, pod, uid, etype, reason, message, container))
        except queue.Full:  # pragma: no cover
            pass

    def _event_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                item = self._events.get(timeout=0.5)
            except queue.Empty:
                continue
            ns, pod, uid, etype, reason, message, container = item
            involved = {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": pod, "uid": uid}
            if container:
                involved["fieldPath"] = f"spec.containers{{{container}}}"
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{pod}.", "namespace": ns},
                "involvedObject": involved,
                "reason": reason,
                "message": message[:1024],
                "type": etype,
                "source": {"component": "kubelet", "host": self.node_name},
                "firstTimestamp": _now(),
                "lastTimestamp": _now(),
                "eventTime": None,
                "count": 1,
                "reportingComponent": "hean-local-node-agent",
                "reportingInstance": self.node_name,
            }
            try:
                assert self._api is not None
                self._api.request("POST", f"/api/v1/namespaces/{ns}/events", body=body, timeout=5)
            except Exception as e:
                LOG.debug("event %s/%s %s not recorded: %s", ns, pod, reason, e)

    # -- internals: pods ------------------------------------------------------------------
    def _track(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs[proc.pid] = proc

    def _untrack(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.pop(proc.pid, None)

    def _forget(self, w: _PodWorker) -> None:
        with self._lock:
            if self._workers.get(w.uid) is w:
                del self._workers[w.uid]

    def _schedulable(self, pod: Mapping[str, Any]) -> bool:
        spec = pod.get("spec") or {}
        if spec.get("schedulingGates"):
            return False
        if self.namespaces is not None and _meta(pod).get("namespace") not in self.namespaces:
            return False
        sel = spec.get("nodeSelector") or {}
        return all(self.labels.get(k) == v for k, v in sel.items())

    def _bind(self, pod: Mapping[str, Any]) -> None:
        assert self._api is not None
        m = _meta(pod)
        try:
            self._api.request(
                "POST", f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}/binding",
                body={
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
                },
                timeout=10,
            )
            LOG.info("bound %s to %s", _pod_key(pod), self.node_name)
            self._emit(m["namespace"], m["name"], m["uid"], "Normal", "Scheduled",
                       f"Successfully assigned {m['namespace']}/{m['name']} to {self.node_name} "
                       "(hean local node agent)", None)
        except ApiError as e:
            if e.status not in (404, 409):
                LOG.warning("binding %s failed: %s", _pod_key(pod), e)
        except Exception as e:
            LOG.warning("binding %s failed: %s", _pod_key(pod), e)

    def _on_pod(self, etype: str, pod: dict[str, Any]) -> None:
        m = _meta(pod)
        uid = m.get("uid")
        if not uid:
            return
        if etype == "DELETED":
            with self._lock:
                w = self._workers.get(uid)
            if w is not None:
                w.api_deleted()
            return
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node:
            if not m.get("deletionTimestamp") and self._schedulable(pod):
                self._bind(pod)
            return
        if node != self.node_name:
            return
        with self._lock:
            if self._stopping.is_set():
                return
            w = self._workers.get(uid)
            if w is None:
                w = _PodWorker(self, pod)
                self._workers[uid] = w
                new = True
            else:
                new = False
        if new:
            w.start()
        else:
            w.update(pod)

    def _relist(self) -> str:
        assert self._api is not None
        lst = self._api.get("/api/v1/pods", timeout=60)
        seen = set()
        for pod in lst.get("items") or []:
            seen.add(_meta(pod).get("uid"))
            self._on_pod("ADDED", pod)
        with self._lock:
            vanished = [w for uid, w in self._workers.items() if uid not in seen]
        for w in vanished:
            w.api_deleted()
        return _meta(lst).get("resourceVersion") or ""

    def _watch_loop(self, rv: str | None) -> None:
        while not self._stopping.is_set():
            resp = None
            try:
                if not rv:
                    rv = self._relist()
                assert self._api is not None
                resp = self._api.stream(
                    "/api/v1/pods",
                    {"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true",
                     "timeoutSeconds": "120"},
                    timeout=(10, 150),
                )
                self._watch_resp = resp
                if self._stopping.is_set():
                    break
                for ev in _iter_json_lines(resp):
                    if self._stopping.is_set():
                        break
                    etype, obj = ev.get("type"), ev.get("object") or {}
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            LOG.info("pod watch: resourceVersion %s too old, re-listing", rv)
                            rv = None
                        else:
                            LOG.warning("pod watch error: %s", obj.get("message"))
                            time.sleep(1)
                        break
                    new_rv = _meta(obj).get("resourceVersion")
                    if new_rv:
                        rv = new_rv
                    if etype == "BOOKMARK":
                        continue
                    try:
                        self._on_pod(etype, obj)
                    except Exception:
                        LOG.exception("handling %s %s failed", etype, _pod_key(obj))
            except ApiError as e:
                if e.status == 410:
                    rv = None
                elif not self._stopping.is_set():
                    LOG.warning("pod watch failed: %s", e)
                    self._stopping.wait(1)
            except Exception as e:
                if not self._stopping.is_set():
                    LOG.warning("pod watch interrupted: %s", e)
                    self._stopping.wait(0.5)
            finally:
                self._watch_resp = None
                if resp is not None:
                    try:
                        resp.release_conn()
                    except Exception:
                        pass


__all__ = ["NODE_LABEL", "NodeAgent", "expand_vars"]
