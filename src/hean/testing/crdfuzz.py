"""Invalid-manifest generator for hean's three CRDs (issue 7, "Bad input").

Derived from the CRD schemas in ``crds/``: the generator walks each kind's
``spec`` schema from valid base objects (:data:`BASES`: together they set every
field; one per strategy, Bybit, promotion, every RiskPolicy safety block, ...) and,
for every field (from the first base that sets it), derives the
mutations its schema forbids (wrong JSON type, out-of-range numbers, enum and
pattern violations, strings over ``maxLength`` and 100 000 characters long, lists
over ``maxItems`` and 5 000 items long, duplicates in set lists, unknown fields,
missing required fields), plus the cross-field contradictions the CEL rules forbid
(soft drawdown at or above the hard one, fast EMA not below the slow one, live
without the confirmation phrase, exchange modes without credentials or live market
data, another strategy's params block, scanner topN above its universe, Bybit
settings on replayed data, skipped promotion stages, both or neither quarantine
expiry, ...: :data:`CEL_CASES`), plus seeded random combinations of
2 or 3 schema mutations. Each :class:`Case` carries the field paths the API
server's answer must name.

Test harness code (``tests/e2e/test_crd_fuzz.py``); no network, no cluster.
``python -m hean.testing.crdfuzz --count`` prints how many cases a seed gives.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

KINDS = {
    "TradingStrategy": ("tradingstrategies", "fz-ts"),
    "RiskPolicy": ("riskpolicies", "fz-rp"),
    "SymbolQuarantine": ("symbolquarantines", "fz-sq"),
}
UNKNOWN = "fuzzUnknownField"
# Marks mutations only a CEL rule catches: CEL does not run while other schema errors
# exist ("some validation rules were not checked"), so they are not combined.
CEL_CHECKED = " [cel]"
HUGE_STRING = 100_000
HUGE_LIST = 5_000

# Valid base specs (the generator mutates one field at a time, so each must be
# accepted as is: the e2e test checks every one with a dry run). Together the bases
# of a kind set every field of its schema; fields that CEL allows only in some
# combinations get their own base: one per strategy (``spec.params.<strategy>`` is
# allowed only with that ``spec.strategy``), ``spec.bybit`` (needs live market data;
# the dead man's switch an exchange mode), ``spec.promotion`` (needs mode paper,
# credentials for the testnet stage, the confirmation phrase for the live stage),
# every RiskPolicy safety block, and ``spec.expiresAt`` (exclusive with
# ``spec.ttlSeconds``). A field is mutated from the first base that sets it.
_TS: dict = {
    "strategy": "impulse", "symbols": ["BTCUSDT", "ETHUSDT"], "category": "linear", "mode": "paper",
    "liveConfirmation": "not-live", "credentialsSecretRef": {"name": "bybit", "apiKeyKey": "apiKey",
                                                             "apiSecretKey": "apiSecret"},
    "capital": 10000, "maxLeverage": 2, "riskPolicyRef": {"name": "fz-policy"},
    "params": {"emaFastPeriod": 20, "emaSlowPeriod": 100, "volatilityWindow": 60, "impulseLookback": 5,
               "impulseThreshold": 3.0, "atrPeriod": 14, "stopLossAtr": 8.0, "takeProfitAtr": 16.0,
               "cooldownBars": 30, "riskPerTradeFraction": 0.005, "maxVolatilityPercentile": 90,
               "volatilityPercentileWindow": 1440, "minVolumeRatio": 0.5, "volumeWindow": 60,
               "minTrendStrengthBps": 5, "maxSpreadBps": 10, "confirmationBars": 1, "minEdgeBps": 2},
    "scanner": {"universe": ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "topN": 2, "lookbackBars": 1440, "rerankBars": 60,
                "liquidityWeight": 0.5, "volatilityWeight": 0.5},
    "paused": True,
    "marketData": {"source": "replay", "replay": {"interval": "1", "speed": 600,
                                                  "start": "2024-01-01T00:00:00Z", "loop": False}},
    "execution": {"slippageBps": 2},
}


def _variant(over: dict) -> dict:
    out = copy.deepcopy(_TS)
    _merge(out, over)
    return out


def _merge(dst: dict, over: dict) -> None:
    """Deep-merge ``over`` into ``dst``: dicts merge, ``None`` deletes the key, any
    other value (lists included) replaces."""
    for k, v in over.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


_PROMOTION = {
    "stages": ["paper", "testnet", "live"], "capitalSteps": [0.1, 0.25, 1.0],
    "soakSeconds": {"paper": 3600, "testnet": 7200, "live": 86400},
    "analysis": {"queries": [{"name": "error-rate", "query": "sum(rate(hean_order_errors_total[5m]))",
                              "successCondition": "result < 0.1", "failureCondition": "result >= 0.5"}],
                 "intervalSeconds": 60, "count": 3, "failureLimit": 1, "inconclusiveLimit": 1,
                 "initialDelaySeconds": 30},
    "approval": {"requiredAboveFraction": 0.25},
    "gates": {"minClosedTrades": 20, "halfLifeTrades": 20, "minWeightedPnlUsdt": 0, "holdoutFraction": 0.3,
              "maxHoldoutDropUsdt": 50, "minRegimes": 2, "minTradesPerRegime": 3, "regimeWindowBars": 60},
    "shadow": {"toleranceUsdt": 1},
    "onFailure": "Demote",
}

BASES: dict[str, list[tuple[str, dict]]] = {
    "TradingStrategy": [
        ("impulse", _TS),
        ("momentum", _variant({"strategy": "momentum", "params": {"momentum": {
            "lookbackBars": 60, "trendEmaPeriod": 240, "entryThresholdBps": 80.0, "exitThresholdBps": 0.0,
            "atrPeriod": 14, "stopLossAtr": 8.0, "takeProfitAtr": 24.0, "cooldownBars": 60,
            "riskPerTradeFraction": 0.005, "allowShort": True}}})),
        ("grid", _variant({"strategy": "grid", "params": {"grid": {
            "levels": 10, "lowerPrice": 90000, "upperPrice": 110000, "rangePercent": 3.0,
            "levelNotionalUsdt": 100.0, "recenterOnBreakout": True, "breakoutBars": 3}}})),
        ("scalping", _variant({"strategy": "scalping", "params": {"scalping": {
            "maxSpreadBps": 2.0, "imbalanceThreshold": 0.6, "depthLevels": 5, "takeProfitTicks": 3,
            "stopLossTicks": 3, "maxHoldSeconds": 30.0, "orderNotionalUsdt": 200.0, "maxOrdersPerMinute": 20,
            "minOrderIntervalMs": 500}}})),
        ("funding_harvest", _variant({"strategy": "funding_harvest", "params": {"fundingHarvest": {
            "minFundingRateBps": 1.0, "exitFundingRateBps": 0.2, "historyLength": 3,
            "entryBeforeFundingMinutes": 480.0, "positionNotionalUsdt": 1000.0, "hedged": False,
            "fundingIntervalHours": 8.0}}})),
        ("basis_arbitrage", _variant({"strategy": "basis_arbitrage", "params": {"basisArbitrage": {
            "entryBasisBps": 15.0, "exitBasisBps": 3.0, "legNotionalUsdt": 1000.0, "maxLegImbalanceFraction": 0.02,
            "allowReverse": False}}})),
        ("bybit", _variant({"mode": "testnet", "marketData": {"source": "live", "replay": None},
                            "bybit": {"orderbookDepth": 50, "staleSeconds": 10, "reconcileSeconds": 30,
                                      "deadManSwitchSeconds": 10, "recvWindowMs": 5000}})),
        ("promotion", _variant({"liveConfirmation": "I_UNDERSTAND_LIVE_TRADING", "promotion": _PROMOTION})),
    ],
    "RiskPolicy": [
        ("default", {
            "softMaxDrawdownPercent": 5, "hardMaxDrawdownPercent": 10, "maxDailyLossUsdt": 500, "maxLeverage": 3,
            "maxPositionNotionalUsdt": 20000, "maxOpenPositions": 5, "maxOrdersPerMinute": 60,
            "softBrakeSizeFactor": 0.5,
        }),
        ("safety", {
            "softMaxDrawdownPercent": 5, "hardMaxDrawdownPercent": 10, "maxDailyLossUsdt": 500, "maxLeverage": 3,
            "maxPositionNotionalUsdt": 20000, "maxOpenPositions": 5, "maxOrdersPerMinute": 60,
            "softBrakeSizeFactor": 0.5, "maxOrderNotionalUsdt": 5000, "maxRiskPerTradeFraction": 0.01,
            "autoQuarantine": {"consecutiveRejects": 5, "maxSpreadBps": 50, "ttlSeconds": 900},
            "profitCapture": {"enabled": True, "targetPercent": 5, "trailFraction": 0.3, "mode": "partial",
                              "partialFraction": 0.5, "afterCapture": "continue"},
            "flashCrash": {"enabled": True, "dropPercent": 3, "windowSeconds": 10, "source": "both",
                           "escalateTo": "HARD_STOP", "holdSeconds": 300},
            "volatilityRegimes": {"enabled": True, "historyBars": 1440, "highPercentile": 75,
                                  "extremePercentile": 95, "highMultiplier": 1.5, "extremeMultiplier": 2.5},
            "orderRouter": {"mode": "limitFirst", "limitOffsetBps": 1, "timeoutSeconds": 120, "maxChaseBps": 20,
                            "postOnly": True},
        }),
    ],
    "SymbolQuarantine": [
        ("ttl", {
            "symbol": "SOLUSDT", "reason": "fuzz", "ttlSeconds": 600,
            "strategySelector": {"matchLabels": {"hean.io/desk": "fuzz"},
                                 "matchExpressions": [{"key": "hean.io/tier", "operator": "In", "values": ["a"]}]},
        }),
        ("expiresAt", {"symbol": "SOLUSDT", "reason": "fuzz", "expiresAt": "2030-01-01T00:00:00Z"}),
    ],
}
# The first base of each kind (the one the CEL cases default to).
BASE: dict[str, dict] = {kind: bases[0][1] for kind, bases in BASES.items()}

# Cross-field contradictions that only CEL rules can see: (kind, base label, label,
# spec overrides deep-merged into that base (None deletes the key, lists replace),
# field paths the answer must name). CEL sees the object after defaulting, hence the
# cases relying on a default.
_LIVE = "I_UNDERSTAND_LIVE_TRADING"
CEL_CASES: list[tuple[str, str, str, dict, list[str]]] = [
    ("RiskPolicy", "default", "soft-equals-hard", {"softMaxDrawdownPercent": 10, "hardMaxDrawdownPercent": 10},
     ["spec.softMaxDrawdownPercent"]),
    ("RiskPolicy", "default", "soft-above-hard", {"softMaxDrawdownPercent": 30, "hardMaxDrawdownPercent": 20},
     ["spec.softMaxDrawdownPercent"]),
    ("RiskPolicy", "default", "soft-above-default-hard", {"softMaxDrawdownPercent": 12, "hardMaxDrawdownPercent": None},
     ["spec.softMaxDrawdownPercent"]),
    ("RiskPolicy", "default", "hard-below-default-soft", {"softMaxDrawdownPercent": None, "hardMaxDrawdownPercent": 4},
     ["spec.softMaxDrawdownPercent"]),
    ("RiskPolicy", "default", "soft-max-hard-min", {"softMaxDrawdownPercent": 100, "hardMaxDrawdownPercent": 0.1},
     ["spec.softMaxDrawdownPercent"]),
    ("RiskPolicy", "safety", "vol-high-equals-extreme",
     {"volatilityRegimes": {"highPercentile": 90, "extremePercentile": 90}},
     ["spec.volatilityRegimes.highPercentile"]),
    ("RiskPolicy", "safety", "vol-high-above-extreme",
     {"volatilityRegimes": {"highPercentile": 99, "extremePercentile": 50}},
     ["spec.volatilityRegimes.highPercentile"]),
    ("RiskPolicy", "safety", "vol-high-above-default-extreme",
     {"volatilityRegimes": {"highPercentile": 96, "extremePercentile": None}},
     ["spec.volatilityRegimes.highPercentile"]),
    ("RiskPolicy", "safety", "vol-extreme-below-default-high",
     {"volatilityRegimes": {"highPercentile": None, "extremePercentile": 60}},
     ["spec.volatilityRegimes.highPercentile"]),
    ("TradingStrategy", "impulse", "ema-fast-equals-slow", {"params": {"emaFastPeriod": 50, "emaSlowPeriod": 50}},
     ["spec.params.emaFastPeriod"]),
    ("TradingStrategy", "impulse", "ema-fast-above-slow", {"params": {"emaFastPeriod": 400, "emaSlowPeriod": 300}},
     ["spec.params.emaFastPeriod"]),
    ("TradingStrategy", "impulse", "ema-fast-above-default-slow", {"params": {"emaFastPeriod": 150, "emaSlowPeriod": None}},
     ["spec.params.emaFastPeriod"]),
    ("TradingStrategy", "impulse", "ema-slow-below-default-fast", {"params": {"emaSlowPeriod": 10, "emaFastPeriod": None}},
     ["spec.params.emaFastPeriod"]),
    ("TradingStrategy", "impulse", "live-without-phrase", {"mode": "live", "liveConfirmation": None,
                                                           "marketData": {"source": "live"}}, ["spec.liveConfirmation"]),
    ("TradingStrategy", "impulse", "live-wrong-phrase", {"mode": "live", "liveConfirmation": _LIVE.lower(),
                                                         "marketData": {"source": "live"}}, ["spec.liveConfirmation"]),
    ("TradingStrategy", "impulse", "live-without-credentials", {"mode": "live", "liveConfirmation": _LIVE,
                                                                "credentialsSecretRef": None,
                                                                "marketData": {"source": "live"}},
     ["spec.credentialsSecretRef"]),
    ("TradingStrategy", "impulse", "testnet-without-credentials", {"mode": "testnet", "credentialsSecretRef": None,
                                                                   "marketData": {"source": "live"}},
     ["spec.credentialsSecretRef"]),
    ("TradingStrategy", "impulse", "demo-without-credentials", {"mode": "demo", "credentialsSecretRef": None,
                                                                "marketData": {"source": "live"}},
     ["spec.credentialsSecretRef"]),
    ("TradingStrategy", "impulse", "testnet-on-replayed-data", {"mode": "testnet"}, ["spec.marketData.source"]),
    ("TradingStrategy", "impulse", "demo-on-default-replay", {"mode": "demo", "marketData": None},
     ["spec.marketData.source"]),
    ("TradingStrategy", "impulse", "live-on-replayed-data", {"mode": "live", "liveConfirmation": _LIVE},
     ["spec.marketData.source"]),
    # A strategy's params block only with that strategy.
    ("TradingStrategy", "impulse", "momentum-params-on-impulse", {"params": {"momentum": {"lookbackBars": 60}}},
     ["spec.params.momentum"]),
    ("TradingStrategy", "momentum", "grid-params-on-momentum", {"params": {"grid": {"levels": 10}}},
     ["spec.params.grid"]),
    ("TradingStrategy", "grid", "scalping-params-on-grid", {"params": {"scalping": {}}}, ["spec.params.scalping"]),
    ("TradingStrategy", "scalping", "funding-params-on-scalping", {"params": {"fundingHarvest": {"hedged": True}}},
     ["spec.params.fundingHarvest"]),
    ("TradingStrategy", "funding_harvest", "basis-params-on-funding",
     {"params": {"basisArbitrage": {"allowReverse": True}}}, ["spec.params.basisArbitrage"]),
    ("TradingStrategy", "basis_arbitrage", "own-params-other-strategy", {"strategy": "impulse"},
     ["spec.params.basisArbitrage"]),
    ("TradingStrategy", "grid", "all-params-blocks-on-impulse",
     {"strategy": "impulse", "params": {"momentum": {}, "scalping": {}, "fundingHarvest": {}, "basisArbitrage": {}}},
     ["spec.params.momentum", "spec.params.grid", "spec.params.scalping", "spec.params.fundingHarvest",
      "spec.params.basisArbitrage"]),
    # The scanner picks at most as many symbols as its universe has.
    ("TradingStrategy", "impulse", "scanner-topn-above-universe",
     {"scanner": {"universe": ["BTCUSDT", "ETHUSDT"], "topN": 3}}, ["spec.scanner.topN"]),
    ("TradingStrategy", "impulse", "scanner-default-topn-above-universe",
     {"scanner": {"universe": ["BTCUSDT"], "topN": None}}, ["spec.scanner.topN"]),
    # spec.bybit: live market data; the dead man's switch only in exchange modes.
    ("TradingStrategy", "bybit", "bybit-on-replayed-data", {"marketData": {"source": "replay"}}, ["spec.bybit"]),
    ("TradingStrategy", "bybit", "bybit-on-default-market-data", {"mode": "paper", "marketData": None,
                                                                  "bybit": {"deadManSwitchSeconds": 0}},
     ["spec.bybit"]),
    ("TradingStrategy", "bybit", "dead-man-switch-in-paper", {"mode": "paper"}, ["spec.bybit.deadManSwitchSeconds"]),
    ("TradingStrategy", "bybit", "dead-man-switch-default-paper", {"mode": None}, ["spec.bybit.deadManSwitchSeconds"]),
    ("TradingStrategy", "bybit", "dead-man-switch-below-3s", {"bybit": {"deadManSwitchSeconds": 2}},
     ["spec.bybit.deadManSwitchSeconds"]),
    # spec.promotion: paper mode; no skipped stage; credentials, phrase, capital steps
    # and analysis for the stages that need them.
    ("TradingStrategy", "promotion", "promotion-in-testnet-mode", {"mode": "testnet", "marketData": {"source": "live"}},
     ["spec.mode"]),
    ("TradingStrategy", "promotion", "promotion-in-live-mode", {"mode": "live", "marketData": {"source": "live"}},
     ["spec.mode"]),
    ("TradingStrategy", "promotion", "promotion-testnet-without-credentials",
     {"credentialsSecretRef": None, "promotion": {"stages": ["paper", "testnet"]}}, ["spec.credentialsSecretRef"]),
    ("TradingStrategy", "promotion", "promotion-live-without-phrase", {"liveConfirmation": None},
     ["spec.liveConfirmation"]),
    ("TradingStrategy", "promotion", "promotion-live-wrong-phrase", {"liveConfirmation": "yes"},
     ["spec.liveConfirmation"]),
    ("TradingStrategy", "promotion", "promotion-skips-testnet", {"promotion": {"stages": ["paper", "live"]}},
     ["spec.promotion.stages"]),
    ("TradingStrategy", "promotion", "promotion-skips-paper", {"promotion": {"stages": ["testnet", "live"]}},
     ["spec.promotion.stages"]),
    ("TradingStrategy", "promotion", "promotion-live-only", {"promotion": {"stages": ["live"]}},
     ["spec.promotion.stages"]),
    ("TradingStrategy", "promotion", "promotion-stages-reversed",
     {"promotion": {"stages": ["live", "testnet", "paper"]}}, ["spec.promotion.stages"]),
    ("TradingStrategy", "promotion", "promotion-stage-repeated", {"promotion": {"stages": ["paper", "paper"]}},
     ["spec.promotion.stages"]),
    ("TradingStrategy", "promotion", "promotion-live-without-capital-steps", {"promotion": {"capitalSteps": None}},
     ["spec.promotion.capitalSteps"]),
    ("TradingStrategy", "promotion", "promotion-live-without-analysis", {"promotion": {"analysis": None}},
     ["spec.promotion.analysis"]),
    ("TradingStrategy", "promotion", "capital-steps-decreasing", {"promotion": {"capitalSteps": [0.5, 0.25, 1.0]}},
     ["spec.promotion.capitalSteps"]),
    ("TradingStrategy", "promotion", "capital-steps-repeated", {"promotion": {"capitalSteps": [0.5, 0.5, 1.0]}},
     ["spec.promotion.capitalSteps"]),
    ("TradingStrategy", "promotion", "capital-steps-not-ending-at-1", {"promotion": {"capitalSteps": [0.1, 0.5]}},
     ["spec.promotion.capitalSteps"]),
    ("TradingStrategy", "promotion", "analysis-failure-limit-equals-count",
     {"promotion": {"analysis": {"failureLimit": 3, "count": 3}}}, ["spec.promotion.analysis.failureLimit"]),
    ("TradingStrategy", "promotion", "analysis-failure-limit-above-default-count",
     {"promotion": {"analysis": {"failureLimit": 5, "count": None}}}, ["spec.promotion.analysis.failureLimit"]),
    ("SymbolQuarantine", "ttl", "both-expiries", {"expiresAt": "2030-01-01T00:00:00Z"},
     ["spec.expiresAt", "spec.ttlSeconds"]),
    ("SymbolQuarantine", "ttl", "no-expiry", {"ttlSeconds": None}, ["spec.expiresAt", "spec.ttlSeconds"]),
    ("SymbolQuarantine", "ttl", "in-without-values",
     {"strategySelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}},
     ["spec.strategySelector.matchExpressions[0].values"]),
    ("SymbolQuarantine", "ttl", "notin-empty-values",
     {"strategySelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": []}]}},
     ["spec.strategySelector.matchExpressions[0].values"]),
    ("SymbolQuarantine", "ttl", "exists-with-values",
     {"strategySelector": {"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["a"]}]}},
     ["spec.strategySelector.matchExpressions[0].values"]),
    ("SymbolQuarantine", "ttl", "doesnotexist-with-values",
     {"strategySelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist", "values": ["a"]}]}},
     ["spec.strategySelector.matchExpressions[0].values"]),
]

# Strings that break the patterns used in the CRDs (Bybit symbols, DNS names, label
# keys and values, Secret keys, condition-like identifiers).
PATTERN_BREAKERS = ["btcusdt", "BTC-USDT", "BTCUSD", "BTC USDT", "Bad_Name!", "-leading", "trailing-", "a..b",
                    "ünïcödé", "x" * 30 + "/" + "y", "semi;colon", "new\nline", "", "." * 3]


@dataclass
class Case:
    """One invalid manifest: ``obj`` to create, the ``category`` of mutation
    (``type``, ``range``, ``enum``, ``pattern``, ``length``, ``huge-string``,
    ``items``, ``huge-list``, ``duplicate``, ``required``, ``unknown-field``,
    ``format``, ``map``, ``cel``, ``combo``), and ``fields``: every field path
    (``spec.params.emaFastPeriod``, ``spec.symbols[0]``) the API server's error
    must name."""

    kind: str
    name: str
    category: str
    label: str
    obj: dict
    fields: list[str] = field(default_factory=list)

    @property
    def plural(self) -> str:
        return KINDS[self.kind][0]


def load_spec_schemas(crd_dir: Path) -> dict[str, dict]:
    """``kind -> openAPIV3Schema.properties.spec`` of the CRDs in ``crd_dir``."""
    out = {}
    for p in sorted(Path(crd_dir).glob("*.yaml")):
        crd = yaml.safe_load(p.read_text())
        kind = crd["spec"]["names"]["kind"]
        out[kind] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return out


def cel_messages(crd_dir: Path) -> list[str]:
    """The messages of every ``x-kubernetes-validations`` rule (whitespace
    normalised), to tell CEL rejections from OpenAPI-schema ones."""
    msgs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations") or []:
                msgs.append(" ".join(rule["message"].split()))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for p in sorted(Path(crd_dir).glob("*.yaml")):
        walk(yaml.safe_load(p.read_text()))
    return msgs


def _fmt(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _get(obj: Any, path: tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def _set(obj: Any, path: tuple, value: Any) -> None:
    parent = _get(obj, path[:-1])
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


_DELETE = object()


def _nodes(schema: dict, value: Any, path: tuple) -> Iterator[tuple[tuple, dict, Any]]:
    """Every (path, schema, base value) below and including ``path``."""
    yield path, schema, value
    t = schema.get("type")
    if t == "object" and isinstance(value, dict):
        for k, sub in (schema.get("properties") or {}).items():
            if k in value:
                yield from _nodes(sub, value[k], path + (k,))
    elif t == "array" and isinstance(value, list) and value:
        yield from _nodes(schema.get("items") or {}, value[0], path + (0,))


def _wrong_types(t: str | None) -> list[Any]:
    return {
        "string": [12345, True, {"a": 1}, ["x"]],
        "number": ["12", False, {"n": 1}, [1]],
        "integer": ["7", 7.5, True, [7]],
        "boolean": ["true", 1, {"b": True}],
        "object": ["object", 3, ["a", "b"], True],
        "array": ["BTCUSDT", 5, {"0": "BTCUSDT"}],
    }.get(t or "", [])


def _unique_items(items: dict, n: int, sample: Any = None) -> list[Any]:
    """``n`` values that are each valid for the item schema, distinct where the
    schema allows (enum items repeat; ``sample`` is the base's first item, varied in
    its key fields for object items)."""
    if items.get("pattern", "").startswith("^[A-Z0-9]{2,20}(USDT|USDC)$"):
        return [f"Z{i:05d}USDT" for i in range(n)]
    if items.get("enum"):
        return [items["enum"][i % len(items["enum"])] for i in range(n)]
    if items.get("type") in ("number", "integer"):  # strictly increasing, within (0, maximum]
        hi = items.get("maximum", n)
        return [hi * (i + 1) / n if items["type"] == "number" else i + 1 for i in range(n)]
    if items.get("type") == "object":
        if isinstance(sample, dict) and "name" in sample:  # list-map keyed by name
            return [{**sample, "name": f"k{i}"} for i in range(n)]
        return [{"key": f"k{i}", "operator": "Exists"} for i in range(n)]  # label selector requirements
    return [f"v{i}" for i in range(n)]


def single_mutations(kind: str, schema: dict, rng: random.Random, base: dict | None = None,
                     seen: set[str] | None = None) -> Iterator[tuple[str, str, tuple, Any, list[str]]]:
    """(category, label, path, new value or _DELETE, fields to name) for one base
    spec of ``kind`` (default: its first base). Fields whose path is in ``seen`` are
    skipped (already mutated from an earlier base); the others are added to it."""
    base = BASE[kind] if base is None else base
    for path, s, value in _nodes(schema, base, ("spec",)):
        where = _fmt(path)
        if seen is not None:
            if where in seen:
                continue
            seen.add(where)
        t = s.get("type")
        if path != ("spec",):
            bads = _wrong_types(t)[:2] + rng.sample(_wrong_types(t)[2:], min(1, len(_wrong_types(t)[2:])))
            if s.get("format") == "date-time" and not any(isinstance(b, list) for b in bads):
                bads.append(["x"])  # always: the array the CRDs' CEL rule exists for
            for bad in bads:
                # The API server's schema check lets an array through for a
                # date-time string; the CRDs' CEL rule on the field catches it.
                mark = CEL_CHECKED if s.get("format") == "date-time" and isinstance(bad, list) else ""
                yield "type", f"{where}={type(bad).__name__}{mark}", path, bad, [where]
        if t in ("number", "integer"):
            lo, hi = s.get("minimum"), s.get("maximum")
            if lo is not None:
                yield "range", f"{where}<min", path, lo if s.get("exclusiveMinimum") else (lo - 1 if t == "integer" else lo - abs(lo) * 0.5 - 0.001), [where]
                if lo > -10**9 or (lo == -10**9 and s.get("exclusiveMinimum")):  # -1e9 is allowed otherwise
                    yield "range", f"{where}=-1e9", path, -10**9, [where]
                else:
                    yield "range", f"{where}=-1e12", path, -10**12, [where]
            if hi is not None:
                yield "range", f"{where}>max", path, hi + 1 if t == "integer" else hi * 1.5 + 0.001, [where]
            yield "range", f"{where}=1e300", path, 10**300 if t == "integer" else 1e300, [where]
            if t == "integer":
                yield "type", f"{where}=fraction", path, (lo or 0) + 2.5, [where]
        if t in ("integer", "number") and s.get("enum"):
            for bad in [v for v in (2, 7, 100, 0) if v not in s["enum"]][:2]:
                yield "enum", f"{where}={bad!r}", path, bad, [where]
        if t == "string":
            if s.get("enum"):
                for bad in (s["enum"][0].upper() + "x", "", " " + s["enum"][0]):
                    yield "enum", f"{where}={bad!r}", path, bad, [where]
            if s.get("pattern"):
                for bad in rng.sample(PATTERN_BREAKERS, 3):
                    if not re.search(s["pattern"], bad):
                        yield "pattern", f"{where}={bad!r}", path, bad, [where]
            if s.get("format") == "date-time":
                for bad in ("tomorrow", "2024-13-45T00:00:00Z", "1700000000"):
                    yield "format", f"{where}={bad}", path, bad, [where]
            if s.get("maxLength"):
                yield "length", f"{where}>maxLength", path, "A" * (s["maxLength"] + 1), [where]
            yield "huge-string", f"{where}=100k", path, "A" * HUGE_STRING, [where]
            if s.get("minLength"):
                yield "length", f"{where}<minLength", path, "", [where]
        if t == "array":
            items = s.get("items") or {}
            if s.get("maxItems"):
                yield "items", f"{where}>maxItems", path, _unique_items(items, s["maxItems"] + 1, (value or [None])[0]), [where]
            yield "huge-list", f"{where}=5000", path, _unique_items(items, HUGE_LIST, (value or [None])[0]), [where]
            if s.get("minItems"):
                yield "items", f"{where}<minItems", path, [], [where]
            if s.get("x-kubernetes-list-type") == "set" and value:
                yield "duplicate", f"{where}:dup", path, [value[0], value[0]], [f"{where}[1]"]
            if s.get("x-kubernetes-list-type") == "map" and value:  # two items with the same key
                yield "duplicate", f"{where}:dup-key", path, [value[0], copy.deepcopy(value[0])], [f"{where}[1]"]
        if t == "object":
            props = s.get("properties")
            if props is not None or s.get("additionalProperties") is None:
                bad = dict(value or {})
                bad[UNKNOWN] = 1
                yield "unknown-field", f"{where}.{UNKNOWN}", path, bad, [f"{where}.{UNKNOWN}"]
            for req in s.get("required") or []:
                bad = copy.deepcopy(value)
                bad.pop(req, None)
                yield "required", f"{where}-{req}", path, bad, [f"{where}.{req}"]
            addl = s.get("additionalProperties")
            if isinstance(addl, dict):  # a string map (matchLabels): bad keys and values
                if s.get("maxProperties"):
                    yield "map", f"{where}>maxProperties", path, {f"k{i}": "v" for i in range(s["maxProperties"] + 1)}, [where]
                for key in ("bad key!", "-x", "a/b/c", "x" * 64, "Ü"):  # keys: a CEL rule
                    yield "map", f"{where} key {key!r}{CEL_CHECKED}", path, {key: "v"}, [where]
                for v in ("bad value!", "x" * 64, "-lead", 5):
                    yield "map", f"{where} value {v!r}", path, {"k": v}, [where]


def generate(crd_dir: Path, seed: int = 7, combos: int = 150) -> list[Case]:
    """Every single mutation of every field (each from the first base of its kind
    that sets it), the CEL contradictions, the missing ``spec``, and ``combos``
    seeded combinations of 2-3 schema mutations applied to one base."""
    schemas = load_spec_schemas(crd_dir)
    rng = random.Random(seed)
    cases: list[Case] = []
    singles: dict[str, list] = {}

    def add(kind: str, category: str, label: str, spec: dict | None, fields_: list[str], name: str | None = None) -> None:
        n = sum(1 for c in cases if c.kind == kind)
        obj = {"apiVersion": "hean.io/v1alpha1", "kind": kind,
               "metadata": {"name": name or f"{KINDS[kind][1]}-{n:05d}", "labels": {"hean.io/fuzz": "true"}}}
        if spec is not None:
            obj["spec"] = spec
        cases.append(Case(kind, obj["metadata"]["name"], category, label, obj, fields_))

    for kind in KINDS:
        singles[kind] = []
        seen: set[str] = set()
        for i, (base_label, base) in enumerate(BASES[kind]):
            prefix = f"[{base_label}] " if i else ""
            for category, label, path, value, fields_ in single_mutations(kind, schemas[kind], rng, base, seen):
                singles[kind].append((category, prefix + label, path, value, fields_))
                spec = {"spec": copy.deepcopy(base)}
                _set(spec, path, value)
                add(kind, category, prefix + label, spec["spec"], fields_)
        add(kind, "required", "spec", None, ["spec"])
    bases = {(kind, label): spec for kind, bs in BASES.items() for label, spec in bs}
    for kind, base_label, label, over, fields_ in CEL_CASES:
        spec = copy.deepcopy(bases[kind, base_label])
        _merge(spec, over)
        add(kind, "cel", label, spec, fields_)
    add("TradingStrategy", "cel", "name-over-56", copy.deepcopy(BASE["TradingStrategy"]), ["metadata.name"],
        name="fz-" + "n" * 54)

    # Combinations of schema mutations on unrelated fields (no path is a prefix of
    # another) of one base (any mutation whose field that base sets): the answer
    # must name every one of them.
    # A dict where a scalar belongs is reported by strict decoding as an unknown
    # field before any other check, so it is left out of combinations.
    combinable = {k: [m for m in v if m[0] not in ("unknown-field", "required") and m[2] != ("spec",)
                      and not (m[0] == "type" and isinstance(m[3], dict)) and CEL_CHECKED not in m[1]]
                  for k, v in singles.items()}
    kinds = list(KINDS)
    made = 0
    while made < combos:
        kind = kinds[made % len(kinds)]
        base_label, base = rng.choice(BASES[kind])
        usable = [m for m in combinable[kind] if _has({"spec": base}, m[2])]
        picks: list = []
        want = rng.choice((2, 3))
        for m in rng.sample(usable, min(len(usable), 12)):
            if all(not _prefix(m[2], p[2]) and not _prefix(p[2], m[2]) for p in picks):
                picks.append(m)
            if len(picks) == want:
                break
        if len(picks) < 2:
            continue
        spec = {"spec": copy.deepcopy(base)}
        for m in picks:
            _set(spec, m[2], copy.deepcopy(m[3]))
        add(kind, "combo", f"[{base_label}] " + " + ".join(m[1] for m in picks), spec["spec"],
            [f for m in picks for f in m[4]])
        made += 1
    return cases


def _has(obj: Any, path: tuple) -> bool:
    """Whether ``path`` exists in ``obj``."""
    for p in path:
        if isinstance(p, int):
            if not isinstance(obj, list) or len(obj) <= p:
                return False
        elif not isinstance(obj, dict) or p not in obj:
            return False
        obj = obj[p]
    return True


def _prefix(a: tuple, b: tuple) -> bool:
    return b[: len(a)] == a


if __name__ == "__main__":  # pragma: no cover - convenience
    import argparse
    from collections import Counter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crds", default="crds")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--combos", type=int, default=150)
    ap.add_argument("--count", action="store_true", help="print the number of cases by kind and category")
    a = ap.parse_args()
    cs = generate(Path(a.crds), a.seed, a.combos)
    print(len(cs), dict(Counter(c.kind for c in cs)), dict(Counter(c.category for c in cs)))
