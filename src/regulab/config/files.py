"""Study and sweep files: one reader for the files that hold a base config and a table of their own.

A study file (``regulab.studies.spec``) and a sweep file (``regulab.sweeps.spec``) share a
shape::

    [study]                  # or [sweep]: the file's own table, a typed Section (``section``)
    base = "../quickstart.toml"      # optional: a config file, relative to this file
    [base]                   # config sections applied over the base file
    train = { epochs = 20 }
    [...]                    # the kind of file's other tables (variants, space, a kind's table)

``read_spec_file`` checks the top-level tables, builds the file's own table as its ``Section``
(so a bad value or an unknown key gives the same one-line error as a config key, naming it a
"study key" or "sweep key"), and resolves the base config; ``in_experiment`` puts the runs of a
study or sweep that log to MLflow in one experiment named after it. ``flatten`` turns nested config
tables into dotted keys (what ``apply_overrides`` takes); old key names are read as the new ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from regulab.checks import Section
from regulab.config.core import LEGACY, apply_overrides, canonical_key, code_paths, read_toml
from regulab.config.sections import SECTIONS
from regulab.errors import invalid

__all__ = ["flatten", "read_base", "read_spec_file", "config_key_depth", "in_experiment"]


def config_key_depth(parts: list[str]) -> int:
    """How many parts a full config key starting with ``parts`` has (``augment.image.x``: 3)."""
    return 3 if parts and parts[0] == LEGACY else 2


def flatten(table: Mapping[str, Any], where: str, kind: str = "study key",
            extra: tuple[str, ...] = (), prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Nested config tables -> dotted keys: ``{"model": {"dropout": 0.3}}`` -> ``model.dropout``.

    A dict found at a full key's depth (``multitask.groups``) is a value, not a table. Keys
    are given their current names (``augment.image.x`` -> ``image.x``). ``where`` and ``kind``
    name the table in errors; ``extra`` lists the other keys the table may hold."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        parts = [*prefix, *str(k).split(".")]
        if parts[0] not in (*SECTIONS, LEGACY, "name"):
            allowed = "a config key (section.key)" + (f" or one of {', '.join(extra)}" if extra else "")
            raise invalid(f"{where}.{k}", allowed, v, kind=kind)
        if isinstance(v, Mapping) and len(parts) < config_key_depth(parts):
            out.update(flatten(v, where, kind, extra, tuple(parts)))
        else:
            out[canonical_key(".".join(parts))] = v
    return out


def read_base(raw: Mapping[str, Any], where: Path | None, table: str, base_file: Any,
              kind: str) -> dict[str, Any]:
    """The base config of a study or sweep file: ``base_file`` (``[<table>] base``, a config
    file relative to ``where``) with the file's ``[base]`` tables over it."""
    base: dict[str, Any] = {}
    if base_file is not None:
        path = Path(base_file) if where is None else where.parent / base_file
        if not path.is_file():
            raise invalid(f"{table}.base", f"an existing config file (relative to the {table} file)",
                          base_file, kind=kind)
        base = code_paths(read_toml(path, f"{table}.base: config file"), path.parent)
    inline = raw.get("base", {})
    if not isinstance(inline, Mapping):
        raise invalid("base", "a table of config sections", inline, kind=kind)
    here = where.parent if where is not None else Path.cwd()
    return code_paths(apply_overrides(base, flatten(inline, "base", kind)), here)


def read_spec_file(raw: Mapping[str, Any], where: Path | None, section: type[Section],
                   tables: tuple[str, ...], overrides: Mapping[str, Any] | None = None
                   ) -> tuple[Section, dict[str, Any]]:
    """(the file's own table as ``section``, the base config) of a study or sweep file ``raw``
    (as read from TOML; ``where`` is the file, for a relative base path). ``tables`` are the
    other top-level tables the file may hold; ``overrides`` (dotted config keys, ``--set``)
    go over the base."""
    table, kind = section.SECTION, section.KIND
    allowed = (table, "base", *tables)
    for k in raw:
        if k not in allowed:
            raise invalid(k, f"one of {', '.join(allowed)} (tables)", k, kind=kind, options=allowed)
    own = section.from_table(raw.get(table, {}))
    base = read_base(raw, where, table, getattr(own, "base", None), kind)
    return own, code_paths(apply_overrides(base, overrides or {}), Path.cwd())


def in_experiment(base: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``base`` with ``log.mlflow_experiment = name`` when it logs to MLflow (``log.mlflow``) and
    names no experiment: a study's or sweep's runs side by side in one MLflow experiment, as
    Optuna's and Lightning's loggers put a study's trials."""
    log = base.get("log", {})
    if not isinstance(log, Mapping) or not log.get("mlflow") or log.get("mlflow_experiment"):
        return dict(base)
    return apply_overrides(base, {"log.mlflow_experiment": name})
