"""``Augment``: a modality's preprocessing and augmentation as the first layer of a network.

As Keras's preprocessing layers (``RandomRotation``, ``RandomCrop``) do, the layer draws a
random transformation for every training example in training mode and applies only the
deterministic part in evaluation mode (a centre crop where training crops at random, the
log-mel features of a clip without its noise or masks). Because it is a layer:

* augmentation runs per batch, on the batch's device, inside the training loop, and each
  epoch sees new draws;
* ``model.eval()`` (validation, the final evaluation, Monte-Carlo dropout) switches it off;
* the saved ``model.safetensors`` takes raw inputs (an audio model takes waveforms);
* it draws from the run's noise generator (``Trainer`` sets ``.generator`` on every layer
  that has one), which checkpoints save, so a resumed run continues with the same draws.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

__all__ = ["Augment", "build_augment"]


class Augment(nn.Module):
    """``pipeline.train(x, generator)`` in training mode, ``pipeline.eval(x)`` otherwise.

    ``pipeline``: an ``ImagePipeline`` or ``AudioPipeline`` (``regulab.augment``); its
    ``features_module()`` (buffers such as a mel filterbank), when it has one, is registered
    here so it follows ``.to(device)`` and is saved with the model.
    """

    def __init__(self, pipeline: Any):
        super().__init__()
        self.pipeline = pipeline
        if hasattr(pipeline, "features_module"):
            self.features = pipeline.features_module()
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self.pipeline.train(x, self.generator)
        return self.pipeline.eval(x)

    def extra_repr(self) -> str:
        return repr(self.pipeline)


def _noise_bank(a) -> torch.Tensor | None:
    """``audio.noise_file``: its clips at the run's sample rate, padded into a bank (K, L)."""
    if a.noise_file is None:
        return None
    from pathlib import Path

    from regulab.modalities.audio.reader import read_wav, resample
    from regulab.errors import ConfigError
    path = Path(a.noise_file)
    files = sorted(path.rglob("*.wav")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise ConfigError(f"config key 'audio.noise_file' must be a WAV file or a folder of "
                          f"WAVs; got {a.noise_file!r}")
    clips = []
    for f in files:
        wave, sr = read_wav(f)
        clips.append(resample(torch.as_tensor(wave), sr, a.sample_rate) if sr != a.sample_rate
                     else torch.as_tensor(wave))
    length = min(len(c) for c in clips)          # a bank of equal rows: each clip's first samples
    return torch.stack([c[:length] for c in clips])


def build_augment(cfg, sample_shape: Sequence[int], audio: bool) -> tuple[Augment | None, tuple]:
    """The ``Augment`` layer ``cfg.augment`` asks for and the shape of what it outputs; for an
    audio dataset always (its features), for others when ``[image]`` is set."""
    if audio:
        from regulab.modalities.audio.augment import AudioPipeline
        a = cfg.audio
        pipeline = AudioPipeline(
            sample_rate=a.sample_rate, features=a.features, n_fft=a.n_fft, hop_length=a.hop_length,
            n_mels=a.n_mels, f_min=a.f_min, f_max=a.f_max, lowpass=a.lowpass, highpass=a.highpass,
            noise_snr=a.noise_snr, noise_prob=a.noise_prob, time_shift=a.time_shift,
            freq_mask=a.freq_mask, time_mask=a.time_mask, n_freq_masks=a.n_freq_masks,
            n_time_masks=a.n_time_masks, noise=_noise_bank(a))
        return Augment(pipeline), tuple(pipeline.output_shape(sample_shape[-1]))
    if not cfg.changed("image"):
        return None, tuple(sample_shape)
    from regulab.modalities.image.augment import ImagePipeline
    i = cfg.image
    pipeline = ImagePipeline(resize=i.resize, aspect=i.aspect, random_crop=i.random_crop,
                             crop_padding=i.crop_padding, rotation=i.rotation, translate=i.translate,
                             scale=tuple(i.scale), shear=i.shear, hflip=i.hflip, vflip=i.vflip,
                             mean=i.mean, std=i.std)
    return Augment(pipeline), tuple(pipeline.output_shape(tuple(sample_shape)))
