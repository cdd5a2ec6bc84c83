"""The training loop: train/eval modes, determinism, resume, the NaN guard, metrics, penalties.

Everything runs on tiny tensors; every random thing is drawn from a seeded generator, and
expected numbers are recomputed independently (NumPy, or a second uninterrupted run).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score
from torch import nn

from regulab.callbacks import Callback, EarlyStopping
from regulab.config.core import load_config
from regulab.data.loader import TensorLoader
from regulab.engine.trainer import Trainer, loss_function
from regulab.errors import DivergedError
from regulab.io import load_state, save_state
from regulab.nn import Dropout
from regulab.runs import prepare as prepare_mod
from regulab.runs import run as run_mod
from regulab.runs.store import RunStore


def init_(model: nn.Module, seed: int) -> nn.Module:
    """Overwrite every parameter from a seeded generator (no global RNG)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


class ModeRecorder(nn.Module):
    """A two-layer net with regulab dropout that records, per forward, (module training,
    dropout training, grad enabled, batch size)."""

    def __init__(self, drop_prob: float = 0.5):
        super().__init__()
        self.fc1, self.drop, self.fc2 = nn.Linear(2, 8), Dropout(drop_prob), nn.Linear(8, 2)
        self.calls: list[tuple[bool, bool, bool, int]] = []

    def forward(self, x):
        self.calls.append((self.training, self.drop.training, torch.is_grad_enabled(), len(x)))
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def classification_data(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    return X, (X[:, 0] + 0.3 * X[:, 1] > 0).long()


def tensors_equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def same_floats(a, b) -> bool:
    """Exactly equal, NaN equal to NaN."""
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
               for x, y in zip(a, b)) and len(a) == len(b)


# -- train / eval modes ----------------------------------------------------------------------------

@pytest.mark.parametrize("eval_batch_size, val_forwards", [(1024, 1), (2, 3)])
def test_fit_trains_in_train_mode_and_validates_in_eval_mode(eval_batch_size, val_forwards):
    X, y = classification_data(8)
    Xv, yv = classification_data(5, seed=1)
    model = init_(ModeRecorder(), 0)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      loss_function("cross_entropy"),
                      generators={"noise": torch.Generator().manual_seed(1)},
                      eval_batch_size=eval_batch_size)
    model.eval()       # fit must switch to training mode itself
    trainer.fit(TensorLoader(X, y, 4, generator=torch.Generator().manual_seed(0)), (Xv, yv),
                epochs=2)
    train_call = (True, True, True, 4)      # (module, dropout, grad enabled, batch size)
    val_calls = [(False, False, False, n) for n in ([5] if val_forwards == 1 else [2, 2, 1])]
    epoch = [train_call, train_call] + val_calls
    assert model.calls == epoch * 2


@pytest.mark.parametrize("method", ["evaluate", "predict"])
@pytest.mark.parametrize("mode_before", [True, False])
def test_evaluate_and_predict_run_in_eval_mode_and_restore_the_mode(method, mode_before):
    X, y = classification_data(6)
    model = init_(ModeRecorder(), 0)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      loss_function("cross_entropy"),
                      generators={"noise": torch.Generator().manual_seed(1)}, eval_batch_size=4)
    model.train(mode_before)
    first = trainer.evaluate(X, y) if method == "evaluate" else trainer.predict(X)
    assert model.calls == [(False, False, False, 4), (False, False, False, 2)]
    assert model.training is mode_before and model.drop.training is mode_before
    # eval mode means no dropout: the same answer twice, equal to a plain no-dropout forward
    second = trainer.evaluate(X, y) if method == "evaluate" else trainer.predict(X)
    assert first == second if method == "evaluate" else torch.equal(first, second)
    if method == "predict":
        with torch.no_grad():
            expected = model.fc2(torch.relu(model.fc1(X)))
        assert torch.equal(first, expected)


# -- determinism -----------------------------------------------------------------------------------

def _seeded_trainer(shuffle_seed: int = 1, noise_seed: int = 2, callbacks=()):
    X, y = classification_data(12)
    Xv, yv = classification_data(6, seed=5)
    model = init_(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), Dropout(0.5), nn.Linear(8, 2)), 0)
    g1 = torch.Generator().manual_seed(shuffle_seed)
    g2 = torch.Generator().manual_seed(noise_seed)
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=0.05),
                      loss_function("cross_entropy"), callbacks=list(callbacks),
                      generators={"shuffle": g1, "noise": g2})
    return trainer, TensorLoader(X, y, 4, generator=g1), (Xv, yv)


