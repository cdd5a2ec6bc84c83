"""``regulab.modalities.image.augment``: the notes' matrices recomputed in NumPy, warps against naive per-pixel
loops and exact tensor ops, per-sample draws, crops, resize, normalize, 1-D shifts and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from regulab.errors import ConfigError
from regulab.modalities.image.augment import (ImagePipeline, RandomAffine, RandomShiftScale1d,
                                              affine_matrices, center_crop, normalize, random_crop, resize,
                                              shift_scale_1d, warp)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def matrices(angle=0.0, translate=(0.0, 0.0), scale=1.0, shear=(0.0, 0.0), flip=(False, False)):
    """One (1, 3, 3) matrix from plain parameters."""
    return affine_matrices(torch.tensor([angle], dtype=torch.float64), torch.tensor([translate]),
                           torch.tensor([scale], dtype=torch.float64), torch.tensor([shear]),
                           torch.tensor([flip]))


# --- the composed matrix ------------------------------------------------------------------

def notes_matrix(angle, t, v, c, f):
    """The notes' individual matrices, multiplied in NumPy: T @ R @ Sh @ S @ F."""
    a = math.radians(angle)
    T = np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1]])
    R = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1]])
    Sh = np.array([[1, math.tan(math.radians(c[0])), 0], [math.tan(math.radians(c[1])), 1, 0], [0, 0, 1]])
    S = np.diag([v[0], v[1], 1.0])
    Fl = np.diag([-1.0 if f[0] else 1.0, -1.0 if f[1] else 1.0, 1.0])
    return T @ R @ Sh @ S @ Fl


@pytest.mark.parametrize("isotropic", [True, False])
def test_composed_matrix_is_the_product_of_the_notes_matrices(isotropic):
    rng = np.random.default_rng(0)
    B = 64
    angle, t = rng.uniform(-180, 180, B), rng.uniform(-5, 5, (B, 2))
    v = np.repeat(rng.uniform(0.5, 2, (B, 1)), 2, 1) if isotropic else rng.uniform(0.5, 2, (B, 2))
    c, f = rng.uniform(-40, 40, (B, 2)), rng.random((B, 2)) < 0.5
    M = affine_matrices(torch.tensor(angle), torch.tensor(t), torch.tensor(v[:, 0] if isotropic else v),
                        torch.tensor(c), torch.tensor(f))
    expected = np.stack([notes_matrix(angle[b], t[b], v[b], c[b], f[b]) for b in range(B)])
    assert M.shape == (B, 3, 3)
    np.testing.assert_allclose(M.numpy(), expected, rtol=0, atol=1e-12)


# --- warp against naive per-pixel code and exact tensor ops -------------------------------------

def naive_warp(img: np.ndarray, M: np.ndarray, fill: float) -> np.ndarray:
    """Output pixel (i, j) reads the input at M^-1 p (centred coordinates), bilinear, taps
    outside the image valued ``fill``."""
    H, W = img.shape
    Minv = np.linalg.inv(M)
    out = np.zeros_like(img)
    for i in range(H):
        for j in range(W):
            x, y, _ = Minv @ np.array([j + 0.5 - W / 2, i + 0.5 - H / 2, 1.0])
            u, v = x + W / 2 - 0.5, y + H / 2 - 0.5            # input (column, row) index
            j0, i0 = math.floor(u), math.floor(v)
            for di, wi in ((0, 1 - (v - i0)), (1, v - i0)):
                for dj, wj in ((0, 1 - (u - j0)), (1, u - j0)):
                    ii, jj = i0 + di, j0 + dj
                    inside = 0 <= ii < H and 0 <= jj < W
                    out[i, j] += wi * wj * (img[ii, jj] if inside else fill)
    return out


