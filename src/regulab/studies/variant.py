"""A study's variant: config overrides plus how the report places it, read from a study file.

Meta keys of a variant table (the rest are config keys, dotted or nested): ``label`` (shown in
the report), ``group`` and ``x`` (its series and position on the study's x axis), ``members``
(K >= 2: each seed trains a deep ensemble of K networks and evaluates their averaged
probabilities), ``combine`` (false: never part of the clinic's best combination), ``tune``
(one config key and the strengths to try: ``tune = { "regularization.l2" = [1e-5, 1e-4, 1e-3] }``
or a range ``{ low = 1e-5, high = 1e-2, n = 4, log = true }``, spaced evenly, geometrically
with ``log``; the variant keeps the strength with the best mean validation score,
``regulab.studies.tune``).

Both the study file reader (``regulab.studies.spec``) and the kinds that make their own
variants (``regulab.studies.kinds``) build variants here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regulab.checks import MAX_MEMBERS
from regulab.config.files import flatten as flatten_config
from regulab.errors import invalid

__all__ = ["Variant", "Tune", "META_KEYS", "KIND", "flatten", "read_variant", "read_tune"]

META_KEYS = ("label", "group", "x", "members", "combine", "tune")
KIND = "study key"          # what errors call a key of a study file


@dataclass(frozen=True)
class Tune:
    """The strengths a variant is tried at: one config key, its values in order, and whether
    they are spaced geometrically (the report's axis is then logarithmic)."""
    key: str
    values: tuple
    log: bool = False


@dataclass
class Variant:
    """One arm of a study: config overrides plus how the report places it."""
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    group: str | None = None
    x: float | None = None
    members: int = 1            # > 1: a deep ensemble per seed
    combine: bool = True        # may be part of the best combination
    tune: Tune | None = None    # tried at each of these strengths; the best on validation kept

    def __post_init__(self):
        self.label = self.label or self.name


def flatten(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Nested config tables of a study file -> dotted keys (``regulab.config.files.flatten``)."""
    return flatten_config(table, where, KIND, META_KEYS)


def read_variant(name: str, table: Any) -> Variant:
    """The variant ``[variants.<name>]`` of a study file: its meta keys checked, its config
    keys flattened (they are checked when the study builds its configs)."""
    where = f"variants.{name}"
    if not isinstance(table, Mapping):
        raise invalid(where, "a table of config keys", table, kind=KIND)
    meta = {k: table[k] for k in META_KEYS if k in table}
    overrides = flatten({k: v for k, v in table.items() if k not in META_KEYS}, where)
    members = meta.get("members", 1)
    if not isinstance(members, int) or isinstance(members, bool) or not 1 <= members <= MAX_MEMBERS:
        raise invalid(f"{where}.members", f"an integer from 2 to {MAX_MEMBERS} (a deep ensemble) or 1", members,
                      kind=KIND)
    x = meta.get("x")
    if x is not None and (not isinstance(x, (int, float)) or isinstance(x, bool)):
        raise invalid(f"{where}.x", "a number", x, kind=KIND)
    for k in ("label", "group"):
        if k in meta and not isinstance(meta[k], str):
            raise invalid(f"{where}.{k}", "a string", meta[k], kind=KIND)
    if not isinstance(meta.get("combine", True), bool):
        raise invalid(f"{where}.combine", "true or false", meta["combine"], kind=KIND)
    tune = None if "tune" not in meta else read_tune(f"{where}.tune", meta["tune"])
    if tune is not None and members > 1:
        raise invalid(f"{where}.tune", "absent for a deep ensemble (members > 1)", meta["tune"],
                      kind=KIND)
    return Variant(name, overrides, meta.get("label", ""), meta.get("group"),
                   None if x is None else float(x), members, meta.get("combine", True), tune)


_RANGE = ("low", "high", "n", "log")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_tune(where: str, value: Any) -> Tune:
    """``tune = { "section.key" = [values] }`` or ``{ "section.key" = { low, high, n, log } }``:
    one key; a list of 2+ distinct values, or a range of n >= 2 points from low to high
    (geometric with ``log = true``, which needs low > 0). The values are checked as config
    values when the study builds its configs."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise invalid(where, 'one config key and its strengths: { "section.key" = [values] } or '
                      '{ "section.key" = { low, high, n, log } }', value, kind=KIND)
    (k, entry), = value.items()
    (k, _), = flatten({k: 0}, where).items()           # its current name, or the one error
    field = f'{where}."{k}"'
    if isinstance(entry, list):
        if len(entry) < 2 or len({repr(v) for v in entry}) != len(entry):
            raise invalid(field, "a list of 2 or more distinct values", entry, kind=KIND)
        nums = all(_number(v) for v in entry)
        log = nums and min(entry) > 0 and max(entry) / min(entry) >= 100
        return Tune(k, tuple(entry), log)
    if not isinstance(entry, Mapping) or set(entry) - set(_RANGE) or not {"low", "high"} <= set(entry):
        raise invalid(field, "a list of values or a table { low, high, n, log }", entry, kind=KIND)
    low, high, n, log = entry["low"], entry["high"], entry.get("n", 4), entry.get("log", False)
    if not (_number(low) and _number(high)) or low >= high:
        raise invalid(field, "numbers low < high", {"low": low, "high": high}, kind=KIND)
    if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= 50:
        raise invalid(f"{field}.n", "an integer from 2 to 50", n, kind=KIND)
    if not isinstance(log, bool):
        raise invalid(f"{field}.log", "true or false", log, kind=KIND)
    if log and low <= 0:
        raise invalid(f"{field}.low", "> 0 with log = true", low, kind=KIND)
    points = (low * (high / low) ** (i / (n - 1)) if log else low + (high - low) * i / (n - 1)
              for i in range(n))
    ints = isinstance(low, int) and isinstance(high, int)
    values = tuple(dict.fromkeys(round(p) if ints else float(f"{p:.6g}") for p in points))
    return Tune(k, values, log)
