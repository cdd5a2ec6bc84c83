"""``images:DIR``: one sub-folder per class (sorted folder names are the classes) of
.png/.jpg/.jpeg files of one size -> (N, C, H, W) float32 in [0, 1].

Grayscale ("L") when every file is grayscale, else RGB (alpha dropped). Resizing belongs to the
image section's augmentation (``[image] resize``), not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regulab.data.dataset import Dataset
from regulab.data.files import class_folders, existing_path
from regulab.errors import DataError, invalid

__all__ = ["read", "read_images", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY_MODES = {"1", "L", "LA"}


def read_images(spec: str, path_text: str, *, task: str) -> Dataset:
    """Read ``images:DIR``: DIR/<class>/<file>.png|jpg|jpeg -> (N, C, H, W) float32 in [0, 1]."""
    from PIL import Image

    root = existing_path(path_text, "images")
    where = f"images dir '{path_text}'"
    if task == "regression":
        raise invalid("data.task", f"auto or classification for {spec!r} (class folders give labels)",
                      task, error=DataError)
    samples, classes = class_folders(root, where, IMAGE_SUFFIXES)

    def shown(f: Path) -> str:
        return str(Path(path_text) / f.relative_to(root))

    def open_image(f: Path):
        try:
            return Image.open(f)
        except (OSError, Image.DecompressionBombError) as e:
            raise DataError(f"{where}: file '{shown(f)}' cannot be read as an image "
                            f"({type(e).__name__})") from None

    size, modes = None, set()
    for f, _ in samples:  # pass 1: headers only (size, mode)
        with open_image(f) as im:
            if size is None:
                size, first = im.size, f
            elif im.size != size:
                raise DataError(f"{where}: file '{shown(f)}' is {im.size[0]}x{im.size[1]} (WxH) but "
                                f"'{shown(first)}' is {size[0]}x{size[1]}; all images must have the "
                                "same size (resizing belongs to augmentation)")
            modes.add(im.mode)
    mode = "L" if modes <= _GRAY_MODES else "RGB"
    W, H = size
    X = np.empty((len(samples), 1 if mode == "L" else 3, H, W), dtype=np.float32)  # (N, C, H, W)
    for i, (f, _) in enumerate(samples):  # pass 2: pixels
        with open_image(f) as im:
            try:
                pixels = np.asarray(im.convert(mode), dtype=np.uint8)  # (H, W) or (H, W, 3)
            except (OSError, ValueError) as e:
                raise DataError(f"{where}: file '{shown(f)}' cannot be decoded ({e})") from None
        X[i] = (pixels[None] if mode == "L" else pixels.transpose(2, 0, 1)) / 255.0
    y = np.asarray([label for _, label in samples], dtype=np.int64)
    return Dataset(spec, X, y, "classification", classes,
                   description=f"{where}: {len(samples)} {mode} images of {W}x{H} (WxH) in "
                               f"{len(classes)} class folders", modality="image")


def read(spec: str, path: str, section, *, task: str) -> Dataset:
    """``images:DIR`` for ``load_dataset`` (the ``[image]`` section changes nothing in reading)."""
    return read_images(spec, path, task=task)
