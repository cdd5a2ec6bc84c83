"""Constraints of config keys, and how a key is declared.

A constraint takes ``(key, value)`` and returns the (normalized) value or raises the one error
of ``regulab.errors.invalid``::

    config key 'optim.lr' must be a number > 0; got -0.1

``key(default, check, doc, population=...)`` declares a key of a config section (a dataclass
deriving from ``Section``, which validates every key when it is constructed). Each key also
says how it behaves in a population -- K runs trained as one batched model
(``regulab.engine.population``): ``MEMBER`` (members may differ in it: a seed, a strength),
``SHARED`` (every member has the same value: the data, the architecture), ``IGNORED`` (it does
not change training: names, logging, the final evaluation) or ``blocks(...)`` (a value other
than the default, or than those listed, makes the run train alone: batch norm, EMA, ...).

Used by the config sections (``regulab.config``) and by the techniques' own objects, so a
value passed in Python is checked like one read from TOML.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from regulab.errors import ConfigError, Field, invalid, unknown
from regulab.paths import MAX_NAME, is_plain_name

__all__ = ["Check", "key", "REQUIRED", "Section", "Stack", "MEMBER", "SHARED", "IGNORED", "blocks", "number",
           "choice", "kind_of", "auto_or_count", "boolean", "string", "text", "name", "schema_of", "optional",
           "list_of", "number_or_list", "train_size", "label_maps", "layer_count", "size", "interval", "snr",
           "MAX_INT", "FLOAT32_MAX", "MAX_ITEMS", "MAX_SEED", "MAX_CLASSES", "MAX_MEMBERS", "MAX_SIDE", "seed"]

Check = Callable[[str, Any], Any]

MAX_INT = 2**63 - 1                 # every integer key fits in 64 bits (torch, NumPy, the run store)
FLOAT32_MAX = 3.4028234663852886e38    # every number key stays finite in float32, where it is used
MAX_ITEMS = 10_000                  # items of a list key, unless its check says fewer
MAX_SEED = 2**31 - 1                # a seed: NumPy's RandomState takes < 2^32, and the split
                                    # draws with seed + 1 (validation), an ensemble seed + k
MAX_CLASSES = 10_000                # classes of a classification dataset: labels 0..K-1, K at most
                                    # this (a K x K confusion matrix, a K-wide output layer)
MAX_MEMBERS = 100                   # members of a deep ensemble (--members, a variant's members)
MAX_SIDE = 4096                     # pixels of an image or frame side (resize, crop, padding, video)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def number(*, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None, integer: bool = False) -> Check:
    """A number (an int when ``integer``) within the given bounds."""
    bounds = [f"{op} {b}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None]
    allowed = ("an integer" if integer else "a number") + (" " + " and ".join(bounds) if bounds else "")
    limit = MAX_INT if integer else FLOAT32_MAX
    huge = allowed + (" (at most 2^63 - 1 in size: 64 bits)" if integer else
                      f" (finite in float32: at most {FLOAT32_MAX:.4g} in size)")

    def check(key: str, v: Any) -> Any:
        ok = isinstance(v, int) and not isinstance(v, bool) if integer else _is_number(v)
        if not ok or (not integer and isinstance(v, float) and not math.isfinite(v)):
            raise invalid(key, allowed, v)
        if abs(v) > limit:
            raise invalid(key, huge, v)
        if ((gt is not None and not v > gt) or (ge is not None and not v >= ge)
                or (lt is not None and not v < lt) or (le is not None and not v <= le)):
            raise invalid(key, allowed, v)
        return v if integer else float(v)
    check.schema = {"type": "integer" if integer else "number",
                    **{k: b for k, b in (("exclusiveMinimum", gt), ("minimum", ge), ("exclusiveMaximum", lt),
                                         ("maximum", le)) if b is not None}}
    return check


def choice(*options: str) -> Check:
    """One of the given strings; a near miss gets a suggestion."""
    def check(key: str, v: Any) -> Any:
        if v not in options:
            raise invalid(key, "one of " + ", ".join(options), v, options=options)
        return v
    check.schema = {"enum": list(options)}
    return check


def kind_of(test: Callable[[Any], bool], allowed: str, schema: dict | None = None) -> Check:
    """A value for which ``test`` holds, returned as it is (``schema``: its JSON Schema)."""
    def check(key: str, v: Any) -> Any:
        if not test(v):
            raise invalid(key, allowed, v)
        return v
    if schema is not None:
        check.schema = schema
    return check


boolean = kind_of(lambda v: isinstance(v, bool), "true or false", {"type": "boolean"})
string = kind_of(lambda v: isinstance(v, str) and bool(v), "a non-empty string",
                 {"type": "string", "minLength": 1})
text = kind_of(lambda v: isinstance(v, str), "a string", {"type": "string"})   # empty or not
name = kind_of(is_plain_name,     # it names a directory: regulab.paths
               f"a plain name (1 to {MAX_NAME} characters, no '/', not '..', no control characters)",
               {"type": "string", "minLength": 1, "maxLength": MAX_NAME,
                "pattern": "^(?!\\.\\.?$)[^/\\x00-\\x1f\\x7f]+$"})


def auto_or_count(allowed: str, most: float = math.inf) -> Check:
    """"auto", or a whole number from 1 to ``most`` (a thread, process or epoch count);
    ``allowed`` is what the error says."""
    return kind_of(lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= most),
                   allowed)


seed = number(ge=0, le=MAX_SEED, integer=True)   # every library regulab seeds takes it, as seed + 1 too


def schema_of(check: Check) -> dict:
    """The JSON Schema of the values ``check`` accepts, as far as it says ({}: any; the check
    itself has the last word)."""
    return dict(getattr(check, "schema", {}))


def optional(inner: Check) -> Check:
    """``inner`` or absent (None)."""
    def check(key: str, v: Any) -> Any:
        return None if v is None else inner(key, v)
    check.schema = schema_of(inner)   # absent: not in the file
    return check


def list_of(inner: Check, *, min_len: int = 0, max_len: int = MAX_ITEMS, allowed: str = "a list") -> Check:
    """A list of ``min_len`` to ``max_len`` items, each checked by ``inner``."""
    def check(key: str, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) < min_len:
            raise invalid(key, allowed, v)
        if len(v) > max_len:
            raise invalid(key, f"{allowed} (at most {max_len} items)", v)
        return [inner(Field(f"{key}[{i}]", getattr(key, "kind", "config key")), x) for i, x in enumerate(v)]
    check.schema = {"type": "array", "items": schema_of(inner), "maxItems": max_len,
                    **({"minItems": min_len} if min_len else {})}
    return check


def number_or_list(inner: Check, allowed: str) -> Check:
    """A single number, or one number per layer."""
    def check(key: str, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return list_of(inner, allowed=allowed)(key, v)
        if not _is_number(v):
            raise invalid(key, allowed, v)
        return inner(key, v)
    one = schema_of(inner)
    check.schema = {"anyOf": [one, {"type": "array", "items": one}]}
    return check


def train_size(key: str, v: Any) -> Any:
    """A fraction in (0, 1] of the training split, or a count >= 1 of its examples."""
    if isinstance(v, float) and 0.0 < v <= 1.0:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return v
    raise invalid(key, "a fraction in (0, 1] or a whole count >= 1", v)


def label_maps(key: str, v: Any) -> dict:
    """A table ``NAME = [label, ...]`` of lists of integer labels >= 0 (one per class)."""
    if not isinstance(v, Mapping):
        raise invalid(key, "a table NAME = [label of class 0, label of class 1, ...]", v)
    allowed = "a non-empty list of integer labels >= 0, one per class"
    label = number(ge=0, lt=MAX_CLASSES, integer=True)
    return {string(f"{key}.{name}", name): list_of(label, min_len=1, max_len=MAX_CLASSES, allowed=allowed)(
        f"{key}.{name}", labels) for name, labels in v.items()}


def layer_count(key: str, v: Any) -> Any:
    """``"all"``, a whole number of layers >= 1, or a list of module names."""
    if v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return v
    if isinstance(v, list) and v and all(isinstance(n, str) and n for n in v):
        return list(v)
    raise invalid(key, "'all', a whole number of layers >= 1, or a list of module names", v)


def size(key: str, v: Any) -> Any:
    """A side length from 1 to ``MAX_SIDE``, or [height, width]."""
    def side(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= MAX_SIDE
    if side(v):
        return v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(side(x) for x in v):
        return list(v)
    raise invalid(key, f"a size from 1 to {MAX_SIDE} (MAX_SIDE) or [height, width]", v)


def interval(lo: float | None = None, hi: float | None = None) -> Any:
    """[low, high] with lo <= low <= high (<= hi)."""
    allowed = ("[low, high] with " + (f"{lo} <= " if lo is not None else "") + "low <= high"
               + (f" <= {hi}" if hi is not None else ""))

    def check(key: str, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise invalid(key, allowed, v)
        a, b = (number()(key, x) for x in v)
        if a > b or (lo is not None and a < lo) or (hi is not None and b > hi):
            raise invalid(key, allowed, v)
        return [a, b]
    bounds = {k: b for k, b in (("minimum", lo), ("maximum", hi)) if b is not None}
    check.schema = {"type": "array", "items": {"type": "number", **bounds},
                    "minItems": 2, "maxItems": 2}
    return check


def snr(key: str, v: Any) -> Any:
    """A signal-to-noise ratio in dB, or a [low, high] range drawn per example."""
    if isinstance(v, (list, tuple)):
        return interval()(key, v)
    return number()(key, v)


@dataclass(frozen=True)
class Stack:
    """How a config key behaves in a population (module docstring): ``role`` is "member",
    "shared", "ignored" or "blocks"; a blocking key stacks at its default and at ``allowed``."""
    role: str
    allowed: tuple = ()

    def blocks_at(self, value: Any, default: Any) -> bool:
        """Whether ``value`` of a key with this tag keeps a run out of populations."""
        return self.role == "blocks" and value != default and value not in self.allowed


MEMBER, SHARED, IGNORED = Stack("member"), Stack("shared"), Stack("ignored")


def blocks(*allowed: Any) -> Stack:
    """The tag of a key whose non-default values (other than ``allowed``) train alone."""
    return Stack("blocks", tuple(allowed))


REQUIRED = dataclasses.MISSING     # the default of a key that must be given


def key(default: Any, check: Check, doc: str, *, population: Stack | None = None) -> Any:
    """Declare a config key: its default (``REQUIRED``: none, it must be given), constraint,
    one-line meaning and population tag."""
    meta = {"check": check, "doc": doc, "population": population}
    if default is REQUIRED:
        return field(metadata=meta)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class Section:
    """A config section (a dataclass of ``key`` fields); validates every key on construction,
    so ``OptimConfig(lr=-1)`` fails like the TOML would. ``SECTION`` is its dotted name,
    ``KIND`` what its errors call a key (a study file's ``[study]`` says "study key")."""

    SECTION = ""
    KIND = "config key"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, self.check(f.name, getattr(self, f.name)))
        self.relations()

    def relations(self) -> None:
        """The checks between keys of this section (none by default)."""

    @classmethod
    def check(cls, name: str, value: Any, where: str | None = None) -> Any:
        """``value`` of key ``name`` validated by the key's own constraint (the one validation
        of that key, for a technique's Python object too); ``where`` names the table in errors
        (default ``SECTION``)."""
        where = cls.SECTION if where is None else where
        dotted = f"{where}.{name}" if where else name
        f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
        if f is None:
            raise unknown(dotted, [f.name for f in dataclasses.fields(cls)],
                          f"keys of [{where}]" if where else "keys of the top level", kind=cls.KIND)
        return f.metadata["check"](Field(dotted, cls.KIND), value)

    @classmethod
    def from_table(cls, values: Any, name: str | None = None) -> Section:
        """The section of a TOML table (a mapping), named ``name`` in errors (default
        ``SECTION``): an unknown key gets a "did you mean", a ``REQUIRED`` key must be there."""
        name = cls.SECTION if name is None else name
        if not isinstance(values, Mapping):
            raise invalid(name or "the file", "a table (section)", values, kind=cls.KIND)
        fields = dataclasses.fields(cls)
        for k in values:
            if k not in [f.name for f in fields]:
                raise unknown(f"{name}.{k}" if name else str(k), [f.name for f in fields],
                              f"keys of [{name}]" if name else "keys of the top level", kind=cls.KIND)
        kwargs = {}
        for f in fields:
            if f.name in values:
                kwargs[f.name] = cls.check(f.name, values[f.name], name)
            elif f.default is REQUIRED and f.default_factory is REQUIRED:
                dotted = f"{name}.{f.name}" if name else f.name
                raise ConfigError(f"{cls.KIND} '{dotted}' is missing; it is {f.metadata['doc']}")
        return cls(**kwargs)
