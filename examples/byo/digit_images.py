"""Write scikit-learn's 8x8 digits as a folder of PNG images, one sub-folder per class, scaled up
to 32x32 -- a stand-in for your own image folder:

    .venv/bin/python examples/byo/digit_images.py runs/digit-images
    regulab train examples/byo/images_resnet.toml --set data.dataset=images:runs/digit-images
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main(out: str) -> None:
    X, y = load_digits(return_X_y=True)
    for i, (pixels, label) in enumerate(zip(X, y)):
        folder = Path(out) / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray((pixels.reshape(8, 8) * 255 / 16).astype(np.uint8))
        image.resize((32, 32), Image.NEAREST).save(folder / f"{i:04d}.png")
    print(f"{len(X)} images in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/digit-images")
