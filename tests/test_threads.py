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
