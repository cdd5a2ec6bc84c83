"""Transfer learning core: which layers are units, loading a source run, copying the first k
units (weights, batch norm parameters and buffers), freezing them, and optimizer groups.

Sources are real run directories written in ``tmp_path`` (``config.toml`` + a Pipeline's
``model.safetensors``). Every tensor of a source network is scrambled first, so a copy is
told apart from an untouched target by ``torch.equal``; expected values (which keys, the
batch norm output, Adam's first step) are recomputed independently of the library.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from regulab.config.core import Config, to_toml
from regulab.config.sections import ModelConfig, RegularizationConfig
from regulab.data.preprocess import Preprocessor
from regulab.errors import CheckpointError, ConfigError
from regulab.io import load_tensors, save_tensors
from regulab.nn.layers import DropConnect, WeightNoise
from regulab.nn.models import Pipeline, build_model
from regulab.regularize.transfer import (canonical, freeze_, load_source, param_groups, transfer_units,
                                         transfer_weights, unit_modules)

MLP_SHAPE, CNN_SHAPE, IMG_SHAPE = (8,), (16,), (1, 8, 8)


def model(kind: str = "mlp", shape=MLP_SHAPE, n_out: int = 3, seed: int = 0,
          weight_noise: float = 0.0, **kw) -> nn.Module:
    cfg = ModelConfig(kind=kind, **kw)
    return build_model(cfg, shape, n_out, torch.Generator().manual_seed(seed),
                       RegularizationConfig(weight_noise=weight_noise))


def scramble_(net: nn.Module, seed: int = 123) -> nn.Module:
    """Every float tensor of ``net`` random (variances positive), batch counters 7."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in net.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                t.fill_(7)
            elif key.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g))
    return net


def write_run(root: Path, kind: str = "mlp", shape=MLP_SHAPE, name: str = "src",
              weight_noise: float = 0.0, **kw) -> tuple[Path, nn.Module]:
    """A finished run directory with a scrambled network; returns (directory, network)."""
    net = scramble_(model(kind, shape, n_out=4, seed=9, weight_noise=weight_noise, **kw))
    run = root / name
    run.mkdir()
    cfg = Config(name=name, model=ModelConfig(kind=kind, **kw),
                 regularization=RegularizationConfig(weight_noise=weight_noise))
    (run / "config.toml").write_text(to_toml(cfg))
    save_tensors(run / "model.safetensors", Pipeline(Preprocessor("none", shape), net).state_dict())
    return run, net


def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def plain_key(key: str) -> str:
    """``fc1.layer.weight`` -> ``fc1.weight``, written out independently of ``canonical``."""
    return key.replace(".layer.", ".", 1)


