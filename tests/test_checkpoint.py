"""Checkpoint files: nested state round-trips exactly, writes are atomic, bad files are refused."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save
from torch import nn

from regulab.errors import CheckpointError
from regulab.io import atomic_write, load_state, load_tensors, save_state, save_tensors


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of ``t`` (so -0.0 differs from 0.0 and NaN payloads count)."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def assert_same(a, b, where="state"):
    """Exact equality of nested state: same types (tuples come back as lists), same tensor
    dtype, shape and bits, NaN equal to NaN."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        assert torch.equal(_bits(a), _bits(b)), where
    elif isinstance(a, dict):
        assert isinstance(b, dict), where
        assert list(a) == list(b), where           # keys, their types and their order
        for k in a:
            assert type(k) is type(next(x for x in b if x == k)), f"{where}.{k}"
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert type(a) is type(b) and a == b, where


def nested_state() -> dict:
    g = torch.Generator().manual_seed(3)
    return {
        "epoch": 7,
        "stop_training": False,
        "model": {"0.weight": torch.randn(3, 2, generator=g), "0.bias": torch.zeros(3),
                  "bn.num_batches_tracked": torch.tensor(12)},
        "float64": torch.randn(2, 2, generator=g, dtype=torch.float64),
        "half": torch.randn(4, generator=g).to(torch.float16),
        "bf16": torch.randn(4, generator=g).to(torch.bfloat16),
        "mask": torch.tensor([True, False, True]),
        "labels": torch.arange(5, dtype=torch.int64) - 2,
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "noncontiguous": torch.arange(12.0).reshape(3, 4).t(),
        "generators": {"shuffle": torch.Generator().manual_seed(5).get_state()},
        "none": None,
        "floats": [0.1, -2.5e-300, 1e308, float("nan"), float("inf"), float("-inf")],
        "strings": ["", "ünïcode", "with \"quotes\" and\nnewline"],
        "nested": {"a": [1, [2, {"b": torch.ones(2, dtype=torch.uint8)}]], "c": {}, "d": []},
        "int_keys": {0: {"step": torch.tensor(4.0), "momentum_buffer": torch.ones(2)}, 1: None},
        "history": [{"epoch": 1, "train_loss": 0.25, "val_r2": float("nan")}],
    }


def test_nested_state_round_trip(tmp_path):
    state = nested_state()
    before = copy.deepcopy(state)
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert_same(state, back)
    assert_same(before, state)     # saving does not modify the input
    assert back["generators"]["shuffle"].dtype == torch.uint8
    assert back["scalar"].dim() == 0
    g = torch.Generator()
    g.set_state(back["generators"]["shuffle"])
    assert torch.equal(torch.rand(4, generator=g),
                       torch.rand(4, generator=torch.Generator().manual_seed(5)))


def test_tensor_needing_grad_round_trips_detached(tmp_path):
    w = nn.Parameter(torch.ones(2))
    save_state(tmp_path / "s.safetensors", {"w": w * 2})
    back = load_state(tmp_path / "s.safetensors")["w"]
    assert not back.requires_grad and torch.equal(back, torch.full((2,), 2.0))


def test_keys_containing_dots_do_not_collide(tmp_path):
    state = {"a.b": torch.zeros(2), "a": {"b": torch.ones(2)}}
    save_state(tmp_path / "s.safetensors", state)
    assert_same(state, load_state(tmp_path / "s.safetensors"))


# -- optimizer state -------------------------------------------------------------------------------

def _problem():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model, X, y


def _steps(model, opt, X, y, n):
    for i in range(n):
        xb, yb = X[i % 4 * 4:(i % 4 + 1) * 4], y[i % 4 * 4:(i % 4 + 1) * 4]
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(xb), yb).backward()
        opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=1e-3),
    lambda ps: torch.optim.AdamW(ps, lr=0.01, amsgrad=True),
    lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.5, dampening=0.1),
], ids=["adam", "adamw-amsgrad", "sgd-nesterov", "sgd-momentum"])
def test_optimizer_state_round_trip_continues_bit_identically(make_opt, tmp_path):
    model, X, y = _problem()
    opt = make_opt(model.parameters())
    _steps(model, opt, X, y, 3)
    save_state(tmp_path / "s.safetensors", {"model": model.state_dict(), "optim": opt.state_dict()})
    state = load_state(tmp_path / "s.safetensors")
    assert list(state["optim"]["state"]) == [0, 1, 2, 3]       # int keys survive

    fresh, _, _ = _problem()
    fresh_opt = make_opt(fresh.parameters())
    fresh.load_state_dict(state["model"])
    fresh_opt.load_state_dict(state["optim"])

    _steps(model, opt, X, y, 4)
    _steps(fresh, fresh_opt, X, y, 4)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


