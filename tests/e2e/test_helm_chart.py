"""The Helm chart with the real helm binary on the real control plane: lint, every
rendered object of several value sets validated by server-side dry run, install /
upgrade / ``helm test`` / uninstall of a namespaced release, and RBAC checked with
``kubectl auth can-i`` as the operator's and a worker's ServiceAccounts."""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

from hean.api import GROUP, VERSION
from hean.deploy import OPERATOR_NAMESPACE, helm_install_args, install
from hean.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "hean"
MONITORING = ["--api-versions", "monitoring.coreos.com/v1/PodMonitor", "--api-versions",
              "monitoring.coreos.com/v1/ServiceMonitor", "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]


def render(kube, release, ns, *args) -> list[dict]:
    out = kube.helm("template", release, str(CHART), "--namespace", ns, "--include-crds", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_helm_lint_strict(kube):
    out = kube.helm("lint", "--strict", str(CHART), "--set", "watchNamespaces={a,b}")
    assert "0 chart(s) failed" in out.stdout
    bad = kube.helm("lint", "--strict", str(CHART), "--set", "redis.appendfsync=sometimes", check=False)
    assert bad.returncode != 0 and "appendfsync" in (bad.stdout + bad.stderr)


VALUE_SETS = {
    "defaults": [],
    "namespaced": ["--set", "watchNamespaces={NS}", "--set", "networkPolicy.workerNamespaces={NS}"],
    "external-redis": ["--set", "redis.enabled=false", "--set", "redis.external.existingSecret=my-redis",
                       "--set", "tmpVolume.enabled=false", "--set", "metrics.service.enabled=false"],
    "minimal": ["--set", "networkPolicy.enabled=false", "--set", "dashboards.enabled=false", "--set",
                "tests.enabled=false", "--set", "rbac.leases=false", "--set", "redis.auth.enabled=false"],
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_pass_server_side_dry_run(kube, namespace, name):
    args = [a.replace("NS", namespace) for a in VALUE_SETS[name]]
    docs = render(kube, "dry" + name[:6].replace("-", ""), namespace, *args, *MONITORING)
    mon = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    rest = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {d["kind"] for d in mon} <= {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
    # ServiceAccounts exist for real first (Pods' ServiceAccount admission needs them)
    sas = [d for d in rest if d["kind"] == "ServiceAccount"]
    if sas:
        kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                            "items": sas}))
    out = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                       input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rest}), check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(server dry run)") == len(rest)
    # monitoring.coreos.com CRDs are not on this control plane: static checks instead
    check_monitoring_objects(mon, namespace, name)


def check_monitoring_objects(mon: list[dict], ns: str, name: str) -> None:
    by_kind = {d["kind"]: d for d in mon}
    if name == "external-redis":
        assert "ServiceMonitor" not in by_kind  # needs the metrics Service
    else:
        sm = by_kind["ServiceMonitor"]["spec"]
        assert sm["endpoints"][0]["port"] == "metrics" and sm["namespaceSelector"]["matchNames"] == [ns]
    pm = by_kind["PodMonitor"]["spec"]
    assert pm["selector"]["matchLabels"]["app.kubernetes.io/name"] == "hean-worker"
    assert [(e["port"], e["path"], e["honorLabels"]) for e in pm["podMetricsEndpoints"]] == [
        ("http", "/metrics", True), ("http", "/metrics/bybit", True)]
    if name == "namespaced":
        assert pm["namespaceSelector"] == {"matchNames": [ns]}
    else:
        assert pm["namespaceSelector"] == {"any": True}
    rules = yaml.safe_load((ROOT / "monitoring" / "alerts" / "hean.rules.yaml").read_text())
    assert by_kind["PrometheusRule"]["spec"] == rules
    validate_against_upstream_schemas(mon)


NODE = shutil.which("node")
NPM_PREFIX = Path(os.environ.get("HEAN_NPM_PREFIX") or Path.home() / ".cache" / "hean" / "npm")
VALIDATOR = ROOT / "monitoring" / "validate-monitoring-objects.mjs"


