"""The fuzz suite (issue 16), data files: Hypothesis generates CSV files (ragged rows, junk cells,
empty, huge numbers, NaN, one class), npz files (wrong keys, shapes, dtypes, zero rows or
features, pickled arrays), WAV files (truncated headers, zero or huge rates, zero or many
channels, odd bit depths), image folders (corrupt, cut short, mixed sizes and modes), text
sources (``text:`` CSVs with missing columns, empty cells, blank and huge lines, other
encodings; folders of .txt files) and video folders (tiny clips written by OpenCV, cut short,
bytes changed, junk named .mp4/.avi/.mkv/.mov; skipped without OpenCV); each case holds
``tests.fuzzing``'s property. Every failure found was fixed at its source and is kept as an
``@example`` (the fixed corpus).
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from .fuzzing import BASE, FLOATS, case, cases, fuzz_environment, train_case  # noqa: F401


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


# -- text sources ---------------------------------------------------------------------------------

WORDS = ["good", "bad", "film", "movie", "great", "awful", "plot", "the", "a", "not"]
TEXTS = (st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)
         | st.text(max_size=30) | st.sampled_from(["", " ", "!!!", "é à ü", "\x00", "1 2 3", "a" * 5000]))
TEXT_SECTION = st.sampled_from(["", "", '[text]\nfeatures = "bow"\n', '[text]\nmax_features = 3\nmin_df = 2\n',
                                '[text]\nstopwords = true\nstem = true\n', '[text]\ncopies = 1\nchar_prob = 0.3\n',
                                '[text]\ntext_column = "review"\n', '[text]\nlanguage = "spanish"\n'])


def _encoded(draw, text: str) -> bytes:
    """``text`` as UTF-8 (with a byte-order mark, perhaps) or another encoding."""
    encoding = draw(st.sampled_from(["utf-8"] * 4 + ["utf-8-sig", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


@st.composite
def text_csvs(draw) -> bytes:
    """A CSV of texts and labels (2-3 classes, every row whole: some of these train), or with
    junk: missing or extra columns, empty cells, blank and huge lines, other encodings."""
    header = draw(st.sampled_from([["text", "label"]] * 3 + [["label", "text"], ["text"], ["txt", "label"],
                                                             ["text", "label", "extra"], ["text", "text"]]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    k = draw(st.sampled_from([2, 2, 3, 1]))
    n = draw(st.integers(0, 16) | st.integers(8, 16))
    junk = draw(st.integers(-1, n)) if not draw(st.integers(0, 2)) else -1    # a row of junk text
    for i in range(n):
        text = draw(TEXTS) if i == junk else " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6)))
        row = {"text": text, "label": str(i % k), "txt": "x", "extra": ""}
        writer.writerow([row.get(c, "") for c in header])
        if not draw(st.integers(0, 19)):
            out.write(draw(st.sampled_from(["\n", ",,,\n", "only one\n", '"unclosed\n'])))
    return _encoded(draw, out.getvalue())


@settings(max_examples=cases(60, 400))
@given(text_csvs(), TEXT_SECTION)
@example(b"text,label\n" + b"good film,0\nbad film,1\n" * 4, "").via("a valid file: it trains")
def test_fuzzed_text_csv(data, section):
    with case() as root:
        (root / "t.csv").write_bytes(data)
        train_case(root, _data_config("text:t.csv", section, FOLDER_SPLIT))


@settings(max_examples=cases(50, 300))
@given(st.lists(st.tuples(st.sampled_from(["pos", "neg", ".hidden", "x"]), TEXTS,
                          st.sampled_from([".txt", ".txt", ".TXT", ".md"])), min_size=1, max_size=6),
       TEXT_SECTION, st.data())
def test_fuzzed_text_folders(files, section, data):
    """A folder of class sub-folders of .txt files: the four good ones and some of junk."""
    with case() as root:
        for cls in ("pos", "neg"):
            for i in range(4):
                (root / "tx" / cls).mkdir(parents=True, exist_ok=True)
                (root / "tx" / cls / f"{i}.txt").write_text(f"{cls} {WORDS[i]} film")
        for i, (cls, text, suffix) in enumerate(files):
            (root / "tx" / cls).mkdir(parents=True, exist_ok=True)
            (root / "tx" / cls / f"f{i}{suffix}").write_bytes(_encoded(data.draw, text))
        train_case(root, _data_config("text:tx", section, FOLDER_SPLIT))


# -- video sources (OpenCV) -----------------------------------------------------------------------

@functools.cache
def clip(frames: int, side: int, fourcc: str, suffix: str) -> bytes:
    """A tiny clip of moving noise, written by OpenCV (MJPG .avi, mp4v .mp4), as bytes."""
    import tempfile

    import cv2
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/c{suffix}"
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10, (side, side), True)
        for t in range(frames):
            writer.write(np.roll(np.arange(side * side * 3, dtype=np.uint8).reshape(side, side, 3), t, axis=1))
        writer.release()
        return Path(path).read_bytes() if Path(path).is_file() else b""    # no frame: no file


@st.composite
def video_files(draw) -> tuple[str, bytes]:
    """(suffix, bytes): a clip of 0-6 frames, perhaps cut short or with bytes changed, or junk."""
    fourcc, suffix = draw(st.sampled_from([("MJPG", ".avi"), ("mp4v", ".mp4")]))
    data = bytearray(clip(draw(st.integers(0, 6)), draw(st.sampled_from([8, 8, 2, 1])), fourcc, suffix))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if not draw(st.integers(0, 3)):
        del data[draw(st.integers(0, len(data))):]
    if not draw(st.integers(0, 4)):
        data = bytearray(draw(st.binary(max_size=64)))
    return draw(st.sampled_from([suffix, suffix, ".mkv", ".mov"])), bytes(data)


VIDEO = st.sampled_from(['[video]\nframes = 2\nsize = 8\n', '[video]\nframes = 3\nsize = [8, 6]\ngray = false\n',
                         '[video]\nframes = 2\nsize = 8\nflow = true\nsampling = "motion"\n'])


@pytest.mark.skipif(importlib.util.find_spec("cv2") is None,
                    reason="video sources need OpenCV (pip install opencv-python-headless)")
@settings(max_examples=cases(25, 150))
@given(st.lists(video_files(), min_size=1, max_size=2), VIDEO)
def test_fuzzed_video_folders(files, section):
    """A folder of class sub-folders of clips: four good ones (4 frames, 8x8) and generated ones."""
    with case() as root:
        for cls in ("a", "b"):
            for i in range(2):
                (root / "v" / cls).mkdir(parents=True, exist_ok=True)
                (root / "v" / cls / f"{i}.avi").write_bytes(clip(4, 8, "MJPG", ".avi"))
        for i, (suffix, data) in enumerate(files):
            (root / "v" / "ab"[i % 2] / f"g{i}{suffix}").write_bytes(data)
        train_case(root, _data_config("video:v", section, FOLDER_SPLIT))