@pytest.mark.parametrize("fill", [0.0, 0.3])
def test_warp_matches_a_naive_bilinear_loop_on_a_non_square_image(fill):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.random((3, 2, 5, 7)))
    M = matrices(25.0, (0.7, -1.2), 1.3, (12.0, -8.0), (True, False))
    M = torch.cat([M, matrices(-70.0, (2.0, 0.5), 0.8), matrices(0.0, (0.0, 0.0), 1.0, (30.0, 0.0))])
    out = warp(x, M, fill=fill)
    for b in range(3):
        for c in range(2):
            np.testing.assert_allclose(out[b, c].numpy(), naive_warp(x[b, c].numpy(), M[b].numpy(), fill),
                                       atol=1e-10)


@pytest.mark.parametrize("side", [5, 6])
def test_rotation_by_90_degrees_is_rot90_counter_clockwise(side):
    x = torch.rand(2, 3, side, side, generator=gen())
    out = warp(x, matrices(90.0).float())
    torch.testing.assert_close(out, torch.rot90(x, 1, (-2, -1)), atol=1e-5, rtol=0)


def test_rotation_by_180_on_a_non_square_image_flips_both_axes():
    x = torch.rand(2, 1, 4, 7, generator=gen())
    torch.testing.assert_close(warp(x, matrices(180.0).float()), x.flip(-1, -2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("flip, dims", [((True, False), (-1,)), ((False, True), (-2,)), ((True, True), (-2, -1))])
def test_flips_are_torch_flip(flip, dims):
    x = torch.rand(2, 3, 4, 6, generator=gen())
    torch.testing.assert_close(warp(x, matrices(flip=flip).float()), x.flip(dims), atol=1e-6, rtol=0)


@pytest.mark.parametrize("tx, ty", [(2, -1), (-3, 2), (0, 3)])
def test_integer_translation_is_a_roll_with_fill(tx, ty):
    x = torch.rand(2, 2, 5, 7, generator=gen())
    expected = torch.roll(x, (ty, tx), (-2, -1))
    rows, cols = torch.arange(5), torch.arange(7)
    outside = ((rows - ty < 0) | (rows - ty >= 5))[:, None] | ((cols - tx < 0) | (cols - tx >= 7))[None, :]
    expected[..., outside] = 0.5
    out = warp(x, matrices(translate=(tx, ty)).float(), fill=0.5)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_scale_2x_magnifies_about_the_centre():
    x = torch.rand(1, 1, 7, 7, generator=gen())   # centre pixel (3, 3); output (i, j) reads (i + 3) / 2
    out = warp(x, matrices(scale=2.0).float())[0, 0]
    for i, j, src in ((3, 3, (3, 3)), (1, 1, (2, 2)), (5, 5, (4, 4)), (1, 5, (2, 4)), (3, 1, (3, 2))):
        assert out[i, j].item() == pytest.approx(x[0, 0][src].item(), abs=1e-6)
    assert out[3, 2].item() == pytest.approx(x[0, 0, 3, 2:4].mean().item(), abs=1e-6)   # halfway


def test_shear_of_45_degrees_shifts_each_row_by_its_offset():
    x = torch.rand(1, 1, 5, 9, generator=gen())   # x' = x + tan(45) y: row i moves by i - 2 pixels
    out = warp(x, matrices(shear=(45.0, 0.0)).float())
    for i in range(5):
        row = torch.roll(x[0, 0, i], i - 2)
        if i - 2 > 0:
            row[:i - 2] = 0
        elif i - 2 < 0:
            row[i - 2:] = 0
        torch.testing.assert_close(out[0, 0, i], row, atol=1e-6, rtol=0)


def test_identity_matrix_warps_to_the_input():
    x = torch.rand(4, 3, 5, 8, generator=gen())
    assert (warp(x, torch.eye(3)) - x).abs().max() <= 1e-6
    assert (warp(x, torch.eye(3), fill=0.7) - x).abs().max() <= 1e-6


# --- RandomAffine ------------------------------------------------------------------------------

def test_zero_augmentation_returns_the_input_itself():
    x = torch.rand(2, 1, 8, 8)
    assert RandomAffine()(x, gen()) is x
    y = x[:, 0, 0]
    assert RandomShiftScale1d()(y, gen()) is y


def test_same_seed_same_output_other_seed_other_output():
    aug = RandomAffine(rotation=30, translate=0.1, scale=(0.9, 1.1), shear=10, hflip=0.5)
    x = torch.rand(8, 1, 28, 28, generator=gen(5))
    torch.testing.assert_close(aug(x, gen(1)), aug(x, gen(1)), atol=0, rtol=0)
    assert not torch.allclose(aug(x, gen(1)), aug(x, gen(2)))


def test_each_sample_gets_its_own_transform():
    x = torch.rand(1, 1, 12, 12, generator=gen()).expand(16, 1, 12, 12)
    out = RandomAffine(rotation=30)(x, gen())
    assert len({tuple(o.flatten().tolist()) for o in out}) == 16


def test_drawn_parameters_are_uniform_within_their_ranges():
    n = 10_000
    angle = RandomAffine(rotation=30).matrices(n, 20, 40, gen())
    deg = torch.rad2deg(torch.atan2(angle[:, 0, 1], angle[:, 0, 0]))
    assert abs(deg.mean().item()) < 0.6 and abs(deg.std().item() - 60 / math.sqrt(12)) < 0.3
    assert -30 <= deg.min().item() < -29.9 and 29.9 < deg.max().item() <= 30
    assert len(torch.unique(deg)) > n - 10
    t = RandomAffine(translate=(0.1, 0.2)).matrices(n, 20, 40, gen())[:, :2, 2]   # +-4 px in x, +-4 in y
    assert (t.abs().amax(0) <= torch.tensor([4.0, 4.0])).all() and (t.abs().amax(0) > 3.99).all()
    assert (t.mean(0).abs() < 0.1).all()
    s = RandomAffine(scale=(0.9, 1.1)).matrices(n, 20, 40, gen())[:, 0, 0]
    assert 0.9 <= s.min() < 0.901 and 1.099 < s.max() <= 1.1 and abs(s.mean().item() - 1.0) < 0.002
    f = RandomAffine(hflip=0.3, vflip=0.7).matrices(n, 20, 40, gen())
    assert abs((f[:, 0, 0] < 0).float().mean().item() - 0.3) < 0.02
    assert abs((f[:, 1, 1] < 0).float().mean().item() - 0.7) < 0.02
    sh = RandomAffine(shear=(20, 10)).matrices(n, 20, 40, gen())
    cx, cy = torch.rad2deg(torch.atan(sh[:, 0, 1])), torch.rad2deg(torch.atan(sh[:, 1, 0]))
    assert 19.9 < cx.max() <= 20 and -20 <= cx.min() < -19.9 and 9.9 < cy.max() <= 10
    assert (RandomAffine(shear=20).matrices(100, 8, 8, gen())[:, 1, 0] == 0).all()   # a number: x only


def test_get_config_is_plain_and_round_trips():
    aug = RandomAffine(rotation=30, translate=0.1, scale=(0.9, 1.1), shear=(10, 5), vflip=0.5, fill=0.5)
    cfg = aug.get_config()
    assert json.loads(json.dumps(cfg)) == cfg and RandomAffine(**cfg).get_config() == cfg
    assert "rotation=30.0" in repr(aug) and repr(aug).startswith("RandomAffine(")


def test_a_generator_is_required():
    with pytest.raises(TypeError, match="torch.Generator"):
        RandomAffine(rotation=10)(torch.rand(2, 1, 4, 4), None)


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_data_device_with_a_cpu_generator(device):
    x = torch.rand(6, 3, 9, 11, generator=gen())
    aug = RandomAffine(rotation=30, translate=0.1, scale=(0.8, 1.2), shear=(10, 10), hflip=0.5)
    out = aug(x.to(device), gen(3))
    assert out.device.type == device and out.shape == x.shape
    torch.testing.assert_close(out.cpu(), aug(x, gen(3)), atol=1e-5, rtol=0)


# --- crops, resize, normalize --------------------------------------------------------------------

def test_random_crop_offsets_are_uniform():
    n = 10_000
    x = (torch.arange(8)[:, None] * 10 + torch.arange(8)).float().expand(n, 1, 8, 8)
    out = random_crop(x, 4, generator=gen())
    assert out.shape == (n, 1, 4, 4)
    corner = out[:, 0, 0, 0].long()
    top, left = corner // 10, corner % 10
    torch.testing.assert_close(out, x[0, 0, :4, :4] + (top * 10 + left).float()[:, None, None, None])
    counts = torch.bincount(top * 5 + left, minlength=25)      # 25 offsets, 400 expected each
    assert counts.numel() == 25 and counts.min() > 300 and counts.max() < 500


def test_random_crop_equals_slicing_the_padded_image():
    x = torch.rand(300, 2, 5, 6, generator=gen())
    out = random_crop(x, (4, 3), padding=2, generator=gen(7), fill=-1.0)
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)
    seen = set()
    for b in range(len(x)):
        hits = [(i, j) for i in range(9 - 4 + 1) for j in range(10 - 3 + 1)
                if torch.equal(padded[b, :, i:i + 4, j:j + 3], out[b])]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) == 6 * 8      # every offset drawn


