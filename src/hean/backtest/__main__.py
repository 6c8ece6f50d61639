"""``python -m hean.backtest``: the same command as ``hean backtest``."""

import sys

from hean.backtest import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m hean.backtest"))