def test_same_seeds_give_bit_identical_weights():
    a, loader_a, val = _seeded_trainer()
    b, loader_b, _ = _seeded_trainer()
    a.fit(loader_a, val, epochs=3)
    b.fit(loader_b, val, epochs=3)
    assert tensors_equal(a.model.state_dict(), b.model.state_dict())
    assert without_seconds(a.history) == without_seconds(b.history)


@pytest.mark.parametrize("seeds", [(9, 2), (1, 9)], ids=["other-shuffle", "other-noise"])
def test_each_generator_is_used(seeds):
    a, loader_a, val = _seeded_trainer()
    b, loader_b, _ = _seeded_trainer(*seeds)
    a.fit(loader_a, val, epochs=3)
    b.fit(loader_b, val, epochs=3)
    assert not tensors_equal(a.model.state_dict(), b.model.state_dict())


# -- state_dict / load_state_dict ------------------------------------------------------------------

class SaveEachEpoch(Callback):
    """Checkpoint after every epoch, as the run's RunLog does (before on_fit_end runs)."""

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, trainer, logs):
        save_state(self.path, trainer.state_dict())


@pytest.mark.parametrize("patience, min_delta, restore_best, epochs_run", [
    (10, 0.0, True, 5),
    (10, 0.0, False, 5),
    (2, 10.0, True, 3),   # only epoch 1 "improves": stops at 3, so patience must carry over
])
def test_resume_matches_uninterrupted_fit(patience, min_delta, restore_best, epochs_run, tmp_path):
    def build(path):
        stopper = EarlyStopping("val_loss", patience=patience, min_delta=min_delta,
                                restore_best=restore_best)
        return _seeded_trainer(callbacks=[stopper, SaveEachEpoch(path)])

    whole, loader, val = build(tmp_path / "whole.safetensors")
    whole.fit(loader, val, epochs=5)
    assert whole.epoch == epochs_run

    first, loader1, _ = build(tmp_path / "state.safetensors")
    first.fit(loader1, val, epochs=2)
    state = load_state(tmp_path / "state.safetensors")
    assert state["epoch"] == 2 and state["step"] == 6

    second, loader2, _ = build(tmp_path / "state2.safetensors")
    second.load_state_dict(state)
    second.fit(loader2, val, epochs=5)

    assert tensors_equal(second.model.state_dict(), whole.model.state_dict())
    assert (second.epoch, second.step) == (whole.epoch, whole.step)
    assert without_seconds(second.history) == without_seconds(whole.history)
    s_whole, s_second = whole.callbacks[0], second.callbacks[0]
    assert (s_second.best_epoch, s_second.stopped_epoch) == (s_whole.best_epoch, s_whole.stopped_epoch)
    for a, b in zip(whole.optimizer.state.values(), second.optimizer.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_state_dict_after_fit_returns_resumes_like_uninterrupted_run():
    def build():
        trainer, loader, (Xv, yv) = _seeded_trainer(
            callbacks=[EarlyStopping("val_loss", patience=10)])
        return trainer, loader, (Xv, 1 - yv)   # flipped labels: val_loss rises, best epoch is 1

    whole, loader, val = build()
    whole.fit(loader, val, epochs=5)
    first, loader1, _ = build()
    first.fit(loader1, val, epochs=2)
    assert first.callbacks[0].best_epoch == 1
    second, loader2, _ = build()
    second.load_state_dict(first.state_dict())
    second.fit(loader2, val, epochs=5)
    assert without_seconds(second.history) == without_seconds(whole.history)


def test_load_state_dict_refuses_unknown_callback_state():
    trainer, loader, val = _seeded_trainer(callbacks=[EarlyStopping("val_loss", patience=5)])
    trainer.fit(loader, val, epochs=1)
    state = trainer.state_dict()
    bare, _, _ = _seeded_trainer()
    with pytest.raises(ValueError, match="EarlyStopping"):
        bare.load_state_dict(state)


# -- NaN / Inf guard -------------------------------------------------------------------------------

class Poisoned:
    """A loss function whose ``bad_step``-th training call (1-based, grad enabled) returns
    ``value``; evaluation calls (under no_grad) are not counted."""

    def __init__(self, loss_fn, bad_step: int, value: float):
        self.loss_fn, self.bad_step, self.value, self.calls = loss_fn, bad_step, value, 0

    def __call__(self, out, y):
        loss = self.loss_fn(out, y)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.bad_step:
                return loss * self.value if math.isnan(self.value) else loss + self.value
        return loss


class EpochRecorder(Callback):
    def __init__(self):
        self.epochs: list[int] = []
        self.fit_ended = False

    def on_epoch_end(self, trainer, logs):
        self.epochs.append(logs["epoch"])

    def on_fit_end(self, trainer):
        self.fit_ended = True


@pytest.mark.parametrize("value, bad_step, epoch", [
    (float("nan"), 7, 2),          # 4 steps per epoch: step 7 is the 3rd step of epoch 2
    (float("nan"), 1, 1),
    (float("nan"), 4, 1),
    (float("nan"), 5, 2),
    (float("inf"), 7, 2),
    (float("-inf"), 12, 3),
])
def test_non_finite_loss_raises_diverged_error(value, bad_step, epoch):
    X, y = classification_data(8)
    model = init_(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), Dropout(0.2), nn.Linear(4, 2)), 0)
    recorder = EpochRecorder()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      Poisoned(loss_function("cross_entropy"), bad_step, value),
                      callbacks=[recorder], generators={"noise": torch.Generator().manual_seed(1)})
    loader = TensorLoader(X, y, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DivergedError) as info:
        trainer.fit(loader, classification_data(4, seed=3), epochs=5)
    err = info.value
    assert (err.epoch, err.step) == (epoch, bad_step)
    assert math.isnan(err.value) if math.isnan(value) else err.value == value
    assert f"epoch {epoch}, step {bad_step}" in str(err)
    # no callback saw the diverged epoch; the completed ones are in the history
    assert recorder.epochs == list(range(1, epoch))
    assert len(trainer.history) == epoch - 1 and trainer.epoch == epoch - 1
    assert recorder.fit_ended


