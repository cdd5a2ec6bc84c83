"""The run store: one row per run and one per epoch, in SQLite (default) or PostgreSQL.

Written with SQLAlchemy 2 *Core* (no ORM), so any URL SQLAlchemy understands for those two
backends works: ``sqlite:///runs/regulab.db``, ``postgresql+psycopg://user:pw@host/db``.
A plain file path (no ``://``) means a SQLite file. The default is ``$REGULAB_DB`` if set,
else ``sqlite:///runs/regulab.db`` relative to the current directory (made absolute when
the store is constructed).

Tables::

    runs   (id PK autoincrement, name, kind, status, run_dir, config_json, results_json NULL,
            created_at, updated_at)                      -- timestamps: UTC ISO 8601 text
    epochs (run_id FK -> runs.id, epoch, metrics_json)   -- PK (run_id, epoch)

JSON is stored as TEXT (portable). JSON has no NaN/Infinity, so a non-finite float is
stored as the *string* ``"nan"``, ``"inf"`` or ``"-inf"`` and read back as the float; the
text stays valid JSON (``allow_nan=False``). A string value equal to one of those three
also reads back as a float.

Nothing touches the disk until the first write: constructing a ``RunStore`` creates no
file or directory, reading a SQLite file that does not exist returns no runs, and the
first write creates the parent directory and the tables (``CREATE TABLE IF NOT EXISTS``,
so several processes may race). SQLite connections use ``journal_mode=WAL`` and a 30 s
busy timeout so several processes can write one file; each write is one short transaction
and the epoch upsert is a single ``INSERT ... ON CONFLICT DO UPDATE`` statement.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from regulab.errors import RegulabInputError, mask_password
from regulab.paths import regular_file, writable_dir

__all__ = ["STATUSES", "RunStore", "default_db_url", "format_runs_table", "mask_url", "CONNECT_SECONDS"]

STATUSES = ("completed", "diverged", "failed", "killed", "pruned", "running")
_DEFAULT_URL = "sqlite:///runs/regulab.db"
_ALLOWED = "sqlite:///PATH, postgresql[+DRIVER]://USER:PASSWORD@HOST/DB or a file path"
_BUSY_TIMEOUT_MS = 30_000
CONNECT_SECONDS = 10        # a PostgreSQL server that does not answer within this is refused
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

_meta = sa.MetaData()  # the schema (constant; no state lives here)
_runs = sa.Table(
    "runs", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *(sa.Column(c, sa.Text, nullable=False) for c in ("name", "kind", "status", "run_dir")),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("results_json", sa.Text, nullable=True),
    *(sa.Column(c, sa.String(40), nullable=False) for c in ("created_at", "updated_at")),
    sa.Index("ix_runs_run_dir", "run_dir"),
    sqlite_autoincrement=True,  # ids are never reused
)
_epochs = sa.Table(
    "epochs", _meta,
    sa.Column("run_id", sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("epoch", sa.Integer, primary_key=True),
    sa.Column("metrics_json", sa.Text, nullable=False),
)

def default_db_url() -> str:
    """``$REGULAB_DB`` if set and non-empty, else ``sqlite:///runs/regulab.db``."""
    return os.environ.get("REGULAB_DB") or _DEFAULT_URL


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return mask_password(url)


def _bad_url(url: str, why: str) -> RegulabInputError:
    return RegulabInputError(f"--db/REGULAB_DB: {why}: {mask_url(url)!r}; allowed: {_ALLOWED}")