def validate_against_upstream_schemas(objs: list[dict]) -> None:
    """The prometheus-operator's own schemas (npm @kubernetes-models/prometheus-operator,
    installed by .ci/run). Skipped, with a warning, where node or the package is missing."""
    if NODE is None or not (NPM_PREFIX / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir():
        warnings.warn("monitoring.coreos.com objects checked structurally only: node or "
                      "@kubernetes-models/prometheus-operator missing (see .ci/run)")
        return
    out = subprocess.run([NODE, str(VALIDATOR)], input=json.dumps(objs), capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HEAN_NPM_PREFIX": str(NPM_PREFIX)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("valid ") == len(objs)


def test_upstream_schema_validation_catches_a_bad_monitor(kube):
    if NODE is None or not (NPM_PREFIX / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir():
        pytest.skip("node or @kubernetes-models/prometheus-operator missing (see .ci/run)")
    docs = render(kube, "bad", "default", "--set", "metrics.assumeMonitoringAPI=true")
    pm = next(d for d in docs if d["kind"] == "PodMonitor")
    pm["spec"]["podMetricsEndpoints"] = "http"
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    out = subprocess.run([NODE, str(VALIDATOR)], input=json.dumps([pm, rule]), capture_output=True, text=True,
                         timeout=60, env={**os.environ, "HEAN_NPM_PREFIX": str(NPM_PREFIX)})
    assert out.returncode == 1
    assert "podMetricsEndpoints must be array" in out.stdout and "rules/0 must have required property expr" in out.stdout


def test_monitoring_objects_need_the_api_or_the_override(kube):
    kinds = {d["kind"] for d in render(kube, "gate", "default")}
    assert not kinds & {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
    forced = render(kube, "gate", "default", "--set", "metrics.assumeMonitoringAPI=true",
                    "--set", "metrics.podMonitor.additionalLabels.release=kps")
    pm = next(d for d in forced if d["kind"] == "PodMonitor")
    assert pm["metadata"]["labels"]["release"] == "kps"
    dash = [d for d in forced if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]]
    assert len(dash) == 5 and all(d["metadata"]["labels"]["grafana_dashboard"] == "1"
                                  and d["metadata"]["annotations"]["grafana_folder"] == "hean" for d in dash)
    for d in dash:
        (fname, text), = d["data"].items()
        assert json.loads(text)["uid"] == fname.removesuffix(".json")


def test_rendered_pods_pass_pod_security_restricted(kube, namespace):
    """Every pod the chart renders (operator, Redis, helm test pods) is admitted by Pod
    Security "restricted" on the real API server, and secrets reach env only by
    reference."""
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    docs = render(kube, "psa", namespace, "--set", "redis.enabled=true")
    sas = [d for d in docs if d["kind"] == "ServiceAccount"]
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                        "items": sas}))
    pods = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            t = d["spec"]["template"]
            pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": d["metadata"]["name"].lower(),
                                                                         "labels": t["metadata"]["labels"]},
                         "spec": t["spec"]})
        elif d["kind"] == "Pod":
            pods.append(d)
    assert {p["metadata"]["name"] for p in pods} == {"psa-hean-operator", "psa-hean-redis", "psa-hean-test-crds",
                                                     "psa-hean-test-operator"}
    for pod in pods:
        # StatefulSet PVC templates are not pod volumes: stand in an emptyDir for the dry run
        if pod["metadata"]["name"] == "psa-hean-redis":
            pod["spec"]["volumes"].append({"name": "data", "emptyDir": {}})
        out = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod),
                           check=False)
        assert out.returncode == 0 and "violates PodSecurity" not in out.stderr, (pod["metadata"]["name"], out.stderr)
        for c in pod["spec"]["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            for env in c.get("env") or []:
                if any(w in env["name"].lower() for w in ("password", "auth", "secret", "key")):
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], env["name"]
    # a privileged variant is refused: the check above can fail
    bad = json.loads(json.dumps(pods[0]))
    bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    out = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0 and "violates PodSecurity" in out.stderr


