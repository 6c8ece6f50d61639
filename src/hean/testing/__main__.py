"""``python -m hean.testing``: run the local harness by hand.

    python -m hean.testing bins
        build/locate the control-plane binaries and print their directory
    python -m hean.testing up [--workdir DIR] [--kubeconfig-out PATH] [--keep]
        start a local control plane and the local node agent, print the kubeconfig
        path, write <workdir>/cluster.json and run until SIGINT/SIGTERM

The node agent runs pods as local processes: test/dev only (see docs/harness.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path


def _cmd_bins(args: argparse.Namespace) -> int:
    from .bins import BinariesError, ensure_binaries

    try:
        print(ensure_binaries())
    except BinariesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from .controlplane import ControlPlane, ControlPlaneError
    from .nodeagent import NodeAgent

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()

    def _on_signal(signum, _frame):  # noqa: ANN001
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    cp = ControlPlane(workdir=args.workdir, keep=args.keep)
    agent: NodeAgent | None = None
    t0 = time.monotonic()
    try:
        try:
            cp.start()
        except ControlPlaneError as e:
            print(f"error: control plane failed to start:\n{e}", file=sys.stderr)
            return 1
        assert cp.workdir is not None and cp.kubeconfig is not None
        agent = NodeAgent(
            cp.kubeconfig, node_name=args.node_name, workdir=cp.workdir / "agent",
            backoff_base=args.backoff_base,
        )
        agent.start()
        kubeconfig = cp.kubeconfig
        if args.kubeconfig_out:
            out = Path(args.kubeconfig_out).expanduser().resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cp.kubeconfig, out)
            os.chmod(out, 0o600)
            kubeconfig = out
        info = {
            "kubeconfig": str(kubeconfig),
            "bin_dir": str(cp.bin_dir),
            "server": cp.server,
            "pid": os.getpid(),
            "workdir": str(cp.workdir),
            "agent_workdir": str(agent.workdir),
            "node_name": agent.node_name,
            "components": cp.pids,
        }
        (cp.workdir / "cluster.json").write_text(json.dumps(info, indent=2) + "\n")
        print(f"local control plane + node agent up in {time.monotonic() - t0:.1f}s")
        print(f"kubeconfig: {kubeconfig}")
        print(f"export KUBECONFIG={kubeconfig}")
        print(f"export PATH={cp.bin_dir}:$PATH   # kubectl, helm")
        print(f"pod logs:   {agent.workdir / 'pods'}/<namespace>_<pod>_<uid>/<container>.log")
        print(f"cluster.json: {cp.workdir / 'cluster.json'}")
        print("press Ctrl-C to stop", flush=True)
        while not stop.wait(1.0):
            if not cp.running:
                print("error: a control-plane process exited; see "
                      f"{cp.workdir / 'logs'}", file=sys.stderr)
                return 1
        return 0
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        if agent is not None:
            agent.stop()
        cp.stop()
        if cp.workdir is not None:
            try:  # it describes a cluster that no longer exists
                (cp.workdir / "cluster.json").unlink()
            except FileNotFoundError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hean.testing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("bins", help="ensure the control-plane binaries and print their directory")
    up = sub.add_parser("up", help="run a local control plane + node agent until interrupted")
    up.add_argument("--workdir", help="work directory (default: a new temp dir)")
    up.add_argument("--kubeconfig-out", help="also copy the admin kubeconfig here")
    up.add_argument("--keep", action="store_true", help="keep the temp work directory on exit")
    up.add_argument("--node-name", default="hean-local-node")
    up.add_argument("--backoff-base", type=float, default=1.0,
                    help="first CrashLoopBackOff delay in seconds (doubles up to 60)")
    up.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "bins":
        return _cmd_bins(args)
    return _cmd_up(args)


if __name__ == "__main__":
    sys.exit(main())