# -- the run level ---------------------------------------------------------------------------------

def test_run_diverging_keeps_last_good_checkpoint(workdir, monkeypatch):
    cfg = load_config(None, ["name=diverge", "data.dataset=moons", "data.n_samples=400",
                             "model.hidden=[8]", "train.epochs=5", "train.batch_size=50",
                             "train.early_stopping=false", "train.device=cpu",
                             "train.progress=false", "train.checkpoint_every=1"])
    real = prepare_mod.loss_function

    def poisoned_loss_function(name, *args, **kw):
        fn = real(name, *args, **kw)
        evals = [0]

        def loss(out, y):
            if not torch.is_grad_enabled():   # one validation pass per epoch (batch 1024)
                evals[0] += 1
                return fn(out, y)
            return fn(out, y) * float("nan") if evals[0] >= 2 else fn(out, y)
        return loss

    monkeypatch.setattr(prepare_mod, "loss_function", poisoned_loss_function)
    out = workdir / "run"
    with pytest.raises(DivergedError, match="epoch 3") as info:
        run_mod.train(cfg, out=out, progress=False)
    assert info.value.epoch == 3
    state_path = out / "checkpoint" / "state.safetensors"
    assert state_path.is_file()
    state = load_state(state_path)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert not (out / "results.json").exists()
    rows = RunStore().runs()
    assert len(rows) == 1
    assert rows[0]["status"] == "diverged" and rows[0]["epochs"] == 2
    assert (out / "metrics.csv").read_text().count("\n") == 3     # header + 2 epochs


@pytest.mark.parametrize("every, seconds, saved", [
    ("auto", 1e9, [6]),                 # short epochs: the last one only
    ("auto", 0.0, [1, 2, 3, 4, 5, 6]),  # each epoch ends 10 s (here 0 s) after the last save
    (4, 1e9, [4, 6]),                   # every 4th, and the last
])
def test_checkpoint_cadence(workdir, monkeypatch, every, seconds, saved):
    """``train.checkpoint_every``: which epochs' ends write the checkpoint."""
    cfg = load_config(None, ["name=cadence", "data.dataset=moons", "data.n_samples=200",
                             "model.hidden=[4]", "train.epochs=6", "train.early_stopping=false",
                             "train.progress=false", f"train.checkpoint_every={json.dumps(every)}"])
    epochs = []
    real = run_mod.save_state
    monkeypatch.setattr(run_mod, "CHECKPOINT_SECONDS", seconds)
    monkeypatch.setattr(run_mod, "save_state", lambda path, state: (epochs.append(state["epoch"]),
                                                                    real(path, state)))
    run_mod.train(cfg, out=workdir / "run", progress=False)
    assert epochs == saved
    assert load_state(workdir / "run" / "checkpoint" / "state.safetensors")["epoch"] == 6


