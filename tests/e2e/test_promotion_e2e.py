"""Progressive promotion end to end: the operator (Helm-installed, live trading
enabled, ``HEAN_PROMETHEUS_URL`` pointing at a real Prometheus that scrapes the
worker pods) walks TradingStrategies through paper -> testnet -> live capital steps
on the local control plane, trading on the Bybit-v5 test exchange (which plays the
real recorded BTCUSDT/ETHUSDT candles of ../shared/marketdata).

Four strategies run at once (one install, one Prometheus; about a minute):

* ``good`` - small positions (its RiskPolicy caps notional at 300 USDT): passes the
  gates and the PromQL analysis and walks paper -> testnet -> live-1 (approval) ->
  live-2 (approval) -> Succeeded, its worker pod replaced at each step with the
  stage's mode and capital fraction;
* ``bad`` - the same signals at 5x leverage and 50,000 USDT notional: on the real
  candles its fees and stop-outs lose fast, so the analysis (net PnL of its pod
  from Prometheus) that passed after its first trades in paper fails at testnet:
  flattened, demoted to paper, ``Stalled=True``, not retried;
* ``overfit`` - its trades cover fewer volatility/trend regimes than its gates
  require: refused in paper with the gate's reason in ``status.promotion``;
* ``held`` - a SymbolQuarantine on its symbol pauses the promotion; deleting the
  quarantine resumes it (the soak starts over);
* then new params on ``good``: the candidate revision runs in a shadow paper pod
  ``good-candidate`` beside the promoted revision (still live) and is compared with it.

Local harness only (the pods reach the test exchange and Prometheus on loopback).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
import urllib.request
from decimal import Decimal

import pytest
import yaml

from exchange.fixtures import bybit_exchange  # noqa: F401 - fixture
from hean.deploy import OPERATOR_NAMESPACE, RELEASE, install
from hean.testing import wait_for
from test_obs_prometheus import PROMETHEUS, PodSD, free_port, has_kubernetes_sd, prom_config

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing: apt-get install "
                                                                              "prometheus (.ci/run installs it)")]
GROUP, VERSION = "hean.io", "v1alpha1"
PHRASE = "I_UNDERSTAND_LIVE_TRADING"
# fast signals on 1-minute candles (the test exchange plays 10 candles a second)
FAST = {"emaFastPeriod": 2, "emaSlowPeriod": 3, "volatilityWindow": 5, "impulseLookback": 1,
        "impulseThreshold": 0.1, "atrPeriod": 2, "stopLossAtr": 0.3, "takeProfitAtr": 0.3, "cooldownBars": 0,
        "riskPerTradeFraction": 0.01}
PNL = 'sum(hean_worker_pnl_usdt{namespace="{{namespace}}", pod="{{pod}}"})'


def analysis(threshold: float) -> dict:
    return {"queries": [{"name": "net-pnl", "query": PNL, "successCondition": f"result >= {threshold}",
                         "failureCondition": f"result < {threshold}"}],
            "intervalSeconds": 1, "count": 2, "inconclusiveLimit": 20}


@pytest.fixture(scope="module")
def env(kube, marketdata_dir, bybit_exchange, tmp_path_factory):
    if not kube.is_local:
        pytest.skip("the test exchange and Prometheus listen on this machine's loopback; local harness only")
    tmp = tmp_path_factory.mktemp("promotion")
    ns = f"hean-p-{secrets.token_hex(3)}"
    kube.kubectl("create", "namespace", ns)
    wait_for(lambda: kube.kubectl("get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0,
             timeout=60, interval=0.2, message="default ServiceAccount")
    port = free_port()
    podsd = None if has_kubernetes_sd(PROMETHEUS, tmp) else PodSD(kube)
    cfg = tmp / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(prom_config(kube.kubeconfig, ns, podsd.url if podsd else None)))
    log = open(tmp / "prometheus.log", "w")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 30,
                 message="prometheus ready")
        x = bybit_exchange
        extra = [{"name": "HEAN_PROMETHEUS_URL", "value": url},
                 {"name": "HEAN_WORKER_STATE_ROOT", "value": str(tmp / "state")}]
        extra += [{"name": f"HEAN_BYBIT_{m}_URL", "value": x.rest_url} for m in ("PAPER", "TESTNET", "LIVE")]
        install(kube.helm, marketdata_dir, extra=["--set-json", "extraEnv=" + json.dumps(extra),
                                                  "--set", "liveTrading.enabled=true"])
        yield ns, x, url
    finally:
        kube.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "120s",
                  check=False)
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        if podsd is not None:
            podsd.server.shutdown()
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()
        log.close()


def revision(params: dict) -> str:
    """Recomputed here: 16 hex of SHA-256 over the canonical JSON of spec.params."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def test_good_walks_bad_is_demoted_overfit_is_refused_quarantine_pauses(kube, env):
    ns, x, prom_url = env
    objs = []
    keys = {}

    def account(name):
        key, secret = "pk" + secrets.token_hex(8), secrets.token_hex(16)
        keys[name] = key
        x.add_account(key, secret, Decimal("1000000"))
        objs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-keys"},
                     "stringData": {"apiKey": key, "apiSecret": secret}})
        return {"name": f"{name}-keys"}

    def policy(name, notional, leverage=1):
        objs.append({"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": name},
                     "spec": {"maxDailyLossUsdt": 1e6, "maxPositionNotionalUsdt": notional, "maxLeverage": leverage,
                              "softMaxDrawdownPercent": 80, "hardMaxDrawdownPercent": 90,
                              "maxOrdersPerMinute": 6000}})

    def strategy(name, symbol, promotion, pol, leverage=1, live=False, capital=10000):
        spec = {"strategy": "impulse", "symbols": [symbol], "capital": capital, "maxLeverage": leverage,
                "riskPolicyRef": {"name": pol}, "marketData": {"source": "live"}, "params": FAST,
                "promotion": promotion}
        if "testnet" in promotion["stages"]:
            spec["credentialsSecretRef"] = account(name)
        if live:
            spec["liveConfirmation"] = PHRASE
        objs.append({"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy", "metadata": {"name": name},
                     "spec": spec})

    policy("small", 300)
    policy("big", 50000, leverage=5)
    gates = {"minClosedTrades": 2, "minRegimes": 1, "minTradesPerRegime": 1, "minWeightedPnlUsdt": -1e6,
             "maxHoldoutDropUsdt": 1e6, "regimeWindowBars": 10}
    strategy("good", "BTCUSDT", {"stages": ["paper", "testnet", "live"], "capitalSteps": [0.5, 1.0],
                                 "soakSeconds": {"paper": 0, "testnet": 4, "live": 3}, "analysis": analysis(-150),
                                 "approval": {"requiredAboveFraction": 0.5}, "gates": gates}, "small", live=True)
    # "bad" pays about 60-80 USDT of fees and slippage per round trip at its 50,000 USDT cap and
    # trades about once a second on the candles the exchange replays: its PnL is above -2,500
    # when its paper analysis runs (right after its first labelled trades) and about -5,000
    # after the 35 s testnet soak (its clock starts when the testnet pod is Ready)
    strategy("bad", "ETHUSDT", {"stages": ["paper", "testnet"], "soakSeconds": {"paper": 0, "testnet": 35},
                                "analysis": analysis(-2500), "gates": gates}, "big", leverage=5, capital=100000)
    strategy("overfit", "BTCUSDT", {"stages": ["paper"], "soakSeconds": {"paper": 0},
                                    "gates": {**gates, "minRegimes": 4, "minTradesPerRegime": 25}}, "small")
    strategy("held", "ETHUSDT", {"stages": ["paper"], "soakSeconds": {"paper": 3600}}, "small")
    kube.kubectl("apply", "-n", ns, "-f", "-", input="\n---\n".join(yaml.safe_dump(o) for o in objs))
    t0 = time.monotonic()

    def promo(name):
        st = kube.get("tradingstrategy", name, namespace=ns)
        return st, (st.get("status") or {}).get("promotion") or {}

    def events(reason=None):
        items = kube.get("events", namespace=ns)["items"]
        return [e for e in items if reason is None or e["reason"] == reason]

    # ---- the quarantine pauses "held"; deleting it resumes the soak ------------------------
    wait_for(lambda: promo("held")[1].get("state") == "Soaking", 60, message="held soaking")
    started = promo("held")[1]["stageStartedAt"]
    kube.apply({"apiVersion": f"{GROUP}/{VERSION}", "kind": "SymbolQuarantine", "metadata": {"name": "eth-halt"},
                "spec": {"symbol": "ETHUSDT", "reason": "exchange maintenance", "ttlSeconds": 3600,
                         "strategySelector": {"matchLabels": {"hean.io/test-held": "yes"}}}}, namespace=ns)
    kube.kubectl("label", "tradingstrategy", "held", "-n", ns, "hean.io/test-held=yes")
    _, p = wait_for(lambda: (lambda r: r if r[1].get("state") == "Paused" else None)(promo("held")), 30,
                    message="held paused by the quarantine")
    assert "SymbolQuarantine active on ETHUSDT" in p["message"]
    st, _ = promo("held")
    cond = {c["type"]: c for c in st["status"]["conditions"]}
    assert cond["Promoted"]["status"] == "False" and cond["Promoted"]["reason"] == "Paused"
    assert promo("bad")[1].get("state") != "Paused", "the selector keeps the quarantine to 'held'"
    kube.kubectl("delete", "symbolquarantine", "eth-halt", "-n", ns)
    wait_for(lambda: promo("held")[1].get("state") == "Soaking", 30, message="held resumed")
    assert promo("held")[1]["stageStartedAt"] > started
    assert {"PromotionPaused", "PromotionResumed"} <= {e["reason"] for e in events()}

    # ---- the overfit one is refused with the reason in status ------------------------------
    _, p = wait_for(lambda: (lambda r: r if r[1].get("state") == "Refused" else None)(promo("overfit")), 90,
                    message="overfit refused")
    st, _ = promo("overfit")
    cond = {c["type"]: c for c in st["status"]["conditions"]}
    assert cond["Stalled"]["status"] == "True" and cond["Stalled"]["reason"] == "OverfitRefused"
    gates_by = {g["name"]: g for g in p["gates"]}
    assert not gates_by["regimeCoverage"]["passed"] and "need 4" in gates_by["regimeCoverage"]["message"]
    assert "regimeCoverage" in p["message"] and p["analysisResults"][-1]["phase"] == "Refused"
    assert p["failedRevision"] == revision(st["spec"]["params"])

    # ---- the good one walks, with approvals ---------------------------------------------------
    good_rev = revision(kube.get("tradingstrategy", "good", namespace=ns)["spec"]["params"])
    seen_modes = []

    def approve(gate):
        kube.kubectl("annotate", "tradingstrategy", "good", "-n", ns, "--overwrite",
                     f"hean.io/approve-promotion={good_rev}/{gate}")

    def walk():
        st, p = promo("good")
        pod = kube.get("pod", "good-worker", namespace=ns, check=False)
        if pod:
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
            m = (env.get("HEAN_EFFECTIVE_MODE"), env.get("HEAN_CAPITAL_FRACTION"))
            if not seen_modes or seen_modes[-1] != m:
                seen_modes.append(m)
        if p.get("state") == "AwaitingApproval":
            assert p["awaitingApproval"] in (f"{good_rev}/live-1", f"{good_rev}/live-2"), p
            approve(p["awaitingApproval"].split("/")[1])
        assert p.get("state") not in ("Halted", "Demoted", "Flattening", "Refused"), p
        return p if p.get("state") == "Succeeded" else None
    p = wait_for(walk, 150, interval=0.5, message="good promoted through every step")
    assert p["candidateRevision"] == p["promotedRevision"] == good_rev
    assert (p["stage"], p["step"], p["capitalFraction"], p["effectiveMode"]) == ("live", 1, 1.0, "live")
    assert [r["gate"] for r in p["analysisResults"] if r["phase"] == "Successful"][-4:] == [
        "paper", "testnet", "live-1", "live-2"]
    assert seen_modes[-1] == ("live", "1.0"), seen_modes
    steps = [e["message"] for e in events("PromotionStepSucceeded") if e["involvedObject"]["name"] == "good"]
    assert any("paper -> testnet" in m for m in steps) and any("testnet -> live-1" in m for m in steps)
    assert any("live-1 -> live-2" in m for m in steps)
    assert len([e for e in events("PromotionApproved") if e["involvedObject"]["name"] == "good"]) >= 2
    st, _ = promo("good")
    cond = {c["type"]: c for c in st["status"]["conditions"]}
    assert cond["Promoted"]["status"] == "True" and cond["Promoted"]["reason"] == "Succeeded"
    # live means live: a worker ran in mode live (Prometheus saw it) and sent orders on the
    # exchange account of its Secret
    def seen(mode):
        q = json.loads(urllib.request.urlopen(f"{prom_url}/api/v1/query?query=" + urllib.request.quote(
            f'max(max_over_time(hean_worker_up{{namespace="{ns}", pod="good-worker", mode="{mode}"}}[5m]))'),
            timeout=5).read())
        return q["data"]["result"] and float(q["data"]["result"][0]["value"][1]) == 1.0
    for mode in ("paper", "testnet", "live"):  # each stage's pod was scraped (its analysis needed data)
        wait_for(lambda: seen(mode), 30, message=f"Prometheus scraped the good worker in mode {mode}")

    def capital(agg):  # the live steps traded 0.5 and then 1.0 of the 10,000 USDT capital
        q = json.loads(urllib.request.urlopen(f"{prom_url}/api/v1/query?query=" + urllib.request.quote(
            f'{agg}({agg}_over_time(hean_worker_capital_usdt{{namespace="{ns}", pod="good-worker", '
            f'mode="live"}}[5m]))'), timeout=5).read())
        return float(q["data"]["result"][0]["value"][1])
    assert (capital("min"), capital("max")) == (5000.0, 10000.0)
    assert x.accounts[keys["good"]].executions, "no order reached the exchange"

    # ---- new params: a candidate shadows the promoted revision (Argo's Experiment) ------------
    kube.kubectl("patch", "tradingstrategy", "good", "-n", ns, "--type=merge",
                 "-p", json.dumps({"spec": {"params": {"cooldownBars": 1}}}))
    cand_rev = revision(kube.get("tradingstrategy", "good", namespace=ns)["spec"]["params"])
    assert cand_rev != good_rev
    cand = wait_for(lambda: kube.get("pod", "good-candidate", namespace=ns, check=False), 30,
                    message="shadow pod good-candidate")
    cenv = {e["name"]: e.get("value") for e in cand["spec"]["containers"][0]["env"]}
    assert (cenv["HEAN_ROLE"], cenv["HEAN_EFFECTIVE_MODE"], cenv["HEAN_REVISION"]) == ("candidate", "paper", cand_rev)
    assert cand["metadata"]["labels"]["hean.io/role"] == "candidate"
    main = kube.get("pod", "good-worker", namespace=ns)
    menv = {e["name"]: e.get("value") for e in main["spec"]["containers"][0]["env"]}
    assert (menv["HEAN_EFFECTIVE_MODE"], menv["HEAN_REVISION"]) == ("live", good_rev), "the promoted keeps trading"
    assert json.loads(menv["HEAN_PARAMS_JSON"])["cooldownBars"] == 0

    def compared():
        _, p = promo("good")
        return p if any(g["name"] == "shadow" for g in p.get("gates") or []) else None
    p = wait_for(compared, 60, interval=0.5, message=lambda: f"shadow comparison: {promo('good')[1]}")
    assert (p["candidateRevision"], p["promotedRevision"]) == (cand_rev, good_rev)
    assert "vs promoted" in next(g for g in p["gates"] if g["name"] == "shadow")["message"]

    # ---- the bad one is demoted and not retried -----------------------------------------------
    def demoted():
        st, p = promo("bad")
        return (st, p) if p.get("state") == "Demoted" else None
    st, p = wait_for(demoted, 120, interval=0.5, message=lambda: f"bad demoted: {promo('bad')[1]}")
    assert p["stage"] == "paper" and p["failedRevision"] == revision(st["spec"]["params"])
    failed = [r for r in p["analysisResults"] if r["phase"] == "Failed"]
    assert failed and failed[-1]["gate"] == "testnet" and "net-pnl=" in failed[-1]["message"]
    assert [r["gate"] for r in p["analysisResults"] if r["phase"] == "Successful"] == ["paper"]
    cond = {c["type"]: c for c in st["status"]["conditions"]}
    assert cond["Stalled"]["status"] == "True" and cond["Stalled"]["reason"] == "AnalysisFailed"
    assert cond["Promoted"]["reason"] == "Demoted"
    assert {"PromotionFailed", "PromotionDemoted"} <= {e["reason"] for e in events()
                                                      if e["involvedObject"]["name"] == "bad"}
    pod = wait_for(lambda: (lambda pd: pd if pd and {e["name"]: e.get("value") for e in pd["spec"]["containers"][0][
        "env"]}.get("HEAN_EFFECTIVE_MODE") == "paper" else None)(kube.get("pod", "bad-worker", namespace=ns,
                                                                           check=False)), 60,
        message="bad worker back in paper")
    assert pod["spec"]["containers"][0]["env"]
    time.sleep(3)
    assert promo("bad")[1]["state"] == "Demoted", "a failed revision is not retried"
    print(f"promotion e2e: {time.monotonic() - t0:.1f}s after apply; bad: "
          + "; ".join(f"{r['gate']} {r['phase']} {r['message']}" for r in p["analysisResults"]))
