"""The CRDs against a real API server: install, validation (schema + CEL), defaults,
printer columns, categories, `kubectl explain` and the status subresource.

Uses the session fixture ``kube`` (``kube.kubectl(*args, input=None, check=True,
timeout=60)``) and the function fixture ``namespace`` (a fresh namespace's name)
from tests/conftest.py. The CRDs are cluster-scoped: they are applied idempotently
(server-side, forcing conflicts so that a Helm-installed copy is simply taken over)
and never deleted, so other tests may rely on them too.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
EXAMPLES = ROOT / "examples"
INVALID = EXAMPLES / "invalid"
CRD_NAMES = (
    "tradingstrategies.hean.io",
    "riskpolicies.hean.io",
    "symbolquarantines.hean.io",
)
LIVE_PHRASE = "I_UNDERSTAND_LIVE_TRADING"

T = TypeVar("T")


def eventually(fn: Callable[[], T], timeout: float = 30.0, interval: float = 0.5) -> T:
    """Call ``fn`` until it stops raising AssertionError (discovery/OpenAPI lag)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def install_crds(kube) -> None:
    kube.kubectl("apply", "--server-side", "--force-conflicts",
                 "--field-manager=hean-crds", "-f", str(CRD_DIR))
    for name in CRD_NAMES:
        kube.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.fixture(scope="module")
def crds(kube):
    install_crds(kube)

    # The kinds are usable (discovery updated) before the tests start.
    def served() -> None:
        out = kube.kubectl("api-resources", "--api-group=hean.io", "-o", "name", check=False)
        assert out.returncode == 0, out.stderr
        assert set(out.stdout.split()) >= {f"{n.split('.')[0]}.hean.io" for n in CRD_NAMES}, out.stdout

    eventually(served, timeout=60)
    return kube


def apply(kube, namespace: str, *args: str, input: str | None = None, check: bool = True):
    return kube.kubectl("apply", "-n", namespace, *args, input=input, check=check)


def get_json(kube, namespace: str, kind: str, name: str) -> dict:
    return json.loads(kube.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout)


def strategy(name: str = "s", **spec) -> dict:
    return {
        "apiVersion": "hean.io/v1alpha1",
        "kind": "TradingStrategy",
        "metadata": {"name": name},
        "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000,
                 "riskPolicyRef": {"name": "default"}, **spec},
    }