@pytest.mark.parametrize("seconds, writes", [(0.0, [[1], [2], [3], [4], [5], [6]]),
                                              (1e9, [[1, 2, 3, 4, 5, 6]])])
def test_epoch_rows_reach_the_store_in_batches_and_all_by_the_end(workdir, monkeypatch, seconds, writes):
    """``runs.run.STORE_SECONDS``: the store's epoch rows go in one transaction per interval
    (a tiny network's epochs would each pay a commit), every one of them by the fit's end,
    equal to metrics.csv's."""
    from regulab.runs.store import RunStore
    cfg = load_config(None, ["name=rows", "data.dataset=moons", "data.n_samples=200", "model.hidden=[4]",
                             "train.epochs=6", "train.early_stopping=false", "train.progress=false"])
    batches = []
    real = RunStore.log_epochs
    monkeypatch.setattr(run_mod, "STORE_SECONDS", seconds)
    monkeypatch.setattr(RunStore, "log_epochs", lambda self, rows: (batches.append([e for _, e, _ in rows]),
                                                                     real(self, rows)))
    run = run_mod.train(cfg, out=workdir / "run", db=f"sqlite:///{workdir}/r.db", progress=False)
    assert batches == writes
    store = RunStore(f"sqlite:///{workdir}/r.db")
    history = store.get_run(store.find_run(str(run.run_dir)))["history"]
    csv_rows = (workdir / "run" / "metrics.csv").read_text().splitlines()[1:]
    assert [h["epoch"] for h in history] == list(range(1, 7)) and len(csv_rows) == 6
    assert [h["train_loss"] for h in history] == pytest.approx([r["train_loss"] for r in run.history])


def test_an_interrupted_run_keeps_every_finished_epochs_row(workdir, monkeypatch):
    """Rows not yet flushed are written when the fit ends by an exception (Ctrl-C here)."""
    from regulab.callbacks import Callback
    from regulab.runs.store import RunStore

    class Interrupt(Callback):
        def on_epoch_end(self, trainer, logs):
            if trainer.epoch == 4:
                raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "STORE_SECONDS", 1e9)
    cfg = load_config(None, ["name=rows", "data.dataset=moons", "data.n_samples=200", "model.hidden=[4]",
                             "train.epochs=6", "train.early_stopping=false", "train.progress=false",
                             "train.checkpoint_every=100"])
    with pytest.raises(KeyboardInterrupt):
        run_mod.train(cfg, out=workdir / "run", db=f"sqlite:///{workdir}/r.db", progress=False,
                      callbacks=[Interrupt()])
    store = RunStore(f"sqlite:///{workdir}/r.db")
    run = store.get_run(store.find_run(str(workdir / "run")))
    logged = [int(r.split(",")[0]) for r in (workdir / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert logged == [1, 2, 3]      # epoch 4's end was interrupted before the log's turn
    assert [h["epoch"] for h in run["history"]] == logged and run["status"] == "failed"


# -- regression ------------------------------------------------------------------------------------

def r2_numpy(pred: np.ndarray, y: np.ndarray) -> float:
    """R^2 per output, then their uniform average (sklearn's default, as metrics.r2)."""
    ss_res = ((y - pred) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return float((1.0 - ss_res / ss_tot).mean())


@pytest.mark.parametrize("n_out", [1, 2])
def test_regression_logs_mse_and_r2(n_out):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(10, 3, generator=g)
    y = X @ torch.randn(3, n_out, generator=g) + 0.1 * torch.randn(10, n_out, generator=g)
    Xv = torch.randn(7, 3, generator=g)
    yv = Xv @ torch.randn(3, n_out, generator=g)
    model = init_(nn.Linear(3, n_out), 1)
    with torch.no_grad():
        pred0 = model(X).numpy().astype(np.float64)   # the weights the single step sees
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), loss_function("mse"),
                      task="regression")
    loader = TensorLoader(X, y, 10, shuffle=False)     # one step per epoch
    history = trainer.fit(loader, (Xv, yv), epochs=1)
    logs = history[0]
    assert {"train_loss", "train_mse", "train_r2", "val_loss", "val_mse", "val_r2"} <= set(logs)
    assert "train_acc" not in logs and "val_acc" not in logs
    yn = y.numpy().astype(np.float64)
    assert logs["train_mse"] == pytest.approx(((pred0 - yn) ** 2).mean(), rel=1e-5)
    assert logs["train_loss"] == pytest.approx(((pred0 - yn) ** 2).mean(), rel=1e-5)
    assert logs["train_r2"] == pytest.approx(r2_numpy(pred0, yn), rel=1e-5)

    with torch.no_grad():
        pred = model(Xv).numpy().astype(np.float64)
    yvn = yv.numpy().astype(np.float64)
    ev = trainer.evaluate(Xv, yv, prefix="test")
    assert set(ev) == {"test_loss", "test_mse", "test_r2"}
    assert ev["test_mse"] == pytest.approx(((pred - yvn) ** 2).mean(), rel=1e-5)
    assert ev["test_r2"] == pytest.approx(r2_numpy(pred, yvn), rel=1e-5)
    assert ev["test_r2"] == pytest.approx(r2_score(yvn, pred), rel=1e-5)
    assert logs["val_r2"] == ev["test_r2"] and logs["val_mse"] == ev["test_mse"]


def test_regression_r2_of_perfect_and_mean_predictions():
    X = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    y = 2.0 * X + 1.0
    model = nn.Linear(1, 1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), loss_function("mse"),
                      task="regression")
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.bias.fill_(1.0)
    assert trainer.evaluate(X, y)["val_r2"] == 1.0
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(float(y.mean()))
    assert trainer.evaluate(X, y)["val_r2"] == pytest.approx(0.0, abs=1e-7)
    # SS_tot = 0 (a constant target): 0.0, or 1.0 when predicted exactly (sklearn's force_finite)
    assert trainer.evaluate(X, torch.ones(4, 1))["val_r2"] == 0.0
    with torch.no_grad():
        model.bias.fill_(1.0)
    assert trainer.evaluate(X, torch.ones(4, 1))["val_r2"] == 1.0