def test_center_crop_follows_torchvision_offsets_and_pads_when_larger():
    x = torch.arange(42.0).view(1, 1, 6, 7)
    torch.testing.assert_close(center_crop(x, (4, 3)), x[..., 1:5, 2:5])     # round(1), round(2)
    torch.testing.assert_close(center_crop(x, (3, 4)), x[..., 2:5, 2:6])     # round(1.5) = 2
    big = center_crop(x, (9, 8))
    assert big.shape == (1, 1, 9, 8)
    torch.testing.assert_close(big[..., 1:7, 0:7], x)                        # (9 - 6) // 2 above
    assert big[..., 0, :].abs().sum() == 0 and big[..., :, 7].abs().sum() == 0


@pytest.mark.parametrize("size", [(5, 4), (3, 7), (24, 5)])
def test_resize_matches_pil_bilinear(size):
    from PIL import Image
    img = np.random.default_rng(0).random((12, 10)).astype(np.float32)
    pil = np.asarray(Image.fromarray(img, mode="F").resize(size[::-1], Image.BILINEAR))
    out = resize(torch.from_numpy(img)[None, None], size)[0, 0].numpy()
    np.testing.assert_allclose(out, pil, atol=1e-5)


def test_resize_keeps_constants_and_returns_same_size_input():
    x = torch.full((2, 3, 9, 13), 0.25)
    torch.testing.assert_close(resize(x, (4, 20)), torch.full((2, 3, 4, 20), 0.25))
    assert resize(x, (9, 13)) is x


