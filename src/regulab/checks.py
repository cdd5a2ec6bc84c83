"""Constraints of config keys: each takes ``(key, value)`` and returns the value or raises.

The one error template (scikit-learn's, shortened)::

    config key 'optim.lr' must be a number > 0; got -0.1

Used by the config sections (``regulab.config``) and by the techniques' own objects, so a
value passed in Python is checked like one read from TOML.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import field
from typing import Any, Callable, Mapping

from regulab.errors import ConfigError

__all__ = ["Check", "_key", "_Section", "number", "choice", "boolean", "string", "optional", "list_of",
           "number_or_list", "train_size", "label_maps", "layer_count", "size", "interval", "snr", "did_you_mean"]

Check = Callable[[str, Any], Any]


def _fail(key: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"config key '{key}' must be {allowed}; got {value!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def number(*, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None, integer: bool = False) -> Check:
    """A number (an int when ``integer``) within the given bounds."""
    bounds = [f"{op} {b}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None]
    allowed = ("an integer" if integer else "a number") + (" " + " and ".join(bounds) if bounds else "")

    def check(key: str, v: Any) -> Any:
        ok = isinstance(v, int) and not isinstance(v, bool) if integer else _is_number(v)
        if not ok or (not integer and not math.isfinite(v)):
            raise _fail(key, allowed, v)
        if ((gt is not None and not v > gt) or (ge is not None and not v >= ge)
                or (lt is not None and not v < lt) or (le is not None and not v <= le)):
            raise _fail(key, allowed, v)
        return v if integer else float(v)
    return check


def choice(*options: str) -> Check:
    """One of the given strings; a near miss gets a suggestion."""
    def check(key: str, v: Any) -> Any:
        if v not in options:
            hint = difflib.get_close_matches(str(v).lower(), options, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise _fail(key, "one of " + ", ".join(options) + extra, v)
        return v
    return check


def boolean(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _fail(key, "true or false", v)
    return v


def string(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise _fail(key, "a non-empty string", v)
    return v


def optional(inner: Check) -> Check:
    """``inner`` or absent (None)."""
    def check(key: str, v: Any) -> Any:
        return None if v is None else inner(key, v)
    return check


def list_of(inner: Check, *, min_len: int = 0, allowed: str = "a list") -> Check:
    def check(key: str, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) < min_len:
            raise _fail(key, allowed, v)
        return [inner(f"{key}[{i}]", x) for i, x in enumerate(v)]
    return check


def number_or_list(inner: Check, allowed: str) -> Check:
    """A single number, or one number per layer."""
    def check(key: str, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return list_of(inner, allowed=allowed)(key, v)
        if not _is_number(v):
            raise _fail(key, allowed, v)
        return inner(key, v)
    return check


def train_size(key: str, v: Any) -> Any:
    """A fraction in (0, 1] of the training split, or a count >= 1 of its examples."""
    if isinstance(v, float) and 0.0 < v <= 1.0:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return v
    raise _fail(key, "a fraction in (0, 1] or a whole count >= 1", v)


def label_maps(key: str, v: Any) -> dict:
    """A table ``NAME = [label, ...]`` of lists of integer labels >= 0 (one per class)."""
    if not isinstance(v, Mapping):
        raise _fail(key, "a table NAME = [label of class 0, label of class 1, ...]", v)
    allowed = "a non-empty list of integer labels >= 0, one per class"
    return {string(f"{key}.{name}", name): list_of(number(ge=0, integer=True), min_len=1, allowed=allowed)(
        f"{key}.{name}", labels) for name, labels in v.items()}


def layer_count(key: str, v: Any) -> Any:
    """``"all"`` or a whole number of layers >= 1."""
    if v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return v
    raise _fail(key, "'all' or a whole number of layers >= 1", v)


def size(key: str, v: Any) -> Any:
    """A side length >= 1, or [height, width]."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v):
        return list(v)
    raise _fail(key, "a size >= 1 or [height, width]", v)


def interval(lo: float | None = None, hi: float | None = None) -> Any:
    """[low, high] with lo <= low <= high (<= hi)."""
    allowed = ("[low, high] with " + (f"{lo} <= " if lo is not None else "") + "low <= high"
               + (f" <= {hi}" if hi is not None else ""))

    def check(key: str, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise _fail(key, allowed, v)
        a, b = (number()(key, x) for x in v)
        if a > b or (lo is not None and a < lo) or (hi is not None and b > hi):
            raise _fail(key, allowed, v)
        return [a, b]
    return check


def snr(key: str, v: Any) -> Any:
    """A signal-to-noise ratio in dB, or a [low, high] range drawn per example."""
    if isinstance(v, (list, tuple)):
        return interval()(key, v)
    return number()(key, v)


def did_you_mean(value: str, options) -> str:
    """``"; did you mean 'x'?"`` for the closest option (difflib), or ``""``."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _key(default: Any, check: Check, doc: str) -> Any:
    """Declare a config key with its default, constraint and one-line meaning."""
    meta = {"check": check, "doc": doc}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class _Section:
    """A config section (a dataclass of ``_key`` fields); validates every key on construction,
    so ``OptimConfig(lr=-1)`` fails like the TOML would. ``SECTION`` is its dotted name."""

    SECTION = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, f.metadata["check"](f"{self.SECTION}.{f.name}", getattr(self, f.name)))
