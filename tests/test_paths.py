"""Names, paths, files and disks (issue 16): every path a user names is checked before it is
opened or written, and a disk that fills up mid-run ends in one line and a run that resumes.

Bad names and paths: exit code 2, one line on stderr naming the path, and nothing written --
the working directory's listing and the store's rows are the same before and after.

Read-only directories: this suite may run as root, for whom ``chmod`` stops no write, so a
read-only directory is also simulated by patching ``regulab.paths._writable`` (what
``os.access`` answers for it); a full disk or a read-only file system mid-run is simulated by
patching the function that writes the checkpoint (or the results) to raise ``OSError`` with
ENOSPC, EROFS or EACCES.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from regulab import paths
from regulab.cli import main
from regulab.errors import ConfigError, DataError, RegulabInputError
from regulab.runs.store import RunStore

from .conftest import write

TINY = """
name = "tiny"
[data]
dataset = "moons"
n_samples = 200
[model]
hidden = [8]
[train]
epochs = 3
batch_size = 32
checkpoint_every = 1
progress = false
"""
STUDY = '[study]\nseeds = 1\n[variants]\nl2 = { "regularization.l2" = 1e-3 }\n[base]\ndata = { dataset = "moons" }\n'
SWEEP = ('[sweep]\ntrials = 1\n[space]\n"optim.lr" = { low = 1e-3, high = 1e-1, log = true }\n'
         '[base]\ndata = { dataset = "moons" }\n')
FILE_DATA = TINY.replace("n_samples = 200\n", "")     # n_samples is for generated data only


def listing(root: Path) -> list[str]:
    """Every path under ``root`` (relative, sorted): what a refused command must not change."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def store_rows(db: Path) -> list[tuple]:
    """(id, status, run_dir) of every run in the SQLite store ``db`` ([] when there is none)."""
    if not db.exists():
        return []
    return [(r["id"], r["status"], r["run_dir"]) for r in RunStore(str(db)).runs()]


def refused(capsys, code: int, words: list[str]) -> str:
    """Exit code 2 and one line on stderr holding ``words``; the line."""
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, (code, err)
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.fixture
def read_only(monkeypatch):
    """Make a directory read-only: chmod, and (for root, whom chmod does not stop) what
    ``regulab.paths`` asks ``os.access`` about it."""
    made = []

    def make(path: Path) -> Path:
        path.chmod(0o555)
        made.append(path)
        if os.geteuid() == 0:
            real = paths._writable
            blocked = path.resolve()
            monkeypatch.setattr(paths, "_writable", lambda p: Path(p).resolve() != blocked and real(p))
        return path
    yield make
    for p in made:
        p.chmod(0o755)


# -- names -----------------------------------------------------------------------------------

BAD_NAMES = ["../../x", "/tmp/regulab-abs", "a/b", "..", ".", "a\u0000b", "line\nbreak", "x" * 129, ""]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("how", ["file", "set"])
def test_a_run_name_that_is_no_plain_name_is_refused(workdir, capsys, name, how):
    text = TINY.replace('name = "tiny"', f"name = {json.dumps(name)}" if how == "file" else "")
    cfg = write(workdir / "c.toml", text)
    before = listing(workdir)
    code = main(["train", str(cfg), "--quiet", *(["--set", f"name={name}"] if how == "set" else [])])
    if how == "set" and name == "":
        err = refused(capsys, code, ["name"])   # --set name= is the empty string
    else:
        err = refused(capsys, code, ["config key 'name'", "plain name"])
    assert "\x00" not in err
    assert listing(workdir) == before and not Path("/tmp/regulab-abs").exists()


@pytest.mark.parametrize("name", ["../../x", "a/b", "a\u0000b", "x" * 129])
@pytest.mark.parametrize("kind", ["study", "sweep"])
def test_a_study_or_sweep_name_that_is_no_plain_name_is_refused(workdir, capsys, name, kind):
    body = ('[study]\nname = {n}\nseeds = 1\n[variants]\nl2 = {{ "regularization.l2" = 1e-3 }}\n'
            if kind == "study" else
            '[sweep]\nname = {n}\ntrials = 1\n[space]\n"optim.lr" = {{ low = 1e-3, high = 1e-1, log = true }}\n')
    spec = write(workdir / "s.toml", body.format(n=json.dumps(name)) + "[base]\ndata = { dataset = 'moons' }\n")
    before = listing(workdir)
    refused(capsys, main([kind, str(spec), "--quiet"]), [f"{kind} key '{kind}.name'", "plain name"])
    assert listing(workdir) == before


