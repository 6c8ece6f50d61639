"""Bybit v5 through pybit: REST/WebSocket clients, the shared rate-limit budget, the
orderLinkId scheme, exchange execution, reconciliation, the live market-data feed
(order book with ``u``/``seq`` checks) and the recorder. See docs/bybit.md.

API keys come only from the environment (``BYBIT_API_KEY``/``BYBIT_API_SECRET``, set
by the operator from the strategy's Secret through ``secretKeyRef``); nothing in this
package logs, stores or labels them. Only :func:`key_fingerprint` (a short SHA-256
prefix) may appear in file names and logs.
"""

from .client import (  # noqa: F401
    BybitClient,
    BybitError,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    Unavailable,
    key_fingerprint,
)
from .endpoints import Endpoints, endpoints_for  # noqa: F401
