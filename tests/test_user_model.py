"""A user's own network (``model.factory``, ``model=``): every model-agnostic technique on it,
its errors, ``load_model`` and ``regulab predict``, transfer by module name, studies and sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import regulab as rl
from regulab.cli import main
from regulab.config.core import load_config
from regulab.config.sections import USER_NETWORK_KEYS
from regulab.nn.layers import ChannelDropout, DropConnect, Dropout, GaussianNoise, WeightNoise
from regulab.nn.user import INPUTS
from regulab.regularize.mc_dropout import sampling
from regulab.runs.prepare import prepare

from .conftest import EXAMPLES, assert_refused, write

# the user's file: examples/byo/resnet.py, with a few factories of the kinds a test needs
EXTRA = """

def small(classes=10):
    return ResNet(width=4, blocks=1, classes=classes, drop=0.1)


def broken(**kwargs):
    raise RuntimeError("no GPU here")


def not_a_network():
    return "a string"


class Digits(torch.utils.data.Dataset):      # scikit-learn's digits: items (x (1, 8, 8), label)

    def __init__(self):
        from sklearn.datasets import load_digits
        X, self.y = load_digits(return_X_y=True)
        self.X = torch.tensor(X / 16, dtype=torch.float32).view(-1, 1, 8, 8)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i], int(self.y[i])


def digits():
    return Digits()
"""

CONFIG = """
name = "byo"
[data]
dataset = "python:resnet.py:digits"
split = [0.7, 0.15, 0.15]
[model]
factory = "resnet.py:ResNet"
args = { width = 4, blocks = 1, drop = 0.1 }
[optim]
lr = 0.01
[train]
epochs = 3
batch_size = 64
"""


@pytest.fixture
def user_files(workdir) -> Path:
    """The config beside the user's file, as a user keeps them: FILE is relative to the config."""
    (workdir / "resnet.py").write_text((EXAMPLES / "byo" / "resnet.py").read_text() + EXTRA)
    cfg = write(workdir / "byo.toml", CONFIG)
    return cfg


def _import_fixture(folder: Path):
    from regulab.user_code import load_object
    path = folder / "user_resnet.py"
    path.write_text((EXAMPLES / "byo" / "resnet.py").read_text() + EXTRA)
    return load_object(f"{path}:ResNet", "model.factory"), load_object(f"{path}:small", "model.factory")


SMALL = {"model.args": {"width": 4, "blocks": 1, "drop": 0.1}}     # ResNet's: 4 Linear/Conv layers


def _cfg(**over):
    return load_config(None, {"data.dataset": "digits", "data.split": [0.7, 0.15, 0.15], "optim.lr": 0.01,
                              "train.epochs": 2, "train.batch_size": 64, "train.progress": False, **over})