def test_plain_names():
    assert all(paths.is_plain_name(n) for n in ["run", "a..b", ".hidden", "x" * 128, "l2 0.1", "a\\b"])
    assert not any(paths.is_plain_name(n) for n in [*BAD_NAMES, None, 3, "a\x7fb"])


# -- --out and the default runs/ ---------------------------------------------------------------

def _out_cases(root: Path, read_only) -> dict[str, tuple[str, list[str]]]:
    (root / "afile").write_text("x")
    (root / "full").mkdir()
    (root / "full" / "keep").write_text("x")
    (root / "locked").mkdir()
    read_only(root / "locked")
    return {"empty": ("", ["--out", "must be a path"]),
            "nul": ("a\u0000b", ["--out", "NUL"]),
            "a file": ("afile", ["--out", "'afile'"]),
            "under a file": ("afile/run", ["--out", "under", "not a directory"]),
            "not empty": ("full", ["--out", "already exists"]),
            "unwritable": ("locked/run", ["--out", "not writable"])}


@pytest.mark.parametrize("case", ["empty", "nul", "a file", "under a file", "not empty", "unwritable"])
@pytest.mark.parametrize("command", ["train", "study", "sweep"])
def test_a_bad_out_is_refused_before_any_work(workdir, capsys, read_only, case, command):
    out, words = _out_cases(workdir, read_only)[case]
    text = {"train": TINY, "study": STUDY, "sweep": SWEEP}[command]
    args = [command, str(write(workdir / "s.toml", text))]
    before = listing(workdir)
    if command == "sweep" and case == "not empty":
        words = ["--out", "not empty"]
    refused(capsys, main([*args, "--out", out, "--quiet"]), words)
    assert listing(workdir) == before


def test_an_unwritable_working_directory_is_refused_before_any_work(workdir, capsys, read_only):
    cfg = write(workdir / "c.toml", TINY)
    read_only(workdir)
    before = listing(workdir)
    refused(capsys, main(["train", str(cfg), "--quiet"]), ["runs/", "not writable"])
    assert listing(workdir) == before


def test_runs_being_a_file_is_refused(workdir, capsys):
    cfg = write(workdir / "c.toml", TINY)
    write(workdir / "runs", "not a folder")
    before = listing(workdir)
    refused(capsys, main(["train", str(cfg), "--quiet", "--db", "r.db"]), ["runs/", "not a directory"])
    assert listing(workdir) == before


def test_an_out_that_is_a_symlink_trains_into_its_target(workdir, capsys):
    cfg = write(workdir / "c.toml", TINY)
    (workdir / "target").mkdir()
    (workdir / "link").symlink_to(workdir / "target")
    assert main(["train", str(cfg), "--out", "link", "--quiet"]) == 0
    assert (workdir / "target" / "results.json").is_file() and (workdir / "link").is_symlink()


# -- --db ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["junk", "a directory", "a device", "unwritable folder", "nul",
                                  "a PostgreSQL server that does not answer"])
@pytest.mark.parametrize("command", ["train", "resume", "study", "sweep"])
def test_a_bad_db_is_refused_before_the_run_directory_exists(workdir, capsys, read_only, case, command):
    write(workdir / "junk.db", "this is no database\n" * 10)
    (workdir / "dir.db").mkdir()
    (workdir / "locked").mkdir()
    read_only(workdir / "locked")
    db = {"junk": "junk.db", "a directory": "dir.db", "a device": "/dev/null",
          "unwritable folder": "locked/r.db", "nul": "sqlite:///a\u0000b.db",
          "a PostgreSQL server that does not answer": "postgresql+psycopg://nobody@127.0.0.1:1/none"}[case]
    cfg = write(workdir / "c.toml", TINY)
    if command == "resume":     # a run stopped at its start (no checkpoint yet), resumed elsewhere
        run = workdir / "run"
        (run / "checkpoint").mkdir(parents=True)
        write(run / "config.toml", TINY)
    spec = write(workdir / "s.toml", STUDY if command == "study" else SWEEP)
    before = listing(workdir)
    args = {"train": ["train", str(cfg), "--out", "out"], "resume": ["resume", "run"],
            "study": ["study", str(spec), "--out", "out"], "sweep": ["sweep", str(spec), "--out", "out"]}
    refused(capsys, main([*args[command], "--db", db, "--quiet"]), ["--db"])
    assert listing(workdir) == before


# -- files that are not regular files --------------------------------------------------------------

