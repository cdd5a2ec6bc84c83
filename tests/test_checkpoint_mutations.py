"""Checkpoints are verified, not just parsed: 160+ generated mutations of a killed run's
checkpoint, each resumed with ``regulab resume``. Every one is either refused -- exit code 2, one
line naming the file, the run directory's files and the store's rows exactly as before -- or,
where the mutation is harmless (checkpoint/ removed: the run starts over), resumed to the
uninterrupted run's bit-identical result.

One run is killed once per module (an exception from a callback after its second checkpoint,
which leaves what kill -9 leaves but the store status) and copied per case.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from regulab.callbacks import Callback
from regulab.cli import main
from regulab.config.core import load_config
from regulab.io import load_state, save_state
from regulab.runs.run import train

from .conftest import metrics_rows, untimed_results, write

CONFIG = """
name = "mut"
[data]
dataset = "moons"
n_samples = 240
preprocess = "standardize"
[model]
hidden = [6, 5]
batchnorm = true
[optim]
name = "adam"
lr = 0.01
schedule = "plateau"
plateau_patience = 1
[train]
epochs = 5
batch_size = 40
patience = 3
checkpoint_every = 1
"""
KILLED_AT = 3       # the run dies in epoch 3's end, its checkpoint is epoch 2's


class _Killed(Exception):
    pass


class _Kill(Callback):
    """Dies at the end of epoch ``KILLED_AT``, before the run's log writes its checkpoint."""

    def on_epoch_end(self, trainer, logs):
        if trainer.epoch == KILLED_AT:
            raise _Killed


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_cache) -> dict[str, Path]:
    """The uninterrupted run (``reference``), the killed one with its store (``killed``, ``db``)
    and a finished run of another seed (``other``: a checkpoint of another run)."""
    root = tmp_path_factory.mktemp("mutations")
    old = os.getcwd()
    os.chdir(root)
    os.environ["REGULAB_CACHE"] = str(data_cache)
    try:
        cfg = load_config(write(root / "mut.toml", CONFIG))
        train(cfg, out=root / "reference", db=f"sqlite:///{root / 'ref.db'}", progress=False)
        train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=1)), out=root / "other",
              db=f"sqlite:///{root / 'other.db'}", progress=False)
        with pytest.raises(_Killed):
            train(cfg, out=root / "killed", db=f"sqlite:///{root / 'killed.db'}", progress=False,
                  callbacks=[_Kill()])
    finally:
        os.chdir(old)
    return {"reference": root / "reference", "killed": root / "killed", "db": root / "killed.db",
            "other": root / "other"}


def copy_run(runs: dict[str, Path], where: Path) -> tuple[Path, Path]:
    """The killed run and its store copied under ``where``, run.json pointing to the copy."""
    run_dir, db = where / "run", where / "runs.db"
    shutil.copytree(runs["killed"], run_dir)
    shutil.copy(runs["other"] / STATE, where / "other.safetensors")
    src, dst = sqlite3.connect(runs["db"]), sqlite3.connect(db)
    src.backup(dst)
    src.close(), dst.close()
    info = json.loads((run_dir / "checkpoint" / "run.json").read_text())
    info["db"] = f"sqlite:///{db}"
    (run_dir / "checkpoint" / "run.json").write_text(json.dumps(info))
    return run_dir, db


