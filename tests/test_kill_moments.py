"""kill -9 at every named moment of a run's life, then recovery: bit-identical, one store row.

Each case runs ``regulab train`` under ``tests/kill_at.py``, which SIGKILLs the process before
or after the N-th call of one moment (no hook in regulab's code). Then the contract of
``regulab.runs.run`` (its module docstring): once the run directory is in place (it appears
whole, with config.toml), ``regulab resume RUN_DIR`` finishes the run; before that, nothing
but a hidden temporary directory beside ``--out`` exists, and the same ``regulab train
--out`` starts afresh. Either way the final files equal an uninterrupted run's and the store
holds one row for the run, completed, with one epoch row per epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regulab.paths import PARTIAL, making, remove_partial
from regulab.runs.store import RunStore

from .conftest import metrics_rows, subprocess_env, untimed_results, write

KILL_AT = Path(__file__).with_name("kill_at.py")
EPOCHS = 3
CONFIG = f"""
name = "kill"
[data]
dataset = "moons"
n_samples = 400
preprocess = "standardize"
[model]
hidden = [16]
dropout = 0.2
batchnorm = true
[train]
epochs = {EPOCHS}
batch_size = 32
patience = 5
checkpoint_every = 1
"""

# (moment, before | after, the N-th call): in the order a run reaches them (tests/kill_at.py)
MOMENTS = [
    ("prepare", "before", 1),           # process start
    ("mkdtemp", "after", 1),            # the temporary run directory made
    ("checkpoint_dir", "after", 1),     # its checkpoint/ made
    ("config", "after", 1),             # config.toml in it
    ("rename", "after", 1),             # the run directory in place, no store row
    ("create_run", "before", 1),
    ("create_run", "after", 1),         # the store row, no run.json
    ("run_json", "after", 1),
    ("metrics_csv", "after", 1),        # metrics.csv's header, no epoch
    ("epoch_rows", "before", 1),        # the first epoch in metrics.csv only
    ("epoch_rows", "after", 1),         # the first epoch in the store, no checkpoint
    ("state_replace", "before", 1),     # the first checkpoint written, not renamed
    ("state_replace", "after", 1),      # renamed, the directory not fsynced
    ("save_state", "after", 1),
    ("epoch_rows", "after", 2),
    ("state_replace", "before", 2),
    ("save_state", "after", 2),
    ("state_replace", "before", EPOCHS),   # the last epoch's checkpoint
    ("save_state", "after", EPOCHS),
    ("end_fit", "after", 1),            # training over, nothing of the end written
    ("model", "before", 1),
    ("model", "after", 1),
    ("model_json", "after", 1),
    ("evaluation", "before", 1),
    ("evaluation", "after", 1),
    ("results", "before", 1),
    ("results", "after", 1),            # results.json, the store row still running
    ("finish", "before", 1),
    ("finish", "after", 1),             # all done: the kill lands on a finished run
]


def _regulab(env: dict, *args: str, kill: tuple[str, str, int] | None = None) -> subprocess.CompletedProcess:
    wrapper = [str(KILL_AT), *map(str, kill)] if kill else ["-m", "regulab.cli"]
    return subprocess.run([sys.executable, *wrapper, *args, "--quiet"], env=env, capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_cache) -> Path:
    """The uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    cfg = write(root / "kill.toml", CONFIG)
    done = _regulab(subprocess_env(data_cache, root / "ref.db"), "train", str(cfg), "--out", str(root / "run"))
    assert done.returncode == 0, done.stderr
    return root / "run"


