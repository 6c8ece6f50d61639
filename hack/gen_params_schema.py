"""Print the CRD schema (YAML) of each strategy's ``spec.params.<key>`` sub-object
from its pydantic model (hean.worker.strategies.params), so the CRD and the models
cannot drift: ``python hack/gen_params_schema.py --write`` rewrites those blocks of
crds/tradingstrategies.hean.io.yaml in place (tests/unit/test_crds_static.py compares)."""

from __future__ import annotations

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


def write_crd(path) -> None:
    """Replace each ``spec.params.<key>`` block of the CRD file at ``path`` in place."""
    import yaml

    lines = open(path).read().split("\n")
    start = lines.index("                params:")
    for key, node in params_schemas().items():
        head = lines.index(f"                    {key}:", start)
        end = head + 1
        while end < len(lines) and (lines[end].startswith(" " * 21) or not lines[end].strip()):
            end += 1
        text = yaml.safe_dump({key: node}, sort_keys=False, width=90).rstrip("\n").split("\n")
        lines[head:end] = [" " * 20 + t for t in text]
    open(path, "w").write("\n".join(lines))


if __name__ == "__main__":
    import yaml

    if sys.argv[1:2] == ["--write"]:
        write_crd(sys.argv[2] if len(sys.argv) > 2 else "crds/tradingstrategies.hean.io.yaml")
    else:
        sys.stdout.write(yaml.safe_dump(params_schemas(), sort_keys=False, width=100))
