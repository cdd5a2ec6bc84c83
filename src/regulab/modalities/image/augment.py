"""Image augmentation as one batched affine warp, plus crops, resize and normalize (``[image]``).

The notes' matrices act on pixel coordinates (x right, y down) centred on the image centre,
``x = j + 0.5 - W/2``, ``y = i + 0.5 - H/2`` for row i, column j, in homogeneous form::

    T(t) = [[1, 0, t_x], [0, 1, t_y], [0, 0, 1]]       S(v) = diag(v_x, v_y, 1)
    R(a) = [[cos a, sin a, 0], [-sin a, cos a, 0], [0, 0, 1]]
    Sh(c) = [[1, c_x, 0], [c_y, 1, 0], [0, 0, 1]], c = tan(shear angle)
    F(h, v) = diag(-1 if h else 1, -1 if v else 1, 1)   (the notes' flip diag(-1, 1) is h)

``affine_matrices`` composes them per sample, flip first and translation last, into
``M = T(t) @ R(a) @ Sh(c) @ S(v) @ F(h, v)`` with ``p_out = M p_in``. With y pointing down, R(a)
turns the picture counter-clockwise for a > 0, as torchvision's ``RandomRotation`` and
``torch.rot90`` do. ``warp`` resamples by the inverse map -- output pixel p reads the input at
M^-1 p, bilinearly, the outside filled with ``fill`` -- with one sampling grid and one
``F.grid_sample`` for the whole batch (Jaderberg et al., 2015, "Spatial transformer networks").
The grid is ``F.affine_grid``'s for ``theta = N M^-1 N^-1``, ``N = diag(2/W, 2/H, 1)``: with
align_corners=False the normalized coordinate in [-1, 1] is the centred one times 2/W (2/H).

``RandomAffine`` draws per sample as torchvision's ``RandomAffine`` does: angle ~ U(-rotation,
rotation), t_x ~ U(-translate_x W, translate_x W) (t_y with H), one zoom v ~ U(scale), shear_x
~ U(-shear, shear) (a pair also shear_y), and flips with probabilities hflip/vflip (as
``RandomHorizontalFlip``/``RandomVerticalFlip`` placed before it). What differs: torchvision
rounds translations to whole pixels (here continuous); it shears before scaling with
``[[1, -tan s_x], [0, 1]] @ [[1, 0], [-tan s_y, 1]]`` (det 1) where this uses the notes' single
shear (det 1 - c_x c_y, so a pair needs shear_x + shear_y < 90 degrees) of opposite sign; its
``RandomAffine`` turns clockwise for a > 0 -- the symmetric ranges make both the same
distribution; and it draws one transform per call, so a batch tensor gets one transform for
all its samples, where here (as in Kornia) each sample gets its own, in one call.

Uses: Simard, Steinkraus & Platt (2003), "Best practices for convolutional neural networks
applied to visual document analysis" (affine distortions of MNIST); Krizhevsky, Sutskever &
Hinton (2012) (random crops and flips); Dieleman (2015), "Classifying plankton with deep neural
networks" (the notes' examples).

``ImagePipeline`` is ``[image]``. The notes' torchvision pipeline::

    train: Resize((32, 32)), RandomCrop((28, 28)), RandomRotation(30), ToTensor(), Normalize((0.5,), (0.5,))
    test:  ToTensor(), Resize((32, 32)), CenterCrop((28, 28)), Normalize((0.5,), (0.5,))

is ``ImagePipeline(resize=32, random_crop=28, rotation=30, mean=[0.5], std=[0.5])`` (in TOML the
same keys). mnist1d's samples ``(B, L)`` or ``(B, C, L)`` take ``translate`` (a shift t of up to
translate * L samples) and ``scale`` (a stretch s about the centre) (``RandomShiftScale1d``); the
image-only keys are refused for them. That is the warp above on ``(B, C, 1, L)`` with
``M = T((t, 0)) @ S((s, 1))``, done in 1-D (``shift_scale_1d``): output sample j, centred
``p = j + 0.5 - L/2``, reads the input at ``q = (p - t) / s``, i.e. at index
``u = q + L/2 - 0.5``, as ``(1 - f) x[i] + f x[i + 1]`` with ``i = floor(u)``, ``f = u - i``
(nearest: ``x[round(u)]``, half to even), a tap outside ``[0, L - 1]`` reading ``fill`` -- what
``grid_sample`` (align_corners=False) gives on the one row, by a gather of both taps instead.

Every draw comes from the ``torch.Generator`` passed in (on its device, then moved to the
data's), never from the global RNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from regulab.checks import choice, list_of, number
from regulab.checks import size as _size
from regulab.errors import ConfigError, DataError, invalid
from regulab.modalities.image.section import FRACTION, PROBABILITY, ROTATION, SCALE, SHEAR, TRANSLATE, ImageConfig

__all__ = ["affine_matrices", "warp", "RandomAffine", "random_crop", "center_crop", "resize",
           "normalize", "shift_scale_1d", "RandomShiftScale1d", "ImagePipeline"]

_MODES = ("bilinear", "nearest", "bicubic")


def _hw(key: str, v: Any) -> tuple[int, int]:
    v = _size(key, v)
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _axes(v: Any) -> tuple[float, float]:
    """A checked translate (a number for both axes, or [x, y]) as (x, y)."""
    return (v[0], v[1]) if isinstance(v, list) else (v, v)


def _shear_axes(v: Any) -> tuple[float, float]:
    """A checked shear (a number: x only; or [x, y]) as (x, y)."""
    return (v[0], v[1]) if isinstance(v, list) else (v, 0.0)


def check_generator(owner: str, generator: Any) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner} needs a torch.Generator (nothing is drawn from the global RNG); "
                        f"got {generator!r}")
    return generator


def _batch(owner: str, x: Any, dims: tuple[int, ...] = (4,), what: str = "of images (B, C, H, W)") -> Tensor:
    if not isinstance(x, Tensor) or x.dim() not in dims or not x.is_floating_point():
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"{owner} takes a floating-point batch {what}; got {got}")
    return x


def affine_matrices(angle: Tensor, translate: Tensor, scale: Tensor, shear: Tensor,
                    flip: Tensor) -> Tensor:
    """Per-sample ``M = T(translate) @ R(angle) @ Sh(shear) @ S(scale) @ F(flip)``, (B, 3, 3).

    angle (B,) in degrees (counter-clockwise on screen); translate (B, 2) in pixels (x right,
    y down); scale (B,) isotropic or (B, 2); shear (B, 2) in degrees, c = tan(shear); flip (B, 2)
    bool (horizontal, vertical). The product is written out entry by entry (one stack):
    ``R Sh S F = [[v_x f_x (cos + sin c_y), v_y f_y (c_x cos + sin)], [v_x f_x (c_y cos - sin),
    v_y f_y (cos - c_x sin)]]``.
    """
    dtype = angle.dtype if angle.is_floating_point() else torch.float32
    a = torch.deg2rad(angle.to(dtype))
    cos, sin = torch.cos(a), torch.sin(a)
    cx, cy = torch.tan(torch.deg2rad(shear.to(dtype))).unbind(-1)
    scale = scale.to(dtype)
    vx, vy = (scale[:, None].expand(-1, 2) if scale.dim() == 1 else scale).unbind(-1)
    fx, fy = (1.0 - 2.0 * flip.to(dtype)).unbind(-1)
    tx, ty = translate.to(dtype).unbind(-1)
    ux, uy = vx * fx, vy * fy
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    return torch.stack([ux * (cos + sin * cy), uy * (cx * cos + sin), tx,
                        ux * (cy * cos - sin), uy * (cos - cx * sin), ty,
                        zero, zero, one], dim=-1).view(-1, 3, 3)


def warp(x: Tensor, M: Tensor, fill: float = 0.0, mode: str = "bilinear") -> Tensor:
    """Resample ``x`` (B, C, H, W) so that input pixel p lands at ``M[b] @ p`` (centred pixel
    coordinates; ``M`` (B, 3, 3) or (3, 3)); pixels from outside the image take ``fill``.

    One grid (what ``F.affine_grid`` gives for theta = N M^-1 N^-1, align_corners=False) and one
    ``grid_sample`` for the whole batch.
    """
    B, C, H, W = _batch("warp", x).shape
    choice(*_MODES)("warp.mode", mode)
    M = M.to(device=x.device, dtype=x.dtype).expand(B, 3, 3)
    a, b, tx, c, d, ty = M[:, 0, 0], M[:, 0, 1], M[:, 0, 2], M[:, 1, 0], M[:, 1, 1], M[:, 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det       # A^-1
    theta = torch.stack([ia, ib * (H / W), -(ia * tx + ib * ty) * (2.0 / W),
                         ic * (W / H), id_, -(ic * tx + id_ * ty) * (2.0 / H)], -1).view(B, 2, 3)
    # theta @ [x_n, y_n, 1] as an outer sum: F.affine_grid's batched matmul is ~10x slower on CPU
    xn = (torch.arange(W, device=x.device, dtype=x.dtype) * 2 + 1) / W - 1     # pixel centres
    yn = (torch.arange(H, device=x.device, dtype=x.dtype) * 2 + 1) / H - 1
    grid = ((theta[:, :, 0:1] * xn)[:, :, None, :]                           # (B, 2, 1, W)
            + (theta[:, :, 1:2] * yn + theta[:, :, 2:3])[:, :, :, None])     # (B, 2, H, 1)
    grid = grid.permute(0, 2, 3, 1)                                          # (B, H, W, 2)
    if fill == 0.0:
        return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    # zero padding of x - fill, plus fill: outside taps contribute fill with their weights
    return F.grid_sample(x - fill, grid, mode=mode, padding_mode="zeros", align_corners=False) + fill


class _Augmentation:
    """``get_config()`` (plain values; ``cls(**cfg)`` rebuilds an equal object) shown by repr."""

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.get_config().items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class RandomAffine(_Augmentation):
    """Per-sample random rotation, translation, scale, shear and flips in one warp.

    rotation: max |angle| in degrees (0 to 180). translate: max |shift| as a fraction of width
    and height, or a pair (x, y). scale: (low, high) range of the zoom factor. shear: max
    |shear| in degrees along x, or a pair (x, y) with x + y < 90. hflip, vflip: flip
    probabilities. fill: value of pixels from outside. The defaults change nothing, and then
    ``__call__`` returns ``x`` itself without drawing.

    Example::

        >>> aug = RandomAffine(rotation=30, translate=0.1, scale=(0.9, 1.1), shear=10)
        >>> x2 = aug(x, torch.Generator().manual_seed(0))        # (B, C, H, W) -> same shape
    """

    def __init__(self, rotation: float = 0.0, translate: float | Sequence[float] = 0.0,
                 scale: Sequence[float] = (1.0, 1.0), shear: float | Sequence[float] = 0.0,
                 hflip: float = 0.0, vflip: float = 0.0, fill: float = 0.0, mode: str = "bilinear"):
        k = "RandomAffine"      # the rules of the [image] keys of the same names
        self.rotation = ROTATION(f"{k}.rotation", rotation)
        self.translate = _axes(TRANSLATE(f"{k}.translate", translate))
        self.scale = tuple(SCALE(f"{k}.scale", scale))
        self.shear = _shear_axes(SHEAR(f"{k}.shear", shear))
        self.hflip, self.vflip = PROBABILITY(f"{k}.hflip", hflip), PROBABILITY(f"{k}.vflip", vflip)
        self.fill, self.mode = number()(f"{k}.fill", fill), choice(*_MODES)(f"{k}.mode", mode)
        self.identity = (self.rotation == 0.0 and self.translate == (0.0, 0.0) and self.scale == (1.0, 1.0)
                         and self.shear == (0.0, 0.0) and self.hflip == 0.0 and self.vflip == 0.0)

    def matrices(self, batch: int, height: int, width: int, generator: torch.Generator,
                 device: torch.device | str | None = None) -> Tensor:
        """Draw ``batch`` matrices (B, 3, 3) for images of ``height`` x ``width`` on ``device``."""
        g = check_generator("RandomAffine", generator)
        u = torch.rand((batch, 8), generator=g, device=g.device).to(device or g.device)  # one draw
        s = 2.0 * u[:, :6] - 1.0                                 # symmetric U(-1, 1)
        lo, hi = self.scale
        translate = s[:, 1:3] * s.new_tensor([self.translate[0] * width, self.translate[1] * height])
        return affine_matrices(self.rotation * s[:, 0], translate, lo + (hi - lo) * u[:, 3],
                               s[:, 4:6] * s.new_tensor(self.shear),
                               u[:, 6:8] < u.new_tensor([self.hflip, self.vflip]))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.identity:
            return x
        B, _, H, W = _batch("RandomAffine", x).shape
        return warp(x, self.matrices(B, H, W, generator, x.device), self.fill, self.mode)

    def get_config(self) -> dict[str, Any]:
        return {"rotation": self.rotation, "translate": list(self.translate), "scale": list(self.scale),
                "shear": list(self.shear), "hflip": self.hflip, "vflip": self.vflip,
                "fill": self.fill, "mode": self.mode}


def _crop_pads(n: int, m: int) -> tuple[int, int]:
    """(before, after) padding taking extent n to m centred (negative: crop), as torchvision's
    CenterCrop: offset round((n - m) / 2) when cropping, (m - n) // 2 before when padding."""
    if m > n:
        return (m - n) // 2, (m - n + 1) // 2
    top = int(round((n - m) / 2.0))
    return -top, -(n - m - top)


