"""EMA of the weights: the notes' recurrence recomputed in NumPy, bias correction, swapping
weights in and out, and the callback inside a real Trainer (history, resume)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from regulab.data.loader import TensorLoader
from regulab.engine.trainer import Trainer, loss_function
from regulab.errors import ConfigError
from regulab.io import load_state, save_state
from regulab.regularize.ema import EMA, EMACallback


def small_net() -> nn.Module:
    """Linear -> BatchNorm (buffers) -> Linear, float64, seeded."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    return net


def param_names(model: nn.Module) -> list[str]:
    return [k for k, _ in model.named_parameters()]


def numpy_params(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: p.detach().numpy().copy() for k, p in model.named_parameters()}


# -- the recurrence --------------------------------------------------------------------------------

@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_shadow_matches_numpy_recurrence(decay, bias_correction):
    model = small_net()
    ema = EMA(model, decay, bias_correction=bias_correction)
    rng = np.random.default_rng(1)
    v = {k: np.zeros_like(a) for k, a in numpy_params(model).items()}   # v_0 = 0
    for t in range(1, 11):
        with torch.no_grad():                    # an arbitrary "optimizer step"
            for p in model.parameters():
                p.copy_(torch.from_numpy(rng.normal(size=tuple(p.shape))))
            x = torch.from_numpy(rng.normal(size=(6, 3)))
            model.train()(x)                     # moves batch norm's running stats
        ema.update()
        theta = numpy_params(model)
        for k in v:
            v[k] = decay * v[k] + (1 - decay) * theta[k]
        avg = ema.averaged()
        assert ema.t == t
        for k in v:
            np.testing.assert_allclose(ema.shadow[k].numpy(), v[k], rtol=1e-12, atol=1e-14)
            expected = v[k] / (1 - decay ** t) if bias_correction else v[k]
            np.testing.assert_allclose(avg[k].numpy(), expected, rtol=1e-12, atol=1e-14)
        # buffers are copied as they are, not averaged
        for k, b in model.named_buffers():
            assert torch.equal(avg[k], b)
    assert list(avg) == list(model.state_dict())


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.99])
def test_constant_parameter_is_its_own_corrected_average(decay):
    model = nn.Linear(2, 1).double()
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.bias.fill_(-2.0)
    corrected, raw = EMA(model, decay), EMA(model, decay, bias_correction=False)
    for t in range(1, 21):
        corrected.update()
        raw.update()
        c, r = corrected.averaged(), raw.averaged()
        np.testing.assert_allclose(c["weight"].numpy(), 3.0, rtol=1e-12)
        np.testing.assert_allclose(c["bias"].numpy(), -2.0, rtol=1e-12)
        # uncorrected: pulled toward 0 by exactly the factor 1 - decay**t
        np.testing.assert_allclose(r["weight"].numpy(), 3.0 * (1 - decay ** t), rtol=1e-12)
        assert (r["weight"] != 3.0).all()      # short of the constant by 3 * decay**t


def test_first_corrected_average_is_the_weights_and_zero_decay_tracks_them():
    model = small_net()
    ema = EMA(model, 0.9)
    ema.update()                       # the notes' e^[1] = v^[1]
    for k, p in model.named_parameters():
        torch.testing.assert_close(ema.averaged()[k], p.detach(), rtol=1e-15, atol=0)
    latest = EMA(model, 0.0)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    latest.update()
    assert torch.equal(latest.averaged()["0.weight"], model[0].weight.detach())


def test_before_any_update_averaged_is_the_live_weights():
    model = small_net()
    ema = EMA(model, 0.9)
    assert all(torch.equal(a, b) for a, b in zip(ema.averaged().values(), model.state_dict().values()))


# -- swap ------------------------------------------------------------------------------------------

def test_swap_loads_average_and_restores_live_weights_even_on_exception():
    model = small_net()
    ema = EMA(model, 0.5)
    ema.update()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)          # live weights now differ from the average
    ema.update()
    live = {k: v.clone() for k, v in model.state_dict().items()}
    params_before = [id(p) for p in model.parameters()]
    avg = ema.averaged()
    assert not torch.equal(avg["0.weight"], live["0.weight"])

    with ema.swap():
        assert all(torch.equal(model.state_dict()[k], avg[k]) for k in avg)
    assert all(torch.equal(model.state_dict()[k], live[k]) for k in live)

    with pytest.raises(RuntimeError, match="boom"):
        with ema.swap():
            assert torch.equal(model[0].weight.detach(), avg["0.weight"])
            raise RuntimeError("boom")
    assert all(torch.equal(model.state_dict()[k], live[k]) for k in live)
    # the same Parameter objects: an optimizer holding them keeps working
    assert [id(p) for p in model.parameters()] == params_before


# -- state -----------------------------------------------------------------------------------------

