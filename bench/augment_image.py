"""Images per second of regulab's batched augmentation against torchvision (per sample) and Kornia.

(r) ``regulab.modalities.image.augment.RandomAffine(rotation=30, translate=0.1, scale=(0.9, 1.1), shear=10)``
    on whole (256, 1, 28, 28) float batches, every sample its own draw, one grid_sample call;
(a) torchvision's ``RandomAffine(30, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10,
    BILINEAR)`` applied per sample inside a ``DataLoader`` (batch_size 256, num_workers 0), as a
    Dataset's transform runs: on float tensors (a-tensor) and on PIL images made per sample by
    ``Image.fromarray`` as ``torchvision.datasets.MNIST`` does, then ``ToTensor`` (a-PIL);
(b) ``kornia.augmentation.RandomAffine`` (same ranges, p=1) on the same batch tensors.

And the notes' exact pipeline, ``Resize((32, 32)), RandomCrop((28, 28)), RandomRotation(30,
BILINEAR), ToTensor(), Normalize((0.5,), (0.5,))`` per sample on PIL images in a DataLoader,
against ``ImagePipeline(resize=32, random_crop=28, rotation=30, mean=[0.5], std=[0.5]).train``
on batches. The methods run interleaved (the order rotates every repeat) so drift hits all;
each figure is a median over the repeats, each ratio the median of per-repeat ratios. Every
method runs with the same ``torch.set_num_threads`` (``--threads``, default 1).

The peers need their own venv (about 5.5 GB: the CUDA build of torch; the CPU is used)::

    python3 -m venv .bench-venv
    .bench-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 kornia
    .bench-venv/bin/pip install -e .          # regulab and its dependencies; torch is kept
    .bench-venv/bin/python bench/augment_image.py [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from machine import cpu_name  # bench/machine.py, beside this script
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from regulab.modalities.image.augment import ImagePipeline, RandomAffine

BATCH, SIDE = 256, 28
GEOMETRY = dict(rotation=30.0, translate=0.1, scale=(0.9, 1.1), shear=10.0)


class PerSample(Dataset):
    """A Dataset applying ``transform`` to one sample at a time (PIL images when ``pil``)."""

    def __init__(self, images: torch.Tensor, transform, pil: bool):
        self.u8 = (images * 255).round().to(torch.uint8).squeeze(1).numpy() if pil else None
        self.images, self.transform, self.pil = images, transform, pil

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = Image.fromarray(self.u8[i]) if self.pil else self.images[i]
        return self.transform(x)


def methods(images: torch.Tensor, batches: int, slow_batches: int) -> dict:
    """name -> (function processing some images, number of images it processes)."""
    import kornia.augmentation as K
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    bil = InterpolationMode.BILINEAR
    tv_affine = T.RandomAffine(degrees=30, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10, interpolation=bil)
    notes = T.Compose([T.Resize((32, 32), interpolation=bil), T.RandomCrop((28, 28)),
                       T.RandomRotation(30, interpolation=bil), T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    loaders = {"a-tensor": DataLoader(PerSample(images, tv_affine, pil=False), batch_size=BATCH),
               "a-PIL": DataLoader(PerSample(images, T.Compose([tv_affine, T.ToTensor()]), pil=True),
                                   batch_size=BATCH),
               "notes-torchvision": DataLoader(PerSample(images, notes, pil=True), batch_size=BATCH)}
    kornia = K.RandomAffine(degrees=30, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10, p=1.0)
    ours = RandomAffine(**GEOMETRY)
    pipeline = ImagePipeline(resize=32, random_crop=28, rotation=30, mean=[0.5], std=[0.5])
    batch = images[:BATCH]
    g = torch.Generator().manual_seed(0)

    def per_sample(loader):
        def run():
            for _ in loader:
                pass
        return run

    def batched(fn):
        def run():
            for _ in range(batches):
                fn(batch)
        return run

    return {"r": (batched(lambda x: ours(x, g)), batches * BATCH),
            "b": (batched(kornia), batches * BATCH),
            **{k: (per_sample(v), slow_batches * BATCH) for k, v in loaders.items()},
            "notes-regulab": (batched(lambda x: pipeline.train(x, g)), batches * BATCH)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=40, help="batches per timing, batched methods")
    parser.add_argument("--slow-batches", type=int, default=2, help="batches per timing, per-sample methods")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)      # torchvision and Kornia draw from the global RNG
    images = torch.rand(BATCH * args.slow_batches, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    fns = methods(images, args.batches, args.slow_batches)
    for fn, _ in fns.values():   # warm up
        fn()
    rates: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    with torch.inference_mode():
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn, n = fns[name]
                start = time.perf_counter()
                fn()
                rates[name].append(n / (time.perf_counter() - start))

    import kornia
    import torchvision
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"torch.set_num_threads({args.threads}); torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}, kornia {kornia.__version__}, python {platform.python_version()}; "
          f"{args.repeats} repeats, batch {BATCH} x 1 x {SIDE} x {SIDE}\n")
    labels = {"r": "(r) regulab RandomAffine, batched",
              "a-tensor": "(a) torchvision RandomAffine per sample, tensors, DataLoader",
              "a-PIL": "(a) torchvision RandomAffine per sample, PIL + ToTensor, DataLoader",
              "b": "(b) Kornia RandomAffine, batched",
              "notes-torchvision": "notes' pipeline, torchvision per sample (PIL), DataLoader",
              "notes-regulab": "notes' pipeline, regulab ImagePipeline.train, batched"}
    print("| method | images/s (median) | min–max |\n|---|---|---|")
    for k, label in labels.items():
        print(f"| {label} | {statistics.median(rates[k]):,.0f} | {min(rates[k]):,.0f}–{max(rates[k]):,.0f} |")
    print("\n| ratio | median | min–max | target |\n|---|---|---|---|")
    for num, den, target in (("r", "a-tensor", "≥ 30"), ("r", "a-PIL", "≥ 30"), ("r", "b", "≥ 1.5"),
                             ("notes-regulab", "notes-torchvision", "")):
        q = [x / y for x, y in zip(rates[num], rates[den])]
        print(f"| {num} / {den} | **{statistics.median(q):.1f}** | {min(q):.1f}–{max(q):.1f} | {target} |")


if __name__ == "__main__":
    main()
