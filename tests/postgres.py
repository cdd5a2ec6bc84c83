"""A throwaway PostgreSQL server for the tests: ``postgres_url`` (session scope) starts one from
the Debian package's binaries (``/usr/lib/postgresql/*/bin``), in a temporary directory, on
127.0.0.1 and a free port, with trust authentication, and stops it at the end.

As root, the server runs as the ``postgres`` OS user (``runuser``): PostgreSQL refuses root.
Without the binaries the tests that use it are skipped -- or fail, when
``REGULAB_REQUIRE_POSTGRES=1`` (CI, which installs them).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

__all__ = ["postgres_url"]


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(why: str):
    if os.environ.get("REGULAB_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (REGULAB_REQUIRE_POSTGRES=1) but {why}")
    pytest.skip(f"no PostgreSQL server: {why}")


@pytest.fixture(scope="session")
def postgres_url():
    """``postgresql+psycopg://USER@127.0.0.1:PORT/regulab`` of a fresh, empty server."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        _unavailable("no initdb under /usr/lib/postgresql/*/bin (Debian package 'postgresql')")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("the psycopg driver is not installed (pip install 'regulab[postgres]')")
    # directly under /tmp, which every user may traverse (pytest's tmp_path is root's alone)
    root = Path(tempfile.mkdtemp(prefix="regulab-postgres-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    as_user: list[str] = []
    user = os.environ.get("USER") or "postgres"
    if os.geteuid() == 0:       # the server will not run as root
        if shutil.which("runuser") is None:
            _unavailable("running as root and 'runuser' is missing")
        as_user, user = ["runuser", "-u", "postgres", "--"], "postgres"
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    log = root / "server.log"

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)

    init = run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "--no-sync")
    if init.returncode != 0:
        _unavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
    opts = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=100"
    start = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
                "-t", "60", "start")
    if start.returncode != 0:
        text = log.read_text() if log.exists() else start.stderr
        _unavailable(f"the server did not start: {text.strip()[-300:]}")
    try:
        for _ in range(100):
            ready = run(str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port))
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        made = run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "regulab")
        if made.returncode != 0:
            _unavailable(f"createdb failed: {made.stderr.strip()[-300:]}")
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/regulab"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
