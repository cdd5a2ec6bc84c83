"""The fuzz suite (issue 16), configs and checkpoints: Hypothesis generates ``--set`` overrides
(real keys with values of the wrong type, out of range, huge, NaN/inf, empty, nested; misspelled
and unknown keys; a third of them keys in their valid ranges), raw override text, config files,
valid configs that must train (``tests.fuzzing.valid_configs``), and mutations of a killed run's
checkpoint; each case holds ``tests.fuzzing``'s property. Every failure found was fixed at its source and is
kept as a regression case: the checkpoint history rows without lr or seconds are
``tests/test_checkpoint_mutations.py``'s ``history-row-*-dropped`` (the fixed corpus).
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from .fuzzing import (BASE, EXAMPLES, FLOATS, VALUES, case, cases, check_complete_run, cli,  # noqa: F401
                      fuzz_environment, overrides, toml, train_case, valid_configs)
from .test_checkpoint_mutations import STATE, copy_run, run_files, runs, store_rows  # noqa: F401


# -- (a) configs and overrides --------------------------------------------------------------------

@settings(max_examples=EXAMPLES * 2)
@given(st.lists(overrides(), min_size=1, max_size=3))
@example([("data.dataset", [0, 0])]).via("found: data given as a pair of 0-d arrays raised TypeError")
@example([("optim.name", "nesterov"), ("optim.momentum", 0.0)]).via(
    "found (valid_configs): nesterov without momentum passed the config; torch.optim.SGD raised ValueError")
def test_fuzzed_overrides(items):
    with case() as root:
        train_case(root, BASE, [f"{k}={toml(v)}" for k, v in items])


@given(st.lists(st.text(max_size=20), min_size=1, max_size=3))
def test_fuzzed_override_text(items):
    """Raw text after ``--set``: no '=', unbalanced brackets, control characters."""
    with case() as root:
        train_case(root, BASE, items)


BASE_TABLES = {"name": "fuzz", "data": {"dataset": "moons", "n_samples": 120}, "model": {"hidden": [4]},
               "train": {"epochs": 2, "batch_size": 40}}


def render(doc: dict) -> str:
    """A config as TOML text: top-level values, then one table per section (deeper as inline tables)."""
    top = [f"{json.dumps(k)} = {toml(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{json.dumps(k)}]\n" + "".join(f"{json.dumps(n)} = {toml(x)}\n" for n, x in v.items())
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "".join(tables)


@st.composite
def config_files(draw) -> str:
    """The base config with keys set (a section to a value or a value to a table included), then
    perhaps a few characters inserted at a random place."""
    doc = json.loads(json.dumps(BASE_TABLES))
    for k, v in draw(st.lists(overrides(), max_size=4)):
        *parents, last = k.split(".")
        table = doc
        for p in parents:
            table = table.setdefault(p, {}) if isinstance(table.get(p, {}), dict) else {}
        table[last] = v
    text = render(doc)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=4)) + text[cut:]
    return text


@given(config_files())
def test_fuzzed_config_files(text):
    with case() as root:
        train_case(root, text)


def nested(items: dict[str, object], doc: dict | None = None) -> dict:
    """Dotted keys set in a config document (``BASE_TABLES`` without its data set by default)."""
    doc = doc if doc is not None else {"name": "fuzz", "model": {"hidden": [4]},
                                       "train": {"epochs": 2, "batch_size": 40}}
    for k, v in items.items():
        *parents, last = k.split(".")
        table = doc
        for p in parents:
            table = table.setdefault(p, {})
        table[last] = v
    return doc


@settings(max_examples=cases(80, 500))
@given(valid_configs())
def test_fuzzed_valid_configs(items):
    """Configs of keys in their ranges (``tests.fuzzing.VALID``) train: exit 0 with a complete
    run -- its files, one metrics.csv row and one store epoch row per epoch, the row completed --
    or exit 3 (diverged, a large learning rate say); a refusal is a defect of the config's
    checks (or of the strategy)."""
    with case() as root:
        code, err = train_case(root, render(nested(items)))
        assert code in (0, 3), err
        if code == 0:
            check_complete_run(root / "out", root / "store" / "r.db")



# -- (c) checkpoint mutations ---------------------------------------------------------------------

def _paths(obj, at: tuple = ()) -> list[tuple]:
    """Every entry's path in a nested dict/list (the root excluded)."""
    children = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    return [p for k, v in children for p in [(*at, k), *_paths(v, (*at, k))]]


