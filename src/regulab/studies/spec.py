"""Study files: a base config, variants as overrides, seeds and a kind.

A study file is TOML::

    [study]
    name = "dropout-grid"
    kind = "grid"                 # compare | grid | learning_curve | capacity | kfold | init |
                                  # dropout_activations | weights | transfer | multitask
    description = "Which dropout probability generalizes best?"
    seeds = 3                     # seeds 0, 1, 2 (or a list of seeds)
    base = "../quickstart.toml"   # a config file (relative to the study file), optional
    baseline = "baseline"         # the variant the others are compared with (default: the first)
    quick = { "train.epochs" = 10 }   # config overrides applied with --quick
    quick_seeds = 2               # seeds with --quick (default: the same)
    population = 64               # runs that differ only in seeds and regularization strengths
                                  # train as one batched model, up to this many (0: one by one)
    reference = 1.0               # the score of a perfect fit: bias = reference - train score
    budget = "score"              # config | score (each run until its validation score stops
                                  # improving, best weights kept) | equal (every run train.epochs)
    search = 16                   # with combine: Optuna trials over the combined strengths
                                  # (--quick: at most 4)
    heartbeat = 5                 # workers sharing the study (a PostgreSQL store): seconds
    grace = 30                    # between heartbeats, and without one before a unit is retaken
    workers = 1                   # processes on this machine training its runs side by side
                                  # ("auto": one per core, at most 4, 1 on a GPU; or --workers N)

    [base]                        # config sections applied over the base file
    train = { epochs = 60 }

    [variants.baseline]           # one table per variant: config keys (dotted or nested) ...
    [variants.l2]
    regularization.l2 = 1e-3
    label = "L2 1e-3"             # ... and optional meta keys: label, group, x, members, combine,
    tune = { "regularization.l2" = [1e-5, 1e-4, 1e-3, 1e-2] }      # tune (the best on validation)

    [grid]                        # the kind's own table (``regulab.studies.kinds``)
    key = "model.dropout"
    values = [0.0, 0.2, 0.5]

Meta keys of a variant: ``label``, ``group``, ``x``, ``members``, ``combine``, ``tune``
(``regulab.studies.variant``; a tuned variant: ``regulab.studies.tune``). ``[study] combine = N``
makes the study add a variant that merges up to N variants: the best on validation and those
that improve it most when merged with it, each tried as a pair on validation (the forward
step); with ``search = T`` which of them to merge and their strengths are searched with T
Optuna trials on validation (``regulab.studies.search``).

``budget`` makes the comparison fair in epochs: ``score`` (every run early-stops on the task's
validation score, ``train.monitor = "auto"``, and keeps its best weights, so a slow regularizer
trains as long as it improves, up to ``train.epochs``); ``equal`` (early stopping off: every run
trains exactly ``train.epochs`` epochs, the same number of steps); ``config`` (as the configs say).
A variant's own ``train`` keys still apply over the budget's.

What is special about a kind -- its table, the variants it makes, its baseline, its source
runs -- the kind says (``KINDS[kind]``); this module reads what every study file shares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regulab.checks import MAX_SEED, Section, auto_or_count, choice, key, name, number, optional, string, text
from regulab.user_code import portable
from regulab.config.core import Config, apply_overrides, config_from_dict, read_toml, require_validation
from regulab.config.files import in_experiment, read_spec_file
from regulab.errors import ConfigError, invalid
from regulab.studies.kinds import KINDS
from regulab.studies.tune import candidates
from regulab.studies.variant import KIND, META_KEYS, Variant, flatten, read_variant


def expanded(variants: list[Variant]) -> list[Variant]:
    """The variants as trained: a tuned variant as its candidates, one per strength."""
    return [c for v in variants for c in (candidates(v) if v.tune is not None else [v])]

__all__ = ["Variant", "StudySpec", "BUDGETS", "expanded", "StudySection", "load_study", "study_from_dict", "flatten",
           "META_KEYS", "clinic_path", "MAX_SEEDS"]


MAX_SEEDS = 1000     # seeds of a study: each is a run of every variant


def seed_list(field: str, value: Any) -> list[int]:
    """A count n from 1 to ``MAX_SEEDS`` (seeds 0..n-1) or a list of at most ``MAX_SEEDS``
    distinct seeds from 0 to ``checks.MAX_SEED``."""
    allowed = (f"a count from 1 to {MAX_SEEDS} (MAX_SEEDS) or a list of at most {MAX_SEEDS} "
               f"distinct seeds from 0 to {MAX_SEED}")
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SEEDS:
        return list(range(value))
    if (isinstance(value, list) and 0 < len(value) <= MAX_SEEDS and len(set(value)) == len(value)
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in value)):
        return list(value)
    raise invalid(field, allowed, value)


def _table(field: str, value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise invalid(field, "a table of config overrides", value)
    return dict(value)


QUICK_SEARCH = 4     # --quick: trials of the combination's search, at most

AUTO_WORKERS = 4     # study.workers = "auto": one per core, at most this many (each imports torch)
MAX_WORKERS = 64


worker_count = auto_or_count(f'"auto" or a whole number from 1 to {MAX_WORKERS}', MAX_WORKERS)


BUDGETS = {        # [study] budget -> what it sets in every run's config (before the variant's keys)
    "config": {},
    "score": {"train.early_stopping": True, "train.monitor": "auto", "train.restore_best": True},
    "equal": {"train.early_stopping": False},
}


@dataclass
class StudySection(Section):
    """``[study]``: what the study is, its seeds, its base config and how it runs."""
    SECTION, KIND = "study", KIND
    name: Any = key(None, optional(name), "the study's name; default: the file's")
    kind: str = key("compare", choice(*KINDS), "what the study shows (regulab.studies.kinds)")
    description: str = key("", text, "the question, shown in the report")
    seeds: list = key(3, seed_list, "seeds 0..n-1, or a list of seeds (at most MAX_SEEDS, 1000)")
    base: Any = key(None, optional(string), "a config file, relative to the study file")
    baseline: Any = key(None, optional(string), "the variant the others are compared with")
    quick: dict = key({}, _table, "config overrides applied with --quick")
    quick_seeds: Any = key(None, optional(seed_list), "seeds with --quick (default: the same)")
    combine: int = key(0, number(ge=0, integer=True),
                       "merge up to N variants: the best on validation and those that improve it "
                       "most when merged with it (a forward step over pairs; 0: no combination)")
    reference: float = key(1.0, number(gt=0.0, le=1.0), "the score of a perfect fit: bias = reference - train "
                           "score (1.0 for accuracy and R²; lower when the labels are noisy)")
    budget: str = key("config", choice(*BUDGETS), "epochs per run: score (early stopping on the "
                      "validation score, best weights kept, up to train.epochs), equal (every run "
                      "train.epochs epochs) or config (as the configs say)")
    search: int = key(0, number(ge=0, le=1000, integer=True),
                      "with combine: Optuna trials over the combined techniques' strengths, on "
                      "validation (0: their strengths as chosen alone)")
    population: int = key(64, number(ge=0, integer=True),
                          "runs that differ only in member keys train as one model, up to this many "
                          "(0 or 1: one by one)")
    heartbeat: int = key(5, number(ge=1, integer=True), "a shared study (a PostgreSQL run store): "
                         "seconds between a worker's heartbeats for the units it holds")
    grace: int = key(30, number(ge=2, integer=True), "a shared study: seconds without a heartbeat "
                     "before another worker takes a unit over (more than study.heartbeat)")
    workers: Any = key(1, worker_count, "processes on this machine that train the study's "
                       "runs side by side, splitting its cores (regulab.studies.workers): auto "
                       f"(one per core, at most {AUTO_WORKERS}; 1 on a GPU) or 1 to {MAX_WORKERS}")


@dataclass
class StudySpec:
    """A validated study: its base config, variants, seeds and kind (``study_from_dict``)."""
    name: str
    kind: str
    base: dict[str, Any]                      # raw config (sections), seeds not applied
    variants: list[Variant]
    seeds: list[int]
    description: str = ""
    baseline: str | None = None
    combine: int = 0
    options: dict[str, Any] = field(default_factory=dict)   # the kind's own table, every key
    quick: dict[str, Any] = field(default_factory=dict)
    quick_seeds: list[int] | None = None
    population: int = 64                # largest population trained as one model (< 2: none)
    reference: float = 1.0              # the score of a perfect fit (regulab.diagnose)
    budget: str = "config"              # BUDGETS: what every run's config gets
    search: int = 0                     # Optuna trials of the combination (0: none)
    heartbeat: int = 5                  # a shared study: seconds between heartbeats
    grace: int = 30                     # a shared study: seconds before a silent unit is taken over
    workers: Any = 1                    # processes here training its runs (how it runs, not what:
                                        # not in to_dict, so workers with other counts may join)

    def config(self, variant: Variant, seed: int, extra: Mapping[str, Any] | None = None) -> Config:
        """The resolved config of ``variant`` at ``seed``; errors name the variant."""
        overrides = {**variant.overrides, **(extra or {}), "train.seed": seed,
                     "name": f"{self.name}-{variant.name}"}
        try:
            cfg = config_from_dict(apply_overrides(self.base, overrides))
            require_validation(cfg, "a study compares its variants on the validation split")
            return cfg
        except ConfigError as e:
            raise ConfigError(f"study '{self.name}', variant '{variant.name}': {e}") from None

    def for_quick(self) -> StudySpec:
        """The ``--quick`` version: its overrides applied to the base, its seeds, and at most
        ``QUICK_SEARCH`` trials of the combination's search."""
        return dataclasses.replace(self, base=apply_overrides(self.base, self.quick),
                                   seeds=self.quick_seeds or self.seeds,
                                   search=min(self.search, QUICK_SEARCH))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "seeds": self.seeds, "baseline": self.baseline, "combine": self.combine,
                "population": self.population, "reference": self.reference,
                "budget": self.budget, "search": self.search, "heartbeat": self.heartbeat,
                "grace": self.grace,
                "options": self.options, "base": portable(self.base),
                "variants": [{**vars(v), "tune": None if v.tune is None else
                              {**vars(v.tune), "values": list(v.tune.values)}}
                             for v in self.variants]}


