"""Error types that map onto the CLI's exit codes, the one message template and "did you mean".

Every error about something the user handed in (config, data, arguments, checkpoint
files) is a ``RegulabInputError`` -- a ``ValueError`` -- whose message is one line
naming the field or file, the value received and what is allowed. The CLI prints it
and exits with code 2. ``DivergedError`` (exit code 3) is raised when training
produced a NaN or Inf loss.

The one template for a bad value (scikit-learn's, shortened), built by ``invalid``::

    config key 'optim.lr' must be a number > 0; got -0.1
    study key 'grid.values' must be a non-empty list; got []

and the one suggestion for a near miss, ``did_you_mean`` (``"; did you mean 'dropout'?"``).
A received value is quoted by ``quote``: its repr cut to ``MAX_QUOTE`` characters, so a huge
value costs no more than a short one in a message.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["RegulabInputError", "ConfigError", "DataError", "CheckpointError", "DivergedError",
           "OutputError", "RunFailed", "Field", "invalid", "unknown", "did_you_mean", "quote", "reason",
           "mask_password", "MAX_QUOTE"]

MAX_QUOTE = 200     # characters of a received value an error message quotes


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


class OutputError(OSError):
    """A run's files could not be written once it had started (disk full, read-only file system,
    no permission): one line, exit code 1; the last good checkpoint is kept, so ``regulab
    resume`` finishes the run once the cause is gone."""


class RunFailed(RuntimeError):
    """A run that failed once it had started, for a reason other than its input, a divergence or
    its disk (a data-parallel process that died or raised): one line, exit code 1, the store
    row marked failed; the last good checkpoint is kept, so ``regulab resume`` continues."""


def reason(e: BaseException, limit: int = MAX_QUOTE) -> str:
    """``e``'s message on one line (its whitespace runs as single spaces), cut to ``limit``
    characters: what a one-line error says of the exception behind it."""
    return " ".join(str(e).split())[:limit]


def quote(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)``, cut to its first ``limit`` characters and ``"... (N chars)"`` when longer;
    a string is cut before its repr is made (a 100 MB value is never copied whole), an integer
    too long to print is described by its digit count, a repr that fails by its type."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} chars)"
    if isinstance(value, int) and value.bit_length() > 3 * limit:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    try:
        text = repr(value)
    except (ValueError, RecursionError):    # too many digits, nested too deep
        return f"<a {type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def mask_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part shown as ``***`` (an error or a
    log line never prints it)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _cut(name: str) -> str:
    """A key's name as a message shows it: at most ``MAX_QUOTE`` characters of it."""
    return name if len(name) <= MAX_QUOTE else f"{name[:MAX_QUOTE]}... ({len(name)} chars)"


def did_you_mean(value: Any, options: Iterable[Any]) -> str:
    """``"; did you mean 'x'?"`` for the closest option (difflib, cutoff 0.6, ignoring case),
    or ``""``."""
    options = list(options)
    if not options or (isinstance(value, str) and len(value) > MAX_QUOTE):
        return ""     # nothing to compare, or no near miss of a short option
    value = value if isinstance(value, str) else quote(value)
    lowered = {str(o).lower(): str(o) for o in options}
    close = difflib.get_close_matches(str(value).lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean '{lowered[close[0]]}'?" if close else ""


class Field(str):
    """A key's dotted name that knows what kind of key it is (``"study key"``), so a check
    deep down names it right: ``invalid`` reads ``field.kind``."""

    def __new__(cls, name: str, kind: str = "config key") -> Field:
        field = super().__new__(cls, name)
        field.kind = kind
        return field


def invalid(field: str, allowed: str, value: Any, *, kind: str = "config key",
            error: type[RegulabInputError] = ConfigError, options: Iterable[Any] = ()) -> RegulabInputError:
    """The error of a bad value: ``<kind> '<field>' must be <allowed>; got <value!r>``, with
    a "did you mean" among ``options`` when one is close (``field.kind`` wins over ``kind``)."""
    kind = getattr(field, "kind", kind)
    return error(f"{kind} '{_cut(field)}' must be {allowed}; got {quote(value)}{did_you_mean(value, options)}")


def unknown(field: str, options: Iterable[str], where: str, *, kind: str = "config key") -> ConfigError:
    """The error of an unknown key: ``unknown <kind> '<field>'; did you mean ..? (keys of
    <where>: ...)``; the suggestion compares the last dotted part of ``field``."""
    options = list(options)
    hint = did_you_mean(field.rsplit(".", 1)[-1], options)
    return ConfigError(f"unknown {kind} '{_cut(field)}'{hint} ({where}: {', '.join(options) or 'none'})")