def center_crop(x: Tensor, size: int | Sequence[int], fill: float = 0.0) -> Tensor:
    """The centred ``size`` window of ``x`` (..., H, W); a side larger than the image is padded
    with ``fill`` (as torchvision's ``CenterCrop``)."""
    h, w = _hw("center_crop.size", size)
    (top, bottom), (left, right) = _crop_pads(x.shape[-2], h), _crop_pads(x.shape[-1], w)
    if max(top, bottom, left, right) <= 0:                       # a view: plain slicing
        return x[..., -top:x.shape[-2] + bottom, -left:x.shape[-1] + right]
    return F.pad(x, (left, right, top, bottom), value=fill)


def random_crop(x: Tensor, size: int | Sequence[int], padding: int = 0, *,
                generator: torch.Generator, fill: float = 0.0) -> Tensor:
    """A ``size`` window at a uniform random offset per sample of ``x`` (B, C, H, W), after
    padding every side with ``padding`` pixels of ``fill`` (torchvision's ``RandomCrop``).

    One ``gather`` on the flattened image: index (top + r) * W' + (left + c).
    """
    B, C, H, W = _batch("random_crop", x).shape
    h, w = _hw("random_crop.size", size)
    p = number(ge=0, integer=True)("random_crop.padding", padding)
    g = check_generator("random_crop", generator)
    if h > H + 2 * p or w > W + 2 * p:
        raise ConfigError(f"random_crop size ({h}, {w}) must fit the padded image "
                          f"({H + 2 * p}, {W + 2 * p}); got images ({H}, {W}) and padding {p}")
    if p:
        x = F.pad(x, (p, p, p, p), value=fill)
        H, W = H + 2 * p, W + 2 * p
    if (h, w) == (H, W):
        return x
    u = torch.rand((B, 2), generator=g, device=g.device, dtype=torch.float64).to(x.device)
    top = (u[:, 0] * (H - h + 1)).long().clamp_(max=H - h)      # uniform on {0, ..., H - h}
    left = (u[:, 1] * (W - w + 1)).long().clamp_(max=W - w)
    rows = top[:, None, None] + torch.arange(h, device=x.device)[None, :, None]      # (B, h, 1)
    cols = left[:, None, None] + torch.arange(w, device=x.device)[None, None, :]     # (B, 1, w)
    index = (rows * W + cols).view(B, 1, h * w).expand(B, C, h * w)
    return x.reshape(B, C, H * W).gather(2, index).view(B, C, h, w)


