"""kill -9 inside jobs of many runs, then the same command again: a study (a population of
runs, runs alone, test scoring, the report) and a sweep (trials, the best trial's test scores,
the report). ``tests/test_kill_moments.py`` does this for one run.

Each test is a chain: the command is started under ``tests/kill_at.py`` and SIGKILLed at one
moment, started again and killed at the next moment, and so on, then run to its end. Every
state a kill leaves is thus met by a process that must recover it (``regulab.studies.study``
and ``regulab.sweeps.worker`` say how), and the last one must end as an uninterrupted job:

- a study: every run equal, bit for bit, to the uninterrupted study's (weights, metrics.csv,
  results.json, evaluation.json), each run once in the store and completed (no row left
  "running"), the study's row completed, the same results.json; run once more, it trains
  nothing.
- a sweep: exactly ``trials`` trials completed, each in its own run directory, a killed trial
  failed and retried with its parameters, its run "killed" in the store, none "running".
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from regulab.runs.claims import Claims
from regulab.runs.store import RunStore

from .conftest import metrics_rows, subprocess_env, untimed, untimed_results, write

pytestmark = pytest.mark.slow

KILL_AT = Path(__file__).with_name("kill_at.py")

# a population of 8 (baseline, drop and two l2 candidates over 2 seeds), two runs alone
# (streamed data blocks stacking), the chosen l2 strength's 2 runs scored on test, the report
STUDY = """
[study]
name = "kj"
seeds = 2
[base]
data = { dataset = "moons", n_samples = 300 }
model = { hidden = [16] }
optim = { lr = 0.05 }
train = { epochs = 3, batch_size = 32, checkpoint_every = 1, threads = 1, early_stopping = false }
[variants.baseline]
[variants.l2]
tune = { "regularization.l2" = [1e-4, 1e-1] }
[variants.drop]
model.dropout = 0.3
[variants.stream]
data.resident = false
"""

# (moment, before | after, N-th call), one process each, in order (tests/kill_at.py); the
# counts are of that process's calls: it skips what the ones before it finished
STUDY_CHAIN = [
    ("mkdtemp", "after", 1),        # the study directory's temporary twin: nothing in place
    ("create_run", "before", 1),    # the study directory in place, no store row for the study
    ("rename", "after", 4),         # three members' run directories in place, no rows for them
    ("save_state", "after", 12),    # the population's first epoch checkpointed, half of its second
    ("results", "after", 3),        # three members' final writes done, the others' not
    ("finish", "after", 8),         # every member completed in the store, the unit not recorded
    ("claim_done", "after", 1),     # the population recorded; the runs alone not started
    ("save_state", "after", 2),     # a run alone (bag, seed 0) mid-way
    ("add_test", "after", 1),       # a chosen l2 run scored on test, not recorded
    ("study_results", "after", 1),  # the study's results.json, its row not completed, no report
    ("report", "after", 1),         # report.html written, the unit "report" not recorded
]


def _regulab(cwd: Path, env: dict, *args: str, kill: tuple | None = None) -> subprocess.CompletedProcess:
    wrapper = [str(KILL_AT), *map(str, kill)] if kill else ["-m", "regulab.cli"]
    return subprocess.run([sys.executable, *wrapper, *args, "--quiet"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _study(root: Path, data_cache: Path, kills: list[tuple]) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """``regulab study s.toml --out s`` in ``root`` (its own store), killed at each of ``kills``
    in turn, then run to its end."""
    write(root / "s.toml", STUDY)
    env = subprocess_env(data_cache)
    args = ("study", "s.toml", "--out", "s", "--db", f"sqlite:///{root / 'r.db'}")
    for kill in kills:
        killed = _regulab(root, env, *args, kill=kill)
        assert killed.returncode == -9, f"{kill}: the moment never came: {killed.returncode} {killed.stderr[-2000:]}"
    done = _regulab(root, env, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "s", [done]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_cache) -> Path:
    """The uninterrupted study."""
    study_dir, _ = _study(tmp_path_factory.mktemp("reference"), data_cache, [])
    return study_dir


def _files(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file()}


def test_a_study_killed_at_each_moment_ends_as_the_uninterrupted_one(tmp_path, data_cache, reference):
    study_dir, (done,) = _study(tmp_path, data_cache, STUDY_CHAIN)
    expected = json.loads((reference / "results.json").read_text())
    assert untimed(json.loads((study_dir / "results.json").read_text())) == untimed(expected)
    assert (study_dir / "report.html").is_file()

    runs = sorted(p.parent.relative_to(reference) for p in reference.rglob("config.toml"))
    assert sorted(p.parent.relative_to(study_dir) for p in study_dir.rglob("config.toml")) == runs
    assert len(runs) == 10
    for rel in runs:
        got, want = study_dir / rel, reference / rel
        assert (got / "model.safetensors").read_bytes() == (want / "model.safetensors").read_bytes(), rel
        assert metrics_rows(got) == metrics_rows(want), rel
        assert untimed_results(got) == untimed_results(want), rel
        assert (got / "evaluation.json").read_text() == (want / "evaluation.json").read_text(), rel
    # nothing a kill left behind inside the study: no temporary directory or file
    assert not [p for p in study_dir.rglob(".*")], list(study_dir.rglob(".*"))

    store = RunStore(f"sqlite:///{tmp_path / 'r.db'}")
    rows = store.runs()
    where = Counter(Path(r["run_dir"]).relative_to(study_dir.resolve()).as_posix() for r in rows)
    assert set(where.values()) == {1} and set(where) == {"."} | {r.as_posix() for r in runs}
    assert {r["status"] for r in rows} == {"completed"}, [(r["run_dir"], r["status"]) for r in rows]
    for r in rows:
        if r["kind"] == "train":
            assert [h["epoch"] for h in store.get_run(r["id"])["history"]] == [1, 2, 3], r["run_dir"]
    (study_row,) = [r for r in rows if r["kind"] == "study"]
    assert untimed(store.get_run(study_row["id"])["results"]) == untimed(expected)
    claims = Claims(store.url, str(study_dir.resolve())).rows()
    assert {c["status"] for c in claims} == {"done"}
    assert sum(c["unit"] == "report" for c in claims) == 1

    # a finished study run again: its summary, nothing trained or written
    before = {rel: _files(study_dir / rel) for rel in runs}
    report = (study_dir / "report.html").read_bytes()
    again = _regulab(tmp_path, subprocess_env(data_cache), "study", "s.toml", "--out", "s",
                     "--db", f"sqlite:///{tmp_path / 'r.db'}")
    assert again.returncode == 0 and again.stdout == done.stdout, again.stderr[-2000:]
    assert {rel: _files(study_dir / rel) for rel in runs} == before
    assert (study_dir / "report.html").read_bytes() == report
    assert len(store.runs()) == len(rows)


# -- a sweep -----------------------------------------------------------------------------------

SWEEP = """
[sweep]
name = "kill-chain"
sampler = "random"
trials = 3
seed = 0
population = 1
heartbeat = 1
grace = 2
retries = 5
[base]
data = { dataset = "moons", n_samples = 300 }
model = { hidden = [16] }
train = { epochs = 3, batch_size = 32, checkpoint_every = 1, threads = 1, early_stopping = false }
[space]
"optim.lr" = { low = 1e-3, high = 1e-1, log = true }
"""

SWEEP_CHAIN = [
    ("prepare", "before", 1),       # a trial asked, nothing of its run on disk
    ("save_state", "after", 2),     # a trial's run mid-way
    ("results", "after", 1),        # a trial's run written, its row running
    ("finish", "after", 1),         # a trial's run completed, the trial not told
    ("best_test", "after", 1),      # the budget spent, the best trial scored on test, not kept
    ("best_json", "after", 1),      # best.json written, no report
]


def test_a_sweep_killed_at_each_moment_runs_every_trial_once(tmp_path, data_cache):
    write(tmp_path / "sw.toml", SWEEP)
    env, url = subprocess_env(data_cache), f"sqlite:///{tmp_path / 'r.db'}"
    args = ("sweep", "sw.toml", "--out", "sw", "--db", url)
    for kill in SWEEP_CHAIN:
        killed = _regulab(tmp_path, env, *args, kill=kill)
        assert killed.returncode == -9, f"{kill}: the moment never came: {killed.returncode} {killed.stderr[-2000:]}"
    done = _regulab(tmp_path, env, *args)
    assert done.returncode == 0, done.stderr[-3000:]

    trials = optuna.load_study(study_name="kill-chain", storage=url).get_trials()
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) == 3, [(t.number, t.state) for t in trials]
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.FAIL}
    dirs = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(dirs)) == len(dirs)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) >= 4         # the kills inside a trial's run
    for t in failed:    # retried with its parameters (a retry's retry too), until one completed
        retries = [r for r in trials if t.number in r.system_attrs.get("retry_history", [])]
        assert retries and all(r.params == t.params for r in retries), t.number
        assert retries[-1].state == TrialState.COMPLETE, t.number
    for t in completed:
        assert (Path(t.user_attrs["run_dir"]) / "results.json").is_file()

    store = RunStore(url)
    status = {r["run_dir"]: r["status"] for r in store.runs()}
    assert "running" not in status.values(), status
    assert {status[t.user_attrs["run_dir"]] for t in completed} == {"completed"}
    assert {status.get(t.user_attrs["run_dir"], "killed") for t in failed} == {"killed"}
    best = json.loads((tmp_path / "sw" / "best.json").read_text())
    assert best["run_dir"] in {t.user_attrs["run_dir"] for t in completed}
    assert set(best["test"]) >= {"test_acc", "test_loss"}
    assert (tmp_path / "sw" / "report.html").is_file() and (tmp_path / "sw" / "best.toml").is_file()