def one_line_error(exc_type, fn, *args, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# --- units, modules, keys ----------------------------------------------------------------------

@pytest.mark.parametrize("kw", [{}, {"batchnorm": True}, {"dropconnect": 0.5, "dropout": 0.2},
                                {"weight_noise": 0.1, "batchnorm": True, "input_dropout": 0.1}])
def test_units_of_an_mlp_and_a_cnn(kw):
    assert transfer_units(model("mlp", hidden=[100, 100], **kw)) == ["fc1", "fc2"]
    cnn = model("cnn", CNN_SHAPE, channels=[8, 8], hidden=[32], kernel_size=3, **kw)
    assert transfer_units(cnn) == ["conv1", "conv2", "fc1"]
    assert transfer_units(model("linear")) == []


def test_unit_modules_pair_each_layer_with_its_batch_norm():
    assert unit_modules("fc1") == ["fc1", "bn1"]
    assert unit_modules("fc12") == ["fc12", "bn12"]
    assert unit_modules("conv2") == ["conv2", "bnconv2"]
    assert unit_modules("out") == ["out"]
    # the names match what build_model creates
    names = dict(model("cnn", CNN_SHAPE, channels=[4], hidden=[5], kernel_size=3, batchnorm=True).named_children())
    for unit in ("conv1", "fc1"):
        assert all(m in names for m in unit_modules(unit))


@pytest.mark.parametrize("key, expected", [
    ("fc1.layer.weight", "fc1.weight"), ("fc1.layer.bias", "fc1.bias"), ("fc1.weight", "fc1.weight"),
    ("conv3.layer.weight", "conv3.weight"), ("bn1.running_mean", "bn1.running_mean"),
    ("bn1.num_batches_tracked", "bn1.num_batches_tracked"), ("out.layer.weight", "out.weight"),
])
def test_canonical_drops_only_the_wrapper_segment(key, expected):
    assert canonical(key) == expected


# --- loading a source run ----------------------------------------------------------------------

def test_load_source_splits_the_pipeline_state(tmp_path):
    run, net = write_run(tmp_path, hidden=[6, 5], batchnorm=True)
    src = load_source(str(run))
    assert src.path == run
    assert src.config.model.hidden == [6, 5] and src.config.model.batchnorm is True
    assert set(src.net_state) == set(net.state_dict())
    for key, t in net.state_dict().items():
        assert torch.equal(src.net_state[key], t)
    assert set(src.preprocess_state) == {"shift", "scale"}
    assert torch.equal(src.preprocess_state["scale"], torch.ones(MLP_SHAPE))


@pytest.mark.parametrize("case", ["missing", "file", "no_config", "no_model", "bad_config", "not_a_path"])
def test_load_source_rejects_what_is_not_a_run_directory(tmp_path, case):
    run, _ = write_run(tmp_path)
    target, why = run, ""
    if case == "missing":
        target, why = tmp_path / "nope", "no such directory"
    elif case == "file":
        target, why = run / "config.toml", "not a directory"
    elif case == "no_config":
        (run / "config.toml").unlink()
        why = "no config.toml"
    elif case == "no_model":
        (run / "model.safetensors").unlink()
        why = "no model.safetensors"
    elif case == "bad_config":
        (run / "config.toml").write_text("[model]\nkind = 'rnn'\n")
        why = "model.kind"
    else:
        target, why = None, "not a path"
    msg = one_line_error(ConfigError, load_source, target)
    assert "'transfer.source'" in msg and str(target) in msg and why in msg
    assert "config.toml and model.safetensors" in msg


def test_a_corrupted_model_file_names_the_file(tmp_path):
    run, _ = write_run(tmp_path)
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[:-10])
    msg = one_line_error(CheckpointError, load_source, run)
    assert str(run / "model.safetensors") in msg and "corrupted" in msg


class _Trap:
    """Unpickling this touches a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (self.marker.touch, ())


def test_a_pickle_is_never_unpickled(tmp_path):
    run, _ = write_run(tmp_path)
    marker = tmp_path / "unpickled"
    (run / "model.safetensors").write_bytes(pickle.dumps(_Trap(marker)))
    pickle.loads(pickle.dumps(_Trap(tmp_path / "check")))   # the trap does work when unpickled
    assert (tmp_path / "check").exists()
    one_line_error(CheckpointError, load_source, run)
    assert not marker.exists()


@pytest.mark.parametrize("tensors, why", [({"fc1.weight": torch.ones(2, 2)}, "outside 'net.'"),
                                          ({"preprocess.shift": torch.zeros(3)}, "no network weights")])
def test_a_foreign_safetensors_file_is_rejected(tmp_path, tensors, why):
    run, _ = write_run(tmp_path)
    save_tensors(run / "model.safetensors", tensors)
    msg = one_line_error(CheckpointError, load_source, run)
    assert why in msg and str(run / "model.safetensors") in msg


# --- copying -----------------------------------------------------------------------------------

def assert_copied(target: nn.Module, before: dict, source: nn.Module, copied: set[str]) -> None:
    """Modules in ``copied`` equal the source's (by wrapper-free key); all others are untouched."""
    src = {plain_key(k): v for k, v in source.state_dict().items()}
    for key, t in target.state_dict().items():
        if key.split(".")[0] in copied:
            assert torch.equal(t, src[plain_key(key)]), key
        else:
            assert torch.equal(t, before[key]), key


def expected_names(target: nn.Module, copied: set[str]) -> list[str]:
    return [n for n, _ in target.named_parameters() if n.split(".")[0] in copied]


def test_all_copies_every_unit_and_batch_norm_but_not_the_head(tmp_path):
    run, src_net = write_run(tmp_path, hidden=[6, 5], batchnorm=True)
    net = model(hidden=[6, 5, 4], batchnorm=True)      # one more layer than the source
    before = snapshot(net)
    names = transfer_weights(net, load_source(run), "all")
    copied = {"fc1", "bn1", "fc2", "bn2"}
    assert_copied(net, before, src_net, copied)
    assert names == ["fc1.weight", "bn1.weight", "bn1.bias", "fc2.weight", "bn2.weight", "bn2.bias"]
    assert names == expected_names(net, copied)
    # the buffers came along: scrambled running statistics and the batch counter
    assert torch.equal(net.bn2.running_var, src_net.bn2.running_var)
    assert int(net.bn1.num_batches_tracked) == 7
    assert not torch.equal(net.bn3.running_var, src_net.bn2.running_var[:4])


