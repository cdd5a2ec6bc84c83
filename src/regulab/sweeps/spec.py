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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from regulab.config.sections import SECTIONS
from regulab.config.core import Config, _apply, config_from_dict, read_toml
from regulab.errors import ConfigError
from regulab.callbacks import monitor_mode
from regulab.studies.spec import flatten, read_base

__all__ = ["Dim", "SweepSpec", "load_sweep", "sweep_from_dict", "SAMPLERS", "PRUNERS"]

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
METRICS = {"classification": ("val_acc", "val_loss"), "regression": ("val_r2", "val_mse", "val_loss")}
_SWEEP_KEYS = ("name", "base", "sampler", "trials", "metric", "direction", "pruner", "warmup",
               "startup", "seed", "heartbeat", "grace", "retries", "population")
_RANGE_KEYS = ("low", "high", "log", "step")


def _fail(key: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"sweep key '{key}' must be {allowed}; got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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
        return config_from_dict(_apply(self.base, overrides))

    def params(self, optuna_params: Mapping[str, Any]) -> dict[str, Any]:
        """An Optuna trial's params -> config values (JSON-encoded choices decoded)."""
        return {k: self.space[k].decode(v) for k, v in optuna_params.items() if k in self.space}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sampler": self.sampler, "trials": self.trials,
                "metric": self.metric, "direction": self.direction, "pruner": self.pruner,
                "warmup": self.warmup, "startup": self.startup, "seed": self.seed,
                "heartbeat": self.heartbeat, "grace": self.grace, "retries": self.retries,
                "population": self.population, "base": self.base,
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
    if len(parts) != (3 if parts[0] == "augment" else 2) or parts[0] not in (*SECTIONS, "augment"):
        raise _fail(where, "a config key section.key (or augment.MODALITY.key) in quotes", key)
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
            config_from_dict(_apply(base, {key: value}))
        except ConfigError as e:
            raise ConfigError(f"sweep key '{where}' holds {value!r}, which the config rejects: {e}") from None
    return dim


def _int(s: Mapping, key: str, default: int | None, minimum: int) -> int | None:
    value = s.get(key, default)
    if value is not None and (not _is_int(value) or value < minimum):
        raise _fail(f"sweep.{key}", f"an integer >= {minimum}", value)
    return value


def _choice(s: Mapping, key: str, options: tuple[str, ...], default: str) -> str:
    value = s.get(key, default)
    if value not in options:
        raise _fail(f"sweep.{key}", f"one of {', '.join(options)}", value)
    return value


def _task(cfg: Config) -> str:
    if cfg.data.task != "auto":
        return cfg.data.task
    from regulab.runs.prepare import load_data
    return load_data(cfg).task


def sweep_from_dict(raw: Mapping[str, Any], where: Path | None = None) -> SweepSpec:
    """Validate a sweep (as read from TOML); ``where`` is the file, for a relative base path."""
    for k in raw:
        if k not in ("sweep", "base", "space"):
            raise _fail(k, "one of sweep, base, space (tables)", k)
    s = raw.get("sweep", {})
    if not isinstance(s, Mapping):
        raise _fail("sweep", "a table", s)
    for k in s:
        if k not in _SWEEP_KEYS:
            raise _fail(f"sweep.{k}", f"one of {', '.join(_SWEEP_KEYS)}", k)
    name = s.get("name", where.stem if where else "sweep")
    if not isinstance(name, str) or not name or "/" in name:
        raise _fail("sweep.name", "a non-empty string without '/'", name)
    base = read_base(raw, where, "sweep", _fail)
    sampler = _choice(s, "sampler", SAMPLERS, "tpe")
    space_raw = raw.get("space", {})
    if not isinstance(space_raw, Mapping) or not space_raw:
        raise _fail("space", 'a table with one entry per config key, e.g. "optim.lr" = '
                    "{low = 1e-4, high = 0.1, log = true}", space_raw)
    try:
        cfg = config_from_dict(_apply(base, {"eval.test": False}))
    except ConfigError as e:
        raise ConfigError(f"sweep '{name}', base config: {e}") from None
    space = {k: _dim(k, v, base, sampler) for k, v in space_raw.items()}
    grid = 1
    for d in space.values():
        grid *= len(d.choices) if d.choices is not None else 1
    trials = _int(s, "trials", grid if sampler == "grid" else 20, 1)
    if sampler == "grid" and trials > grid:
        raise _fail("sweep.trials", f"<= {grid} (the grid's size) with sampler 'grid'", trials)
    allowed = METRICS[_task(cfg)]
    metric = s.get("metric", allowed[0])
    if metric not in allowed:
        raise _fail("sweep.metric", f"one of {', '.join(allowed)} (logged every epoch)", metric)
    direction = _choice(s, "direction", ("maximize", "minimize"),
                        "maximize" if monitor_mode(metric) == "max" else "minimize")
    heartbeat = _int(s, "heartbeat", 5, 1)
    grace = _int(s, "grace", 2 * heartbeat, heartbeat + 1)
    seed = _int(s, "seed", None, 0)
    return SweepSpec(name, base, space, sampler, trials, metric, direction,
                     _choice(s, "pruner", PRUNERS, "none"), _int(s, "warmup", 0, 0),
                     _int(s, "startup", 5, 0), seed, heartbeat, grace, _int(s, "retries", 2, 0),
                     _int(s, "population", 8, 1), dict(s))


def load_sweep(path: str | Path, overrides: Mapping[str, Any] | None = None,
               trials: int | None = None) -> SweepSpec:
    """Read and validate a sweep file; ``overrides`` (dotted config keys) go over its base,
    ``trials`` over its budget."""
    raw = dict(read_toml(path, "sweep file"))
    if trials is not None:
        raw["sweep"] = {**raw.get("sweep", {}), "trials": trials}
    if overrides:
        base = raw.get("base", {})
        if not isinstance(base, Mapping):
            raise _fail("base", "a table of config sections", base)
        raw["base"] = {**flatten(base, "base"), **flatten(overrides, "--set")}
    return sweep_from_dict(raw, Path(path))
