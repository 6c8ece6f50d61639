"""End to end on the local control plane: a ``testnet`` TradingStrategy trades against
the Bybit-v5-compatible test exchange (running in this pytest process on loopback;
the worker pod reaches it through the operator's ``HEAN_BYBIT_TESTNET_URL``, set with
the chart's ``extraEnv``). Orders are placed, filled and reconciled; faults injected
while it trades (timeouts after accept, 10006 with and without headers, HTTP 5xx,
rejects, partial fills, dropped WebSockets, a book gap, a clock jump) produce no duplicate order,
no lost or doubled fill and no unhandled exception; the keys appear nowhere; a
testnet -> live change is an Event naming who made it, and the live gate holds.

Local harness only: on kind the pods cannot reach the pytest process's loopback.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from decimal import Decimal

import httpx
import pytest
import yaml

from exchange.fixtures import bybit_exchange  # noqa: F401 - fixture
from hean.testing import wait_for
from hean.deploy import OPERATOR_NAMESPACE, RELEASE, install

pytestmark = pytest.mark.e2e
GROUP, VERSION = "hean.io", "v1alpha1"


@pytest.fixture(scope="module")
def operator_for_testnet(kube, marketdata_dir, bybit_exchange, tmp_path_factory):
    if not kube.is_local:
        pytest.skip("the test exchange listens on this machine's loopback; local harness only")
    env = [{"name": "HEAN_BYBIT_TESTNET_URL", "value": bybit_exchange.rest_url},
           {"name": "HEAN_WORKER_STATE_ROOT", "value": str(tmp_path_factory.mktemp("worker-state"))}]
    install(kube.helm, marketdata_dir, extra=["--set-json", "extraEnv=" + json.dumps(env)])
    yield bybit_exchange
    # Leave the session as other modules expect it: no operator running (modules that
    # need one install it themselves; the CRDs stay, Helm never deletes them).
    kube.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "120s", check=False)


def apply(kube, ns, *objs):
    kube.kubectl("apply", "-n", ns, "-f", "-", input="\n---\n".join(yaml.safe_dump(o) for o in objs))


def test_testnet_strategy_trades_reconciles_and_survives_faults(kube, namespace, operator_for_testnet):
    x = operator_for_testnet
    key, secret = "tk" + secrets.token_hex(8), secrets.token_hex(16)
    x.add_account(key, secret, Decimal("100000"))
    x.accounts[key].dcp_allowed = True
    apply(kube, namespace,
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bybit-keys"},
           "stringData": {"apiKey": key, "apiSecret": secret}},
          {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": "pol"},
           "spec": {"maxDailyLossUsdt": 100000, "maxPositionNotionalUsdt": 3000, "hardMaxDrawdownPercent": 90,
                    "softMaxDrawdownPercent": 80, "maxOrdersPerMinute": 6000}},
          {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy", "metadata": {"name": "tn"},
           "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "mode": "testnet", "capital": 10000,
                    "riskPolicyRef": {"name": "pol"}, "credentialsSecretRef": {"name": "bybit-keys"},
                    "marketData": {"source": "live"},
                    "bybit": {"orderbookDepth": 200, "reconcileSeconds": 6, "deadManSwitchSeconds": 60,
                              "recvWindowMs": 7000, "staleSeconds": 3},
                    "params": {"emaFastPeriod": 2, "emaSlowPeriod": 3, "volatilityWindow": 5, "impulseLookback": 1,
                               "impulseThreshold": 0.1, "atrPeriod": 2, "stopLossAtr": 0.3, "takeProfitAtr": 0.3,
                               "cooldownBars": 0, "riskPerTradeFraction": 0.01}}})
    from kubernetes import client

    api = kube.api_client()
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)

    def strategy():
        return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "tradingstrategies", "tn")

    def ready():
        conds = {c["type"]: c for c in (strategy().get("status") or {}).get("conditions") or []}
        return conds.get("Ready", {}).get("status") == "True" and conds
    wait_for(ready, 90, message="Ready=True")

    def worker(path):
        ip = core.read_namespaced_pod("tn-worker", namespace).status.pod_ip
        r = httpx.get(f"http://{ip}:8080{path}", timeout=5)
        r.raise_for_status()
        return r.json() if path != "/metrics/bybit" else r.text

    execs = lambda: x.accounts[key].executions  # noqa: E731
    wait_for(lambda: worker("/bybit")["exchange"]["reconciled"] and len(execs()) >= 4, 60,
             message="reconciled and trading on the test exchange")

    # the worker pod honours spec.bybit (it reads its own spec)
    snap = worker("/bybit")
    assert snap["connection"] == {"orderbook_depth": 200, "stale_seconds": 3, "reconcile_seconds": 6,
                                  "dcp_seconds": 60, "recv_window_ms": 7000, "source": "spec"}
    assert x.accounts[key].recv_windows == {7000}
    assert (x.accounts[key].dcp_window_s, x.accounts[key].dcp_product) == (60, "DERIVATIVES")
    assert snap["exchange"]["deadManSwitch"] == "armed"
    assert any("orderbook.200.BTCUSDT" in t for t in x.subs.values())
    n = snap["exchange"]["counters"]["reconciles"]
    wait_for(lambda: worker("/bybit")["exchange"]["counters"]["reconciles"] >= n + 2, 20,
             message="reconciliations every 6 s (spec.bybit.reconcileSeconds)")

    # faults while it trades
    x.inject("timeout_after_accept", "/v5/order/create", delay=6)
    x.inject("rate_limit", "/v5/order/create", headers=True, reset_in_ms=300)
    x.inject("rate_limit", "/v5/order/create", headers=False)
    x.inject("http_status", "/v5/order/create", status=502)
    x.inject("reject", "/v5/order/create", retCode=110007, retMsg="ab not enough for new order")
    x.inject("partial_fill")
    x.inject("seq_gap", symbol="BTCUSDT")
    x.set_clock_skew(15_000)  # the exchange's clock jumps ahead: 10002 until the worker re-measures
    n0 = len(execs())
    wait_for(lambda: not [f for f in x.faults if f.path == "/v5/order/create"], 60, message="faults consumed")
    x.inject("ws_drop", channel="both")
    wait_for(lambda: len(execs()) >= n0 + 6, 60, message="trading after the faults")
    wait_for(lambda: worker("/bybit")["exchange"]["counters"].get("outcome_unknown", 0) >= 2, 30,
             message="both ambiguous creates (502, timeout after accept) resolved")
    x.autoplay = False  # no more candles: no more decisions
    time.sleep(2)

    def consistent():
        ledger = worker("/ledger")
        booked = sorted(f["execId"] for f in ledger["fills"] if not f["execId"].startswith("reconcile-"))
        return booked == sorted(e["execId"] for e in execs()) and ledger
    ledger = wait_for(consistent, 45, message="every exchange execution booked exactly once")
    pos = x.accounts[key].positions.get("BTCUSDT")
    mine = sum((Decimal(p["size"]) for p in ledger["positions"] if p["symbol"] == "BTCUSDT"), Decimal(0))
    assert mine == (pos.size if pos else 0)
    assert all(n == 1 for (k, _), n in x.order_creates.items() if k == key), "an order was created twice"
    snap = worker("/bybit")
    ex = snap["exchange"]
    assert ex["counters"]["outcome_unknown"] >= 2 and ex["counters"].get("orders_found_by_lookup", 0) >= 1
    assert ex["clientErrors"]["rate_limited"] >= 2 and ex["rejects"].get("EXCHANGE_INSUFFICIENT_BALANCE") == 1
    assert snap["marketData"]["counters"]["gaps"] >= 1 and snap["marketData"]["reconnects"] >= 1
    assert ex["privateStream"]["reconnects"] >= 1 and ex["clientErrors"]["clock_fixed"] >= 1
    x.set_clock_skew(0)
    metrics = worker("/metrics/bybit")
    assert 'hean_worker_bybit_rejects_total{mode="testnet"' in metrics and "hean_worker_bybit_book_gaps_total" in metrics

    # a position change the worker did not make (e.g. a manual trade) is repaired toward
    # the exchange at the reconciliation that follows a private-stream reconnect, and
    # posted as an Event
    acct = x.accounts[key]
    acct.positions["BTCUSDT"].size += Decimal("0.002")
    x.inject("ws_drop", channel="private")
    wait_for(lambda: [e for e in core.list_namespaced_event(namespace).items
                      if e.reason == "ReconcileRepaired" and "positionRepairs=1" in e.message],
             45, message="ReconcileRepaired event with positionRepairs=1")
    ledger = worker("/ledger")
    assert sum((Decimal(p["size"]) for p in ledger["positions"]), Decimal(0)) == acct.positions["BTCUSDT"].size
    x.autoplay = True

    # a stale feed (no public frame for 6 s; spec.bybit.staleSeconds is 3) is detected,
    # counted and exposed, and trading resumes when frames come back
    stale0 = worker("/bybit")["marketData"]["counters"].get("stale", 0)
    x.inject("stale", seconds=6)
    wait_for(lambda: worker("/bybit")["marketData"]["stale"], 15, message="stale feed detected")
    wait_for(lambda: worker("/bybit")["blockedReason"] == "MARKET_DATA_STALE", 5, message="entries blocked")
    wait_for(lambda: not worker("/bybit")["marketData"]["stale"], 30, message="fresh again")
    assert worker("/bybit")["marketData"]["counters"]["stale"] > stale0
    metrics = worker("/metrics/bybit")
    assert re.search(r'hean_worker_bybit_marketdata_stale_events_total\{[^}]*\} [1-9]', metrics), metrics
    assert re.search(r'hean_worker_bybit_ws_reconnects_total\{[^}]*stream="private"[^}]*\} [1-9]', metrics)

    # the keys appear nowhere
    logs = kube.logs(namespace, "tn-worker")
    assert "Traceback" not in logs, logs[-3000:]
    evs = core.list_namespaced_event(namespace).items
    for text in (logs, json.dumps(strategy()), metrics, json.dumps(snap),
                 json.dumps([e.message for e in evs]), kube.kubectl("get", "pod", "tn-worker", "-n", namespace,
                                                                     "-o", "json").stdout):
        assert key not in text and secret not in text

    # testnet -> live: an Event names the manager; the live gate (operator switch off) holds
    kube.kubectl("patch", "tradingstrategy", "tn", "-n", namespace, "--type=merge", "--field-manager=e2e-go-live",
                 "-p", json.dumps({"spec": {"mode": "live", "liveConfirmation": "I_UNDERSTAND_LIVE_TRADING"}}))
    ev = wait_for(lambda: [e for e in core.list_namespaced_event(namespace).items if e.reason == "ModeChanged"], 30,
                  message="ModeChanged event")
    assert "'testnet' to 'live'" in ev[0].message and "e2e-go-live" in ev[0].message
    wait_for(lambda: {c["type"]: c for c in strategy()["status"]["conditions"]}["Ready"]["reason"]
             == "LiveTradingDisabled", 30, message="Ready=False/LiveTradingDisabled")

    def pod_gone():
        try:
            core.read_namespaced_pod("tn-worker", namespace)
            return False
        except client.exceptions.ApiException as e:
            return e.status == 404
    wait_for(pod_gone, 60, message="the testnet worker is removed, no live worker created")
    api.close()


def test_spot_testnet_strategy_trades_long_only_and_matches_the_wallet(kube, namespace, operator_for_testnet):
    """``category: spot`` through a real worker pod: spot instruments and the
    ``/v5/public/spot`` stream, Market orders in base coin (``marketUnit``), no
    ``reduceOnly``, no short, every execution booked once, the ledger's position equal to
    the wallet's base coin (less any sub-step dust written off)."""
    x = operator_for_testnet
    key, secret = "ts" + secrets.token_hex(8), secrets.token_hex(16)
    x.add_account(key, secret, Decimal("100000"))
    apply(kube, namespace,
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bybit-keys"},
           "stringData": {"apiKey": key, "apiSecret": secret}},
          {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": "pol"},
           "spec": {"maxDailyLossUsdt": 100000, "maxPositionNotionalUsdt": 3000, "hardMaxDrawdownPercent": 90,
                    "softMaxDrawdownPercent": 80, "maxOrdersPerMinute": 6000}},
          {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy", "metadata": {"name": "sp"},
           "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "category": "spot", "mode": "testnet",
                    "capital": 10000, "riskPolicyRef": {"name": "pol"}, "credentialsSecretRef": {"name": "bybit-keys"},
                    "marketData": {"source": "live"},
                    "params": {"emaFastPeriod": 2, "emaSlowPeriod": 3, "volatilityWindow": 5, "impulseLookback": 1,
                               "impulseThreshold": 0.1, "atrPeriod": 2, "stopLossAtr": 0.3, "takeProfitAtr": 0.3,
                               "cooldownBars": 0, "riskPerTradeFraction": 0.01}}})
    from kubernetes import client

    api = kube.api_client()
    core = client.CoreV1Api(api)

    def worker(path):
        ip = core.read_namespaced_pod("sp-worker", namespace).status.pod_ip
        r = httpx.get(f"http://{ip}:8080{path}", timeout=5)
        r.raise_for_status()
        return r.json()

    acct = x.accounts[key]
    sells = lambda: [e for e in acct.executions if e["side"] == "Sell"]  # noqa: E731
    wait_for(lambda: len(sells()) >= 2, 120, message="spot round trips on the test exchange")
    x.autoplay = False  # no more candles: no more decisions
    try:
        time.sleep(2)
        orders = list(acct.orders.values())
        assert orders and all(o.category == "spot" and not o.reduce_only for o in orders)
        first_buy = next(o for o in orders if o.side == "Buy")
        assert first_buy.qty < 1  # base coin (marketUnit baseCoin), not a USDT amount
        assert all(e["category"] == "spot" for e in acct.executions)

        def consistent():
            ledger = worker("/ledger")
            booked = sorted(f["execId"] for f in ledger["fills"]
                            if not f["execId"].startswith(("reconcile-", "dust-")))
            return booked == sorted(e["execId"] for e in acct.executions) and ledger
        ledger = wait_for(consistent, 45, message="every spot execution booked exactly once")
        mine = sum((Decimal(p["size"]) for p in ledger["positions"] if p["symbol"] == "BTCUSDT"), Decimal(0))
        dust = sum((Decimal(f["qty"]) for f in ledger["fills"] if f["execId"].startswith("dust-")), Decimal(0))
        assert mine >= 0 and mine + dust == acct.coins.get("BTC", Decimal(0))
        assert all(n == 1 for (k, _), n in x.order_creates.items() if k == key), "an order was created twice"
        snap = worker("/bybit")
        assert snap["exchange"]["reconciled"] and not snap["exchange"]["rejects"].get("EXCHANGE_PARAMETER_ERROR")
        logs = kube.logs(namespace, "sp-worker")
        assert "Traceback" not in logs, logs[-3000:]
    finally:
        x.autoplay = True
        api.close()