# -- penalties -------------------------------------------------------------------------------------

def l2_half(m):
    return 0.5 * m.weight.pow(2).sum()


@pytest.mark.parametrize("batch_size", [6, 3], ids=["one-step", "two-steps"])
def test_penalty_is_logged_separately_and_enters_the_gradient(batch_size):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(6, 3, generator=g)
    y = torch.randn(6, 1, generator=g)
    model = init_(nn.Linear(3, 1), 2)
    W = model.weight.detach().numpy().astype(np.float64).copy()     # (1, 3)
    b = model.bias.detach().numpy().astype(np.float64).copy()       # (1,)
    lr = 0.1
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=lr), loss_function("mse"),
                      task="regression", penalties=[l2_half])
    logs = trainer.fit(TensorLoader(X, y, batch_size, shuffle=False), epochs=1)[0]

    # the same steps by hand: data loss mean((XW^T + b - y)^2), penalty 0.5 * ||W||^2
    Xn, yn = X.numpy().astype(np.float64), y.numpy().astype(np.float64)
    penalties, sq_errors = [], 0.0
    for start in range(0, 6, batch_size):
        xb, yb = Xn[start:start + batch_size], yn[start:start + batch_size]
        r = xb @ W.T + b - yb                                        # (B, 1)
        penalties.append(0.5 * (W ** 2).sum())
        sq_errors += (r ** 2).sum()
        grad_W = 2.0 / len(xb) * r.T @ xb + W                        # data + penalty gradient
        grad_b = 2.0 / len(xb) * r.sum(0)
        W, b = W - lr * grad_W, b - lr * grad_b
    assert logs["penalty"] == pytest.approx(np.mean(penalties), rel=1e-5)
    assert logs["train_loss"] == pytest.approx(sq_errors / 6, rel=1e-5)    # no penalty in it
    np.testing.assert_allclose(model.weight.detach().numpy(), W, rtol=1e-5)
    np.testing.assert_allclose(model.bias.detach().numpy(), b, rtol=1e-5)


def test_no_penalties_log_zero():
    X, y = classification_data(4)
    model = init_(nn.Linear(2, 2), 0)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      loss_function("cross_entropy"))
    logs = trainer.fit(TensorLoader(X, y, 4, shuffle=False), epochs=1)[0]
    assert logs["penalty"] == 0.0
    assert set(logs) == {"epoch", "train_loss", "train_acc", "penalty", "lr", "seconds"}
