"""Study files: parsing, flattening of variant tables, generated variants, and bad input."""

from __future__ import annotations

import pytest

from regulab.errors import ConfigError
from regulab.studies.kinds import KINDS
from regulab.studies.spec import clinic_path, flatten, load_study, study_from_dict

from .conftest import EXAMPLES, write

STUDIES = sorted((EXAMPLES / "studies").glob("*.toml"))


def test_an_example_for_every_kind():
    kinds = {load_study(p).kind for p in STUDIES}
    assert kinds == set(KINDS), set(KINDS) - kinds


@pytest.mark.parametrize("path", [*STUDIES, clinic_path()], ids=lambda p: p.name)
def test_examples_and_clinic_load(path):
    spec = load_study(path)
    assert spec.seeds and spec.name
    quick = spec.for_quick()
    for v in spec.variants:
        if not any(k.startswith("transfer.") for k in v.overrides):
            assert quick.config(v, quick.seeds[0]).name == f"{spec.name}-{v.name}"


def test_clinic_covers_the_notes():
    spec = load_study(clinic_path())
    keys = {k for v in spec.variants for k in v.overrides} | {v.tune.key for v in spec.variants if v.tune}
    for key in ("regularization.l2", "regularization.l1", "model.dropout", "model.dropout_mode",
                "model.dropconnect", "regularization.max_norm", "regularization.input_noise",
                "regularization.weight_noise", "regularization.label_smoothing", "model.batchnorm",
                "image.translate", "regularization.ema", "eval.dropout_inference"):
        assert key in keys, key
    assert any(v.members > 1 for v in spec.variants)             # an ensemble
    tuned = {v.tune.key: v.tune.values for v in spec.variants if v.tune}
    assert len(tuned["model.dropout"]) >= 3
    # every technique with a strength is tuned, except the two that show a mode at one strength
    fixed = [v.name for v in spec.variants if v.tune is None and v.overrides
             and not isinstance(next(iter(v.overrides.values())), bool)]
    assert sorted(fixed) == ["dropout-classic", "mc-dropout"]
    assert spec.seeds == [0, 1, 2] and spec.combine >= 2 and spec.search >= 4
    # early stopping on the validation score, best weights kept, for every variant (budget)
    base = spec.config(spec.variants[0], 0)
    assert spec.budget == "score" and base.data.dataset == "mnist1d"
    assert base.train.early_stopping and base.train.restore_best and base.train.monitor == "auto"
    assert base.train.epochs >= 100


def test_flatten_nested_and_dotted_keys_agree():
    nested = {"model": {"dropout": 0.3}, "image": {"translate": 0.1},
              "multitask": {"groups": {"odd": [0, 1]}}}
    dotted = {"model.dropout": 0.3, "image.translate": 0.1,
              "multitask.groups": {"odd": [0, 1]}}
    assert flatten(nested, "x") == dotted == flatten(dotted, "x")
    # the old names of the modality sections flatten to the new ones
    assert flatten({"augment": {"image": {"translate": 0.1}}}, "x") == {"image.translate": 0.1}
    assert flatten({"augment.image": {"scale": [0.9, 1.1]}}, "x") == {"image.scale": [0.9, 1.1]}


def test_generated_variants():
    grid = study_from_dict({"study": {"kind": "grid"},
                            "grid": {"key": "regularization.l2", "values": [0.0, 1e-3]}})
    assert [(v.name, v.overrides, v.x) for v in grid.variants] == [
        ("l2=0", {"regularization.l2": 0.0}, 0.0), ("l2=0.001", {"regularization.l2": 1e-3}, 1e-3)]
    lc = study_from_dict({"study": {"kind": "learning_curve"},
                          "learning_curve": {"sizes": [100, 200],
                                             "models": {"softmax": {"model.kind": "linear"}, "mlp": {}}}})
    assert [(v.group, v.x) for v in lc.variants] == [("softmax", 100), ("softmax", 200),
                                                      ("mlp", 100), ("mlp", 200)]
    assert lc.variants[0].overrides == {"model.kind": "linear", "data.train_size": 100}
    cap = study_from_dict({"study": {"kind": "capacity"},
                           "capacity": {"key": "model.hidden", "values": [[4], [8, 8]]}})
    assert [v.name for v in cap.variants] == ["hidden=4", "hidden=8x8"]
    tr = study_from_dict({"study": {"kind": "transfer"},
                          "base": {"data": {"dataset": "digits"}},
                          "transfer": {"source_classes": [0, 1], "target_classes": [2, 3],
                                       "layers": [1]}})
    assert [v.name for v in tr.variants] == ["scratch", "frozen-1", "fine-tuned-1"]
    assert tr.baseline == "scratch" and tr.variants[1].overrides["transfer.freeze"] is True


