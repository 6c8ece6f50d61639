"""Bad input (issue 7): several hundred invalid TradingStrategy, RiskPolicy and
SymbolQuarantine manifests, derived from the CRD schemas by
:mod:`hean.testing.crdfuzz`, applied to the real API server.

* Every one is rejected (nothing is stored) with an answer naming each mutated
  field, both through the API with ``fieldValidation=Strict`` and through
  ``kubectl apply`` (whose default is server-side strict field validation). The
  answers are classified as OpenAPI-schema, CEL or strict-decoding (unknown field)
  rejections.
* Unknown fields without strict validation: accepted and pruned (``Ignore``), or
  accepted with a warning naming the field (``Warn``); shown with dry runs.
* Cross-object problems the schema cannot see are accepted and reported by the
  running operator as ``Ready=False`` with a reason; the operator does not restart,
  stays live, and reconciles the same objects to ``Ready=True`` once the problems
  are fixed.

Counts are printed (``-s``) and written to ``$HEAN_CRD_FUZZ_REPORT`` (JSON) if set;
docs/reliability.md ("Bad input") records them. A larger run:
``HEAN_CRD_FUZZ_COMBOS=5000 HEAN_CRD_FUZZ_SEED=11 .venv/bin/python -m pytest -s
tests/e2e/test_crd_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from hean.deploy import OPERATOR_NAMESPACE, RELEASE, install
from hean.testing import wait_for
from hean.testing.crdfuzz import BASE, BASES, KINDS, Case, cel_messages, generate

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
GROUP, VERSION = "hean.io", "v1alpha1"
COMBOS = int(os.environ.get("HEAN_CRD_FUZZ_COMBOS", "150"))
SEED = int(os.environ.get("HEAN_CRD_FUZZ_SEED", "7"))
SKIP_NOTE = "some validation rules were not checked"
PARALLEL = 3  # requests / kubectl processes in flight at once
REPORT: dict = {}


def norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module", autouse=True)
def report():
    """Print the counts gathered by the tests (``-s``) and write them to
    ``$HEAN_CRD_FUZZ_REPORT`` if set."""
    yield REPORT
    if REPORT:
        print("\nCRD fuzz:", json.dumps(REPORT, indent=1))
        path = os.environ.get("HEAN_CRD_FUZZ_REPORT")
        if path:
            Path(path).write_text(json.dumps(REPORT, indent=1) + "\n")


@pytest.fixture(scope="module")
def crds(kube):
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=hean-crds", "-f", str(CRD_DIR))
    for plural, _ in KINDS.values():
        # `kubectl wait` fails outright while a new CRD has no conditions yet.
        wait_for(lambda: kube.kubectl("wait", "--for=condition=Established", f"crd/{plural}.{GROUP}",
                                      "--timeout=30s", check=False).returncode == 0,
                 90, interval=0.5, message=f"CRD {plural}.{GROUP} Established")
    return kube


@pytest.fixture(scope="module")
def custom(crds):
    from kubernetes import client

    api = crds.api_client()
    yield client.CustomObjectsApi(api)
    api.close()


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return generate(CRD_DIR, seed=SEED, combos=COMBOS)


def create(custom, namespace: str, c: Case | dict, **kw):
    obj = c.obj if isinstance(c, Case) else c
    plural = KINDS[obj["kind"]][0]
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj, **kw)


def classify(status: int, body: dict, cel: list[str]) -> str:
    """``strict`` (unknown field, 400), ``cel`` (every cause is a CEL rule's
    message), ``schema`` (OpenAPI schema, possibly with CEL causes too)."""
    if status == 400 and "strict decoding error" in body.get("message", ""):
        return "strict"
    causes = [c for c in (body.get("details") or {}).get("causes") or [] if SKIP_NOTE not in c.get("message", "")]
    is_cel = [any(m in norm(c.get("message", "")) for m in cel) for c in causes]
    return "cel" if causes and all(is_cel) else "schema"


def test_the_base_objects_are_valid(custom, namespace) -> None:
    """Each mutation starts from an object the API server accepts (dry run): every
    base of every kind (one per strategy, Bybit, promotion, every safety block, ...)."""
    checked = 0
    for kind, bases in BASES.items():
        for label, spec in bases:
            obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": "base"}, "spec": spec}
            got = create(custom, namespace, obj, field_validation="Strict", dry_run="All")
            assert set(spec) <= set(got["spec"]), (kind, label)  # nothing pruned
            checked += 1
    assert checked == sum(len(b) for b in BASES.values()) >= 12
    REPORT["base_objects"] = checked


def test_every_invalid_manifest_is_rejected_naming_the_field(custom, crds, namespace, cases) -> None:
    from kubernetes.client.exceptions import ApiException

    cel = cel_messages(CRD_DIR)
    assert len(cases) >= 300 + COMBOS, len(cases)
    t0 = time.monotonic()
    outcome: dict[str, str] = {}
    rules_hit: set[str] = set()
    failures = []

    def attempt(c: Case):
        try:
            create(custom, namespace, c, field_validation="Strict")
        except ApiException as e:
            return c, e
        return c, None

    # A few requests in flight at once (the API server handles them concurrently);
    # the answers are checked one by one.
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        answers = list(pool.map(attempt, cases))
    for c, e in answers:
        if e is None:
            failures.append(f"ACCEPTED {c.kind} {c.category} {c.label}")
            continue
        body = json.loads(e.body)
        assert e.status in (400, 422), (c.label, e.status, body)
        msg = body.get("message", "")
        missing = [f for f in c.fields if f not in msg]
        if missing:
            failures.append(f"{c.kind} {c.label}: {missing} not named in {msg[:400]}")
        outcome[c.name] = classify(e.status, body, cel)
        rules_hit.update(m for m in cel if m in norm(msg))
    api_seconds = time.monotonic() - t0
    assert not failures, "\n".join(failures[:40])
    # A rejected manifest changes nothing.
    for plural, _ in KINDS.values():
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
        assert items == [], [i["metadata"]["name"] for i in items]

    counts = Counter(outcome.values())
    by_category = Counter(c.category for c in cases)
    REPORT.update({"seed": SEED, "combos": COMBOS, "generated": len(cases),
                   "by_kind": dict(Counter(c.kind for c in cases)), "by_category": dict(by_category),
                   "rejected_by_schema": counts["schema"], "rejected_by_cel": counts["cel"],
                   "rejected_unknown_field_strict": counts["strict"], "accepted": 0,
                   "api_seconds": round(api_seconds, 1)})
    # Every CEL contradiction is a CEL rejection; every unknown field a strict one.
    for c in cases:
        if c.category == "cel":
            assert outcome[c.name] == "cel", c.label
        if c.category == "unknown-field":
            assert outcome[c.name] == "strict", c.label
    assert counts["schema"] + counts["cel"] + counts["strict"] == len(cases)
    # Every CEL rule of the three CRDs rejected at least one manifest.
    assert set(cel) <= rules_hit, sorted(set(cel) - rules_hit)
    REPORT["cel_rules_hit"] = len(rules_hit)


ERROR_LINE = re.compile(r'^Error from server \((\w+)\): error when creating "STDIN": (.*)$')


def test_kubectl_apply_rejects_the_whole_corpus(crds, namespace, cases) -> None:
    """The same corpus through ``kubectl apply`` (server-side strict field
    validation by default since kubectl 1.27; in 3 parts applied at once): one
    error line per manifest, naming
    the object (except strict-decoding errors, which kubectl reports without it)
    and every mutated field."""
    # libyaml's dumper when present: the same text, 7x faster than pure-Python PyYAML.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    texts = [yaml.dump_all([c.obj for c in cases[i::PARALLEL]], Dumper=dumper, sort_keys=False, width=10**9)
             for i in range(PARALLEL)]
    t0 = time.monotonic()
    # The corpus in PARALLEL interleaved parts, one `kubectl apply` each, at once.
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        outs = list(pool.map(lambda part: crds.kubectl("apply", "-n", namespace, "-f", "-", input=part,
                                                       check=False, timeout=300), texts))
    REPORT["kubectl_seconds"] = round(time.monotonic() - t0, 1)
    assert all(out.returncode != 0 for out in outs)
    stdout = "".join(out.stdout for out in outs)
    stderr = "".join(out.stderr for out in outs)
    assert stdout.strip() == "", stdout[:2000]  # nothing created or configured
    lines = [m for m in map(ERROR_LINE.match, stderr.splitlines()) if m]
    assert len(lines) == len(cases), (len(lines), len(cases), stderr[-2000:])
    by_name = {c.name: c for c in cases}
    named = {}
    strict_lines = []
    for m in lines:
        found = re.match(r'[A-Za-z]+\.hean\.io "([^"]+)" is invalid', m.group(2))
        if found:
            named[found.group(1)] = m.group(2)
        else:
            assert "strict decoding error: unknown field" in m.group(2), m.group(0)[:500]
            strict_lines.append(m.group(2))
    for name, line in named.items():
        missing = [f for f in by_name[name].fields if f not in line]
        assert not missing, (name, by_name[name].label, missing, line[:400])
    # Strict-decoding lines carry no object name: match them by their unknown fields.
    unnamed = [c for c in cases if c.name not in named]
    assert len(unnamed) == len(strict_lines)
    # Most specific fields first: "spec.x" would also match the line of "spec.x[0].y".
    for c in sorted(unnamed, key=lambda c: -max(len(f) for f in c.fields)):
        hit = [i for i, line in enumerate(strict_lines) if all(f"unknown field \"{f}" in line for f in c.fields)]
        assert hit, (c.label, c.fields, [line[:300] for line in strict_lines])
        strict_lines.pop(hit[0])


def test_unknown_fields_without_strict_validation_are_pruned_or_warned(custom, namespace, cases) -> None:
    """``fieldValidation=Ignore`` (what old clients get) silently prunes unknown
    fields (structural schemas); ``Warn`` accepts with a ``Warning`` header naming
    the field. Dry runs: nothing is stored."""
    unknown = [c for c in cases if c.category == "unknown-field"]
    assert len(unknown) >= 10
    for c in unknown:
        got = create(custom, namespace, c, field_validation="Ignore", dry_run="All")
        assert "fuzzUnknownField" not in json.dumps(got), c.label
        _, status, headers = custom.create_namespaced_custom_object_with_http_info(
            GROUP, VERSION, namespace, c.plural, c.obj, field_validation="Warn", dry_run="All")
        assert status == 201
        warning = headers.get("Warning") or ""
        assert "unknown field" in warning and c.fields[0] in warning, (c.label, warning)
    REPORT["unknown_field_non_strict_checked"] = len(unknown)


# --------------------------------------------------------------------------- operator


@pytest.fixture(scope="module")
def operator(crds, marketdata_dir):
    """The chart's operator (helm upgrade --install is idempotent), uninstalled after
    this module: later modules (tests/e2e/test_crd_validation.py) write status by hand
    and need no operator reconciling their objects."""
    install(crds.helm, marketdata_dir)
    yield crds
    crds.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "120s", check=False)


def operator_pod(kube) -> dict:
    pods = kube.get("pods", namespace="hean-system")["items"]
    pods = [p for p in pods if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "operator"
            and not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def restarts(pod: dict) -> int:
    return sum(cs.get("restartCount", 0) for cs in pod["status"].get("containerStatuses") or [])


def cond(obj: dict | None, type_: str) -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c
    return {}


def test_cross_object_problems_are_ready_false_and_the_operator_keeps_going(operator, custom, namespace) -> None:
    kube = operator
    before = operator_pod(kube)
    ns = namespace

    def obj(kind, name, spec, labels=None):
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                "metadata": {"name": name, "labels": labels or {"hean.io/desk": "fuzz"}}, "spec": spec}

    paper = {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 10000,
             "riskPolicyRef": {"name": "fz-late-policy"},
             "marketData": {"source": "replay", "replay": {"interval": "1", "speed": 60}}}
    live = {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 10000, "mode": "live",
            "liveConfirmation": "I_UNDERSTAND_LIVE_TRADING", "credentialsSecretRef": {"name": "no-such-secret"},
            "riskPolicyRef": {"name": "fz-late-policy"}, "marketData": {"source": "live"}}
    accepted = [
        # (object, condition type, expected reason, text the message must contain)
        (obj("TradingStrategy", "fz-no-policy-a", paper), "Ready", "RiskPolicyNotFound", "fz-late-policy"),
        (obj("TradingStrategy", "fz-no-policy-b", {**paper, "symbols": ["ETHUSDT"]}), "Ready",
         "RiskPolicyNotFound", "fz-late-policy"),
        (obj("TradingStrategy", "fz-live-gated", live), "Ready", "LiveTradingDisabled", "liveTrading.enabled"),
        (obj("SymbolQuarantine", "fz-nobody-selected",
             {"symbol": "BTCUSDT", "reason": "fuzz", "ttlSeconds": 3600,
              "strategySelector": {"matchLabels": {"hean.io/desk": "nobody"}}}),
         "Ready", "NoMatchingStrategies", "spec.strategySelector"),
        (obj("SymbolQuarantine", "fz-untraded-symbol", {"symbol": "XRPUSDT", "reason": "fuzz", "ttlSeconds": 3600}),
         "Ready", "NoMatchingStrategies", "XRPUSDT"),
    ]
    for o, *_ in accepted:
        create(custom, ns, o, field_validation="Strict")

    def plural(o):
        return KINDS[o["kind"]][0]

    def get(o):
        return custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural(o), o["metadata"]["name"])

    t0 = time.monotonic()
    for o, type_, reason, text in accepted:
        c = wait_for(lambda: (lambda c: c if c.get("reason") == reason else None)(cond(get(o), type_)), 60,
                     message=f"{o['metadata']['name']}: {type_}=False/{reason}")
        assert c["status"] == "False" and text in c["message"], c
    ready_false_seconds = time.monotonic() - t0
    assert get(accepted[2][0])["status"]["phase"] == "Failed"
    with pytest.raises(Exception):  # the gated live strategy gets no pod
        kube.kubectl("get", "pod", "-n", ns, "fz-live-gated-worker")

    # Fix the problems: the same operator reconciles every object to Ready=True.
    create(custom, ns, obj("RiskPolicy", "fz-late-policy", BASE["RiskPolicy"]), field_validation="Strict")
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "tradingstrategies", "fz-no-policy-a",
                                          {"metadata": {"labels": {"hean.io/desk": "nobody"}}})
    for o, want in ((accepted[0][0], "True"), (accepted[1][0], "True"), (accepted[3][0], "True")):
        wait_for(lambda: cond(get(o), "Ready").get("status") == want, 120,
                 message=f"{o['metadata']['name']}: Ready={want} after the fix")
    s = get(accepted[0][0])
    assert cond(s, "PolicyResolved")["status"] == "True"
    assert s["status"]["observedGeneration"] == s["metadata"]["generation"]

    # The operator never restarted and is live.
    after = operator_pod(kube)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert restarts(after) == restarts(before), (restarts(before), restarts(after))
    if kube.is_local:
        r = httpx.get(f"http://{after['status']['podIP']}:8081/healthz", timeout=5)
        assert r.status_code == 200, r.text
    REPORT.update({"accepted_ready_false": len(accepted), "ready_false_within_seconds": round(ready_false_seconds, 1),
                   "operator_restarts": restarts(after) - restarts(before)})
