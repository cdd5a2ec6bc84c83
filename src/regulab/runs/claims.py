"""Claims: which worker does which unit of work of a shared job, kept in the run store's database.

Workers that share a job (the runs of one study: ``regulab.studies.study``) each walk the same
plan. Before a unit of work (a run, a population of runs, a test scoring) a worker claims it:
the first to insert the unit's row does it; the others skip it while its holder is alive,
and read its outcome once it is done. Table (beside the store's ``runs`` and ``epochs``)::

    claims (job TEXT, unit TEXT, worker TEXT, status TEXT, heartbeat FLOAT, attempts INT,
            what TEXT, outcome_json TEXT NULL, PRIMARY KEY (job, unit))

``job``: what the workers share (a study's directory, resolved); ``unit``: the unit's key;
``worker``: ``host:pid:token`` of its holder (``worker_name``); ``status``: "running", "done" or "failed";
``heartbeat``: the holder's clock (``time.time()``) at its last beat; ``attempts``: 1, plus one
per takeover; ``outcome_json``: what the unit produced (JSON), for the workers that reuse it.

Taking is one statement on both backends, so no lock is needed: ``INSERT ... ON CONFLICT DO
NOTHING`` (inserted: taken); else a compare-and-swap ``UPDATE ... WHERE worker = <old> AND
heartbeat = <old>`` when the holder's heartbeat is older than ``grace`` seconds (it died:
killed, its machine lost) -- or at once when the holder was a process of this machine that
has ended (``gone``: a study killed and started again needs no wait) -- which only one worker
can win. A worker that gives a unit up (interrupted: ``release``) leaves it as a dead one's,
so the next taker removes its partial output too. While ``Claims`` is open a thread
beats every ``heartbeat`` seconds for every unit the worker holds, however long the unit's
work takes. Heartbeats are the workers' clocks: machines sharing a job must agree on the
time to well within ``grace``, and ``grace`` must exceed the longest pause of a live worker
(a worker whose claim is taken over while it still works would write beside its successor).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable

__all__ = ["Claim", "Claims", "TAKEN", "HELD", "DONE", "FAILED", "worker_name", "gone"]

TAKEN, HELD, DONE, FAILED = "taken", "held", "done", "failed"   # what ``take`` finds

_meta = sa.MetaData()
_claims = sa.Table(
    "claims", _meta,
    sa.Column("job", sa.Text, primary_key=True),
    sa.Column("unit", sa.Text, primary_key=True),
    sa.Column("worker", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("what", sa.Text, nullable=False),
    sa.Column("outcome_json", sa.Text, nullable=True),
)


def _machine() -> str:
    """This machine as a worker's name gives it: its host name, and on Linux its pid namespace
    (containers that share a host name do not share process ids)."""
    try:
        return f"{socket.gethostname()}/{os.readlink('/proc/self/ns/pid')[5:-1]}"    # pid:[4026531836]
    except OSError:
        return socket.gethostname()


def worker_name() -> str:
    """``host:pid:token``: this process, unique even when a pid is reused."""
    return f"{_machine()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def gone(worker: str) -> bool:
    """Whether ``worker`` (``worker_name``) was a process of this machine that has ended: its
    claims are a dead worker's without waiting for ``grace``. False when it may be alive, or
    runs elsewhere (its heartbeat decides), or where a process cannot be asked (not POSIX)."""
    machine, _, rest = worker.rpartition(":")[0].rpartition(":")
    if os.name != "posix" or machine != _machine() or not rest.isdigit():
        return False
    try:
        os.kill(int(rest), 0)       # signal 0: is there such a process
    except ProcessLookupError:
        return True
    except OSError:                 # there is one, another user's
        return False
    return False


@dataclass
class Claim:
    """What ``take`` found: ``state`` TAKEN (this worker does the unit now; ``takeover``: from a
    dead worker, whose partial output must go), HELD (a live worker does it), DONE (its
    ``outcome``) or FAILED (``outcome``: why); ``worker``: the holder (taken over: the dead one)."""
    state: str
    worker: str
    outcome: Any = None
    takeover: bool = False


class Claims:
    """The claims of job ``job`` in the database at ``url`` (module docstring); a context
    manager whose body has the heartbeat thread running. Example::

        with Claims(store.url, str(study_dir), heartbeat=5, grace=30) as claims:
            claim = claims.take("unit-key", "population of 6")
            if claim.state == TAKEN:
                claims.done("unit-key", do_the_work())
    """

    def __init__(self, url: str, job: str, heartbeat: float = 5.0, grace: float = 30.0,
                 worker: str | None = None):
        self.job, self.heartbeat, self.grace = job, heartbeat, grace
        self.worker = worker or worker_name()
        parsed = sa.engine.make_url(url)
        backend = parsed.get_backend_name()
        args = {"connect_args": {"timeout": 30}} if backend == "sqlite" else {}
        if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)    # as the store makes it
        self._engine = sa.create_engine(url, **args)
        self._insert = sqlite.insert if backend == "sqlite" else postgresql.insert
        for attempt in range(3):    # workers starting together race here: PostgreSQL's IF NOT EXISTS
            try:                    # is not atomic (a duplicate key in pg_type); the loser retries
                with self._engine.begin() as conn:
                    conn.execute(CreateTable(_claims, if_not_exists=True))
                break
            except sa.exc.DBAPIError:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _where(self, unit: str, **match):
        c = _claims.c
        return sa.and_(c.job == self.job, c.unit == unit, *(c[k] == v for k, v in match.items()))

    def take(self, unit: str, what: str = "") -> Claim:
        """Claim ``unit``: taken when nobody holds it or its holder's heartbeat is stale."""
        now = time.time()
        row = dict(job=self.job, unit=unit, worker=self.worker, status="running", heartbeat=now,
                   attempts=1, what=what, outcome_json=None)
        with self._engine.begin() as conn:
            if conn.execute(self._insert(_claims).values(**row).on_conflict_do_nothing()).rowcount == 1:
                return Claim(TAKEN, self.worker)
            old = conn.execute(sa.select(_claims).where(self._where(unit))).one()
        outcome = None if old.outcome_json is None else json.loads(old.outcome_json)
        if old.status != "running":
            return Claim(DONE if old.status == "done" else FAILED, old.worker, outcome)
        if old.worker == self.worker:       # this worker's own claim (a unit met again)
            return Claim(TAKEN, self.worker)
        if now - old.heartbeat <= self.grace and not gone(old.worker):
            return Claim(HELD, old.worker)
        swap = (_claims.update().where(self._where(unit, worker=old.worker, heartbeat=old.heartbeat))
                .values(worker=self.worker, heartbeat=now, attempts=old.attempts + 1))
        with self._engine.begin() as conn:
            won = conn.execute(swap).rowcount == 1
        return Claim(TAKEN, old.worker, takeover=True) if won else self.take(unit, what)

    def _finish(self, unit: str, status: str, outcome: Any) -> bool:
        stmt = (_claims.update().where(self._where(unit, worker=self.worker, status="running"))
                .values(status=status, heartbeat=time.time(), outcome_json=json.dumps(outcome)))
        with self._engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def done(self, unit: str, outcome: Any) -> bool:
        """Mark ``unit`` done with its JSON-able ``outcome``; False when this worker no longer
        held it (taken over: its heartbeats were late by more than ``grace``)."""
        return self._finish(unit, "done", outcome)

    def fail(self, unit: str, why: str) -> bool:
        """Mark ``unit`` failed (an error that another worker would meet again)."""
        return self._finish(unit, "failed", why)

    def release(self, unit: str) -> None:
        """Give ``unit`` up (this worker is interrupted): the next worker that looks takes it
        over as a dead worker's (its heartbeat set to 0), removing what this one left of it."""
        with self._engine.begin() as conn:
            conn.execute(_claims.update().where(self._where(unit, worker=self.worker, status="running"))
                         .values(heartbeat=0.0))

    def rows(self) -> list[dict[str, Any]]:
        """Every claim of the job: unit, worker, status, heartbeat, attempts, what, outcome."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_claims).where(_claims.c.job == self.job)).all()
        return [{**{k: v for k, v in r._mapping.items() if k not in ("job", "outcome_json")},
                 "outcome": None if r.outcome_json is None else json.loads(r.outcome_json)}
                for r in rows]

    def beat(self) -> None:
        """Refresh the heartbeat of every unit this worker holds."""
        c = _claims.c
        with self._engine.begin() as conn:
            conn.execute(_claims.update().where(c.job == self.job, c.worker == self.worker,
                                                c.status == "running").values(heartbeat=time.time()))

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.beat()
            except sa.exc.SQLAlchemyError:      # the server away a moment: the next beat retries
                pass

    def __enter__(self) -> Claims:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="regulab-claims")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._engine.dispose()
