"""Sweep files: a base config, a search space over config keys, a sampler and a trial budget.

A sweep file is TOML::

    [sweep]
    name = "mlp-tpe"              # also the Optuna study's name: workers with it join one sweep
    base = "../quickstart.toml"   # a config file (relative to the sweep file), optional
    sampler = "tpe"               # tpe | random | grid
    trials = 40                   # the budget, shared by every worker (grid: the grid's size)
    metric = "val_acc"            # default val_acc (classification), val_r2 (regression)
    direction = "maximize"        # default: maximize *_acc and *_r2, minimize *_loss and *_mse
    pruner = "median"             # none | median | hyperband
    warmup = 2                    # epochs a trial runs before it may be pruned
    startup = 5                   # median: trials finished before any is pruned
    seed = 0                      # the sampler's seed
    heartbeat = 5                 # seconds between a running trial's heartbeats
    grace = 10                    # seconds without one before the trial is failed (and retried)
    retries = 2                   # how often one killed trial is retried
    population = 8                # trials a worker trains at once as one batched model, when
                                  # the space holds only population member keys (1: one by one)

    [base]                        # config sections applied over the base file
    train = { epochs = 20, early_stopping = false }

    [space]                       # one entry per dotted config key
    "optim.lr" = { low = 1e-4, high = 1e-1, log = true }      # a float range
    "model.dropout" = { low = 0.0, high = 0.5, step = 0.1 }
    "train.batch_size" = { low = 32, high = 256, log = true } # int bounds: an int range
    "model.hidden" = { choices = [[64], [128, 128]] }         # categorical (``values`` also)

The grid sampler takes every entry as a list (``choices`` or ``values``) and runs their
product. Every entry is checked against the config before anything runs: each bound and
each choice is applied to the base and the config built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regulab.callbacks import TASK_SCORES, monitor_mode
from regulab.checks import Section, choice, key, name, number, optional, seed, string
from regulab.user_code import portable
from regulab.config.core import LEGACY, Config, apply_overrides, config_from_dict, read_toml, require_validation
from regulab.config.files import config_key_depth, in_experiment, read_spec_file
from regulab.config.sections import SECTIONS
from regulab.errors import ConfigError, invalid

__all__ = ["Dim", "SweepSpec", "SweepSection", "load_sweep", "sweep_from_dict", "SAMPLERS", "PRUNERS"]

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
# the metrics a sweep may optimize; the first, the default, is the task's score (as train.monitor "auto")
METRICS = {"classification": (TASK_SCORES["classification"], "val_loss"),
           "regression": (TASK_SCORES["regression"], "val_mse", "val_loss")}
_RANGE_KEYS = ("low", "high", "log", "step")
KIND = "sweep key"


def _fail(field_name: str, allowed: str, value: Any) -> ConfigError:
    return invalid(field_name, allowed, value, kind=KIND)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class SweepSection(Section):
    """``[sweep]``: the sampler, the budget, the metric, the pruner and the workers' timings."""
    SECTION, KIND = "sweep", KIND
    name: Any = key(None, optional(name), "the sweep's (and its Optuna study's) name; default: the file's")
    base: Any = key(None, optional(string), "a config file, relative to the sweep file")
    sampler: str = key("tpe", choice(*SAMPLERS), "how points are drawn")
    trials: Any = key(None, optional(number(ge=1, integer=True)), "the budget (default 20; grid: its size)")
    metric: Any = key(None, optional(string), "default val_acc (classification), val_r2 (regression)")
    direction: Any = key(None, optional(choice("maximize", "minimize")),
                         "default: maximize *_acc and *_r2, minimize *_loss and *_mse")
    pruner: str = key("none", choice(*PRUNERS), "stops trials that do worse than others at an epoch")
    warmup: int = key(0, number(ge=0, integer=True), "epochs a trial runs before it may be pruned")
    startup: int = key(5, number(ge=0, integer=True), "median: trials finished before any is pruned")
    seed: Any = key(None, optional(seed), "the sampler's seed; 0..2^31-1 (checks.MAX_SEED)")
    heartbeat: int = key(5, number(ge=1, integer=True), "seconds between a running trial's heartbeats")
    grace: Any = key(None, optional(number(ge=2, integer=True)),
                     "seconds without a heartbeat before a trial is failed (default 2 x heartbeat)")
    retries: int = key(2, number(ge=0, integer=True), "how often one killed trial is retried")
    population: int = key(8, number(ge=1, integer=True), "trials a worker trains at once as one "
                          "batched model when the space holds only population member keys")


