"""A study's variant: config overrides plus how the report places it, read from a study file.

Meta keys of a variant table (the rest are config keys, dotted or nested): ``label`` (shown in
the report), ``group`` and ``x`` (its series and position on the study's x axis), ``members``
(K >= 2: each seed trains a deep ensemble of K networks and evaluates their averaged
probabilities), ``combine`` (false: never part of the clinic's best combination).

Both the study file reader (``regulab.studies.spec``) and the kinds that make their own
variants (``regulab.studies.kinds``) build variants here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regulab.config.files import flatten as flatten_config
from regulab.errors import invalid

__all__ = ["Variant", "META_KEYS", "KIND", "flatten", "read_variant"]

META_KEYS = ("label", "group", "x", "members", "combine")
KIND = "study key"          # what errors call a key of a study file


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
    if not isinstance(members, int) or isinstance(members, bool) or members < 1:
        raise invalid(f"{where}.members", "an integer >= 2 (a deep ensemble) or 1", members,
                      kind=KIND)
    x = meta.get("x")
    if x is not None and (not isinstance(x, (int, float)) or isinstance(x, bool)):
        raise invalid(f"{where}.x", "a number", x, kind=KIND)
    for k in ("label", "group"):
        if k in meta and not isinstance(meta[k], str):
            raise invalid(f"{where}.{k}", "a string", meta[k], kind=KIND)
    if not isinstance(meta.get("combine", True), bool):
        raise invalid(f"{where}.combine", "true or false", meta["combine"], kind=KIND)
    return Variant(name, overrides, meta.get("label", ""), meta.get("group"),
                   None if x is None else float(x), members, meta.get("combine", True))
