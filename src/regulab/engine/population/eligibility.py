"""Which runs may train together as one population -- derived from the config keys' tags.

Every key of every section of ``regulab.config.core.Config`` is declared with a population tag
(``regulab.checks.key(..., population=...)``), and the rules here are read off those tags,
with no list of keys written by hand:

* ``MEMBER_KEYS`` (``MEMBER``): members may differ in them -- a seed, a drop probability, a
  penalty or noise strength, label smoothing, an EMA decay, the learning rate, the weight decay;
* ``IGNORED_KEYS`` (``IGNORED``): they do not change training -- the run's name, logging,
  the final evaluation;
* ``BLOCKING_KEYS`` (``blocks(*allowed)``): a value other than the default (or than those
  ``allowed``) keeps the run out of populations -- bagging, multi-task heads, transfer, ...;
* every other key (``SHARED``, and a blocking key at a value that stacks) must be equal.

So ``population_key(cfg)`` is the config's SHARED and blocking values: configs with equal keys
may train together, and None means ``cfg`` cannot stack at all; ``ineligible(cfg)`` says why,
e.g. ``multitask.tasks = ['parity'] blocks stacking``.

A key without a tag fails loud: ``config_tags`` raises ``TypeError`` naming it, and it runs
when this module is imported -- so a new config key declared without a population tag fails
every test that touches populations, not silently one day in a study.

Beyond the config, a run's network, optimizer and callbacks must have a stacked form too;
``regulab.engine.population.population`` checks those (``unstackable``, ``Unsupported``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from regulab.checks import Section, Stack
from regulab.config.core import Config

__all__ = ["config_tags", "section_tags", "TAGS", "MEMBER_KEYS", "IGNORED_KEYS", "BLOCKING_KEYS",
           "ineligible", "population_key"]

def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def section_tags(section: type[Section], prefix: str | None = None) -> dict[str, tuple[Stack, Any]]:
    """``{"section.key": (tag, default)}`` of every key of ``section``; a key without a
    population tag raises ``TypeError`` naming it."""
    prefix = prefix or section.SECTION
    tags = {}
    for f in dataclasses.fields(section):
        tag = f.metadata.get("population")
        if not isinstance(tag, Stack):
            raise TypeError(f"config key '{prefix}.{f.name}' has no population tag; declare it with "
                            "regulab.checks.key(..., population=MEMBER, SHARED, IGNORED or blocks(...))")
        tags[f"{prefix}.{f.name}"] = (tag, _default(f))
    return tags


def config_tags(config: type = Config) -> dict[str, tuple[Stack, Any]]:
    """``{"section.key": (tag, default)}`` over every section of ``config`` (a dataclass whose
    fields are ``Section``s or keys of their own, as the run's ``name``); a key without a tag
    raises ``TypeError``."""
    tags: dict[str, tuple[Stack, Any]] = {}
    for f in dataclasses.fields(config):
        section = f.default_factory
        if isinstance(section, type) and issubclass(section, Section):
            tags.update(section_tags(section, f.name))
        elif isinstance(f.metadata.get("population"), Stack):
            tags[f.name] = (f.metadata["population"], _default(f))
        else:
            raise TypeError(f"config key '{f.name}' has no population tag; declare it with "
                            "regulab.checks.key(..., population=MEMBER, SHARED, IGNORED or blocks(...))")
    return tags


TAGS = config_tags()
MEMBER_KEYS = tuple(k for k, (tag, _) in TAGS.items() if tag.role == "member")
IGNORED_KEYS = tuple(k for k, (tag, _) in TAGS.items() if tag.role == "ignored")
BLOCKING_KEYS = tuple(k for k, (tag, _) in TAGS.items() if tag.role == "blocks")


def _value(cfg: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name) if name else getattr(cfg, section)


def ineligible(cfg: Config) -> str | None:
    """Why ``cfg`` cannot train in a population, from its config alone (None: it can):
    the first blocking key at a blocking value, as ``'data.resident = false blocks stacking'``."""
    for key in BLOCKING_KEYS:
        tag, default = TAGS[key]
        value = _value(cfg, key)
        if tag.blocks_at(value, default):
            return f"{key} = {json.dumps(value, default=str)} blocks stacking"
    return None


def population_key(cfg: Config) -> str | None:
    """Configs with equal keys may train as one population (they differ only in member and
    ignored keys); None: ``cfg`` cannot (``ineligible``)."""
    if ineligible(cfg) is not None:
        return None
    equal = {k: _value(cfg, k) for k, (tag, _) in TAGS.items() if tag.role in ("shared", "blocks")}
    return json.dumps(equal, sort_keys=True, default=str)
