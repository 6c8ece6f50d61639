"""The invalid-manifest generator (hean.testing.crdfuzz) covers every field of the
three CRDs and is deterministic per seed. Its manifests are applied to a real API
server in tests/e2e/test_crd_fuzz.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hean.testing.crdfuzz import BASES, CEL_CASES, generate, load_spec_schemas

CRDS = Path(__file__).resolve().parents[2] / "crds"


def leaf_paths(schema: dict, prefix: str) -> set[str]:
    out = set()
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}"
        out.add(path)
        if sub.get("type") == "object":
            out |= leaf_paths(sub, path)
        elif sub.get("type") == "array" and (sub.get("items") or {}).get("type") == "object":
            out |= leaf_paths(sub["items"], path + "[0]")
    return out


def test_every_spec_field_is_mutated_and_every_required_field_dropped() -> None:
    cases = generate(CRDS, seed=1, combos=0)
    schemas = load_spec_schemas(CRDS)
    for kind, schema in schemas.items():
        named = {f for c in cases if c.kind == kind for f in c.fields}
        missing = {p for p in leaf_paths(schema, "spec") if not any(n == p or n.startswith(p + "[") for n in named)}
        assert not missing, (kind, missing)
        required = {f"spec.{r}" for r in schema.get("required", [])}
        dropped = {c.fields[0] for c in cases if c.kind == kind and c.category == "required"}
        assert required <= dropped, (kind, required - dropped)
    assert sum(1 for c in cases if c.category == "cel") == len(CEL_CASES) + 1  # + the 57-character name


def test_same_seed_same_corpus_and_combos_name_every_field() -> None:
    a = generate(CRDS, seed=5, combos=40)
    b = generate(CRDS, seed=5, combos=40)
    assert [json.dumps(c.obj) for c in a] == [json.dumps(c.obj) for c in b]
    combos = [c for c in a if c.category == "combo"]
    assert len(combos) == 40 and all(len(c.fields) >= 2 for c in combos)
    assert len({c.name for c in a}) == len(a)  # unique object names
    assert generate(CRDS, seed=6, combos=40)[-1].obj != a[-1].obj


def has_path(obj, path: str) -> bool:
    """Whether the dotted ``path`` (``spec.a.b[0].c``) is set in ``obj``."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            if not isinstance(obj, list) or len(obj) <= int(part[1:-1]):
                return False
            obj = obj[int(part[1:-1])]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return False
    return True


def test_base_objects_use_every_spec_field() -> None:
    """Every field of every kind, at every depth, is set in at least one base."""
    for kind, schema in load_spec_schemas(CRDS).items():
        unset = {p for p in leaf_paths(schema, "spec")
                 if not any(has_path({"spec": spec}, p) for _, spec in BASES[kind])}
        assert not unset, (kind, unset)


def test_one_base_per_strategy_and_cel_cases_name_their_base() -> None:
    strategy = load_spec_schemas(CRDS)["TradingStrategy"]["properties"]["strategy"]["enum"]
    assert sorted(spec["strategy"] for label, spec in BASES["TradingStrategy"] if label in strategy) == sorted(strategy)
    labels = {(kind, label) for kind, bases in BASES.items() for label, _ in bases}
    assert all((kind, base) in labels for kind, base, *_ in CEL_CASES)
    assert len({c[2] for c in CEL_CASES}) == len(CEL_CASES)  # unique labels


def test_date_time_fields_always_get_an_array() -> None:
    """The API server does not type-check date-time strings against arrays; a CEL
    rule on each such field does, so every seed must try an array there."""
    for seed in (7, 11, 12):
        cases = generate(CRDS, seed=seed, combos=0)
        for path in ("spec.marketData.replay.start", "spec.expiresAt"):
            arrays = [c for c in cases if c.category == "type" and c.fields == [path]
                      and isinstance(has_value(c.obj, path), list)]
            assert arrays, (seed, path)


def has_value(obj, path: str):
    for part in path.split("."):
        obj = obj[part]
    return obj
