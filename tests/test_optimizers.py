"""The optimizers of ``[optim]`` against the notes' update rules, recomputed in NumPy.

Every optimizer is built by ``build_optimizer`` and run for 5 steps, in float64, on a fixed
quadratic ``f(w) = 1/2 (w - c)^T A (w - c)`` (A symmetric positive definite), whose gradient
``g(w) = A (w - c)`` depends on where it is taken -- so Nesterov's look-ahead matters.

The notes (file 001, "Optimizadores") and torch write some rules differently:

* momentum -- notes: ``v <- mu v - lr g(w);  w <- w + v``.
  torch:   ``b <- mu b + g(w);  w <- w - lr b``.
  With a constant lr, ``b = -v / lr`` at every step (induction: if b = -v/lr then
  mu b + g = -(mu v - lr g)/lr = -v'/lr, and w - lr b' = w + v'), so the weights are equal.
* Nesterov -- notes (look-ahead form): ``v <- mu v - lr g(theta + mu v);  theta <- theta + v``.
  torch (Sutskever et al., 2013, rewritten): ``b <- mu b + g(w);  w <- w - lr (g(w) + mu b)``.
  torch's w is the notes' look-ahead point ``phi = theta + mu v``: with b = -v/lr,
  phi' = theta' + mu v' = (phi - mu v) + v' + mu v' = phi - lr g(phi) + mu v'
       = phi - lr (g(phi) + mu b'),  b' = -v'/lr = mu b + g(phi).
  Both start at w0 (v = 0) and meet where v -> 0.
* RMSprop / Adam -- the notes divide by ``sqrt(s + eps)``, torch by ``sqrt(s) + eps``; the two
  agree to ~eps / sqrt(s) (relative) and differ visibly only when s is not >> eps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regulab.config.sections import OptimConfig
from regulab.engine.optimizers import Steps, build_optimizer

STEPS = 5
RNG = np.random.default_rng(0)
_M = RNG.normal(size=(6, 6))
A = _M @ _M.T / 6 + 0.5 * np.eye(6)          # symmetric positive definite
C = RNG.normal(size=6)
W0 = RNG.normal(size=6) * 2.0
TOL = 1e-9                                   # float64 on both sides


def grad(w: np.ndarray) -> np.ndarray:
    return A @ (w - C)


def run_torch(cfg: OptimConfig, record_state: str | None = None, steps: bool = False):
    """The weights after each of STEPS steps (and the optimizer state ``record_state``);
    ``steps``: stepped as the training loop steps it (``Steps``), else by ``opt.step()``."""
    w = torch.nn.Parameter(torch.tensor(W0))
    a, c = torch.tensor(A), torch.tensor(C)
    opt = build_optimizer(cfg, [w], decay=[w])     # w is 1-D: decayed only when named
    step = Steps(opt).step if steps else opt.step
    ws, states = [], []
    for _ in range(STEPS):
        loss = 0.5 * (w - c) @ a @ (w - c)
        opt.zero_grad()
        loss.backward()
        np.testing.assert_allclose(w.grad.numpy(), grad(w.detach().numpy()), rtol=0, atol=1e-12)
        step()
        ws.append(w.detach().numpy().copy())
        if record_state:
            states.append(opt.state[w][record_state].numpy().copy())
    return (ws, states) if record_state else ws


def assert_trajectories(got, expected, tol=TOL):
    assert len(got) == len(expected) == STEPS
    for t, (a, b) in enumerate(zip(got, expected), start=1):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol, err_msg=f"step {t}")


# --- references: the notes' formulas -------------------------------------------------------------

def ref_sgd(lr, wd=0.0):
    w, out = W0.copy(), []
    for _ in range(STEPS):
        w = w - lr * (grad(w) + wd * w)
        out.append(w)
    return out


def ref_momentum_notes(lr, mu):
    """v <- mu v - lr g;  w <- w + v.  Returns the weights and the velocities."""
    w, v, ws, vs = W0.copy(), np.zeros(6), [], []
    for _ in range(STEPS):
        v = mu * v - lr * grad(w)
        w = w + v
        ws.append(w)
        vs.append(v)
    return ws, vs


def ref_nesterov_torch_form(lr, mu):
    w, b, out = W0.copy(), np.zeros(6), []
    for _ in range(STEPS):
        g = grad(w)
        b = mu * b + g
        w = w - lr * (g + mu * b)
        out.append(w)
    return out


def ref_nesterov_notes(lr, mu):
    """v <- mu v - lr g(theta + mu v);  theta <- theta + v.  Returns theta and v per step."""
    theta, v, thetas, vs = W0.copy(), np.zeros(6), [], []
    for _ in range(STEPS):
        v = mu * v - lr * grad(theta + mu * v)
        theta = theta + v
        thetas.append(theta)
        vs.append(v)
    return thetas, vs


def ref_rmsprop(lr, alpha, eps, eps_inside=False):
    w, s, out = W0.copy(), np.zeros(6), []
    for _ in range(STEPS):
        g = grad(w)
        s = alpha * s + (1 - alpha) * g ** 2
        w = w - lr * g / (np.sqrt(s + eps) if eps_inside else np.sqrt(s) + eps)
        out.append(w)
    return out


def ref_adam(lr, b1, b2, eps, wd=0.0, decoupled=False, eps_inside=False):
    """Adam with bias correction; ``wd`` as an L2 gradient term, or decoupled (AdamW)."""
    w, m, v, out = W0.copy(), np.zeros(6), np.zeros(6), []
    for t in range(1, STEPS + 1):
        g = grad(w) + (0.0 if decoupled else wd * w)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        denom = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
        w = w - (lr * wd * w if decoupled else 0.0) - lr * m_hat / denom
        out.append(w)
    return out


# --- tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_sgd(wd):
    assert_trajectories(run_torch(OptimConfig(name="sgd", lr=0.1, weight_decay=wd)), ref_sgd(0.1, wd))


def test_momentum_is_the_notes_velocity_form():
    lr, mu = 0.1, 0.9
    ws, bufs = run_torch(OptimConfig(name="momentum", lr=lr, momentum=mu), "momentum_buffer")
    ref_ws, ref_vs = ref_momentum_notes(lr, mu)
    assert_trajectories(ws, ref_ws)
    assert_trajectories(bufs, [-v / lr for v in ref_vs])      # torch's buffer b = -v / lr


def test_momentum_zero_is_plain_sgd():
    assert_trajectories(run_torch(OptimConfig(name="momentum", lr=0.1, momentum=0.0)), ref_sgd(0.1))


def test_nesterov_torch_form():
    lr, mu = 0.1, 0.9
    assert_trajectories(run_torch(OptimConfig(name="nesterov", lr=lr, momentum=mu)),
                        ref_nesterov_torch_form(lr, mu))


def test_nesterov_is_the_notes_look_ahead_point():
    lr, mu = 0.1, 0.9
    ws, bufs = run_torch(OptimConfig(name="nesterov", lr=lr, momentum=mu), "momentum_buffer")
    thetas, vs = ref_nesterov_notes(lr, mu)
    assert_trajectories(ws, [theta + mu * v for theta, v in zip(thetas, vs)])
    assert_trajectories(bufs, [-v / lr for v in vs])
    # and it is not plain momentum
    assert np.abs(ws[-1] - ref_momentum_notes(lr, mu)[0][-1]).max() > 1e-3


def test_rmsprop():
    lr, alpha, eps = 0.01, 0.9, 1e-8
    assert_trajectories(run_torch(OptimConfig(name="rmsprop", lr=lr, alpha=alpha, eps=eps)),
                        ref_rmsprop(lr, alpha, eps))


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_with_bias_correction(wd):
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    got = run_torch(OptimConfig(name="adam", lr=lr, betas=[b1, b2], eps=eps, weight_decay=wd))
    # torch's Adam weight_decay is g + wd * w: the gradient of an L2 penalty wd/2 * sum w^2
    assert_trajectories(got, ref_adam(lr, b1, b2, eps, wd=wd))


@pytest.mark.parametrize("name, wd", [("adam", 0.0), ("adam", 0.1), ("adamw", 0.1)])
def test_the_loops_adam_step_follows_the_notes(name, wd):
    """``Steps`` (torch's functional fused Adam on the optimizer's state) against the NumPy
    reference, as ``opt.step()`` is above."""
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    got = run_torch(OptimConfig(name=name, lr=lr, betas=[b1, b2], eps=eps, weight_decay=wd), steps=True)
    assert_trajectories(got, ref_adam(lr, b1, b2, eps, wd=wd, decoupled=name == "adamw"))


def test_first_adam_step_is_lr_times_sign_of_gradient():
    # t = 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps) ~ lr * sign(g)
    got = run_torch(OptimConfig(name="adam", lr=0.05, betas=[0.9, 0.999], eps=1e-8))[0]
    np.testing.assert_allclose(W0 - got, 0.05 * np.sign(grad(W0)), rtol=1e-6)


def test_adamw_is_decoupled_weight_decay():
    lr, b1, b2, eps, wd = 0.05, 0.9, 0.999, 1e-8, 0.1
    got = run_torch(OptimConfig(name="adamw", lr=lr, betas=[b1, b2], eps=eps, weight_decay=wd))
    assert_trajectories(got, ref_adam(lr, b1, b2, eps, wd=wd, decoupled=True))
    # not the same as Adam with the decay as a gradient term
    assert np.abs(got[-1] - ref_adam(lr, b1, b2, eps, wd=wd)[-1]).max() > 1e-4


def test_adamw_without_decay_is_adam():
    cfg = dict(lr=0.05, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0)
    assert_trajectories(run_torch(OptimConfig(name="adamw", **cfg)), run_torch(OptimConfig(name="adam", **cfg)))


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_eps_inside_the_root_as_in_the_notes(name):
    """The notes' sqrt(s + eps) matches torch's sqrt(s) + eps for a small eps, not a large one."""
    def ref(eps, inside):
        if name == "rmsprop":
            return ref_rmsprop(0.01, 0.9, eps, eps_inside=inside)
        return ref_adam(0.05, 0.9, 0.999, eps, eps_inside=inside)

    def cfg(eps):
        return OptimConfig(name=name, lr=0.01 if name == "rmsprop" else 0.05, alpha=0.9,
                           betas=[0.9, 0.999], eps=eps)

    assert_trajectories(run_torch(cfg(1e-8)), ref(1e-8, inside=True), tol=1e-6)
    big = run_torch(cfg(0.5))
    assert_trajectories(big, ref(0.5, inside=False))
    assert np.abs(big[-1] - ref(0.5, inside=True)[-1]).max() > 1e-4


# --- which parameters decay ----------------------------------------------------------------------

def mlp_params():
    from regulab.nn import MLP
    model = MLP(4, [3], 2)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    return model, weights, biases


def test_decay_goes_to_the_weights_and_a_no_decay_group_holds_the_biases():
    model, weights, biases = mlp_params()
    opt = build_optimizer(OptimConfig(name="adamw", lr=0.01, weight_decay=0.1), model.parameters())
    (decayed, kept) = opt.param_groups
    assert [id(p) for p in decayed["params"]] == [id(p) for p in weights] and decayed["weight_decay"] == 0.1
    assert [id(p) for p in kept["params"]] == [id(p) for p in biases] and kept["weight_decay"] == 0.0
    assert kept["name"] == "no_decay" and decayed["lr"] == kept["lr"] == 0.01
    # named parameters decay, whatever their shape; without decay the groups stay as given
    opt = build_optimizer(OptimConfig(name="sgd", weight_decay=0.1), model.parameters(), decay=biases)
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in biases]
    assert len(build_optimizer(OptimConfig(name="sgd"), model.parameters()).param_groups) == 1


def test_decay_groups_keep_each_groups_own_learning_rate():
    from regulab.engine.optimizers import decay_groups
    model, weights, biases = mlp_params()
    groups = [{"params": [weights[0], biases[0]], "lr": 1e-4, "name": "transferred"},
              {"params": [weights[1], biases[1]], "lr": 1e-2, "name": "new"}]
    split = decay_groups(groups, weights, 0.5)
    assert [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in split] == [
        ("transferred", 1e-4, 0.5, 1), ("transferred_no_decay", 1e-4, 0.0, 1),
        ("new", 1e-2, 0.5, 1), ("new_no_decay", 1e-2, 0.0, 1)]


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_no_optimizer_decays_a_bias(name):
    """With zero gradients only the decay moves anything: the weights shrink, biases stay."""
    model, weights, biases = mlp_params()
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(OptimConfig(name=name, lr=0.1, weight_decay=0.5), model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for (n, p), old in zip(model.named_parameters(), before):
        moved = not torch.equal(p.detach(), old)
        assert moved == n.endswith("weight"), n


def test_a_run_with_weight_decay_resumes_exactly(workdir):
    """The checkpoint holds both parameter groups; ``resume`` continues bit for bit."""
    from safetensors.torch import load_file

    import regulab as rl
    from regulab.callbacks import Callback
    from regulab.config.core import load_config

    class Kill(Callback):
        def on_epoch_end(self, trainer, logs):
            if trainer.epoch == 2:
                raise KeyboardInterrupt

    cfg = load_config(None, {"data.dataset": "moons", "data.n_samples": 300, "model.hidden": [8],
                             "model.dropout": 0.2, "optim.name": "adamw", "optim.weight_decay": 0.05,
                             "train.epochs": 4, "train.batch_size": 32, "train.early_stopping": False,
                             "train.progress": False, "train.device": "cpu"})
    with pytest.raises(KeyboardInterrupt):
        rl.train(cfg, out=workdir / "killed", progress=False, callbacks=[Kill()])
    resumed = rl.resume(workdir / "killed", progress=False)
    whole = rl.train(cfg, out=workdir / "whole", progress=False)
    assert resumed.results["epochs_run"] == 4
    a, b = (load_file(str(r.run_dir / "model.safetensors")) for r in (resumed, whole))
    assert all(torch.equal(a[k], b[k]) for k in b)


# --- the training loop's steps ------------------------------------------------------------------

def _net_and_batches(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    g = torch.Generator().manual_seed(seed)
    return net, [(torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g))
                 for _ in range(12)]


def _train(name: str, wd: float, loop: bool, frozen: bool = False, mixed: bool = False):
    net, batches = _net_and_batches()
    if frozen:      # a parameter without a gradient gets no state, as in torch
        net[0].bias.requires_grad_(False)
    if mixed:       # float64 output layer: groups of two dtypes take the functional adam
        net[2].double()
        net.register_forward_hook(lambda m, i, out: out.float())
        net[2].register_forward_pre_hook(lambda m, args: (args[0].double(),))
    opt = build_optimizer(OptimConfig(name=name, lr=0.02, weight_decay=wd), net.parameters())
    steps = Steps(opt)
    for i, (x, y) in enumerate(batches):
        if i == 6:      # a schedule sets the rate between steps
            for g in opt.param_groups:
                g["lr"] = 0.005
        steps.zero_grad() if loop else opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        steps.step() if loop else opt.step()
    return net, opt


@pytest.mark.parametrize("name, wd, frozen, mixed", [
    ("adam", 0.0, False, False), ("adam", 0.01, False, False), ("adamw", 0.05, False, False),
    ("adamw", 0.05, True, False), ("adam", 0.01, False, True), ("adamw", 0.05, False, True)])
def test_the_loops_steps_equal_optimizer_step_bit_for_bit(name, wd, frozen, mixed):
    """Two parameter groups (decayed weights, undecayed biases), the rate changed mid-way, a
    frozen bias, groups of two dtypes: the same weights and the same ``state_dict`` as
    ``optimizer.step()``."""
    (net_a, opt_a), (net_b, opt_b) = (_train(name, wd, True, frozen, mixed),
                                      _train(name, wd, False, frozen, mixed))
    assert [k is None for k in Steps(opt_a).kernels] == [mixed] * len(opt_a.param_groups)
    for a, b in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(a, b)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys() and len(sa["state"]) == 4 - frozen
    for k in sb["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for key, value in sb["state"][k].items():
            assert torch.equal(sa["state"][k][key], value) and sa["state"][k][key].dtype == value.dtype, key


def test_the_loop_steps_other_optimizers_by_their_own_step():
    """SGD, AMSGrad, an optimizer with a step hook or a wrapped step: ``optimizer.step``."""
    net, _ = _net_and_batches()
    params = list(net.parameters())
    assert Steps(build_optimizer(OptimConfig(name="adam"), params)).step.__name__ == "_adam"
    sgd = build_optimizer(OptimConfig(name="momentum"), params)
    assert Steps(sgd).step == sgd.step
    ams = torch.optim.Adam(params, amsgrad=True, fused=True)
    assert Steps(ams).step == ams.step
    hooked = build_optimizer(OptimConfig(name="adam"), params)
    hooked.register_step_post_hook(lambda *args: None)
    assert Steps(hooked).step == hooked.step
    wrapped = build_optimizer(OptimConfig(name="adam"), params)
    wrapped.step = lambda: None
    assert Steps(wrapped).step is wrapped.step


def test_nesterov_without_momentum_is_a_config_error(tmp_path, capsys):
    """Found by the fuzz suite: optim.name = "nesterov" with optim.momentum = 0 passed the config
    and torch.optim.SGD raised ValueError when the run was prepared (a traceback, exit 1)."""
    from regulab.cli import main
    cfg = tmp_path / "run.toml"
    cfg.write_text('[data]\ndataset = "moons"\nn_samples = 60\n[train]\nepochs = 1\nprogress = false\n')
    code = main(["train", str(cfg), "--set", "optim.name=nesterov", "--set", "optim.momentum=0",
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "optim.momentum" in err and "nesterov" in err, err
    assert not (tmp_path / "run").exists()
    assert main(["train", str(cfg), "--set", "optim.name=momentum", "--set", "optim.momentum=0",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0      # plain SGD with momentum 0 is fine
