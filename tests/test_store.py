"""The run store on SQLite files (no server needed)."""

import json
import math
import multiprocessing as mp

import numpy as np
import pytest

from regulab.errors import RegulabInputError
from regulab.runs.store import RunStore, default_db_url, format_runs_table


def _store(tmp_path, name="sub/regulab.db"):
    return RunStore(f"sqlite:///{tmp_path / name}")


def test_default_url(monkeypatch):
    monkeypatch.delenv("REGULAB_DB", raising=False)
    assert default_db_url() == "sqlite:///runs/regulab.db"
    monkeypatch.setenv("REGULAB_DB", "postgresql://u:pw@host/db")
    assert default_db_url() == "postgresql://u:pw@host/db"


def test_constructing_and_reading_create_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGULAB_DB", raising=False)
    store = RunStore()
    assert store.url == f"sqlite:///{tmp_path / 'runs' / 'regulab.db'}"
    assert store.runs() == [] and store.find_run("x") is None
    with pytest.raises(RegulabInputError, match="run_id 1 not found"):
        store.get_run(1)
    assert list(tmp_path.iterdir()) == []
    store.create_run("a", "runs/a", {})
    assert (tmp_path / "runs" / "regulab.db").is_file()


def test_plain_path_is_sqlite(tmp_path):
    store = RunStore(str(tmp_path / "x.db"))
    assert store.url == f"sqlite:///{tmp_path / 'x.db'}"
    store.create_run("a", str(tmp_path / "a"), {})
    assert len(RunStore(f"sqlite:///{tmp_path / 'x.db'}").runs()) == 1


def test_round_trip(tmp_path):
    store = _store(tmp_path)
    cfg = {"optim": {"lr": 0.1, "betas": (0.9, 0.999)}, "data": {"split": [0.8, 0.15, 0.05]}}
    rid = store.create_run("mlp", str(tmp_path / "run1"), cfg)
    for epoch in range(1, 5):
        store.log_epoch(rid, epoch, {"train_loss": 1.0 / epoch, "val_acc": 0.5 + epoch / 10})
    store.truncate_epochs(rid, after_epoch=2)
    store.finish(rid, "completed", {"val_acc": 0.7, "test_acc": 0.68, "best_epoch": 2})

    (row,) = store.runs()
    assert row["id"] == rid and row["name"] == "mlp" and row["kind"] == "train"
    assert row["status"] == "completed" and row["epochs"] == 2
    assert row["results"] == {"val_acc": 0.7, "test_acc": 0.68, "best_epoch": 2}
    assert row["run_dir"] == str((tmp_path / "run1").resolve())
    assert row["created_at"].endswith("+00:00") and row["updated_at"] >= row["created_at"]
    assert "config" not in row

    run = store.get_run(rid)
    assert run["config"] == {"optim": {"lr": 0.1, "betas": [0.9, 0.999]}, "data": cfg["data"]}
    assert [h["epoch"] for h in run["history"]] == [1, 2]
    assert run["history"][1] == {"epoch": 2, "train_loss": 0.5, "val_acc": 0.7}
    assert store.find_run(str(tmp_path / "run1")) == rid
    assert store.find_run(str(tmp_path / "other")) is None


def test_upsert_same_epoch_and_status(tmp_path):
    store = _store(tmp_path)
    rid = store.create_run("r", str(tmp_path / "r"), {}, kind="study")
    store.log_epoch(rid, 1, {"loss": 2.0})
    store.log_epoch(rid, 1, {"loss": 1.0, "acc": 0.5})
    run = store.get_run(rid)
    assert run["history"] == [{"epoch": 1, "loss": 1.0, "acc": 0.5}] and run["kind"] == "study"
    store.set_status(rid, "killed")
    assert store.get_run(rid)["status"] == "killed" and store.get_run(rid)["results"] is None
    store.set_status(rid, "running")
    assert store.runs()[0]["status"] == "running"


