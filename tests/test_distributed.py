"""Data-parallel training (``train.nproc``; torch.distributed, gloo on CPU): 2 processes give the
run of 1 process with the same global batch, within float tolerance; only rank 0 writes; a
killed 2-process run resumes to the uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import regulab as rl
from regulab.cli import main
from regulab.engine.distributed import DataParallel
from regulab.runs.store import RunStore

from .conftest import assert_refused, epochs_logged, metrics_rows, subprocess_env, untimed_results, write

# 991 training rows in batches of 33: 30 full batches, split 16/17 between the 2 ranks (uneven),
# and a last batch of 1 row, which leaves rank 0 an empty shard. No dropout or noise: exact.
CONFIG = """
name = "dp"
[data]
dataset = "digits"
preprocess = "standardize"
train_size = 991
[model]
hidden = [32]
[regularization]
l2 = 0.001
[optim]
name = "adam"
lr = 0.003
[train]
epochs = 6
batch_size = 33
patience = 2
"""

RUN_FILES = {"config.toml", "metrics.csv", "results.json", "evaluation.json", "model.safetensors", "model.json",
             "checkpoint"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same config trained by 1 process (the command) and by 2 (the Python API)."""
    root = tmp_path_factory.mktemp("dp")
    cfg = write(root / "dp.toml", CONFIG)
    db = f"sqlite:///{root / 'runs.db'}"
    assert main(["train", str(cfg), "--out", str(root / "one"), "--db", db, "--quiet"]) == 0
    run = rl.train(rl.load_config(cfg, {"train.nproc": 2}), out=root / "two", db=db, progress=False)
    return root, db, run


def test_shards_are_contiguous_uneven_or_empty():
    batch = torch.arange(33)
    parts = [DataParallel(r, 2).shard(batch, batch) for r in range(2)]
    assert [len(x) for x, _, _ in parts] == [16, 17] and [s for _, _, s in parts] == [16 / 33, 17 / 33]
    assert torch.equal(torch.cat([x for x, _, _ in parts]), batch)
    last = [DataParallel(r, 2).shard(batch[:1], batch[:1]) for r in range(2)]
    assert [len(x) for x, _, _ in last] == [0, 1] and [s for _, _, s in last] == [0.0, 1.0]


def test_two_processes_match_one(runs):
    root, _, run = runs
    one, two = metrics_rows(root / "one"), metrics_rows(root / "two")
    assert len(one) == len(two) == 6
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7), (a["epoch"], k)
    w1, w2 = load_file(root / "one" / "model.safetensors"), load_file(root / "two" / "model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-5, atol=1e-5)
    r1, r2 = untimed_results(root / "one"), untimed_results(root / "two")
    assert r1.keys() == r2.keys()
    for k, v in r1.items():
        assert r2[k] == (pytest.approx(v, rel=1e-5) if isinstance(v, float) else v), k
    # the Python API returns the run that rank 0 wrote
    assert run.run_dir == root / "two" and run.results["val_acc"] == r2["val_acc"]
    assert [h["val_loss"] for h in run.history] == [h["val_loss"] for h in two]
    assert all(torch.equal(v.cpu(), w2[k]) for k, v in run.model.state_dict().items())
    assert "nproc = 2" in (root / "two" / "config.toml").read_text()


def test_two_processes_write_once(runs):
    root, db, _ = runs
    two = root / "two"
    assert {p.name for p in two.iterdir()} == RUN_FILES
    assert {p.name for p in (two / "checkpoint").iterdir()} == {"run.json", "state.safetensors"}
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["one", "two"]
    assert [int(h["epoch"]) for h in metrics_rows(two)] == list(range(1, 7))
    rows = [r for r in RunStore(db).runs() if Path(r["run_dir"]) == two.resolve()]
    assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["epochs"] == 6
    assert len(RunStore(db).runs()) == 2


def test_killed_two_process_run_resumes_to_the_uninterrupted_one(runs, tmp_path, data_cache):
    root, _, _ = runs
    cfg = write(tmp_path / "dp.toml", CONFIG)
    run_dir = tmp_path / "run"
    # its own session: SIGKILL reaches the launcher and both ranks at once, as a lost machine would
    proc = subprocess.Popen([sys.executable, "-m", "regulab.cli", "train", str(cfg), "--nproc", "2",
                             "--out", str(run_dir), "--quiet"],
                            env=subprocess_env(data_cache, tmp_path / "runs.db"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and epochs_logged(run_dir) < 2:
        time.sleep(0.002)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "results.json").exists()

    assert main(["resume", str(run_dir), "--quiet"]) == 0    # 2 processes, from config.toml
    ref = root / "two"
    assert (run_dir / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert metrics_rows(run_dir) == metrics_rows(ref)
    assert untimed_results(run_dir) == untimed_results(ref)
    rows = RunStore(f"sqlite:///{tmp_path / 'runs.db'}").runs()
    assert len(rows) == 1 and rows[0]["status"] == "completed" and rows[0]["epochs"] == 6


@pytest.mark.parametrize("value, words", [
    ("0", ["train.nproc", "0"]), ("-1", ["train.nproc", "-1"]), ("x", ["train.nproc", "'x'"]),
    ("34", ["train.nproc", "batch_size=33"]),
])
def test_bad_nproc_exits_2_and_writes_nothing(workdir, capsys, value, words):
    cfg = write(workdir / "dp.toml", CONFIG)
    assert_refused(capsys, main(["train", str(cfg), "--nproc", value, "--out", "out"]), words, workdir)
    assert not (workdir / "runs").exists()
