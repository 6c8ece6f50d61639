"""A real ``redis-server`` (Debian package) for tests: ephemeral port, its own temp dir,
AOF on (``appendfsync everysec``, the chart's setting). Import the fixtures into a
test module: ``from redisserver import redis_server, redis_url``.

:class:`RedisServer` can also be stopped (SIGTERM: flushes the AOF; or SIGKILL: may lose
up to ~1 s of writes) and started again on the same port and directory, which is what
the chaos suite's Redis-restart scenario does.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process. ``url`` is ``redis://127.0.0.1:<port>/0``."""

    def __init__(self, appendfsync: str = "everysec"):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="hean-redis-"))
        self.port = _free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.restarts = 0

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) on the same port and directory; waits for PING (AOF loaded)."""
        import redis

        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
                "--protected-mode", "no", "--daemonize", "no", "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        while True:
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)
        client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM: clean shutdown, AOF flushed; SIGKILL: crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, sig: int = signal.SIGTERM, down_s: float = 0.0) -> None:
        """Stop with ``sig``, stay down ``down_s`` seconds, start again."""
        self.stop(sig)
        if down_s:
            time.sleep(down_s)
        self.start()
        self.restarts += 1

    def cleanup(self) -> None:
        """Stop and remove the temp dir."""
        self.stop(signal.SIGKILL if os.environ.get("HEAN_REDIS_FAST_STOP") else signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_server():
    """A started :class:`RedisServer` for the module; stopped and removed afterwards."""
    srv = RedisServer()
    srv.start()
    yield srv
    srv.cleanup()


@pytest.fixture
def redis_url(redis_server) -> str:
    """The server's URL with a clean database for this test."""
    import redis

    if redis_server.proc is None:
        redis_server.start()
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.close()
    return redis_server.url
