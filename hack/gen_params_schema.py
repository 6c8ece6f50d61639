"""Print the CRD schema (YAML) of each strategy's ``spec.params.<key>`` sub-object
from its pydantic model (hean.worker.strategies.params), so the CRD and the models
cannot drift: ``python hack/gen_params_schema.py`` and paste into
crds/tradingstrategies.hean.io.yaml (tests/unit/test_crds_static.py compares)."""

from __future__ import annotations

import json
import sys


def field_schema(name: str, js: dict) -> dict:
    """One property's structural schema (OpenAPI v3.0: boolean exclusive bounds)."""
    node = dict(js)
    if "anyOf" in node:  # Optional[X]: X without a default
        node = {**[a for a in node["anyOf"] if a.get("type") != "null"][0], "description": js.get("description", "")}
    out: dict = {"description": node.get("description", name), "type": node["type"]}
    if out["type"] == "integer":
        out["format"] = "int32" if abs(node.get("maximum", 0)) < 2**31 else "int64"
    if "minimum" in node:
        out["minimum"] = node["minimum"]
    if "exclusiveMinimum" in node:
        out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if "maximum" in node:
        out["maximum"] = node["maximum"]
    if "exclusiveMaximum" in node:
        out["maximum"], out["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if "default" in js and js["default"] is not None:
        out["default"] = js["default"]
    return out


def params_schemas() -> dict[str, dict]:
    """``{key: schema}`` of every strategy's sub-object (not impulse's flat fields)."""
    from hean.worker.strategies.params import PARAMS

    out = {}
    for strategy, (key, model) in PARAMS.items():
        if key is None:
            continue
        js = model.model_json_schema()
        doc = " ".join((model.__doc__ or "").split())
        out[key] = {
            "description": f"Parameters of strategy '{strategy}' (validated again by the operator: "
                           f"cross-field rules give Ready=False naming the field). {doc}"[:1500],
            "type": "object",
            "properties": {k: field_schema(k, v) for k, v in js["properties"].items()},
        }
    return out


if __name__ == "__main__":
    import yaml

    sys.stdout.write(yaml.safe_dump(params_schemas(), sort_keys=False, width=100))
    json.dumps({})
