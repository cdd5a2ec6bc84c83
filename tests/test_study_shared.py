"""Studies across machines: claims (take, skip a live one, take over a dead one's), and workers
that share one study on a PostgreSQL store, one of them killed (``regulab.studies.shared``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from regulab.cli import main
from regulab.runs.claims import DONE, FAILED, HELD, TAKEN, Claims, gone, worker_name
from regulab.runs.store import RunStore
from regulab.studies.shared import UnitFailed, claimed

from .conftest import epochs_logged, subprocess_env, untimed, write
from .postgres import postgres_url  # noqa: F401  (fixture)


def _url(backend: str, workdir: Path, request) -> str:
    return request.getfixturevalue("postgres_url") if backend == "postgres" else f"sqlite:///{workdir / 'r.db'}"


def _silence(url: str, job: str, seconds: float) -> None:
    """Every claim of ``job`` as if its holder had sent no heartbeat for ``seconds``."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE claims SET heartbeat = heartbeat - :s WHERE job = :j"),
                     {"s": seconds, "j": job})
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def test_claims_take_skip_a_live_one_and_take_over_a_dead_one(workdir, request, backend):
    url, job = _url(backend, workdir, request), str(workdir / "study")
    a, b = Claims(url, job, grace=30), Claims(url, job, grace=30)
    assert a.worker != b.worker
    assert a.take("u1", "unit one").state == TAKEN
    held = b.take("u1", "unit one")
    assert (held.state, held.worker) == (HELD, a.worker)        # live: skipped
    assert b.take("u2").state == TAKEN                          # the next unit is free
    assert a.done("u1", {"val_acc": 0.5})
    done = b.take("u1")
    assert (done.state, done.outcome) == (DONE, {"val_acc": 0.5})
    _silence(url, job, 100)         # b died holding u2
    taken = a.take("u2")
    assert taken.state == TAKEN and taken.takeover and taken.worker == b.worker   # the dead one
    assert b.take("u2").state == HELD                           # a holds it now, alive
    assert not b.done("u2", "late")                             # b lost it: its outcome is dropped
    assert a.done("u2", [1, 2])
    rows = {r["unit"]: r for r in a.rows()}
    assert rows["u2"]["attempts"] == 2 and rows["u2"]["worker"] == a.worker
    assert rows["u2"]["outcome"] == [1, 2] and rows["u1"]["attempts"] == 1
    assert Claims(url, "another study").take("u1").state == TAKEN   # claims are per job


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def test_heartbeats_failures_and_releases(workdir, request, backend):
    url, job = _url(backend, workdir, request), str(workdir / "study")
    a, b = Claims(url, job, heartbeat=1, grace=30), Claims(url, job, grace=30)
    a.take("u1")
    _silence(url, job, 100)
    a.beat()                        # a beats again: alive
    assert b.take("u1").state == HELD
    a.release("u1")                 # interrupted: given up
    assert b.take("u1").state == TAKEN
    assert b.fail("u1", "ValueError: bad")
    failed = a.take("u1")
    assert (failed.state, failed.outcome) == (FAILED, "ValueError: bad")
    with a:                         # the heartbeat thread beats while the body runs
        assert a.take("u3").state == TAKEN
    calls = []
    assert claimed(b, "u4", "unit four", lambda: calls.append(1) or {"x": 1}, wait=False) == \
        (True, {"x": 1}, True)
    assert claimed(a, "u4", "unit four", lambda: calls.append(2), wait=False) == (True, {"x": 1}, False)
    assert claimed(b, "u3", "unit three", lambda: calls.append(3), wait=False) == (False, None, False)
    assert calls == [1]
    with pytest.raises(UnitFailed, match="unit one failed in worker .*ValueError: bad"):
        claimed(b, "u1", "unit one", lambda: None, wait=True)
    with pytest.raises(ZeroDivisionError):
        claimed(b, "u5", "unit five", lambda: 1 / 0, wait=False)
    assert a.take("u5").state == FAILED


def test_a_claim_of_a_process_that_ended_is_taken_over_at_once(workdir):
    """A worker of this machine whose process has ended is dead without waiting for ``grace``
    (a study killed and started again); a live process's claim, or another machine's, waits."""
    url, job = f"sqlite:///{workdir / 'r.db'}", str(workdir / "study")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    machine, pid, token = worker_name().split(":")
    dead = f"{machine}:{int(ended.stdout)}:{token}"
    assert gone(dead) and not gone(worker_name()) and not gone(f"elsewhere:{int(ended.stdout)}:{token}")
    Claims(url, job, grace=300, worker=dead).take("u1")
    Claims(url, job, grace=300, worker=f"elsewhere:{int(ended.stdout)}:{token}").take("u2")
    live = Claims(url, job, grace=300)
    live.take("u3")
    other = Claims(url, job, grace=300)
    taken = other.take("u1")
    assert (taken.state, taken.takeover, taken.worker) == (TAKEN, True, dead)
    assert other.take("u2").state == HELD and other.take("u3").state == HELD