@pytest.fixture
def specials(tmp_path):
    """A FIFO, a socket, a symlink to /dev/zero and one to /dev/null, each named like a file."""
    made = {}
    for suffix in (".toml", ".json", ".csv", ".npz"):
        fifo = tmp_path / f"fifo{suffix}"
        os.mkfifo(fifo)
        zero = tmp_path / f"zero{suffix}"
        zero.symlink_to("/dev/zero")
        made[suffix] = [fifo, zero]
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.toml"))
    made[".toml"].append(tmp_path / "sock.toml")
    yield made
    sock.close()


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_config_file_that_is_no_regular_file_is_refused(workdir, capsys, specials, which):
    path = specials[".toml"][which]
    refused(capsys, main(["train", str(path), "--out", "out", "--quiet"]),
            ["config file", "must be a regular file"])
    assert not (workdir / "out").exists() and not (workdir / "runs").exists()


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_an_explain_spec_that_is_no_regular_file_is_refused(capsys, specials, suffix, which):
    """A FIFO would block for ever, /dev/zero read until memory runs out."""
    refused(capsys, main(["explain", "backprop", "--spec", str(specials[suffix][which])]),
            ["spec file", "must be a regular file"])


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("source, suffix", [("csv", ".csv"), ("npz", ".npz"), ("text", ".csv")])
def test_a_data_file_that_is_no_regular_file_is_refused(workdir, capsys, specials, source, suffix, which):
    cfg = write(workdir / "c.toml", FILE_DATA)
    code = main(["train", str(cfg), "--out", "out", "--quiet",
                 "--set", f"data.dataset={source}:{specials[suffix][which]}"])
    refused(capsys, code, ["data.dataset"])
    assert not (workdir / "out").exists()


def test_text_from_dev_zero_is_refused(workdir, capsys):
    cfg = write(workdir / "c.toml", FILE_DATA)
    code = main(["train", str(cfg), "--out", "out", "--quiet", "--set", "data.dataset=text:/dev/zero"])
    refused(capsys, code, ["/dev/zero", "character device"])


def test_images_from_proc_is_one_line(workdir, capsys):
    cfg = write(workdir / "c.toml", FILE_DATA)
    code = main(["train", str(cfg), "--out", "out", "--quiet", "--set", "data.dataset=images:/proc"])
    refused(capsys, code, ["/proc"])
    assert not (workdir / "out").exists()


@pytest.mark.parametrize("source", ["images", "text"])
def test_an_unreadable_class_folder_is_one_line(workdir, capsys, monkeypatch, source):
    for c in ("a", "b"):
        write(workdir / "d" / c / ("x.png" if source == "images" else "x.txt"), "x")
    blocked = workdir / "d" / "b"
    blocked.chmod(0o000)
    real = Path.iterdir

    def iterdir(self):      # root lists any folder: refuse as the kernel refuses others
        if self.resolve() == blocked:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)
    monkeypatch.setattr(Path, "iterdir", iterdir)
    try:
        cfg = write(workdir / "c.toml", FILE_DATA)
        code = main(["train", str(cfg), "--out", "out", "--quiet", "--set", f"data.dataset={source}:d"])
        refused(capsys, code, ["cannot be read", "Permission denied"])
    finally:
        blocked.chmod(0o755)


