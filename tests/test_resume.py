"""kill -9 at any moment, then ``regulab resume``: the final weights are bit-identical on CPU."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regulab.cli import main

from .conftest import epochs_logged, subprocess_env, write

# ~0.1 s per epoch on 2 cores: long enough to land a kill between epochs, short enough to test.
CONFIG = """
name = "resume"
[data]
dataset = "moons"
n_samples = 3000
preprocess = "standardize"
[model]
hidden = [32, 32]
dropout = 0.2
batchnorm = true
[optim]
name = "adam"
lr = 0.003
[train]
epochs = 14
batch_size = 16
patience = 4
min_delta = 0.001
checkpoint_every = 1   # a checkpoint at each epoch's end: the kills land after one ("auto" waits 10 s)
"""


def _train_and_kill(cfg: Path, run_dir: Path, env: dict, after_epochs: int) -> None:
    """Start ``regulab train``, SIGKILL it once ``after_epochs`` epochs are logged (0: as soon as
    the run directory exists)."""
    proc = subprocess.Popen([sys.executable, "-m", "regulab.cli", "train", str(cfg), "--out",
                             str(run_dir), "--quiet"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / "config.toml").exists() and epochs_logged(run_dir) >= after_epochs:
            break
        time.sleep(0.002)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "results.json").exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_cache):
    """The uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    cfg = write(root / "resume.toml", CONFIG)
    env = subprocess_env(data_cache, root / "ref.db")
    subprocess.run([sys.executable, "-m", "regulab.cli", "train", str(cfg), "--out",
                    str(root / "run"), "--quiet"], env=env, check=True, capture_output=True)
    return root / "run"


@pytest.mark.parametrize("after_epochs", [0, 1, 5, 9])
def test_kill_9_then_resume_is_bit_identical(tmp_path, data_cache, reference, after_epochs):
    cfg = write(tmp_path / "resume.toml", CONFIG)
    db = tmp_path / "runs.db"
    env = subprocess_env(data_cache, db)
    run_dir = tmp_path / "run"
    _train_and_kill(cfg, run_dir, env, after_epochs)

    done = subprocess.run([sys.executable, "-m", "regulab.cli", "resume", str(run_dir), "--quiet"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    assert (run_dir / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    ours = json.loads((run_dir / "results.json").read_text())
    ref = json.loads((reference / "results.json").read_text())
    ours.pop("fit_seconds"), ref.pop("fit_seconds")
    assert ours == ref
    def strip(path):
        with open(path) as f:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]
    assert strip(run_dir / "metrics.csv") == strip(reference / "metrics.csv")
    assert (run_dir / "evaluation.json").read_text() == (reference / "evaluation.json").read_text()

    # the store holds one run, completed, with every epoch exactly once
    from regulab.runs.store import RunStore
    rows = RunStore(f"sqlite:///{db}").runs()
    assert len(rows) == 1 and rows[0]["status"] == "completed"
    assert rows[0]["epochs"] == ref["epochs_run"]


REGULARIZED = CONFIG.replace('[optim]', """dropout_mode = "classic"
dropconnect = 0.2
[regularization]
l1 = 0.0001
l2 = 0.001
max_norm = 2.0
input_noise = 0.1
label_smoothing = 0.05
ema = 0.9
[eval]
dropout_inference = "mc_geometric"
mc_samples = 8
[optim]""").replace("dropout = 0.2\n", "dropout = 0.2\n", 1)


def test_kill_9_then_resume_with_every_regularizer(tmp_path, data_cache):
    """Penalties, constraints, noise, EMA and Monte-Carlo inference resume exactly too."""
    cfg = write(tmp_path / "reg.toml", REGULARIZED)
    env = subprocess_env(data_cache, tmp_path / "runs.db")
    ref = subprocess.run([sys.executable, "-m", "regulab.cli", "train", str(cfg), "--out",
                          str(tmp_path / "ref"), "--quiet"], env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    _train_and_kill(cfg, tmp_path / "run", env, 3)
    done = subprocess.run([sys.executable, "-m", "regulab.cli", "resume", str(tmp_path / "run"),
                           "--quiet"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == \
        (tmp_path / "ref" / "model.safetensors").read_bytes()
    ours, theirs = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("run", "ref"))
    ours.pop("fit_seconds"), theirs.pop("fit_seconds")
    assert ours == theirs
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "l1_penalty,l2_penalty,max_unit_norm,input_noise" in header


def test_resume_refuses_a_corrupted_checkpoint_and_changes_nothing(tmp_path, data_cache, capsys,
                                                                   monkeypatch):
    cfg = write(tmp_path / "resume.toml", CONFIG)
    env = subprocess_env(data_cache, tmp_path / "runs.db")
    run_dir = tmp_path / "run"
    _train_and_kill(cfg, run_dir, env, 2)
    state = run_dir / "checkpoint" / "state.safetensors"
    state.write_bytes(b"\x00garbage" * 10)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    monkeypatch.setenv("REGULAB_CACHE", str(data_cache))
    assert main(["resume", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "state.safetensors" in err and "corrupted" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_resume_of_a_finished_run_is_refused(reference, capsys):
    assert main(["resume", str(reference)]) == 2
    assert "already complete" in capsys.readouterr().err
