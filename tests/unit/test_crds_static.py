"""Static checks of the CRDs, the examples and the Helm chart (no cluster needed).

What is checked against docs/design.md (the contract):
* names, short names, category, scope, version flags, status subresource;
* every schema node has a description (kubectl explain is useful everywhere);
* every printer column's jsonPath resolves to a property of the schema, and the
  columns are exactly the ones design.md lists (wide-only ones at priority 1);
* every string/list/map in spec (and every list/map anywhere) is bounded, and every
  string/list inside a CEL-validated subtree too (CEL cost estimation);
* defaults match design.md (structural defaulting is re-implemented here);
* the status keys are the ones design.md lists; conditions are metav1.Condition
  list-maps keyed by type;
* the examples validate against the openAPIV3Schema (jsonschema, after turning the
  OpenAPI v3.0 dialect into JSON Schema) and pass the CEL rules (mirrored in Python
  below: a changed rule fails test_every_cel_rule_is_mirrored until the mirror is
  updated); every examples/invalid/ manifest fails one of the two;
* the chart's crds/ symlink resolves to crds/ and values.yaml satisfies
  values.schema.json.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
EXAMPLES = ROOT / "examples"
INVALID = EXAMPLES / "invalid"
CHART = ROOT / "helm" / "hean"

CRD_FILES = {
    "TradingStrategy": "tradingstrategies.hean.io.yaml",
    "RiskPolicy": "riskpolicies.hean.io.yaml",
    "SymbolQuarantine": "symbolquarantines.hean.io.yaml",
}
SHORT_NAMES = {"TradingStrategy": "hts", "RiskPolicy": "hrp", "SymbolQuarantine": "hsq"}
PLURALS = {
    "TradingStrategy": "tradingstrategies",
    "RiskPolicy": "riskpolicies",
    "SymbolQuarantine": "symbolquarantines",
}

# design.md "Printer columns": (name, jsonPath, priority).
PRINTER_COLUMNS = {
    "TradingStrategy": [
        ("Strategy", ".spec.strategy", 0),
        ("Mode", ".spec.mode", 0),
        ("Ready", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("Risk", ".status.riskState", 0),
        ("Equity", ".status.equity", 0),
        ("PnL", ".status.pnl", 0),
        ("Drawdown%", ".status.drawdownPercent", 0),
        ("Age", ".metadata.creationTimestamp", 0),
        ("Symbols", ".spec.symbols", 1),
        ("Positions", ".status.openPositions", 1),
        ("Heartbeat", ".status.lastHeartbeat", 1),
    ],
    "RiskPolicy": [
        ("SoftDD%", ".spec.softMaxDrawdownPercent", 0),
        ("HardDD%", ".spec.hardMaxDrawdownPercent", 0),
        ("DailyLoss", ".spec.maxDailyLossUsdt", 0),
        ("MaxLev", ".spec.maxLeverage", 0),
        ("Strategies", ".status.strategies", 0),
        ("Worst", ".status.worstState", 0),
        ("Age", ".metadata.creationTimestamp", 0),
    ],
    "SymbolQuarantine": [
        ("Symbol", ".spec.symbol", 0),
        ("Reason", ".spec.reason", 0),
        ("Active", ".status.active", 0),
        ("Expires", ".status.expiresAt", 0),
        ("Age", ".metadata.creationTimestamp", 0),
    ],
}

# design.md status keys per kind.
STATUS_KEYS = {
    "TradingStrategy": {
        # operator
        "observedGeneration", "conditions", "phase", "workerPod", "restarts",
        "promotion",  # operator, docs/promotion.md
        # worker
        "riskState", "riskReasons", "tradingActive", "equity", "realizedPnl",
        "unrealizedPnl", "fees", "pnl", "drawdownPercent", "openPositions",
        "positions", "trades", "orders", "lastHeartbeat", "notTradingReasons",
        "replay", "workerObservedGeneration", "riskGovernor", "scanner",
    },
    "RiskPolicy": {"observedGeneration", "conditions", "strategies", "worstState", "states"},
    "SymbolQuarantine": {
        "observedGeneration", "active", "expiresAt", "affectedStrategies", "conditions",
    },
}

SYMBOL_PATTERN = r"^[A-Z0-9]{2,20}(USDT|USDC)$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
LIVE_PHRASE = "I_UNDERSTAND_LIVE_TRADING"


# --------------------------------------------------------------------------- helpers


def load_crd(kind: str, directory: Path = CRD_DIR) -> dict:
    return yaml.safe_load((directory / CRD_FILES[kind]).read_text())


def version(crd: dict) -> dict:
    (v,) = crd["spec"]["versions"]
    return v


def root_schema(kind: str) -> dict:
    return version(load_crd(kind))["schema"]["openAPIV3Schema"]


def walk(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """Yield (path, node) for every schema node below (and including) ``schema``."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def resolve_json_path(schema: dict, json_path: str) -> dict | None:
    """Follow a printer-column JSONPath through the schema (filters are skipped)."""
    path = re.sub(r"\[[^\]]*\]", "[]", json_path)
    node = schema
    for part in path.strip(".").split("."):
        arrays = part.count("[]")
        name = part.replace("[]", "")
        node = node.get("properties", {}).get(name)
        if node is None:
            return None
        for _ in range(arrays):
            node = node.get("items")
            if node is None:
                return None
    # A filtered list: the path continues into the items.
    return node


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def example_objects() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in load_docs(path):
            out.append((path.name, doc))
    return out