def assert_rejected(kube, namespace: str, obj: dict, *needles: str) -> str:
    out = apply(kube, namespace, "-f", "-", input=json.dumps(obj), check=False)
    assert out.returncode != 0, f"accepted: {obj}\n{out.stdout}"
    for needle in needles:
        assert needle in out.stderr, f"{needle!r} not in {out.stderr!r}"
    gone = kube.kubectl("get", "-n", namespace, obj["kind"].lower(), obj["metadata"]["name"],
                        check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr
    return out.stderr


# --------------------------------------------------------------------------- install


def test_crds_are_established_and_install_is_idempotent(crds) -> None:
    # A second install (another test or Helm may have installed them) is a no-op.
    install_crds(crds)
    for name in CRD_NAMES:
        crd = json.loads(crds.kubectl("get", "crd", name, "-o", "json").stdout)
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds.get("Established") == "True", conds
        assert conds.get("NamesAccepted") == "True", conds
        assert crd["status"]["acceptedNames"]["categories"] == ["hean"]


def test_server_side_dry_run_of_crds_is_clean(crds) -> None:
    out = crds.kubectl("apply", "--server-side", "--force-conflicts",
                       "--field-manager=hean-crds", "--dry-run=server", "-f", str(CRD_DIR))
    assert out.stdout.count("serverside-applied") == 3, out.stdout
    assert "Warning" not in out.stderr, out.stderr


# --------------------------------------------------------------------------- examples


def test_examples_apply_with_kustomize_and_plain(crds, namespace: str) -> None:
    out = apply(crds, namespace, "-k", str(EXAMPLES))
    for name in ("riskpolicy.hean.io/default", "tradingstrategy.hean.io/btcusdt-impulse",
                 "tradingstrategy.hean.io/ethusdt-impulse",
                 "symbolquarantine.hean.io/solusdt-maintenance"):
        assert name in out.stdout, out.stdout
    # The plain form must not choke on the kustomization (it is not a *.yaml file).
    out = apply(crds, namespace, "-f", str(EXAMPLES))
    assert out.stderr.strip() == "", out.stderr
    assert out.stdout.count("unchanged") == 4, out.stdout


def test_get_hean_lists_all_three_kinds(crds, namespace: str) -> None:
    apply(crds, namespace, "-k", str(EXAMPLES))

    def listed() -> None:
        out = crds.kubectl("get", "hean", "-n", namespace, "-o", "name", check=False)
        assert out.returncode == 0, out.stderr
        names = set(out.stdout.split())
        assert names == {
            "riskpolicy.hean.io/default",
            "symbolquarantine.hean.io/solusdt-maintenance",
            "tradingstrategy.hean.io/btcusdt-impulse",
            "tradingstrategy.hean.io/ethusdt-impulse",
        }, names

    eventually(listed)
    out = crds.kubectl("get", "hts,hrp,hsq", "-n", namespace, "-o", "name")
    assert len(out.stdout.split()) == 4, out.stdout


# --------------------------------------------------------------------------- validation


def _invalid_cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(INVALID.glob("*.yaml")):
        m = re.search(r"^# expect-error: (\S+)", path.read_text(), re.M)
        assert m, f"{path.name}: no '# expect-error:' header"
        cases.append((path.name, m.group(1)))
    return cases


@pytest.mark.parametrize("filename,field", _invalid_cases(), ids=[c[0] for c in _invalid_cases()])
def test_invalid_example_is_rejected(crds, namespace: str, filename: str, field: str) -> None:
    path = INVALID / filename
    (obj,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    out = apply(crds, namespace, "-f", str(path), check=False)
    assert out.returncode != 0, out.stdout
    assert field in out.stderr, f"{field!r} not named in: {out.stderr!r}"
    if filename == "live-without-confirmation.yaml":
        assert LIVE_PHRASE in out.stderr
    gone = crds.kubectl("get", "-n", namespace, obj["kind"].lower(), obj["metadata"]["name"],
                        check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr


@pytest.mark.parametrize(
    "spec,needles",
    [
        # CEL sees defaulted objects: emaSlowPeriod defaults to 100.
        ({"params": {"emaFastPeriod": 150}}, ["spec.params.emaFastPeriod", "less than"]),
        ({"mode": "testnet"}, ["spec.credentialsSecretRef"]),
        ({"mode": "live", "liveConfirmation": "yes", "credentialsSecretRef": {"name": "b"}},
         ["spec.liveConfirmation", LIVE_PHRASE]),
        ({"symbols": ["BTCUSDT", "BTCUSDT"]}, ["spec.symbols[1]", "Duplicate"]),
        ({"symbols": []}, ["spec.symbols"]),
        ({"capital": 1e10}, ["spec.capital"]),
        ({"category": "inverse"}, ["spec.category"]),
        ({"maxLeverage": 101}, ["spec.maxLeverage"]),
        ({"marketData": {"replay": {"interval": "15"}}}, ["spec.marketData.replay.interval"]),
        ({"execution": {"slippageBps": 501}}, ["spec.execution.slippageBps"]),
        ({"params": {"riskPerTradeFraction": 0.5}}, ["spec.params.riskPerTradeFraction"]),
        ({"params": {"maxVolatilityPercentile": 100}}, ["spec.params.maxVolatilityPercentile"]),
        ({"strategy": "martingale"}, ["spec.strategy", "supported values"]),
        ({"strategy": "grid", "params": {"grid": {"levels": 500}}}, ["spec.params.grid.levels", "200"]),
        ({"params": {"grid": {}}}, ["spec.params.grid", "only allowed when spec.strategy is 'grid'"]),
        ({"strategy": "scalping", "params": {"scalping": {"imbalanceThreshold": 1}}},
         ["spec.params.scalping.imbalanceThreshold"]),
        ({"scanner": {"universe": ["BTCUSDT"], "topN": 2}}, ["spec.scanner.topN"]),
    ],
    ids=lambda v: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v[0],
)
def test_more_invalid_strategies(crds, namespace: str, spec: dict, needles: list[str]) -> None:
    assert_rejected(crds, namespace, strategy("bad", **spec), *needles)


def test_unknown_fields_are_rejected(crds, namespace: str) -> None:
    """Fully structural schemas: a typo fails kubectl's strict field validation."""
    obj = strategy("typo")
    obj["spec"]["params"] = {"emaFast": 5}
    assert_rejected(crds, namespace, obj, 'unknown field "spec.params.emaFast"')


def test_unknown_strategy_parameters_are_rejected(crds, namespace: str) -> None:
    obj = strategy("typo-grid")
    obj["spec"]["strategy"] = "grid"
    obj["spec"]["params"] = {"grid": {"level": 5}}
    assert_rejected(crds, namespace, obj, 'unknown field "spec.params.grid.level"')


def test_every_strategy_example_is_accepted(crds, namespace: str) -> None:
    apply(crds, namespace, "-k", str(EXAMPLES / "strategies"))
    out = crds.kubectl("get", "-n", namespace, "hts", "-o", "jsonpath={.items[*].spec.strategy}")
    assert {"momentum", "grid", "scalping", "funding_harvest", "basis_arbitrage", "impulse"} <= set(out.stdout.split())
    # the API server filled the sub-object defaults from the generated schema
    grid = json.loads(crds.kubectl("get", "-n", namespace, "hts", "sol-grid", "-o", "json").stdout)
    assert grid["spec"]["params"]["grid"]["levels"] == 11 and grid["spec"]["params"]["grid"]["levelNotionalUsdt"] == 300


def test_strategy_name_length_is_bounded(crds, namespace: str) -> None:
    assert_rejected(crds, namespace, strategy("a" * 57), "metadata.name", "56")
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("a" * 56)))


def test_live_strategy_with_phrase_and_secret_is_accepted(crds, namespace: str) -> None:
    obj = strategy("live", mode="live", liveConfirmation=LIVE_PHRASE,
                   credentialsSecretRef={"name": "bybit"}, marketData={"source": "live"})
    apply(crds, namespace, "-f", "-", input=json.dumps(obj))
    ref = get_json(crds, namespace, "tradingstrategy", "live")["spec"]["credentialsSecretRef"]
    assert ref == {"name": "bybit", "apiKeyKey": "apiKey", "apiSecretKey": "apiSecret"}


def test_updates_are_validated_too(crds, namespace: str) -> None:
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("upd")))
    out = crds.kubectl("patch", "-n", namespace, "tradingstrategy", "upd", "--type=merge",
                       "-p", json.dumps({"spec": {"mode": "live"}}), check=False)
    assert out.returncode != 0 and "spec.liveConfirmation" in out.stderr, out.stderr
    spec = get_json(crds, namespace, "tradingstrategy", "upd")["spec"]
    assert spec["mode"] == "paper"


