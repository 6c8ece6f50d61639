"""``spec.bybit`` on the real API server: defaults applied, bad values rejected on
create and on update (schema and CEL) with the field named, nothing stored when
rejected; good values accepted. The worker honouring the values is proven in
tests/unit/test_bybit_spec.py and, through a real worker pod, in
tests/e2e/test_bybit_testnet.py."""

from __future__ import annotations

import json

import pytest

from test_crd_validation import apply, assert_rejected, crds, get_json, strategy  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e

LIVE_DATA = {"marketData": {"source": "live"}}
TESTNET = {"mode": "testnet", "credentialsSecretRef": {"name": "k"}, **LIVE_DATA}


def test_defaults_of_spec_bybit(crds, namespace: str) -> None:
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("bd", bybit={}, **LIVE_DATA)))
    spec = get_json(crds, namespace, "tradingstrategy", "bd")["spec"]
    from hean.worker.config import BybitSpec

    assert spec["bybit"] == BybitSpec().model_dump() == {
        "orderbookDepth": 50, "staleSeconds": 10, "reconcileSeconds": 30, "deadManSwitchSeconds": 0,
        "recvWindowMs": 5000}
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("nob", **LIVE_DATA)))
    assert "bybit" not in get_json(crds, namespace, "tradingstrategy", "nob")["spec"]


def test_good_values_are_accepted(crds, namespace: str) -> None:
    good = {"orderbookDepth": 1000, "staleSeconds": 1, "reconcileSeconds": 3600, "deadManSwitchSeconds": 3,
            "recvWindowMs": 60000}
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("bg", bybit=good, **TESTNET)))
    assert get_json(crds, namespace, "tradingstrategy", "bg")["spec"]["bybit"] == good


@pytest.mark.parametrize("spec,needles", [
    ({"bybit": {"orderbookDepth": 25}, **LIVE_DATA}, ["spec.bybit.orderbookDepth", "1000"]),
    ({"bybit": {"orderbookDepth": 500}, **LIVE_DATA}, ["spec.bybit.orderbookDepth"]),
    ({"bybit": {"deadManSwitchSeconds": 2}, **TESTNET}, ["spec.bybit.deadManSwitchSeconds", "3..300"]),
    ({"bybit": {"deadManSwitchSeconds": 301}, **TESTNET}, ["spec.bybit.deadManSwitchSeconds"]),
    ({"bybit": {"deadManSwitchSeconds": 30}, **LIVE_DATA}, ["spec.bybit.deadManSwitchSeconds", "exchange mode"]),
    ({"bybit": {"staleSeconds": 0.5}, **LIVE_DATA}, ["spec.bybit.staleSeconds"]),
    ({"bybit": {"reconcileSeconds": 4}, **LIVE_DATA}, ["spec.bybit.reconcileSeconds"]),
    ({"bybit": {"recvWindowMs": 999}, **LIVE_DATA}, ["spec.bybit.recvWindowMs"]),
    ({"bybit": {}}, ["spec.bybit", "marketData.source 'live'"]),
], ids=lambda v: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v[0])
def test_bad_values_are_rejected(crds, namespace: str, spec: dict, needles: list[str]) -> None:
    assert_rejected(crds, namespace, strategy("bb", **spec), *needles)


def test_updates_of_spec_bybit_are_validated(crds, namespace: str) -> None:
    apply(crds, namespace, "-f", "-", input=json.dumps(strategy("bu", bybit={"orderbookDepth": 200}, **TESTNET)))
    out = crds.kubectl("patch", "-n", namespace, "tradingstrategy", "bu", "--type=merge",
                       "-p", json.dumps({"spec": {"bybit": {"orderbookDepth": 7}}}), check=False)
    assert out.returncode != 0 and "spec.bybit.orderbookDepth" in out.stderr, out.stderr
    out = crds.kubectl("patch", "-n", namespace, "tradingstrategy", "bu", "--type=merge",
                       "-p", json.dumps({"spec": {"marketData": {"source": "replay"}, "mode": "paper"}}), check=False)
    assert out.returncode != 0 and "spec.bybit" in out.stderr, out.stderr
    assert get_json(crds, namespace, "tradingstrategy", "bu")["spec"]["bybit"]["orderbookDepth"] == 200