def invalid_objects() -> list[tuple[str, dict, str]]:
    out = []
    for path in sorted(INVALID.glob("*.yaml")):
        text = path.read_text()
        m = re.search(r"^# expect-error: (\S+)", text, re.M)
        (doc,) = load_docs(path)
        out.append((path.name, doc, m.group(1) if m else ""))
    return out


def to_json_schema(node: Any) -> Any:
    """Turn a Kubernetes structural (OpenAPI v3.0) schema into JSON Schema 2020-12.

    Drops x-kubernetes-* extensions, converts OpenAPI 3.0's boolean
    exclusiveMinimum/exclusiveMaximum into the numeric JSON Schema form and
    ``nullable`` into a type union.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "x-kubernetes-list-type" and value == "set":
            out["uniqueItems"] = True
        if key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        else:
            out[key] = value
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if out.get(bound) is True:
            out[bound] = out.pop(limit)
        elif out.get(bound) is False:
            del out[bound]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def validator_for(kind: str):
    schema = to_json_schema(root_schema(kind))
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def apply_defaults(schema: dict, obj: Any) -> Any:
    """Kubernetes structural defaulting: fill absent properties, then recurse."""
    if isinstance(obj, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in obj and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
        for name, value in obj.items():
            if name in schema.get("properties", {}):
                apply_defaults(schema["properties"][name], value)
            elif isinstance(schema.get("additionalProperties"), dict):
                apply_defaults(schema["additionalProperties"], value)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for value in obj:
            apply_defaults(schema["items"], value)
    return obj


# CEL rules mirrored in Python, keyed by the rule text with whitespace collapsed.
CelMirror = Callable[[dict], bool]
CEL_MIRRORS: dict[str, CelMirror] = {
    "self.metadata.name.size() <= 56": lambda s: len(s["metadata"]["name"]) <= 56,
    "!(has(self.mode) && self.mode == 'live') || "
    "(has(self.liveConfirmation) && self.liveConfirmation == 'I_UNDERSTAND_LIVE_TRADING')":
        lambda s: s.get("mode") != "live" or s.get("liveConfirmation") == LIVE_PHRASE,
    "!(has(self.mode) && (self.mode == 'live' || self.mode == 'testnet' || self.mode == 'demo')) || "
    "has(self.credentialsSecretRef)":
        lambda s: s.get("mode") not in ("live", "testnet", "demo") or "credentialsSecretRef" in s,
    "!has(self.emaFastPeriod) || !has(self.emaSlowPeriod) || "
    "self.emaFastPeriod < self.emaSlowPeriod":
        lambda s: "emaFastPeriod" not in s or "emaSlowPeriod" not in s
        or s["emaFastPeriod"] < s["emaSlowPeriod"],
    "!has(self.softMaxDrawdownPercent) || !has(self.hardMaxDrawdownPercent) || "
    "self.softMaxDrawdownPercent < self.hardMaxDrawdownPercent":
        lambda s: "softMaxDrawdownPercent" not in s or "hardMaxDrawdownPercent" not in s
        or s["softMaxDrawdownPercent"] < s["hardMaxDrawdownPercent"],
    "!has(self.highPercentile) || !has(self.extremePercentile) || "
    "self.highPercentile < self.extremePercentile":
        lambda s: "highPercentile" not in s or "extremePercentile" not in s
        or s["highPercentile"] < s["extremePercentile"],
    "!has(self.bybit) || (has(self.marketData) && has(self.marketData.source) && "
    "self.marketData.source == 'live')":
        lambda s: "bybit" not in s or (s.get("marketData") or {}).get("source") == "live",
    "!has(self.bybit) || !has(self.bybit.deadManSwitchSeconds) || "
    "self.bybit.deadManSwitchSeconds == 0 || (has(self.mode) && self.mode != 'paper')":
        lambda s: not (s.get("bybit") or {}).get("deadManSwitchSeconds") or s.get("mode", "paper") != "paper",
    "self.deadManSwitchSeconds == 0 || (self.deadManSwitchSeconds >= 3 && self.deadManSwitchSeconds <= 300)":
        lambda s: s["deadManSwitchSeconds"] == 0 or 3 <= s["deadManSwitchSeconds"] <= 300,
    "has(self.expiresAt) != has(self.ttlSeconds)":
        lambda s: ("expiresAt" in s) != ("ttlSeconds" in s),
    "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)":
        lambda s: (s["operator"] in ("In", "NotIn")) == bool(s.get("values")),
    "!has(self.topN) || self.topN <= size(self.universe)":
        lambda s: "topN" not in s or s["topN"] <= len(s["universe"]),
    "!(has(self.mode) && (self.mode == 'live' || self.mode == 'testnet' || self.mode == 'demo')) || "
    "(has(self.marketData) && has(self.marketData.source) && self.marketData.source == 'live')":
        lambda s: s.get("mode") not in ("live", "testnet", "demo")
        or (s.get("marketData") or {}).get("source") == "live",
    # date-time strings (CEL sees them as timestamps): the rule exists to type-check
    # arrays, which the API server's schema validation lets through for date-time.
    "self > timestamp('1970-01-01T00:00:00Z')":
        lambda s: isinstance(s, str) and s > "1970-01-01T00:00:00Z",
    "self.all(k, k.size() <= 317 && "
    "k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))":
        lambda s: all(len(k) <= 317 and re.match(
            r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}"
            r"[A-Za-z0-9])?$", k) for k in s),
}
for _key, _name in (("momentum", "momentum"), ("grid", "grid"), ("scalping", "scalping"),
                    ("fundingHarvest", "funding_harvest"), ("basisArbitrage", "basis_arbitrage")):
    CEL_MIRRORS[f"!has(self.params) || !has(self.params.{_key}) || self.strategy == '{_name}'"] = (
        lambda s, k=_key, n=_name: k not in (s.get("params") or {}) or s["strategy"] == n)


# spec.promotion (docs/promotion.md)
_PROMO_STAGES = (["paper"], ["paper", "testnet"], ["paper", "testnet", "live"])
CEL_MIRRORS.update({
    "!has(self.promotion) || !has(self.mode) || self.mode == 'paper'":
        lambda s: "promotion" not in s or s.get("mode", "paper") == "paper",
    "!has(self.promotion) || !('testnet' in self.promotion.stages) || has(self.credentialsSecretRef)":
        lambda s: "promotion" not in s or "testnet" not in s["promotion"]["stages"] or "credentialsSecretRef" in s,
    "!has(self.promotion) || !('live' in self.promotion.stages) || "
    "(has(self.liveConfirmation) && self.liveConfirmation == 'I_UNDERSTAND_LIVE_TRADING')":
        lambda s: "promotion" not in s or "live" not in s["promotion"]["stages"]
        or s.get("liveConfirmation") == LIVE_PHRASE,
    "self.stages == ['paper'] || self.stages == ['paper', 'testnet'] || "
    "self.stages == ['paper', 'testnet', 'live']": lambda s: s["stages"] in _PROMO_STAGES,
    "!('live' in self.stages) || has(self.capitalSteps)": lambda s: "live" not in s["stages"] or "capitalSteps" in s,
    "!('live' in self.stages) || has(self.analysis)": lambda s: "live" not in s["stages"] or "analysis" in s,
    "self.isSorted() && self.all(x, self.filter(y, y == x).size() == 1)":
        lambda s: all(a < b for a, b in zip(s, s[1:])),
    "self[self.size() - 1] == 1.0": lambda s: s[-1] == 1.0,
    "self.failureLimit < self.count": lambda s: s["failureLimit"] < s["count"],
})


def norm_rule(rule: str) -> str:
    return " ".join(rule.split())


def cel_violations(schema: dict, obj: Any, path: str = "") -> list[str]:
    """Evaluate the mirrored CEL rules of ``schema`` over ``obj`` (already defaulted)."""
    errors = []
    for v in schema.get("x-kubernetes-validations", []):
        if not CEL_MIRRORS[norm_rule(v["rule"])](obj):
            errors.append(f"{path or '<root>'}{v.get('fieldPath', '')}: {v['message']}")
    if isinstance(obj, dict):
        for name, value in obj.items():
            sub = schema.get("properties", {}).get(name)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                errors += cel_violations(sub, value, f"{path}.{name}".lstrip("."))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(obj):
            errors += cel_violations(schema["items"], value, f"{path}[{i}]")
    return errors


def check_object(obj: dict) -> list[str]:
    """Schema errors and CEL violations of one custom resource (after defaulting)."""
    kind = obj["kind"]
    schema = root_schema(kind)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator_for(kind).iter_errors(obj)
    ]
    if errors:
        return errors
    return cel_violations(schema, apply_defaults(schema, copy.deepcopy(obj)))


# --------------------------------------------------------------------------- CRDs

KINDS = list(CRD_FILES)


@pytest.mark.parametrize("kind", KINDS)
def test_crd_identity(kind: str) -> None:
    crd = load_crd(kind)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{PLURALS[kind]}.hean.io"
    spec = crd["spec"]
    assert spec["group"] == "hean.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == kind
    assert names["plural"] == PLURALS[kind]
    assert names["singular"] == kind.lower()
    assert names["shortNames"] == [SHORT_NAMES[kind]]
    assert names["categories"] == ["hean"]
    v = version(crd)
    assert (v["name"], v["served"], v["storage"]) == ("v1alpha1", True, True)
    assert v["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", KINDS)
def test_constants_agree_with_hean_api(kind: str) -> None:
    try:
        from hean import api
    except ImportError:  # not installed: load the module from the source tree
        import importlib.util

        spec = importlib.util.spec_from_file_location("hean_api", ROOT / "src/hean/api.py")
        api = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(api)
    assert api.GROUP == "hean.io" and api.VERSION == "v1alpha1"
    plural = {"TradingStrategy": api.STRATEGY_PLURAL, "RiskPolicy": api.POLICY_PLURAL,
              "SymbolQuarantine": api.QUARANTINE_PLURAL}[kind]
    assert plural == PLURALS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_every_schema_node_has_a_description(kind: str) -> None:
    missing = [
        path or "<root>"
        for path, node in walk(root_schema(kind))
        # The API server forbids anything but type on the root metadata.
        if path != ".metadata" and not str(node.get("description", "")).strip()
    ]
    assert not missing, f"{kind}: no description on {missing}"


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_fully_structural(kind: str) -> None:
    text = (CRD_DIR / CRD_FILES[kind]).read_text()
    assert "x-kubernetes-preserve-unknown-fields" not in text
    assert "x-kubernetes-int-or-string" not in text
    for path, node in walk(root_schema(kind)):
        assert "type" in node, f"{kind}{path}: no type"
        if node["type"] == "object" and path != ".metadata":
            assert "properties" in node or "additionalProperties" in node, (
                f"{kind}{path}: an object needs properties or additionalProperties"
            )


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns_match_design_and_resolve(kind: str) -> None:
    v = version(load_crd(kind))
    schema = v["schema"]["openAPIV3Schema"]
    columns = v["additionalPrinterColumns"]
    got = [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in columns]
    assert got == PRINTER_COLUMNS[kind]
    for c in columns:
        assert c["type"] in {"string", "integer", "number", "boolean", "date"}
        if c["jsonPath"].startswith(".metadata."):
            assert c["jsonPath"] == ".metadata.creationTimestamp"
            continue
        node = resolve_json_path(schema, c["jsonPath"])
        assert node is not None, f"{kind} column {c['name']}: {c['jsonPath']} is not in the schema"
        if c["type"] in {"integer", "number", "boolean"}:
            assert node["type"] == c["type"], f"{kind} column {c['name']} type"
        if c["type"] == "date":
            assert node.get("format") == "date-time" or c["jsonPath"].startswith(".metadata")


def test_ready_column_reads_the_ready_condition() -> None:
    schema = root_schema("TradingStrategy")
    node = resolve_json_path(schema, '.status.conditions[?(@.type=="Ready")].status')
    assert node is not None and node["enum"] == ["True", "False", "Unknown"]


@pytest.mark.parametrize("kind", KINDS)
def test_spec_is_bounded(kind: str) -> None:
    """Every string, list and map in spec has a bound (enum counts for strings)."""
    spec = root_schema(kind)["properties"]["spec"]
    unbounded = []
    for path, node in walk(spec, ".spec"):
        t = node["type"]
        if t == "string" and "maxLength" not in node:
            unbounded.append(path)
        if t == "array" and "maxItems" not in node:
            unbounded.append(path)
        if t == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(path)
    assert not unbounded, f"{kind}: unbounded {unbounded}"


@pytest.mark.parametrize("kind", KINDS)
def test_cel_subtrees_are_bounded(kind: str) -> None:
    """Strings and lists under every CEL rule carry maxLength/maxItems (cost budget)."""
    for path, node in walk(root_schema(kind)):
        if not node.get("x-kubernetes-validations"):
            continue
        for sub_path, sub in walk(node, path):
            # The root rule reads only metadata.name (bounded by the API server);
            # status is written by hean itself and has no CEL rules.
            if sub_path.split(".")[1:2] in (["metadata"], ["status"], ["apiVersion"], ["kind"]):
                continue
            if sub["type"] == "string":
                assert "maxLength" in sub, f"{kind}{sub_path}: string without maxLength"
            if sub["type"] == "array":
                assert "maxItems" in sub, f"{kind}{sub_path}: list without maxItems"


@pytest.mark.parametrize("kind", KINDS)
def test_lists_and_maps_everywhere_are_bounded(kind: str) -> None:
    for path, node in walk(root_schema(kind)):
        if node["type"] == "array":
            assert "maxItems" in node, f"{kind}{path}"
        if node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{kind}{path}"


@pytest.mark.parametrize("kind", KINDS)
def test_cel_rules_have_messages_and_are_mirrored(kind: str) -> None:
    for path, node in walk(root_schema(kind)):
        for v in node.get("x-kubernetes-validations", []):
            assert v.get("message", "").strip(), f"{kind}{path}: rule without message"
            assert norm_rule(v["rule"]) in CEL_MIRRORS, (
                f"{kind}{path}: CEL rule {v['rule']!r} has no Python mirror in this test"
            )
            if "reason" in v:
                assert v["reason"] in {
                    "FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired",
                    "FieldValueDuplicate",
                }


def test_every_cel_rule_is_mirrored() -> None:
    rules = {
        norm_rule(v["rule"])
        for kind in KINDS
        for _, node in walk(root_schema(kind))
        for v in node.get("x-kubernetes-validations", [])
    }
    assert rules == set(CEL_MIRRORS), "CEL rules and their Python mirrors diverged"


def test_cel_rules_required_by_design_exist() -> None:
    def rules_at(kind: str, dotted: str) -> list[dict]:
        node = root_schema(kind)
        for part in dotted.split("."):
            node = node["properties"][part]
        return node.get("x-kubernetes-validations", [])

    spec_rules = rules_at("TradingStrategy", "spec")
    live = [r for r in spec_rules if LIVE_PHRASE in r["rule"]]
    assert live and "spec.liveConfirmation" in live[0]["message"]
    assert LIVE_PHRASE in live[0]["message"]
    assert any("credentialsSecretRef" in r["rule"] and "testnet" in r["rule"] for r in spec_rules)
    assert any("emaFastPeriod < self.emaSlowPeriod" in r["rule"]
               for r in rules_at("TradingStrategy", "spec.params"))
    assert any("softMaxDrawdownPercent < self.hardMaxDrawdownPercent" in r["rule"]
               for r in rules_at("RiskPolicy", "spec"))
    assert any("expiresAt" in r["rule"] and "ttlSeconds" in r["rule"]
               for r in rules_at("SymbolQuarantine", "spec"))


@pytest.mark.parametrize("kind", KINDS)
def test_status_keys_and_conditions(kind: str) -> None:
    status = root_schema(kind)["properties"]["status"]
    assert set(status["properties"]) == STATUS_KEYS[kind]
    cond = status["properties"]["conditions"]
    assert cond["type"] == "array"
    assert cond["x-kubernetes-list-type"] == "map"
    assert cond["x-kubernetes-list-map-keys"] == ["type"]
    item = cond["items"]
    assert set(item["properties"]) == {
        "type", "status", "reason", "message", "lastTransitionTime", "observedGeneration",
    }
    assert "type" in item["required"]
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["reason"]["pattern"] == CONDITION_REASON_PATTERN
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert item["properties"]["observedGeneration"]["type"] == "integer"


def test_money_is_number_in_spec_and_decimal_string_in_status() -> None:
    ts = root_schema("TradingStrategy")
    assert ts["properties"]["spec"]["properties"]["capital"]["type"] == "number"
    st = ts["properties"]["status"]["properties"]
    for key in ("equity", "realizedPnl", "unrealizedPnl", "fees", "pnl", "drawdownPercent"):
        assert st[key]["type"] == "string", key
        assert re.fullmatch(st[key]["pattern"], "-12.3400")
        assert not re.fullmatch(st[key]["pattern"], "NaN")
    rp = root_schema("RiskPolicy")["properties"]["spec"]["properties"]
    assert rp["maxDailyLossUsdt"]["type"] == "number"
    assert rp["maxPositionNotionalUsdt"]["type"] == "number"


def test_symbol_pattern_everywhere() -> None:
    ts = root_schema("TradingStrategy")["properties"]["spec"]["properties"]["symbols"]
    assert ts["items"]["pattern"] == SYMBOL_PATTERN
    assert ts["x-kubernetes-list-type"] == "set"
    assert (ts["minItems"], ts["maxItems"]) == (1, 10)
    sq = root_schema("SymbolQuarantine")["properties"]["spec"]["properties"]["symbol"]
    assert sq["pattern"] == SYMBOL_PATTERN


def test_trading_strategy_defaults_match_design() -> None:
    schema = root_schema("TradingStrategy")
    obj = {
        "apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
        "metadata": {"name": "x"},
        "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000,
                 "riskPolicyRef": {"name": "default"}},
    }
    spec = apply_defaults(schema, obj)["spec"]
    assert spec["mode"] == "paper"
    assert spec["category"] == "linear"
    assert spec["maxLeverage"] == 1
    assert spec["paused"] is False
    # the API server's defaults must be the worker's defaults
    from hean.worker.config import ImpulseParams

    assert spec["params"] == ImpulseParams().model_dump(exclude_none=True)
    assert spec["marketData"] == {
        "source": "replay",
        "replay": {"interval": "1", "speed": 600, "loop": False},
    }
    assert spec["execution"] == {"slippageBps": 2}
    assert "liveConfirmation" not in spec and "credentialsSecretRef" not in spec
    ref = apply_defaults(schema, {**obj, "spec": {**obj["spec"], "credentialsSecretRef": {"name": "s"}}})
    assert ref["spec"]["credentialsSecretRef"] == {
        "name": "s", "apiKeyKey": "apiKey", "apiSecretKey": "apiSecret",
    }


def test_risk_policy_defaults_match_design() -> None:
    schema = root_schema("RiskPolicy")
    spec = apply_defaults(schema, {"spec": {"maxDailyLossUsdt": 1, "maxPositionNotionalUsdt": 1}})["spec"]
    assert spec == {
        "maxDailyLossUsdt": 1, "maxPositionNotionalUsdt": 1,
        "softMaxDrawdownPercent": 5, "hardMaxDrawdownPercent": 10, "maxLeverage": 3,
        "maxOpenPositions": 5, "maxOrdersPerMinute": 60, "softBrakeSizeFactor": 0.5,
    }
    # the safety blocks' defaults (applied when a block is present) are the worker's
    from hean.worker.config import RiskPolicySpec

    blocks = ("autoQuarantine", "profitCapture", "flashCrash", "volatilityRegimes", "orderRouter")
    full = apply_defaults(schema, {"spec": {"maxDailyLossUsdt": 1, "maxPositionNotionalUsdt": 1,
                                            **{b: {} for b in blocks}}})["spec"]
    model = RiskPolicySpec.model_validate(full).model_dump(mode="json")
    for b in blocks:
        want = {k: v for k, v in model[b].items() if v is not None}
        got = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
               for k, v in full[b].items()}
        want = {k: (float(v) if isinstance(v, (int, float, str)) and k not in ("mode", "source", "escalateTo",
                                                                                 "afterCapture") else v)
                for k, v in want.items()}
        assert got == want, b


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_validate_against_their_schema(kind: str) -> None:
    for path, node in walk(root_schema(kind)):
        if "default" in node:
            jsonschema.Draft202012Validator(to_json_schema(node)).validate(node["default"])


# --------------------------------------------------------------------------- examples


def test_examples_exist() -> None:
    kinds = sorted(obj["kind"] for _, obj in example_objects())
    assert kinds == ["RiskPolicy", "SymbolQuarantine", "TradingStrategy", "TradingStrategy"]
    invalid = {name for name, _, _ in invalid_objects()}
    assert invalid == {
        "negative-capital.yaml", "unknown-mode.yaml", "live-without-confirmation.yaml",
        "live-without-credentials.yaml", "bad-symbol.yaml", "ema-fast-not-below-slow.yaml",
        "quarantine-both-expiries.yaml",
    }


@pytest.mark.parametrize("name,obj", example_objects(), ids=lambda x: x if isinstance(x, str) else "")
def test_example_is_valid(name: str, obj: dict) -> None:
    assert obj["apiVersion"] == "hean.io/v1alpha1"
    assert "namespace" not in obj["metadata"], "examples are namespace-agnostic (kubectl -n)"
    assert check_object(obj) == []


def test_examples_fit_together() -> None:
    objs = [obj for _, obj in example_objects()]
    policies = {o["metadata"]["name"] for o in objs if o["kind"] == "RiskPolicy"}
    strategies = [o for o in objs if o["kind"] == "TradingStrategy"]
    traded = {s for o in strategies for s in o["spec"]["symbols"]}
    for o in strategies:
        assert o["spec"]["riskPolicyRef"]["name"] in policies
        assert o["spec"]["mode"] == "paper"
        assert o["spec"]["capital"] == 10000
        assert o["spec"]["marketData"]["replay"]["speed"] == 6000
    # The demo quarantine must not stop the demo strategies from trading.
    for o in objs:
        if o["kind"] == "SymbolQuarantine":
            assert o["spec"]["symbol"] not in traded
    policy = next(o for o in objs if o["kind"] == "RiskPolicy")["spec"]
    assert policy["softMaxDrawdownPercent"] == 5 and policy["hardMaxDrawdownPercent"] == 10


def test_kustomization_lists_every_example() -> None:
    kust = yaml.safe_load((EXAMPLES / "Kustomization").read_text())
    assert kust["kind"] == "Kustomization"
    assert sorted(kust["resources"]) == sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    # kubectl apply -f examples/ reads only *.yaml/*.yml/*.json: keep it that way.
    assert not list(EXAMPLES.glob("kustomization.y*ml"))


@pytest.mark.parametrize("name,obj,field", invalid_objects(),
                         ids=lambda x: x if isinstance(x, str) and x.endswith(".yaml") else "")
def test_invalid_example_is_rejected(name: str, obj: dict, field: str) -> None:
    assert field.startswith("spec"), f"{name}: needs an '# expect-error: <field>' header"
    errors = check_object(obj)
    assert errors, f"{name} should be invalid"


@pytest.mark.parametrize(
    "spec_patch,valid",
    [
        ({"params": {"emaFastPeriod": 150}}, False),  # slow defaults to 100
        ({"params": {"emaSlowPeriod": 10}}, False),  # fast defaults to 20
        ({"params": {"emaFastPeriod": 5, "emaSlowPeriod": 6}}, True),
        ({"mode": "testnet"}, False),
        ({"mode": "testnet", "credentialsSecretRef": {"name": "bybit"}, "marketData": {"source": "live"}}, True),
        ({"mode": "testnet", "credentialsSecretRef": {"name": "bybit"}}, False),  # replayed candles
        ({"mode": "live", "liveConfirmation": "yes", "credentialsSecretRef": {"name": "b"}}, False),
        ({"mode": "live", "liveConfirmation": LIVE_PHRASE, "credentialsSecretRef": {"name": "b"},
          "marketData": {"source": "live"}}, True),
        ({"mode": "live", "liveConfirmation": LIVE_PHRASE, "credentialsSecretRef": {"name": "b"}}, False),
        ({"symbols": ["BTCUSDT", "BTCUSDT"]}, False),
        ({"symbols": []}, False),
        ({"symbols": [f"S{i:02d}USDT" for i in range(11)]}, False),
        ({"symbols": ["ETHUSDC"]}, True),
        ({"capital": 0}, False),
        ({"capital": 1e9}, True),
        ({"capital": 1e9 + 1}, False),
        ({"category": "inverse"}, False),
        ({"strategy": "martingale"}, False),
        ({"strategy": "grid", "params": {"grid": {"levels": 50}}}, True),
        ({"strategy": "grid", "params": {"grid": {"levels": 201}}}, False),
        ({"strategy": "impulse", "params": {"grid": {}}}, False),  # another strategy's block
        ({"strategy": "scalping", "params": {"scalping": {"imbalanceThreshold": 1.0}}}, False),
        ({"strategy": "momentum", "scanner": {"universe": ["BTCUSDT"], "topN": 2}}, False),
        ({"strategy": "momentum", "scanner": {"universe": ["BTCUSDT", "ETHUSDT"], "topN": 2}}, True),
        ({"marketData": {"replay": {"interval": "15"}}}, False),
        ({"marketData": {"source": "live"}}, True),
    ],
)
def test_trading_strategy_rules(spec_patch: dict, valid: bool) -> None:
    obj = {
        "apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
        "metadata": {"name": "x"},
        "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000,
                 "riskPolicyRef": {"name": "default"}, **spec_patch},
    }
    assert (check_object(obj) == []) is valid, check_object(obj)


def test_long_strategy_names_are_rejected() -> None:
    obj = {
        "apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy",
        "metadata": {"name": "a" * 57},
        "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000,
                 "riskPolicyRef": {"name": "default"}},
    }
    assert check_object(obj)
    obj["metadata"]["name"] = "a" * 56
    assert check_object(obj) == []


@pytest.mark.parametrize(
    "spec,valid",
    [
        ({"symbol": "BTCUSDT", "reason": "r", "ttlSeconds": 60}, True),
        ({"symbol": "BTCUSDT", "reason": "r", "expiresAt": "2030-01-01T00:00:00Z"}, True),
        ({"symbol": "BTCUSDT", "reason": "r"}, False),
        ({"symbol": "BTCUSDT", "reason": "", "ttlSeconds": 60}, False),
        ({"symbol": "BTCUSDT", "reason": "r", "ttlSeconds": 0}, False),
        ({"symbol": "BTCUSDT", "reason": "r", "ttlSeconds": 60,
          "strategySelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, False),
        ({"symbol": "BTCUSDT", "reason": "r", "ttlSeconds": 60,
          "strategySelector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}, True),
        ({"symbol": "BTCUSDT", "reason": "r", "ttlSeconds": 60,
          "strategySelector": {"matchLabels": {"hean.io/desk": "majors"}}}, True),
    ],
)
def test_symbol_quarantine_rules(spec: dict, valid: bool) -> None:
    obj = {"apiVersion": "hean.io/v1alpha1", "kind": "SymbolQuarantine",
           "metadata": {"name": "q"}, "spec": spec}
    assert (check_object(obj) == []) is valid, check_object(obj)


@pytest.mark.parametrize(
    "patch,valid",
    [
        ({}, True),
        ({"softMaxDrawdownPercent": 10, "hardMaxDrawdownPercent": 10}, False),
        ({"softMaxDrawdownPercent": 12}, False),  # hard defaults to 10
        ({"maxDailyLossUsdt": 0}, False),
        ({"softBrakeSizeFactor": 1.5}, False),
        ({"volatilityRegimes": {"highPercentile": 95, "extremePercentile": 90}}, False),
        ({"volatilityRegimes": {"highPercentile": 96}}, False),  # extreme defaults to 95
        ({"volatilityRegimes": {"enabled": True}}, True),
        ({"flashCrash": {"enabled": True, "escalateTo": "PANIC"}}, False),
        ({"orderRouter": {"mode": "limitFirst", "timeoutSeconds": 0}}, False),
        ({"profitCapture": {"enabled": True, "trailFraction": 1}}, False),
        ({"autoQuarantine": {"consecutiveRejects": 3, "maxSpreadBps": 50}}, True),
        ({"maxOrderNotionalUsdt": 0}, False),
        ({"maxRiskPerTradeFraction": 0.01}, True),
    ],
)
def test_risk_policy_rules(patch: dict, valid: bool) -> None:
    obj = {"apiVersion": "hean.io/v1alpha1", "kind": "RiskPolicy", "metadata": {"name": "p"},
           "spec": {"maxDailyLossUsdt": 500, "maxPositionNotionalUsdt": 20000, **patch}}
    assert (check_object(obj) == []) is valid, check_object(obj)


def test_worker_status_example_validates() -> None:
    """A status as the operator and the worker write it fits the schema."""
    obj = {
        "apiVersion": "hean.io/v1alpha1", "kind": "TradingStrategy", "metadata": {"name": "x"},
        "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000,
                 "riskPolicyRef": {"name": "default"}},
        "status": {
            "observedGeneration": 2, "phase": "Running", "workerPod": "x-worker", "restarts": 0,
            "conditions": [{"type": "Ready", "status": "True", "reason": "WorkerRunning",
                            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
                            "observedGeneration": 2}],
            "riskState": "SOFT_BRAKE", "riskReasons": ["DRAWDOWN_SOFT"], "tradingActive": True,
            "equity": "9500.12", "realizedPnl": "-400", "unrealizedPnl": "-99.88",
            "fees": "12.5", "pnl": "-512.38", "drawdownPercent": "5.0",
            "openPositions": 1,
            "positions": [{"symbol": "BTCUSDT", "side": "Buy", "size": "0.01",
                           "entryPrice": "65000", "markPrice": "64000.5",
                           "unrealizedPnl": "-9.995"}],
            "trades": 3, "orders": 7, "lastHeartbeat": "2026-01-01T00:00:01.5+00:00",
            "notTradingReasons": [{"reason": "COOLDOWN", "count": 4}],
            "riskGovernor": {"since": "2026-01-01T00:00:00Z", "recommendedAction": "watch the drawdown",
                             "clearRule": "automatic", "hardStopAt": "2026-01-01T00:00:00Z"},
            "replay": {"cursor": "2024-01-01T00:00:00Z", "progress": "0.25", "done": False},
            "workerObservedGeneration": 2,
        },
    }
    assert check_object(obj) == []
    obj["status"]["conditions"][0]["reason"] = "not a reason!"
    assert check_object(obj)


# --------------------------------------------------------------------------- Helm chart


def test_chart_crds_symlink_resolves_to_crds() -> None:
    link = CHART / "crds"
    assert link.is_symlink(), "helm/hean/crds must be a symlink to ../../crds"
    target = link.readlink()
    assert not target.is_absolute(), "the symlink must be relative"
    assert link.resolve() == CRD_DIR.resolve()
    for kind in KINDS:
        assert load_crd(kind, link) == load_crd(kind)


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "hean"
    assert chart["version"] == "0.1.0"
    assert str(chart["appVersion"]) == "0.1.0"
    for required in ("templates/NOTES.txt", "values.schema.json", "values.yaml"):
        assert (CHART / required).is_file(), required


def test_chart_values_validate_against_values_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    cls = jsonschema.Draft7Validator
    cls.check_schema(schema)
    cls(schema).validate(values)
    assert values["image"]["repository"] == "ghcr.io/hean/hean"
    assert values["image"]["pullPolicy"] == "IfNotPresent"
    assert values["liveTrading"]["enabled"] is False
    assert values["worker"]["marketData"] == {
        "hostPath": "/var/lib/hean/marketdata", "mountPath": "/var/lib/hean/marketdata",
    }
    assert values["resources"] == values["worker"]["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    for bad in ({"image": {"repository": "x", "pullPolicy": "Sometimes"}},
                {"liveTrading": {"enabled": "yes"}},
                {"worker": {"typo": 1}}):
        assert list(cls(schema).iter_errors({**values, **bad})), bad


@pytest.mark.parametrize("path", sorted((EXAMPLES / "strategies").glob("*.yaml")), ids=lambda p: p.name)
def test_strategy_examples_pass_the_crd_and_the_typed_params(path: Path) -> None:
    """examples/strategies/: one manifest per strategy; each passes the CRD schema
    with its CEL rules and the operator's typed-params gate."""
    from hean.operator import reconcile as rc
    from hean.worker.config import StrategySpec

    (obj,) = load_docs(path)
    assert check_object(obj) == []
    assert rc.admit(obj["spec"], rc.OperatorConfig()).ok
    StrategySpec.model_validate(obj["spec"])


