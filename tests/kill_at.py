"""Run the regulab CLI and SIGKILL it at one named moment of a run's life (or of a study's or
sweep's: ``job_moments``).

    python tests/kill_at.py MOMENT WHEN N regulab-args...

No hook in regulab's own code: each moment is a call the run makes (``moments``: a module or
class, the attribute called, and which calls count). In a job of many runs a moment comes once
per run: the N-th call counts them all (the 10th ``save_state`` of a population of 8 members
checkpointed each epoch is member 2's second checkpoint). This script wraps that attribute before
the CLI starts, and the process kills itself (``SIGKILL``: no ``finally``, no atexit, no
flush) ``before`` or ``after`` the N-th call that counts -- or, WHEN ``pause``, stops itself
(``SIGSTOP``) after it, holding whatever it holds, until a ``SIGCONT`` lets it go on. A moment
whose call never comes lets the command finish, and the test sees an exit code other than -9.
The wrapped names are regulab's internals, so a refactor that renames one breaks the kill tests
loudly (an ``AttributeError`` here), never silently.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path


def _named(name: str, i: int = 0):
    """The calls whose ``i``-th argument is a path named ``name``."""
    return lambda *a, **k: len(a) > i and Path(str(a[i])).name == name


def moments() -> dict[str, tuple[object, str, object]]:
    """Moment name -> (owner, attribute, filter of the calls that count)."""
    import regulab.runs.evaluate as evaluate
    import regulab.runs.run as run
    import regulab.runs.rundir as rundir
    from regulab.runs.store import RunStore

    every = lambda *a, **k: True     # noqa: E731
    hidden = lambda *a, **k: str(k.get("prefix", "")).startswith(".")   # noqa: E731
    return {
        "prepare": (run, "prepare", every),                        # process start: nothing yet
        "mkdtemp": (tempfile, "mkdtemp", hidden),                  # the run directory's temporary twin
        "checkpoint_dir": (Path, "mkdir", lambda path, *a, **k: path.name == "checkpoint"  # its checkpoint/
                           and path.parent.name.startswith(".")),
        "config": (rundir, "atomic_write", _named("config.toml")),  # config.toml inside it
        "rename": (Path, "rename", lambda path, *a: path.name.startswith(".")),  # into place
        "create_run": (RunStore, "create_run", every),             # the store's row
        "run_json": (rundir, "atomic_write", _named("run.json")),  # checkpoint/run.json
        "metrics_csv": (run, "atomic_write", _named("metrics.csv")),  # metrics.csv's header
        "epoch_rows": (RunStore, "log_epochs", every),             # the store's epoch rows
        "state_replace": (os, "replace", _named("state.safetensors", 1)),  # the checkpoint's rename
        "save_state": (run, "save_state", every),                  # the checkpoint, fsynced
        "end_fit": (run.RunLog, "on_fit_end", every),              # after the last epoch
        "model": (evaluate, "save_tensors", _named("model.safetensors")),
        "model_json": (evaluate, "atomic_write", _named("model.json")),
        "evaluation": (evaluate, "atomic_write", _named("evaluation.json")),
        "results": (evaluate, "atomic_write", _named("results.json")),
        "finish": (RunStore, "finish", lambda *a, **k: "completed" in a),   # the row completed
    }


def job_moments() -> dict[str, tuple[object, str, object]]:
    """The moments of a job of many runs (``regulab study``, ``regulab sweep``) beyond a run's
    own: moment name -> (owner, attribute, filter of the calls that count)."""
    import regulab.studies.report as study_report
    import regulab.studies.runner as runner
    import regulab.studies.study as study
    import regulab.sweeps.worker as sweep
    from regulab.runs.claims import Claims
    from regulab.runs.store import RunStore

    every = lambda *a, **k: True     # noqa: E731
    return {
        "claim_done": (Claims, "done", every),                     # a study's unit recorded done
        "add_test": (runner, "add_test", every),                   # a chosen run scored on test
        "study_results": (study, "atomic_write", _named("results.json")),   # the study's results.json
        "study_finish": (RunStore, "finish", lambda *a, **k: len(a) > 3 and "variants" in (a[3] or {})),
        "report": (study_report, "render_report", every),          # the study's report.html
        "best_test": (sweep, "evaluate", every),                   # a sweep's best trial on test
        "best_json": (sweep, "atomic_write", _named("best.json")),
        "sweep_report": (sweep, "write_report", every),
    }


def arm(moment: str, when: str, n: int) -> None:
    """Wrap the moment's call so that the process kills itself ``when`` (before, after) its
    ``n``-th one, or stops itself after it (``pause``)."""
    table = moments()
    owner, attr, counts = table[moment] if moment in table else job_moments()[moment]
    original = getattr(owner, attr)
    seen = 0
    sig = signal.SIGSTOP if when == "pause" else signal.SIGKILL

    def wrapper(*args, **kwargs):
        nonlocal seen
        hit = counts(*args, **kwargs) and (seen := seen + 1) == n
        if hit and when == "before":
            os.kill(os.getpid(), sig)
        out = original(*args, **kwargs)
        if hit and when != "before":
            os.kill(os.getpid(), sig)
        return out

    setattr(owner, attr, wrapper)


if __name__ == "__main__":
    moment, when, n, *argv = sys.argv[1:]
    assert when in ("before", "after", "pause"), when
    arm(moment, when, int(n))
    from regulab.cli import main
    sys.exit(main(argv))
