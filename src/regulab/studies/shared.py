"""Studies across machines: several workers share one study's runs through the run store.

Start ``regulab study FILE --db postgresql://... --out DIR`` on as many machines (or cores) as
you like, with the same study file (and ``--set``, ``--quick``), the same ``--db`` and the same
``--out``: they join one study. ``DIR`` must be one directory for all of them -- one machine,
or a shared filesystem mounted at the same path on every machine (the run store records runs
by their resolved path) -- and ``--out`` is required on a PostgreSQL store. The first worker
makes ``DIR`` with ``study.json``; one started with another study, ``--quick`` or store is refused
(exit code 2, nothing written). On SQLite (or without ``--db``) the workers of a study are those one
``regulab study`` starts on its machine (``[study] workers``, ``regulab.studies.workers``); its
units are claimed all the same, so that running it again continues it after a kill
(``regulab.studies.study``).

Every worker walks the same plan -- it is deterministic given the study: variants, seeds, tuned
candidates, the forward step's pairs, the search's seeded trials -- and before each unit of
work (a population of runs, a run alone, a deep ensemble, the test scoring of a chosen run,
the report) claims it in the store (``regulab.runs.claims``; the job is ``DIR``). A unit held
by a live worker is skipped for the next one; when its results are needed (to choose a tuned
strength, rank the forward step, aggregate) the worker waits for it (the progress bar says so)
and then takes its runs' results and histories from the claim, and a model the analysis needs
from the run's directory (``runs.predict.load_model``) -- the numbers one worker alone would
have had. A unit whose holder has sent no heartbeat for ``[study] grace`` seconds (default 30;
heartbeats every ``[study] heartbeat``, default 5, from a thread, however long the unit; the
machines' clocks must agree to well within the grace) was killed: the next worker that looks takes
it over, removes its partial run directories, marks their store rows "killed" and trains it
again into the same directories, which take the same rows (so the store ends with each run
once, "completed"). An error in a unit fails it for every worker (each would meet it again).
The test split of a chosen run is scored under its own claim, so once (a worker killed after
scoring and before recording it leaves the same numbers scored again). The first worker to
finish the plan -- when every unit is done -- writes ``results.json`` and ``report.html`` and
completes the study's store row, under the claim "report"; every worker returns those results.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from regulab.errors import CheckpointError, ConfigError, RegulabInputError, invalid, reason
from regulab.io import atomic_write, check_out_dir, read_regular
from regulab.runs.claims import DONE, FAILED, TAKEN, Claims
from regulab.runs.store import RunStore, mask_url

__all__ = ["shares", "require_out", "make_dir", "join", "claimed", "clean", "UnitFailed"]

log = logging.getLogger("regulab")


class UnitFailed(RuntimeError):
    """A unit of a shared study failed in another worker (exit code 1)."""


def shares(url: str) -> bool:
    """Whether a study on the store at ``url`` is shared by its workers: PostgreSQL."""
    return sa.engine.make_url(url).get_backend_name() == "postgresql"


def make_dir(path: Path, files: dict[str, str]) -> bool:
    """Make ``path`` with ``files`` inside, whole or not at all (written in a temporary
    directory, then renamed); False when another process made it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    for name, text in files.items():
        atomic_write(tmp / name, text)
    try:
        if path.exists():
            path.rmdir()        # an empty --out directory; not empty: made by another worker
        tmp.rename(path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True


def require_out(out: str | Path | None) -> None:
    """A shared study's directory must be named (``--out``): every worker joins it."""
    if out is None:
        raise invalid("--out", "the study directory every worker shares (a study on a PostgreSQL "
                      "run store is shared by its workers)", None, kind="argument")


def join(out: str | Path | None, meta: dict[str, Any], heartbeat: float,
         grace: float) -> tuple[Path, bool, Claims]:
    """The shared study directory ``out`` with ``study.json`` = ``meta`` (whose ``db`` is the
    store), and the study's claims: (path, made here, claims). Made by the first worker; the
    others (and a study started again) check that it holds the same study on the same store,
    before anything is written."""
    require_out(out)
    path, text = Path(out), json.dumps(meta, indent=1, default=str)
    info = path / "study.json"
    if str(out) and os.path.lexists(info):
        _same(path, info, meta)
    else:
        check_out_dir(out)      # not a study directory: new or empty (raw: Path("") would be ".")
    try:        # the store first: a server out of reach leaves no directory behind
        claims = Claims(meta["db"], str(path.resolve()), heartbeat, grace)
    except sa.exc.SQLAlchemyError as e:
        first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
        raise RegulabInputError(f"--db: cannot open the run store {mask_url(meta['db'])!r} "
                                f"({first})") from None
    made = False
    for _ in range(10):         # two workers may each empty the other's way; one of them wins
        if info.is_file():
            break
        try:
            check_out_dir(path)
        except ConfigError:
            if info.is_file():      # made meanwhile by another worker
                break
            raise
        made = make_dir(path, {"study.json": text})
    _same(path, info, meta)
    return path, made, claims


def _same(path: Path, info: Path, meta: dict[str, Any]) -> None:
    """Refuse a study directory whose ``study.json`` is not ``meta``'s study on its store."""
    try:
        held = json.loads(read_regular(info, 2**24, "study file"))
    except CheckpointError as e:
        raise ConfigError(f"--out: {e}; choose a new path") from None
    except ValueError as e:
        raise ConfigError(f"--out: '{info}' is not a study's study.json ({reason(e)}); "
                          "choose a new path") from None
    if held != json.loads(json.dumps(meta, default=str)):
        held = held if isinstance(held, dict) else {}
        what = "store " + mask_url(str(held.get("db", ""))) if held.get("db") != meta["db"] else \
            f"study '{str(held.get('name'))[:200]}' with other keys, seeds, --quick or --workers"
        raise ConfigError(f"--out: '{path}' holds the {what}; start every worker with the same study "
                          "file, --set, --quick and --db, or choose a new path")


def clean(study_dir: Path, roots: list[str], run_dirs: list[str], store: RunStore) -> None:
    """A dead worker's partial output of a unit: the directories ``roots`` (and the temporary
    ones beside them) removed, the store rows of ``run_dirs`` marked "killed" (a run trained
    again into its directory takes the same row)."""
    for rel in roots:
        path = study_dir / rel
        for old in [path, *path.parent.glob(f".{path.name}.*")]:
            shutil.rmtree(old, ignore_errors=True)
    for rel in run_dirs:
        run_id = store.find_run(str(study_dir / rel))
        if run_id is not None:
            store.set_status(run_id, "killed")


def claimed(claims: Claims, key: str, what: str, fit: Callable[[], Any], *, wait: bool,
            takeover: Callable[[], None] = lambda: None,
            waiting: Callable[[str], None] = lambda worker: None) -> tuple[bool, Any, bool]:
    """Unit ``key`` done under its claim: ``fit()`` here when it is free (``takeover()`` first
    when its holder died), or its outcome as another worker recorded it. Returns (done,
    outcome, done here): (False, None, False) when a live worker holds it and not ``wait``;
    with ``wait``, polls (``waiting(holder)`` each time) until it is done or taken over."""
    while True:
        claim = claims.take(key, what)
        if claim.state == TAKEN:
            if claim.takeover:
                log.info("%s: taken over from %s, a worker that stopped beating", what, claim.worker)
                takeover()
            try:
                outcome = fit()
            except Exception as e:
                claims.fail(key, f"{type(e).__name__}: {e}")
                raise
            except BaseException:       # interrupted: the next worker that looks takes it
                claims.release(key)
                raise
            if not claims.done(key, outcome):
                log.warning("%s: done, but taken over meanwhile (heartbeats late by more than "
                            "[study] grace)", what)
            return True, outcome, True
        if claim.state == DONE:
            return True, claim.outcome, False
        if claim.state == FAILED:
            raise UnitFailed(f"{what} failed in worker {claim.worker}: {claim.outcome}")
        if not wait:
            return False, None, False
        waiting(claim.worker)
        time.sleep(min(1.0, claims.heartbeat))
