"""Study kinds (``regulab.studies.kinds``): one file per kind, all in the registry, each with a
typed table that refuses an unknown key with the one error; what a kind says about its runs;
and no branch on a kind's name anywhere else."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from regulab.checks import Section
from regulab.errors import ConfigError
from regulab.studies.kinds import KINDS, Kind
from regulab.studies.spec import study_from_dict

from .report_fixtures import KINDS as FIXTURE_KINDS
from .test_study_examples import KIND_PLOTS

SRC = Path(__file__).resolve().parents[1] / "src" / "regulab"
KIND_DIR = SRC / "studies" / "kinds"
SHARED = {"__init__", "base"}        # the registry and the base classes; every other file is a kind


def test_every_kind_file_is_registered_under_its_name():
    files = sorted(p.stem for p in KIND_DIR.glob("*.py") if p.stem not in SHARED)
    assert files == sorted(KINDS)
    for name, kind in KINDS.items():
        assert isinstance(kind, Kind) and kind.name == name
        assert type(kind).__module__ == f"regulab.studies.kinds.{name}", type(kind)
    # the report fixtures and the example tests know every kind, and no other
    assert set(FIXTURE_KINDS) == set(KINDS) == set(KIND_PLOTS)


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_has_a_typed_table(name):
    table = KINDS[name].Table
    assert issubclass(table, Section) and dataclasses.is_dataclass(table)
    assert table.SECTION == name and table.KIND == "study key"
    for f in dataclasses.fields(table):
        assert f.metadata["doc"] and callable(f.metadata["check"]), f.name


@pytest.mark.parametrize("name", KINDS)
def test_unknown_key_is_the_one_error_with_a_suggestion(name):
    fields = [f.name for f in dataclasses.fields(KINDS[name].Table)]
    typo = fields[0] + "s" if fields else "stepz"      # a plural: the commonest slip
    with pytest.raises(ConfigError) as e:
        study_from_dict({"study": {"kind": name}, name: {typo: 1}})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"unknown study key '{name}.{typo}'"), msg
    assert (f"did you mean '{fields[0]}'?" in msg) if fields else f"keys of [{name}]: none" in msg


@pytest.mark.parametrize("name, table, words", [
    ("kfold", {"k": 1}, ["study key 'kfold.k'", "integer >= 2", "got 1"]),
    ("kfold", {}, ["study key 'kfold.k'", "required by kind 'kfold'", "got nothing"]),
    ("init", {"schemes": ["he_norml"]},
     ["study key 'init.schemes[0]'", "did you mean 'he_normal'"]),
    ("init", {"depth": 0}, ["study key 'init.depth'", ">= 1"]),
    ("weights", {"layers": []}, ["study key 'weights.layers'", "non-empty list"]),
    ("dropout_activations", {"bins": 0}, ["study key 'dropout_activations.bins'", "got 0"]),
    ("learning_curve", {"sizes": [0]}, ["study key 'learning_curve.sizes[0]'", "got 0"]),
    ("learning_curve", {"sizes": [9], "models": {"a": 3}}, ["study key 'learning_curve.models.a'"]),
    ("capacity", {"key": "model.hidden", "values": [[4]], "log_x": "yes"}, ["'capacity.log_x'"]),
    ("transfer", {"source_classes": [0, 1], "target_classes": [2, 3], "layers": ["all"]},
     ["study key 'transfer.layers[0]'", "'all'"]),
    ("transfer", {"source_classes": [0, 1], "target_classes": [2, 3], "layers": [1], "source": 3},
     ["study key 'transfer.source'", "table of config overrides"]),
])
def test_bad_values_of_a_kinds_table(name, table, words):
    with pytest.raises(ConfigError) as e:
        study_from_dict({"study": {"kind": name}, name: table})
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_options_hold_every_key_of_the_table():
    spec = study_from_dict({"study": {"kind": "init"}, "init": {"depth": 3}})
    assert spec.options == {"schemes": ["normal_0.01", "normal_1", "glorot_normal", "he_normal"],
                            "activations": ["tanh", "relu"], "depth": 3, "width": 256, "n": 1000,
                            "bins": 40}
    assert spec.variants == [] and spec.baseline is None
    assert vars(KINDS["init"].options(spec.options)) == spec.options     # reads back the same


def test_jobs_baseline_sources_and_x():
    kfold = study_from_dict({"study": {"kind": "kfold", "seeds": [3, 5]}, "kfold": {"k": 2},
                             "variants": {"a": {}, "b": {}}})
    jobs = KINDS["kfold"].jobs(kfold)
    assert [(j.seed, j.fold, dict(j.overrides), j.suffix) for j in jobs] == [
        (3, 0, {"data.folds": 2, "data.fold": 0}, "-fold-0"),
        (3, 1, {"data.folds": 2, "data.fold": 1}, "-fold-1"),
        (5, 0, {"data.folds": 2, "data.fold": 0}, "-fold-0"),
        (5, 1, {"data.folds": 2, "data.fold": 1}, "-fold-1")]
    assert kfold.baseline == "a"
    compare = study_from_dict({"study": {"seeds": 2}})
    assert [(j.seed, j.fold, j.suffix) for j in KINDS["compare"].jobs(compare)] == [
        (0, None, ""), (1, None, "")]
    assert [v.name for v in compare.variants] == ["baseline"] and compare.baseline == "baseline"
    transfer = study_from_dict({"study": {"kind": "transfer", "baseline": "frozen-1"},
                                "base": {"data": {"dataset": "digits"}},
                                "transfer": {"source_classes": [0, 1], "target_classes": [2, 3],
                                             "layers": [1], "source": {"train": {"epochs": 2}}}})
    assert transfer.baseline == "scratch"                 # always, whatever the file says
    [source] = KINDS["transfer"].sources(transfer)
    assert source.name == "source" and source.overrides == {"data.classes": [0, 1],
                                                            "train.epochs": 2}
    assert KINDS["compare"].sources(compare) == []
    entry = {"x": 0.5, "params": 1234}
    assert KINDS["capacity"].x(entry) == 1234.0 and KINDS["grid"].x(entry) == 0.5


def _kind_branches(path: Path) -> list[str]:
    """Comparisons of something named like "kind" with a study kind's name (``kind ==
    "grid"``, ``results.get("kind") in ("grid", ...)``)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        names = {c.value for s in sides for c in ast.walk(s)
                 if isinstance(c, ast.Constant) and isinstance(c.value, str)}
        if names & set(KINDS) and any("kind" in ast.unparse(s) for s in sides):
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_branch_on_a_kind_outside_the_kinds(tmp_path):
    branches = [b for p in sorted(SRC.rglob("*.py")) if KIND_DIR not in p.parents
                for b in _kind_branches(p)]
    assert not branches, "\n".join(branches)
    probe = tmp_path / "probe.py"        # the check sees what it is meant to
    probe.write_text('def f(kind, r):\n    return kind == "grid" or r.get("kind") in '
                     '("kfold", "x") or r.get("group") == "grid"\n')
    assert len(_kind_branches(probe)) == 2