def test_resize_aspect_pad_letterboxes_and_crop_centre_crops():
    x = torch.rand(2, 1, 4, 8, generator=gen())
    torch.testing.assert_close(resize(x, 4, aspect="crop"), x[..., :, 2:6])
    padded = resize(x, 8, aspect="pad")
    torch.testing.assert_close(padded[..., 2:6, :], x)
    assert padded[..., :2, :].abs().sum() == 0 and padded[..., 6:, :].abs().sum() == 0
    for aspect in ("stretch", "pad", "crop"):
        assert resize(torch.rand(1, 3, 28, 20), (32, 32), aspect=aspect).shape == (1, 3, 32, 32)
    torch.testing.assert_close(resize(x, (2, 2), aspect="crop"), resize(x[..., 2:6], (2, 2)))


def test_normalize_per_channel():
    x = torch.rand(3, 2, 4, 4, generator=gen())
    out = normalize(x, [0.5, 0.25], [0.5, 2.0])
    torch.testing.assert_close(out[:, 0], (x[:, 0] - 0.5) / 0.5)
    torch.testing.assert_close(out[:, 1], (x[:, 1] - 0.25) / 2.0)
    torch.testing.assert_close(normalize(x, 0.5, 0.5), (x - 0.5) / 0.5)


# --- 1-D ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 11), (3, 2, 11)])
def test_1d_integer_shift_is_a_roll_with_fill(shape):
    x = torch.rand(shape, generator=gen())
    shift = torch.tensor([3.0, -2.0, 0.0])
    out = shift_scale_1d(x, shift, torch.ones(3), fill=9.0)
    for b, t in enumerate((3, -2, 0)):
        expected = torch.roll(x[b], t, -1)
        if t > 0:
            expected[..., :t] = 9.0
        elif t < 0:
            expected[..., t:] = 9.0
        torch.testing.assert_close(out[b], expected, atol=1e-5, rtol=0)


