"""The model-family seam: one registry, one way to ask, one result protocol.

Outside ``unlearn/families/`` no module branches on the model kind; an AST walk refuses
comparisons of ``model.kind`` (or ``getattr(..., "kind")``) with literals, any comparison
with ``"t2i"``, ``kind_of(...)``, ``hasattr(..., "concept_rate")``, ``"concept_rate" in ...``
and ``model_index.json`` checks.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
from helpers import REPO, cli, t2i_cfg, tiny_pipeline

PACKAGE = REPO / "unlearn"

#: below the seam, the building blocks that know their own kind (a model's own class, the
#: pipeline loader that recognises ``model_index.json``) and the families themselves
EXEMPT = ("families", "models")
#: known checks below the families' layer, by file: how many. The config schema's one
#: cross-field check (``eval.concept_measure=clip`` needs a t2i model) runs at load time,
#: before any family is imported.
KNOWN = {"config/checks.py": 1}


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_is_literal(e) for e in node.elts)
    return False


def _is_model_kind(node: ast.AST) -> bool:
    """``model.kind``, ``cfg.model.kind``, ``self.cfg.model.kind``, ``getattr(m, "kind", ..)``."""
    if isinstance(node, ast.Attribute) and node.attr == "kind":
        v = node.value
        return (isinstance(v, ast.Name) and v.id == "model") or (
            isinstance(v, ast.Attribute) and v.attr == "model"
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "getattr" and len(node.args) >= 2:
            key = node.args[1]
            return isinstance(key, ast.Constant) and key.value == "kind"
    return False


def _names_kind(node: ast.AST) -> bool:
    """A variable or attribute called ``kind`` (or ``*_kind``)."""
    ident = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return isinstance(ident, str) and (ident == "kind" or ident.endswith("_kind"))


def _mentions(node: ast.AST, value: str) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == value for n in ast.walk(node))


def kind_branches(source: str, name: str = "<source>") -> list[str]:
    """Every place in ``source`` that asks what kind of model it has, instead of its family."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_model_kind(s) for s in sides) and any(_is_literal(s) for s in sides):
                found.append(f"{name}:{line}: model kind compared with a literal")
            elif any(_mentions(s, "t2i") for s in sides) and (
                any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops)
                or any(_names_kind(s) for s in sides)
            ):
                found.append(f"{name}:{line}: comparison with 't2i'")
            elif isinstance(node.left, ast.Constant) and node.left.value == "concept_rate":
                found.append(f"{name}:{line}: probes a result for 'concept_rate'")
        elif isinstance(node, ast.Call):
            f = node.func
            fname = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if fname == "kind_of":
                found.append(f"{name}:{line}: kind_of(...)")
            if fname == "hasattr" and any(_mentions(a, "concept_rate") for a in node.args):
                found.append(f"{name}:{line}: hasattr(..., 'concept_rate')")
        elif isinstance(node, ast.Constant) and node.value == "model_index.json":
            found.append(f"{name}:{line}: checks for model_index.json")
    return found


def modules_outside_families() -> list[Path]:
    return [
        p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] not in EXEMPT
    ]


# -- (a) nothing outside families/ branches on the model kind ---------------------------------
def test_no_module_outside_families_branches_on_the_model_kind():
    files = modules_outside_families()
    assert len(files) > 50  # the walk found the package
    found = []
    for p in files:
        name = str(p.relative_to(PACKAGE))
        hits = kind_branches(p.read_text(), name)
        if len(hits) > KNOWN.get(name, 0):
            found += hits
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        'if cfg.model.kind == "t2i": pass',
        'if self.cfg.model.kind != "vae": pass',
        'x = model.kind in ("ddpm", "vpsde")',
        'if getattr(model, "kind", None) == "t2i": pass',
        'if kind == "t2i": pass',
        'allowed = A if kind in ("x", "t2i") else B',
        "if kind_of(model): pass",
        'if hasattr(r, "concept_rate"): pass',
        'if "concept_rate" in d: pass',
        'if (p / "model_index.json").is_file(): pass',
    ],
)
def test_the_kind_check_catches_each_way_of_asking(line):
    assert kind_branches(line) != []


