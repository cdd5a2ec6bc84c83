"""The cross-process lock that makes a sweep's budget exact: workers on one machine or many ask
for trials one at a time (``regulab.sweeps.worker``).

On PostgreSQL, a session advisory lock (``pg_advisory_lock``) on its own connection; on SQLite,
a lock file beside the database (the ``filelock`` package: ``flock`` on POSIX, ``msvcrt`` locking
on Windows). Both are released by the server or the operating system when the process dies, so
a killed worker never leaves the sweep locked.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa

__all__ = ["FileLock", "AdvisoryLock", "sweep_lock"]


class FileLock:
    """An operating-system lock on ``path`` (``filelock.FileLock``), its folder made when it is
    first taken (a sweep refused before then leaves nothing): released when the process dies."""

    def __init__(self, path: Path):
        self.path, self._lock = path, None

    def acquire(self) -> None:
        import filelock
        if self._lock is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = filelock.FileLock(str(self.path))
        self._lock.acquire()

    def release(self) -> None:
        if self._lock is not None and self._lock.is_locked:
            self._lock.release()


class AdvisoryLock:
    """A PostgreSQL session advisory lock on its own connection: released by the server when
    the connection (or the process) dies."""

    def __init__(self, url: str, name: str):
        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self._key = int.from_bytes(hashlib.blake2b(f"regulab-sweep:{name}".encode(), digest_size=8)
                                   .digest(), "big", signed=True)
        self._conn = None

    def acquire(self) -> None:
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        self._conn = conn

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()      # the session ends, and its advisory locks with it
            self._conn = None


def sweep_lock(url: str, name: str) -> FileLock | AdvisoryLock:
    """The lock of sweep ``name`` on the database at ``url``."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return AdvisoryLock(url, name)
    return FileLock(Path(parsed.database + ".sweep-lock"))
