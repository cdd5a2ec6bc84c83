"""Names and paths a user hands in, checked before anything is opened, read or written.

Every file regulab reads whole on a user's word (a config, a study or sweep file, an explain
spec, a CSV or text data file) goes through ``regular_file`` or ``read_bytes``: the path, its
symlinks resolved, must be a regular file -- not a directory, a FIFO (which blocks a reader for
ever), a character device (``/dev/zero`` reads until memory runs out) or a socket -- readable,
and no larger than the limit of its kind (``SPEC_BYTES``, ``DATA_BYTES``, ``IMAGE_BYTES``).
Folders a reader walks go through ``directory``. Every directory regulab writes into (``--out``, the default
``runs/``, a SQLite store's folder) goes through ``writable_dir`` or ``out_dir`` before any work:
the right kind, creatable, writable. Run, study and sweep names become directory names, so they
are plain names (``is_plain_name``). A run directory is made under a hidden temporary name
(``PARTIAL``) while ``making`` holds a shared flock on its folder; ``remove_partial`` removes
those a killed process left, never one still being made (``runs.rundir``).

Each refusal is one line naming the path (a bounded prefix of it, escaped by ``shown``), what it
is and what is allowed; the error type is the caller's (``ConfigError`` for config and spec files
and output paths, ``DataError`` for data).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from regulab.errors import ConfigError, DataError, RegulabInputError, quote

__all__ = ["MAX_NAME", "SPEC_BYTES", "DATA_BYTES", "IMAGE_BYTES", "is_plain_name", "shown", "regular_file",
           "directory", "read_bytes", "read_text", "writable_dir", "out_dir", "PARTIAL", "making",
           "remove_partial"]

MAX_NAME = 128                  # characters of a run, study or sweep name (a directory's stem)
SPEC_BYTES = 16 * 2**20         # a config, study, sweep or explain spec file: 16 MiB
DATA_BYTES = 4 * 2**30          # a CSV, text or .npz data file read whole: 4 GiB
IMAGE_BYTES = 64 * 2**20        # one image file (.png, .jpg) of a folder: 64 MiB
_SHOWN = 200                    # characters of a path quoted in an error
PARTIAL = ".regulab-partial"    # the suffix of a run directory being made (``.NAME.xxxxxxxx``)

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def is_plain_name(value: object) -> bool:
    """Whether ``value`` can name a directory on its own: a non-empty string of at most
    ``MAX_NAME`` characters, no path separator ``/``, not ``.`` or ``..``, no control character
    (NUL, newline, ...). (A backslash is a plain character on POSIX and stays allowed.)"""
    return (isinstance(value, str) and 0 < len(value) <= MAX_NAME and value not in (".", "..")
            and not any(c == "/" or ord(c) < 32 or ord(c) == 127 for c in value))


def shown(path: object) -> str:
    """A path as an error quotes it (``errors.quote``): at most ``_SHOWN`` characters, escaped
    (``repr``), so a newline or a 100 MB value never breaks the one-line rule."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return quote(text, _SHOWN)


def _path(path: str | os.PathLike, what: str, error: type[RegulabInputError]) -> Path:
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise error(f"{what} must be a path; got {shown(text)}")
    if "\0" in text:
        raise error(f"{what} {shown(text)} must be a path without NUL characters")
    return Path(text).expanduser()


def _kind(mode: int) -> str | None:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file") \
        if not stat.S_ISREG(mode) else None


def regular_file(path: str | os.PathLike, what: str, *, max_bytes: int | None = None,
                 error: type[RegulabInputError] = DataError) -> Path:
    """``path`` checked to be a readable regular file (symlinks followed) of at most
    ``max_bytes``; else ``error``: ``<what> '<path>' does not exist`` / ``is a FIFO (named
    pipe); must be a regular file`` / ``is 20000000 bytes; must be at most 16777216``."""
    p = _path(path, what, error)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{what} {shown(path)} does not exist") from None
    except OSError as e:        # a loop of symlinks, a component that is a file, no permission
        raise error(f"{what} {shown(path)} cannot be opened ({e.strerror or e})") from None
    kind = _kind(st.st_mode)
    if kind is not None:
        raise error(f"{what} {shown(path)} is {kind}; must be a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{what} {shown(path)} is {st.st_size} bytes; must be at most {max_bytes} "
                    "(regulab.paths)")
    if not os.access(p, os.R_OK):
        raise error(f"{what} {shown(path)} cannot be read (permission denied)")
    return p