def resize(x: Tensor, size: int | Sequence[int], aspect: str = "stretch", fill: float = 0.0) -> Tensor:
    """Bilinear resize of ``x`` (B, C, H, W) to ``size`` (antialiased when shrinking).

    aspect: "stretch" scales each axis on its own; "pad" first letterboxes to the target's
    aspect ratio (centred, ``fill``), "crop" first centre-crops to it, so the picture keeps its
    proportions. An int is a square (unlike torchvision's ``Resize(int)``, the smaller edge).
    """
    h, w = _hw("resize.size", size)
    choice("stretch", "pad", "crop")("resize.aspect", aspect)
    H, W = _batch("resize", x).shape[-2:]
    if aspect != "stretch" and H * w != W * h:
        wide = W * h > H * w
        target = (round(W * h / w), W) if wide == (aspect == "pad") else (H, round(H * w / h))
        x = center_crop(x, target, fill)
        H, W = target
    if (H, W) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                         antialias=h < H or w < W)


def normalize(x: Tensor, mean: float | Sequence[float], std: float | Sequence[float]) -> Tensor:
    """``(x - mean[c]) / std[c]`` per channel c (dim 1 of (B, C, ...); (B, L) is one channel);
    one value applies to every channel."""
    C = x.shape[1] if x.dim() > 2 else 1
    stats = []
    for name, v, check in (("mean", mean, number()), ("std", std, number(gt=0.0))):
        v = list_of(check, min_len=1, allowed=f"a number or a list of {C} per-channel values")(
            f"normalize.{name}", v if isinstance(v, (list, tuple)) else [v])
        if len(v) not in (1, C):
            raise invalid(f"normalize.{name}", f"one value or {C} (one per channel)", v)
        stats.append(torch.tensor(v, dtype=x.dtype, device=x.device).view(-1, *[1] * (x.dim() - 2)))
    return (x - stats[0]) / stats[1]


