"""Where each mode's traffic goes. Bybit's hosts (https://bybit-exchange.github.io/docs/v5/intro):
mainnet ``api.bybit.com``, testnet ``api-testnet.bybit.com``, demo trading
``api-demo.bybit.com`` (REST and private WebSocket only; its public market data is
mainnet's). Every URL can be overridden through the environment so that tests (and
the Helm chart's ``extraEnv``) can point a worker at another Bybit-v5-compatible
server: ``HEAN_BYBIT_REST_URL``, ``HEAN_BYBIT_WS_PUBLIC_URL`` (with ``{CHANNEL_TYPE}``
or a full ``.../v5/public/linear``), ``HEAN_BYBIT_WS_PRIVATE_URL``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULTS = {
    # mode: (rest, public ws template, private ws)
    "live": ("https://api.bybit.com", "wss://stream.bybit.com/v5/public/{CHANNEL_TYPE}",
             "wss://stream.bybit.com/v5/private"),
    "paper": ("https://api.bybit.com", "wss://stream.bybit.com/v5/public/{CHANNEL_TYPE}", ""),
    "testnet": ("https://api-testnet.bybit.com", "wss://stream-testnet.bybit.com/v5/public/{CHANNEL_TYPE}",
                "wss://stream-testnet.bybit.com/v5/private"),
    "demo": ("https://api-demo.bybit.com", "wss://stream.bybit.com/v5/public/{CHANNEL_TYPE}",
             "wss://stream-demo.bybit.com/v5/private"),
}


@dataclass(frozen=True)
class Endpoints:
    """REST base URL, public WebSocket URL template (``{CHANNEL_TYPE}`` placeholder)
    and private WebSocket URL."""

    rest: str
    ws_public: str
    ws_private: str

    def public_url(self, channel: str) -> str:
        """The public WebSocket URL for ``channel`` (``linear``, ``spot``, ...)."""
        return self.ws_public.replace("{CHANNEL_TYPE}", channel)


def endpoints_for(mode: str, env: dict | None = None) -> Endpoints:
    """The endpoints of ``mode`` (``paper`` uses mainnet public data), with the
    ``HEAN_BYBIT_*_URL`` overrides applied. Raises ValueError naming the mode."""
    env = os.environ if env is None else env
    if mode not in DEFAULTS:
        raise ValueError(f"spec.mode must be one of {sorted(DEFAULTS)}, got {mode!r}")
    rest, pub, priv = DEFAULTS[mode]
    pub = env.get("HEAN_BYBIT_WS_PUBLIC_URL") or pub
    if "{CHANNEL_TYPE}" not in pub and pub.rstrip("/").split("/")[-1] in ("linear", "spot", "inverse", "option"):
        pub = pub.rstrip("/").rsplit("/", 1)[0] + "/{CHANNEL_TYPE}"
    return Endpoints(env.get("HEAN_BYBIT_REST_URL") or rest, pub, env.get("HEAN_BYBIT_WS_PRIVATE_URL") or priv)
