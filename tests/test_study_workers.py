"""A study's workers on one machine (``[study] workers``, ``--workers``; regulab.studies.workers):
each unit trained once by one of them, the numbers one process computes, their share of the
cores, and what happens when a helper cannot start or the study cannot be sent to one."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from regulab.cli import main
from regulab.engine import threads
from regulab.runs.claims import Claims
from regulab.runs.store import RunStore
from regulab.studies import workers
from regulab.studies.spec import AUTO_WORKERS, MAX_WORKERS

from .conftest import write

STUDY = """
[study]
name = "local"
seeds = 2
workers = 2
[base]
data = { dataset = "moons", n_samples = 300 }
model = { hidden = [16] }
optim = { lr = 0.01 }
train = { epochs = 4, batch_size = 32, early_stopping = false, progress = false }
[variants.baseline]
[variants.l2]
tune = { "regularization.l2" = [1e-4, 1e-2] }
[variants.drop]
model.dropout = 0.2
[variants.bn]
model.batchnorm = true
"""


def test_count_and_chunk():
    assert workers.count("auto", "cpu") == min(threads.cores(), AUTO_WORKERS)
    assert workers.count("auto", "cuda") == 1          # one device
    assert workers.count(3, "cpu") == 3 and workers.count(3, "cuda") == 3
    assert workers.chunk(64, 1, 64) == 64 and workers.chunk(65, 1, 64) == 64
    assert workers.chunk(64, 2, 64) == 32 and workers.chunk(27, 2, 64) == 14
    assert workers.chunk(100, 2, 16) == 16            # never above [study] population
    assert workers.chunk(1, 4, 64) == 1 and workers.chunk(3, 4, 64) == 1


def _scores(results: dict) -> dict:
    return {v["name"]: [(r["run_dir"], r["results"]["val_acc"], r["results"]["test_acc"])
                        for r in v["runs"]] for v in results["variants"]}


def test_two_workers_train_each_unit_once_with_the_numbers_of_one(workdir):
    write(workdir / "s.toml", STUDY)
    db = f"sqlite:///{workdir / 'r.db'}"
    assert main(["study", "s.toml", "--out", "two", "--db", db, "--quiet"]) == 0
    two = json.loads((workdir / "two" / "results.json").read_text())
    assert (workdir / "two" / "report.html").is_file()
    claims = Claims(db, str((workdir / "two").resolve())).rows()
    by = Counter(r["worker"] for r in claims)
    assert len(by) == 2, by                            # the helper did its share
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in claims)
    # a population's members split between them: chunks of at most half
    sizes = [int(r["what"].split()[2]) for r in claims if r["what"].startswith("population of")]
    assert sizes and max(sizes) <= 5, sizes           # 10 members per group of 5 variants x 2 seeds
    study = (workdir / "two").resolve()
    rows = [r for r in RunStore(db).runs(kind="train") if r["run_dir"].startswith(str(study))]
    dirs = Counter(Path(r["run_dir"]).relative_to(study).as_posix() for r in rows)
    assert set(dirs.values()) == {1} and {r["status"] for r in rows} == {"completed"}
    assert [r["status"] for r in RunStore(db).runs(kind="study")] == ["completed"]

    assert main(["study", "s.toml", "--out", "one", "--db", db, "--quiet", "--workers", "1"]) == 0
    one = json.loads((workdir / "one" / "results.json").read_text())
    a, b = _scores(two), _scores(one)
    assert a.keys() == b.keys()
    for name in a:      # each member equals its run alone to float rounding, in any population
        for (d1, v1, t1), (d2, v2, t2) in zip(a[name], b[name]):
            assert d1 == d2 and v1 == pytest.approx(v2, abs=0.02) and t1 == pytest.approx(t2, abs=0.02)
    assert [v["name"] for v in two["variants"]] == [v["name"] for v in one["variants"]]


def test_bad_workers_are_refused(workdir, capsys):
    write(workdir / "s.toml", STUDY)
    for value in ("0", "many", str(MAX_WORKERS + 1)):
        code = main(["study", "s.toml", "--out", "out", "--workers", value, "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "study.workers" in err and repr(value)[1:-1] in err
    write(workdir / "bad.toml", STUDY.replace("workers = 2", "workers = 2.5"))
    code = main(["study", "bad.toml", "--out", "out", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "study.workers" in err and "2.5" in err
    assert not (workdir / "out").exists() and not (workdir / "runs").exists()


def test_a_helper_that_does_not_start_leaves_the_study_to_the_others(workdir, monkeypatch, caplog):
    write(workdir / "s.toml", STUDY)
    monkeypatch.setattr(workers, "READY_SECONDS", 0.0)     # never ready in time
    with caplog.at_level(logging.WARNING, logger="regulab"):
        assert main(["study", "s.toml", "--out", "out", "--quiet"]) == 0
    assert "a study worker did not start" in caplog.text
    db = f"sqlite:///{workdir / 'runs' / 'regulab.db'}"
    claims = Claims(db, str((workdir / "out").resolve())).rows()
    assert len({r["worker"] for r in claims}) == 1 and all(r["status"] == "done" for r in claims)


def test_a_study_that_cannot_be_sent_runs_in_one_process(workdir, caplog):
    import torch

    from regulab.config.core import config_from_dict
    cfg = config_from_dict({"data": {"dataset": "moons", "n_samples": 200},
                               "train": {"epochs": 2, "progress": False}})

    def small(classes=2):        # a local function: pickle cannot send it to another process
        return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, classes))
    from regulab.studies.spec import study_from_dict
    from regulab.studies.study import run_study
    raw = {"study": {"name": "own", "seeds": 2, "workers": 2}, "base": cfg.with_code(small, None).to_dict(),
           "variants": {"baseline": {}, "l2": {"regularization.l2": 1e-3}}}
    with caplog.at_level(logging.INFO, logger="regulab"):
        result = run_study(study_from_dict(raw), out=workdir / "own", progress=False)
    assert "runs in one process" in caplog.text
    assert {v["name"] for v in result.results["variants"]} == {"baseline", "l2"}