def test_find_run_returns_latest_and_runs_newest_first(tmp_path):
    store = _store(tmp_path)
    ids = [store.create_run(f"r{i}", str(tmp_path / "same"), {}) for i in range(3)]
    assert store.find_run(str(tmp_path / "same")) == ids[-1]
    assert [r["id"] for r in store.runs()] == ids[::-1]
    assert [r["id"] for r in store.runs(limit=2)] == ids[:0:-1]


def test_runs_filters_by_status_kind_and_name_pattern(tmp_path):
    store = _store(tmp_path)
    names = ["clinic", "clinic-l2", "Clinic", "drop_50%", "sweep-3"]
    ids = {n: store.create_run(n, str(tmp_path / n), {}, kind="study" if n == "clinic" else "train")
           for n in names}
    store.finish(ids["clinic-l2"], "completed", {})
    store.set_status(ids["sweep-3"], "diverged")

    def found(**kw):
        return [r["name"] for r in store.runs(**kw)]
    assert found(status="completed") == ["clinic-l2"]
    assert found(status="running") == ["drop_50%", "Clinic", "clinic"]
    assert found(kind="study") == ["clinic"]
    assert found(name="clinic*") == ["clinic-l2", "clinic"]          # case-sensitive
    assert found(name="clinic") == ["clinic"]                         # no wildcard: exact
    assert found(name="drop_50%") == ["drop_50%"] and found(name="drop?50*") == ["drop_50%"]
    assert found(name="*", limit=2) == ["sweep-3", "drop_50%"]        # the limit after the filter
    assert found(name="clinic*", status="running", kind="train") == []
    with pytest.raises(RegulabInputError, match="status must be one of"):
        store.runs(status="done")
    with pytest.raises(RegulabInputError, match="name filter"):
        store.runs(name="")


def test_non_finite_values_survive_as_valid_json(tmp_path):
    import sqlite3

    import torch  # imported here: the spawned workers below need not load torch

    store = _store(tmp_path)
    rid = store.create_run("n", str(tmp_path / "n"), {"max_norm": math.inf})
    store.log_epoch(rid, 1, {"loss": math.nan, "grad": -math.inf, "acc": np.float32(0.25),
                             "lr": torch.tensor(0.01)})
    store.finish(rid, "diverged", {"train_loss": float("nan")})
    run = store.get_run(rid)
    h = run["history"][0]
    assert math.isnan(h["loss"]) and h["grad"] == -math.inf and h["acc"] == 0.25
    assert h["lr"] == pytest.approx(0.01)
    assert math.isnan(run["results"]["train_loss"]) and run["config"]["max_norm"] == math.inf
    con = sqlite3.connect(tmp_path / "sub" / "regulab.db")
    (text,) = con.execute("SELECT metrics_json FROM epochs").fetchone()
    con.close()
    assert json.loads(text)["loss"] == "nan" and "NaN" not in text


def test_two_stores_on_one_file(tmp_path):
    a, b = _store(tmp_path), _store(tmp_path)
    ra = a.create_run("a", str(tmp_path / "a"), {})
    rb = b.create_run("b", str(tmp_path / "b"), {})
    a.log_epoch(rb, 1, {"loss": 1.0})
    b.log_epoch(ra, 1, {"loss": 2.0})
    assert {r["name"]: r["epochs"] for r in a.runs()} == {"a": 1, "b": 1}
    assert b.get_run(ra)["history"][0]["loss"] == 2.0
    a.close()
    b.close()


def test_wal_mode(tmp_path):
    store = _store(tmp_path)
    store.create_run("a", str(tmp_path / "a"), {})
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.parametrize(
    "url, match",
    [
        ("mysql://bob:secret@db/runs", r"unsupported database scheme 'mysql'.*bob:\*\*\*@db"),
        ("", "empty database URL"),
        ("postgres://bob:secret@db/runs", "unsupported database scheme 'postgres'"),
    ],
)
def test_bad_url(url, match):
    with pytest.raises(RegulabInputError, match=match) as err:
        RunStore(url)
    msg = str(err.value)
    assert "--db/REGULAB_DB" in msg and "allowed:" in msg and "\n" not in msg
    assert "secret" not in msg