# -- atomic writes ---------------------------------------------------------------------------------

def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write(path, "first")
    assert path.read_text() == "first"
    atomic_write(path, b"\x00second")
    assert path.read_bytes() == b"\x00second"
    atomic_write(path, "")
    assert path.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write(path, "old")
    with pytest.raises(TypeError):
        atomic_write(path, 12345)     # not bytes or str: the write fails
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_save_state_leaves_only_the_file(tmp_path):
    save_state(tmp_path / "s.safetensors", nested_state())
    save_state(tmp_path / "s.safetensors", {"x": torch.ones(1)})
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]
    assert_same(load_state(tmp_path / "s.safetensors"), {"x": torch.ones(1)})


# -- bad files -------------------------------------------------------------------------------------

def _truncated(path: Path) -> None:
    save_state(path, nested_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])


def _truncated_header(path: Path) -> None:
    save_state(path, nested_state())
    path.write_bytes(path.read_bytes()[:100])


def _tiny(path: Path) -> None:
    path.write_bytes(b"\x01\x02")


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


def _text(path: Path) -> None:
    path.write_text("epoch = 3\nthis is not a checkpoint\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _foreign(path: Path) -> None:
    path.write_bytes(st_save({"w": torch.ones(2)}))


def _foreign_metadata(path: Path) -> None:
    path.write_bytes(st_save({"w": torch.ones(2)}, metadata={"format": "pt"}))


def _bad_json(path: Path) -> None:
    path.write_bytes(st_save({"w": torch.ones(2)}, metadata={"regulab": "{not json"}))


def _wrong_version(path: Path) -> None:
    doc = {"version": 999, "state": {"w": {"__tensor__": "s.w"}}}
    path.write_bytes(st_save({"s.w": torch.ones(2)}, metadata={"regulab": json.dumps(doc)}))


def _dangling_tensor(path: Path) -> None:
    doc = {"version": 1, "state": {"w": {"__tensor__": "s.missing"}}}
    path.write_bytes(st_save({"s.w": torch.ones(2)}, metadata={"regulab": json.dumps(doc)}))


def _missing(path: Path) -> None:
    pass


@pytest.mark.parametrize("damage", [
    _truncated, _truncated_header, _tiny, _garbage, _text, _empty, _foreign, _foreign_metadata,
    _bad_json, _wrong_version, _dangling_tensor, _missing,
])
def test_bad_checkpoint_raises_checkpoint_error(damage, tmp_path):
    path = tmp_path / "state.safetensors"
    damage(path)
    with pytest.raises(CheckpointError) as info:
        load_state(path)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message


def test_load_tensors_reads_plain_safetensors(tmp_path):
    save_tensors(tmp_path / "w.safetensors", {"w": torch.arange(3.0)}, {"k": "v"})
    tensors, meta = load_tensors(tmp_path / "w.safetensors")
    assert torch.equal(tensors["w"], torch.arange(3.0)) and meta == {"k": "v"}


# -- determinism -----------------------------------------------------------------------------------

def test_same_state_gives_byte_identical_files(tmp_path):
    save_state(tmp_path / "a.safetensors", nested_state())
    save_state(tmp_path / "b.safetensors", nested_state())
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_reloaded_state_saves_to_the_same_bytes(tmp_path):
    model, X, y = _problem()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    _steps(model, opt, X, y, 2)
    save_state(tmp_path / "a.safetensors", {"model": model.state_dict(), "optim": opt.state_dict()})
    save_state(tmp_path / "b.safetensors", load_state(tmp_path / "a.safetensors"))
    # tuples (Adam's betas) come back as lists, which JSON writes the same way
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
