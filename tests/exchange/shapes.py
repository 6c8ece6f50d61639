"""Shapes of Bybit v5 payloads, taken from the official documentation examples in
``../shared/marketdata/bybit/api/docs/`` (and the few frames the docs lack from
``fixtures/``), and a validator that the test exchange runs on every response and
frame it sends.

A *shape* is the example with its values replaced by their JSON types: objects by
their exact key sets, lists by the shape of their first element. ``validate(kind,
payload)`` raises :class:`ShapeError` naming the path of the first difference: a
missing key, an extra key or a different type. Numbers are one type (JSON has no
int/float distinction); ``null`` in the example matches anything (the docs use it
for "may be absent"). Templates (:func:`template`) are deep copies of the example
items, so the exchange builds payloads by overriding example values, never by
inventing fields.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from pathlib import Path

DOCS_SUBDIR = Path("bybit") / "api" / "docs"
FIXTURES_SUBDIR = Path("bybit") / "api" / "fixtures"

# kind -> (file, JSON path to the part used as the shape root ("" = whole document))
EXAMPLES: dict[str, str] = {
    "rest.envelope": "docs/rest_common__03_common_response_parameters.json",
    "rest.time": "docs/rest_market_time__02_response_example.json",
    "rest.kline": "docs/rest_market_kline__02_response_example.json",
    "rest.orderbook": "docs/rest_market_orderbook__02_response_example.json",
    "rest.instruments.linear": "docs/real_mainnet_capture_cryptofeed/rest_instruments_info_linear_BTC_ETH_SOL_DOGE_subset.json",
    "rest.instruments.spot": "docs/real_mainnet_capture_cryptofeed/rest_instruments_info_spot_BTC_ETH_SOL_DOGE_subset.json",
    "rest.order.history": "fixtures/http_get_orders_history.json",
    "rest.funding": "docs/rest_market_funding_history__02_response_example.json",
    "rest.recent_trade": "docs/rest_market_recent_trade__02_response_example.json",
    "rest.order.create": "docs/rest_order_create__02_response_example.json",
    "rest.order.cancel": "docs/rest_order_cancel__02_response_example.json",
    "rest.order.realtime": "docs/rest_order_realtime__02_response_example.json",
    "rest.execution.list": "docs/rest_execution_list__02_response_example.json",
    "rest.position.list": "docs/rest_position_list__02_response_example.json",
    "rest.wallet": "docs/rest_account_wallet_balance__02_response_example.json",
    "ws.auth": "docs/ws_connect__02_authentication.json",
    "ws.auth.failure": "fixtures/ws_auth_failure.json",
    "ws.pong": "docs/ws_connect__04_how_to_send_the_heartbeat_packet_linear_inverse.json",
    "ws.pong.spot": "docs/ws_connect__03_how_to_send_the_heartbeat_packet_spot.json",
    "ws.subscribe.public.spot": "docs/ws_connect__11_understanding_the_subscription_response_public_spot.json",
    "ws.subscribe.private": "docs/ws_connect__10_understanding_the_subscription_response_private.json",
    "ws.subscribe.public": "docs/ws_connect__12_understanding_the_subscription_response_linear_inverse.json",
    "ws.subscribe.failure": "fixtures/ws_subscription_failure.json",
    "ws.kline": "docs/ws_kline__01_response_example.json",
    "ws.orderbook.snapshot": "docs/ws_orderbook__01_response_example_snapshot.jsonc",
    "ws.orderbook.delta": "docs/ws_orderbook__02_response_example_delta.json",
    "ws.trade": "docs/ws_public_trade__01_response_example.json",
    "ws.tickers": "docs/ws_tickers__01_response_example_linear.jsonc",
    "ws.order": "docs/ws_private_order__02_stream_example.json",
    "ws.execution": "docs/ws_private_execution__02_stream_example.json",
    "ws.position": "docs/ws_private_position__02_stream_example.json",
    "ws.wallet": "docs/ws_private_wallet__02_stream_example.json",
}

# Objects that are maps keyed by data (coin names), not records: keys are free, the
# values must have the example values' shape.
MAP_FIELDS = {"cumFeeDetail"}

# Keys of the capture files that are annotations of the collector, not Bybit's.
ANNOTATION_KEYS = {"_request_url", "_note"}


class ShapeError(AssertionError):
    """A payload does not have the shape of the official example."""


def strip_jsonc(text: str) -> str:
    """The docs' ``.jsonc`` examples: drop ``//`` comments, ``...`` placeholders,
    non-JSON headings and trailing commas; keep the first JSON value."""
    out_lines = []
    for line in text.splitlines():
        in_str, cut = False, len(line)
        for i, ch in enumerate(line):
            if ch == '"' and (i == 0 or line[i - 1] != "\\"):
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                cut = i
                break
        line = line[:cut]
        if line.strip() in ("...,", "...", ","):
            continue
        out_lines.append(line)
    s = "\n".join(out_lines)
    s = re.sub(r",(\s*[}\]])", r"\1", s)
    s = re.sub(r"\[\s*,", "[", s)
    start = min(i for i in (s.find("{"), s.find("[")) if i >= 0)
    value, _ = json.JSONDecoder().raw_decode(s[start:])
    return json.dumps(value)


@lru_cache(maxsize=None)
def _load(root: str, kind: str):
    rel = EXAMPLES[kind]
    sub, name = rel.split("/", 1)
    base = Path(root) / (DOCS_SUBDIR if sub == "docs" else FIXTURES_SUBDIR)
    text = (base / name).read_text()
    if name.endswith(".jsonc"):
        text = strip_jsonc(text)
    doc = json.loads(text)
    for k in ANNOTATION_KEYS:
        doc.pop(k, None)
    return doc


class Shapes:
    """The official examples of one market-data directory."""

    def __init__(self, marketdata_dir: Path):
        self.root = str(Path(marketdata_dir).resolve())

    def example(self, kind: str):
        """A deep copy of the whole example document."""
        return copy.deepcopy(_load(self.root, kind))

    def template(self, kind: str, *path):
        """A deep copy of a part of the example: ``template("rest.order.realtime",
        "result", "list", 0)`` is one order as the docs show it."""
        node = _load(self.root, kind)
        for p in path:
            node = node[p]
        return copy.deepcopy(node)

    def validate(self, kind: str, payload, mode: str = "exact") -> None:
        """Raise :class:`ShapeError` unless ``payload`` has the example's shape.

        ``mode``: ``exact`` (what this exchange builds), ``superset`` (a real frame
        replayed verbatim may carry fields newer than the docs, e.g. ``RPI``; every
        documented key must be there with its type), ``partial`` (a real ``delta``
        frame carries only the changed fields, some newer than the docs: every
        documented key present must have its type)."""
        if mode not in ("exact", "superset", "partial"):
            raise ValueError(f"mode must be exact, superset or partial, got {mode!r}")
        _compare(_load(self.root, kind), payload, kind, mode)


def _type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _compare(example, payload, path: str, mode: str = "exact") -> None:
    te, tp = _type(example), _type(payload)
    if te == "null":
        return
    if te != tp:
        raise ShapeError(f"{path}: expected {te} like the official example, got {tp} ({payload!r:.80})")
    if te == "object" and path.rsplit(".", 1)[-1] in MAP_FIELDS:
        sample = next(iter(example.values()), None)
        for k, v in payload.items():
            _compare(sample, v, f"{path}.{k}", mode)
    elif te == "object":
        missing = sorted(set(example) - set(payload)) if mode == "exact" or mode == "superset" else []
        extra = sorted(set(payload) - set(example)) if mode == "exact" else []
        if missing or extra:
            raise ShapeError(f"{path}: keys differ from the official example: missing {missing}, extra {extra}")
        for k in example:
            if k in payload:
                _compare(example[k], payload[k], f"{path}.{k}", mode)
    elif te == "array":
        if example and payload:
            for i, item in enumerate(payload):
                _compare(example[0], item, f"{path}[{i}]", mode)