@pytest.mark.parametrize("moment", MOMENTS, ids=["-".join(map(str, m)) for m in MOMENTS])
def test_a_kill_at_each_moment_recovers_bit_identically(tmp_path, data_cache, reference, moment):
    cfg = write(tmp_path / "kill.toml", CONFIG)
    db = tmp_path / "runs.db"
    env = subprocess_env(data_cache, db)
    run_dir = tmp_path / "out" / "run"
    killed = _regulab(env, "train", str(cfg), "--out", str(run_dir), kill=moment)
    assert killed.returncode == -9, f"the moment never came: {killed.returncode} {killed.stderr}"

    if not run_dir.exists():        # killed before the directory was in place: train again
        assert not RunStore(f"sqlite:///{db}").runs()
        left = list(run_dir.parent.iterdir()) if run_dir.parent.exists() else []
        assert len(left) <= 1 and all(p.name.startswith(".run.") and p.name.endswith(PARTIAL) for p in left), left
        again = _regulab(env, "train", str(cfg), "--out", str(run_dir))
    else:
        again = _regulab(env, "resume", str(run_dir))
    if moment[0] == "finish" and moment[1] == "after":      # it had finished
        assert again.returncode == 2 and "already complete" in again.stderr
    else:
        assert again.returncode == 0, again.stderr

    assert (run_dir / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert untimed_results(run_dir) == untimed_results(reference)
    assert metrics_rows(run_dir) == metrics_rows(reference)
    assert (run_dir / "evaluation.json").read_text() == (reference / "evaluation.json").read_text()
    assert [p.name for p in run_dir.parent.iterdir()] == ["run"]     # no hidden directory left
    store = RunStore(f"sqlite:///{db}")
    rows = store.runs()
    assert [(r["status"], r["run_dir"]) for r in rows] == [("completed", str(run_dir.resolve()))]
    run = store.get_run(rows[0]["id"])
    assert [h["epoch"] for h in run["history"]] == list(range(1, EPOCHS + 1))
    assert run["results"] == json.loads((run_dir / "results.json").read_text())


def test_resume_completes_the_row_of_a_run_with_results_json(workdir, capsys):
    """The defect the kills found: killed between results.json and the store's finish, the row
    stayed "running" and resume refused the run as complete. Now resume completes the row from
    results.json, trains nothing, and a second resume is refused."""
    from regulab.cli import main
    write(workdir / "kill.toml", CONFIG)
    assert main(["train", "kill.toml", "--out", "run", "--quiet"]) == 0
    store = RunStore()
    (row,) = store.runs()
    store.finish(row["id"], "running", {})      # as the kill left it: no results in the row
    files = {p: p.read_bytes() for p in (workdir / "run").rglob("*") if p.is_file()}

    assert main(["resume", "run", "--quiet"]) == 0
    (done,) = store.runs()
    assert done["status"] == "completed" and done["epochs"] == EPOCHS
    assert done["results"] == json.loads((workdir / "run" / "results.json").read_text())
    assert {p: p.read_bytes() for p in (workdir / "run").rglob("*") if p.is_file()} == files
    capsys.readouterr()
    assert main(["resume", "run", "--quiet"]) == 2
    assert "already complete" in capsys.readouterr().err


def test_partial_directories_are_removed_only_when_none_is_being_made(tmp_path):
    """``paths.remove_partial``: the hidden ``.NAME.xxxxxxxx.regulab-partial`` directories, and
    nothing else, once no process holds the folder's flock (``paths.making``)."""
    stale = tmp_path / f".run.abcd1234{PARTIAL}"
    (stale / "checkpoint").mkdir(parents=True)
    (stale / "config.toml").write_text("x")
    target = tmp_path / "elsewhere"
    target.mkdir()
    kept = [tmp_path / ".git", tmp_path / ".run.abcd1234", tmp_path / f"visible{PARTIAL}"]
    for p in kept:
        p.mkdir()
    (tmp_path / f".file{PARTIAL}").write_text("a file, not a run directory")
    (tmp_path / f".link{PARTIAL}").symlink_to(target, target_is_directory=True)
    everything = sorted(p.name for p in tmp_path.iterdir())

    with making(tmp_path):      # a run being made here: nothing is removed
        assert remove_partial(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == everything
    assert remove_partial(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(everything) - {stale.name})
    assert target.is_dir() and all(p.is_dir() for p in kept)
    assert remove_partial(tmp_path / "missing") == []


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_run_being_made_is_left_alone_by_other_commands(tmp_path, data_cache):
    """A ``regulab train`` stopped while it makes its run directory (SIGSTOP, holding the
    folder's flock): another ``train`` and ``runs`` in that folder leave its hidden directory be;
    let go on, it finishes; the next command then finds nothing to remove."""
    cfg = write(tmp_path / "kill.toml", CONFIG)
    env = subprocess_env(data_cache, tmp_path / "runs.db")
    out = tmp_path / "out"
    paused = subprocess.Popen([sys.executable, str(KILL_AT), "checkpoint_dir", "pause", "1", "train", str(cfg),
                               "--out", str(out / "a"), "--quiet"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _stopped(paused.pid) and paused.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _stopped(paused.pid), paused.stderr.read() if paused.poll() is not None else "never stopped"
        (partial,) = [p for p in out.iterdir() if p.name.endswith(PARTIAL)]

        assert _regulab(env, "train", str(cfg), "--out", str(out / "b")).returncode == 0
        listed = subprocess.run([sys.executable, "-m", "regulab.cli", "runs"], env=env, cwd=tmp_path,
                                capture_output=True, text=True)
        assert listed.returncode == 0 and "kill" in listed.stdout, listed.stderr
        assert partial.is_dir() and (partial / "checkpoint").is_dir()
    finally:
        os.kill(paused.pid, signal.SIGCONT)
        paused.wait()
    assert paused.returncode == 0, paused.stderr.read()
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]
    assert (out / "a" / "results.json").is_file()