def study_from_dict(raw: Mapping[str, Any], where: Path | None = None,
                    overrides: Mapping[str, Any] | None = None) -> StudySpec:
    """Validate a study (as read from TOML); ``where`` is the file, for relative base paths;
    ``overrides`` (dotted config keys, ``--set``) go over its base config."""
    s, base = read_spec_file(raw, where, StudySection, ("variants", *KINDS), overrides)
    kind = KINDS[s.kind]
    tables = raw.get("variants", {})
    if not isinstance(tables, Mapping):
        raise invalid("variants", "a table of variant tables", tables, kind=KIND)
    given = [read_variant(n, t) for n, t in tables.items()]
    if given and kind.generates:
        raise invalid("variants", f"absent for kind '{kind.name}' (it makes its own from "
                      f"[{kind.name}])", [v.name for v in given], kind=KIND)
    options = kind.options(raw.get(kind.name))
    variants = kind.variants(options, given)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise invalid("variants", "distinct names", names, kind=KIND)
    baseline = kind.baseline(s.baseline, names)
    if baseline is not None and baseline not in names:
        raise invalid("study.baseline", f"one of the variants ({', '.join(names)})", baseline,
                      kind=KIND)
    if s.search and not s.combine:
        raise invalid("study.search", "0 unless study.combine is 2 or more (it searches the "
                      "combination's strengths)", s.search, kind=KIND)
    if s.grace <= s.heartbeat:
        raise invalid("study.grace", f"an integer > study.heartbeat ({s.heartbeat})", s.grace, kind=KIND)
    top = max([*s.seeds, *(s.quick_seeds or [])])
    for v in variants:      # a deep ensemble's members are seeded seed * members + k
        if v.members > 1 and (top + 1) * v.members - 1 > MAX_SEED:
            raise invalid("study.seeds", f"seeds whose ensemble members (seed * {v.members} + k, variant "
                          f"'{v.name}') stay <= {MAX_SEED}", top, kind=KIND)
    name = s.name or (where.stem if where else "study")
    base = in_experiment(apply_overrides(base, BUDGETS[s.budget]), name)
    spec = StudySpec(name, kind.name, base, variants,
                     s.seeds, s.description, baseline, s.combine, dict(vars(options)),
                     flatten(s.quick, "study.quick"), s.quick_seeds, s.population, s.reference,
                     s.budget, s.search, s.heartbeat, s.grace, s.workers)
    for v in [*expanded(variants), *kind.sources(spec)]:
        # every config validates before anything is trained (a transfer target without its source)
        v = Variant(v.name, {k: x for k, x in v.overrides.items() if not k.startswith("transfer.")})
        spec.config(v, spec.seeds[0])
        spec.for_quick().config(v, spec.seeds[0])
    return spec


def clinic_path():
    """The built-in overfitting clinic's study file (what ``regulab study`` runs)."""
    from importlib.resources import files
    return files("regulab.studies") / "clinic.toml"


def load_study(path: str | Path, overrides: Mapping[str, Any] | None = None) -> StudySpec:
    """Read and validate a study file; ``overrides`` (dotted config keys) go over its base."""
    return study_from_dict(read_toml(path, "study file"), Path(path), overrides)