@dataclass(frozen=True)
class Dim:
    """One axis of the search space: a range (``low``..``high``, ``log``, ``step``; ints when
    both bounds are ints) or ``choices``. Choices that are lists or tables (``model.hidden``)
    go to Optuna as JSON strings, since its categorical values must be scalars."""
    key: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None

    @property
    def encoded(self) -> bool:
        return self.choices is not None and any(isinstance(c, (list, dict)) for c in self.choices)

    def optuna_choices(self) -> list:
        return [json.dumps(c) if self.encoded else c for c in self.choices]

    def decode(self, value: Any) -> Any:
        """An Optuna parameter value -> the config value."""
        return json.loads(value) if self.encoded else value

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return self.decode(trial.suggest_categorical(self.key, self.optuna_choices()))
        if _is_int(self.low):
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list:
        """The values checked against the config: both bounds, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


@dataclass
class SweepSpec:
    name: str
    base: dict[str, Any]                 # raw config (sections)
    space: dict[str, Dim]
    sampler: str = "tpe"
    trials: int = 20
    metric: str = "val_acc"
    direction: str = "maximize"
    pruner: str = "none"
    warmup: int = 0
    startup: int = 5
    seed: int | None = None
    heartbeat: int = 5
    grace: int = 10
    retries: int = 2
    population: int = 8
    options: dict[str, Any] = field(default_factory=dict)   # the [sweep] table as given

    def config(self, params: Mapping[str, Any], name: str, test: bool = False) -> Config:
        """The config of one trial: ``params`` (config values) over the base; trials do not
        score the test split (``eval.test = false``), the best one is scored once at the end."""
        overrides = {**params, "name": name, "eval.test": test}
        return _trial_config(self.base, overrides)

    def params(self, optuna_params: Mapping[str, Any]) -> dict[str, Any]:
        """An Optuna trial's params -> config values (JSON-encoded choices decoded)."""
        return {k: self.space[k].decode(v) for k, v in optuna_params.items() if k in self.space}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sampler": self.sampler, "trials": self.trials,
                "metric": self.metric, "direction": self.direction, "pruner": self.pruner,
                "warmup": self.warmup, "startup": self.startup, "seed": self.seed,
                "heartbeat": self.heartbeat, "grace": self.grace, "retries": self.retries,
                "population": self.population, "base": portable(self.base),
                "space": {k: {f: v for f, v in vars(d).items() if f != "key" and v not in (None, False)}
                          for k, d in self.space.items()}}

    def identity(self) -> str:
        """What workers joining one sweep must agree on (all but the budget and timings)."""
        d = self.to_dict()
        for k in ("trials", "heartbeat", "grace", "retries", "population"):
            d.pop(k)
        return json.dumps(d, sort_keys=True, default=list)


def _dim(key: str, entry: Any, base: dict, sampler: str) -> Dim:
    where = f'space."{key}"'
    parts = key.split(".")
    if len(parts) != config_key_depth(parts) or parts[0] not in (*SECTIONS, LEGACY):
        raise _fail(where, "a config key section.key in quotes", key)
    if not isinstance(entry, Mapping):
        raise _fail(where, "a table {low, high, log, step} or {choices = [...]}", entry)
    listed = [k for k in ("choices", "values") if k in entry]
    if listed:
        extra = sorted(set(entry) - {listed[0]})
        values = entry[listed[0]]
        if extra:
            raise _fail(where, f"{{{listed[0]} = [...]}} alone (no {', '.join(extra)})", dict(entry))
        if not isinstance(values, list) or not values:
            raise _fail(f"{where}.{listed[0]}", "a non-empty list of config values", values)
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise _fail(f"{where}.{listed[0]}", "a list of distinct values", values)
        dim = Dim(key, choices=tuple(values))
    else:
        if sampler == "grid":
            raise _fail(where, "{choices = [...]} or {values = [...]} for sampler 'grid'", dict(entry))
        unknown = sorted(set(entry) - set(_RANGE_KEYS))
        if unknown or "low" not in entry or "high" not in entry:
            raise _fail(where, "a table {low, high, log?, step?} or {choices = [...]}", dict(entry))
        low, high, log, step = entry["low"], entry["high"], entry.get("log", False), entry.get("step")
        if not (_is_number(low) and _is_number(high)) or low >= high:
            raise _fail(where, "numbers low < high", {"low": low, "high": high})
        if not isinstance(log, bool):
            raise _fail(f"{where}.log", "true or false", log)
        if log and low <= 0:
            raise _fail(f"{where}.low", "> 0 with log = true", low)
        ints = _is_int(low) and _is_int(high)
        if step is not None:
            if not (_is_int(step) if ints else _is_number(step)) or step <= 0:
                raise _fail(f"{where}.step", f"{'an int' if ints else 'a number'} > 0", step)
            if log and (not ints or step != 1):
                raise _fail(f"{where}.step", "absent with log = true (a log range has no step)", step)
        dim = Dim(key, low, high, log, step)
    for value in dim.extremes():       # every bound and choice must make a valid config
        try:
            _trial_config(base, {key: value})
        except ConfigError as e:
            raise ConfigError(f"sweep key '{where}' holds {value!r}, which the config rejects: {e}") from None
    return dim


