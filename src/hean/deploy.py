"""Install hean onto a cluster with the real ``helm`` binary (shared by ``make demo``
and the end-to-end tests).

The chart (``helm/hean``) installs the CRDs, the operator's RBAC and its Deployment.
On the local harness the operator pod runs as a process through the node agent; on
kind it runs the image (``make`` does not build images: see the README).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Callable

RELEASE = "hean"
OPERATOR_NAMESPACE = "hean-system"


def repo_root(start: Path | None = None) -> Path:
    """The checkout root: the first parent of ``start`` (default: the working
    directory, then this file) holding ``helm/hean/Chart.yaml``. Raises
    FileNotFoundError if there is none."""
    for base in [start or Path.cwd(), Path(__file__).resolve()]:
        for p in [base, *base.parents]:
            if (p / "helm" / "hean" / "Chart.yaml").is_file():
                return p
    raise FileNotFoundError("cannot find the hean checkout (helm/hean/Chart.yaml) above the working directory")


def default_marketdata_dir(root: Path | None = None) -> Path:
    """``$HEAN_MARKETDATA_DIR`` or ``<checkout>/../shared/marketdata``."""
    env = os.environ.get("HEAN_MARKETDATA_DIR")
    if env:
        return Path(env).resolve()
    return ((root or repo_root()).parent / "shared" / "marketdata").resolve()


def helm_install_args(marketdata_dir: Path, namespace: str = OPERATOR_NAMESPACE, extra: list[str] | None = None,
                      root: Path | None = None) -> list[str]:
    """Arguments of ``helm upgrade --install`` for hean. The market data is mounted at
    the same path it has on the host, so the local node agent needs no symlinks.
    ``$HEAN_HELM_ARGS`` (shell words) is appended, e.g. for an image on kind."""
    root = root or repo_root()
    md = str(Path(marketdata_dir).resolve())
    args = ["upgrade", "--install", RELEASE, str(root / "helm" / "hean"), "--namespace", namespace,
            "--create-namespace", "--wait", "--timeout", "180s",
            "--set", f"worker.marketData.hostPath={md}", "--set", f"worker.marketData.mountPath={md}",
            # The local node agent cannot provision PVCs (Redis StatefulSet) and links
            # mountPaths on the host, where /tmp exists (tmp emptyDir): see docs/helm.md.
            # On kind, HEAN_HELM_ARGS can turn both back on.
            "--set", "redis.enabled=false", "--set", "tmpVolume.enabled=false"]
    args += extra or []
    args += shlex.split(os.environ.get("HEAN_HELM_ARGS", ""))
    return args


def install(helm: Callable, marketdata_dir: Path, namespace: str = OPERATOR_NAMESPACE,
            extra: list[str] | None = None):
    """Run ``helm upgrade --install`` through ``helm(*args)`` (a function that runs the
    helm binary against the cluster and raises on failure)."""
    return helm(*helm_install_args(marketdata_dir, namespace, extra))