STUDY = """
[study]
name = "shared"
seeds = 2
population = 0
heartbeat = 1
grace = 3
[base]
data = { dataset = "moons", n_samples = 400 }
model = { hidden = [64, 64] }
optim = { lr = 0.01 }
train = { epochs = 150, batch_size = 16, early_stopping = false, progress = false }
[variants.baseline]
[variants.l2]
tune = { "regularization.l2" = [1e-4, 1e-2] }
[variants.drop]
model.dropout = 0.2
"""


def test_bad_shared_study_input_is_refused(workdir, capsys):
    write(workdir / "s.toml", STUDY)
    code = main(["study", "s.toml", "--db", "postgresql+psycopg://u@127.0.0.1:1/x"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "argument '--out'" in err and "got None" in err
    assert not (workdir / "runs").exists()
    write(workdir / "bad.toml", STUDY.replace("heartbeat = 1", "heartbeat = 5"))
    code = main(["study", "bad.toml", "--out", "out", "--db", "postgresql+psycopg://u@127.0.0.1:1/x"])
    err = capsys.readouterr().err
    assert code == 2 and "study key 'study.grace'" in err and "> study.heartbeat (5); got 3" in err
    assert not (workdir / "out").exists()
    code = main(["study", "s.toml", "--out", "out", "--db", "postgresql+psycopg://u@127.0.0.1:1/x"])
    err = capsys.readouterr().err
    # refused by the store's check before any work (regulab.runs.store.RunStore.check)
    assert code == 2 and err.count("\n") == 1 and err.startswith("regulab: error: --db")
    assert "cannot open the run store" in err and "127.0.0.1" in err
    assert not (workdir / "out").exists()


def test_a_worker_with_another_study_is_refused(workdir, capsys, request):
    url = request.getfixturevalue("postgres_url")
    write(workdir / "s.toml", STUDY.replace("[variants.drop]\nmodel.dropout = 0.2\n", ""))
    write(workdir / "out" / "study.json", json.dumps({"name": "shared", "db": url}))
    code = main(["study", "s.toml", "--out", "out", "--db", url, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--out: 'out' holds the study 'shared'" in err
    assert [p.name for p in (workdir / "out").iterdir()] == ["study.json"]


def test_a_sqlite_study_directory_of_another_study_is_refused(workdir, capsys):
    """Run again into its directory a study continues (below); a directory whose study.json is
    another study's, another store's or no study's is refused, one line, nothing written."""
    write(workdir / "s.toml", STUDY)
    for held, words in (("{not json", "is not a study's study.json"), ("[1, 2]", "holds the store"),
                        (json.dumps({"name": "shared", "db": "sqlite:///elsewhere.db"}), "holds the store"),
                        (json.dumps({"name": "shared", "db": f"sqlite:///{workdir / 'runs' / 'regulab.db'}"}),
                         "holds the study 'shared' with other keys")):
        write(workdir / "out" / "study.json", held)
        code = main(["study", "s.toml", "--out", "out", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "--out" in err and words in err, err
        assert [p.name for p in (workdir / "out").iterdir()] == ["study.json"]
        assert not (workdir / "runs").exists()


def _start(workdir: Path, url: str, data_cache: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "regulab", "study", "s.toml", "--db", url, "--out", "s",
                             "--quiet"], cwd=workdir, env=subprocess_env(data_cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_share_a_study_one_killed(workdir, data_cache, request):
    """Two workers on one PostgreSQL store; one is SIGKILLed while it trains a run it holds.
    The other takes that run over once its heartbeats stop, and finishes the study: every run
    of the plan is in the store once, completed; each chosen run scored on test once; the
    results those of one worker alone (a SQLite study, which does not share)."""
    url = request.getfixturevalue("postgres_url")
    write(workdir / "s.toml", STUDY)
    procs = [_start(workdir, url, data_cache) for _ in range(2)]
    job = str((workdir / "s").resolve())
    claims, victim, deadline = Claims(url, job), None, time.time() + 120
    while victim is None and time.time() < deadline:    # a run some worker holds, an epoch in
        time.sleep(0.1)
        for r in claims.rows():
            rel = r["unit"].split("#")[0]
            if r["status"] == "running" and epochs_logged(workdir / "s" / rel) >= 1:
                victim = r
                break
    if victim is None:
        for p in procs:
            p.kill()
        pytest.fail("no run was seen training: " + " | ".join(p.communicate()[1][-1000:] for p in procs))
    pid = int(victim["worker"].split(":")[1])
    os.kill(pid, signal.SIGKILL)
    killed = next(p for p in procs if p.pid == pid)
    killed.wait(timeout=30)
    survivor = next(p for p in procs if p is not killed)
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err[-3000:]
    assert "baseline" in out                # the summary table

    study = workdir / "s"
    assert (study / "report.html").is_file()
    results = json.loads((study / "results.json").read_text())
    claims = {r["unit"]: r for r in claims.rows()}
    assert all(r["status"] == "done" for r in claims.values())
    retaken = claims[victim["unit"]]
    assert retaken["attempts"] == 2 and retaken["worker"] != victim["worker"]
    # every run of the plan in the store once, completed; the killed one trained again in its row
    rows = [r for r in RunStore(url).runs(kind="train") if r["run_dir"].startswith(str(study.resolve()))]
    dirs = Counter(Path(r["run_dir"]).relative_to(study.resolve()).as_posix() for r in rows)
    assert set(dirs.values()) == {1} and {r["status"] for r in rows} == {"completed"}

    # the same study by one worker alone, on SQLite
    alone = workdir / "alone"
    alone.mkdir()
    write(alone / "s.toml", STUDY)
    run = subprocess.run([sys.executable, "-m", "regulab", "study", "s.toml", "--db", "sqlite:///r.db",
                          "--out", "s", "--quiet"], cwd=alone, env=subprocess_env(data_cache),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    single = json.loads((alone / "s" / "results.json").read_text())
    assert untimed(results) == untimed(single)
    planned = Counter(Path(r["run_dir"]).relative_to((alone / "s").resolve()).as_posix()
                      for r in RunStore(f"sqlite:///{alone / 'r.db'}").runs(kind="train"))
    assert dirs == planned          # none missing, none extra
    # the test split scored once per chosen run, under its claim; the losing candidates never
    l2 = next(v for v in results["variants"] if v["name"] == "l2")
    tested = sorted(u.split(" ", 1)[1] for u in claims if u.startswith("test "))
    assert tested == sorted(r["run_dir"] for r in l2["runs"]) and len(tested) == 2
    assert all(claims[f"test {d}"]["attempts"] == 1 for d in tested)
    for d in dirs:
        has_test = "test_acc" in json.loads((study / d / "results.json").read_text())
        assert has_test == ("@" not in d or d in tested), d


def test_an_interrupted_study_continues_when_run_again(workdir, monkeypatch, capsys):
    """Ctrl-C in a run of a study on SQLite, then the same study again: it continues (the runs
    done reused, the interrupted one's directory removed and trained again in its store row)
    and ends as the uninterrupted study. Two defects: a SQLite study's directory could not be
    used again (--out not empty), and an interrupted unit's claim was deleted, so the next
    taker did not remove the partial run and was refused its directory."""
    from regulab.runs import run
    text = STUDY.replace("epochs = 150", "epochs = 3").replace("seeds = 2", "seeds = 1")
    write(workdir / "s.toml", text)
    assert main(["study", "s.toml", "--out", "ref", "--db", "ref.db", "--quiet"]) == 0
    calls, original = [], run.RunLog.on_epoch_end

    def interrupted(self, trainer, logs):
        original(self, trainer, logs)
        calls.append(1)
        if len(calls) == 5:         # the second run's second epoch
            raise KeyboardInterrupt
    monkeypatch.setattr(run.RunLog, "on_epoch_end", interrupted)
    capsys.readouterr()
    assert main(["study", "s.toml", "--out", "s", "--db", "r.db", "--quiet"]) == 130
    assert "continue with the same 'regulab study' command" in capsys.readouterr().err
    monkeypatch.setattr(run.RunLog, "on_epoch_end", original)
    store = RunStore("r.db")
    assert sorted(r["status"] for r in store.runs()) == ["completed", "failed", "failed"]
    assert main(["study", "s.toml", "--out", "s", "--db", "r.db", "--quiet"]) == 0
    assert untimed(json.loads((workdir / "s" / "results.json").read_text())) == \
        untimed(json.loads((workdir / "ref" / "results.json").read_text()))
    rows = store.runs()
    assert {r["status"] for r in rows} == {"completed"} and len(rows) == len(RunStore("ref.db").runs())
    assert not list((workdir / "s").rglob(".*"))
