"""``python -m hean.operator``: run the hean operator with kopf.

Standalone (one replica; the chart uses ``strategy: Recreate``), with kopf's liveness
endpoint on ``HEAN_LIVENESS_ENDPOINT``, default
``http://<HEAN_POD_IP or 0.0.0.0>:8081/healthz`` (bound to the pod IP when the chart
passes it, so several operators can share a host in the local harness), and
Prometheus metrics on ``HEAN_METRICS_PORT`` (default 8080, see
:mod:`hean.operator.metrics`).

Cluster-wide by default. ``HEAN_WATCH_NAMESPACES`` (comma-separated namespace names,
set by the chart's ``watchNamespaces``) restricts every watch to those namespaces,
matching the namespaced Roles the chart then grants instead of a ClusterRole.
"""

import logging
import os
import re
import sys

import kopf

from . import handlers  # noqa: F401  (registers the handlers)

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def watch_namespaces(raw: str | None) -> list[str]:
    """Parse ``HEAN_WATCH_NAMESPACES``: ``""``/unset means cluster-wide (``[]``).
    Raises ValueError naming a malformed entry."""
    names = [n.strip() for n in (raw or "").split(",") if n.strip()]
    for n in names:
        if not _DNS1123.match(n):
            raise ValueError(f"HEAN_WATCH_NAMESPACES: {n!r} is not a valid namespace name")
    return sorted(set(names))


def main() -> None:
    """Run the operator until SIGTERM."""
    logging.basicConfig(level=os.environ.get("HEAN_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        namespaces = watch_namespaces(os.environ.get("HEAN_WATCH_NAMESPACES"))
    except ValueError as e:
        sys.exit(f"hean operator: {e}")
    scope = {"namespaces": namespaces} if namespaces else {"clusterwide": True}
    logging.getLogger("hean.operator").info("watching %s", ", ".join(namespaces) if namespaces else "all namespaces")
    kopf.run(
        standalone=True,
        liveness_endpoint=os.environ.get(
            "HEAN_LIVENESS_ENDPOINT", f"http://{os.environ.get('HEAN_POD_IP') or '0.0.0.0'}:8081/healthz"),
        **scope,
    )


if __name__ == "__main__":
    main()
