"""Video features: which frames of a clip to keep, and the dense optical flow between them.

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
"""

from __future__ import annotations

import numpy as np

from regulab.errors import DataError, invalid

__all__ = ["FARNEBACK", "opencv", "sample_uniform", "frame_change", "sample_motion", "optical_flow",
           "with_flow", "flow_at", "gray", "whole"]

# cv2.calcOpticalFlowFarneback's parameters (see the module docstring); flags = 0
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5,
             "poly_sigma": 1.2}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as cv2's RGB2GRAY


def whole(v, lo: int) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo


def _check_frames(name: str, frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1] not in (1, 3) or not np.issubdtype(frames.dtype, np.number):
        raise DataError(f"{name}: got an array of shape {frames.shape} ({frames.dtype}); allowed: "
                        "numbers of shape (T, C, H, W) with C = 1 (gray) or 3 (RGB)")
    return frames


def gray(frames: np.ndarray) -> np.ndarray:
    """(T, C, H, W) in [0, 1] -> (T, H, W) float32 luma."""
    if frames.shape[1] == 1:
        return frames[:, 0].astype(np.float32, copy=False)
    return np.tensordot(_LUMA, frames.astype(np.float32, copy=False), axes=([0], [1]))


def _too_short(what: str, n: int, k: int) -> DataError:
    return DataError(f"{what}: has {n} frame(s) but {k} are to be sampled; allowed: k <= the number "
                     "of frames (clips are not padded; use fewer frames or longer clips)")


def sample_uniform(n_frames_total: int, k: int) -> np.ndarray:
    """k evenly spaced frame indices (int64) of ``0..n_frames_total-1``: first and last included.

    ``idx_i = round(i * (T - 1) / (k - 1))`` with halves rounded up; k = 1 gives ``[0]``.
    k > n_frames_total raises ``DataError``. Example: ``sample_uniform(10, 4)`` -> ``[0, 3, 6, 9]``.
    """
    if not whole(k, 1):
        raise invalid("sample_uniform.k", "an int >= 1", k, kind="argument")
    if not whole(n_frames_total, 1):
        raise invalid("sample_uniform.n_frames_total", "an int >= 1", n_frames_total, kind="argument",
                      error=DataError)
    n, k = int(n_frames_total), int(k)
    if k > n:
        raise _too_short("sample_uniform n_frames_total", n, k)
    if k == 1:
        return np.zeros(1, dtype=np.int64)
    i = np.arange(k, dtype=np.int64)
    return (2 * i * (n - 1) + (k - 1)) // (2 * (k - 1))  # floor(i (n-1)/(k-1) + 1/2), exact


def frame_change(frames) -> np.ndarray:
    """``change_t = mean |g_t - g_{t-1}|`` of the gray frames, float64 (T,), ``change_0 = 0``."""
    g = gray(_check_frames("frame_change frames", frames)).astype(np.float64)  # (T, H, W)
    change = np.zeros(len(g))
    change[1:] = np.abs(np.diff(g, axis=0)).mean(axis=(1, 2))
    return change


def sample_motion(frames, k: int) -> np.ndarray:
    """The k frames (int64 indices, temporal order) with the largest ``change_t`` (see module doc).

    frames: ``(T, C, H, W)``, C = 1 or 3. Ties go to the earlier frame; k > T raises ``DataError``.
    """
    if not whole(k, 1):
        raise invalid("sample_motion.k", "an int >= 1", k, kind="argument")
    change = frame_change(frames)
    if k > len(change):
        raise _too_short("sample_motion frames", len(change), int(k))
    top = np.argsort(-change, kind="stable")[:k]  # stable: equal changes keep temporal order
    return np.sort(top).astype(np.int64)


def opencv():
    """OpenCV's ``cv2``, imported on use (a run without video never loads it); when it is missing,
    the one line (``DataError``) that names the extra installing it."""
    try:
        import cv2
    except ImportError:
        raise DataError("video needs OpenCV (the cv2 module), which is not installed; "
                        "install it with: pip install 'regulab[video]'") from None
    return cv2


def _to_u8(g: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(g * 255.0), 0, 255).astype(np.uint8)


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flow between two uint8 (H, W) images -> float32 (2, H, W): (dx, dy)."""
    cv2 = opencv()
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
    g = _to_u8(gray(frames))  # (T, H, W) uint8, what Farneback takes
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


def flow_at(clip: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Farneback flow ``t -> t+1`` of ``clip`` (T, C, H, W) at each frame index t of ``idx``
    (each < T - 1): ``(len(idx), 2, H, W)`` float32."""
    g = _to_u8(gray(clip))
    return np.stack([_farneback(g[t], g[t + 1]) for t in idx])