def directory(path: str | os.PathLike, what: str, *,
              error: type[RegulabInputError] = DataError) -> Path:
    """``path`` checked to be a directory (symlinks followed) whose entries can be listed."""
    p = _path(path, what, error)
    if not p.exists():
        raise error(f"{what} {shown(path)} does not exist")
    if not p.is_dir():
        raise error(f"{what} {shown(path)} is not a directory")
    try:
        with os.scandir(p):
            pass
    except OSError as e:
        raise error(f"{what} {shown(path)} cannot be read ({e.strerror or e})") from None
    return p


def read_bytes(path: str | os.PathLike, what: str, *, max_bytes: int,
               error: type[RegulabInputError] = DataError) -> bytes:
    """The content of the regular file ``path`` (``regular_file``), read whole; at most
    ``max_bytes`` are read, also from a file that grows or says it is empty (``/proc``)."""
    p = regular_file(path, what, max_bytes=max_bytes, error=error)
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{what} {shown(path)} cannot be read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{what} {shown(path)} is more than {max_bytes} bytes; must be at most "
                    f"{max_bytes} (regulab.paths)")
    return data


def read_text(path: str | os.PathLike, what: str, *, max_bytes: int = SPEC_BYTES,
              error: type[RegulabInputError] = ConfigError) -> str:
    """``read_bytes`` decoded as UTF-8 (a BOM dropped); not UTF-8 is ``error``."""
    try:
        return read_bytes(path, what, max_bytes=max_bytes, error=error).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{what} {shown(path)} is not UTF-8 text") from None


def _writable(p: Path) -> bool:
    """Whether this process may create entries in the directory ``p`` (a read-only file
    system says no even to root)."""
    return os.access(p, os.W_OK | os.X_OK)


def writable_dir(path: str | os.PathLike, what: str, *,
                 error: type[RegulabInputError] = ConfigError) -> Path:
    """``path`` (symlinks resolved) checked to be a directory this process can write into,
    or a path it can create: its nearest existing ancestor a writable directory. Nothing is
    made. Returns the resolved path."""
    p = _path(path, what, error)
    try:
        real = p.resolve()
    except (OSError, RuntimeError) as e:       # a loop of symlinks
        raise error(f"{what} {shown(path)} cannot be resolved ({e})") from None
    existing = real
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == real else f"is under {shown(existing)}, which is"
        raise error(f"{what} {shown(path)} {where} not a directory; choose a new path")
    if not _writable(existing):
        where = "" if existing == real else f" (its folder {shown(existing)})"
        raise error(f"{what} {shown(path)}{where} is not writable; choose a writable path")
    return real


def out_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """An output directory (``--out``): new or empty, creatable and writable
    (``writable_dir``); nothing of the user's is overwritten. A symlink is replaced by the
    directory it points to."""
    p = _path(path, what, ConfigError)
    try:
        taken = p.exists() and (not p.is_dir() or any(p.iterdir()))
    except OSError as e:
        raise ConfigError(f"{what} {shown(path)} cannot be read ({e.strerror or e})") from None
    if taken:
        raise ConfigError(f"{what}: {shown(path)} already exists and is not an empty directory; "
                          "choose a new path")
    real = writable_dir(p, what)
    return real if p.is_symlink() else p


def _folder_lock(folder: Path, exclusive: bool) -> int | None:
    """A descriptor of ``folder`` holding its ``flock``: shared (waiting for it), or exclusive
    (not waiting); None when that is taken, or flock is not there (Windows, a file system
    without it)."""
    try:
        import fcntl
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
    except OSError:         # BlockingIOError: taken; ENOLCK: no flock here
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def making(folder: Path) -> Iterator[None]:
    """Held while this process makes a run directory in ``folder``: a shared flock on the
    folder (many processes may make one there at once), which keeps ``remove_partial`` off;
    released when the block ends, or by the system when the process dies."""
    fd = _folder_lock(folder, exclusive=False)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def remove_partial(folder: str | Path) -> list[Path]:
    """Remove the hidden run directories a start killed before its rename left in ``folder``
    (``.NAME.xxxxxxxx.regulab-partial``): only when no process is making one there now (the
    folder's flock, taken exclusive without waiting; else nothing is removed, this time).
    Returns those removed; anything else in ``folder`` is never touched."""
    folder = Path(folder)
    fd = _folder_lock(folder, exclusive=True)
    if fd is None:
        return []
    try:
        left = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(PARTIAL)
                and p.is_dir() and not p.is_symlink()]
        for p in left:
            shutil.rmtree(p, ignore_errors=True)
        return left
    except OSError:         # the folder cannot be listed: nothing to do
        return []
    finally:
        os.close(fd)
