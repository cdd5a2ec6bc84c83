"""End to end through the ``regulab`` command: run directory, bad input, divergence, runs/datasets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from regulab.cli import main
from regulab.runs.store import RunStore

from .conftest import EXAMPLES, assert_refused, write

SMALL = """
name = "small"
[data]
dataset = "moons"
n_samples = 400
[model]
hidden = [16]
dropout = 0.1
[optim]
lr = 0.01
[train]
epochs = 6
batch_size = 32
patience = 3
"""

PLAIN = SMALL.replace("n_samples = 400\n", "")   # for datasets other than the generated ones

RUN_FILES = {"config.toml", "metrics.csv", "results.json", "evaluation.json", "model.safetensors", "model.json",
             "checkpoint"}
RESULT_KEYS = {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
               "best_epoch", "epochs_run", "stopped_early", "monitor", "fit_seconds", "diagnosis",
               "n_train", "n_val", "n_test"}


def test_train_writes_the_run_directory(workdir, capsys):
    cfg = write(workdir / "small.toml", SMALL)
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    out = workdir / "out"
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert "results: out/results.json" in capsys.readouterr().out

    results = json.loads((out / "results.json").read_text())
    assert set(results) == RESULT_KEYS
    assert results["diagnosis"] in ("underfit", "overfit", "underfit and overfit", "good fit")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                             "penalty", "seconds"]
    assert [int(r["epoch"]) for r in rows] == list(range(1, results["epochs_run"] + 1))

    evaluation = json.loads((out / "evaluation.json").read_text())
    for split in ("val", "test"):
        cm = np.array(evaluation[split]["confusion_matrix"])
        assert cm.shape == (2, 2) and set(evaluation[split]["per_class"]) == {"0", "1"} or \
            len(evaluation[split]["per_class"]) == 2
    # the model file holds the fitted preprocessor and the network
    weights = load_file(out / "model.safetensors")
    assert {"preprocess.shift", "preprocess.scale"} <= set(weights)
    assert any(k.startswith("net.") for k in weights)

    # the resolved config reproduces the run's settings
    assert 'dataset = "moons"' in (out / "config.toml").read_text()
    rows = RunStore().runs()
    assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["epochs"] == results["epochs_run"]


def test_overrides_change_the_resolved_config(workdir):
    cfg = write(workdir / "small.toml", SMALL)
    assert main(["train", str(cfg), "--out", "out", "--quiet", "--set", "model.hidden=[8, 8]",
                 "--set", "train.epochs=2", "--set", "train.early_stopping=false"]) == 0
    text = (workdir / "out" / "config.toml").read_text()
    assert "hidden = [8, 8]" in text and "epochs = 2" in text
    assert json.loads((workdir / "out" / "results.json").read_text())["epochs_run"] == 2


def test_regression_run_reports_mse_and_r2(workdir):
    assert main(["train", str(EXAMPLES / "sine.toml"), "--out", "out", "--quiet",
                 "--set", "train.epochs=5"]) == 0
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert {"train_mse", "train_r2", "val_mse", "val_r2", "test_mse", "test_r2"} <= set(results)
    assert "train_acc" not in results
    header = (workdir / "out" / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_mse,train_r2,val_loss,val_mse,val_r2,lr,penalty,seconds"


@pytest.mark.parametrize("example", ["late_delivery.toml", "digits_cnn.toml"])
def test_examples_run(workdir, example):
    assert main(["train", str(EXAMPLES / example), "--out", "out", "--quiet",
                 "--set", "train.epochs=3"]) == 0
    assert (workdir / "out" / "results.json").is_file()


# -- bad input: exit 2, one line naming field and value, nothing written ------------------------

def _npz(path, X, y):
    np.savez(path, X=X, y=y)
    return f"npz:{path}"


BAD = [
    # (config text or None, --set overrides, words the message must contain)
    ("[optim]\nlr = 0.1\n[model\nkind='mlp'", [], ["not valid TOML"]),
    (None, ["optim.lrr=0.1"], ["optim.lrr", "did you mean 'lr'"]),
    (None, ["optim.lr=fast"], ["optim.lr", "'fast'"]),
    (None, ["optim.lr=0"], ["optim.lr", "> 0", "0"]),
    (None, ["optim.lr=-0.1"], ["optim.lr", "-0.1"]),
    (None, ["model.dropout=1.0"], ["model.dropout", "1.0", "< 1.0"]),
    (None, ["model.dropout=-0.2"], ["model.dropout", "-0.2"]),
    (None, ["data.split=[0.8, 0.3, 0.05]"], ["data.split", "sum to 1"]),
    (None, ["train.epochs=0"], ["train.epochs", ">= 1", "0"]),
    (None, ["train.device=tpu"], ["train.device", "'tpu'"]),
    (None, ["data.dataset=mnsit"], ["data.dataset", "mnsit", "did you mean 'mnist'"]),
    (None, ["data.dataset=csv:nowhere.csv"], ["nowhere.csv", "does not exist"]),
    # the control case: valid input trains (a conv over the 4 features of the notes' table)
    (None, ["model.kind=cnn", "data.dataset=late_delivery", "data.split=[0.6, 0.4, 0.0]",
            "data.stratify=false"], []),
]


@pytest.mark.parametrize("text, sets, words", BAD)
def test_bad_config_exits_2_and_writes_nothing(workdir, capsys, text, sets, words):
    cfg = write(workdir / "c.toml", text if text is not None else PLAIN)
    sets = [a for s in sets for a in ("--set", s)]
    code = main(["train", str(cfg), "--out", "out", "--quiet", *sets])
    if not words:   # the control case: valid input trains
        assert code == 0
        return
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("regulab: error:"), err
    for w in words:
        assert w in err, (w, err)
    assert not (workdir / "out").exists()
    assert not (workdir / "runs").exists()     # no run store created either


def test_missing_config_file(workdir, capsys):
    assert main(["train", "nope.toml", "--quiet"]) == 2
    assert "nope.toml" in capsys.readouterr().err
    assert not (workdir / "runs").exists()


def _bad_data_cases(d):
    write(d / "nan.csv", "a,b,label\n1,2,0\n3,,1\n5,6,0\n")
    write(d / "ok.csv", "a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")
    return [
        (["data.dataset=csv:nan.csv", "data.target=label"], ["nan.csv", "'b'"]),
        (["data.dataset=csv:ok.csv", "data.target=lable"], ["data.target", "lable", "did you mean 'label'"]),
        (["data.dataset=csv:ok.csv"], ["data.target"]),
        ([f"data.dataset={_npz(d / 'neg.npz', np.zeros((20, 3)), np.arange(-1, 19) % 3 - 1)}",
          "data.task=classification"], ["neg.npz", "label"]),
        ([f"data.dataset={_npz(d / 'len.npz', np.zeros((20, 3)), np.zeros(19, int))}"], ["len.npz", "20", "19"]),
        # shape mismatch: a 4-D sample has no CNN
        ([f"data.dataset={_npz(d / 'shape.npz', np.zeros((40, 2, 3, 4, 5)), np.arange(40) % 2)}",
          "model.kind=cnn"], ["model.kind", "cnn", "(2, 3, 4, 5)"]),
    ]


def test_bad_data_exits_2_and_writes_nothing(workdir, capsys):
    cfg = write(workdir / "c.toml", PLAIN)
    for sets, words in _bad_data_cases(workdir):
        code = main(["train", str(cfg), "--out", "out", "--quiet", *[a for s in sets for a in ("--set", s)]])
        err = capsys.readouterr().err
        assert code == 2, (sets, err)
        assert err.count("\n") == 1, err
        for w in words:
            assert w in err, (w, err)
        assert not (workdir / "out").exists() and not (workdir / "runs").exists()


def test_out_dir_that_exists_is_not_overwritten(workdir, capsys):
    cfg = write(workdir / "small.toml", SMALL)
    write(workdir / "out" / "keep.txt", "mine")
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 2
    assert "--out" in capsys.readouterr().err
    assert [p.name for p in (workdir / "out").iterdir()] == ["keep.txt"]


def test_bad_arguments_exit_2_with_one_line(workdir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train"])
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- divergence ----------------------------------------------------------------------------------

def test_divergence_exits_3_names_epoch_and_step(workdir, capsys):
    code = main(["train", str(EXAMPLES / "sine.toml"), "--out", "out", "--quiet",
                 "--set", "optim.name=sgd", "--set", "optim.lr=1e6", "--set", "data.preprocess=none"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "epoch 1, step" in err and "diverged" in err
    assert not (workdir / "out" / "results.json").exists()
    assert RunStore().runs()[0]["status"] == "diverged"


# -- listing -------------------------------------------------------------------------------------

def test_runs_and_datasets_commands(workdir, capsys):
    cfg = write(workdir / "small.toml", SMALL)
    assert main(["train", str(cfg), "--out", "out", "--quiet", "--set", "train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert "small" in table and "completed" in table
    assert main(["runs", "--status", "completed", "--name", "sma*", "--kind", "train", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["small"]
    assert main(["runs", "--status", "diverged", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["runs", "--status", "done"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "status must be one of" in err and "'done'" in err
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    for name in ("mnist1d", "mnist5k", "mnist", "digits", "moons", "sine", "late_delivery", "csv:PATH"):
        assert name in listing
    assert "video:DIR" in listing and "pip install 'regulab[video]'" in listing     # the one extra data needs


def test_config_defaults_is_a_commented_toml_of_every_default(workdir, capsys):
    """``regulab config --defaults`` loads to the default config, names every key of every
    section (unset ones commented out) with its meaning and population role."""
    import dataclasses

    from regulab.config.core import load_config
    from regulab.config.sections import SECTIONS
    assert main(["config", "--defaults"]) == 0
    text = capsys.readouterr().out
    write(workdir / "defaults.toml", text)
    assert load_config(workdir / "defaults.toml") == load_config()
    for section, cls in SECTIONS.items():
        assert f"\n[{section}]\n" in text
        for f in dataclasses.fields(cls):
            assert f"\n{f.name} = " in text or f"\n# {f.name} = (unset)" in text, (section, f.name)
    assert "# train/validation/test fractions; sum to 1 [shared]\nsplit = [0.8, 0.15, 0.05]" in text
    with pytest.raises(SystemExit) as exit_:           # --defaults is required: argparse's error
        main(["config"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--defaults" in err


def _violations(schema: dict, value, where: str = "") -> list[str]:
    """What of JSON Schema's vocabulary ``config --schema`` uses, checked independently: types,
    enum, bounds, lengths, pattern, items, anyOf, properties and additionalProperties."""
    import re
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool}
    out = []
    t = schema.get("type")
    if t in ("number", "integer"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and (t == "number" or isinstance(value, int))
        if not ok:
            return [f"{where}: not {t}"]
    elif t is not None and not isinstance(value, kinds[t]):
        return [f"{where}: not {t}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: not in enum")
    for k, bad in (("minimum", lambda b: value < b), ("maximum", lambda b: value > b),
                   ("exclusiveMinimum", lambda b: value <= b), ("exclusiveMaximum", lambda b: value >= b),
                   ("minItems", lambda b: len(value) < b), ("maxItems", lambda b: len(value) > b),
                   ("minLength", lambda b: len(value) < b), ("pattern", lambda b: not re.search(b, value))):
        if k in schema and bad(schema[k]):
            out.append(f"{where}: {k}")
    if "items" in schema:
        out += [v for i, x in enumerate(value) for v in _violations(schema["items"], x, f"{where}[{i}]")]
    if "anyOf" in schema and all(_violations(s, value, where) for s in schema["anyOf"]):
        out.append(f"{where}: no anyOf")
    for k, x in (value.items() if isinstance(value, dict) else ()):
        if k in schema.get("properties", {}):
            out += _violations(schema["properties"][k], x, f"{where}.{k}")
        elif schema.get("additionalProperties") is False:
            out.append(f"{where}.{k}: unknown")
    return out


def test_config_schema_describes_what_the_config_accepts(workdir, capsys):
    """``regulab config --schema``: every example config and every default passes it; each
    choice key's enum is what the config accepts, and a number just past a bound fails both."""
    import dataclasses
    import tomllib

    from regulab.config.core import load_config
    from regulab.config.sections import SECTIONS
    from regulab.errors import ConfigError
    assert main(["config", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    configs = []
    for f in sorted(Path(__file__).parents[1].glob("examples/**/*.toml")):
        try:
            load_config(f)              # what the config accepts (a study, a sweep or a spec: not)
        except ConfigError:
            continue
        configs.append(f)
        assert _violations(schema, tomllib.loads(f.read_text())) == [], f
    assert len(configs) >= 20
    checked = 0
    for section, cls in SECTIONS.items():
        props = schema["properties"][section]["properties"]
        assert set(props) == {f.name for f in dataclasses.fields(cls)} - set(SECTIONS)
        for f in dataclasses.fields(cls):
            p = props[f.name]
            if "default" in p:
                assert _violations(p, p["default"]) == [], (section, f.name)
            for value in p.get("enum", []):
                assert cls.check(f.name, value) == value
            if "enum" in p:
                with pytest.raises(ConfigError):
                    cls.check(f.name, "no-such-" + p["enum"][0])
            for bound, step in (("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1), ("exclusiveMaximum", 0)):
                if bound in p:          # just past the bound: both refuse it
                    past = p[bound] + step
                    assert _violations(p, past), (section, f.name, bound)
                    with pytest.raises(ConfigError):
                        cls.check(f.name, past)
                    checked += 1
    assert checked > 30


def test_verbosity_flags_set_the_regulab_logger(workdir, capsys):
    """-v shows the 'regulab' logger's info on stderr (which runs of a study train alone and
    why), -vv its debug, -q only errors and no progress bar; by default its warnings."""
    import logging
    log = logging.getLogger("regulab")
    for flags, level in (([], logging.WARNING), (["-v"], logging.INFO), (["-vv"], logging.DEBUG),
                         (["-v", "-v", "-v"], logging.DEBUG), (["-q"], logging.ERROR)):
        assert main([*flags, "runs"]) == 0
        assert log.level == level, flags
    capsys.readouterr()
    assert main(["-v", "runs"]) == 0
    log.info("run x trains alone: a reason")
    log.debug("not shown at -v")
    err = capsys.readouterr().err
    assert err == "regulab: INFO: run x trains alone: a reason\n"
    assert main(["runs"]) == 0                            # back to warnings only
    log.info("not shown")
    assert capsys.readouterr().err == ""
    handlers = [h for h in log.handlers if getattr(h, "regulab_cli", False)]
    assert len(handlers) == 1                             # one handler however often main runs


def test_quiet_flag_turns_the_progress_bar_off(workdir, monkeypatch, capsys):
    import regulab.runs.run as run_mod
    from regulab.errors import RegulabInputError
    calls = []

    def fake_train(cfg, **kw):          # what `regulab train` would train with, then stop
        calls.append(kw.get("progress"))
        raise RegulabInputError("stopped here")
    monkeypatch.setattr(run_mod, "train", fake_train)
    cfg = write(workdir / "small.toml", SMALL)
    assert main(["-q", "train", str(cfg)]) == 2 and main(["train", str(cfg)]) == 2
    assert calls == [False, None]       # -q: no bar; without it: a bar on a terminal


@pytest.mark.parametrize("line, expected", [
    ("regulab tr", ["train"]), ("regulab -v st", ["study"]), ("regulab s", ["study", "sweep"]),
    ("regulab train --ou", ["--out"]), ("regulab runs --st", ["--status"]),
    ("regulab completion ", ["bash", "zsh"]), ("regulab -q explain b", ["backprop"]),
    ("regulab train ex", ["example.toml"]),
])
def test_bash_completion_completes_commands_options_and_files(workdir, capsys, line, expected):
    """``regulab completion bash`` sourced in bash: the completions of a partly typed line."""
    import shutil
    import subprocess
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    assert main(["completion", "bash"]) == 0
    write(workdir / "comp.sh", capsys.readouterr().out)
    write(workdir / "example.toml", "")
    words = line.split() + ([""] if line.endswith(" ") else [])
    script = (f"source comp.sh; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
              f"COMP_CWORD={len(words) - 1}; _regulab; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    out = subprocess.run(["bash", "-c", script], cwd=workdir, capture_output=True, text=True, check=True).stdout
    assert out.split() == expected
    assert main(["completion", "zsh"]) == 0
    assert "bashcompinit" in capsys.readouterr().out     # zsh runs the same function through it


def test_python_api_train_is_the_function(workdir):
    """`rl.train` must stay the function even after the `regulab.train` subpackage is imported."""
    import regulab as rl
    import regulab.metrics  # noqa: F401
    cfg = rl.load_config(write(workdir / "small.toml", SMALL), {"train.epochs": 1})
    run = rl.train(cfg, out="api", progress=False)
    assert run.results["epochs_run"] == 1 and run.run_dir.name == "api"
    assert len(run.history) == 1 and isinstance(run.model, rl.nn.Pipeline)


def test_split_sizes_and_train_size(workdir):
    cfg = write(workdir / "small.toml", SMALL)          # moons, 400 examples, split 80/15/5
    assert main(["train", str(cfg), "--out", "full", "--quiet", "--set", "train.epochs=1"]) == 0
    full = json.loads((workdir / "full" / "results.json").read_text())
    assert (full["n_train"], full["n_val"], full["n_test"]) == (320, 60, 20)
    assert main(["train", str(cfg), "--out", "part", "--quiet", "--set", "train.epochs=1",
                 "--set", "data.train_size=0.25"]) == 0
    part = json.loads((workdir / "part" / "results.json").read_text())
    assert (part["n_train"], part["n_val"], part["n_test"]) == (80, 60, 20)


def test_own_test_set_is_kept(workdir):
    assert main(["train", str(EXAMPLES / "quickstart.toml"), "--out", "out", "--quiet",
                 "--set", "train.epochs=1"]) == 0
    r = json.loads((workdir / "out" / "results.json").read_text())
    # mnist1d: 4,000 pool split 0.8 : 0.15 into train/val; its own 1,000 test examples kept
    assert r["n_test"] == 1000 and r["n_train"] + r["n_val"] == 4000


def test_binary_cross_entropy(workdir, capsys):
    cfg = write(workdir / "small.toml", SMALL)
    assert main(["train", str(cfg), "--out", "out", "--quiet", "--set", "train.loss=bce",
                 "--set", "train.epochs=20", "--set", "train.early_stopping=false"]) == 0
    r = json.loads((workdir / "out" / "results.json").read_text())
    assert r["val_acc"] > 0.75      # moons with noise 0.3: a small MLP gets ~0.85
    ev = json.loads((workdir / "out" / "evaluation.json").read_text())
    assert len(ev["test"]["confusion_matrix"]) == 2
    plain = write(workdir / "plain.toml", PLAIN)
    capsys.readouterr()
    assert main(["train", str(plain), "--out", "bad", "--quiet", "--set", "train.loss=bce",
                 "--set", "data.dataset=digits"]) == 2
    err = capsys.readouterr().err
    assert "train.loss" in err and "'bce'" in err and "10" in err


def test_user_csv_and_image_folder(workdir):
    from PIL import Image
    rng = np.random.default_rng(0)
    rows = ["x1,x2,kind"] + [f"{a:.3f},{b:.3f},{'big' if a + b > 1 else 'small'}"
                             for a, b in rng.uniform(0, 1, size=(200, 2))]
    write(workdir / "table.csv", "\n".join(rows) + "\n")
    cfg = write(workdir / "c.toml", PLAIN)
    assert main(["train", str(cfg), "--out", "csv", "--quiet", "--set", "data.dataset=csv:table.csv",
                 "--set", "data.target=kind", "--set", "data.preprocess=standardize",
                 "--set", "train.epochs=30", "--set", "train.early_stopping=false"]) == 0
    ev = json.loads((workdir / "csv" / "evaluation.json").read_text())
    assert set(ev["val"]["per_class"]) == {"big", "small"}
    assert json.loads((workdir / "csv" / "results.json").read_text())["val_acc"] > 0.8

    for label, value in (("dark", 40), ("light", 210)):
        for i in range(12):
            pixels = np.clip(rng.normal(value, 20, size=(6, 6)), 0, 255).astype(np.uint8)
            (workdir / "imgs" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(workdir / "imgs" / label / f"{i}.png")
    assert main(["train", str(cfg), "--out", "img", "--quiet", "--set", "data.dataset=images:imgs",
                 "--set", "model.kind=cnn", "--set", "model.channels=[4]", "--set", "model.kernel_size=3",
                 "--set", "data.split=[0.6, 0.2, 0.2]", "--set", "train.epochs=2"]) == 0
    assert json.loads((workdir / "img" / "results.json").read_text())["n_test"] == 5


def test_explain_backprop_prints_the_notes_numbers(workdir, capsys):
    assert main(["explain", "backprop"]) == 0
    out = capsys.readouterr().out
    for number in ("0.298371109", "0.358916480", "0.408666186", "0.511301270", "0.561370121",
                   "iteration 2"):
        assert number in out
    assert main(["explain", "backprop", "--spec", str(EXAMPLES / "backprop_net.json")]) == 0
    assert main(["explain", "backprop", "--spec", "missing.toml"]) == 2
    err = capsys.readouterr().err
    assert "missing.toml" in err and err.count("\n") == 1


@pytest.mark.parametrize("sets, words", [
    (["regularization.l2=-0.1"], ["regularization.l2", "-0.1"]),
    (["regularization.max_norm=0"], ["regularization.max_norm", "0"]),
    (["model.dropconnect=1.0"], ["model.dropconnect", "1.0"]),
    (["model.input_dropout=-0.1"], ["model.input_dropout", "-0.1"]),
    (["regularization.penalty_layers=[\"fc9\"]", "regularization.l2=0.1"],
     ["regularization.penalty_layers", "fc9", "fc1"]),
    (["model.dropout_mode=clasic"], ["model.dropout_mode", "did you mean 'classic'"]),
    (["regularization.label_smoothing=0.1", "train.loss=bce"], ["label_smoothing", "bce"]),
])
def test_bad_regularization_values_exit_2(workdir, capsys, sets, words):
    cfg = write(workdir / "c.toml", SMALL)
    code = main(["train", str(cfg), "--out", "out", "--quiet", *[a for s in sets for a in ("--set", s)]])
    assert_refused(capsys, code, words, workdir)
    assert not (workdir / "runs").exists()