@pytest.mark.parametrize(
    "spec,needles",
    [
        ({"softMaxDrawdownPercent": 10, "hardMaxDrawdownPercent": 10},
         ["spec.softMaxDrawdownPercent", "less than"]),
        ({"softMaxDrawdownPercent": 12}, ["spec.softMaxDrawdownPercent"]),  # hard defaults to 10
        ({"maxDailyLossUsdt": 0}, ["spec.maxDailyLossUsdt"]),
        ({"softBrakeSizeFactor": 2}, ["spec.softBrakeSizeFactor"]),
        ({"volatilityRegimes": {"highPercentile": 96}},  # extreme defaults to 95
         ["spec.volatilityRegimes.highPercentile", "less than"]),
        ({"flashCrash": {"escalateTo": "PANIC"}}, ["spec.flashCrash.escalateTo", "HARD_STOP"]),
        ({"orderRouter": {"mode": "limitFirst", "timeoutSeconds": 0}}, ["spec.orderRouter.timeoutSeconds"]),
        ({"profitCapture": {"trailFraction": 1}}, ["spec.profitCapture.trailFraction"]),
    ],
    ids=lambda v: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v[0],
)
def test_invalid_risk_policies(crds, namespace: str, spec: dict, needles: list[str]) -> None:
    obj = {"apiVersion": "hean.io/v1alpha1", "kind": "RiskPolicy", "metadata": {"name": "bad"},
           "spec": {"maxDailyLossUsdt": 500, "maxPositionNotionalUsdt": 20000, **spec}}
    assert_rejected(crds, namespace, obj, *needles)


