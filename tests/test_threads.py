"""``train.threads``: the thread count a run fits with, and the one it leaves behind."""

from __future__ import annotations

import pytest
import torch

import regulab as rl
from regulab.callbacks import Callback
from regulab.engine import threads
from regulab.errors import ConfigError

from .test_population import config


class _Threads(Callback):
    """Records the intra-op thread count at every epoch's end."""

    stackable = True

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, trainer, logs):
        self.seen.append(torch.get_num_threads())


def test_choose_and_step_flops():
    net = torch.nn.Sequential(torch.nn.Linear(40, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    params = 40 * 100 + 100 + 100 * 10 + 10
    assert threads.step_flops(net, 100) == 6 * params * 100
    assert threads.step_flops(net, 100, members=64) == 64 * 6 * params * 100
    assert threads.choose("auto", threads.SMALL_STEP_FLOPS - 1) == 1
    assert threads.choose("auto", threads.SMALL_STEP_FLOPS) == threads.cores()
    assert threads.choose(3, 1.0) == 3
    assert threads.for_fit("auto", net, 100) == 1
    assert threads.for_fit("auto", net, 100, members=10_000) == threads.cores()


def test_using_restores_the_count():
    before = torch.get_num_threads()
    with threads.using(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), threads.using(1):
        raise RuntimeError
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("setting, want", [("auto", 1), (2, 2)])
def test_a_run_fits_with_its_threads_and_restores_them(tmp_path, setting, want):
    before = torch.get_num_threads()
    seen = _Threads()
    rl.train(config(train__threads=setting), out=tmp_path / "run", progress=False, callbacks=[seen])
    assert seen.seen == [want] * 3        # a small MLP: auto gives one thread
    assert torch.get_num_threads() == before


def test_a_population_fits_with_one_count(tmp_path):
    before = torch.get_num_threads()
    seen = [_Threads() for _ in range(2)]
    rl.train_population([config(train__threads=2), config(train__threads=2, train__seed=1)],
                        [tmp_path / "a", tmp_path / "b"], callbacks=[[s] for s in seen])
    assert [s.seen for s in seen] == [[2] * 3] * 2
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("value", [0, -1, 1025, 1.5, "many", True])
def test_bad_thread_counts_are_refused(value):
    with pytest.raises(ConfigError, match="train.threads"):
        config(train__threads=value)


def _other_worker(tmp_path):
    """Another process registered as a worker of this machine (same workers' directory)."""
    import os
    import subprocess
    import sys
    code = ("import sys\nfrom regulab.engine import threads\n"
            "with threads.worker():\n    print('ready', flush=True)\n    sys.stdin.read()\n")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_workers_on_one_machine_split_its_cores(tmp_path, monkeypatch):
    """Two registered workers on 4 cores: "auto" gives a large fit 2 threads each; the other
    killed (its lock released by the kernel), the survivor gets all 4 again and the dead
    worker's file is gone. A process that is not a worker is not counted down."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(threads, "cores", lambda: 4)
    big = threads.SMALL_STEP_FLOPS * 10
    other = _other_worker(tmp_path)
    try:
        assert threads.workers_here() == 1 and threads.choose("auto", big) == 4   # not a worker itself
        with threads.worker():
            with threads.worker():      # nested: registered once
                assert len(list(threads.workers_dir().glob("*.lock"))) == 2
                assert threads.workers_here() == 2
                assert threads.choose("auto", big) == 2 and threads.choose("auto", 1.0) == 1
                assert threads.choose(3, big) == 3      # a number is the user's
                other.kill()
                other.wait()
                assert threads.workers_here() == 1 and threads.choose("auto", big) == 4
                assert len(list(threads.workers_dir().glob("*.lock"))) == 1
        assert list(threads.workers_dir().glob("*.lock")) == []
    finally:
        other.kill()


def test_studies_and_sweeps_register_as_workers(tmp_path, monkeypatch):
    """Every fit of a study or a sweep is made while its worker is registered (one file in the
    workers' directory), and the registration ends with it."""
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    registered = []
    real = threads.for_fit
    monkeypatch.setattr(threads, "for_fit", lambda *a, **k: (
        registered.append(len(list(threads.workers_dir().glob("*.lock")))), real(*a, **k))[1])
    tiny = ["data.dataset=moons", "data.n_samples=200", "model.hidden=[4]", "train.epochs=2",
            "train.early_stopping=false", "train.progress=false"]
    rl.study(rl.load_config(None, tiny), {"dropout": {"model.dropout": 0.2}}, seeds=2,
             out=tmp_path / "study", db=f"sqlite:///{tmp_path}/s.db", progress=False)
    assert registered and set(registered) == {1}
    registered.clear()
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('[sweep]\nname = "w"\ntrials = 2\nseed = 0\n[base]\ndata = { dataset = "moons", '
                     'n_samples = 200 }\nmodel = { hidden = [4] }\ntrain = { epochs = 2, '
                     'early_stopping = false, progress = false }\n[space]\n'
                     '"model.hidden" = { choices = [[4], [6]] }\n')
    rl.sweep(rl.load_sweep(sweep), out=tmp_path / "sweep", db=f"sqlite:///{tmp_path}/w.db", progress=False)
    assert registered and set(registered) == {1}
    assert list(threads.workers_dir().glob("*.lock")) == []
