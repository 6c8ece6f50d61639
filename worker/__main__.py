"""``python -m hean.worker``: run the trading worker (see :mod:`hean.worker.app`)."""

from .app import main

main()
