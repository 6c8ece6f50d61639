"""Invalid-manifest generator for hean's three CRDs (issue 7, "Bad input").

Derived from the CRD schemas in ``crds/``: the generator walks each kind's
``spec`` schema from a valid base object and, for every field, derives the
mutations its schema forbids (wrong JSON type, out-of-range numbers, enum and
pattern violations, strings over ``maxLength`` and 100 000 characters long, lists
over ``maxItems`` and 5 000 items long, duplicates in set lists, unknown fields,
missing required fields), plus the cross-field contradictions the CEL rules forbid
(soft drawdown at or above the hard one, fast EMA not below the slow one, live
without the confirmation phrase, exchange modes without credentials or live market
data, both or neither quarantine expiry, ...), plus seeded random combinations of
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

# Valid base specs that set every field explicitly (the generator mutates one field
# at a time, so each must be accepted as is: the test checks that with a dry run).
BASE: dict[str, dict] = {
    "TradingStrategy": {
        "strategy": "impulse", "symbols": ["BTCUSDT", "ETHUSDT"], "category": "linear", "mode": "paper",
        "liveConfirmation": "not-live", "credentialsSecretRef": {"name": "bybit", "apiKeyKey": "apiKey",
                                                                 "apiSecretKey": "apiSecret"},
        "capital": 10000, "maxLeverage": 2, "riskPolicyRef": {"name": "fz-policy"},
        "params": {"emaFastPeriod": 20, "emaSlowPeriod": 100, "volatilityWindow": 60, "impulseLookback": 5,
                   "impulseThreshold": 3.0, "atrPeriod": 14, "stopLossAtr": 8.0, "takeProfitAtr": 16.0,
                   "cooldownBars": 30, "riskPerTradeFraction": 0.005},
        "paused": True,
        "marketData": {"source": "replay", "replay": {"interval": "1", "speed": 600,
                                                      "start": "2024-01-01T00:00:00Z", "loop": False}},
        "execution": {"slippageBps": 2},
    },
    "RiskPolicy": {
        "softMaxDrawdownPercent": 5, "hardMaxDrawdownPercent": 10, "maxDailyLossUsdt": 500, "maxLeverage": 3,
        "maxPositionNotionalUsdt": 20000, "maxOpenPositions": 5, "maxOrdersPerMinute": 60,
        "softBrakeSizeFactor": 0.5,
    },
    "SymbolQuarantine": {
        "symbol": "SOLUSDT", "reason": "fuzz", "ttlSeconds": 600,
        "strategySelector": {"matchLabels": {"hean.io/desk": "fuzz"},
                             "matchExpressions": [{"key": "hean.io/tier", "operator": "In", "values": ["a"]}]},
    },
}

# Cross-field contradictions that only CEL rules can see: (kind, label, spec overrides
# applied to the base (None deletes the key), field paths the answer must name).
# CEL sees the object after defaulting, hence the cases relying on a default.
CEL_CASES: list[tuple[str, str, dict, list[str]]] = [
    ("RiskPolicy", "soft-equals-hard", {"softMaxDrawdownPercent": 10, "hardMaxDrawdownPercent": 10},
     ["spec.softMaxDrawdownPercent"]),
    ("RiskPolicy", "soft-above-hard", {"softMaxDrawdownPercent": 30, "hardMaxDrawdownPercent": 20},
     ["spec.softMaxDrawdownPercent"]),
    ("RiskPolicy", "soft-above-default-hard", {"softMaxDrawdownPercent": 12, "hardMaxDrawdownPercent": None},
     ["spec.softMaxDrawdownPercent"]),
    ("RiskPolicy", "hard-below-default-soft", {"softMaxDrawdownPercent": None, "hardMaxDrawdownPercent": 4},
     ["spec.softMaxDrawdownPercent"]),
    ("RiskPolicy", "soft-max-hard-min", {"softMaxDrawdownPercent": 100, "hardMaxDrawdownPercent": 0.1},
     ["spec.softMaxDrawdownPercent"]),
    ("TradingStrategy", "ema-fast-equals-slow", {"params": {"emaFastPeriod": 50, "emaSlowPeriod": 50}},
     ["spec.params.emaFastPeriod"]),
    ("TradingStrategy", "ema-fast-above-slow", {"params": {"emaFastPeriod": 400, "emaSlowPeriod": 300}},
     ["spec.params.emaFastPeriod"]),
    ("TradingStrategy", "ema-fast-above-default-slow", {"params": {"emaFastPeriod": 150}},
     ["spec.params.emaFastPeriod"]),
    ("TradingStrategy", "ema-slow-below-default-fast", {"params": {"emaSlowPeriod": 10}},
     ["spec.params.emaFastPeriod"]),
    ("TradingStrategy", "live-without-phrase", {"mode": "live", "liveConfirmation": None,
                                                "marketData": {"source": "live"}}, ["spec.liveConfirmation"]),
    ("TradingStrategy", "live-wrong-phrase", {"mode": "live", "liveConfirmation": "i_understand_live_trading",
                                              "marketData": {"source": "live"}}, ["spec.liveConfirmation"]),
    ("TradingStrategy", "live-without-credentials", {"mode": "live", "liveConfirmation": "I_UNDERSTAND_LIVE_TRADING",
                                                     "credentialsSecretRef": None, "marketData": {"source": "live"}},
     ["spec.credentialsSecretRef"]),
    ("TradingStrategy", "testnet-without-credentials", {"mode": "testnet", "credentialsSecretRef": None,
                                                        "marketData": {"source": "live"}},
     ["spec.credentialsSecretRef"]),
    ("TradingStrategy", "demo-without-credentials", {"mode": "demo", "credentialsSecretRef": None,
                                                     "marketData": {"source": "live"}},
     ["spec.credentialsSecretRef"]),
    ("TradingStrategy", "testnet-on-replayed-data", {"mode": "testnet"}, ["spec.marketData.source"]),
    ("TradingStrategy", "demo-on-default-replay", {"mode": "demo", "marketData": None}, ["spec.marketData.source"]),
    ("TradingStrategy", "live-on-replayed-data", {"mode": "live", "liveConfirmation": "I_UNDERSTAND_LIVE_TRADING"},
     ["spec.marketData.source"]),
    ("SymbolQuarantine", "both-expiries", {"expiresAt": "2030-01-01T00:00:00Z"}, ["spec.expiresAt", "spec.ttlSeconds"]),
    ("SymbolQuarantine", "no-expiry", {"ttlSeconds": None}, ["spec.expiresAt", "spec.ttlSeconds"]),
    ("SymbolQuarantine", "in-without-values",
     {"strategySelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}},
     ["spec.strategySelector.matchExpressions[0].values"]),
    ("SymbolQuarantine", "notin-empty-values",
     {"strategySelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": []}]}},
     ["spec.strategySelector.matchExpressions[0].values"]),
    ("SymbolQuarantine", "exists-with-values",
     {"strategySelector": {"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["a"]}]}},
     ["spec.strategySelector.matchExpressions[0].values"]),
    ("SymbolQuarantine", "doesnotexist-with-values",
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


def _unique_items(items: dict, n: int) -> list[Any]:
    """``n`` distinct values that are each valid for the item schema."""
    if items.get("pattern", "").startswith("^[A-Z0-9]{2,20}(USDT|USDC)$"):
        return [f"Z{i:05d}USDT" for i in range(n)]
    if items.get("type") == "object":  # label selector requirements
        return [{"key": f"k{i}", "operator": "Exists"} for i in range(n)]
    return [f"v{i}" for i in range(n)]


def single_mutations(kind: str, schema: dict, rng: random.Random) -> Iterator[tuple[str, str, tuple, Any, list[str]]]:
    """(category, label, path, new value or _DELETE, fields to name) for one kind."""
    base = BASE[kind]
    for path, s, value in _nodes(schema, base, ("spec",)):
        where = _fmt(path)
        t = s.get("type")
        if path != ("spec",):
            for bad in _wrong_types(t)[:2] + rng.sample(_wrong_types(t)[2:], min(1, len(_wrong_types(t)[2:]))):
                # The API server's schema check lets an array through for a
                # date-time string; the CRDs' CEL rule on the field catches it.
                mark = CEL_CHECKED if s.get("format") == "date-time" and isinstance(bad, list) else ""
                yield "type", f"{where}={type(bad).__name__}{mark}", path, bad, [where]
        if t in ("number", "integer"):
            lo, hi = s.get("minimum"), s.get("maximum")
            if lo is not None:
                yield "range", f"{where}<min", path, lo if s.get("exclusiveMinimum") else (lo - 1 if t == "integer" else lo - abs(lo) * 0.5 - 0.001), [where]
                yield "range", f"{where}=-1e9", path, -10**9, [where]
            if hi is not None:
                yield "range", f"{where}>max", path, hi + 1 if t == "integer" else hi * 1.5 + 0.001, [where]
            yield "range", f"{where}=1e300", path, 10**300 if t == "integer" else 1e300, [where]
            if t == "integer":
                yield "type", f"{where}=fraction", path, (lo or 0) + 2.5, [where]
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
                yield "items", f"{where}>maxItems", path, _unique_items(items, s["maxItems"] + 1), [where]
            yield "huge-list", f"{where}=5000", path, _unique_items(items, HUGE_LIST), [where]
            if s.get("minItems"):
                yield "items", f"{where}<minItems", path, [], [where]
            if s.get("x-kubernetes-list-type") == "set" and value:
                yield "duplicate", f"{where}:dup", path, [value[0], value[0]], [f"{where}[1]"]
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
    """Every single mutation of every kind, the CEL contradictions, the missing
    ``spec``, and ``combos`` seeded combinations of 2-3 schema mutations."""
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
        singles[kind] = list(single_mutations(kind, schemas[kind], rng))
        for category, label, path, value, fields_ in singles[kind]:
            spec = {"spec": copy.deepcopy(BASE[kind])}
            _set(spec, path, value)
            add(kind, category, label, spec["spec"], fields_)
        add(kind, "required", "spec", None, ["spec"])
    for kind, label, over, fields_ in CEL_CASES:
        spec = copy.deepcopy(BASE[kind])
        for k, v in over.items():
            if v is None:
                spec.pop(k, None)
            elif isinstance(v, dict) and isinstance(spec.get(k), dict) and k != "strategySelector":
                spec[k] = {**spec[k], **v}
            else:
                spec[k] = v
        add(kind, "cel", label, spec, fields_)
    add("TradingStrategy", "cel", "name-over-56", copy.deepcopy(BASE["TradingStrategy"]), ["metadata.name"],
        name="fz-" + "n" * 54)

    # Combinations of schema mutations on unrelated fields (no path is a prefix of
    # another): the answer must name every one of them.
    # A dict where a scalar belongs is reported by strict decoding as an unknown
    # field before any other check, so it is left out of combinations.
    combinable = {k: [m for m in v if m[0] not in ("unknown-field", "required") and m[2] != ("spec",)
                      and not (m[0] == "type" and isinstance(m[3], dict)) and CEL_CHECKED not in m[1]]
                  for k, v in singles.items()}
    kinds = list(KINDS)
    made = 0
    while made < combos:
        kind = kinds[made % len(kinds)]
        picks: list = []
        want = rng.choice((2, 3))
        for m in rng.sample(combinable[kind], min(len(combinable[kind]), 12)):
            if all(not _prefix(m[2], p[2]) and not _prefix(p[2], m[2]) for p in picks):
                picks.append(m)
            if len(picks) == want:
                break
        if len(picks) < 2:
            continue
        spec = {"spec": copy.deepcopy(BASE[kind])}
        for m in picks:
            _set(spec, m[2], copy.deepcopy(m[3]))
        add(kind, "combo", " + ".join(m[1] for m in picks), spec["spec"], [f for m in picks for f in m[4]])
        made += 1
    return cases


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
