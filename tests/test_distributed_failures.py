"""A data-parallel rank that dies or raises (issue 16): the job ends in one line -- the rank's
own regulab error, else ``RankFailed`` naming the rank and how it ended (a signal, an
exception) -- with no rank left running, the store row marked failed and the last checkpoint
whole, so ``regulab resume`` finishes the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from regulab.engine.distributed import RankFailed, spawn
from regulab.errors import DataError
from regulab.runs.store import RunStore

from .conftest import metrics_rows, subprocess_env, write


def _gone(pid: int) -> bool:
    """Whether no process ``pid`` runs any more (a zombie would still answer kill 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _pids(path: Path) -> list[int]:
    return [int(line.split()[1]) for line in path.read_text().splitlines()]


def _rank_task(how: str, where: str) -> None:
    """One rank of ``spawn``: note its pid; rank 1 ends ``how``, rank 0 waits for it in a
    collective (as a rank waits on a lost one mid-epoch)."""
    rank = dist.get_rank()
    with open(Path(where) / "pids", "a") as f:
        f.write(f"{rank} {os.getpid()}\n")
    if rank == 1:
        if how == "raise":
            raise RuntimeError("boom in rank 1")
        if how == "data":
            raise DataError("data.dataset: file 'x.csv' is bad in rank 1")
        os.kill(os.getpid(), getattr(signal, how))
    dist.all_reduce(torch.ones(1))


@pytest.mark.parametrize("how, words, error", [
    ("SIGKILL", ["data-parallel process 1 of 2 was killed by signal SIGKILL"], RankFailed),
    pytest.param("SIGABRT", ["process 1 of 2 was killed by signal SIGABRT"], RankFailed,
                 marks=pytest.mark.slow),
    ("raise", ["process 1 of 2 raised RuntimeError: boom in rank 1"], RankFailed),
    pytest.param("data", ["file 'x.csv' is bad in rank 1"], DataError, marks=pytest.mark.slow),
])
def test_a_failed_rank_ends_the_job_in_one_error_and_no_rank_is_left(tmp_path, how, words, error):
    start = time.monotonic()
    with pytest.raises(error) as e:
        spawn(_rank_task, 2, torch.device("cpu"), how, str(tmp_path))
    assert time.monotonic() - start < 60
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in words), message
    pids = _pids(tmp_path / "pids")
    assert len(pids) == 2 and all(_gone(p) for p in pids), pids


# -- a run of the command: one line, the row failed, resumed --------------------------------------

NET = '''
import os, signal
from pathlib import Path
from torch import nn


class Net(nn.Module):
    """An MLP whose training forward, in rank 1, ends $HOW at its $CALLS-th call, once."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
        self.calls = 0
        with open(os.environ["PIDS"], "a") as f:
            f.write(f"{os.environ.get('RANK', '-')} {os.getpid()}\\n")

    def forward(self, x):
        marker = Path(os.environ["MARKER"])
        if self.training and os.environ.get("RANK") == "1" and not marker.exists():
            self.calls += 1
            if self.calls == int(os.environ["CALLS"]):
                marker.write_text("done")
                if os.environ["HOW"] == "raise":
                    raise RuntimeError("boom in rank 1")
                os.kill(os.getpid(), getattr(signal, os.environ["HOW"]))
        return self.body(x)
'''

CONFIG = """
name = "dead"
[data]
dataset = "moons"
n_samples = 400
[model]
factory = "net.py:Net"
[train]
epochs = 5
batch_size = 32
checkpoint_every = 1
nproc = 2
"""
STEPS = 10      # 320 training rows in batches of 32


@pytest.mark.slow
def test_a_killed_rank_is_one_line_the_row_failed_and_resume_finishes(tmp_path, data_cache):
    write(tmp_path / "net.py", NET)
    cfg = write(tmp_path / "dead.toml", CONFIG)
    env = {**subprocess_env(data_cache, tmp_path / "runs.db"), "HOW": "SIGKILL",
           "CALLS": str(2 * STEPS + 3), "MARKER": str(tmp_path / "marker"), "PIDS": str(tmp_path / "pids")}
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "regulab.cli", "train", str(cfg), "--out", str(run_dir),
                           "--quiet"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("regulab: error: "), done.stderr
    assert "data-parallel process 1 of 2 was killed by signal SIGKILL" in done.stderr
    assert f"regulab resume {run_dir}" in done.stderr
    assert all(_gone(p) for p in _pids(tmp_path / "pids"))
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    (row,) = store.runs()
    assert row["status"] == "failed" and row["epochs"] == 2      # killed in epoch 3
    before = metrics_rows(run_dir)
    assert len(before) == 2 and not (run_dir / "results.json").exists()

    again = subprocess.run([sys.executable, "-m", "regulab.cli", "resume", str(run_dir), "--quiet"], env=env,
                           capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    (row,) = store.runs()
    assert row["status"] == "completed" and row["epochs"] == 5
    after = metrics_rows(run_dir)
    assert len(after) == 5 and after[:2] == before      # continued from the epoch-2 checkpoint
    assert json.loads((run_dir / "results.json").read_text())["epochs_run"] == 5
