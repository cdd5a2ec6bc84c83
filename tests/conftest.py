"""Shared fixtures: every test runs in its own directory with its own run store and data cache.

The fast subset (``make test-fast``, ``pytest -m "not slow"``) leaves out the tests named in
``SLOW`` -- each takes seconds: it kills processes, starts a database server or a browser, or
trains many runs -- and those marked ``@pytest.mark.slow`` in their file.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

SLOW = (   # node ids without parameters; each matches all its parametrizations
    "tests/test_resume.py::test_kill_9_then_resume_is_bit_identical",
    "tests/test_resume.py::test_kill_9_then_resume_with_every_regularizer",
    "tests/test_resume.py::test_resume_refuses_a_corrupted_checkpoint_and_changes_nothing",
    "tests/test_kill_moments.py::test_a_kill_at_each_moment_recovers_bit_identically",
    "tests/test_sweep.py::test_a_killed_workers_trial_is_failed_and_retried",
    "tests/test_sweep.py::test_three_workers_spend_the_budget_exactly",
    "tests/test_sweep.py::test_a_killed_workers_population_is_failed_and_retried",
    "tests/test_study_examples.py::test_example_study_quick",
    "tests/test_study_shared.py::test_two_workers_share_a_study_one_killed",
    "tests/test_study_shared.py::test_a_worker_with_another_study_is_refused",
    "tests/test_distributed.py::test_killed_two_process_run_resumes_to_the_uninterrupted_one",
    "tests/test_distributed.py::test_two_processes_match_one",
    "tests/test_store.py::test_four_processes_write_one_file",
    "tests/test_report_browser.py",
    "tests/test_examples.py::test_video_example_samples_frames_and_computes_flow",
    "tests/test_examples.py::test_example_trains_and_logs_its_values",
    "tests/test_datasets.py::test_fixed_classification_builtins",
    "tests/test_datasets.py::test_mnist_full_shapes",
    "tests/test_mnist1d.py::test_quickstart_mlp_reaches_the_papers_accuracy",
    "tests/test_sklearn.py::test_grid_search_over_l2_and_dropout_in_a_pipeline",
    "tests/test_sklearn.py::test_importing_regulab_does_not_import_the_estimators",
    "tests/test_user_data.py::test_four_times_the_memory_budget_trains_in_bounded_memory",
    "tests/test_user_data.py::test_two_processes_over_streamed_data_match_one",
    "tests/test_user_model.py::test_a_study_of_every_technique_on_the_users_network",
)


def pytest_collection_modifyitems(config, items):
    """Mark the ``SLOW`` tests; when the whole suite is collected, a name in ``SLOW`` that
    matches no test is an error (the list must not rot as tests are renamed)."""
    used = set()
    for item in items:
        base = item.nodeid.split("[", 1)[0]
        for name in SLOW:
            if base == name or base.startswith(name + "::"):
                item.add_marker(pytest.mark.slow)
                used.add(name)
    whole = not config.args or [Path(a).resolve() for a in config.args] == [REPO / "tests"]
    if whole and not config.getoption("keyword") and not config.getoption("markexpr"):
        stale = sorted(set(SLOW) - used)
        if stale:
            raise pytest.UsageError(f"tests/conftest.py SLOW names tests that do not exist: {stale}")


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One dataset cache for the session, so mnist1d is generated once."""
    return tmp_path_factory.mktemp("regulab-cache")


@pytest.fixture
def workdir(tmp_path, monkeypatch, data_cache) -> Path:
    """A clean working directory; the run store defaults to runs/regulab.db inside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGULAB_DB", raising=False)
    monkeypatch.setenv("REGULAB_CACHE", str(data_cache))
    return tmp_path


def epochs_logged(run_dir: Path) -> int:
    """Rows in a run's metrics.csv (0 while it has none)."""
    try:
        with open(run_dir / "metrics.csv") as f:
            return sum(1 for _ in csv.DictReader(f))
    except (FileNotFoundError, csv.Error):
        return 0


def metrics_rows(run_dir: Path) -> list[dict[str, float]]:
    """A run's metrics.csv as numbers, without the timings."""
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def untimed_results(run_dir: Path) -> dict:
    """A run's results.json without fit_seconds."""
    results = json.loads((run_dir / "results.json").read_text())
    results.pop("fit_seconds")
    return results


def untimed(obj):
    """Results (nested dicts and lists) without what a clock or a machine decides."""
    if isinstance(obj, dict):
        return {k: untimed(v) for k, v in obj.items() if k not in ("seconds", "fit_seconds", "db")}
    if isinstance(obj, list):
        return [untimed(v) for v in obj]
    return obj


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def study_once(root: Path, data_cache: Path, text: str) -> tuple[Path, dict]:
    """Run the study file ``text`` from the CLI in ``root`` (as ``s.toml`` into ``s``, its own
    store) for a module's tests to share; returns (the study directory, its results)."""
    from regulab.cli import main
    old = os.getcwd()
    os.chdir(root)
    os.environ["REGULAB_CACHE"] = str(data_cache)
    try:
        write(root / "s.toml", text)
        assert main(["study", "s.toml", "--out", "s", "--db", str(root / "r.db"), "--quiet"]) == 0
        return root / "s", json.loads((root / "s" / "results.json").read_text())
    finally:
        os.chdir(old)


def subprocess_env(data_cache: Path, db: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, REGULAB_CACHE=str(data_cache), PYTHONUNBUFFERED="1")
    env.pop("REGULAB_DB", None)
    if db is not None:
        env["REGULAB_DB"] = f"sqlite:///{db}"
    return env


def assert_refused(capsys, code: int, words: list[str], workdir: Path) -> None:
    """Bad input: exit code 2, one line on stderr holding ``words``, no run directory ``out``."""
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not (workdir / "out").exists()


def assert_resume_exact(cfg, path: Path, stop: int = 2, epochs: int = 4) -> None:
    """Training ``epochs`` in one go equals training ``stop``, checkpointing to ``path``,
    and resuming in a freshly prepared run: same history (less timings) and weights."""
    from regulab.io import load_state, save_state
    from regulab.runs.prepare import prepare
    whole = prepare(cfg)
    whole.trainer.fit(whole.loader, whole.splits["val"], epochs=epochs)
    first = prepare(cfg)
    first.trainer.fit(first.loader, first.splits["val"], epochs=stop)
    save_state(path, first.trainer.state_dict())
    second = prepare(cfg)
    second.trainer.load_state_dict(load_state(path))
    second.trainer.fit(second.loader, second.splits["val"], epochs=epochs)
    untimed = [{k: v for k, v in h.items() if k != "seconds"} for h in whole.trainer.history]
    assert untimed == [{k: v for k, v in h.items() if k != "seconds"} for h in second.trainer.history]
    resumed = second.trainer.model.state_dict()
    for k, v in whole.trainer.model.state_dict().items():
        assert torch.equal(v, resumed[k]), k
