"""``images:DIR``: one sub-folder per class (sorted folder names are the classes) of
.png/.jpg/.jpeg files of one size -> (N, C, H, W) float32 in [0, 1].

Grayscale ("L") when every file is grayscale, else RGB (alpha dropped). Resizing belongs to the
image section's augmentation (``[image] resize``), not here. ``lazy``: only the headers are read
now; each image is decoded when its row is read (``ImageFiles`` behind a
``regulab.data.stream.Rows``), so a folder larger than memory can stream.

Every file is opened by ``open_image``: a regular file of at most ``paths.IMAGE_BYTES``, whose
header says at most ``MAX_PIXELS`` pixels, checked before any pixel is decoded -- so a
decompression bomb (a small, highly compressed file of 10^9 pixels) is refused in one line
naming it, PIL's ``DecompressionBombWarning`` and ``DecompressionBombError`` included.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from regulab.checks import MAX_SIDE
from regulab.data.dataset import Dataset
from regulab.data.files import class_folders, existing_path
from regulab.data.stream import Rows
from regulab.errors import DataError, invalid
from regulab.paths import IMAGE_BYTES, regular_file

__all__ = ["read", "read_images", "ImageFiles", "IMAGE_SUFFIXES", "MAX_PIXELS", "open_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_PIXELS = MAX_SIDE * MAX_SIDE    # pixels of one image file: 4096 x 4096 (checks.MAX_SIDE squared)
_GRAY_MODES = {"1", "L", "LA"}


def open_image(path: Path, shown: str | Path, where: str) -> Any:
    """The PIL image of ``path``, its header read, no pixel decoded yet: a regular file of at
    most ``IMAGE_BYTES`` of at most ``MAX_PIXELS`` pixels, else ``DataError`` naming ``where``
    and the file as ``shown``."""
    from PIL import Image
    regular_file(shown, f"{where}: file", max_bytes=IMAGE_BYTES)     # shown: the same file
    try:
        with warnings.catch_warnings():     # PIL warns of a bomb above its own limit: refused here
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise DataError(f"{where}: file '{shown}' holds more pixels than allowed (PIL: {e.args[0].split(',')[0]}); "
                        f"allowed: at most {MAX_PIXELS} (4096 x 4096, MAX_PIXELS)") from None
    except (OSError, ValueError, SyntaxError) as e:     # ValueError: a PNG chunk cut short
        raise DataError(f"{where}: file '{shown}' cannot be read as an image ({type(e).__name__})") from None
    W, H = im.size
    if W * H > MAX_PIXELS:
        im.close()
        raise DataError(f"{where}: file '{shown}' is {W}x{H} (WxH), {W * H} pixels; allowed: at most "
                        f"{MAX_PIXELS} (4096 x 4096, MAX_PIXELS)")
    return im


class ImageFiles:
    """Image files decoded one at a time: ``self[j]`` is file j as (C, H, W) float32 in [0, 1];
    ``size`` (W, H): resized to it after the conversion to ``mode`` (a trained run's input size)."""

    def __init__(self, files: list[Path], mode: str, root: Path, path_text: str,
                 size: tuple[int, int] | None = None):
        self.files, self.mode, self.root, self.path_text = files, mode, root, path_text
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, j: int) -> np.ndarray:
        from PIL import Image
        f, where = self.files[j], f"images dir '{self.path_text}'"
        shown = Path(self.path_text) / f.relative_to(self.root)
        with open_image(f, shown, where) as im:
            try:
                im = im.convert(self.mode)
                pixels = np.asarray(im if self.size is None else im.resize(self.size), dtype=np.uint8)  # (H, W[, 3])
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # SyntaxError: PIL's
                raise DataError(f"{where}: file '{shown}' cannot be decoded ({e})") from None   # broken PNG
        return (pixels[None] if self.mode == "L" else pixels.transpose(2, 0, 1)) / 255.0


def read_images(spec: str, path_text: str, *, task: str, lazy: bool = False) -> Dataset:
    """Read ``images:DIR``: DIR/<class>/<file>.png|jpg|jpeg -> (N, C, H, W) float32 in [0, 1]."""
    root = existing_path(path_text, "images")
    where = f"images dir '{path_text}'"
    if task == "regression":
        raise invalid("data.task", f"auto or classification for {spec!r} (class folders give labels)",
                      task, error=DataError)
    samples, classes = class_folders(root, where, IMAGE_SUFFIXES)

    def shown(f: Path) -> str:
        return str(Path(path_text) / f.relative_to(root))

    size, modes = None, set()
    for f, _ in samples:  # pass 1: headers only (size, mode)
        with open_image(f, shown(f), where) as im:
            if size is None:
                size, first = im.size, f
            elif im.size != size:
                raise DataError(f"{where}: file '{shown(f)}' is {im.size[0]}x{im.size[1]} (WxH) but "
                                f"'{shown(first)}' is {size[0]}x{size[1]}; all images must have the "
                                "same size (resizing belongs to augmentation)")
            modes.add(im.mode)
    mode = "L" if modes <= _GRAY_MODES else "RGB"
    W, H = size
    y = np.asarray([label for _, label in samples], dtype=np.int64)
    described = (f"{where}: {len(samples)} {mode} images of {W}x{H} (WxH) in {len(classes)} "
                 "class folders")
    X = Rows(ImageFiles([f for f, _ in samples], mode, root, path_text), (1 if mode == "L" else 3, H, W))
    if not lazy:    # pass 2: pixels
        X = np.asarray(X)  # (N, C, H, W)
    return Dataset(spec, X, y, "classification", classes, description=described, modality="image")


def read(spec: str, path: str, section, *, task: str) -> Dataset:
    """``images:DIR`` for ``load_dataset`` (the ``[image]`` section changes nothing in reading)."""
    return read_images(spec, path, task=task)
