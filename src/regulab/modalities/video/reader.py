"""Video clips as arrays: reading, frame sampling, dense optical flow and ``video:DIR`` data sets.

Reading (``read_video``): OpenCV's ``cv2.VideoCapture`` decodes BGR uint8 frames; each frame is
converted to RGB (or to gray, ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``), resized
with ``cv2.INTER_AREA`` (pixel-area averaging, the right filter for shrinking) and scaled to
float32 in [0, 1]. A clip is ``(T, C, H, W)`` with C = 3 (RGB) or 1 (gray).

Frame sampling, k of T frames:

* uniform: ``idx_i = round(i * (T - 1) / (k - 1))``, i = 0..k-1, halves rounded up (exact integer
  arithmetic; ``np.linspace(0, T - 1, k)`` rounded, first and last frame always kept; k = 1 gives
  frame 0). The segment idea of TSN (Wang et al. 2016, "Temporal Segment Networks").
* motion: ``change_t = mean |g_t - g_{t-1}|`` over the pixels of the gray frames, ``change_0 = 0``
  (frame 0 has no predecessor); the k frames with the largest change, ties to the earlier frame,
  returned in temporal order. Key frames by frame differencing.

A clip with fewer than k frames is an error (``DataError``), never padded by repeating frames.

Optical flow (``optical_flow``): dense flow of Farneback (2003), "Two-Frame Motion Estimation
Based on Polynomial Expansion" (SCIA), via ``cv2.calcOpticalFlowFarneback``. Each neighbourhood is
approximated by a quadratic ``f(x) ~ x^T A x + b^T x + c``; a shift by d gives ``f2(x) = f1(x - d)``,
so ``A2 = A1``, ``b2 = b1 - 2 A1 d`` and ``d = -1/2 A1^{-1} (b2 - b1)``, solved in least squares
over a Gaussian window and refined coarse-to-fine on an image pyramid. Parameters (OpenCV's
tutorial values): ``pyr_scale = 0.5`` (each pyramid level half the size), ``levels = 3``,
``winsize = 15`` (averaging window; larger is smoother and tracks faster motion), ``iterations = 3``
per level, ``poly_n = 5`` (pixel neighbourhood of the polynomial fit), ``poly_sigma = 1.2`` (its
Gaussian, 1.1 to 1.5 for poly_n 5 to 7). Flow ``t -> t+1`` is ``(dx, dy)`` in pixels of the
(resized) frame, x to the right, y down: ``gray_t[y, x] ~ gray_{t+1}[y + dy, x + dx]``.

Alignment (``with_flow``): flow ``t -> t+1`` is attached to frame t as 2 extra channels; the last
frame, which has no successor, gets zeros. ``VideoPipeline(flow=True)`` samples only among frames
0..T-2, so every sampled frame carries real flow (the stacked flow of two-stream networks,
Simonyan & Zisserman 2014, "Two-Stream Convolutional Networks for Action Recognition in Videos").

Data set (``load_video_dir``): DIR/<class>/<clip>.mp4|avi|mov|mkv; each clip becomes
``(k, C', H, W)`` (C' = C, or C + 2 with flow) and its frames are stacked into channels,
``(k * C', H, W)`` frame-major (channels of frame 0 first), so that a 2-D CNN sees the clip as one
image with k * C' channels: the early fusion of Karpathy et al. 2014, "Large-scale Video
Classification with Convolutional Neural Networks".
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from regulab.checks import size as _size_check
from regulab.checks import boolean, choice, number
from regulab.data.dataset import Dataset
from regulab.errors import ConfigError, DataError

__all__ = ["VIDEO_SUFFIXES", "FARNEBACK", "read", "read_video", "sample_uniform", "frame_change",
           "sample_motion", "optical_flow", "with_flow", "VideoPipeline", "load_video_dir"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
# cv2.calcOpticalFlowFarneback's parameters (see the module docstring); flags = 0
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5,
             "poly_sigma": 1.2}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as cv2's RGB2GRAY


def _is_int(v, lo: int) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo


def _hw(name: str, size) -> tuple[int, int] | None:
    """``None``, a side length (square) or ``(height, width)`` -> ``(h, w)``."""
    if size is None:
        return None
    if _is_int(size, 1):
        return int(size), int(size)
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(s, 1) for s in size):
        return int(size[0]), int(size[1])
    raise ConfigError(f"{name}: got {size!r}; allowed: an int >= 1 (square) or (height, width) of ints >= 1")


def _check_frames(name: str, frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1] not in (1, 3) or not np.issubdtype(frames.dtype, np.number):
        raise DataError(f"{name}: got an array of shape {frames.shape} ({frames.dtype}); allowed: "
                        "numbers of shape (T, C, H, W) with C = 1 (gray) or 3 (RGB)")
    return frames


def _gray(frames: np.ndarray) -> np.ndarray:
    """(T, C, H, W) in [0, 1] -> (T, H, W) float32 luma."""
    if frames.shape[1] == 1:
        return frames[:, 0].astype(np.float32, copy=False)
    return np.tensordot(_LUMA, frames.astype(np.float32, copy=False), axes=([0], [1]))


def read_video(path, *, size=None, gray: bool = False, max_frames: int | None = None) -> np.ndarray:
    """Decode a clip into float32 ``(T, C, H, W)`` in [0, 1]: C = 3 (RGB) or 1 (``gray``).

    size: None (the clip's own size), an int (square ``size x size``) or ``(height, width)``;
    frames are resized one by one with ``cv2.INTER_AREA``. max_frames: stop after this many.
    Example: ``read_video("clip.mp4", size=(64, 64), gray=True)`` -> ``(T, 1, 64, 64)``.
    """
    hw = _hw("read_video size", size)
    if not isinstance(gray, bool):
        raise ConfigError(f"read_video gray: got {gray!r}; allowed: True or False")
    if max_frames is not None and not _is_int(max_frames, 1):
        raise ConfigError(f"read_video max_frames: got {max_frames!r}; allowed: an int >= 1 or None")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video file '{path}': does not exist or is not a file")
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


def _too_short(what: str, n: int, k: int) -> DataError:
    return DataError(f"{what}: has {n} frame(s) but {k} are to be sampled; allowed: k <= the number "
                     "of frames (clips are not padded; use fewer frames or longer clips)")


def sample_uniform(n_frames_total: int, k: int) -> np.ndarray:
    """k evenly spaced frame indices (int64) of ``0..n_frames_total-1``: first and last included.

    ``idx_i = round(i * (T - 1) / (k - 1))`` with halves rounded up; k = 1 gives ``[0]``.
    k > n_frames_total raises ``DataError``. Example: ``sample_uniform(10, 4)`` -> ``[0, 3, 6, 9]``.
    """
    if not _is_int(k, 1):
        raise ConfigError(f"sample_uniform k: got {k!r}; allowed: an int >= 1")
    if not _is_int(n_frames_total, 1):
        raise DataError(f"sample_uniform n_frames_total: got {n_frames_total!r}; allowed: an int >= 1")
    n, k = int(n_frames_total), int(k)
    if k > n:
        raise _too_short("sample_uniform n_frames_total", n, k)
    if k == 1:
        return np.zeros(1, dtype=np.int64)
    i = np.arange(k, dtype=np.int64)
    return (2 * i * (n - 1) + (k - 1)) // (2 * (k - 1))  # floor(i (n-1)/(k-1) + 1/2), exact


def frame_change(frames) -> np.ndarray:
    """``change_t = mean |g_t - g_{t-1}|`` of the gray frames, float64 (T,), ``change_0 = 0``."""
    g = _gray(_check_frames("frame_change frames", frames)).astype(np.float64)  # (T, H, W)
    change = np.zeros(len(g))
    change[1:] = np.abs(np.diff(g, axis=0)).mean(axis=(1, 2))
    return change


def sample_motion(frames, k: int) -> np.ndarray:
    """The k frames (int64 indices, temporal order) with the largest ``change_t`` (see module doc).

    frames: ``(T, C, H, W)``, C = 1 or 3. Ties go to the earlier frame; k > T raises ``DataError``.
    """
    if not _is_int(k, 1):
        raise ConfigError(f"sample_motion k: got {k!r}; allowed: an int >= 1")
    change = frame_change(frames)
    if k > len(change):
        raise _too_short("sample_motion frames", len(change), int(k))
    top = np.argsort(-change, kind="stable")[:k]  # stable: equal changes keep temporal order
    return np.sort(top).astype(np.int64)


def _to_u8(g: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(g * 255.0), 0, 255).astype(np.uint8)


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flow between two uint8 (H, W) images -> float32 (2, H, W): (dx, dy)."""
    flow = cv2.calcOpticalFlowFarneback(a, b, None, FARNEBACK["pyr_scale"], FARNEBACK["levels"],
                                        FARNEBACK["winsize"], FARNEBACK["iterations"],
                                        FARNEBACK["poly_n"], FARNEBACK["poly_sigma"], 0)  # (H, W, 2)
    return flow.transpose(2, 0, 1).astype(np.float32, copy=False)


def optical_flow(frames) -> np.ndarray:
    """Dense Farneback flow between consecutive frames: float32 ``(T-1, 2, H, W)``.

    frames: ``(T, C, H, W)`` in [0, 1], C = 1 or 3 (RGB is turned to gray first), T >= 2.
    Channel 0 is dx (pixels, + right), channel 1 is dy (pixels, + down), for ``t -> t+1``.
    """
    frames = _check_frames("optical_flow frames", frames)
    if len(frames) < 2:
        raise DataError(f"optical_flow frames: got {len(frames)} frame(s); allowed: at least 2")
    g = _to_u8(_gray(frames))  # (T, H, W) uint8, what Farneback takes
    return np.stack([_farneback(g[t], g[t + 1]) for t in range(len(g) - 1)])


def with_flow(frames, flow) -> np.ndarray:
    """Frames ``(T, C, H, W)`` with flow ``(T-1, 2, H, W)`` as 2 extra channels -> ``(T, C+2, H, W)``.

    Frame t gets the flow ``t -> t+1``; the last frame gets zeros.
    """
    frames, flow = np.asarray(frames), np.asarray(flow)
    if frames.ndim != 4:
        raise DataError(f"with_flow frames: got shape {frames.shape}; allowed: (T, C, H, W)")
    T, _, H, W = frames.shape
    if flow.shape != (T - 1, 2, H, W):
        raise DataError(f"with_flow flow: got shape {flow.shape}; allowed: {(T - 1, 2, H, W)} "
                        f"(one flow per consecutive pair of the {T} frames)")
    last = np.zeros((1, 2, H, W), dtype=np.float32)
    return np.concatenate([frames.astype(np.float32, copy=False),
                           np.concatenate([flow.astype(np.float32, copy=False), last])], axis=1)


class VideoPipeline:
    """Path -> float32 ``(frames, C', H, W)``: read, resize, gray, sample, and optical flow.

    frames: k frames sampled per clip. sampling: "uniform" or "motion" (module doc). size: int
    (square) or (height, width). gray: C = 1, else 3 (RGB). flow: add Farneback flow ``t -> t+1``
    as 2 channels (C' = C + 2); frames are then sampled among 0..T-2, so a clip needs k + 1
    frames (k without flow). Example: ``VideoPipeline(8, "motion", flow=True)("a.mp4").shape``
    is ``(8, 3, 64, 64)``.
    """

    def __init__(self, frames: int = 8, sampling: str = "uniform", size=(64, 64), gray: bool = True,
                 flow: bool = False):
        self.frames = number(ge=1, integer=True)("video.frames", frames)
        self.sampling = choice("uniform", "motion")("video.sampling", sampling)
        self.size = _hw("video.size", _size_check("video.size", size))
        self.gray = boolean("video.gray", gray)
        self.flow = boolean("video.flow", flow)

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
        if self.flow:
            g = _to_u8(_gray(clip))  # flow only for the k sampled pairs (t, t+1)
            flow = np.stack([_farneback(g[t], g[t + 1]) for t in idx])  # (k, 2, H, W)
            out = np.concatenate([out, flow], axis=1)
        return out

    def __repr__(self) -> str:
        return (f"VideoPipeline(frames={self.frames}, sampling={self.sampling!r}, size={self.size}, "
                f"gray={self.gray}, flow={self.flow})")


def load_video_dir(path, *, progress: bool | None = None, **pipeline_kwargs) -> Dataset:
    """Read ``video:DIR``: DIR/<class>/<clip>.mp4|avi|mov|mkv -> a classification ``Dataset``.

    Each clip goes through ``VideoPipeline(**pipeline_kwargs)`` and its frames are stacked into
    channels: X float32 ``(N, frames * C', H, W)``, frame-major; y int64; classes are the sorted
    sub-folder names (at least 2). progress: a tqdm bar over the clips (None: only on a terminal).
    Example: ``load_video_dir("clips", frames=4, flow=True)``.
    """
    from tqdm.auto import tqdm

    pipe = VideoPipeline(**pipeline_kwargs)
    root = Path(path).expanduser()
    where = f"video dir '{path}'"
    if not root.is_dir():
        raise DataError(f"{where}: does not exist or is not a directory; video:DIR needs a folder "
                        "with one sub-folder of clips per class")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"{where}: has {len(class_dirs)} class sub-folder(s) {[d.name for d in class_dirs]}; "
                        "needs one sub-folder per class, at least 2")
    samples = []  # (file, label)
    for label, d in enumerate(class_dirs):
        found = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise DataError(f"{where}: class folder '{d.name}' has no {'/'.join(VIDEO_SUFFIXES)} clips")
        samples += [(f, label) for f in found]
    k, c, h, w = pipe.output_shape()
    X = np.empty((len(samples), k * c, h, w), dtype=np.float32)  # (N, k*C', H, W)
    for i, (f, _) in enumerate(tqdm(samples, desc="video clips", unit="clip", leave=False,
                                    disable=None if progress is None else not progress)):
        X[i] = pipe(f).reshape(k * c, h, w)  # (k, C', H, W) -> frame-major channels
    y = np.asarray([label for _, label in samples], dtype=np.int64)
    return Dataset(f"video:{path}", X, y, "classification", [d.name for d in class_dirs],
                   description=f"{where}: {len(samples)} clips in {len(class_dirs)} class folders, "
                               f"{pipe!r} -> {k} frames x {c} channels stacked as {k * c} channels",
                   modality="video")


def read(spec: str, path: str, section, *, task: str) -> Dataset:
    """``video:DIR`` for ``load_dataset``, read as the ``[video]`` section says."""
    return load_video_dir(path, frames=section.frames, sampling=section.sampling,
                          size=tuple(section.size) if isinstance(section.size, list) else section.size,
                          gray=section.gray, flow=section.flow)
