"""``python -m hean.operator``: run the hean operator with kopf.

Cluster-wide, standalone (one replica; the chart uses ``strategy: Recreate``), with
kopf's liveness endpoint on ``HEAN_LIVENESS_ENDPOINT``, default
``http://<HEAN_POD_IP or 0.0.0.0>:8081/healthz`` (bound to the pod IP when the chart
passes it, so several operators can share a host in the local harness).
"""

import logging
import os

import kopf

from . import handlers  # noqa: F401  (registers the handlers)


def main() -> None:
    """Run the operator until SIGTERM."""
    logging.basicConfig(level=os.environ.get("HEAN_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    kopf.run(
        clusterwide=True,
        standalone=True,
        liveness_endpoint=os.environ.get(
            "HEAN_LIVENESS_ENDPOINT", f"http://{os.environ.get('HEAN_POD_IP') or '0.0.0.0'}:8081/healthz"),
    )


main()