def run_files(run_dir: Path) -> dict[str, object]:
    """Every entry of the run directory: a file's bytes, a link's target, a FIFO or directory's kind."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(run_dir):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            out[str(path.relative_to(run_dir))] = (
                ("link", os.readlink(path)) if stat.S_ISLNK(mode) else path.read_bytes()
                if stat.S_ISREG(mode) else ("fifo",) if stat.S_ISFIFO(mode) else ("dir",))
    return out


def store_rows(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


# -- the mutations: each takes the run directory and changes its checkpoint ------------------------

STATE = Path("checkpoint") / "state.safetensors"
Mutation = Callable[[Path], None]


def _edit(change: Callable[[dict], None]) -> Mutation:
    """Load the state, ``change`` it, save it again with valid checksums."""
    def mutate(run_dir: Path) -> None:
        state = load_state(run_dir / STATE)
        change(state)
        save_state(run_dir / STATE, state)
    return mutate


def _parts(path: str | tuple) -> list:
    """A dotted ``path`` as keys (int parts index lists and int-keyed tables); a tuple as is."""
    return list(path) if isinstance(path, tuple) else [int(p) if p.isdigit() else p for p in path.split(".")]


def _set(path: str | tuple, value) -> Callable[[dict], None]:
    """Set the entry at ``path`` to ``value`` (a function: of the entry)."""
    def change(state: dict) -> None:
        *parents, last = _parts(path)
        for p in parents:
            state = state[p]
        state[last] = value(state[last]) if callable(value) else value
    return change


def _drop(path: str | tuple) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        *parents, last = _parts(path)
        for p in parents:
            state = state[p]
        del state[last]
    return change


def _poison(t: torch.Tensor, value: float) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[t.numel() // 2] = value
    return t


def _bytes(change: Callable[[bytearray], None]) -> Mutation:
    def mutate(run_dir: Path) -> None:
        data = bytearray((run_dir / STATE).read_bytes())
        change(data)
        (run_dir / STATE).write_bytes(bytes(data))
    return mutate


def _flip(fraction: float, region: str) -> Mutation:
    """Flip one bit at ``fraction`` of the length prefix, JSON header or tensor data."""
    def change(data: bytearray) -> None:
        n = int.from_bytes(data[:8], "little")
        lo, hi = {"prefix": (0, 8), "header": (8, 8 + n), "data": (8 + n, len(data))}[region]
        pos = lo + int(fraction * (hi - lo - 1))
        data[pos] ^= 1 << (pos % 8)
    return _bytes(change)


def _truncate(fraction: float) -> Mutation:
    return _bytes(lambda data: data.__delitem__(slice(int(fraction * len(data)), None)))


def _replace(name: str, make: Callable[[Path, Path], None]) -> Mutation:
    """``make(path, run_dir)`` puts something else at ``checkpoint/<name>``."""
    def mutate(run_dir: Path) -> None:
        path = run_dir / "checkpoint" / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        make(path, run_dir)
    return mutate


def _skeleton(text: Callable[[str], str], sums: bool = True) -> Mutation:
    """Rewrite the JSON skeleton (without its own checksum) with ``text``; then, with ``sums``, its
    checksum computed again (so only the content is judged) when the new text is a table, else
    the old one kept."""
    def mutate(run_dir: Path) -> None:
        import hashlib

        from regulab.io import load_tensors
        tensors, meta = load_tensors(run_dir / STATE)
        doc = json.loads(meta["regulab"])
        digest = doc.pop("skeleton_sha256")
        new = text(json.dumps(doc))
        try:
            parsed = json.loads(new)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            parsed["skeleton_sha256"] = hashlib.sha256(new.encode()).hexdigest() if sums else digest
            new = json.dumps(parsed)
        (run_dir / STATE).write_bytes(st_save(tensors, metadata={**meta, "regulab": new}))
    return mutate


def _version_1(run_dir: Path) -> None:
    """What regulab wrote before checksums: version 1, no sums."""
    from regulab.io import load_tensors
    tensors, meta = load_tensors(run_dir / STATE)
    doc = json.loads(meta["regulab"])
    meta = {"regulab": json.dumps({"version": 1, "state": doc["state"]})}
    (run_dir / STATE).write_bytes(st_save(tensors, metadata=meta))


def _tampered(run_dir: Path) -> None:
    """A tensor changed, the old checksums kept."""
    from regulab.io import load_tensors
    tensors, meta = load_tensors(run_dir / STATE)
    name = min(k for k, t in tensors.items() if t.is_floating_point())
    tensors[name] = tensors[name] + 1
    (run_dir / STATE).write_bytes(st_save(tensors, metadata=meta))


def _swap_param_state(state: dict) -> None:
    s = state["optimizer"]["state"]
    s[0], s[1] = s[1], s[0]     # a (6, 2) weight's moments and a (6,) bias's


def _model_keys(runs_killed: Path) -> list[str]:
    return list(load_state(runs_killed / STATE)["model"])


MODEL_KEYS = ["fc1.weight", "bn1.weight", "bn1.running_var", "out.bias"]   # checked below
SAME = "same"       # a harmless mutation: resumed to the uninterrupted run's result
EITHER = "either:"  # prefix of a word: refused naming it, or harmless


def _cases() -> dict[str, tuple[Mutation, str]]:
    """name -> (mutation, a word the refusal names, or SAME)."""
    cases: dict[str, tuple[Mutation, str]] = {}
    for i in range(12):
        cases[f"truncate-{i}"] = (_truncate(i / 12), "state.safetensors")
    for i in range(8):
        cases[f"flip-prefix-{i}"] = (_flip(i / 7, "prefix"), "state.safetensors")
    for i in range(40):
        cases[f"flip-header-{i}"] = (_flip(i / 39, "header"), EITHER + "state.safetensors")
    for i in range(40):
        cases[f"flip-data-{i}"] = (_flip(i / 39, "data"), "checksum")
    for key in MODEL_KEYS:
        for bad, word in ((math.nan, "finite"), (math.inf, "finite"), (-math.inf, "finite")):
            cases[f"model-{key}-{bad}"] = (_edit(_set(("model", key), lambda t, b=bad: _poison(t, b))), word)
        cases[f"model-{key}-shape"] = (_edit(_set(("model", key), lambda t: t[:-1])), "shape")
        cases[f"model-{key}-int32"] = (_edit(_set(("model", key), lambda t: t.to(torch.int32))), "int32")
        cases[f"model-{key}-float64"] = (_edit(_set(("model", key), lambda t: t.double())), "float64")
        cases[f"model-{key}-dropped"] = (_edit(_drop(("model", key))), "missing")
    for p in range(4):
        for k in ("exp_avg", "exp_avg_sq"):
            for bad in (math.nan, math.inf):
                cases[f"adam-{p}-{k}-{bad}"] = (_edit(_set(f"optimizer.state.{p}.{k}",
                                                           lambda t, b=bad: _poison(t, b))), "finite")
            cases[f"adam-{p}-{k}-dropped"] = (_edit(_drop(f"optimizer.state.{p}.{k}")), "missing")
        cases[f"adam-{p}-exp_avg_sq-negative"] = (
            _edit(_set(f"optimizer.state.{p}.exp_avg_sq", lambda t: _poison(t, -1.0))), ">= 0")
        cases[f"adam-{p}-dropped"] = (_edit(_drop(f"optimizer.state.{p}")), "parameter")
        for bad in (math.nan, 0.0, 2.5, 1e9, -1.0):
            cases[f"adam-{p}-step-{bad}"] = (_edit(_set(f"optimizer.state.{p}.step",
                                                        lambda t, b=bad: torch.tensor(b))), "step")
    group = "optimizer.param_groups.0"
    for key, bad, word in [
        ("lr", -1.0, "lr"), ("lr", "0.01", "lr"), ("lr", math.nan, "lr"), ("lr", None, "lr"),
        ("betas", [2, 2], "betas"), ("betas", [0.9], "betas"), ("betas", "x", "betas"),
        ("eps", -1.0, "eps"), ("eps", 1e-3, "eps"), ("weight_decay", 5.0, "weight_decay"),
        ("amsgrad", True, "amsgrad"), ("params", [1, 0, 2, 3, 4, 5, 6, 7], "params"),
        ("params", [0], "params"), ("initial_lr", 0.5, "initial_lr"),
    ]:
        cases[f"group-{key}-{bad!r}"] = (_edit(_set(f"{group}.{key}", bad)), word)
    for key in ("lr", "betas", "eps", "params"):
        cases[f"group-{key}-dropped"] = (_edit(_drop(f"{group}.{key}")), key)
    cases["groups-extra"] = (_edit(_set("optimizer.param_groups", lambda g: g + g)), "param_groups")
    cases["groups-none"] = (_edit(_set("optimizer.param_groups", [])), "param_groups")
    cases["optimizer-state-empty"] = (_edit(_set("optimizer.state", {})), "parameter")
    cases["optimizer-state-extra"] = (_edit(_set("optimizer.state", lambda s: {**s, 99: s[0]})), "99")
    cases["optimizer-state-swapped"] = (_edit(_swap_param_state), "shape")
    cases["optimizer-dropped"] = (_edit(_drop("optimizer")), "optimizer")
    cases["optimizer-not-table"] = (_edit(_set("optimizer", [1, 2])), "optimizer")
    for key, bad in [("epoch", -1), ("epoch", 2.5), ("epoch", 10**9), ("epoch", 6), ("epoch", "2"),
                     ("epoch", None), ("epoch", True), ("epoch", 1), ("epoch", 3), ("step", -1),
                     ("step", 13), ("step", 1.5), ("step", 10**12), ("step", 0),
                     ("stop_training", "yes"), ("stop_training", 1), ("history", {}),
                     ("history", lambda h: h[:-1]), ("history", lambda h: h + h[-1:]),
                     ("history", lambda h: h[::-1]), ("history", lambda h: [{**h[0], "train_loss": "x"}, h[1]]),
                     ("history", lambda h: [h[0], {**h[1], "epoch": 2.0}])]:
        cases[f"{key}-{'f' if callable(bad) else repr(bad)}-{len(cases)}"] = (_edit(_set(key, bad)), key)
    for key in ("epoch", "step", "stop_training", "model", "generators", "callbacks", "history"):
        cases[f"top-{key}-dropped"] = (_edit(_drop(key)), key)
    for key in ("lr", "seconds"):     # found by the fuzz suite: a KeyError after loading
        cases[f"history-row-{key}-dropped"] = (_edit(_drop(f"history.1.{key}")), "history.1")
    cases["top-extra"] = (_edit(_set("extra", 1)), "extra")
    cases["generators-dropped"] = (_edit(_set("generators", {})), "generators")
    cases["generators-extra"] = (_edit(_set("generators", lambda g: {**g, "other": next(iter(g.values()))})),
                                 "generators")
    cases["generators-short"] = (_edit(lambda s: [s["generators"].__setitem__(k, v[:-1])
                                                  for k, v in s["generators"].items()]), "generators")
    cases["generators-float"] = (_edit(lambda s: [s["generators"].__setitem__(k, v.float())
                                                  for k, v in s["generators"].items()]), "generators")
    stop = "callbacks.EarlyStopping"
    cases["early-stopping-dropped"] = (_edit(_drop(stop)), "EarlyStopping")
    cases["schedule-dropped"] = (_edit(_drop("callbacks.LRSchedule")), "LRSchedule")
    cases["callback-unknown"] = (_edit(_set("callbacks.Other", {"x": 1})), "Other")
    for key in ("best", "best_epoch", "wait", "stopped_epoch", "best_weights", "trained_weights"):
        cases[f"early-stopping-{key}-dropped"] = (_edit(_drop(f"{stop}.{key}")), key)
    for key, bad in [("best", "x"), ("best", math.nan), ("best", None), ("best_epoch", 9),
                     ("best_epoch", -1), ("wait", 2.5), ("wait", -1), ("stopped_epoch", "0"),
                     ("best_weights", {}), ("best_weights", lambda w: {k: v.double() for k, v in w.items()}),
                     ("best_weights", lambda w: {k: _poison(v, math.nan) if v.is_floating_point() else v
                                                 for k, v in w.items()})]:
        cases[f"early-stopping-{key}-{'f' if callable(bad) else repr(bad)}-{len(cases)}"] = (
            _edit(_set(f"{stop}.{key}", bad)), key)
    for key, bad in [("best", "x"), ("bad_epochs", -1), ("reductions", 0.5), ("reductions", 10**6)]:
        cases[f"schedule-{key}-{bad!r}"] = (_edit(_set(f"callbacks.LRSchedule.{key}", bad)), key)
    # the file and the directory
    junk = [("empty", ""), ("open", "{"), ("list", "[]"), ("deep", "[" * 100000),
            ("version-0", None), ("nan", "NaN")]
    for name, text in junk:
        if text is not None:
            cases[f"skeleton-{name}"] = (_skeleton(lambda _, t=text: t), "state.safetensors")
    cases["skeleton-version-0"] = (_skeleton(lambda t: t.replace('"version": 2', '"version": 0', 1)), "version")
    cases["skeleton-no-sum"] = (_skeleton(lambda t: t.replace('"epoch": 2', '"epoch": 1', 1), sums=False),
                                "checksum")
    cases["skeleton-dangling-tensor"] = (_skeleton(lambda t: t.replace('"t0"', '"t999"', 1)), "state.safetensors")
    cases["version-1"] = (_version_1, "version 1")
    cases["tampered-tensor"] = (_tampered, "checksum")
    for name, text in [("empty", ""), ("open", "{"), ("list", "[]"), ("string-id", '{"run_id": "1", "db": "x"}'),
                       ("negative-id", '{"run_id": -1, "db": "x"}'), ("bool-id", '{"run_id": true, "db": "x"}'),
                       ("float-id", '{"run_id": 1.0, "db": "x"}'), ("db-number", '{"run_id": 1, "db": 5}'),
                       ("other-id", None), ("deep", "[" * 100000), ("binary", "\x00\xff")]:
        if text is not None:
            cases[f"run.json-{name}"] = (_replace("run.json", lambda p, _, t=text: p.write_text(t)), "run.json")
    cases["run.json-other-id"] = (_replace_run_id(2), "run.json")
    cases["run.json-fifo"] = (_replace("run.json", lambda p, _: os.mkfifo(p)), "FIFO")
    cases["run.json-dir"] = (_replace("run.json", lambda p, _: p.mkdir()), "run.json")
    cases["state-fifo"] = (_replace("state.safetensors", lambda p, _: os.mkfifo(p)), "FIFO")
    cases["state-dev-zero"] = (_replace("state.safetensors", lambda p, _: p.symlink_to("/dev/zero")), "link")
    cases["state-dangling-link"] = (_replace("state.safetensors", lambda p, _: p.symlink_to(p.parent / "x")),
                                    "link")
    cases["state-dir"] = (_replace("state.safetensors", lambda p, _: p.mkdir()), "directory")
    cases["state-is-run.json"] = (_replace("state.safetensors", lambda p, r: shutil.copy(
        r / "checkpoint" / "run.json", p)), "state.safetensors")
    cases["state-foreign"] = (_replace("state.safetensors", lambda p, _: p.write_bytes(
        st_save({"w": torch.ones(2)}))), "state.safetensors")
    cases["files-swapped"] = (_swap_files, "checkpoint")
    cases["checkpoint-is-file"] = (_checkpoint_dir(lambda p: p.write_text("x")), "checkpoint")
    cases["checkpoint-is-link"] = (_checkpoint_dir(lambda p: p.symlink_to(p.parent)), "checkpoint")
    cases["checkpoint-removed"] = (_checkpoint_dir(lambda p: None), SAME)
    # the config the checkpoint recorded against the run's config.toml (runs.rundir.config_difference)
    for old, new, word in [("lr = 0.01", "lr = 0.02", "'optim.lr' is 0.01 in the checkpoint and 0.02"),
                           ("epochs = 5", "epochs = 8", "'train.epochs' is 5 in the checkpoint and 8"),
                           ("hidden = [6, 5]", "hidden = [6, 6]", "'model.hidden' is [6, 5]"),
                           ("seed = 0\npreprocess", "seed = 3\npreprocess", "'data.seed' is 0 in the checkpoint"),
                           ("eval_train = false", "eval_train = true", "'train.eval_train' is False")]:
        cases[f"config.toml-{new}"] = (_config_toml(old, new), word)
    for old, new in [('name = "mut"', 'name = "renamed"'), ("checkpoint_every = 1", "checkpoint_every = 2"),
                     ("progress = true", "progress = false"), ('threads = "auto"', "threads = 1")]:
        cases[f"config.toml-{new}"] = (_config_toml(old, new), SAME)    # keys that do not change training
    cases["config-lr"] = (_edit(_set(("config", "optim.lr"), 0.5)), "'optim.lr' is 0.5 in the checkpoint")
    cases["config-lr-text"] = (_edit(_set(("config", "optim.lr"), "0.01")), "optim.lr")
    cases["config-lr-tensor"] = (_edit(_set(("config", "optim.lr"), torch.tensor(0.01))), "optim.lr")
    cases["config-epochs-dropped"] = (_edit(_drop(("config", "train.epochs"))), "'train.epochs' is not recorded")
    cases["config-default-dropped"] = (_edit(_drop(("config", "data.label_noise"))), SAME)   # it was the default
    cases["config-unknown-key"] = (_edit(_set(("config", "model.wings"), 2)), "'model.wings'")
    cases["config-not-table"] = (_edit(_set("config", [1, 2])), "'config' must be a table")
    cases["config-dropped"] = (_edit(_drop("config")), "'config' is missing")
    cases["config-emptied"] = (_edit(_set("config", {})), "is not recorded")
    cases["another-run's-checkpoint"] = (_other_run, "'train.seed' is 1 in the checkpoint and 0")
    cases["state-removed"] = (lambda r: (r / STATE).unlink(), SAME)
    return cases


def _config_toml(old: str, new: str) -> Mutation:
    """config.toml edited: ``old`` replaced by ``new`` (which must be there)."""
    def mutate(run_dir: Path) -> None:
        path = run_dir / "config.toml"
        text = path.read_text()
        assert old in text, (old, text)
        path.write_text(text.replace(old, new, 1))
    return mutate


def _other_run(run_dir: Path) -> None:
    """The checkpoint of another run (another train.seed, copied beside by ``copy_run``) put in."""
    shutil.copy(run_dir.parent / "other.safetensors", run_dir / STATE)


def _replace_run_id(run_id: int) -> Mutation:
    def mutate(run_dir: Path) -> None:
        path = run_dir / "checkpoint" / "run.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "run_id": run_id}))
    return mutate


def _swap_files(run_dir: Path) -> None:
    a, b = run_dir / STATE, run_dir / "checkpoint" / "run.json"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)


def _checkpoint_dir(make: Callable[[Path], None]) -> Mutation:
    def mutate(run_dir: Path) -> None:
        shutil.rmtree(run_dir / "checkpoint")
        make(run_dir / "checkpoint")
    return mutate


CASES = _cases()


def test_there_are_160_mutations_or_more():
    assert len(CASES) >= 160, len(CASES)


def test_the_model_keys_mutated_exist(runs):
    assert set(MODEL_KEYS) <= set(_model_keys(runs["killed"]))


def test_the_unchanged_copy_resumes_bit_identically(runs, tmp_path, capsys, monkeypatch):
    """The baseline of the cases: a copy of the killed run, untouched, finishes exactly."""
    run_dir, _ = copy_run(runs, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["resume", str(run_dir), "--quiet"]) == 0, capsys.readouterr().err
    _assert_same_result(run_dir, runs["reference"])


def _assert_same_result(run_dir: Path, reference: Path) -> None:
    assert (run_dir / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert untimed_results(run_dir) == untimed_results(reference)
    assert metrics_rows(run_dir) == metrics_rows(reference)


@pytest.mark.parametrize("name", list(CASES))
def test_a_mutated_checkpoint_is_refused_and_nothing_changes(name, runs, tmp_path, capsys, monkeypatch):
    mutate, word = CASES[name]
    run_dir, db = copy_run(runs, tmp_path)
    mutate(run_dir)
    files, rows = run_files(run_dir), store_rows(db)
    monkeypatch.chdir(tmp_path)
    code = main(["resume", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    if word == SAME or (word.startswith(EITHER) and code == 0):
        assert code == 0, err
        _assert_same_result(run_dir, runs["reference"])
        return
    assert code == 2 and err.count("\n") == 1, err
    assert "checkpoint" in err and word.removeprefix(EITHER) in err, (word, err)
    assert len(err) < 600, err
    assert run_files(run_dir) == files
    assert store_rows(db) == rows


def test_config_difference_names_the_first_key_that_changes_training():
    """``runs.rundir.config_difference``: keys that do not change training (and the process
    count) may differ; any other key is named with both values; a key the checkpoint does not
    record must hold its default."""
    from regulab.config.core import config_from_dict
    from regulab.runs.rundir import RESUME_MAY_DIFFER, config_difference, recorded_config

    cfg = config_from_dict({"optim": {"lr": 0.01}, "train": {"nproc": 2, "batch_size": 40}})
    recorded = recorded_config(cfg)
    assert config_difference(recorded, cfg) is None
    assert {"train.nproc", "name", "train.progress", "eval.batch_size", "log.tensorboard"} <= RESUME_MAY_DIFFER
    assert "train.eval_train" not in RESUME_MAY_DIFFER and "train.epochs" not in RESUME_MAY_DIFFER
    for key, value in [("train.nproc", 1), ("name", "x"), ("eval.batch_size", 7), ("train.threads", 3)]:
        assert config_difference({**recorded, key: value}, cfg) is None, key
    assert config_difference({**recorded, "optim.lr": 0.1}, cfg) == (
        "'optim.lr' is 0.1 in the checkpoint and 0.01 in config.toml (config.toml was edited after the "
        "checkpoint was written, or the checkpoint is another run's)")
    assert "'train.epochs' is 400" in config_difference({**recorded, "train.epochs": 400}, cfg)
    assert "'train.eval_train' is True" in config_difference({**recorded, "train.eval_train": True}, cfg)
    assert "'optim.betas'" in config_difference({**recorded, "optim.betas": [0.9, 0.99]}, cfg)
    missing = {k: v for k, v in recorded.items() if k not in ("data.label_noise", "train.batch_size")}
    assert "'train.batch_size' is not recorded" in config_difference(missing, cfg)   # 40, not the default
    assert config_difference({**missing, "train.batch_size": 40}, cfg) is None       # label_noise: default
    assert "must be a table" in config_difference([1], cfg)