def test_random_1d_shifts_are_uniform_per_sample():
    n, L = 4000, 41
    x = torch.zeros(n, L)
    x[:, 20] = 1.0                                   # a spike: its centre of mass moves by the shift
    out = RandomShiftScale1d(shift=0.1)(x, gen())
    t = (out * torch.arange(L)).sum(1) / out.sum(1) - 20
    assert 4.0 < t.max() <= 4.1 + 1e-4 and -4.1 - 1e-4 <= t.min() < -4.0 and abs(t.mean()) < 0.1
    assert RandomShiftScale1d(shift=0.1, scale=(0.8, 1.2))(torch.rand(5, 2, 40), gen()).shape == (5, 2, 40)


def random_shifts_and_stretches(B: int, L: int):
    """Shifts in (-1.5 L, 1.5 L) (some samples move fully out) and stretches in (0.3, 2.5)."""
    g = gen(7)
    return (2.0 * torch.rand(B, generator=g) - 1.0) * 1.5 * L, 0.3 + 2.2 * torch.rand(B, generator=g)


def input_index(L: int, shift: torch.Tensor, scale: torch.Tensor) -> np.ndarray:
    """u = (j + 0.5 - L/2 - t) / s + L/2 - 0.5 in float64, (B, L)."""
    p = np.arange(L) + 0.5 - L / 2
    return (p - shift.double().numpy()[:, None]) / scale.double().numpy()[:, None] + L / 2 - 0.5


