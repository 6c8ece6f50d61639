"""Locate (and if needed build) the real control-plane binaries the harness runs.

The binaries (kube-apiserver, kube-controller-manager, kubectl, etcd, helm) are built
from the Go module proxy by ``hack/k8s-bins.sh`` at the versions pinned in
``hack/versions.env`` and cached under ``~/.cache/hean/k8s/<versions>/bin``.

Resolution order of :func:`ensure_binaries`:

1. ``$HEAN_K8S_BIN_DIR`` if it is set and holds all five binaries;
2. ``hack/k8s-bins.sh``, found by walking up from the current working directory and
   from this file's location (it only builds what is missing, so it is fast once the
   cache is warm). Concurrent callers are serialised with a file lock.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

REQUIRED_BINARIES: tuple[str, ...] = (
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "etcd",
    "helm",
)

ENV_BIN_DIR = "HEAN_K8S_BIN_DIR"
SCRIPT_RELPATH = Path("hack") / "k8s-bins.sh"
VERSIONS_RELPATH = Path("hack") / "versions.env"


class BinariesError(RuntimeError):
    """The control-plane binaries could not be found or built."""


def missing_binaries(bin_dir: Path) -> list[str]:
    """Names of the required binaries that are absent (or not executable) in ``bin_dir``."""
    return [b for b in REQUIRED_BINARIES if not os.access(bin_dir / b, os.X_OK)]


def _candidates(relpath: Path) -> list[Path]:
    """``relpath`` in every parent of the cwd and of this file, nearest first, deduplicated."""
    seen: set[Path] = set()
    out: list[Path] = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            p = d / relpath
            if p in seen:
                continue
            seen.add(p)
            if p.is_file():
                out.append(p)
    return out


def find_repo_file(relpath: str | Path) -> Path | None:
    """The nearest ``relpath`` walking up from the cwd, then from this file."""
    found = _candidates(Path(relpath))
    return found[0] if found else None


def find_script() -> Path | None:
    """The nearest ``hack/k8s-bins.sh`` (see :func:`find_repo_file`)."""
    return find_repo_file(SCRIPT_RELPATH)


def read_versions(path: str | Path | None = None) -> dict[str, str]:
    """Parse ``hack/versions.env`` (``KEY=VALUE`` lines) into a dict.

    Raises :class:`BinariesError` if the file cannot be found.
    """
    p = Path(path) if path is not None else find_repo_file(VERSIONS_RELPATH)
    if p is None or not p.is_file():
        raise BinariesError(f"cannot find {VERSIONS_RELPATH} above {Path.cwd()} or {__file__}")
    out: dict[str, str] = {}
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip().strip('"').strip("'")
    return out


def ensure_binaries(*, build: bool = True, timeout: float | None = 3600) -> Path:
    """Return a directory holding all of :data:`REQUIRED_BINARIES`.

    ``build=False`` only accepts an existing, complete directory (env var or the cache
    directory the script would print) and never runs a Go build.
    """
    problems: list[str] = []
    env_dir = os.environ.get(ENV_BIN_DIR)
    if env_dir:
        d = Path(env_dir).expanduser()
        miss = missing_binaries(d)
        if not miss:
            return d
        problems.append(f"${ENV_BIN_DIR}={env_dir} lacks {', '.join(miss)}")

    scripts = _candidates(SCRIPT_RELPATH)
    if not scripts:
        problems.append(
            f"no {SCRIPT_RELPATH} found walking up from {Path.cwd()} or {Path(__file__).resolve().parent}"
        )
    for script in scripts:
        if not build:
            cached = _cached_bin_dir(script)
            if cached is not None and not missing_binaries(cached):
                return cached
            problems.append(f"{script}: binaries not built yet (build=False)")
            continue
        try:
            return _run_script(script, timeout)
        except BinariesError as e:
            problems.append(str(e))

    raise BinariesError(
        "cannot provide the Kubernetes control-plane binaries "
        f"({', '.join(REQUIRED_BINARIES)}):\n  - "
        + "\n  - ".join(problems)
        + f"\nSet ${ENV_BIN_DIR} to a directory holding them, or run hack/k8s-bins.sh "
        "(needs Go and access to the Go module proxy)."
    )


def _cache_root() -> Path:
    if os.environ.get("HEAN_K8S_CACHE"):
        return Path(os.environ["HEAN_K8S_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "hean" / "k8s"


def _cached_bin_dir(script: Path) -> Path | None:
    """The bin dir the script would use, computed the same way the script does."""
    try:
        v = read_versions(script.parent / "versions.env")
        return (
            _cache_root()
            / f"{v['KUBERNETES_VERSION']}-etcd{v['ETCD_VERSION']}-helm{v['HELM_VERSION']}"
            / "bin"
        )
    except (BinariesError, KeyError):
        return None


def _run_script(script: Path, timeout: float | None) -> Path:
    cached = _cached_bin_dir(script)
    if cached is not None and not missing_binaries(cached):
        return cached  # fast path: nothing to build, no need to fork bash
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    # Serialise builds: two concurrent `go build`s of Kubernetes on 2 cores would
    # both take twice as long and race on the same output files.
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            proc = subprocess.run(
                ["bash", str(script)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout,
                cwd=script.parent.parent,
            )
        except subprocess.TimeoutExpired as e:
            raise BinariesError(f"{script} timed out after {timeout} s") from e
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-30:])
        raise BinariesError(f"{script} failed (exit {proc.returncode}):\n{tail}")
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    if not lines:
        raise BinariesError(f"{script} printed no bin directory")
    d = Path(lines[-1].strip())
    miss = missing_binaries(d)
    if miss:
        raise BinariesError(f"{script} printed {d}, which lacks {', '.join(miss)}")
    return d


__all__ = [
    "REQUIRED_BINARIES",
    "BinariesError",
    "ensure_binaries",
    "find_repo_file",
    "find_script",
    "missing_binaries",
    "read_versions",
]
