"""Typed config: defaults, TOML round trip, overrides, and one-line errors for every bad value."""

from __future__ import annotations

import dataclasses

import pytest

from regulab.config.core import Config, config_from_dict, load_config, parse_overrides, to_toml
from regulab.config.sections import DataConfig, EvalConfig, ModelConfig, OptimConfig, TrainConfig
from regulab.errors import ConfigError


def _round_trip(cfg: Config, tmp_path) -> Config:
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(cfg), encoding="utf-8")
    return load_config(path)


def _error(path=None, overrides=None) -> str:
    """The one-line message of the ConfigError that load_config raises."""
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


# --- defaults and round trip ------------------------------------------------------------------

def test_defaults():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.name == "run"
    assert cfg.data.dataset == "mnist1d" and cfg.data.split == [0.8, 0.15, 0.05]
    assert cfg.data.stratify is True and cfg.data.preprocess == "none"
    assert cfg.model.kind == "mlp" and cfg.model.hidden == [100, 100] and cfg.model.dropout == 0.0
    assert cfg.optim.name == "adam" and cfg.optim.lr == 0.01        # issue 14: BENCHMARKS.md, Defaults
    assert cfg.train.epochs == 200 and cfg.train.batch_size == 100
    assert cfg.train.early_stopping is True and cfg.train.monitor == "auto"
    assert cfg.train.patience == 30 and cfg.train.min_delta == 0.0 and cfg.train.restore_best is True
    assert cfg.eval.batch_size == 1024
    # the default list is not shared between instances
    a, b = Config(), Config()
    a.model.hidden.append(7)
    assert b.model.hidden == [100, 100]


def test_round_trip_defaults(tmp_path):
    cfg = load_config(None)
    assert _round_trip(cfg, tmp_path) == cfg


def test_round_trip_non_defaults(tmp_path):
    cfg = Config(
        name='my "quoted" run \\ with backslash',
        data=DataConfig(dataset="csv:C:\\data\\x.csv", split=[0.7, 0.2, 0.1], stratify=False,
                        seed=3, preprocess="standardize", train_size=0.25, target="label",
                        task="classification", n_samples=500),
        model=ModelConfig(kind="cnn", hidden=[64, 32, 16], channels=[8, 16], kernel_size=3,
                          activation="tanh", init="he_normal", batchnorm=True,
                          dropout=[0.1, 0.25, 0.5]),
        optim=OptimConfig(name="sgd", lr=0.05, momentum=0.5, betas=[0.8, 0.99], alpha=0.9,
                          eps=1e-7, weight_decay=5e-4),
        train=TrainConfig(epochs=7, batch_size=32, seed=11, device="cpu", loss="mse",
                          early_stopping=False, patience=3, min_delta=1e-3, monitor="val_acc",
                          restore_best=False, checkpoint_every=2, progress=False),
        eval=EvalConfig(batch_size=77),
    )
    back = _round_trip(cfg, tmp_path)
    assert back == cfg
    assert back.model.dropout == [0.1, 0.25, 0.5]
    assert back.data.train_size == 0.25 and isinstance(back.data.train_size, float)


def test_round_trip_count_train_size_and_scalar_dropout(tmp_path):
    cfg = load_config(None, {"data.train_size": 300, "model.dropout": 0.3, "model.hidden": []})
    back = _round_trip(cfg, tmp_path)
    assert back == cfg
    assert back.data.train_size == 300 and isinstance(back.data.train_size, int)
    assert back.model.hidden == []


def test_to_toml_omits_unset_keys():
    text = to_toml(Config())
    assert "train_size" not in text and "target" not in text and "n_samples" not in text
    assert text.splitlines()[0] == 'name = "run"'
    for section in ("data", "model", "optim", "train", "eval"):
        assert f"[{section}]" in text


def test_round_trip_string_with_newline(tmp_path):
    # a string key that may hold a newline (a run's name may not: it names a directory)
    cfg = config_from_dict({"data": {"target": "line one\nline two"}})
    assert _round_trip(cfg, tmp_path) == cfg


# --- overrides --------------------------------------------------------------------------------