@pytest.mark.parametrize(
    "spec,needles",
    [
        ({}, ["exactly one of spec.expiresAt or spec.ttlSeconds"]),
        ({"ttlSeconds": 60, "symbol": "sol"}, ["spec.symbol"]),
        ({"ttlSeconds": 60, "reason": ""}, ["spec.reason"]),
        ({"ttlSeconds": 31536001}, ["spec.ttlSeconds"]),
        ({"expiresAt": "tomorrow"}, ["spec.expiresAt"]),
        ({"ttlSeconds": 60,
          "strategySelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
         ["spec.strategySelector.matchExpressions[0].values"]),
    ],
    ids=lambda v: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v[0],
)
def test_invalid_quarantines(crds, namespace: str, spec: dict, needles: list[str]) -> None:
    obj = {"apiVersion": "hean.io/v1alpha1", "kind": "SymbolQuarantine",
           "metadata": {"name": "bad"},
           "spec": {"symbol": "SOLUSDT", "reason": "test", **spec}}
    assert_rejected(crds, namespace, obj, *needles)


# --------------------------------------------------------------------------- defaults


def test_defaults_are_applied(crds, namespace: str) -> None:
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("minimal")))
    spec = get_json(crds, namespace, "tradingstrategy", "minimal")["spec"]
    assert spec["mode"] == "paper"
    assert spec["category"] == "linear"
    assert spec["maxLeverage"] == 1
    assert spec["paused"] is False
    # the API server's defaults must be the worker's defaults
    from hean.worker.config import ImpulseParams

    assert spec["params"] == ImpulseParams().model_dump(exclude_none=True)
    assert spec["marketData"] == {
        "source": "replay", "replay": {"interval": "1", "speed": 600, "loop": False},
    }
    assert spec["execution"] == {"slippageBps": 2}
    assert "liveConfirmation" not in spec and "credentialsSecretRef" not in spec

    policy = {"apiVersion": "hean.io/v1alpha1", "kind": "RiskPolicy",
              "metadata": {"name": "minimal"},
              "spec": {"maxDailyLossUsdt": 500, "maxPositionNotionalUsdt": 20000}}
    apply(crds, namespace, "-f", "-", input=json.dumps(policy))
    spec = get_json(crds, namespace, "riskpolicy", "minimal")["spec"]
    assert spec == {
        "maxDailyLossUsdt": 500, "maxPositionNotionalUsdt": 20000,
        "softMaxDrawdownPercent": 5, "hardMaxDrawdownPercent": 10, "maxLeverage": 3,
        "maxOpenPositions": 5, "maxOrdersPerMinute": 60, "softBrakeSizeFactor": 0.5,
    }
    # a safety block given empty gets the worker's defaults from the API server
    from hean.worker.config import RiskPolicySpec

    policy["metadata"]["name"] = "blocks"
    policy["spec"].update(flashCrash={}, orderRouter={})
    apply(crds, namespace, "-f", "-", input=json.dumps(policy))
    spec = get_json(crds, namespace, "riskpolicy", "blocks")["spec"]
    model = RiskPolicySpec.model_validate(spec)
    assert spec["flashCrash"] == {"enabled": False, "dropPercent": 3, "windowSeconds": 10, "source": "both",
                                  "escalateTo": "HARD_STOP", "holdSeconds": 300}
    assert model.flashCrash == RiskPolicySpec.model_fields["flashCrash"].default
    assert model.orderRouter == RiskPolicySpec.model_fields["orderRouter"].default


# --------------------------------------------------------------------------- UX


