"""The fuzz suite (issue 16), data files: Hypothesis generates CSV files (ragged rows, junk cells,
empty, huge numbers, NaN, one class), npz files (wrong keys, shapes, dtypes, zero rows or
features, pickled arrays), WAV files (truncated headers, zero or huge rates, zero or many
channels, odd bit depths) and image folders (corrupt, cut short, mixed sizes and modes); each case
holds ``tests.fuzzing``'s property. Every failure found was fixed at its source and is kept as an
``@example`` (the fixed corpus).
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from .fuzzing import BASE, FLOATS, case, fuzz_environment, train_case  # noqa: F401


# -- (b) data files -------------------------------------------------------------------------------

def _data_config(dataset: str, extra: str = "", data: str = "") -> str:
    """BASE on ``dataset``, with ``data`` lines in its [data] table and ``extra`` tables."""
    return BASE.replace('dataset = "moons"\nn_samples = 120', f"dataset = {json.dumps(dataset)}\n{data}") + extra


FOLDER_SPLIT = "split = [0.5, 0.5, 0.0]"     # 4 + 4 files: enough rows for a stratified split


CELLS = (st.integers(-2, 3).map(str) | st.floats(allow_nan=True, allow_infinity=True).map(repr)
         | st.sampled_from(["", "nan", "inf", "x", "1e400", "9" * 400, " 1", "1,5", '"', "0x1f", "-0"]))


@st.composite
def csv_texts(draw) -> str:
    """A header and rows, ragged or not, of numbers and junk; the label column ``y`` or missing."""
    width = draw(st.integers(1, 4))
    header = draw(st.lists(st.sampled_from(["a", "b", "y", "", "a b"]), min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(CELLS, min_size=max(1, width - 1), max_size=width + 1), max_size=30))
    if draw(st.booleans()):     # numbers of 1-3 classes, perhaps one row of junk: some of these train
        header = [*"abc"[:width - 1], "y"]
        k = draw(st.sampled_from([2, 2, 1, 3]))     # classes; 1: one class
        rows = [[str(i % 3 + j) for j in range(width - 1)] + [str(i % k)] for i in range(draw(st.integers(0, 40)))]
        if rows and draw(st.booleans()):
            rows[draw(st.integers(0, len(rows) - 1))] = draw(st.lists(CELLS, max_size=width + 1))
    return "\n".join(",".join(r) for r in [header, *rows]) + draw(st.sampled_from(["", "\n", "\n\n", ","]))


@given(csv_texts(), st.sampled_from(['target = "y"\n', 'target = "y"\n', 'target = "zz"\n', '',
                                     'target = "y"\ntask = "regression"\n']))
def test_fuzzed_csv(text, target):
    with case() as root:
        (root / "d.csv").write_text(text)
        train_case(root, _data_config("csv:d.csv", data=target))


DTYPES = ["float32", "float64", "float16", "int64", "int8", "uint8", "bool", "complex64", "<U2", "object"]


@st.composite
def arrays(draw, labels: bool) -> np.ndarray:
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    n = int(np.prod(shape))
    values = draw(st.lists(st.integers(0, 2) if labels else FLOATS, min_size=n, max_size=n))
    if dtype == "object":
        return np.array(values + [None], dtype=object)[:n].reshape(shape)
    with np.errstate(all="ignore"):
        return np.asarray(values, dtype=np.float64).astype(dtype).reshape(shape)


@st.composite
def npz_arrays(draw) -> dict[str, np.ndarray]:
    """X and y of wrong shapes, dtypes, sizes, or other keys; or a valid pair with a defect."""
    if draw(st.booleans()):
        n, d = draw(st.integers(0, 40)), draw(st.integers(0, 3))
        arrays_ = {"X": np.arange(n * d, dtype=np.float32).reshape(n, d) % 5, "y": np.arange(n) % 2}
        key = draw(st.sampled_from([None, "X", "y", "X_val", "y_val", "X_test", "y_test", "x"]))
        if key is not None:
            arrays_[key] = draw(arrays(labels=key.startswith("y")))
        return arrays_
    keys = draw(st.lists(st.sampled_from(["X", "y", "X_val", "y_val", "Y", "data"]), max_size=4, unique=True))
    return {k: draw(arrays(labels=k.startswith("y"))) for k in keys}


@given(npz_arrays())
@example({"X": np.zeros((1, 0), np.float32), "y": np.array(0.0, np.float32)}).via(
    "found: a 0-d y raised TypeError (len() of unsized object)")
def test_fuzzed_npz(data):
    with case() as root:
        np.savez(root / "d.npz", **data)
        train_case(root, _data_config("npz:d.npz"))


def wav(rate: int, channels: int, bits: int, fmt: int, frames: int, cut: int | None) -> bytes:
    """A PCM WAV file with these header fields (block align and byte rate follow them), cut to
    ``cut`` bytes."""
    block = channels * bits // 8
    data = (bytes(range(256)) * 16)[:max(0, frames * block)]      # at most 4 kB of samples
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, (rate * block) % 2**32, block % 2**16, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", len(data)) + data
    out = b"RIFF" + struct.pack("<I", len(body)) + body
    return out if cut is None else out[:cut]


WAVS = st.builds(wav, rate=st.sampled_from([8000, 0, 1, 3, 44100, 7919, 2**32 - 1]),
                 channels=st.sampled_from([1, 2, 0, 7, 65535]), bits=st.sampled_from([16, 8, 0, 24, 32, 12]),
                 fmt=st.sampled_from([1, 3, 0, 65534]), frames=st.integers(0, 400),
                 cut=st.none() | st.integers(0, 60))
GOOD_WAV = wav(8000, 1, 16, 1, 400, None)
AUDIO = '[audio]\nsample_rate = 8000\nseconds = 0.05\nfeatures = "waveform"\n'


@given(st.lists(WAVS, min_size=1, max_size=3))
@example([wav(8000, 1, 0, 1, 0, None)]).via("found: scipy's ZeroDivisionError on 0 bits per sample")
@example([wav(8000, 0, 16, 1, 0, None)]).via("found: scipy's ZeroDivisionError on 0 channels")
@example([wav(7919, 1, 16, 1, 400, None)]).via("found: a 63-million-tap resampling filter (GBs, minutes)")
@example([wav(2**32 - 1, 1, 16, 1, 400, None)]).via("found: a filter of 10^12 taps for a 4 GHz rate")
def test_fuzzed_wav_files(files):
    with case() as root:
        for cls in ("a", "b"):
            for i in range(4):
                (root / "w" / cls).mkdir(parents=True, exist_ok=True)
                (root / "w" / cls / f"{i}.wav").write_bytes(GOOD_WAV)
        for i, data in enumerate(files):
            (root / "w" / "ab"[i % 2] / f"{i}.wav").write_bytes(data)
        train_case(root, _data_config("audio:w", AUDIO, FOLDER_SPLIT))


def png(side: int, mode: str) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new(mode, (side, side), 3).save(buf, format="PNG")
    return buf.getvalue()


@st.composite
def image_files(draw) -> bytes:
    """A tiny PNG of some mode and size, perhaps with bytes changed, cut short, or not a PNG."""
    data = bytearray(png(draw(st.sampled_from([4, 4, 4, 5, 1])), draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1"]))))
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return bytes(data) if draw(st.integers(0, 5)) else draw(st.binary(max_size=40))


@given(st.lists(image_files(), min_size=1, max_size=3))
@example([b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00IHDR" + png(4, "L")[16:]]).via(
    "found: an IHDR chunk of length 0 raised PIL's ValueError (Truncated IHDR chunk)")
@example([b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x04\x00\x00\x00\x04\x08\x02\x00\x00\x00&\x93\t)"
          b"\x00\x00\x00\x10IDATx\x9ccdf@\x00&\x06\x018\x00\x01\x9d\x00\x0b\x13\xb9*~\x00\x00\x00\x00"]).via(
    "found: a PNG cut in its IEND chunk raised PIL's SyntaxError (broken PNG file) reading pixels")
def test_fuzzed_image_folders(files):
    with case() as root:
        for cls in ("a", "b"):
            for i in range(4):
                (root / "im" / cls).mkdir(parents=True, exist_ok=True)
                (root / "im" / cls / f"{i}.png").write_bytes(png(4, "L"))
        for i, data in enumerate(files):
            (root / "im" / "ab"[i % 2] / f"{i}.png").write_bytes(data)
        train_case(root, _data_config("images:im", data=FOLDER_SPLIT))
