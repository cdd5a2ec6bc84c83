"""Video clips as arrays: reading, the ``[video]`` pipeline (read, sample frames, add flow;
``regulab.modalities.video.features``) and ``video:DIR`` data sets.

Reading (``read_video``): OpenCV's ``cv2.VideoCapture`` decodes BGR uint8 frames; each frame is
converted to RGB (or to gray, ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``), resized
with ``cv2.INTER_AREA`` (pixel-area averaging, the right filter for shrinking) and scaled to
float32 in [0, 1]. A clip is ``(T, C, H, W)`` with C = 3 (RGB) or 1 (gray).

Data set (``load_video_dir``): DIR/<class>/<clip>.mp4|avi|mov|mkv; each clip becomes
``(k, C', H, W)`` (C' = C, or C + 2 with flow) and its frames are stacked into channels,
``(k * C', H, W)`` frame-major (channels of frame 0 first), so that a 2-D CNN sees the clip as one
image with k * C' channels: the early fusion of Karpathy et al. 2014, "Large-scale Video
Classification with Convolutional Neural Networks".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regulab.data.dataset import Dataset
from regulab.data.files import class_folders
from regulab.errors import DataError, invalid
from regulab.paths import regular_file
from regulab.modalities.video.features import flow_at, opencv, sample_motion, sample_uniform, whole
from regulab.modalities.video.section import VideoConfig

__all__ = ["VIDEO_SUFFIXES", "read", "read_video", "VideoPipeline", "load_video_dir"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def _hw(name: str, size) -> tuple[int, int] | None:
    """``None``, a side length (square) or ``(height, width)`` -> ``(h, w)``."""
    if size is None:
        return None
    if whole(size, 1):
        return int(size), int(size)
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(whole(s, 1) for s in size):
        return int(size[0]), int(size[1])
    raise invalid(name, "an int >= 1 (square) or (height, width) of ints >= 1", size, kind="argument")


def read_video(path, *, size=None, gray: bool = False, max_frames: int | None = None) -> np.ndarray:
    """Decode a clip into float32 ``(T, C, H, W)`` in [0, 1]: C = 3 (RGB) or 1 (``gray``).

    size: None (the clip's own size), an int (square ``size x size``) or ``(height, width)``;
    frames are resized one by one with ``cv2.INTER_AREA``. max_frames: stop after this many.
    Example: ``read_video("clip.mp4", size=(64, 64), gray=True)`` -> ``(T, 1, 64, 64)``.
    """
    hw = _hw("read_video.size", size)
    if not isinstance(gray, bool):
        raise invalid("read_video.gray", "True or False", gray, kind="argument")
    if max_frames is not None and not whole(max_frames, 1):
        raise invalid("read_video.max_frames", "an int >= 1 or None", max_frames, kind="argument")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video file '{path}': does not exist or is not a file")
    regular_file(path, "video file")      # readable; not a device or FIFO behind a symlink
    cv2 = opencv()
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"video file '{path}': cannot be opened as a video (OpenCV cannot decode it)")
        out = []
        while max_frames is None or len(out) < max_frames:
            ok, frame = cap.read()  # (H, W, 3) uint8 BGR
            if not ok:
                break
            if hw is not None and frame.shape[:2] != hw:
                frame = cv2.resize(frame, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)  # dsize is (w, h)
            if gray:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[:, :, None]  # (H, W, 1)
            else:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            out.append(frame.transpose(2, 0, 1))  # (C, H, W)
    finally:
        cap.release()
    if not out:
        raise DataError(f"video file '{path}': has no decodable frames")
    return np.stack(out).astype(np.float32) / np.float32(255.0)  # (T, C, H, W)


class VideoPipeline:
    """Path -> float32 ``(frames, C', H, W)``: read, resize, gray, sample, and optical flow.

    frames: k frames sampled per clip. sampling: "uniform" or "motion" (module doc). size: int
    (square) or (height, width). gray: C = 1, else 3 (RGB). flow: add Farneback flow ``t -> t+1``
    as 2 channels (C' = C + 2); frames are then sampled among 0..T-2, so a clip needs k + 1
    frames (k without flow). Built from a ``VideoConfig`` or from its keys. Example:
    ``VideoPipeline(frames=8, sampling="motion", flow=True)("a.mp4").shape`` is ``(8, 3, 64, 64)``.
    """

    def __init__(self, config: VideoConfig | None = None, **keys):
        c = config if config is not None else VideoConfig(**keys)   # each key checked once, there
        self.config = c
        self.frames, self.sampling, self.gray, self.flow = c.frames, c.sampling, c.gray, c.flow
        self.size = _hw("video.size", c.size)

    @property
    def channels(self) -> int:
        """C' per frame: 1 or 3, plus 2 with flow."""
        return (1 if self.gray else 3) + (2 if self.flow else 0)

    def output_shape(self) -> tuple[int, int, int, int]:
        """``(frames, C', H, W)`` of what ``__call__`` returns."""
        return (self.frames, self.channels, *self.size)

    def __call__(self, path) -> np.ndarray:
        clip = read_video(path, size=self.size, gray=self.gray)  # (T, C, H, W)
        candidates = len(clip) - 1 if self.flow else len(clip)  # with flow: frames with a successor
        if candidates < self.frames:
            need = self.frames + (1 if self.flow else 0)
            raise DataError(f"video file '{path}': has {len(clip)} frame(s) but video.frames = "
                            f"{self.frames}{' with flow' if self.flow else ''} needs at least {need}")
        if self.sampling == "uniform":
            idx = sample_uniform(candidates, self.frames)
        else:
            idx = sample_motion(clip[:candidates], self.frames)
        out = clip[idx]  # (k, C, H, W)
        if self.flow:   # flow only for the k sampled pairs (t, t+1)
            out = np.concatenate([out, flow_at(clip, idx)], axis=1)   # (k, C + 2, H, W)
        return out

    def __repr__(self) -> str:
        return (f"VideoPipeline(frames={self.frames}, sampling={self.sampling!r}, size={self.size}, "
                f"gray={self.gray}, flow={self.flow})")


def load_video_dir(path, *, progress: bool | None = None, config: VideoConfig | None = None,
                   **keys) -> Dataset:
    """Read ``video:DIR``: DIR/<class>/<clip>.mp4|avi|mov|mkv -> a classification ``Dataset``.

    Each clip goes through ``VideoPipeline(config, **keys)`` and its frames are stacked into
    channels: X float32 ``(N, frames * C', H, W)``, frame-major; y int64; classes are the sorted
    sub-folder names (at least 2). progress: a tqdm bar over the clips (None: only on a terminal).
    Example: ``load_video_dir("clips", frames=4, flow=True)``.
    """
    from tqdm.auto import tqdm

    pipe = VideoPipeline(config, **keys)
    root = Path(path).expanduser()
    where = f"video dir '{path}'"
    if not root.is_dir():
        raise DataError(f"{where}: does not exist or is not a directory; video:DIR needs a folder "
                        "with one sub-folder of clips per class")
    samples, classes = class_folders(root, where, VIDEO_SUFFIXES, "clips")
    k, c, h, w = pipe.output_shape()
    X = np.empty((len(samples), k * c, h, w), dtype=np.float32)  # (N, k*C', H, W)
    for i, (f, _) in enumerate(tqdm(samples, desc="video clips", unit="clip", leave=False,
                                    disable=None if progress is None else not progress)):
        X[i] = pipe(f).reshape(k * c, h, w)  # (k, C', H, W) -> frame-major channels
    y = np.asarray([label for _, label in samples], dtype=np.int64)
    return Dataset(f"video:{path}", X, y, "classification", classes,
                   description=f"{where}: {len(samples)} clips in {len(classes)} class folders, "
                               f"{pipe!r} -> {k} frames x {c} channels stacked as {k * c} channels",
                   modality="video")


def read(spec: str, path: str, section: VideoConfig, *, task: str) -> Dataset:
    """``video:DIR`` for ``load_dataset``, read as the ``[video]`` section says."""
    return load_video_dir(path, config=section)
