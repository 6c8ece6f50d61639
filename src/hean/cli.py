"""The ``hean`` console script (``[project.scripts]`` in pyproject.toml).

Subcommands:

* ``hean backtest MANIFEST... [--policy P] [--out DIR] [--feed ...]``: replay a
  TradingStrategy on recorded data (candles, order-book frames, funding history or a
  spot/perp pair, chosen from ``spec.strategy``) and write a report
  (:mod:`hean.backtest`, docs/backtests.md).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``hean <command> ...``; returns the exit code (2 for an unknown command)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hean backtest MANIFEST... [--policy POLICY] [--out DIR]  (hean backtest --help)")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "backtest":
        from hean.backtest import main as backtest_main

        return backtest_main(rest)
    print(f"hean: unknown command {cmd!r}; commands: backtest", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