def test_a_spec_larger_than_the_limit_is_refused_unread(tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(paths.SPEC_BYTES + 1)      # sparse: nothing to read, the size says enough
    with pytest.raises(ConfigError, match=f"at most {paths.SPEC_BYTES}"):
        paths.read_text(big, "config file")


def test_read_bytes_stops_at_the_limit_when_the_size_lies(tmp_path):
    """/proc files say they are empty: the read is bounded, not the stat."""
    data = paths.read_bytes("/proc/self/status", "file", max_bytes=1 << 20)
    assert data.startswith(b"Name:")
    with pytest.raises(DataError, match="more than 8 bytes"):
        paths.read_bytes("/proc/self/status", "file", max_bytes=8)


def test_an_unreadable_file_is_one_line(tmp_path, monkeypatch):
    f = write(tmp_path / "c.toml", TINY)
    monkeypatch.setattr(paths.os, "access", lambda p, mode: False)
    with pytest.raises(ConfigError, match="cannot be read"):
        paths.read_text(f, "config file")


# -- degenerate WAVs ---------------------------------------------------------------------------------

def _wav(path: Path, rate: int = 8000) -> Path:
    from scipy.io import wavfile
    wavfile.write(path, rate, (np.sin(np.arange(800) / 5) * 3000).astype(np.int16))
    return path


@pytest.mark.parametrize("damage", ["header cut", "rate 0", "empty", "only RIFF"])
def test_a_degenerate_wav_is_one_line_naming_the_file(tmp_path, damage):
    from regulab.modalities.audio.reader import read_wav
    path = _wav(tmp_path / "3_x_0.wav")
    data = path.read_bytes()
    if damage == "header cut":
        data = data[:30]
    elif damage == "rate 0":
        data = data[:24] + struct.pack("<I", 0) + data[28:]
    elif damage == "empty":
        data = b""
    else:
        data = data[:4]
    path.write_bytes(data)
    with pytest.raises(DataError) as e:
        read_wav(path)
    assert "3_x_0.wav" in str(e.value) and "\n" not in str(e.value)


# -- disks: a write that fails mid-run ----------------------------------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("where", ["checkpoint", "results", "store"])
def test_a_full_or_read_only_disk_mid_run_fails_cleanly_and_resumes(workdir, capsys, monkeypatch, code, where):
    """The disk fills up (or turns read-only) at the second checkpoint, at results.json, or
    under the SQLite store as it logs the epochs: one line, exit 1, the row failed, the last
    good checkpoint loadable; once space is back, resume finishes the run."""
    import sqlite3

    from sqlalchemy import exc as sa_exc

    import regulab.runs.evaluate as evaluate
    import regulab.runs.run as run_module
    from regulab.io import load_state

    cfg = write(workdir / "c.toml", TINY)
    real_save, real_write = run_module.save_state, evaluate.atomic_write
    calls, full = [], [True]

    def save_state(path, state):
        calls.append(path)
        if len(calls) == 2 and full[0]:     # the second checkpoint: the disk is full now
            raise OSError(code, os.strerror(code), str(path))
        real_save(path, state)

    def atomic_write(path, data):
        if Path(path).name == "results.json" and full[0]:
            raise OSError(code, os.strerror(code), str(path))
        real_write(path, data)
    real_log = RunStore.log_epochs

    def log_epochs(self, rows):
        if len({r[1] for r in rows} | {e for e in calls}) >= 2 and full[0]:    # at the second epoch
            why = {errno.ENOSPC: "database or disk is full", errno.EROFS: "attempt to write a readonly "
                   "database"}.get(code, "disk is full")
            raise sa_exc.OperationalError("INSERT", {}, sqlite3.OperationalError(why))
        calls.extend(r[1] for r in rows)
        real_log(self, rows)
    if where == "checkpoint":
        monkeypatch.setattr(run_module, "save_state", save_state)
    elif where == "results":
        monkeypatch.setattr(evaluate, "atomic_write", atomic_write)
    else:
        monkeypatch.setattr(RunStore, "log_epochs", log_epochs)
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "regulab resume" in err and (os.strerror(code) in err or where == "store")
    (row,) = store_rows(workdir / "runs" / "regulab.db")
    assert row[1] == "failed"
    state = load_state(workdir / "out" / "checkpoint" / "state.safetensors")    # intact, loadable
    assert state["epoch"] == {"checkpoint": 1, "results": 3, "store": 1}[where]
    assert not (workdir / "out" / "results.json").exists()
    assert not [p for p in (workdir / "out").rglob("*.tmp")]

    full[0] = False     # space is back
    assert main(["resume", "out", "--quiet"]) == 0
    (row,) = store_rows(workdir / "runs" / "regulab.db")
    assert row[1] == "completed"
    assert json.loads((workdir / "out" / "results.json").read_text())["epochs_run"] == 3


def test_a_full_disk_while_making_the_run_directory_leaves_nothing(workdir, capsys, monkeypatch):
    import regulab.runs.rundir as run_module   # open_run writes config.toml
    cfg = write(workdir / "c.toml", TINY)
    (workdir / "runs").mkdir()
    before = listing(workdir)

    def atomic_write(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(run_module, "atomic_write", atomic_write)
    assert main(["train", str(cfg), "--quiet", "--db", str(workdir / "r.db")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing was written" in err, err
    assert listing(workdir) == before and store_rows(workdir / "r.db") == []


def test_store_check_refuses_junk_and_accepts_a_real_store(tmp_path):
    good = RunStore(str(tmp_path / "r.db"))
    good.check()        # nothing there yet: creatable
    good.create_run("x", str(tmp_path), {})
    good.check()
    write(tmp_path / "junk.db", "junk" * 100)
    with pytest.raises(RegulabInputError, match="--db"):
        RunStore(str(tmp_path / "junk.db")).check()


# -- regulab predict --out -------------------------------------------------------------------------

@pytest.mark.parametrize("out, words", [("", ["--out"]), (".", ["--out", "regular file"]),
                                        ("nowhere/p.csv", ["--out", "existing folder"]),
                                        ("a\u0000b.csv", ["--out"])])
def test_a_bad_predict_out_is_refused_before_the_model_is_loaded(workdir, capsys, out, words):
    before = listing(workdir)
    refused(capsys, main(["predict", "no-such-run", "x.csv", "--out", out]), words)
    assert listing(workdir) == before
