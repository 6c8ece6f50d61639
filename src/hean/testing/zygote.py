"""A pre-imported fork server ("zygote") for the local node agent. TEST/DEV ONLY.

Starting ``python -m hean.worker`` costs most of a CPU second before the worker does
anything (imports of kubernetes_asyncio, FastAPI, pydantic, numpy, the native
extension). On a 2-core machine that caps how fast the node agent can bring up a few
hundred workers. The zygote imports those modules **once**, then forks a copy of its
warm interpreter for every container whose command is ``python -m <module>`` (one of
the modules it was started for). A real cluster does not need this: it starts
containers in parallel on many nodes (and an image's interpreter start is the same
cost per container there).

What a forked container gets, exactly as :class:`subprocess.Popen` in the node agent
gives it: its own session and process group (``setsid``; the agent signals the group
with ``os.killpg``), the pod's environment (``os.environ`` replaced before the module
runs), its working directory, stdin from ``/dev/null``, stdout and stderr appended to
the container's log file, ``sys.argv`` as ``python -m`` sets it, ``PYTHONUNBUFFERED``
honoured, every other inherited file descriptor closed, and the normal interpreter
exit (uncaught exception -> traceback and status 1, ``SystemExit`` code, atexit
handlers, death by signal). The exit status reaches the agent through the zygote
(the zygote is the parent and reaps it), as ``returncode`` with Popen's convention
(negative signal number). Differences from a fresh interpreter, documented in
docs/harness.md: modules imported by the zygote were imported before the pod's
environment was set (so a module that reads an environment variable at import time
sees the agent's base environment; the worker reads its settings at start-up, not at
import), ``/proc/<pid>/cmdline`` and ``/proc/<pid>/environ`` show the zygote's, all
children share the zygote's hash seed, and the parent of the process is the zygote,
not the agent (``PR_SET_PDEATHSIG`` makes children die with the zygote, and the
zygote dies with the agent).

Protocol (JSON lines over a socketpair inherited as fd ``--fd``): the agent sends
``{"id": n, "op": "spawn", "argv": [...], "env": {...}, "cwd": str, "log": str}``;
the zygote answers ``{"id": n, "pid": int}`` or ``{"id": n, "error": str}``, and
later ``{"exit": pid, "status": <raw wait status>}`` for every child it reaps.
It announces ``{"ready": true, "modules": [...]}`` once the preload is done.

Run by the agent as ``python -m hean.testing.zygote --fd N --preload a,b,c``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import io
import json
import os
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

#: Modules imported by the zygote for each runnable module (``python -m <key>``).
PRELOAD = {
    "hean.worker": ("hean.worker.app", "hean.worker.http", "uvicorn", "fastapi", "kubernetes_asyncio.client",
                    "pydantic_settings", "prometheus_client", "hean.indicators", "hean._native",
                    # imported lazily by every worker at start-up (py-spy: 8 % of a starting
                    # worker's CPU was these imports)
                    "hean.worker.state", "hean.worker.selection", "hean.worker.bybit.metrics", "redis.asyncio",
                    "pydantic.v1", "fastapi.responses", "uvicorn.protocols.http.auto", "uvicorn.protocols.http.h11_impl",
                    "uvicorn.protocols.websockets.auto", "uvicorn.lifespan.on", "uvicorn.loops.auto"),
}
_PR_SET_PDEATHSIG = 1


# ---------------------------------------------------------------------------------
# client side (in the node agent)
# ---------------------------------------------------------------------------------
class ZygoteUnavailable(Exception):
    """The zygote is not running (or died); the caller falls back to Popen."""


class ZygoteProcess:
    """The Popen-like handle of a container forked by the zygote: ``pid``,
    ``returncode`` (None while running; negative signal number if killed by a
    signal, as Popen), ``poll()``, ``wait(timeout)`` (raises
    :class:`subprocess.TimeoutExpired`), ``send_signal``, ``terminate``, ``kill``."""

    def __init__(self, pid: int, args: Sequence[str]) -> None:
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None
        self._done = threading.Event()

    def _exited(self, code: int) -> None:
        self.returncode = code
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """Client of one zygote process, started by :meth:`start` with ``python`` and
    ``env`` (the agent's interpreter and base environment). ``modules`` are the
    modules it serves as ``python -m <module>`` (keys of :data:`PRELOAD`, or any
    importable module, which is then preloaded itself); ``"-c"`` also serves
    ``python -c <code>`` (used by the harness's own tests).

    Thread-safe: pod worker threads call :meth:`spawn` concurrently.
    """

    def __init__(self, python: str, env: Mapping[str, str], modules: Sequence[str], log_path: Path,
                 argv_prefix: Sequence[str] = ()) -> None:
        self.python = python
        self.env = dict(env)
        self.modules = tuple(modules)
        self.log_path = Path(log_path)
        self.argv_prefix = list(argv_prefix)
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._ids = 0
        self._pending: dict[int, dict] = {}
        self._waiting: dict[int, threading.Event] = {}
        self._procs: dict[int, ZygoteProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._ready = threading.Event()
        self._dead = threading.Event()
        self.spawned = 0

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> "Zygote":
        """Start the zygote process (the preload runs in the background; spawns wait
        for it)."""
        preload: list[str] = []
        for m in self.modules:
            if m != "-c":
                preload += list(PRELOAD.get(m, (m,)))
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv_prefix + [self.python, "-m", "hean.testing.zygote", "--fd", str(child.fileno()),
                                    "--preload", ",".join(preload)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(child.fileno(),), start_new_session=True, close_fds=True)
        child.close()
        self._sock = parent
        threading.Thread(target=self._reader, name="zygote-reader", daemon=True).start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until the preload is done; False on timeout or if the zygote died."""
        self._ready.wait(timeout)
        return self._ready.is_set() and not self._dead.is_set()

    def stop(self) -> None:
        """Stop the zygote (its children get SIGKILL through PR_SET_PDEATHSIG; the
        agent kills their process groups itself before this)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        self._dead.set()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- which containers it can run -------------------------------------------------
    def accepts(self, argv: Sequence[str], exe_path: str, env: Mapping[str, str]) -> bool:
        """True if ``argv`` (resolved executable ``exe_path``) is ``python -m <module>``
        (or ``python -c <code>``) for a module this zygote serves, with the same
        interpreter and the same ``PYTHON*`` environment (``PYTHONUNBUFFERED`` aside,
        which the child applies itself): only then is a fork indistinguishable from a
        fresh start for that program."""
        if self._dead.is_set() or len(argv) < 3:
            return False
        if argv[1] == "-m":
            if argv[2] not in self.modules:
                return False
        elif not (argv[1] == "-c" and "-c" in self.modules):
            return False
        try:
            if os.path.realpath(exe_path) != os.path.realpath(self.python):
                return False
        except OSError:
            return False
        keys = {k for k in (*env, *self.env) if k.startswith("PYTHON") and k != "PYTHONUNBUFFERED"}
        return all(env.get(k) == self.env.get(k) for k in keys)

    # -- spawning ---------------------------------------------------------------------
    def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, log_path: Path,
              timeout: float = 60.0) -> ZygoteProcess:
        """Fork a container; returns once it runs in its own session with its log
        file, environment and cwd set. Raises :class:`ZygoteUnavailable` if the
        zygote is not running or does not answer within ``timeout`` seconds, and
        OSError if the child could not be set up (e.g. the log file cannot be
        opened)."""
        if self._sock is None or self._dead.is_set():
            raise ZygoteUnavailable("zygote not running")
        ev = threading.Event()
        with self._lock:
            self._ids += 1
            rid = self._ids
            self._waiting[rid] = ev
            msg = json.dumps({"id": rid, "op": "spawn", "argv": list(argv), "env": dict(env), "cwd": cwd,
                              "log": str(log_path)}) + "\n"
            try:
                self._sock.sendall(msg.encode())
            except OSError as e:
                self._waiting.pop(rid, None)
                raise ZygoteUnavailable(f"zygote socket: {e}") from None
        if not ev.wait(timeout) or self._dead.is_set() and rid not in self._pending:
            with self._lock:
                self._waiting.pop(rid, None)
            raise ZygoteUnavailable("zygote did not answer")
        with self._lock:
            reply = self._pending.pop(rid)
            self._waiting.pop(rid, None)
        if "error" in reply:
            raise OSError(reply["error"])
        self.spawned += 1
        return reply["proc"]

    def _reader(self) -> None:
        sock = self._sock
        assert sock is not None
        buf = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._handle(json.loads(line))
        except OSError:
            pass
        finally:
            self._dead.set()
            self._ready.set()
            with self._lock:
                procs = list(self._procs.values())
                self._procs.clear()
                waiting = list(self._waiting.values())
            for p in procs:  # the zygote is gone: its children got SIGKILL (pdeathsig)
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                p._exited(-signal.SIGKILL)
            for ev in waiting:
                ev.set()

    def _handle(self, msg: dict[str, Any]) -> None:
        if msg.get("ready"):
            self._ready.set()
            return
        if "exit" in msg:
            code = os.waitstatus_to_exitcode(msg["status"])
            with self._lock:
                p = self._procs.pop(msg["exit"], None)
            if p is not None:
                p._exited(code)
            return
        rid = msg["id"]
        with self._lock:
            ev = self._waiting.get(rid)
            if "pid" in msg:
                proc = ZygoteProcess(msg["pid"], msg.get("argv") or [])
                self._procs[proc.pid] = proc
                msg["proc"] = proc
            self._pending[rid] = msg
        if ev is not None:
            ev.set()


# ---------------------------------------------------------------------------------
# server side (the zygote process)
# ---------------------------------------------------------------------------------
def _send(sock: socket.socket, obj: dict) -> None:
    sock.sendall((json.dumps(obj) + "\n").encode())


def _fork_child(req: dict, drop_server: Any) -> int:
    """Fork; in the parent return the child's pid once it is set up (or raise
    OSError with the child's error); in the child release the server's resources
    (``drop_server()``), set the child up and return 0 (the caller then runs
    :func:`_become`)."""
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            drop_server()
            _setup_child(req, w)
        except BaseException as e:  # noqa: BLE001 - report and die like a failed exec
            try:
                os.write(w, f"error: {type(e).__name__}: {e}".encode())
            finally:
                os._exit(127)
        return 0
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    answer = b"".join(chunks)
    if answer != b"ok":
        raise OSError(answer.decode(errors="replace") or "child died during set-up")
    return pid


def _setup_child(req: dict, w: int) -> None:
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    if not os.environ.get("HEAN_NO_PDEATHSIG"):
        try:  # die with the zygote (which dies with the agent), as setpriv --pdeathsig does
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    os.chdir(req["cwd"])
    log = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    keep = {0, 1, 2, w}
    for fd in _open_fds():
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.environ.clear()
    os.environ.update(req["env"])
    unbuffered = bool(req["env"].get("PYTHONUNBUFFERED"))
    for name, fd, errors in (("stdout", 1, "strict"), ("stderr", 2, "backslashreplace")):
        old = getattr(sys, name)
        raw = io.FileIO(fd, "w", closefd=False)
        stream = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding=old.encoding,
                                  errors=errors, write_through=unbuffered, line_buffering=False)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=sys.stdin.encoding
                                                 if sys.stdin else "utf-8")
    os.write(w, b"ok")
    os.close(w)


def _open_fds() -> list[int]:
    try:
        return [int(x) for x in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 1024))


def _become(req: dict) -> None:
    """Run the container's program in this (forked) interpreter, as ``python -m``
    or ``python -c`` would: exceptions propagate to the interpreter's normal exit."""
    argv = req["argv"]
    if argv[1] == "-m":
        sys.argv = ["-m", *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *argv[3:]]
        import __main__
        code = compile(argv[2], "<string>", "exec")
        g = {"__name__": "__main__", "__builtins__": __builtins__, "__doc__": None, "__spec__": None,
             "__loader__": getattr(__main__, "__loader__", None), "__package__": None}
        sys.modules["__main__"] = type(sys)("__main__")
        sys.modules["__main__"].__dict__.update(g)
        exec(code, sys.modules["__main__"].__dict__)


def serve(fd: int, preload: Sequence[str]) -> dict | None:
    """The zygote's loop. Returns a request only in a forked child (which then runs
    it at the top level); returns None when the agent closes the socket."""
    sock = socket.socket(fileno=fd)
    t0 = time.perf_counter()
    loaded = []
    for m in preload:
        if not m:
            continue
        try:
            importlib.import_module(m)
            loaded.append(m)
        except Exception as e:  # noqa: BLE001 - a module that fails to import is imported by the child instead
            print(f"zygote: preload of {m} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    if threading.active_count() != 1:
        print("zygote: a preloaded module started a thread; refusing to fork", file=sys.stderr, flush=True)
        return None
    # Everything imported so far lives as long as the children: move it out of the
    # cyclic GC's generations, so that no child's full collection walks (and, through
    # reference-count writes, copies) the hundreds of thousands of preloaded objects.
    gc.collect()
    gc.freeze()
    print(f"zygote: pid {os.getpid()} preloaded {len(loaded)} modules in {time.perf_counter() - t0:.2f} s",
          file=sys.stderr, flush=True)
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(rfd, selectors.EVENT_READ)
    _send(sock, {"ready": True, "modules": loaded})

    def drop_server() -> None:  # in a forked child: no trace of the server's descriptors
        signal.set_wakeup_fd(-1)
        sel.close()
        os.close(rfd)
        os.close(wfd)
        os.close(sock.detach())

    buf = b""
    while True:
        for key, _ in sel.select(timeout=5.0):
            if key.fileobj == rfd:
                try:
                    while os.read(rfd, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            data = sock.recv(65536)
            if not data:
                return None
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                try:
                    pid = _fork_child(req, drop_server)
                except OSError as e:
                    _send(sock, {"id": req["id"], "error": str(e)})
                    continue
                if pid == 0:
                    return req
                _send(sock, {"id": req["id"], "pid": pid, "argv": req["argv"]})
        while True:  # reap every exited child (SIGCHLD woke us, or the 5 s timeout)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            _send(sock, {"exit": pid, "status": status})


def main(argv: Sequence[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(prog="python -m hean.testing.zygote", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fd", type=int, required=True, help="inherited socket to the node agent")
    ap.add_argument("--preload", default="", help="comma-separated modules to import before forking")
    args = ap.parse_args(argv)
    return serve(args.fd, [m.strip() for m in args.preload.split(",")])


if __name__ == "__main__":
    _req = main()
    if _req is not None:
        del _req["id"]
        _become(_req)