def test_train_a_factory_from_a_file_and_load_model_reproduces_the_test_accuracy(user_files, workdir, capsys):
    assert main(["train", str(user_files), "--out", "out", "--quiet"]) == 0
    run = workdir / "out"
    config = (run / "config.toml").read_text()
    assert f'factory = "{workdir / "resnet.py"}:ResNet"' in config       # recorded, absolute
    results = json.loads((run / "results.json").read_text())
    model = rl.load_model(run)
    assert type(model.net).__name__ == "ResNet" and not model.training
    assert isinstance(model.net.drop, Dropout)          # the network's own dropout, made regulab's
    p = prepare(load_config(run / "config.toml"))
    X, y = p.splits["test"]                             # preprocess "none": raw inputs
    with torch.no_grad():
        acc = (model(X).argmax(1) == y).double().mean().item()
    assert acc == pytest.approx(results["test_acc"], abs=1e-12)
    # and regulab predict writes the same predictions
    np.savez(workdir / "inputs.npz", X=X.numpy())
    assert main(["predict", str(run), str(workdir / "inputs.npz"), "--out", str(workdir / "pred.csv")]) == 0
    rows = (workdir / "pred.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["input", "prediction", "p_0"] and len(rows) == len(X) + 1
    predicted = [int(r.split(",")[1]) for r in rows[1:]]
    assert predicted == model(X).argmax(1).tolist()


def test_the_python_api_takes_a_class_a_function_or_a_network(workdir):
    ResNet, small = _import_fixture(workdir)
    a = rl.train(_cfg(**SMALL), model=ResNet, out="a", progress=False)
    b = rl.train(_cfg(), model=small, out="b", progress=False)
    assert a.results["test_acc"] == b.results["test_acc"]
    torch.testing.assert_close(a.model.state_dict(), b.model.state_dict())    # same seed, same net
    mine = ResNet(width=4, blocks=1, drop=0.1)
    before = {k: v.clone() for k, v in mine.state_dict().items()}
    c = rl.train(_cfg(), model=mine, out="c", progress=False)
    torch.testing.assert_close(mine.state_dict(), before)        # the user's object is not changed
    assert c.model.net is not mine and "python-object:ResNet" in (workdir / "c" / "config.toml").read_text()
    # a network given from Python is passed again to load it
    with pytest.raises(rl.ConfigError, match="was a Python object"):
        rl.load_model(workdir / "c")
    assert rl.load_model(workdir / "c", model=ResNet(width=4, blocks=1)).net.head.out_features == 10


def test_the_python_api_with_a_users_dataset_object_and_load_model(workdir):
    _, small = _import_fixture(workdir)
    from regulab.user_code import load_object
    dataset = load_object(f"{workdir / 'user_resnet.py'}:Digits", "data.dataset")()
    run = rl.train(_cfg(**{"data.dataset": "mnist1d"}), model=small, data=dataset, out="d", progress=False)
    assert "python-object:Digits" in (workdir / "d" / "config.toml").read_text()
    model = rl.load_model(run.run_dir, model=small)
    p = prepare(_cfg().with_code(model=small, data=dataset))
    X, y = p.splits["test"]
    with torch.no_grad():
        assert (model(X).argmax(1) == y).double().mean().item() == pytest.approx(run.results["test_acc"], abs=1e-12)


def test_the_factory_is_seeded_by_train_seed(workdir):
    ResNet, _ = _import_fixture(workdir)
    nets = [prepare(_cfg(**{"train.seed": s}).with_code(model=ResNet)).pipeline.net for s in (0, 0, 1)]
    torch.testing.assert_close(nets[0].stem.weight, nets[1].stem.weight)
    assert not torch.equal(nets[0].stem.weight, nets[2].stem.weight)


def test_layer_techniques_go_into_the_users_network(workdir):
    ResNet, _ = _import_fixture(workdir)
    cfg = _cfg(**SMALL, **{"model.dropout": 0.3, "model.dropout_mode": "classic", "model.dropconnect": 0.2,
                  "model.input_dropout": 0.1, "regularization.input_noise": 0.5})
    net = prepare(cfg.with_code(model=ResNet)).pipeline.net
    assert type(net).__name__ == "ResNet"
    assert isinstance(net.drop, Dropout) and net.drop.drop_prob == 0.3 and net.drop.mode == "classic"
    weights = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    wrapped = [m for m in net.modules() if isinstance(m, DropConnect)]
    assert len(wrapped) == len(weights) == 4 and all(w.drop_prob == 0.2 for w in wrapped)
    front = getattr(net, INPUTS)
    assert isinstance(front.noise_in, GaussianNoise) and front.noise_in.std == 0.5
    assert isinstance(front.drop_in, Dropout) and front.drop_in.drop_prob == 0.1
    # classic dropout at inference: y = (1 - p) x on the head's input, recomputed by hand
    x = torch.rand(5, 1, 8, 8)
    net.eval()
    h = net.pool(net.blocks(torch.relu(net.stem(x * (1 - 0.1))))).flatten(1)   # input dropout, classic
    torch.testing.assert_close(net(x), net.head(h * (1 - 0.3)))
    # the input noise runs in training: the hook puts it in front of the network's forward
    seen = []
    handle = net.stem.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    net.train()
    net(torch.zeros(5, 1, 8, 8))
    handle.remove()
    assert seen[0].std() > 0.2                   # N(0, 0.5^2) noise, some of it dropped
    # Monte-Carlo dropout draws in eval mode through the replaced modules
    net.eval()
    with sampling(net, torch.Generator().manual_seed(0)):
        assert not torch.equal(net(x), net(x))


class ChannelNet(nn.Module):
    """A user's conv net with channel dropout (``nn.Dropout2d``) after its convolution."""

    def __init__(self):
        super().__init__()
        self.conv, self.drop, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Dropout2d(0.3), nn.Linear(256, 10)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.conv(x))).flatten(1))


def test_channel_dropout_draws_from_the_runs_generator(workdir):
    """``nn.Dropout2d`` becomes ``ChannelDropout`` (its probability, or ``model.dropout``'s), which
    draws from the run's noise generator: the same run trains to the same numbers whatever
    the global RNG did before (it drew from the global RNG, and did not)."""
    net = prepare(_cfg().with_code(model=ChannelNet)).pipeline.net
    assert isinstance(net.drop, ChannelDropout) and net.drop.drop_prob == 0.3 and net.drop.dims == 2
    assert prepare(_cfg(**{"model.dropout": 0.5}).with_code(model=ChannelNet)).pipeline.net.drop.drop_prob == 0.5
    runs = []
    for k in range(2):
        torch.manual_seed(k)
        runs.append(rl.train(_cfg().with_code(model=ChannelNet), out=workdir / f"run-{k}", progress=False))
    assert [h["train_loss"] for h in runs[0].history] == [h["train_loss"] for h in runs[1].history]