def _trial_config(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> Config:
    """The config of ``overrides`` over ``base``, with a validation split to rank trials on."""
    cfg = config_from_dict(apply_overrides(base, overrides))
    require_validation(cfg, "a sweep ranks its trials on the validation split")
    return cfg


def _task(cfg: Config) -> str:
    if cfg.data.task != "auto":
        return cfg.data.task
    from regulab.runs.prepare import load_data
    return load_data(cfg).task


def sweep_from_dict(raw: Mapping[str, Any], where: Path | None = None,
                    overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """Validate a sweep (as read from TOML); ``where`` is the file, for a relative base path;
    ``overrides`` (dotted config keys, ``--set``) go over its base config."""
    s, base = read_spec_file(raw, where, SweepSection, ("space",), overrides)
    sweep_name = s.name or (where.stem if where else "sweep")
    base = in_experiment(base, sweep_name)
    space_raw = raw.get("space", {})
    if not isinstance(space_raw, Mapping) or not space_raw:
        raise _fail("space", 'a table with one entry per config key, e.g. "optim.lr" = '
                    "{low = 1e-4, high = 0.1, log = true}", space_raw)
    try:
        cfg = _trial_config(base, {"eval.test": False})
    except ConfigError as e:
        raise ConfigError(f"sweep '{sweep_name}', base config: {e}") from None
    space = {k: _dim(k, v, base, s.sampler) for k, v in space_raw.items()}
    grid = 1
    for d in space.values():
        grid *= len(d.choices) if d.choices is not None else 1
    trials = s.trials if s.trials is not None else grid if s.sampler == "grid" else 20
    if s.sampler == "grid" and trials > grid:
        raise _fail("sweep.trials", f"<= {grid} (the grid's size) with sampler 'grid'", trials)
    allowed = METRICS[_task(cfg)]
    metric = s.metric or allowed[0]
    if metric not in allowed:
        raise _fail("sweep.metric", f"one of {', '.join(allowed)} (logged every epoch)", metric)
    direction = s.direction or ("maximize" if monitor_mode(metric) == "max" else "minimize")
    grace = s.grace if s.grace is not None else 2 * s.heartbeat
    if grace <= s.heartbeat:
        raise _fail("sweep.grace", f"an integer >= {s.heartbeat + 1} (more than sweep.heartbeat)", grace)
    return SweepSpec(sweep_name, base, space, s.sampler, trials, metric, direction, s.pruner, s.warmup,
                     s.startup, s.seed, s.heartbeat, grace, s.retries, s.population,
                     dict(raw.get("sweep", {})))


def load_sweep(path: str | Path, overrides: Mapping[str, Any] | None = None,
               trials: int | None = None) -> SweepSpec:
    """Read and validate a sweep file; ``overrides`` (dotted config keys) go over its base,
    ``trials`` over its budget."""
    raw = dict(read_toml(path, "sweep file"))
    if trials is not None:
        raw["sweep"] = {**raw.get("sweep", {}), "trials": trials}
    return sweep_from_dict(raw, Path(path), overrides)