def test_set_overrides_with_bare_strings():
    cfg = load_config(None, ["optim.lr=0.01", "model.hidden=[64, 64]", "data.dataset=moons"])
    assert cfg.optim.lr == 0.01
    assert cfg.model.hidden == [64, 64]
    assert cfg.data.dataset == "moons"
    # everything else stays at its default
    expected = Config()
    expected.optim.lr, expected.model.hidden, expected.data.dataset = 0.01, [64, 64], "moons"
    assert cfg == expected


@pytest.mark.parametrize("item, key, value", [
    ("optim.lr=1e-3", "optim.lr", 1e-3),
    ("model.dropout=0.3", "model.dropout", 0.3),
    ("model.dropout=[0.1, 0.2]", "model.dropout", [0.1, 0.2]),
    ("train.early_stopping=false", "train.early_stopping", False),
    ("train.epochs=5", "train.epochs", 5),
    ('data.dataset="csv:a b.csv"', "data.dataset", "csv:a b.csv"),
    ("data.dataset=csv:data/x.csv", "data.dataset", "csv:data/x.csv"),
    (" optim.name = sgd ", "optim.name", "sgd"),
    ("name=trial", "name", "trial"),
])
def test_parse_overrides_values(item, key, value):
    assert parse_overrides([item]) == {key: value}


def test_dict_overrides_and_file_plus_overrides(tmp_path):
    cfg = load_config(None, {"optim.lr": 0.02, "model.dropout": [0.2, 0.4], "train.seed": 9,
                             "name": "d"})
    assert cfg.optim.lr == 0.02 and cfg.model.dropout == [0.2, 0.4]
    assert cfg.train.seed == 9 and cfg.name == "d"

    path = tmp_path / "c.toml"
    path.write_text('name = "file"\n[optim]\nlr = 0.5\nname = "sgd"\n', encoding="utf-8")
    cfg = load_config(path, ["optim.lr=0.1"])
    assert cfg.name == "file" and cfg.optim.name == "sgd" and cfg.optim.lr == 0.1
    assert parse_overrides(None) == {} and parse_overrides([]) == {}


def test_numbers_are_normalized():
    # an int where a float is declared is stored as a float, so the round trip is exact
    cfg = load_config(None, {"optim.lr": 1, "model.dropout": 0})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert isinstance(cfg.model.dropout, float)
    assert cfg.data.split == [0.8, 0.15, 0.05] and all(isinstance(x, float) for x in cfg.data.split)


def test_config_from_dict_matches_load_config():
    raw = {"name": "x", "model": {"hidden": [10], "dropout": [0.5]}, "optim": {"lr": 0.3}}
    assert config_from_dict(raw) == load_config(None, {"name": "x", "model.hidden": [10],
                                                       "model.dropout": [0.5], "optim.lr": 0.3})


# --- errors -----------------------------------------------------------------------------------