def shift_scale_1d(x: Tensor, shift: Tensor, scale: Tensor, fill: float = 0.0,
                   mode: str = "bilinear") -> Tensor:
    """Move sample b of ``x`` (B, L) or (B, C, L) by ``shift[b]`` samples and stretch it by
    ``scale[b]`` about its centre: ``warp`` of (B, C, 1, L) with M = T((shift, 0)) @ S((scale, 1)).

    Computed in 1-D (bicubic excepted, which takes that warp): output sample j reads the input at
    ``u = (j + 0.5 - L/2 - shift) / scale + L/2 - 0.5``; bilinear gives
    ``(1 - f) x[i] + f x[i + 1]`` (``i = floor(u)``, ``f = u - i``), nearest ``x[round(u)]``
    (half to even, as ``grid_sample``); taps outside [0, L - 1] read ``fill``. One gather of the
    taps of all samples from ``x`` padded with ``fill``.
    """
    B, L = len(_batch("shift_scale_1d", x, (2, 3), "(B, L) or (B, C, L)")), x.shape[-1]
    choice(*_MODES)("shift_scale_1d.mode", mode)
    if mode == "bicubic":
        zero = torch.zeros(B, 2, device=x.device, dtype=x.dtype)
        scale = torch.stack([scale.to(zero), zero[:, 1] + 1.0], -1)
        M = affine_matrices(zero[:, 0], torch.stack([shift.to(zero), zero[:, 1]], -1), scale, zero,
                            zero.bool())
        return warp(x.reshape(B, -1, 1, L), M, fill, mode).view(x.shape)   # (B, C, 1, L) and back
    p = torch.arange(L, device=x.device, dtype=x.dtype) + (0.5 - L / 2)       # centred, (L,)
    u = (p - shift.to(p)[:, None]) / scale.to(p)[:, None] + (L / 2 - 0.5)     # input index, (B, L)
    if mode == "nearest":
        taps = u.round()[:, None]                                               # (B, 1, L)
    else:
        i = u.floor()
        taps, f = torch.stack([i, i + 1.0], 1), (u - i)[:, None]               # (B, 2, L), (B, 1, L)
    # x padded with one fill on each side: every tap outside [0, L - 1] reads a fill there
    xs = F.pad(x.reshape(B, -1, L), (1, 1), value=fill)                      # (B, C, L + 2)
    index = (taps.clamp(-1.0, L) + 1.0).long().view(B, 1, -1).expand(-1, xs.shape[1], -1)
    v = xs.gather(2, index).view(B, xs.shape[1], -1, L)                       # (B, C, taps, L)
    out = v[:, :, 0] if mode == "nearest" else torch.lerp(v[:, :, 0], v[:, :, 1], f)   # (1 - f) a + f b
    return out.view(x.shape)


