"""``python -m hean.demo`` (``make demo``): the whole system on one machine.

Starts a real local control plane (etcd, kube-apiserver, kube-controller-manager built
from the Go module proxy) and the local node agent, installs the Helm chart with the
real ``helm`` binary, applies ``examples/`` (two impulse strategies on BTCUSDT and
ETHUSDT, a RiskPolicy, a SymbolQuarantine) and prints ``kubectl get hean -o wide``
whenever it changes while the workers paper-trade the recorded Bybit candles.

Stops after ``HEAN_DEMO_SECONDS`` (default: run until Ctrl-C) and tears everything
down. Set ``HEAN_DEMO_KEEP=1`` to keep the cluster's work directory.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from hean.deploy import default_marketdata_dir, install, repo_root


def main() -> int:
    """Run the demo; returns the process exit code."""
    from hean.testing.controlplane import ControlPlane
    from hean.testing.nodeagent import NodeAgent

    root = repo_root()
    md = default_marketdata_dir(root)
    if not md.is_dir():
        print(f"market data not found at {md}; set HEAN_MARKETDATA_DIR", file=sys.stderr)
        return 2
    limit = float(os.environ.get("HEAN_DEMO_SECONDS", "0") or 0)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    print("starting a local control plane (etcd, kube-apiserver, kube-controller-manager) ...", flush=True)
    with ControlPlane(keep=bool(os.environ.get("HEAN_DEMO_KEEP"))) as cp:
        agent = NodeAgent(cp.kubeconfig, workdir=cp.workdir / "agent")
        agent.start()
        try:
            print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
            print("installing the chart with helm ...", flush=True)
            install(cp.helm, md)
            cp.kubectl("apply", "-n", "default", "-f", str(root / "examples"))
            print("applied examples/; watching `kubectl get hean -o wide` (Ctrl-C to stop)\n", flush=True)
            start, last = time.monotonic(), None
            while not stop["now"] and (not limit or time.monotonic() - start < limit):
                out = cp.kubectl("get", "hean", "-n", "default", "-o", "wide", check=False).stdout
                if out != last:
                    print(time.strftime("%H:%M:%S"), flush=True)
                    print(out, flush=True)
                    last = out
                time.sleep(5)
        except KeyboardInterrupt:
            pass
        finally:
            print("tearing down ...", flush=True)
            agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