def test_weight_noise_wraps_every_linear_and_conv(workdir):
    ResNet, _ = _import_fixture(workdir)
    net = prepare(_cfg(**SMALL, **{"regularization.weight_noise": 0.1}).with_code(model=ResNet)).pipeline.net
    assert sum(isinstance(m, WeightNoise) for m in net.modules()) == 4
    assert all(isinstance(m.layer, (nn.Linear, nn.Conv2d)) for m in net.modules() if isinstance(m, WeightNoise))


def test_penalties_and_max_norm_act_on_the_users_weights(workdir):
    ResNet, _ = _import_fixture(workdir)
    p = prepare(_cfg(**{"regularization.l2": 1e-3, "regularization.l1": 1e-4,
                        "regularization.max_norm": 0.5}).with_code(model=ResNet))
    net = p.pipeline.net
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    expected = 1e-3 * sum((w ** 2).sum() for w in weights) + 1e-4 * sum(w.abs().sum() for w in weights)
    torch.testing.assert_close(p.trainer.penalties[0](net), expected)
    p.trainer.fit(p.loader, p.splits["val"], epochs=1)
    for w in weights:          # every unit's incoming weights within the ball after each step
        assert w.flatten(1).norm(dim=1).max() <= 0.5 + 1e-5


@pytest.mark.parametrize("key", [*USER_NETWORK_KEYS, "multitask.tasks"])
def test_keys_that_describe_regulabs_own_networks_are_refused(user_files, workdir, capsys, key):
    values = {"kind": "cnn", "hidden": [3], "channels": [4], "kernel_size": 3, "activation": "tanh",
              "batchnorm": "true", "batchnorm_position": '"after"', "multitask.tasks": '["parity"]'}
    dotted = key if "." in key else f"model.{key}"
    value = values[key]
    code = main(["train", str(user_files), "--out", "out", "--quiet", "--set", f"{dotted}={value}"])
    assert_refused(capsys, code, [f"'{dotted}'", "cannot apply to a user's network"], workdir)


@pytest.mark.parametrize("factory, words", [
    ("nowhere.py:Net", ["'model.factory'", "existing file", "nowhere.py:Net"]),
    ("resnet.py:ResNett", ["'model.factory'", "'ResNett'", "did you mean 'ResNet'"]),
    ("resnet.py:broken", ["'model.factory'", "RuntimeError: no GPU here"]),
    ("resnet.py:not_a_network", ["'model.factory'", "must give an nn.Module", "str"]),
    ("no_such_module_x:Net", ["'model.factory'", "importable module"]),
    ("resnet", ["'model.factory'", "FILE.py:NAME"]),
])
def test_a_factory_that_is_missing_raises_or_returns_the_wrong_thing_is_refused(
        user_files, workdir, capsys, factory, words):
    code = main(["train", str(user_files), "--out", "out", "--quiet", "--set", f'model.factory="{factory}"',
                 "--set", "model.args={}"])
    assert_refused(capsys, code, words, workdir)


def test_a_network_that_cannot_take_the_data_is_refused(user_files, workdir, capsys):
    code = main(["train", str(user_files), "--out", "out", "--quiet", "--set", "model.args={classes = 3}"])
    assert_refused(capsys, code, ["model.factory", "output has shape (2, 3)", "(batch, 10)"], workdir)
    code = main(["train", str(user_files), "--out", "out", "--quiet", "--set", "data.dataset=moons"])
    assert_refused(capsys, code, ["model.factory", "cannot take samples of shape (2,)"], workdir)
    code = main(["train", str(user_files), "--out", "out", "--quiet", "--set", "model.dropout=[0.1, 0.2]"])
    assert_refused(capsys, code, ["'model.dropout'", "one probability per dropout module", "drop"], workdir)