class RandomShiftScale1d(_Augmentation):
    """Per-sample random shift and stretch of 1-D samples (B, L) or (B, C, L) (``shift_scale_1d``).

    shift: max |shift| as a fraction of L (t ~ U(-shift L, shift L) samples); scale: (low, high)
    range of the stretch. The defaults change nothing, and then ``x`` itself is returned.
    ``draw`` gives the shifts and stretches a call applies (a population draws each member's by it
    and moves all members' samples in one ``shift_scale_1d``).
    """

    def __init__(self, shift: float = 0.0, scale: Sequence[float] = (1.0, 1.0), fill: float = 0.0,
                 mode: str = "bilinear"):
        self.shift = FRACTION("RandomShiftScale1d.shift", shift)
        self.scale = tuple(SCALE("RandomShiftScale1d.scale", scale))
        self.fill = number()("RandomShiftScale1d.fill", fill)
        self.mode = choice(*_MODES)("RandomShiftScale1d.mode", mode)
        self.identity = self.shift == 0.0 and self.scale == (1.0, 1.0)

    def draw(self, n: int, length: int, generator: torch.Generator,
             device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """(shift, scale) of ``n`` samples of ``length``, each (n,) on ``device``: shift
        ``t ~ U(-shift L, shift L)`` in samples, scale ``~ U(low, high)``, from one
        ``rand((n, 2))`` of ``generator``."""
        g = check_generator("RandomShiftScale1d", generator)
        u = torch.rand((n, 2), generator=g, device=g.device).to(device or g.device)
        lo, hi = self.scale
        return self.shift * length * (2.0 * u[:, 0] - 1.0), lo + (hi - lo) * u[:, 1]

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.identity:
            return x
        shift, scale = self.draw(len(x), x.shape[-1], generator, x.device)
        return shift_scale_1d(x, shift, scale, self.fill, self.mode)

    def get_config(self) -> dict[str, Any]:
        return {"shift": self.shift, "scale": list(self.scale), "fill": self.fill, "mode": self.mode}


_IMAGE_ONLY = ("resize", "random_crop", "rotation", "shear", "hflip", "vflip")


class ImagePipeline:
    """``[image]``: resize (every split), then random crop, affine and normalize in
    training, centre crop and normalize at evaluation (module docstring for the notes' example).

    Built from an ``ImageConfig`` (``ImagePipeline(cfg.image)``) or from its keys
    (``ImagePipeline(rotation=30)``), which the section checks.

    ``train`` and ``eval`` start with ``prepare``, which does nothing to data already prepared
    (a resize to the size an image already has returns it), so they take raw or prepared
    batches alike. 1-D samples take translate (as the shift along L) and scale only. ``mean``
    without ``std`` divides by 1, ``std`` without ``mean`` subtracts 0.
    """

    def __init__(self, config: ImageConfig | None = None, **keys: Any):
        c = config if config is not None else ImageConfig(**keys)   # each key checked once, there
        self.config = c
        self.resize = None if c.resize is None else _hw("image.resize", c.resize)
        self.aspect = c.aspect
        self.random_crop = None if c.random_crop is None else _hw("image.random_crop", c.random_crop)
        self.crop_padding = c.crop_padding
        self.affine = RandomAffine(c.rotation, c.translate, c.scale, c.shear, c.hflip, c.vflip)
        self.shift = RandomShiftScale1d(shift=self.affine.translate[0], scale=self.affine.scale)
        self.mean, self.std = c.mean, c.std
        set_keys = {"resize": c.resize, "random_crop": c.random_crop, "rotation": c.rotation,
                    "shear": any(self.affine.shear), "hflip": c.hflip, "vflip": c.vflip}
        self._image_only = [n for n in _IMAGE_ONLY if set_keys[n]]

    def _check_1d(self, shape: Sequence[int]) -> None:
        if self._image_only:
            raise ConfigError(f"config key 'image.{self._image_only[0]}' applies to images "
                              f"(C, H, W) only; got 1-D samples of shape {tuple(shape)} "
                              "(they take translate and scale)")

    def normalize_batch(self, x: Tensor) -> Tensor:
        """``normalize`` with ``mean`` and ``std`` (the last step of ``train`` and ``eval``);
        ``x`` itself without them."""
        if self.mean is None and self.std is None:
            return x
        return normalize(x, self.mean if self.mean is not None else 0.0,
                         self.std if self.std is not None else 1.0)

    def prepare(self, x: Tensor) -> Tensor:
        """The deterministic resize applied to every split (identity without ``resize``)."""
        if x.dim() < 4:
            self._check_1d(x.shape[1:])
            return x
        return x if self.resize is None else resize(x, self.resize, self.aspect)

    def train(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """prepare -> random crop (when ``random_crop``) -> random affine -> normalize."""
        x = self.prepare(x)
        if x.dim() < 4:
            return self.normalize_batch(self.shift(x, generator))
        if self.random_crop is not None:
            x = random_crop(x, self.random_crop, self.crop_padding, generator=generator)
        return self.normalize_batch(self.affine(x, generator))

    def eval(self, x: Tensor) -> Tensor:
        """prepare -> centre crop to ``random_crop``'s size (when set) -> normalize."""
        x = self.prepare(x)
        if x.dim() == 4 and self.random_crop is not None:
            x = center_crop(x, self.random_crop)
        return self.normalize_batch(x)

    def output_shape(self, sample_shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of one sample after ``train``/``eval``; checks the keys fit the data."""
        shape = tuple(int(n) for n in sample_shape)
        channels = shape[0] if len(shape) in (2, 3) else 1
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v is not None and len(v) not in (1, channels):
                raise invalid(f"image.{name}", f"one value or {channels} (one per channel of "
                            f"samples of shape {shape})", v)
        if len(shape) in (1, 2):
            self._check_1d(shape)
            return shape
        if len(shape) != 3:
            raise DataError(f"[image] takes samples of shape (L,), (C, L) or (C, H, W); got {shape}")
        C, H, W = shape
        H, W = self.resize or (H, W)
        if self.random_crop is not None:
            h, w = self.random_crop
            if h > H + 2 * self.crop_padding or w > W + 2 * self.crop_padding:
                raise invalid("image.random_crop", f"a size within the (resized, padded) image "
                            f"({H + 2 * self.crop_padding}, {W + 2 * self.crop_padding})", [h, w])
            H, W = h, w
        return C, H, W

    def __repr__(self) -> str:
        return (f"ImagePipeline(resize={self.resize}, aspect={self.aspect}, random_crop={self.random_crop}, "
                f"crop_padding={self.crop_padding}, affine={self.affine}, mean={self.mean}, std={self.std})")