def test_install_upgrade_helm_test_rbac_uninstall(kube, namespace, marketdata_dir):
    rel = "ht" + "".join(random.choices(string.ascii_lowercase, k=5))
    args = helm_install_args(marketdata_dir, namespace)
    args[2] = rel  # release name
    ns_args = ["--set", f"watchNamespaces={{{namespace}}}"]
    kube.helm(*args, *ns_args)
    full = f"{rel}-hean"
    sa = f"system:serviceaccount:{namespace}:{full}"

    def can(*a, as_=sa):
        return kube.kubectl("auth", "can-i", *a, f"--as={as_}", check=False).stdout.strip() == "yes"

    try:
        out = kube.helm("test", rel, "-n", namespace, "--timeout", "120s")
        assert "Phase:          Succeeded" in out.stdout and out.stdout.count("Succeeded") >= 2, out.stdout
        # namespaced operator RBAC: its own namespace only, never Secrets
        assert can("create", "pods", "-n", namespace) and can("patch", "tradingstrategies.hean.io/status",
                                                              "-n", namespace)
        assert not can("create", "pods", "-n", "default")
        assert not can("list", "tradingstrategies.hean.io", "--all-namespaces")
        assert not can("get", "secrets", "-n", namespace) and not can("get", "secrets", "-n", "kube-system")
        assert can("get", "customresourcedefinitions.apiextensions.k8s.io")
        env = kube.get("deploy", f"{full}-operator", namespace=namespace)["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "HEAN_WATCH_NAMESPACES", "value": namespace} in env["env"]
        uid0 = kube.get("pods", namespace=namespace, )["items"]
        kube.helm(*args, *ns_args, "--set", "logLevel=DEBUG")
        pods = [p for p in kube.get("pods", namespace=namespace)["items"]
                if p["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
        assert len(pods) == 1 and {"name": "HEAN_LOG_LEVEL", "value": "DEBUG"} in pods[0]["spec"]["containers"][0]["env"]
        assert pods[0]["metadata"]["uid"] not in {p["metadata"]["uid"] for p in uid0}
        out = kube.helm("test", rel, "-n", namespace, "--timeout", "120s")
        assert "Succeeded" in out.stdout
        history = kube.helm("history", rel, "-n", namespace, "-o", "json").stdout
        assert [h["status"] for h in json.loads(history)][-1] == "deployed" and len(json.loads(history)) == 2
    finally:
        kube.helm("uninstall", rel, "-n", namespace, "--wait", "--timeout", "120s")
    assert kube.kubectl("get", "clusterrole", f"{full}-operator", check=False).returncode != 0
    assert kube.kubectl("get", "deploy", f"{full}-operator", "-n", namespace, check=False).returncode != 0
    # CRDs are install-only in Helm: they stay
    kube.kubectl("get", "crd", "tradingstrategies.hean.io")


def test_cluster_wide_operator_and_worker_rbac(kube, namespace, marketdata_dir):
    install(kube.helm, marketdata_dir)
    op = f"system:serviceaccount:{OPERATOR_NAMESPACE}:hean"

    def can(who, *a):
        return kube.kubectl("auth", "can-i", *a, f"--as={who}", check=False).stdout.strip() == "yes"

    assert can(op, "create", "pods", "-n", namespace) and can(op, "create", "roles.rbac.authorization.k8s.io",
                                                              "-n", namespace)
    assert can(op, "watch", "tradingstrategies.hean.io", "--all-namespaces")
    assert not can(op, "get", "secrets", "-n", namespace) and not can(op, "list", "secrets", "--all-namespaces")
    assert not can(op, "create", "clusterroles.rbac.authorization.k8s.io")
    policy = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RiskPolicy", "metadata": {"name": "default"},
              "spec": {"softMaxDrawdownPercent": 5, "hardMaxDrawdownPercent": 10, "maxDailyLossUsdt": 5000,
                       "maxPositionNotionalUsdt": 20000}}
    strat = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TradingStrategy", "metadata": {"name": "rbac"},
             "spec": {"strategy": "impulse", "symbols": ["BTCUSDT"], "capital": 1000, "paused": True,
                      "riskPolicyRef": {"name": "default"}}}
    kube.apply(policy, strat, namespace=namespace)
    wait_for(lambda: kube.get("rolebinding", "rbac-worker", namespace=namespace, check=False), 60,
             message="the operator to create the worker's Role and RoleBinding")
    w = f"system:serviceaccount:{namespace}:rbac-worker"
    for verb in ("get", "list", "watch"):
        for kind in ("tradingstrategies", "riskpolicies", "symbolquarantines"):
            assert can(w, verb, f"{kind}.hean.io", "-n", namespace), (verb, kind)
    assert can(w, "patch", "tradingstrategies.hean.io/rbac", "--subresource=status", "-n", namespace)
    assert can(w, "create", "events", "-n", namespace)
    assert not can(w, "patch", "tradingstrategies.hean.io/other", "--subresource=status", "-n", namespace)
    assert not can(w, "patch", "tradingstrategies.hean.io/rbac", "-n", namespace)  # spec is the user's
    assert not can(w, "get", "secrets", "-n", namespace) and not can(w, "list", "pods", "-n", namespace)
    assert not can(w, "get", "tradingstrategies.hean.io", "-n", OPERATOR_NAMESPACE)
    assert not can(w, "get", "tradingstrategies.hean.io", "-n", "default")


def test_crd_upgrade_script(kube):
    import os
    import subprocess

    env = {**os.environ, "KUBECTL": str(kube.bin_dir / "kubectl")}
    script = str(ROOT / "helm" / "upgrade-crds.sh")
    dry = subprocess.run([script, "--dry-run", "--kubeconfig", str(kube.kubeconfig)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("serverside-applied (server dry run)") == 3, dry.stdout
    real = subprocess.run([script, "--kubeconfig", str(kube.kubeconfig)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert real.returncode == 0, real.stderr
    assert real.stdout.count("condition met") == 3, real.stdout