def _replace_at(obj, path: tuple, value) -> None:
    """Set the entry at ``path`` to ``value`` (``DROP``: remove it)."""
    *parents, last = path
    for p in parents:
        obj = obj[p]
    if value is DROP:
        del obj[last]
    else:
        obj[last] = value


DROP = object()
JSON_VALUES = st.just(DROP) | VALUES | st.sampled_from([{"__tensor__": "t0"}, {"__tensor__": "t9999"},
                                                         {"__items__": [[0, 1]]}, {"__items__": 5}])


def _poisoned(t, value: float, dtype: str | None, shape: int):
    import torch
    t = t.clone().float() if t.is_floating_point() else t.clone()
    if t.numel() and t.is_floating_point():
        t.view(-1)[t.numel() // 2] = torch.tensor(value, dtype=torch.float64).float()   # > 3.4e38: inf
    t = t.to(getattr(torch, dtype)) if dtype else t
    return t.reshape(-1)[:shape] if shape >= 0 else t


TENSORS = st.builds(lambda v, d, s: lambda t: _poisoned(t, v, d, s), FLOATS,
                    st.none() | st.sampled_from(["float64", "int32", "float16", "bool", "uint8"]),
                    st.integers(-4, 2))


@st.composite
def checkpoint_mutations(draw):
    """A change to the killed run's state file: bytes edited or cut; a skeleton entry replaced,
    with or without its checksum written again; a state entry (a tensor poisoned, of another
    dtype or shape; a value of another kind) saved again with valid checksums."""
    kind = draw(st.sampled_from(["bytes", "skeleton", "state"]))
    if kind == "bytes":
        edits = draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4))
        cut = draw(st.none() | st.floats(0, 1))
        return kind, (edits, cut)
    return kind, (draw(st.integers(0, 10**6)), draw(TENSORS | JSON_VALUES), draw(st.booleans()))


def _mutate(state_file: Path, kind: str, args) -> None:
    import hashlib

    from safetensors.torch import save as st_save

    from regulab.io import load_state, load_tensors, save_state
    if kind == "bytes":
        data = bytearray(state_file.read_bytes())
        for where, byte in args[0]:
            data[min(int(where * len(data)), len(data) - 1)] = byte
        state_file.write_bytes(bytes(data if args[1] is None else data[:int(args[1] * len(data))]))
        return
    pick, value, sign = args
    if kind == "state":
        state = load_state(state_file)
        paths = _paths(state)
        path = paths[pick % len(paths)]
        old = state
        for p in path:
            old = old[p]
        _replace_at(state, path, value(old) if callable(value) and hasattr(old, "clone") else
                    DROP if callable(value) else value)
        save_state(state_file, state)
        return
    tensors, meta = load_tensors(state_file)
    doc = json.loads(meta["regulab"])
    digest = doc.pop("skeleton_sha256")
    paths = _paths(doc["state"])
    _replace_at(doc["state"], paths[pick % len(paths)], DROP if callable(value) else value)
    doc["skeleton_sha256"] = hashlib.sha256(json.dumps(doc).encode()).hexdigest() if sign else digest
    state_file.write_bytes(st_save(tensors, metadata={**meta, "regulab": json.dumps(doc)}))


@settings(max_examples=max(1, EXAMPLES // 2))
@given(checkpoint_mutations())
def test_fuzzed_checkpoint_mutations(runs, mutation):   # noqa: F811 (the imported fixture)
    """``regulab resume`` of a mutated checkpoint: refused in one line with the run directory and
    the store as they were, or resumed to a finished run."""
    with case() as root:
        run_dir, db = copy_run(runs, root)
        _mutate(run_dir / STATE, *mutation)
        files, rows = run_files(run_dir), store_rows(db)
        code, err = cli(["resume", str(run_dir), "--quiet"])
        event(f"exit {code}")
        assert "Traceback" not in err and code in (0, 2, 3), (code, err)
        if code == 2:
            assert err.count("\n") == 1 and "checkpoint" in err, err
            assert run_files(run_dir) == files and store_rows(db) == rows, err
        elif code == 0:
            assert (run_dir / "results.json").is_file(), err