def _first_line(e: exc.DBAPIError) -> str:
    return (str(e.orig or e).strip().splitlines() or [type(e).__name__])[0]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _encode(obj, where: str):
    """Plain JSON values; non-finite floats become "nan"/"inf"/"-inf"."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _encode(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return _encode(obj.tolist(), where)
    raise TypeError(
        f"{where} has type {type(obj).__name__}; allowed: numbers, strings, bools, None, "
        "lists, dicts, paths, numpy/torch values"
    )


def _dumps(obj, where: str) -> str:
    return json.dumps(_encode(obj, where), allow_nan=False)


def _decode(obj):
    if isinstance(obj, str):
        return _NONFINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _loads(text: str | None):
    return None if text is None else _decode(json.loads(text))


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise RegulabInputError(f"run status must be one of {list(STATUSES)}; got {status!r}")


def _check_int(field: str, value, minimum: int | None = None) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not is_int or (minimum is not None and value < minimum):
        allowed = "an int" if minimum is None else f"an int >= {minimum}"
        raise RegulabInputError(f"{field} must be {allowed}; got {value!r}")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")  # first, so WAL waits too
    cur.execute("PRAGMA journal_mode = WAL")
    # WAL + NORMAL: never corrupts; a power cut may lose the last commits (checkpoints are fsynced)
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


class RunStore:
    """Runs and their per-epoch metrics in a SQL database (see the module docstring).

    ``url``: a SQLAlchemy URL (``sqlite:///...`` or ``postgresql...://...``) or a file path;
    None means ``default_db_url()``. Example::

        store = RunStore("runs/regulab.db")
        rid = store.create_run("mlp-l2", "runs/mlp-l2-0", {"optim": {"lr": 0.1}})
        store.log_epoch(rid, 1, {"train_loss": 0.7, "val_acc": 0.81})
        store.finish(rid, "completed", {"test_acc": 0.8})
    """

    def __init__(self, url: str | None = None):
        raw = default_db_url() if url is None else os.fspath(url)
        if not raw.strip():
            raise _bad_url(raw, "empty database URL")
        if "://" not in raw:
            raw = "sqlite:///" + raw
        try:
            parsed = make_url(raw)
        except exc.ArgumentError:
            raise _bad_url(raw, "cannot parse database URL") from None
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise _bad_url(raw, f"unsupported database scheme {backend!r}")
        self.sqlite_path: str | None = None      # the database file, for SQLite on a file
        if backend == "sqlite":
            db = parsed.database or ""
            if db and db != ":memory:" and not db.startswith("file:"):
                self.sqlite_path = os.path.abspath(db)
                parsed = parsed.set(database=self.sqlite_path)
        self.url: str = parsed.render_as_string(hide_password=False)
        try:      # a server out of reach is refused in CONNECT_SECONDS, not the OS's TCP timeout
            self._engine = sa.create_engine(parsed, connect_args={"connect_timeout": CONNECT_SECONDS}
                                            if backend == "postgresql" else {})
        except (ImportError, exc.NoSuchModuleError) as e:
            extra = "; PostgreSQL's driver: pip install 'regulab[postgres]'" if backend == "postgresql" else ""
            raise _bad_url(raw, f"database driver not available ({e}){extra}") from None
        if backend == "sqlite":
            sa.event.listen(self._engine, "connect", _sqlite_pragmas)
        self._insert = sqlite.insert if backend == "sqlite" else postgresql.insert
        self._ready = False  # tables known to exist

    def __repr__(self) -> str:
        return f"RunStore({mask_url(self.url)!r})"

    def close(self) -> None:
        """Close pooled connections (the store stays usable; it reconnects on demand)."""
        self._engine.dispose()

    def check(self) -> None:
        """Refuse, before any work, a SQLite store that could not be written: the file must be
        a SQLite database this process can write (not junk, a directory or a device), or be
        creatable in a writable folder (WAL needs the folder writable too). Nothing is created.
        A PostgreSQL store must answer: one connection is opened and closed (a server out of
        reach, a wrong user, password or database is refused here, in ``CONNECT_SECONDS`` at
        most, not at the first write)."""
        if self.sqlite_path is None:
            if self._engine.dialect.name == "postgresql":
                self._connect().close()
            return
        what = "--db/REGULAB_DB: the run store"
        if "\0" in self.sqlite_path:
            raise _bad_url(self.url, "a NUL character in the file name")
        writable_dir(Path(self.sqlite_path).parent, what + "'s folder", error=RegulabInputError)
        if not os.path.lexists(self.sqlite_path):
            return
        path = regular_file(self.sqlite_path, what, error=RegulabInputError)
        if not os.access(path, os.W_OK):
            raise _bad_url(self.url, "the database file is not writable")
        try:
            conn = self._read_conn()      # a file that is no SQLite database fails here
        except exc.DBAPIError as e:
            raise _bad_url(self.url, f"cannot open the run store ({_first_line(e)})") from None
        if conn is not None:
            conn.close()

    # -- connections ---------------------------------------------------------------------
    def _connect(self) -> Connection:
        try:
            return self._engine.connect()
        except exc.DBAPIError as e:
            raise _bad_url(self.url, f"cannot open the run store ({_first_line(e)})") from None

    def _write_conn(self) -> Connection:
        """A connection to a store whose tables exist (created on the first write)."""
        if not self._ready and self.sqlite_path is not None:
            try:
                Path(self.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise _bad_url(self.url, f"cannot create the directory ({e.strerror})") from None
        conn = self._connect()
        if not self._ready:
            try:
                with conn.begin():
                    for table in _meta.sorted_tables:
                        conn.execute(CreateTable(table, if_not_exists=True))
                        for index in table.indexes:
                            conn.execute(CreateIndex(index, if_not_exists=True))
            except exc.DBAPIError as e:
                conn.close()
                raise _bad_url(self.url, f"cannot write the run store ({_first_line(e)})") from None
            self._ready = True
        return conn

    def _read_conn(self) -> Connection | None:
        """A connection, or None when the store holds nothing yet (nothing is created)."""
        if self.sqlite_path is not None and not os.path.exists(self.sqlite_path):
            return None
        conn = self._connect()
        if not self._ready and not sa.inspect(conn).has_table("runs"):
            conn.close()
            return None
        return conn

    def _not_found(self, run_id: int) -> RegulabInputError:
        return RegulabInputError(f"run_id {run_id} not found in the run store {mask_url(self.url)!r}")

    def _update_run(self, conn: Connection, run_id: int, **values) -> None:
        _check_int("run_id", run_id)
        stmt = _runs.update().where(_runs.c.id == run_id).values(updated_at=_now(), **values)
        if conn.execute(stmt).rowcount == 0:
            raise self._not_found(run_id)

    # -- writing -------------------------------------------------------------------------
    def create_run(self, name: str, run_dir: str, config: dict, kind: str = "train") -> int:
        """Insert a run with status "running"; returns its id. ``run_dir`` is stored resolved."""
        for field, value in (("name", name), ("kind", kind)):
            if not isinstance(value, str) or not value.strip():
                raise RegulabInputError(f"run {field} must be a non-empty string; got {value!r}")
        if not isinstance(config, dict):
            raise RegulabInputError(f"run config must be a dict; got {type(config).__name__}")
        now = _now()
        row = dict(
            name=name, kind=kind, status="running", run_dir=str(Path(run_dir).resolve()),
            config_json=_dumps(config, "config"), results_json=None, created_at=now, updated_at=now,
        )
        with self._write_conn() as conn, conn.begin():
            return int(conn.execute(_runs.insert().values(**row)).inserted_primary_key[0])

    def log_epoch(self, run_id: int, epoch: int, metrics: dict[str, float]) -> None:
        """Record one epoch's metrics; an epoch logged again (a resumed run) is overwritten."""
        _check_int("epoch", epoch, minimum=0)
        if not isinstance(metrics, dict):
            raise RegulabInputError(f"metrics must be a dict; got {type(metrics).__name__}")
        text = _dumps(metrics, "metrics")
        with self._write_conn() as conn, conn.begin():
            self._update_run(conn, run_id)
            stmt = self._insert(_epochs).values(run_id=run_id, epoch=epoch, metrics_json=text)
            new = {"metrics_json": stmt.excluded.metrics_json}
            conn.execute(stmt.on_conflict_do_update(index_elements=["run_id", "epoch"], set_=new))

    def log_epochs(self, rows: list[tuple[int, int, dict[str, float]]]) -> None:
        """``log_epoch`` for many ``(run_id, epoch, metrics)`` rows in one transaction (a
        population's members at the end of an epoch)."""
        for _, epoch, metrics in rows:
            _check_int("epoch", epoch, minimum=0)
            if not isinstance(metrics, dict):
                raise RegulabInputError(f"metrics must be a dict; got {type(metrics).__name__}")
        if not rows:
            return
        with self._write_conn() as conn, conn.begin():
            for run_id, epoch, metrics in rows:
                self._update_run(conn, run_id)
                stmt = self._insert(_epochs).values(run_id=run_id, epoch=epoch,
                                                    metrics_json=_dumps(metrics, "metrics"))
                new = {"metrics_json": stmt.excluded.metrics_json}
                conn.execute(stmt.on_conflict_do_update(index_elements=["run_id", "epoch"], set_=new))

    def truncate_epochs(self, run_id: int, after_epoch: int) -> None:
        """Delete the epochs > ``after_epoch`` (resume rewinds to its checkpoint)."""
        _check_int("after_epoch", after_epoch)
        with self._write_conn() as conn, conn.begin():
            self._update_run(conn, run_id)
            conn.execute(
                _epochs.delete().where(_epochs.c.run_id == run_id, _epochs.c.epoch > after_epoch)
            )

    def finish(self, run_id: int, status: str, results: dict | None = None) -> None:
        """Set the final status and, when given, the results (``results.json``'s content)."""
        _check_status(status)
        values = {"status": status}
        if results is not None:
            values["results_json"] = _dumps(results, "results")
        with self._write_conn() as conn, conn.begin():
            self._update_run(conn, run_id, **values)

    def set_status(self, run_id: int, status: str) -> None:
        """Change the status only (e.g. back to "running" on resume)."""
        self.finish(run_id, status)

    # -- reading -------------------------------------------------------------------------
    def find_run(self, run_dir: str) -> int | None:
        """The id of the latest run recorded for ``run_dir`` (resolved), or None."""
        conn = self._read_conn()
        if conn is None:
            return None
        query = (
            sa.select(_runs.c.id)
            .where(_runs.c.run_dir == str(Path(run_dir).resolve()))
            .order_by(_runs.c.id.desc())
            .limit(1)
        )
        with conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def _select(self, with_config: bool):
        counts = (
            sa.select(_epochs.c.run_id, sa.func.count().label("n"))
            .group_by(_epochs.c.run_id)
            .subquery()
        )
        cols = [c for c in _runs.c if with_config or c.name != "config_json"]
        return (
            sa.select(*cols, sa.func.coalesce(counts.c.n, 0).label("epochs"))
            .select_from(_runs.outerjoin(counts, counts.c.run_id == _runs.c.id))
            .order_by(_runs.c.id.desc())
        )

    @staticmethod
    def _row(row) -> dict:
        out = dict(row._mapping)
        out["results"] = _loads(out.pop("results_json"))
        if "config_json" in out:
            out["config"] = _loads(out.pop("config_json"))
        out["epochs"] = int(out["epochs"])
        return out

    def runs(self, limit: int | None = None, *, status: str | None = None, name: str | None = None,
             kind: str | None = None) -> list[dict]:
        """Newest first: id, name, kind, status, run_dir, created_at, updated_at, epochs,
        results (dict or None). Only those with ``status`` (one of ``STATUSES``), of ``kind``
        ("train", "study", ...), and whose name matches ``name``, a shell-style pattern
        (``fnmatch``: ``*`` any characters, ``?`` one, ``[seq]``; case-sensitive; without
        them, the exact name); ``limit``: the newest N of those."""
        if limit is not None:
            _check_int("limit", limit, minimum=1)
        if status is not None:
            _check_status(status)
        for field, value in (("name", name), ("kind", kind)):
            if value is not None and (not isinstance(value, str) or not value):
                raise RegulabInputError(f"run {field} filter must be a non-empty string; got {value!r}")
        conn = self._read_conn()
        if conn is None:
            return []
        query = self._select(with_config=False)
        if status is not None:
            query = query.where(_runs.c.status == status)
        if kind is not None:
            query = query.where(_runs.c.kind == kind)
        if limit is not None and name is None:
            query = query.limit(limit)
        with conn:
            rows = [self._row(r) for r in conn.execute(query)]
        if name is not None:    # case-sensitive on every backend (SQL LIKE is not on SQLite)
            rows = [r for r in rows if fnmatch.fnmatchcase(r["name"], name)][:limit]
        return rows

    def get_run(self, run_id: int) -> dict:
        """One run as in ``runs()`` plus ``config`` and ``history`` (epoch dicts, by epoch)."""
        _check_int("run_id", run_id)
        conn = self._read_conn()
        row = None
        if conn is not None:
            with conn:
                query = self._select(with_config=True).where(_runs.c.id == run_id)
                row = conn.execute(query).first()
                history = conn.execute(
                    sa.select(_epochs.c.epoch, _epochs.c.metrics_json)
                    .where(_epochs.c.run_id == run_id)
                    .order_by(_epochs.c.epoch)
                ).all()
        if row is None:
            raise self._not_found(run_id)
        out = self._row(row)
        out["history"] = [{"epoch": int(e), **_loads(m)} for e, m in history]
        return out


def _score(results: dict | None, split: str) -> tuple[str | None, object]:
    """("acc" | "r2" | None, value) for ``{split}_acc``, else ``{split}_r2``."""
    for kind in ("acc", "r2"):
        if results and f"{split}_{kind}" in results:
            return kind, results[f"{split}_{kind}"]
    return None, None


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _short_path(path: str, width: int = 40) -> str:
    p = Path(path)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        if p.is_relative_to(base) and p != base:
            path = prefix + str(p.relative_to(base))
            break
    return path if len(path) <= width else "..." + path[-(width - 3):]


def format_runs_table(rows: list[dict]) -> str:
    """A fixed-width text table of ``RunStore.runs()`` rows, for ``regulab runs``.

    Columns: id, name, status, epochs, val_acc, test_acc, created (UTC, minutes), run_dir
    (relative to the current directory or ``~`` when under it; long paths keep their
    tail). Regression runs show ``*_r2``; the header says ``val_r2`` when every scored row
    is a regression run and ``val_acc/r2`` when they are mixed. "-" marks a missing value.
    """
    if not rows:
        return "(no runs)"
    header = ["id", "name", "status", "epochs"]
    for split in ("val", "test"):
        kinds = {_score(r.get("results"), split)[0] for r in rows} - {None}
        suffix = "r2" if kinds == {"r2"} else ("acc/r2" if len(kinds) > 1 else "acc")
        header.append(f"{split}_{suffix}")
    header += ["created", "run_dir"]
    body = []
    for r in rows:
        name = r["name"] if len(r["name"]) <= 28 else r["name"][:25] + "..."
        body.append([
            str(r["id"]), name, r["status"], str(r["epochs"]),
            _fmt(_score(r.get("results"), "val")[1]), _fmt(_score(r.get("results"), "test")[1]),
            str(r["created_at"])[:16].replace("T", " "), _short_path(r["run_dir"]),
        ])
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    right = {0, 3, 4, 5}  # numbers right-aligned
    lines = []
    for line in [header, *body]:
        cells = [(c.rjust if i in right else c.ljust)(widths[i]) for i, c in enumerate(line)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