@pytest.mark.parametrize(
    "line",
    [
        "family = family_of(cfg)",
        'if p.kind == "choice": pass',  # a search-space parameter, not a model
        "if kind != cfg.model.kind: pass",  # two kinds compared: a consistency check
        "x = family.prompted",
        'if "t2i" in parts: pass',  # a demo section of that name, not a model kind
    ],
)
def test_the_kind_check_leaves_other_code_alone(line):
    assert kind_branches(line) == []


# -- the registry ------------------------------------------------------------------------------
def test_registry_serves_every_configurable_kind_once():
    from unlearn.config import MODEL_FAMILIES, MODEL_KINDS, PROMPT_KINDS
    from unlearn.families import FAMILIES

    assert {n: tuple(f.kinds) for n, f in FAMILIES.items()} == MODEL_FAMILIES
    kinds = [k for f in FAMILIES.values() for k in f.kinds]
    assert sorted(kinds) == sorted(MODEL_KINDS) and len(set(kinds)) == len(kinds)
    assert all(f.name == n for n, f in FAMILIES.items())
    prompted = tuple(k for f in FAMILIES.values() if f.prompted for k in f.kinds)
    assert prompted == PROMPT_KINDS


@pytest.mark.parametrize(
    ("kind", "family"),
    [
        ("ddpm", "image"),
        ("cond_ddpm", "image"),
        ("vpsde", "image"),
        ("vae", "image"),
        ("t2i", "t2i"),
    ],
)
def test_family_of_each_kind(tiny_cfg, kind, family):
    from unlearn.families import family_of, family_of_kind

    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, kind=kind))
    assert family_of(cfg).name == family
    assert family_of_kind(kind) is family_of(cfg)


def test_every_family_provides_the_protocol():
    from unlearn.families import FAMILIES
    from unlearn.families.base import Family

    members = [
        n for n in vars(Family) if not n.startswith("_") and n not in ("__annotations__",)
    ] + list(Family.__annotations__)
    for family in FAMILIES.values():
        missing = [n for n in members if not hasattr(family, n)]
        assert missing == [], f"{family.name} lacks {missing}"
        assert set(family.conditional_kinds) <= set(family.kinds)
        assert set(family.attacks) >= {"relearn", "mia"}


# -- (b) one result protocol -------------------------------------------------------------------
def _fake(result_type: type):
    """An instance of ``result_type`` with placeholder values (each number its own, so a
    property that reads the wrong field shows; empty tuples)."""
    values = {}
    for i, f in enumerate(dataclasses.fields(result_type)):
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        values[f.name] = {"int": 8, "str": "seven"}.get(str(f.type), 0.01 * (i + 1))
        if "tuple" in str(f.type) or "list" in str(f.type):
            values[f.name] = ()
    return result_type(**values)


def test_every_family_result_satisfies_the_result_protocol():
    from unlearn.families import FAMILIES, check_result
    from unlearn.metrics import ModelEvaluation

    names = set()
    for family in FAMILIES.values():
        r = _fake(family.result_type)
        assert isinstance(r, ModelEvaluation)
        check_result(r)
        assert r.primary_rate == getattr(r, r.primary_name) == r.forget_rate
        assert set(r.table_keys) <= {f.name for f in dataclasses.fields(r)} | {"forget_rate"}
        assert f"eval/{r.primary_name}" in r.metrics() or "eval/forget_rate" in r.metrics()
        back = family.result_from_dict(json.loads(json.dumps(r.to_dict())))
        assert type(back) is family.result_type and back.primary_rate == r.primary_rate
        names.add(r.primary_name)
    assert "concept_rate" in names and "forget_rate" in names
    with pytest.raises(TypeError):
        check_result(object())


