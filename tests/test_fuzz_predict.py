"""The fuzz suite (issue 16), ``regulab predict RUN_DIR INPUT``: Hypothesis generates its inputs
-- CSV files (junk cells, ragged rows, NaN, empty), npz files (wrong keys, shapes, dtypes, no
rows, NaN), files that are neither (junk bytes named .csv or .npz, other suffixes), image
folders -- against two finished tiny runs made once for the module (a classifier on 2
features, a regression on 1). Property: exit 0 with the predictions CSV (a header and one row
per sample, every number finite), or exit 2 with one line and no CSV written. Every failure
found was fixed at its source and is kept as an ``@example``.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from .fuzzing import BASE, case, cli, fuzz_environment  # noqa: F401
from .test_fuzz_data import CELLS, arrays, image_files


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    """Two finished runs: "moons" (classification, 2 features), "sine" (regression, 1)."""
    root = tmp_path_factory.mktemp("predict-runs")
    made = {}
    for name, data in (("moons", 'dataset = "moons"\nn_samples = 120\npreprocess = "standardize"'),
                       ("sine", 'dataset = "sine"')):
        config = root / f"{name}.toml"
        config.write_text(BASE.replace('dataset = "moons"\nn_samples = 120', data))
        code, err = cli(["train", str(config), "--out", str(root / name), "--db", f"sqlite:///{root / 'r.db'}",
                         "--quiet"])
        assert code == 0, err
        made[name] = str(root / name)
    return made


def _npz(arrays_: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays_)
    return buf.getvalue()


WIDTH = {"moons": 2, "sine": 1}      # the runs' features


@st.composite
def inputs(draw, features: int) -> tuple[str, bytes | dict[str, bytes]]:
    """(file name, its bytes) or (folder name, {file name: bytes}): a CSV of junk or of numbers,
    mostly ``features`` columns wide, an npz, junk bytes, an empty file, an image folder."""
    kind = draw(st.sampled_from(["csv", "csv", "csv", "npz", "npz", "npz", "junk", "folder"]))
    event(f"input {kind}")
    if kind == "csv":
        width = draw(st.sampled_from([features, features, features, 0, 1, 3]))
        header = draw(st.sampled_from([["a", "b", "c"][:width], ["a", "b", "c"][:width], ["x"] * width,
                                       ["a", "y", "b"][:width]]))
        if draw(st.integers(0, 3)):     # numbers: these predict
            rows = [[str(float(i * j % 7) - 3) for j in range(width)] for i in range(draw(st.integers(0, 20)))]
            if rows and not draw(st.integers(0, 3)):
                rows[draw(st.integers(0, len(rows) - 1))] = draw(st.lists(CELLS, max_size=width + 1))
        else:
            rows = draw(st.lists(st.lists(CELLS, max_size=width + 1), max_size=10))
        text = "\n".join(",".join(r) for r in [header, *rows]) + draw(st.sampled_from(["", "\n", "\n\n"]))
        return "in.csv", text.encode()
    if kind == "npz":
        if draw(st.integers(0, 3)):     # mostly the run's width, perhaps a NaN or another dtype
            n, d = draw(st.integers(0, 20)), draw(st.sampled_from([features, features, features, 3]))
            X = (np.arange(n * d, dtype=np.float64).reshape(n, d) % 5) - 2
            if n and not draw(st.integers(0, 3)):
                X[draw(st.integers(0, n - 1)), 0] = draw(st.sampled_from([math.nan, math.inf, 1e300]))
            with np.errstate(all="ignore"):
                X = X.astype(draw(st.sampled_from(["float32", "float64", "int64", "float16"])))
            return "in.npz", _npz({draw(st.sampled_from(["X", "X", "data"])): X})
        keys = draw(st.lists(st.sampled_from(["X", "y", "data"]), max_size=3, unique=True))
        return "in.npz", _npz({k: draw(arrays(labels=False)) for k in keys})
    if kind == "junk":      # bytes, an empty file, an npz cut short or with a byte changed
        name = draw(st.sampled_from(["in.csv", "in.npz", "in.txt", "in", "in.NPZ"]))
        data = bytearray(_npz({"X": np.ones((2, features)), "y": np.ones(2)}))
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return name, draw(st.binary(max_size=60) | st.just(b"") | st.just(bytes(data))
                          | st.integers(0, len(data)).map(lambda cut: bytes(data[:cut])))
    files = {f"{i}{draw(st.sampled_from(['.png', '.png', '.jpg', '.txt']))}": draw(image_files())
             for i in range(draw(st.integers(0, 3)))}
    return "in", files


def _write(root, name: str, data) -> str:
    path = root / name
    if isinstance(data, dict):
        path.mkdir()
        for f, b in data.items():
            (path / f).write_bytes(b)
    else:
        path.write_bytes(data)
    return str(path)


@given(st.sampled_from(sorted(WIDTH)).flatmap(lambda run: st.tuples(st.just(run), inputs(WIDTH[run]))))
@example(("moons", ("in.npz", b"\x00"))).via("found: np.load's ValueError (pickled data refused) raised")
@example(("moons", ("in.npz", b""))).via("found: np.load's EOFError on an empty .npz raised")
@example(("moons", ("in.npz", _npz({"X": np.ones((2, 2))})[:-22]))).via("found: BadZipFile raised")
@example(("moons", ("in.npz", _npz({"X": np.zeros((0, 2))})))).via(
    "found: no samples raised IndexError (softmax of an empty output)")
@example(("sine", ("in.csv", b"a\n1e300\n"))).via("found: a value beyond float32 predicted NaN, exit 0")
@example(("moons", ("in.npz", _npz({"X": np.array([[1e300, 0.0]])})))).via(
    "found: a value beyond float32 predicted NaN, exit 0")
def test_fuzzed_predict_inputs(runs, case_):    # noqa: F811 (the fixture above)
    run, item = case_
    with case() as root:
        path = _write(root, *item)
        out = root / "p.csv"
        code, err = cli(["predict", runs[run], path, "--out", str(out)])
        event(f"exit {code}")
        assert "Traceback" not in err and code in (0, 2), (code, err)
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("regulab: error: "), err
            assert not out.exists() and not [p for p in os.listdir(root) if p.startswith(".")], err
        else:
            lines = out.read_text().splitlines()
            assert lines[0].startswith("input,") and len(lines) >= 1
            for line in lines[1:]:
                assert all(math.isfinite(float(v)) for v in line.split(",")[1 + (run == "moons"):]), line