# (overrides, strings the one-line message must contain)
BAD_VALUES = [
    ({"optim.lr": 0.0}, ["optim.lr", "0.0", "> 0"]),
    ({"optim.lr": -0.1}, ["optim.lr", "-0.1"]),
    (["optim.lr=-0.1"], ["optim.lr", "-0.1"]),
    ({"optim.lr": float("nan")}, ["optim.lr", "nan"]),
    ({"model.dropout": 1.0}, ["model.dropout", "1.0"]),
    ({"model.dropout": -0.1}, ["model.dropout", "-0.1"]),
    ({"model.dropout": [0.1, 1.0]}, ["model.dropout", "1.0"]),
    ({"model.dropout": [0.1, 0.2, 0.3]}, ["model.dropout", "[0.1, 0.2, 0.3]", "2"]),
    ({"model.hidden": [10], "model.dropout": [0.1, 0.2]}, ["model.dropout", "[0.1, 0.2]"]),
    ({"data.split": [0.5, 0.3, 0.1]}, ["data.split", "[0.5, 0.3, 0.1]", "sum to 1"]),
    ({"data.split": [0.8, 0.2]}, ["data.split", "[0.8, 0.2]"]),
    ({"data.split": [0.7, 0.1, 0.1, 0.1]}, ["data.split", "[0.7, 0.1, 0.1, 0.1]"]),
    ({"data.split": [0.0, 0.9, 0.1]}, ["data.split", "[0.0, 0.9, 0.1]"]),
    ({"data.split": 0.8}, ["data.split", "0.8"]),
    ({"train.epochs": 0}, ["train.epochs", "0"]),
    (["train.epochs=0"], ["train.epochs", "0"]),
    ({"train.batch_size": 1.5}, ["train.batch_size", "1.5", "integer"]),
    ({"model.activation": "rleu"}, ["model.activation", "'rleu'", "did you mean 'relu'"]),
    (["model.activation=reluu"], ["model.activation", "'reluu'", "did you mean 'relu'"]),
    ({"train.early_stopping": "true"}, ["train.early_stopping", "'true'", "true or false"]),
    (["train.progress=yes"], ["train.progress", "'yes'"]),
    ({"train.early_stopping": 1}, ["train.early_stopping", "1"]),
    ({"model.hidden": [64, 0]}, ["model.hidden", "0"]),
    ({"model.hidden": 64}, ["model.hidden", "64"]),
    ({"data.train_size": 0}, ["data.train_size", "0"]),
    ({"data.train_size": 1.5}, ["data.train_size", "1.5"]),
    ({"optim.name": "adm"}, ["optim.name", "'adm'", "did you mean 'adam'"]),
    ({"model.init": "he"}, ["model.init", "'he'"]),
    ({"data.dataset": ""}, ["data.dataset", "''"]),
    ({"name": 3}, ["name", "3"]),
    ({"optim.lrr": 0.1}, ["optim.lrr", "did you mean 'lr'"]),
    (["model.hiden=[3]"], ["model.hiden", "did you mean 'hidden'"]),
    ({"optimizer.lr": 0.1}, ["optimizer", "did you mean 'optim'"]),
    ({"optim.lr.x": 0.1}, ["optim.lr.x"]),
]


@pytest.mark.parametrize("overrides, needles", BAD_VALUES,
                         ids=[str(o) for o, _ in BAD_VALUES])
def test_bad_value_error(overrides, needles):
    msg = _error(None, overrides)
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.mark.parametrize("typo", ["ReLU", "Relu"])
def test_activation_suggestion_ignores_case(typo):
    msg = _error(None, {"model.activation": typo})
    assert "model.activation" in msg and repr(typo) in msg
    assert "did you mean 'relu'" in msg, msg


def test_bad_value_in_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\ndropout = 1.0\n", encoding="utf-8")
    msg = _error(path)
    assert "model.dropout" in msg and "1.0" in msg


@pytest.mark.parametrize("text, needles", [
    ("[optim]\nlr = \n", ["bad.toml", "TOML"]),
    ("[optim\nlr = 0.1\n", ["bad.toml"]),
    ("data = 3\n", ["'data'", "3", "table"]),
    ("[optimiser]\nlr = 0.1\n", ["optimiser", "did you mean 'optim'"]),
    ("[train]\nbatchsize = 10\n", ["train.batchsize", "did you mean 'batch_size'"]),
])
def test_bad_file_error(tmp_path, text, needles):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    msg = _error(path)
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    msg = _error(path)
    assert "latin.toml" in msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    msg = _error(path)
    assert "nope.toml" in msg and "does not exist" in msg


@pytest.mark.parametrize("item", ["optim.lr", "=0.1", "", "  =x"])
def test_set_without_key_value(item):
    msg = _error(None, [item])
    assert "--set" in msg and repr(item) in msg


def test_every_key_has_a_check_and_doc():
    for section in (DataConfig, ModelConfig, OptimConfig, TrainConfig, EvalConfig):
        for f in dataclasses.fields(section):
            assert callable(f.metadata["check"]) and f.metadata["doc"], f.name
            # the declared default passes its own check
            default = getattr(section(), f.name)
            if default is not None:
                f.metadata["check"](f.name, default)


def test_sections_validate_when_built_directly():
    from regulab.config.sections import OptimConfig, RegularizationConfig
    with pytest.raises(ConfigError, match=r"optim\.lr.*-1"):
        OptimConfig(lr=-1)
    with pytest.raises(ConfigError, match=r"regularization\.max_norm.*0"):
        RegularizationConfig(max_norm=0)
    assert OptimConfig(lr=1).lr == 1.0