def test_first_k_units_of_an_mlp(tmp_path):
    run, src_net = write_run(tmp_path, hidden=[6, 5], batchnorm=True)
    net = model(hidden=[6, 5], batchnorm=True)
    before = snapshot(net)
    names = transfer_weights(net, load_source(run), 1)
    assert_copied(net, before, src_net, {"fc1", "bn1"})
    assert names == ["fc1.weight", "bn1.weight", "bn1.bias"]


@pytest.mark.parametrize("shape", [CNN_SHAPE, IMG_SHAPE])
def test_first_k_units_of_a_cnn(tmp_path, shape):
    kw = dict(channels=[3, 4], hidden=[5], kernel_size=3, batchnorm=True)
    run, src_net = write_run(tmp_path, "cnn", shape, **kw)
    net = model("cnn", shape, **kw)
    before = snapshot(net)
    names = transfer_weights(net, load_source(run), 2)
    copied = {"conv1", "bnconv1", "conv2", "bnconv2"}
    assert_copied(net, before, src_net, copied)
    assert names == expected_names(net, copied) and len(names) == 6
    net.eval()
    src_net.eval()
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    def features(m: nn.Module) -> torch.Tensor:             # the output of the second conv block
        children = list(m.named_children())
        return nn.Sequential(*[c for _, c in children[:[n for n, _ in children].index("pool2") + 1]])(x)
    assert torch.equal(features(net), features(src_net))


def test_ten_or_more_units_keep_their_order(tmp_path):
    run, src_net = write_run(tmp_path, hidden=[3] * 11)
    net = model(hidden=[3] * 11)
    before = snapshot(net)
    assert transfer_weights(net, load_source(run), 2) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert_copied(net, before, src_net, {"fc1", "fc2"})
    before = snapshot(net)
    transfer_weights(net, load_source(run), "all")
    assert_copied(net, before, src_net, {f"fc{i}" for i in range(1, 12)})


@pytest.mark.parametrize("src_kw, tgt_kw, wrapper", [
    ({"dropconnect": 0.5}, {}, None), ({}, {"dropconnect": 0.5}, DropConnect),
    ({"weight_noise": 0.1}, {}, None), ({}, {"weight_noise": 0.1}, WeightNoise),
])
def test_wrapped_and_plain_layers_feed_each_other(tmp_path, src_kw, tgt_kw, wrapper):
    run, src_net = write_run(tmp_path, hidden=[6, 5], **src_kw)
    net = model(hidden=[6, 5], **tgt_kw)
    if wrapper is not None:
        assert isinstance(net.fc1, wrapper)
    before = snapshot(net)
    names = transfer_weights(net, load_source(run), "all")
    assert_copied(net, before, src_net, {"fc1", "fc2"})
    prefix = "layer." if wrapper else ""
    assert names == [f"fc{i}.{prefix}{p}" for i in (1, 2) for p in ("weight", "bias")]
    src_fc1 = src_net.fc1.layer if hasattr(src_net.fc1, "layer") else src_net.fc1
    tgt_fc1 = net.fc1.layer if wrapper else net.fc1
    assert torch.equal(tgt_fc1.weight, src_fc1.weight)


# --- copy errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("layers", [0, -1, True, 1.5, "first", None])
def test_layers_must_be_all_or_a_positive_count(tmp_path, layers):
    run, _ = write_run(tmp_path)
    msg = one_line_error(ConfigError, transfer_weights, model(), load_source(run), layers)
    assert "'transfer.layers'" in msg and repr(layers) in msg
    assert "'all', a whole number of layers >= 1, or a list of module names" in msg


