"""Batch sizes against the data (issue 16): a ``train.batch_size`` larger than the training
split takes it whole as one batch -- said on the "regulab" logger and in results.json
(``batch_size_used``), the same numbers as a batch size of exactly the split -- for a run, a
population and a study alike; with batch norm, a batch size whose batches would leave it a
single row (on any of ``train.nproc`` processes) is refused before anything is written."""

from __future__ import annotations

import logging

import pytest

import regulab as rl
from regulab.cli import main
from regulab.data.loader import TensorLoader, check_batch_norm_rows, lone_row_batch
from regulab.errors import ConfigError
from regulab.runs.population import train_population

from .conftest import assert_refused, metrics_rows, untimed_results, write

# moons, 400 rows split 0.8/0.15/0.05: 320 training rows
CONFIG = """
name = "big"
[data]
dataset = "moons"
n_samples = 400
[model]
hidden = [8]
[train]
epochs = 3
batch_size = {batch}
early_stopping = false
"""
N_TRAIN = 320


def _lone_rows_by_brute_force(n: int, b: int, world: int) -> int | None:
    """Every batch of an epoch, every process's rows of it, by walking them."""
    sizes = []
    for start in range(0, n, b):
        batch = min(b, n - start)
        for r in range(world):
            if (r + 1) * batch // world - r * batch // world == 1:
                sizes.append(batch)
    return min(sizes) if sizes else None


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 33, 100, 101])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_lone_row_batch_agrees_with_walking_every_batch(n, world):
    for b in range(1, n + 3):
        assert lone_row_batch(n, b, world) == _lone_rows_by_brute_force(n, b, world), (n, b, world)


def test_the_loader_takes_a_small_split_whole():
    import torch
    loader = TensorLoader(torch.randn(5, 2), torch.arange(5), batch_size=8, generator=torch.Generator())
    assert loader.rows_per_batch == 5 and len(loader) == 1
    assert [len(y) for _, y in loader] == [5]


@pytest.mark.parametrize("n, b, world, near", [(401, 100, 1, 99), (320, 319, 1, 318), (320, 317, 2, 316)])
def test_batch_norm_rows_refused_naming_a_batch_size_that_works(n, b, world, near):
    with pytest.raises(ConfigError) as e:
        check_batch_norm_rows(n, b, world)
    assert f"got {b}" in str(e.value) and f"(try {near})" in str(e.value)
    check_batch_norm_rows(n, near, world)


def test_a_batch_larger_than_the_data_is_one_batch_warned_and_recorded(workdir, capsys):
    write(workdir / "big.toml", CONFIG.format(batch=1000))
    write(workdir / "exact.toml", CONFIG.format(batch=N_TRAIN))
    assert main(["train", "big.toml", "--out", "big", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WARNING" in err, err
    assert "train.batch_size 1000 is more than the 320 training rows" in err
    assert main(["train", "exact.toml", "--out", "exact", "--quiet"]) == 0
    assert capsys.readouterr().err == ""

    big, exact = untimed_results(workdir / "big"), untimed_results(workdir / "exact")
    assert big.pop("batch_size_used") == N_TRAIN and "batch_size_used" not in exact
    assert big == exact      # the same single batch, in the same order
    assert metrics_rows(workdir / "big") == metrics_rows(workdir / "exact")


def test_a_population_and_a_study_warn_and_record_it_per_run(workdir, caplog):
    cfg = rl.load_config(write(workdir / "big.toml", CONFIG.format(batch=1000)))
    cfgs = [rl.load_config(workdir / "big.toml", {"train.seed": s}) for s in (0, 1)]
    with caplog.at_level(logging.WARNING, logger="regulab"):
        runs = train_population(cfgs, [workdir / f"m{s}" for s in (0, 1)], progress=False)
    assert [r.results["batch_size_used"] for r in runs] == [N_TRAIN, N_TRAIN]
    assert sum("is more than the 320 training rows" in r.message for r in caplog.records) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="regulab"):
        res = rl.study(cfg, variants={"l2": {"regularization.l2": 1e-3}}, seeds=1, out="study", progress=False)
    assert sum("is more than the 320 training rows" in r.message for r in caplog.records) == 2
    for variant in res.results["variants"]:
        for run in variant["runs"]:
            assert run["results"]["batch_size_used"] == N_TRAIN


@pytest.mark.parametrize("batch, nproc, words", [
    (319, 1, ["train.batch_size", "got 319", "a batch of 1 row(s)", "(try 318)"]),
    (317, 2, ["train.batch_size", "got 317", "a batch of 3 row(s) over 2 processes", "(try 316)"]),
])
def test_a_batch_that_leaves_batch_norm_one_row_is_refused(workdir, capsys, batch, nproc, words):
    text = CONFIG.format(batch=batch).replace("hidden = [8]", "hidden = [8]\nbatchnorm = true")
    write(workdir / "bn.toml", text + f"nproc = {nproc}\n")
    assert_refused(capsys, main(["train", "bn.toml", "--out", "out", "--quiet"]), words, workdir)
    assert not (workdir / "runs").exists()