def test_image_result_names_the_outlier_rate_when_it_is_the_forget_rate():
    from unlearn.metrics import EvalResult

    r = dataclasses.replace(_fake(EvalResult), forget_classes=(), outlier_rate=0.25)
    assert r.primary_name == "outlier_rate" and r.primary_rate == r.outlier_rate
    assert dataclasses.replace(r, forget_classes=(3,)).primary_name == "forget_rate"


def test_eval_table_takes_its_columns_from_the_results():
    from unlearn.demo import eval_table
    from unlearn.metrics import EvalResult
    from unlearn.metrics.t2i import T2IEvalResult

    t2i = eval_table({"a": _fake(T2IEvalResult)})
    assert [c.header for c in t2i.columns][1] == "concept_rate"
    img = eval_table({"a": _fake(EvalResult)})
    assert [c.header for c in img.columns][1] == "forget_rate"


# -- (c) the family of a saved directory and of a loaded model ---------------------------------
def test_family_of_a_saved_pipeline_and_an_image_model(tmp_path, tiny_cfg):
    from unlearn.families import family_of_dir, family_of_model
    from unlearn.models import build_model, load_model, save_model

    pipe = tiny_pipeline()
    t2i_dir = save_model(pipe, tmp_path / "pipe")
    assert family_of_dir(t2i_dir).name == "t2i"
    assert family_of_model(pipe).name == "t2i"
    assert family_of_model(load_model(t2i_dir)).name == "t2i"

    model = build_model(tiny_cfg.model, 1, 8, 10)
    img_dir = save_model(model, tmp_path / "ddpm")
    assert family_of_dir(img_dir).name == "image"
    assert family_of_model(model).name == "image"
    assert family_of_dir(tmp_path / "missing") is None
    (tmp_path / "empty").mkdir()
    assert family_of_dir(tmp_path / "empty") is None


def test_family_loads_and_saves_its_own_models(tmp_path, tiny_cfg):
    import torch

    from unlearn.families import FAMILIES
    from unlearn.models import build_model

    t2i, image = FAMILIES["t2i"], FAMILIES["image"]
    back = t2i.load(t2i.save(tiny_pipeline(), tmp_path / "p"))
    assert not list((tmp_path / "p").rglob("*.bin")) and list(
        (tmp_path / "p").rglob("*.safetensors")
    )
    assert back.prompted and t2i.owns_model(back)
    model = build_model(tiny_cfg.model, 1, 8, 10)
    again = image.load(image.save(model, tmp_path / "m"))
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_t2i_config_keys_and_instances_come_from_its_family(tmp_path):
    from unlearn.families import family_of
    from unlearn.families.t2i.pretrain import t2i_model_key
    from unlearn.pretrain import model_key

    cfg = t2i_cfg(workdir=tmp_path)
    assert model_key(cfg) == t2i_model_key(cfg)
    two = family_of(cfg).instance_forget(cfg.forget, 2)
    assert two.concept == "two" and two.classes == cfg.forget.classes


# -- (d) a kind no family serves ---------------------------------------------------------------
def test_unknown_kind_exits_2_listing_the_families(tmp_path):
    from unlearn.config import ConfigError, load_config
    from unlearn.families import family_of_kind

    with pytest.raises(
        ConfigError, match=r"image \(ddpm, cond_ddpm, vpsde, vae\), t2i \(t2i\), sdxl \(sdxl\)"
    ):
        load_config(None, ["model.kind=sd3"])
    with pytest.raises(ConfigError, match="expected one of image"):
        family_of_kind("sd3")
    r = cli("run", "--set", "model.kind=sd3", "--set", f"workdir={tmp_path}")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.kind" in lines[0]
    assert "image (ddpm, cond_ddpm, vpsde, vae)" in lines[0] and "sdxl (sdxl)" in lines[0]
