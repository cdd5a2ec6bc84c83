"""Error types that map onto the CLI's exit codes.

Every error about something the user handed in (config, data, arguments, checkpoint
files) is a ``RegulabInputError`` -- a ``ValueError`` -- whose message is one line
naming the field or file, the value received and what is allowed. The CLI prints it
and exits with code 2. ``DivergedError`` (exit code 3) is raised when training
produced a NaN or Inf loss.
"""

from __future__ import annotations

__all__ = ["RegulabInputError", "ConfigError", "DataError", "CheckpointError", "DivergedError"]


class RegulabInputError(ValueError):
    """Bad input: the message names the field or file, the value and what is allowed."""


class ConfigError(RegulabInputError):
    """A config key is unknown, mistyped or out of range."""


class DataError(RegulabInputError):
    """A dataset cannot be loaded or does not fit the task (missing file, NaN, bad labels...)."""


class CheckpointError(RegulabInputError):
    """A checkpoint or run directory is missing, corrupted or does not match its config."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss; ``epoch`` and ``step`` say where (1-based)."""

    def __init__(self, epoch: int, step: int, value: float):
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(
            f"training diverged: loss is {value} at epoch {epoch}, step {step}; "
            "the last good checkpoint is kept (try a smaller optim.lr)"
        )