def test_quick_and_base_file(workdir):
    write(workdir / "base.toml", "[model]\nhidden = [7]\n[train]\nepochs = 9\n")
    path = write(workdir / "s.toml", '[study]\nbase = "base.toml"\nseeds = [3, 5]\nquick_seeds = 1\n'
                 'quick = { "train.epochs" = 2 }\n[base]\ntrain = { batch_size = 11 }\n'
                 '[variants.a]\n[variants.b]\nmodel.dropout = 0.5\nlabel = "B"\n')
    spec = load_study(path)
    cfg = spec.config(spec.variants[1], 5)
    assert (cfg.model.hidden, cfg.train.epochs, cfg.train.batch_size, cfg.train.seed,
            cfg.model.dropout) == ([7], 9, 11, 5, 0.5)
    assert spec.variants[1].label == "B" and spec.baseline == "a"
    quick = spec.for_quick()
    assert quick.seeds == [0] and quick.config(spec.variants[0], 0).train.epochs == 2


@pytest.mark.parametrize("raw, words", [
    ({"study": {"kind": "compar"}}, ["study.kind", "'compar'", "compare"]),
    ({"study": {"seeds": 0}}, ["study.seeds", "0"]),
    ({"study": {"seeds": [1, 1]}}, ["study.seeds", "distinct"]),
    ({"study": {"sedes": 3}}, ["study.sedes", "seeds"]),
    ({"studdy": {}}, ["studdy", "variants"]),
    ({"variants": {"a": {"model.dropot": 0.3}}}, ["variant 'a'", "dropot"]),
    ({"variants": {"a": {"modl": {"dropout": 0.3}}}}, ["variants.a.modl", "config key"]),
    ({"variants": {"a": {"model.dropout": 1.5}}}, ["variant 'a'", "model.dropout", "1.5"]),
    ({"variants": {"a": {"members": 0}}}, ["variants.a.members", "0"]),
    ({"variants": {"a": {}}, "study": {"baseline": "b"}}, ["study.baseline", "'b'", "a"]),
    ({"study": {"kind": "grid"}, "grid": {"key": "model.dropout"}}, ["grid.values", "required"]),
    ({"study": {"kind": "grid"}, "grid": {"key": "model.dropout", "values": []}}, ["grid.values", "non-empty"]),
    ({"study": {"kind": "grid"}, "grid": {"key": "model.dropout", "values": [0.1], "stepz": 1}},
     ["grid.stepz"]),
    ({"study": {"kind": "grid"}, "grid": {"key": "model.dropout", "values": [0.1]},
      "variants": {"a": {}}}, ["variants", "absent", "grid"]),
    ({"study": {"kind": "grid"}, "grid": {"key": "model.dropout", "values": [2.0]}},
     ["model.dropout", "2.0"]),
    ({"study": {"kind": "kfold"}}, ["kfold.k", "required"]),
    ({"study": {"combine": -1}}, ["study.combine", "-1"]),
    ({"study": {"reference": 1.5}}, ["study.reference", "<= 1.0", "1.5"]),
    ({"study": {"name": "a/b"}}, ["study.name", "a/b"]),
    ({"study": {"base": "missing.toml"}}, ["study.base", "missing.toml"]),
])
def test_bad_study_files(raw, words):
    with pytest.raises(ConfigError) as e:
        study_from_dict(raw)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_bad_toml_and_missing_file(workdir):
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(workdir / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_study(write(workdir / "bad.toml", "[study\n"))