def test_every_strategy_has_an_example_and_kustomization_lists_them() -> None:
    names = {load_docs(p)[0]["spec"]["strategy"] for p in (EXAMPLES / "strategies").glob("*.yaml")}
    assert names == {"impulse", "momentum", "grid", "scalping", "funding_harvest", "basis_arbitrage"}
    kust = yaml.safe_load((EXAMPLES / "strategies" / "Kustomization").read_text())
    assert sorted(kust["resources"]) == sorted(p.name for p in (EXAMPLES / "strategies").glob("*.yaml"))


def test_params_sub_schemas_match_the_pydantic_models() -> None:
    """spec.params.<strategy> in the CRD is generated from the typed models by
    hack/gen_params_schema.py; regenerate it when a model changes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_params_schema", ROOT / "hack" / "gen_params_schema.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    params = root_schema("TradingStrategy")["properties"]["spec"]["properties"]["params"]["properties"]
    generated = mod.params_schemas()
    assert set(generated) == {"momentum", "grid", "scalping", "fundingHarvest", "basisArbitrage"}
    for key, node in generated.items():
        assert params[key] == node, key
    # and the impulse gates' flat fields carry the models' bounds and defaults
    from hean.worker.strategies import ImpulseParams

    for name, field in ImpulseParams.model_fields.items():
        assert name in params, name
        if field.default is not None:
            assert params[name].get("default") == field.default, name
        else:
            assert "default" not in params[name], name