def test_transfer_by_module_name_from_a_run_of_the_same_factory(user_files, workdir, capsys):
    assert main(["train", str(user_files), "--out", "source", "--quiet", "--set", "model.dropconnect=0.1"]) == 0
    src = rl.load_model(workdir / "source").net
    assert main(["train", str(user_files), "--out", "target", "--quiet", "--set", "transfer.source=source",
                 "--set", 'transfer.layers=["stem", "blocks"]', "--set", "train.epochs=1"]) == 0
    tgt = rl.load_model(workdir / "target").net
    torch.testing.assert_close(tgt.stem.weight, src.stem.layer.weight)     # frozen: unchanged
    torch.testing.assert_close(tgt.blocks[0].bn2.running_var, src.blocks[0].bn2.running_var)
    assert not torch.equal(tgt.head.weight, src.head.layer.weight)          # not copied, trained
    code = main(["train", str(user_files), "--out", "out", "--quiet", "--set", "transfer.source=source",
                 "--set", 'transfer.layers=["stemm"]'])
    assert_refused(capsys, code, ["'transfer.layers'", "'stemm'", "blocks, head, stem"], workdir)


STUDY = """
[study]
name = "byo-clinic"
seeds = 1
[base]
data = { dataset = "python:resnet.py:digits", split = [0.7, 0.15, 0.15] }
model = { factory = "resnet.py:small" }
optim = { lr = 0.01 }
train = { epochs = 2, batch_size = 128, progress = false }
[variants.baseline]
[variants.l2]
regularization.l2 = 1e-3
[variants.l1]
regularization.l1 = 1e-4
[variants.dropout]
model.dropout = 0.3
[variants.dropconnect]
model.dropconnect = 0.1
[variants.max-norm]
regularization.max_norm = 2.0
[variants.input-noise]
regularization.input_noise = 0.1
[variants.weight-noise]
regularization.weight_noise = 0.01
[variants.smoothing]
regularization.label_smoothing = 0.1
[variants.label-noise]
data.label_noise = 0.1
[variants.ema]
regularization.ema = 0.9
[variants.early-stopping]
train = { early_stopping = true, patience = 1, epochs = 4 }
[variants.augment]
image = { translate = 0.1 }
[variants.transfer]
transfer = { source = "source-run", layers = ["stem", "blocks"] }
[variants.mc-dropout]
model.dropout = 0.3
eval = { dropout_inference = "mc_mean", mc_samples = 5 }
[variants.ensemble]
members = 2
[variants.bagging]
members = 2
data.bootstrap = true
"""


