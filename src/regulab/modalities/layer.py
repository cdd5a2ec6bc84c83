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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from regulab.modalities.audio.augment import AudioPipeline, noise_bank
from regulab.modalities.image.augment import ImagePipeline

__all__ = ["Augment", "build_augment"]


class Augment(nn.Module):
    """``pipeline.train(x, generator)`` in training mode, ``pipeline.eval(x)`` otherwise.

    ``pipeline``: an ``ImagePipeline`` or ``AudioPipeline`` (``regulab.modalities``); its
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


def build_augment(cfg, modality: str, sample_shape: Sequence[int]) -> tuple[Augment | None, tuple]:
    """The ``Augment`` layer the config asks for on data of ``modality`` (``Dataset.modality``),
    and the shape of what it outputs. Where each modality computes its features:

    * audio: always a layer (``[audio]``), since its features (filters, log-mel) are computed
      in it, on the device, so that noise and shifts act on the waveforms before them;
    * everything else: a layer when ``[image]`` is set (images, and 1-D samples: shift and
      stretch); text features are fitted after the split (``modalities.text.features.featurize``)
      and video's frames and flow at reading (``modalities.video.features``), before training.
    """
    if modality == "audio":
        pipeline = AudioPipeline(cfg.audio, noise=noise_bank(cfg.audio))
        return Augment(pipeline), tuple(pipeline.output_shape(sample_shape[-1]))
    if not cfg.changed("image"):
        return None, tuple(sample_shape)
    pipeline = ImagePipeline(cfg.image)
    return Augment(pipeline), tuple(pipeline.output_shape(tuple(sample_shape)))