def test_state_dict_round_trip_continues_identically(tmp_path):
    model_a, model_b = small_net(), small_net()
    a, b = EMA(model_a, 0.8), EMA(model_b, 0.8)
    rng = np.random.default_rng(3)
    steps = [rng.normal(size=(6, 3)) for _ in range(8)]

    def step(model, ema, x):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
            model.train()(torch.from_numpy(x))
        ema.update()

    for x in steps[:4]:
        step(model_a, a, x)
        step(model_b, b, x)
    save_state(tmp_path / "ema.safetensors", {"ema": a.state_dict()})
    resumed = EMA(model_b, 0.8)
    resumed.load_state_dict(load_state(tmp_path / "ema.safetensors")["ema"])
    assert resumed.t == 4
    for x in steps[4:]:
        step(model_a, a, x)
        step(model_b, resumed, x)
    assert resumed.t == a.t == 8
    assert all(torch.equal(resumed.averaged()[k], a.averaged()[k]) for k in a.shadow)


def test_load_state_dict_refuses_another_model():
    ema = EMA(small_net(), 0.9)
    with pytest.raises(ValueError, match="EMA state"):
        EMA(nn.Linear(3, 2), 0.9).load_state_dict(ema.state_dict())


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5, float("nan"), "0.9", None, True])
def test_bad_decay_is_rejected(decay):
    with pytest.raises(ConfigError, match=r"'regularization\.ema' must be a number >= 0.0 and < 1.0; got"):
        EMA(nn.Linear(2, 1), decay)
    with pytest.raises(ConfigError, match=r"regularization\.ema"):
        EMACallback(decay)


# -- inside the Trainer ----------------------------------------------------------------------------

def trainer_with_ema(decay: float = 0.9, lazy: bool = True):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(24, 3, generator=g)
    y = (X[:, 0] - X[:, 2] > 0).long()
    Xv = torch.randn(10, 3, generator=g)
    yv = (Xv[:, 0] - Xv[:, 2] > 0).long()
    model = small_net().float()
    callback = EMACallback(decay) if lazy else EMACallback(EMA(model, decay))
    shuffle = torch.Generator().manual_seed(1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9),
                      loss_function("cross_entropy"), callbacks=[callback],
                      generators={"shuffle": shuffle})
    return trainer, callback, TensorLoader(X, y, 8, generator=shuffle), (Xv, yv)


@pytest.mark.parametrize("lazy", [True, False])
def test_validation_metrics_use_averaged_weights(lazy):
    trainer, callback, loader, val = trainer_with_ema(lazy=lazy)
    history = trainer.fit(loader, val, epochs=3)
    ema = callback.ema
    assert ema.t == trainer.step == 9
    last = {k: v for k, v in history[-1].items() if k.startswith("val_")}
    plain = Trainer(trainer.model, trainer.optimizer, trainer.loss_fn)    # no callbacks
    # after fit the model holds the average (Keras' finalize): the model validation measured
    assert plain.evaluate(*val) == last
    assert trainer.evaluate(*val) == last          # and the trainer does not average it twice
    assert torch.equal(ema.averaged()["0.weight"], trainer.model[0].weight.detach())
    trainer.model.load_state_dict(callback.trained_weights)
    live = plain.evaluate(*val)
    assert live["val_loss"] != last["val_loss"]
    trainer.model.load_state_dict(ema.averaged())


def test_fitting_again_continues_from_the_live_weights():
    once, _, loader, val = trainer_with_ema(lazy=True)
    once.fit(loader, val, epochs=4)
    twice, callback, loader2, val2 = trainer_with_ema(lazy=True)
    twice.fit(loader2, val2, epochs=2)
    twice.fit(loader2, val2, epochs=4)
    assert all(torch.equal(a, b) for a, b in zip(once.model.state_dict().values(),
                                                  twice.model.state_dict().values()))
    assert [h["val_loss"] for h in once.history] == [h["val_loss"] for h in twice.history]


def test_evaluate_before_fit_uses_live_weights():
    trainer, _, _, val = trainer_with_ema()
    plain = Trainer(trainer.model, trainer.optimizer, trainer.loss_fn)
    assert trainer.evaluate(*val) == plain.evaluate(*val)


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_trainer_resume_with_ema_matches_uninterrupted_fit(tmp_path):
    whole, cb_whole, loader, val = trainer_with_ema()
    whole.fit(loader, val, epochs=4)

    first, _, loader1, _ = trainer_with_ema()
    first.fit(loader1, val, epochs=2)
    save_state(tmp_path / "state.safetensors", first.state_dict())
    assert "EMACallback" in first.state_dict()["callbacks"]

    second, cb_second, loader2, _ = trainer_with_ema()
    second.load_state_dict(load_state(tmp_path / "state.safetensors"))   # before the lazy EMA exists
    assert cb_second.ema is None and cb_second.state_dict()["t"] == 6
    second.fit(loader2, val, epochs=4)

    assert cb_second.ema.t == cb_whole.ema.t == 12
    for k in cb_whole.ema.shadow:
        assert torch.equal(cb_second.ema.shadow[k], cb_whole.ema.shadow[k])
    assert all(torch.equal(a, b) for a, b in zip(second.model.state_dict().values(),
                                                 whole.model.state_dict().values()))
    assert without_seconds(second.history) == without_seconds(whole.history)
    assert not math.isnan(second.history[-1]["val_loss"])