def test_too_many_layers_says_both_counts(tmp_path):
    run, _ = write_run(tmp_path, hidden=[6, 5])
    src = load_source(run)
    net = model(hidden=[6, 5, 4])
    before = snapshot(net)
    msg = one_line_error(ConfigError, transfer_weights, net, src, 3)
    assert "'transfer.layers'" in msg and "at most 2" in msg and "got 3" in msg
    assert "(2: fc1, fc2)" in msg and "(3: fc1, fc2, fc3)" in msg and str(run) in msg
    msg = one_line_error(ConfigError, transfer_weights, model(hidden=[6]), src, "all")
    assert "at most 1" in msg and "got 'all' (2)" in msg and "(1: fc1)" in msg
    assert all(torch.equal(t, before[k]) for k, t in net.state_dict().items())


def test_a_shape_mismatch_names_the_layer_and_copies_nothing(tmp_path):
    run, _ = write_run(tmp_path, hidden=[6, 5])
    net = model(hidden=[6, 4])
    before = snapshot(net)
    msg = one_line_error(ConfigError, transfer_weights, net, load_source(run), 2)
    assert "'transfer.layers' = 2" in msg and "'fc2'" in msg and "'fc2.weight'" in msg
    assert "(5, 6)" in msg and "(4, 6)" in msg and str(run) in msg
    assert all(torch.equal(t, before[k]) for k, t in net.state_dict().items())   # fc1 untouched too


@pytest.mark.parametrize("src_bn", [True, False])
def test_batch_norm_in_only_one_network(tmp_path, src_bn):
    run, _ = write_run(tmp_path, hidden=[6, 5], batchnorm=src_bn)
    msg = one_line_error(ConfigError, transfer_weights, model(hidden=[6, 5], batchnorm=not src_bn),
                         load_source(run), 1)
    side = "exists in the source run" if src_bn else "exists in the target but not in the source run"
    assert "'transfer.layers' = 1" in msg and "'fc1'" in msg and "'bn1'" in msg and side in msg
    assert str(run) in msg and "model.batchnorm" in msg


def test_layers_of_different_kinds_do_not_pair(tmp_path):
    run, _ = write_run(tmp_path, hidden=[6])
    msg = one_line_error(ConfigError, transfer_weights, model("cnn", CNN_SHAPE, channels=[2], hidden=[6]),
                         load_source(run), 1)
    assert "'transfer.layers' = 1" in msg and "'fc1'" in msg and "'conv1'" in msg


def test_a_linear_source_has_nothing_to_transfer(tmp_path):
    run, _ = write_run(tmp_path, "linear")
    msg = one_line_error(ConfigError, transfer_weights, model(), load_source(run), "all")
    assert "'transfer.layers'" in msg and "has none" in msg and str(run) in msg


# --- freezing ----------------------------------------------------------------------------------

def transferred_bn_mlp(tmp_path, k: int = 1):
    run, src_net = write_run(tmp_path, hidden=[6, 5], batchnorm=True)
    net = model(hidden=[6, 5], batchnorm=True)
    names = transfer_weights(net, load_source(run), k)
    return net, names


def test_freeze_turns_off_gradients_of_the_named_parameters_only(tmp_path):
    net, names = transferred_bn_mlp(tmp_path)
    freeze_(net, names)
    for n, p in net.named_parameters():
        assert p.requires_grad == (n not in names), n
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    net.train()
    net(x).pow(2).sum().backward()
    for n, p in net.named_parameters():
        assert (p.grad is None) == (n in names), n