@pytest.mark.parametrize("shape", [(200, 40), (200, 3, 41)])
@pytest.mark.parametrize("fill", [0.0, 2.5])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_1d_shift_and_stretch_is_the_warp_of_one_row(shape, fill, mode):
    """The direct 1-D path against ``warp`` of (B, C, 1, L) with M = T((t, 0)) @ S((s, 1)), the
    route it replaces (bilinear: to float rounding of coordinates near L/2, ~L 2^-24 each)."""
    x = torch.rand(shape, generator=gen())
    B, L = shape[0], shape[-1]
    shift, scale = random_shifts_and_stretches(B, L)
    shift[:2], scale[:2] = torch.tensor([-1.2 * L, 2.0 * L]), 1.0             # moved fully out
    zero = torch.zeros(B)
    M = affine_matrices(zero, torch.stack([shift, zero], -1), torch.stack([scale, zero + 1.0], -1),
                        torch.zeros(B, 2), torch.zeros(B, 2, dtype=torch.bool))
    expected = warp(x.reshape(B, -1, 1, L), M, fill, mode).view(shape)
    out = shift_scale_1d(x, shift, scale, fill, mode)
    assert out.shape == shape and (out[:2] == fill).all()
    if mode == "nearest":       # a tap exactly between two samples may round either way
        far = torch.from_numpy(np.abs(input_index(L, shift, scale) % 1.0 - 0.5) > 1e-4)
        far = far.view(B, *[1] * (len(shape) - 2), L).expand(shape)
        assert far.float().mean() > 0.99
        torch.testing.assert_close(out[far], expected[far], atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(out, expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("fill", [0.0, -1.0])
def test_1d_shift_and_stretch_against_numpy_interpolation(fill):
    """np.interp through the samples at 0..L-1 and ``fill`` at -1 and L (constant beyond): the
    linear interpolation with outside taps reading fill; nearest: x[round(u)] (half to even)."""
    B, L = 300, 40
    x = torch.randn(B, L, generator=gen(1))
    shift, scale = random_shifts_and_stretches(B, L)
    u = input_index(L, shift, scale)
    xs = np.pad(x.double().numpy(), ((0, 0), (1, 1)), constant_values=fill)    # at -1, 0, ..., L
    linear = np.stack([np.interp(u[b], np.arange(-1, L + 1), xs[b], left=fill, right=fill) for b in range(B)])
    np.testing.assert_allclose(shift_scale_1d(x, shift, scale, fill).numpy(), linear, atol=2e-5, rtol=0)
    i = np.round(u)                                                             # half to even, as torch
    nearest = np.where((i >= 0) & (i < L), np.take_along_axis(x.numpy(), np.clip(i, 0, L - 1).astype(int), 1), fill)
    far = np.abs(u % 1.0 - 0.5) > 1e-4
    np.testing.assert_array_equal(shift_scale_1d(x, shift, scale, fill, "nearest").numpy()[far], nearest[far])
    np.testing.assert_array_equal(shift_scale_1d(x, torch.zeros(B), torch.ones(B), fill).numpy(), x.numpy())


def test_random_1d_shift_scale_draws_its_shifts_and_stretches_by_draw():
    aug = RandomShiftScale1d(shift=0.2, scale=(0.8, 1.2))
    x = torch.rand(500, 2, 40, generator=gen())
    shift, scale = aug.draw(500, 40, gen(3))
    torch.testing.assert_close(aug(x, gen(3)), shift_scale_1d(x, shift, scale), atol=0, rtol=0)
    assert -8.0 <= shift.min() < -7.5 and 7.5 < shift.max() <= 8.0            # t ~ U(-0.2 L, 0.2 L)
    assert 0.8 <= scale.min() < 0.81 and 1.19 < scale.max() <= 1.2


# --- ImagePipeline ----------------------------------------------------------------------------------

def test_the_notes_pipeline():
    p = ImagePipeline(resize=32, random_crop=28, rotation=30, mean=[0.5], std=[0.5])
    x = torch.rand(5, 1, 28, 28, generator=gen())
    assert p.output_shape((1, 28, 28)) == (1, 28, 28) and p.output_shape((1, 8, 8)) == (1, 28, 28)
    big = resize(x, 32)
    torch.testing.assert_close(p.eval(x), (big[..., 2:30, 2:30] - 0.5) / 0.5)
    torch.testing.assert_close(p.eval(p.prepare(x)), p.eval(x))           # prepare is idempotent
    out = p.train(x, gen(1))
    assert out.shape == (5, 1, 28, 28)
    torch.testing.assert_close(out, p.train(x, gen(1)), atol=0, rtol=0)
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6


def test_pipeline_random_crop_only_crops():
    p = ImagePipeline(random_crop=(6, 5), crop_padding=1)
    x = torch.rand(4, 3, 8, 8, generator=gen())
    torch.testing.assert_close(p.train(x, gen(2)), random_crop(x, (6, 5), 1, generator=gen(2)))
    torch.testing.assert_close(p.eval(x), center_crop(x, (6, 5)))
    assert p.output_shape((3, 8, 8)) == (3, 6, 5)


def test_pipeline_on_1d_samples_maps_translate_and_scale():
    p = ImagePipeline(translate=0.1, scale=(0.9, 1.1), mean=[0.1], std=[2.0])
    x = torch.rand(6, 40, generator=gen())
    assert p.output_shape((40,)) == (40,)
    assert p.train(x, gen()).shape == (6, 40)
    torch.testing.assert_close(p.eval(x), (x - 0.1) / 2.0)
    assert p.train(torch.rand(6, 1, 40), gen()).shape == (6, 1, 40)


def test_the_augment_layer_builds_it_from_config():
    import regulab as rl
    from regulab.modalities.layer import build_augment
    cfg = rl.load_config(None, ["image.resize=32", "image.random_crop=28",
                                "image.rotation=30", "image.mean=[0.5]", "image.std=[0.5]"])
    layer, shape = build_augment(cfg, "image", (1, 28, 28))
    assert shape == (1, 28, 28)
    layer.generator = gen()
    assert layer.train()(torch.rand(3, 1, 28, 28)).shape == (3, 1, 28, 28)
    assert layer.eval()(torch.rand(3, 1, 28, 28)).shape == (3, 1, 28, 28)


# --- errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda: RandomAffine(rotation=-5), ["RandomAffine.rotation", "-5"]),
    (lambda: RandomAffine(translate=1.5), ["RandomAffine.translate", "1.5"]),
    (lambda: RandomAffine(translate=(0.1, 0.2, 0.3)), ["RandomAffine.translate", "pair"]),
    (lambda: RandomAffine(scale=(1.2, 0.8)), ["RandomAffine.scale", "low <= high"]),
    (lambda: RandomAffine(shear=(50, 45)), ["RandomAffine.shear", "x + y < 90"]),
    (lambda: RandomAffine(hflip=1.5), ["RandomAffine.hflip", "1.5"]),
    (lambda: RandomAffine(mode="cubic"), ["RandomAffine.mode", "'cubic'", "bicubic"]),
    (lambda: RandomShiftScale1d(shift=-0.1), ["RandomShiftScale1d.shift", "-0.1"]),
    (lambda: ImagePipeline(aspect="fit"), ["image.aspect", "'fit'"]),
    (lambda: ImagePipeline(random_crop=0), ["image.random_crop", "0"]),
    (lambda: ImagePipeline(std=[0.0]), ["image.std[0]", "> 0"]),
    (lambda: ImagePipeline(rotation=10).output_shape((40,)), ["image.rotation", "(40,)"]),
    (lambda: ImagePipeline(random_crop=28).output_shape((1, 8, 8)), ["image.random_crop", "28"]),
    (lambda: ImagePipeline(mean=[0.1, 0.2]).output_shape((3, 8, 8)), ["image.mean", "3"]),
    (lambda: ImagePipeline(hflip=0.5).train(torch.rand(2, 40), gen()), ["image.hflip"]),
    (lambda: random_crop(torch.rand(2, 1, 8, 8), 10, generator=gen()), ["random_crop", "(10, 10)", "(8, 8)"]),
    (lambda: resize(torch.rand(1, 1, 4, 4), 0), ["resize.size", "0"]),
    (lambda: normalize(torch.rand(1, 3, 4, 4), [0.1, 0.2], 1.0), ["normalize.mean", "3"]),
    (lambda: normalize(torch.rand(1, 3, 4, 4), 0.1, 0.0), ["normalize.std", "> 0"]),
])
def test_bad_parameters_raise_one_line_config_errors(make, words):
    with pytest.raises(ConfigError) as e:
        make()
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_data_of_the_wrong_shape_or_dtype_is_a_one_line_data_error():
    from regulab.errors import DataError
    for call in (lambda: warp(torch.rand(2, 8, 8), torch.eye(3)),
                 lambda: RandomAffine(rotation=5)(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), gen()),
                 lambda: shift_scale_1d(torch.rand(2, 1, 1, 8), torch.zeros(2), torch.ones(2))):
        with pytest.raises(DataError, match=r"takes a floating-point batch .*; got shape \(") as e:
            call()
        assert "\n" not in str(e.value)
