"""The hean operator as a local process (test harness only), for chaos tests that
kill and restart it at will.

:class:`OperatorProcess` runs ``python -m hean.operator`` with the harness's
interpreter against a kubeconfig (admin), with its kopf liveness endpoint and its
metrics on free loopback ports, its output appended to one log file, in its own
process group. ``kill(signal.SIGKILL)`` is a crash, ``kill(signal.SIGTERM)`` a
graceful shutdown (kopf's cleanup runs); ``start()`` starts a new incarnation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping

from .controlplane import free_port, pdeathsig_prefix, terminate_group


class OperatorProcess:
    """One operator incarnation at a time.

    ``env`` adds to (and overrides) the operator's environment, e.g.
    ``HEAN_MARKETDATA_HOST_PATH``, ``HEAN_WORKER_API_UNREACHABLE_SECONDS``,
    ``HEAN_WATCH_NAMESPACES``. ``starts`` counts incarnations; ``liveness_url`` is
    kopf's ``/healthz``.
    """

    def __init__(self, kubeconfig: Path, log_path: Path, env: Mapping[str, str] | None = None):
        self.kubeconfig = Path(kubeconfig)
        self.log_path = Path(log_path)
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.liveness_url = f"http://127.0.0.1:{self.liveness_port}/healthz"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait_live: float = 60.0) -> "OperatorProcess":
        """Start an incarnation and wait (up to ``wait_live`` seconds) until its
        liveness endpoint answers 200. Raises RuntimeError with the log tail if the
        process exits or does not become live."""
        if self.running:
            return self
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEAN_")}
        env.update({"KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1",
                    "HEAN_LIVENESS_ENDPOINT": self.liveness_url, "HEAN_METRICS_ADDRESS": "127.0.0.1",
                    "HEAN_METRICS_PORT": str(self.metrics_port)})
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"---- operator start #{self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(pdeathsig_prefix() + [sys.executable, "-m", "hean.operator"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=env)
        self.starts += 1
        deadline = time.monotonic() + wait_live
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
            if self.live():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"operator not live after {wait_live}s:\n{self.tail()}")

    def live(self) -> bool:
        """Whether kopf's liveness endpoint answers 200 now."""
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 20.0) -> int | None:
        """Send ``sig`` to the process group, wait up to ``timeout`` s (then
        SIGKILL); returns the exit code."""
        if self.proc is None:
            return None
        code = terminate_group(self.proc, timeout, sig)
        self.proc = None
        return code

    def stop(self) -> None:
        """Graceful stop (SIGTERM)."""
        self.kill(signal.SIGTERM)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