def test_explain_shows_descriptions(crds) -> None:
    def explained() -> None:
        out = crds.kubectl("explain", "tradingstrategy.spec.capital", check=False)
        assert out.returncode == 0, out.stderr
        assert "Starting equity of the paper account, in USDT" in " ".join(out.stdout.split())

    eventually(explained, timeout=60)
    out = crds.kubectl("explain", "tradingstrategy.spec.params")
    for field in ("emaFastPeriod", "emaSlowPeriod", "riskPerTradeFraction", "impulseThreshold"):
        assert field in out.stdout
    out = crds.kubectl("explain", "riskpolicy.spec.softBrakeSizeFactor")
    assert "SOFT_BRAKE" in out.stdout
    out = crds.kubectl("explain", "symbolquarantine.spec.ttlSeconds")
    assert "creationTimestamp" in " ".join(out.stdout.split())
    out = crds.kubectl("explain", "tradingstrategy.status.conditions.reason")
    assert "CamelCase" in out.stdout


def header(kube, namespace: str, resource: str, *extra: str) -> list[str]:
    out = kube.kubectl("get", resource, "-n", namespace, *extra)
    return out.stdout.splitlines()[0].split()


def test_printer_columns(crds, namespace: str) -> None:
    apply(crds, namespace, "-k", str(EXAMPLES))
    assert header(crds, namespace, "tradingstrategies") == [
        "NAME", "STRATEGY", "MODE", "READY", "RISK", "EQUITY", "PNL", "DRAWDOWN%", "AGE"]
    assert header(crds, namespace, "tradingstrategies", "-o", "wide") == [
        "NAME", "STRATEGY", "MODE", "READY", "RISK", "EQUITY", "PNL", "DRAWDOWN%", "AGE",
        "SYMBOLS", "POSITIONS", "HEARTBEAT"]
    assert header(crds, namespace, "riskpolicies") == [
        "NAME", "SOFTDD%", "HARDDD%", "DAILYLOSS", "MAXLEV", "STRATEGIES", "WORST", "AGE"]
    assert header(crds, namespace, "symbolquarantines") == [
        "NAME", "SYMBOL", "REASON", "ACTIVE", "EXPIRES", "AGE"]
    row = crds.kubectl("get", "riskpolicy", "default", "-n", namespace, "--no-headers").stdout
    assert row.split()[:5] == ["default", "5", "10", "500", "3"], row


# --------------------------------------------------------------------------- status


WORKER_STATUS = {
    "riskState": "NORMAL", "riskReasons": [], "tradingActive": True,
    "equity": "10012.5", "realizedPnl": "15", "unrealizedPnl": "-1.25", "fees": "1.25",
    "pnl": "12.5", "drawdownPercent": "0.4", "openPositions": 1,
    "positions": [{"symbol": "BTCUSDT", "side": "Buy", "size": "0.01",
                   "entryPrice": "65000", "markPrice": "64875", "unrealizedPnl": "-1.25"}],
    "trades": 2, "orders": 5, "lastHeartbeat": "2026-01-01T00:00:00Z",
    "notTradingReasons": [{"reason": "COOLDOWN", "count": 3}],
    "replay": {"cursor": "2024-01-01T00:00:00Z", "progress": "0.5", "done": False},
    "workerObservedGeneration": 1,
}


