"""Image files are bounded before they are decoded (issue 16): at most ``paths.IMAGE_BYTES`` a
file and ``MAX_PIXELS`` pixels by its header. Decompression bombs -- a few KB of PNG holding
25 million, 100 million (PIL warns) or 400 million pixels (PIL raises) -- an oversized file, a
FIFO named like an image: each is one line naming the file, exit 2, nothing written, for
``regulab train`` on ``images:DIR`` (eager or streamed) and for ``regulab predict``."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regulab.cli import main
from regulab.errors import DataError
from regulab.modalities.image.reader import MAX_PIXELS, read_images
from regulab.paths import IMAGE_BYTES

from .conftest import assert_refused, write


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, side: int, pixels: bool = True) -> Path:
    """A grayscale PNG of side x side black pixels, compressed row by row (side = 10000: 100
    million pixels in about 100 KB); ``pixels`` False: the header only (no IDAT), as small as
    a PNG gets whatever it claims."""
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))]
    if pixels:
        z, row, body = zlib.compressobj(9), b"\x00" * (side + 1), []    # filter byte + a black row
        body = [z.compress(row) for _ in range(side)] + [z.flush()]
        out.append(_chunk(b"IDAT", b"".join(body)))
    out.append(_chunk(b"IEND", b""))
    path.write_bytes(b"".join(out))
    return path


def _folder(root: Path, n: int = 4) -> Path:
    """root/<a|b>/<i>.png: 6x6 grayscale images, ``n`` per class."""
    rng = np.random.default_rng(0)
    for label, value in (("a", 40), ("b", 210)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.clip(rng.normal(value, 20, size=(6, 6)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_the_bounds():
    assert MAX_PIXELS == 4096 * 4096 and IMAGE_BYTES == 64 * 2**20


def _bad(kind: str, path: Path) -> list[str]:
    """Put the bad file ``kind`` at ``path``; the words its refusal names."""
    if kind == "bomb-25M":      # under PIL's own limit: regulab's catches it
        Image.new("L", (5000, 5000)).save(path)
        return ["5000x5000", "25000000 pixels", str(MAX_PIXELS)]
    if kind == "bomb-100M":     # PIL warns (DecompressionBombWarning)
        png_bomb(path, 10000)
        return ["more pixels than allowed", "100000000 pixels", str(MAX_PIXELS)]
    if kind == "bomb-400M":     # PIL raises (DecompressionBombError), from a header alone
        png_bomb(path, 20000, pixels=False)
        return ["more pixels than allowed", "400000000 pixels", str(MAX_PIXELS)]
    if kind == "oversized":     # a valid PNG, then a sparse tail past the bound
        Image.new("L", (6, 6)).save(path)
        os.truncate(path, IMAGE_BYTES + 1)
        return [f"{IMAGE_BYTES + 1} bytes", f"at most {IMAGE_BYTES}"]
    os.mkfifo(path)             # a reader would block on it for ever
    return ["FIFO", "must be a regular file"]


KINDS = ["bomb-25M", "bomb-100M", "bomb-400M", "oversized", "fifo"]


def test_a_bomb_file_is_small():
    """What makes a bomb: 100 million pixels in well under 1 MB."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        assert png_bomb(Path(tmp) / "b.png", 10000).stat().st_size < 2**20


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "fifo"])
@pytest.mark.parametrize("lazy", [False, True])
def test_the_reader_refuses_it_naming_the_file(tmp_path, kind, lazy):
    root = _folder(tmp_path / "imgs")
    words = _bad(kind, root / "b" / "bad.png")
    with pytest.raises(DataError) as e:
        read_images(f"images:{root}", str(root), task="auto", lazy=lazy)
    msg = str(e.value)
    assert "\n" not in msg and f"{root}/b/bad.png" in msg, msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("kind", ["bomb-100M", "oversized"])
def test_train_refuses_it_and_writes_nothing(workdir, capsys, kind):
    _folder(workdir / "imgs")
    words = _bad(kind, workdir / "imgs" / "a" / "bad.png")
    cfg = write(workdir / "c.toml", '[data]\ndataset = "images:imgs"\nsplit = [0.5, 0.25, 0.25]\n'
                                    "[model]\nhidden = [4]\n[train]\nepochs = 1\nbatch_size = 4\n")
    code = main(["train", str(cfg), "--out", "out", "--quiet"])
    assert_refused(capsys, code, ["imgs/a/bad.png", *words], workdir)
    assert not (workdir / "runs").exists()


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, data_cache) -> Path:
    """A finished run on 6x6 grayscale images."""
    root = tmp_path_factory.mktemp("imgrun")
    _folder(root / "imgs")
    cfg = write(root / "c.toml", f'[data]\ndataset = "images:{root / "imgs"}"\nsplit = [0.5, 0.25, 0.25]\n'
                                 "[model]\nhidden = [4]\n[train]\nepochs = 1\nbatch_size = 4\n")
    os.environ["REGULAB_CACHE"] = str(data_cache)
    assert main(["train", str(cfg), "--out", str(root / "run"), "--db", f"sqlite:///{root / 'r.db'}",
                 "--quiet"]) == 0
    return root / "run"


@pytest.mark.parametrize("kind", KINDS)
def test_predict_refuses_it_naming_the_file(image_run, workdir, capsys, kind):
    _folder(workdir / "inputs", n=1)
    words = _bad(kind, workdir / "inputs" / "b" / "bad.png")
    code = main(["predict", str(image_run), "inputs", "--out", "p.csv"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    for w in ["inputs/b/bad.png", *words]:
        assert w in err, (w, err)
    assert not (workdir / "p.csv").exists()


def test_predict_takes_the_good_images(image_run, workdir):
    _folder(workdir / "inputs", n=1)
    assert main(["predict", str(image_run), "inputs", "--out", "p.csv"]) == 0
    assert len((workdir / "p.csv").read_text().splitlines()) == 3     # a header and 2 images