def test_a_frozen_batch_norm_stays_in_inference_mode(tmp_path):
    net, names = transferred_bn_mlp(tmp_path)
    freeze_(net, names)
    mean, var = net.bn1.running_mean.clone(), net.bn1.running_var.clone()
    mean2 = net.bn2.running_mean.clone()
    net.train()
    assert net.training and net.fc1.training and net.bn2.training and not net.bn1.training
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net(x)
        h = net.fc1(x)
        y = net.bn1(h)
    assert torch.equal(net.bn1.running_mean, mean) and torch.equal(net.bn1.running_var, var)
    assert int(net.bn1.num_batches_tracked) == 7
    assert not torch.equal(net.bn2.running_mean, mean2)            # the new one does learn
    bn = net.bn1                                                   # y = (h - mu) / sqrt(var + eps) * gamma + beta
    expected = (h - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(y, expected)
    net.eval()
    net.train(True)
    assert not net.bn1.training and net.bn2.training
    assert "frozen" in repr(net.bn1) and "frozen" not in repr(net.bn2)
    assert isinstance(net.bn1, nn.BatchNorm1d)


def test_freezing_keeps_the_state_dict_and_survives_deepcopy(tmp_path):
    net, names = transferred_bn_mlp(tmp_path, k=2)
    keys = list(net.state_dict())
    plain = copy.deepcopy(net)
    freeze_(net, names)
    freeze_(net, names)                                  # twice is the same as once
    assert list(net.state_dict()) == keys
    assert type(net.bn1).__mro__.count(nn.BatchNorm1d) == 1
    plain.load_state_dict(net.state_dict())              # strict: same keys both ways
    net.load_state_dict(plain.state_dict())
    twin = copy.deepcopy(net)
    assert type(twin.bn1) is type(net.bn1) and twin.bn1 is not net.bn1
    twin.train()
    assert not twin.bn1.training and not twin.bn2.training and twin.out.training
    assert all(not p.requires_grad for n, p in twin.named_parameters() if n in names)
    with torch.no_grad():
        twin.bn1.running_mean.add_(1.0)
    assert not torch.equal(twin.bn1.running_mean, net.bn1.running_mean)


def test_a_partly_frozen_batch_norm_keeps_training(tmp_path):
    net, _ = transferred_bn_mlp(tmp_path)
    freeze_(net, ["bn1.weight"])
    net.train()
    assert net.bn1.training and "frozen" not in repr(net.bn1)


def test_freeze_rejects_unknown_names(tmp_path):
    net, _ = transferred_bn_mlp(tmp_path)
    with pytest.raises(ValueError, match="fc9.weight"):
        freeze_(net, ["fc9.weight"])


# --- optimizer groups --------------------------------------------------------------------------

def group_of(groups: list[dict]) -> dict[int, tuple[str, float]]:
    out = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in out
            out[id(p)] = (g["name"], g["lr"])
    return out


def test_param_groups_without_and_with_a_transfer_lr(tmp_path):
    net, names = transferred_bn_mlp(tmp_path)
    params = dict(net.named_parameters())
    for transfer_lr, expected in [(None, 0.01), (0.001, 0.001)]:
        where = group_of(param_groups(net, names, 0.01, transfer_lr))
        assert len(where) == len(params)
        for n, p in params.items():
            assert where[id(p)] == (("transferred", expected) if n in names else ("new", 0.01))


def test_frozen_parameters_are_left_out(tmp_path):
    net, names = transferred_bn_mlp(tmp_path)
    freeze_(net, names)
    groups = param_groups(net, names, 0.01, 0.001)
    assert [g["name"] for g in groups] == ["new"]
    assert [id(p) for p in groups[0]["params"]] == [id(p) for n, p in net.named_parameters() if n not in names]
    freeze_(net, ["fc2.weight"])
    where = group_of(param_groups(net, names, 0.01, 0.001))
    assert id(net.fc2.weight) not in where and id(net.out.weight) in where


def test_an_adam_step_moves_transferred_weights_by_the_smaller_lr(tmp_path):
    net, names = transferred_bn_mlp(tmp_path)
    lr, transfer_lr, eps = 0.01, 0.0001, 1e-8
    opt = torch.optim.Adam(param_groups(net, names, lr, transfer_lr), eps=eps)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    x = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    net.train()
    net(x).pow(2).mean().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    opt.step()
    # Adam's first step: m_hat = g, v_hat = g^2, so w <- w - lr * g / (|g| + eps)
    for n, p in net.named_parameters():
        rate = transfer_lr if n in names else lr
        expected = before[n] - rate * grads[n] / (grads[n].abs() + eps)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)
    moved = (net.fc1.weight.detach() - before["fc1.weight"]).abs().max().item()
    assert moved == pytest.approx(transfer_lr, rel=1e-3)
    assert (net.fc2.weight.detach() - before["fc2.weight"]).abs().max().item() == pytest.approx(lr, rel=1e-3)


@pytest.mark.parametrize("lr, transfer_lr, key", [(0.0, None, "optim.lr"), (-1.0, 0.1, "optim.lr"),
                                                  (0.1, 0.0, "transfer.lr"), (0.1, "x", "transfer.lr")])
def test_param_groups_rejects_bad_rates(tmp_path, lr, transfer_lr, key):
    net, names = transferred_bn_mlp(tmp_path)
    msg = one_line_error(ConfigError, param_groups, net, names, lr, transfer_lr)
    assert f"'{key}'" in msg and "> 0" in msg


# --- found outside this module -----------------------------------------------------------------

def test_load_tensors_on_a_directory_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_tensors(tmp_path)
