"""What a run writes for the viewers people already use (``[log]``), beside metrics.csv and the
run store: TensorBoard event files (``[log] tensorboard = true``).

``TensorBoardLog`` writes ``<run dir>/tensorboard/``: each epoch's scalars under their metrics.csv
names (``train_loss``, ``val_acc``, ``lr``, ``penalty``, ...) at step = the epoch, and at the fit's
end the run's config as hyperparameters (``section.key``; lists and None as text) with its last
epoch's validation scores, for TensorBoard's HParams view -- so ``tensorboard --logdir runs/``
compares every run, a study's and a sweep's too. A resumed run purges the events after its
checkpoint's epoch (``SummaryWriter(purge_step=...)``), as metrics.csv is rewritten, so each
epoch is shown once. A population's members write their own, as they write their own run.

The writer is torch's ``torch.utils.tensorboard.SummaryWriter``, which needs the tensorboard
package (``pip install 'regulab[tensorboard]'``); without it ``check`` refuses the key when the
run is prepared, before anything is written.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from regulab.callbacks import Callback
from regulab.config.core import Config
from regulab.config.files import flatten
from regulab.errors import ConfigError, invalid

__all__ = ["TensorBoardLog", "viewers", "check", "hparams"]


def check(cfg: Config) -> None:
    """Refuse ``[log]`` keys whose package is missing (one line, before any work)."""
    if cfg.log.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise invalid("log.tensorboard", "false, or true with the tensorboard package installed "
                      "(pip install 'regulab[tensorboard]')", True, error=ConfigError)


def hparams(cfg: Config) -> dict[str, Any]:
    """The config as TensorBoard's hyperparameters: ``{"section.key": value}``, each value a
    number, a bool or text (lists, tables and None as their TOML-like text)."""
    return {key: value if isinstance(value, (bool, int, float, str)) else str(value)
            for key, value in flatten(cfg.to_dict(portable=True), "config").items()}


class TensorBoardLog(Callback):
    """Each epoch's scalars and, at the end, the hyperparameters, as TensorBoard event files
    under ``run_dir/tensorboard`` (module docstring)."""

    stackable = True

    def __init__(self, run_dir: Path, cfg: Config):
        self.dir, self.cfg, self.writer = Path(run_dir) / "tensorboard", cfg, None
        self.last: dict[str, float] = {}

    def on_fit_start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter
        # a resumed run: the events after its checkpoint's epoch go, as they are trained again
        self.writer = SummaryWriter(str(self.dir), purge_step=trainer.epoch + 1 if trainer.epoch else None)

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, trainer.epoch)
        self.last = dict(logs)

    def on_fit_end(self, trainer) -> None:
        if self.writer is None:
            return
        scores = {f"hparam/{k}": v for k, v in self.last.items()
                  if k.startswith("val_") and isinstance(v, (int, float)) and math.isfinite(v)}
        if scores:
            self.writer.add_hparams(hparams(self.cfg), scores, run_name=".", global_step=trainer.epoch)
        self.writer.close()
        self.writer = None


def viewers(cfg: Config, run_dir: Path) -> list[Callback]:
    """The viewer callbacks ``[log]`` asks for, for the run in ``run_dir``."""
    return [TensorBoardLog(run_dir, cfg)] if cfg.log.tensorboard else []