def test_unreachable_sqlite_path(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    store = RunStore(str(tmp_path / "file" / "db.sqlite"))
    with pytest.raises(RegulabInputError, match="--db/REGULAB_DB: cannot"):
        store.create_run("a", "a", {})
    (tmp_path / "garbage.db").write_text("this is not a database" * 100)
    with pytest.raises(RegulabInputError, match="cannot open the run store"):
        RunStore(str(tmp_path / "garbage.db")).runs()


def test_postgres_driver_missing_or_unreachable():
    try:
        store = RunStore("postgresql://bob:secret@127.0.0.1:1/nodb")
    except RegulabInputError as e:  # no driver installed
        assert "driver" in str(e) and "secret" not in str(e)
        return
    with pytest.raises(RegulabInputError, match="cannot open the run store") as err:
        store.runs()
    assert "secret" not in str(err.value)


def test_bad_arguments(tmp_path):
    store = _store(tmp_path)
    rid = store.create_run("a", "a", {})
    with pytest.raises(RegulabInputError, match=r"status must be one of .*got 'done'"):
        store.finish(rid, "done")
    with pytest.raises(RegulabInputError, match="run_id 99 not found"):
        store.log_epoch(99, 1, {"loss": 1.0})
    with pytest.raises(RegulabInputError, match="epoch must be an int >= 0"):
        store.log_epoch(rid, -1, {})
    with pytest.raises(RegulabInputError, match="name must be a non-empty string"):
        store.create_run("", "a", {})
    with pytest.raises(TypeError, match=r"metrics.model has type object"):
        store.log_epoch(rid, 1, {"model": object()})
    assert store.get_run(rid)["history"] == []


def test_format_runs_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = _store(tmp_path)
    r1 = store.create_run("clf-baseline", str(tmp_path / "runs" / "clf"), {})
    store.log_epoch(r1, 1, {})
    store.finish(r1, "completed", {"val_acc": 0.91234, "test_acc": 0.9})
    r2 = store.create_run("reg-" + "x" * 40, "/somewhere/else/" + "deep/" * 20 + "run", {})
    store.finish(r2, "diverged", {"val_r2": math.nan})
    text = format_runs_table(store.runs())
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["id", "name", "status", "epochs", "val_acc/r2", "test_acc",
                                "created", "run_dir"]
    assert "clf-baseline" in text and "0.9123" in text and "0.9000" in text
    assert "runs/clf" in lines[2] and str(tmp_path) not in lines[2]
    assert "diverged" in lines[1] and "nan" in lines[1] and lines[1].rstrip().endswith("deep/run")
    assert "..." in lines[1] and all(len(line) < 160 for line in lines)
    assert format_runs_table([]) == "(no runs)"
    only_reg = format_runs_table(store.runs()[:1])
    assert "val_r2" in only_reg and "test_acc" in only_reg


def _worker(path: str, proc: int) -> None:
    store = RunStore(path)
    for i in range(5):
        rid = store.create_run(f"p{proc}-{i}", f"/tmp/p{proc}-{i}", {"proc": proc})
        for epoch in range(1, 6):
            store.log_epoch(rid, epoch, {"loss": 1.0 / epoch})
        store.finish(rid, "completed", {"val_acc": 0.5})


def test_four_processes_write_one_file(tmp_path):
    path = str(tmp_path / "shared" / "runs.db")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(path, p)) for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    rows = RunStore(path).runs()
    assert len(rows) == 20 and sum(r["epochs"] for r in rows) == 100
    assert {r["status"] for r in rows} == {"completed"}
    assert len({r["name"] for r in rows}) == 20