def test_status_subresource_accepts_operator_and_worker_keys(crds, namespace: str) -> None:
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("st")))
    operator_status = {
        "observedGeneration": 1, "phase": "Running", "workerPod": "st-worker", "restarts": 0,
        "conditions": [{"type": "Ready", "status": "True", "reason": "WorkerRunning",
                        "message": "worker is trading",
                        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}],
    }
    for status in (operator_status, WORKER_STATUS):
        crds.kubectl("patch", "-n", namespace, "tradingstrategy", "st", "--subresource=status",
                     "--type=merge", "-p", json.dumps({"status": status}))
    got = get_json(crds, namespace, "tradingstrategy", "st")["status"]
    assert got["equity"] == "10012.5" and got["conditions"][0]["type"] == "Ready"
    row = crds.kubectl("get", "tradingstrategy", "st", "-n", namespace, "--no-headers",
                       "-o", "wide").stdout.split()
    assert row[:8] == ["st", "impulse", "paper", "True", "NORMAL", "10012.5", "12.5", "0.4"], row

    # Schema violations in status are rejected as well.
    for bad, needle in (
        ({"equity": "lots"}, "status.equity"),
        ({"riskState": "PANIC"}, "status.riskState"),
        ({"conditions": [{"type": "Ready", "status": "Maybe", "reason": "X", "message": "",
                          "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
         "status.conditions[0].status"),
        ({"conditions": [{"type": "Ready", "status": "True", "reason": "not valid!",
                          "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
         "status.conditions[0].reason"),
    ):
        out = crds.kubectl("patch", "-n", namespace, "tradingstrategy", "st",
                           "--subresource=status", "--type=merge",
                           "-p", json.dumps({"status": bad}), check=False)
        assert out.returncode != 0 and needle in out.stderr, (bad, out.stderr)


def test_status_is_ignored_on_the_main_resource(crds, namespace: str) -> None:
    obj = strategy("nostatus")
    obj["status"] = {"phase": "Running"}
    apply(crds, namespace, "-f", "-", input=json.dumps(obj))
    got = get_json(crds, namespace, "tradingstrategy", "nostatus")
    assert "status" not in got or "phase" not in got.get("status", {})


def test_risk_policy_and_quarantine_status(crds, namespace: str) -> None:
    apply(crds, namespace, "-k", str(EXAMPLES))
    crds.kubectl("patch", "-n", namespace, "riskpolicy", "default", "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": {
                     "observedGeneration": 1, "strategies": 2, "worstState": "SOFT_BRAKE",
                     "states": {"NORMAL": 1, "SOFT_BRAKE": 1}}}))
    row = crds.kubectl("get", "riskpolicy", "default", "-n", namespace, "--no-headers").stdout
    assert row.split()[5:7] == ["2", "SOFT_BRAKE"], row
    crds.kubectl("patch", "-n", namespace, "symbolquarantine", "solusdt-maintenance",
                 "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                     "observedGeneration": 1, "active": True, "affectedStrategies": 0,
                     "expiresAt": "2030-01-01T00:00:00Z"}}))
    row = crds.kubectl("get", "symbolquarantine", "solusdt-maintenance", "-n", namespace,
                       "-o", "wide", "--no-headers").stdout
    assert "true" in row and "2030-01-01T00:00:00Z" in row, row


# --------------------------------------------------------------------------- Helm chart

CHART = ROOT / "helm" / "hean"


def test_helm_chart_renders_crds_and_valid_objects(crds, namespace: str) -> None:
    """The chart's crds/ symlink is followed, and what it renders passes the API
    server (dry run) including Pod Security "restricted" for the operator pod."""
    lint = crds.helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in lint.stdout, lint.stdout + lint.stderr
    rendered = crds.helm("template", "hean", str(CHART), "-n", namespace, "--include-crds",
                         "--set", "commonLabels.release=kube-prometheus-stack",
                         "--set", "tests.enabled=false").stdout  # helm test hooks: tests/e2e/test_helm_chart.py
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = sorted(d["kind"] for d in docs)
    # monitoring + Redis objects (issue 6) are covered in tests/e2e/test_helm_chart.py
    assert kinds == sorted(["CustomResourceDefinition"] * 3 + [
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "NetworkPolicy",
        "NetworkPolicy"] + ["ConfigMap"] * 6 + ["Secret", "Service", "Service", "StatefulSet"]), kinds
    for d in docs:
        if d["kind"] != "CustomResourceDefinition":
            assert d["metadata"]["labels"]["release"] == "kube-prometheus-stack", d["kind"]
            assert d["metadata"]["labels"]["helm.sh/chart"] == "hean-0.1.0"

    objects = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    out = crds.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", "-",
                       input=yaml.safe_dump_all(objects))
    assert out.stdout.count("(server dry run)") == len(objects), out.stdout

    # Pod Security "restricted" admits the operator pod.
    crds.kubectl("label", "namespace", namespace,
                 "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    sa = next(d for d in objects if d["kind"] == "ServiceAccount")
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(sa))
    template = next(d for d in objects if d["kind"] == "Deployment")["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "hean-operator", "labels": template["metadata"]["labels"]},
           "spec": template["spec"]}
    out = crds.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", "-",
                       input=json.dumps(pod), check=False)
    assert out.returncode == 0, out.stderr
    assert "violates PodSecurity" not in out.stderr, out.stderr