def test_a_study_of_every_technique_on_the_users_network(user_files, workdir, capsys):
    study = write(workdir / "study.toml", STUDY)
    assert main(["train", str(user_files), "--out", "source-run", "--quiet", "--set", "model.factory=resnet.py:small",
                 "--set", "model.args={}"]) == 0         # the run the transfer variant starts from
    assert main(["study", str(study), "--out", "study", "--quiet"]) == 0
    results = json.loads((workdir / "study" / "results.json").read_text())
    names = {v["name"] for v in results["variants"]}
    assert names == {"baseline", "l2", "l1", "dropout", "dropconnect", "max-norm", "input-noise",
                     "weight-noise", "smoothing", "label-noise", "ema", "early-stopping", "augment", "mc-dropout",
                     "transfer",
                     "ensemble", "bagging"}
    assert (workdir / "study" / "report.html").is_file()
    nets = {v["name"]: rl.load_model(workdir / "study" / v["runs"][0]["run_dir"]).net
            for v in results["variants"] if v["members"] == 1}
    assert all(type(net).__name__ == "ResNet" for net in nets.values())
    assert nets["dropout"].drop.drop_prob == 0.3 and nets["baseline"].drop.drop_prob == 0.1
    assert isinstance(nets["dropconnect"].stem, DropConnect) and isinstance(nets["weight-noise"].stem, WeightNoise)
    assert isinstance(getattr(nets["input-noise"], INPUTS).noise_in, GaussianNoise)
    assert hasattr(getattr(nets["augment"], INPUTS), "augment")
    source = rl.load_model(workdir / "source-run").net
    torch.testing.assert_close(nets["transfer"].stem.weight, source.stem.weight)      # frozen: as copied
    assert not torch.equal(nets["transfer"].head.weight, source.head.weight)
    assert all(m.weight.flatten(1).norm(dim=1).max() <= 2.0 + 1e-5
               for m in nets["max-norm"].modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    ensemble = next(v for v in results["variants"] if v["name"] == "bagging")
    assert ensemble["members"] == 2 and ensemble["stats"]["test_acc"]["mean"] >= 0.0


def test_study_and_sweep_take_a_factory_from_python(workdir):
    _, small = _import_fixture(workdir)
    res = rl.study(_cfg(**{"train.epochs": 1}), variants={"l2": {"regularization.l2": 1e-3}}, seeds=1,
                   model=small, out="s", progress=False)
    assert {v["name"] for v in res.results["variants"]} == {"baseline", "l2"}
    assert "python-object:small" in (workdir / "s" / "study.json").read_text() or \
        "small" in (workdir / "s" / "study.json").read_text()
    with pytest.raises(rl.ConfigError, match="fresh network"):
        rl.study(_cfg(), model=small(), seeds=1, out="t", progress=False)
    spec = rl.load_sweep(write(workdir / "sweep.toml", """
[sweep]
name = "byo"
trials = 2
sampler = "random"
[base]
data = { dataset = "digits", split = [0.7, 0.15, 0.15] }
train = { epochs = 1, batch_size = 128, progress = false }
[space]
"regularization.l2" = { low = 1e-5, high = 1e-2, log = true }
"""))
    best = rl.sweep(spec, out="w", db=str(workdir / "sweep.db"), progress=False, model=small).best
    assert best is not None and "test_acc" in json.dumps(best)


def test_predict_reads_a_csv_without_its_target_and_a_folder_of_images(workdir, capsys):
    from PIL import Image
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    rows = ["a,b,label,c"] + [f"{x[0]:.4f},{x[1]:.4f},{int(x[0] + x[1] > 0)},{x[2]:.4f}" for x in X]
    (workdir / "table.csv").write_text("\n".join(rows) + "\n")
    cfg = write(workdir / "csv.toml", 'name = "t"\n[data]\ndataset = "csv:table.csv"\ntarget = "label"\n'
                                      '[model]\nhidden = [8]\n[train]\nepochs = 2\n')
    assert main(["train", str(cfg), "--out", "tab", "--quiet"]) == 0
    assert main(["predict", "tab", "table.csv", "--out", "p.csv"]) == 0
    lines = (workdir / "p.csv").read_text().splitlines()
    assert len(lines) == 201 and lines[0] == "input,prediction,p_0,p_1"
    model = rl.load_model(workdir / "tab")
    want = model(torch.tensor(X[:, [0, 1, 2]], dtype=torch.float32)).argmax(1).tolist()
    assert [int(r.split(",")[1]) for r in lines[1:]] == want
    # a run whose CSV says each row's split: that column is no input either
    split = ["part"] + ["train" if i < 150 else "val" for i in range(200)]
    (workdir / "parts.csv").write_text("\n".join(f"{r},{s}" for r, s in zip(rows, split)) + "\n")
    cfg = write(workdir / "parts.toml", 'name = "t"\n[data]\ndataset = "csv:parts.csv"\ntarget = "label"\n'
                                        'split_column = "part"\n[model]\nhidden = [8]\n[train]\nepochs = 2\n')
    assert main(["train", str(cfg), "--out", "parts", "--quiet"]) == 0
    assert main(["predict", "parts", "parts.csv", "--out", "p2.csv"]) == 0
    assert len((workdir / "p2.csv").read_text().splitlines()) == 201
    for label in ("0", "1"):            # an image folder: class folders for training
        (workdir / "imgs" / label).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 128, (6, 6), dtype=np.uint8) + 127 * int(label)
            Image.fromarray(pixels.astype(np.uint8)).save(workdir / "imgs" / label / f"{i}.png")
    cfg = write(workdir / "img.toml", 'name = "i"\n[data]\ndataset = "images:imgs"\nsplit = [0.5, 0.25, 0.25]\n'
                                      '[model]\nhidden = [8]\n[train]\nepochs = 2\n')
    assert main(["train", str(cfg), "--out", "img", "--quiet"]) == 0
    assert main(["predict", "img", "imgs", "--out", "q.csv"]) == 0
    lines = (workdir / "q.csv").read_text().splitlines()
    assert len(lines) == 25 and lines[1].startswith("0/0.png,")
    code = main(["predict", "img", "table.csv", "--out", "r.csv"])
    err = capsys.readouterr().err
    assert code == 2 and "samples of shape (4,); the run takes (1, 6, 6)" in err and not (workdir / "r.csv").exists()


def test_the_readmes_first_python_example_runs(workdir):
    """The README's first screen: a user's network through train, study and load_model (fewer
    epochs and seeds here)."""
    import re
    text = (EXAMPLES.parent / "README.md").read_text()
    code = re.search(r"## Your network, your data\n\n```python\n(.*?)```", text, re.S).group(1)
    code = code.replace('"train.epochs": 20', '"train.epochs": 2, "train.progress": False')
    code = code.replace("seeds=3)", "seeds=1, progress=False)")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert type(scope["net"].net).__name__ == "MyNet" and not scope["net"].training
    assert [v["name"] for v in scope["res"].results["variants"]] == ["baseline", "dropconnect", "max-norm"]
