"""The Dockerfile cannot be built here (no container engine): keep it honest against
the chart — stages, non-root user, no compilers in the runtime stage, and the
entrypoints the chart and the operator run from the image."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def stages() -> list[dict]:
    out, cur = [], None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            cur = {"base": m.group(1), "name": m.group(2), "lines": []}
            out.append(cur)
        elif cur is not None:
            cur["lines"].append(line)
    return out


def test_multi_stage_build_and_slim_non_root_runtime():
    st = stages()
    assert len(st) >= 2, "a builder stage and a runtime stage"
    build, run = st[0], st[-1]
    assert any("pip wheel" in l for l in build["lines"]) and any("g++" in l for l in build["lines"])
    assert run["base"].endswith("-slim")
    runtime = "\n".join(run["lines"])
    assert not re.search(r"\b(g\+\+|gcc|cmake|ninja-build|build-essential)\b", runtime), "no compilers at runtime"
    assert re.search(r"COPY --from=" + re.escape(build["name"]), runtime)
    values = yaml.safe_load((ROOT / "helm/hean/values.yaml").read_text())
    deploy = (ROOT / "helm/hean/templates/deployment.yaml").read_text()
    uid = re.search(r"runAsUser: (\d+)", deploy).group(1)
    user = re.search(r"^USER (\d+)(?::(\d+))?$", runtime, re.M)
    assert user and user.group(1) == uid, "the image's USER must be the chart's runAsUser (runAsNonRoot)"
    assert re.search(rf"useradd[^\n]*--uid {uid}\b", runtime)
    # the operator runs `python -m hean.operator`, the workers `python -m hean.worker`, both from this image
    assert 'command: ["python", "-m", "hean.operator"]' in deploy
    assert "hean.worker" in runtime  # default CMD
    reconcile = (ROOT / "operator/reconcile.py").read_text()
    assert '"python", "-m", "hean.worker"' in reconcile
    assert values["image"]["repository"] and "HEAN_WORKER_IMAGE" in deploy
    # python is on PATH in the runtime image (the python base) and the package is installed
    assert run["base"].startswith("python:") and "pip install" in runtime
    assert re.search(r"ENV [^\n]*PYTHONDONTWRITEBYTECODE=1", runtime), "read-only root filesystem: no .pyc writes"
