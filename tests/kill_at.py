"""Run the regulab CLI and SIGKILL it at one named moment of a run's life.

    python tests/kill_at.py MOMENT WHEN N regulab-args...

No hook in regulab's own code: each moment is a call the run makes (``MOMENTS``: a module or
class, the attribute called, and which calls count). This script wraps that attribute before
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


def arm(moment: str, when: str, n: int) -> None:
    """Wrap the moment's call so that the process kills itself ``when`` (before, after) its
    ``n``-th one, or stops itself after it (``pause``)."""
    owner, attr, counts = moments()[moment]
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
