"""Typed configuration: the one way anything in regulab is configured.

A ``Config`` holds one dataclass per TOML section (``[data]``, ``[model]``, ``[optim]``,
``[train]``, ..., and one per modality: ``[image]``, ``[audio]``, ``[text]``, ``[video]``). It
is built from a TOML file, a dict, or defaults, plus overrides (``--set section.key=value`` on
the command line, a dict in Python), all through ``apply_overrides``. Every key is declared
with a constraint; validation raises ``ConfigError`` with one line that names the key, the
value received and what is allowed, e.g.::

    config key 'optim.lr' must be a number > 0; got -0.1

Unknown keys get a "did you mean" suggestion. ``to_toml`` writes the fully resolved config,
which ``load_config`` reads back to an equal ``Config``.

Old names: the modality sections were once ``[augment.image]`` (``augment.audio``, ...); those
tables and dotted keys (``augment.image.rotation``) are still read, as ``[image]`` and
``image.rotation`` (``canonical_key``).
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from regulab.checks import IGNORED, MAX_INT, key, schema_of
from regulab.checks import name as plain_name
from regulab.config.sections import (MODALITIES, SECTION_MODALITIES, SECTIONS, AudioConfig, DataConfig,
                                     EvalConfig, ImageConfig, LogConfig, ModelConfig, MultitaskConfig,
                                     OptimConfig, RegularizationConfig, TextConfig, TrainConfig,
                                     TransferConfig, VideoConfig)
from regulab.errors import ConfigError, invalid, quote, unknown
from regulab.limits import check_text_depth, check_value_depth
from regulab.paths import SPEC_BYTES, read_text
from regulab.user_code import is_plain, portable, resolve

__all__ = ["Config", "load_config", "config_from_dict", "parse_overrides", "apply_overrides",
           "canonical_key", "read_toml", "to_toml", "defaults_toml", "json_schema", "LEGACY", "code_paths", "PYTHON",
           "require_validation", "may_bring_validation", "check_modality"]

LEGACY = "augment"      # [augment.<modality>]: the old home of the modality sections
PYTHON = "python:"      # data.dataset = "python:FILE.py:NAME", the user's own data function


@dataclass
class Config:
    """A whole run's configuration: ``name`` plus one object per section."""
    name: str = key("run", plain_name, "the run's name (its directory's stem)", population=IGNORED)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    multitask: MultitaskConfig = field(default_factory=MultitaskConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    def to_dict(self, portable: bool = False) -> dict:
        """The config as nested dicts; a user's objects (``model.factory``, ``data.dataset``
        from Python) stay themselves, or with ``portable`` become what TOML and JSON can hold
        (``regulab.user_code.describe``)."""
        d = {"name": self.name}
        for f in dataclasses.fields(self)[1:]:
            section = getattr(self, f.name)
            d[f.name] = {k.name: _copy_value(getattr(section, k.name)) for k in dataclasses.fields(section)}
        return _portable(d) if portable else d

    def with_code(self, model: Any = None, data: Any = None) -> Config:
        """This config with the user's network (``model.factory``: a class, a function returning
        a network, or a network) and data (``data.dataset``: the data itself) given from Python;
        None leaves the key as it is."""
        cfg = self
        if model is not None:
            cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, factory=model))
        if data is not None:
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dataset=data))
        _multitask_checks(cfg.multitask, cfg.model)
        return cfg

    def changed(self, section: str) -> bool:
        """Whether section ``section`` differs from its defaults (a modality is configured)."""
        return getattr(self, section) != SECTIONS[section]()


# --- keys and overrides -----------------------------------------------------------------------

def canonical_key(dotted: str) -> str:
    """The current name of a dotted key: ``augment.image.rotation`` -> ``image.rotation``."""
    parts = dotted.split(".")
    if len(parts) >= 2 and parts[0] == LEGACY and parts[1] in MODALITIES:
        return ".".join(parts[1:])
    return dotted


def _copy_value(v: Any) -> Any:
    """A copy of a plain value (lists and tables copied); a user's object is not copied."""
    if isinstance(v, dict):
        return {k: _copy_value(x) for k, x in v.items()}
    return [_copy_value(x) for x in v] if isinstance(v, list) and is_plain(v) else v


_portable = portable


def code_paths(raw: Mapping[str, Any], folder: str | Path | None) -> dict:
    """A copy of the raw config ``raw`` with the relative ``FILE.py`` of ``model.factory`` and
    ``data.dataset = "python:FILE.py:NAME"`` made absolute against ``folder`` (the folder of
    the file they were written in; the working directory for ``--set``)."""
    raw = _copy(raw)
    model, data = raw.get("model"), raw.get("data")
    if isinstance(model, dict) and isinstance(model.get("factory"), str):
        model["factory"] = resolve(model["factory"], folder)
    if isinstance(data, dict) and isinstance(data.get("dataset"), str) and data["dataset"].startswith(PYTHON):
        data["dataset"] = PYTHON + resolve(data["dataset"][len(PYTHON):], folder)
    return raw


def _copy(raw: Any) -> Any:
    return {k: _copy(v) for k, v in raw.items()} if isinstance(raw, Mapping) else raw


def _modernize(raw: Mapping[str, Any]) -> dict:
    """A copy of ``raw`` with the old ``[augment.<modality>]`` tables moved to ``[<modality>]``."""
    raw = _copy(raw)
    old = raw.pop(LEGACY, None)
    if old is None:
        return raw
    if not isinstance(old, Mapping):
        raise invalid(LEGACY, f"a table of tables ({', '.join(MODALITIES)}; now written [image], ...)", old)
    for name, table in old.items():
        if name not in MODALITIES:
            raise unknown(f"{LEGACY}.{name}", MODALITIES, f"tables of [{LEGACY}]")
        if name in raw:
            raise ConfigError(f"config key '{LEGACY}.{name}' is the old name of [{name}]; got both "
                              f"[{LEGACY}.{name}] and [{name}] (keep [{name}])")
        raw[name] = table
    return raw


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict:
    """A copy of the raw config ``raw`` (nested tables, as read from TOML) with ``overrides``
    (dotted keys ``section.key`` -> value) set in it -- the one way ``--set``, study variants,
    sweep points and Python overrides reach a config. Old key names are accepted."""
    check_value_depth(raw, "the config")
    check_value_depth(dict(overrides), "the config overrides")
    raw = _modernize(raw)
    for dotted, value in overrides.items():
        parts = canonical_key(dotted).split(".")
        if parts == ["name"]:
            raw["name"] = value
        elif len(parts) == 2 and all(parts):
            table = raw.setdefault(parts[0], {})
            if not isinstance(table, dict):
                raise invalid(parts[0], "a table (section)", table)
            table[parts[1]] = value
        else:
            raise invalid(dotted, "a key section.key (or name)", value,
                          kind="override")
    return raw


def _parse_value(text: str) -> Any:
    """A TOML literal (``0.3``, ``[64, 64]``, ``true``, ``"x"``), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, ValueError):    # not a literal; an integer of > 4300 digits
        return text


def parse_overrides(items: Mapping[str, Any] | list[str] | None) -> dict[str, Any]:
    """``["model.dropout=0.3"]`` or ``{"model.dropout": 0.3}`` -> ``{"model.dropout": 0.3}``."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise invalid("--set", "section.key=value", item, kind="argument")
        check_text_depth(value, f"--set value of '{name.strip()}'")
        out[name.strip()] = _parse_value(value.strip())
    return out


# --- building and validating ------------------------------------------------------------------

def _cross_checks(cfg: Config) -> None:
    split = cfg.data.split
    if len(split) != 3:
        raise ConfigError(f"config key 'data.split' must be [train, val, test] (3 fractions); got {split!r}")
    if abs(sum(split) - 1.0) > 1e-6:
        raise ConfigError(f"config key 'data.split' must sum to 1; got {split!r} (sum {sum(split):g})")
    if split[0] <= 0:
        raise ConfigError(f"config key 'data.split' needs a training fraction > 0; got {split!r}")
    d = cfg.data
    if (d.folds is None) != (d.fold is None) or (d.folds is not None and d.fold >= d.folds):
        raise ConfigError(f"config keys 'data.folds' and 'data.fold' go together, with 0 <= fold < "
                          f"folds; got folds={d.folds!r}, fold={d.fold!r}")
    if cfg.model.kind != "linear" and cfg.model.factory is None and isinstance(cfg.model.dropout, list) \
            and len(cfg.model.dropout) != len(cfg.model.hidden):
        raise ConfigError(
            f"config key 'model.dropout' must have one probability per hidden layer "
            f"({len(cfg.model.hidden)}); got {cfg.model.dropout!r}")
    o = cfg.optim
    if o.warmup_epochs >= cfg.train.epochs and o.warmup_epochs > 0:
        raise ConfigError(f"config key 'optim.warmup_epochs' must be < train.epochs (the schedule runs "
                          f"after the warm-up); got warmup_epochs={o.warmup_epochs}, epochs={cfg.train.epochs}")
    if o.schedule != "none" and o.min_lr >= o.lr:
        raise ConfigError(f"config key 'optim.min_lr' must be < optim.lr (the schedule decays towards "
                          f"it); got min_lr={o.min_lr!r}, lr={o.lr!r}")
    if cfg.train.early_stopping and cfg.train.start_from_epoch >= cfg.train.epochs:
        raise ConfigError(f"config key 'train.start_from_epoch' must be < train.epochs (early stopping "
                          f"would watch no epoch); got start_from_epoch={cfg.train.start_from_epoch}, "
                          f"epochs={cfg.train.epochs}")
    if cfg.train.nproc > cfg.train.batch_size:
        raise ConfigError(f"config key 'train.nproc' must be <= train.batch_size (each process takes "
                          f"a share of every batch); got nproc={cfg.train.nproc}, "
                          f"batch_size={cfg.train.batch_size}")
    if cfg.model.batchnorm and cfg.train.nproc > 1 and cfg.train.batch_size // cfg.train.nproc < 2:
        raise ConfigError(f"config key 'train.nproc' must leave each process >= 2 rows of a batch "
                          f"for batch norm (train.batch_size // nproc); got nproc={cfg.train.nproc}, "
                          f"batch_size={cfg.train.batch_size}")


def check_modality(cfg: Config, modality: str) -> None:
    """Refuse a modality section set away from its defaults on data it does not apply to
    (``[audio]`` keys on mnist1d), which would otherwise be ignored silently (``modality``:
    the data's, ``Dataset.modality``)."""
    for section, applies in SECTION_MODALITIES.items():
        if modality not in applies and cfg.changed(section):
            default = SECTIONS[section]()
            changed = [f.name for f in dataclasses.fields(default)
                       if getattr(cfg, section).__dict__[f.name] != default.__dict__[f.name]]
            raise ConfigError(f"config section [{section}] applies to {' and '.join(applies)} data; got "
                              f"{section}.{changed[0]} = {quote(getattr(getattr(cfg, section), changed[0]))} "
                              f"for {modality} data (data.dataset '{_dataset_name(cfg)}')")


def _dataset_name(cfg: Config) -> str:
    d = cfg.data.dataset
    return d if isinstance(d, str) else f"a {type(d).__name__} from Python"


def may_bring_validation(cfg: Config) -> bool:
    """Whether the data may hold its own validation split whatever ``data.split`` says: an npz
    file (``X_val``), a ``python:`` dataset or a data object (its ``val``), a CSV column naming
    each row's split. Known only once the data is read (``runs.prepare``)."""
    d = cfg.data
    return (not isinstance(d.dataset, str) or d.dataset.startswith(("npz:", "python:"))
            or d.split_column is not None)


def require_validation(cfg: Config, why: str) -> None:
    """Refuse a config whose validation fraction is 0 where ``why`` needs a validation split
    (a study compares its variants on validation, a sweep ranks its trials there), unless its
    data may bring its own (``may_bring_validation``: then the study checks the data itself)."""
    if cfg.data.split[1] == 0 and not may_bring_validation(cfg):
        raise ConfigError(f"config key 'data.split' must give validation a fraction > 0: {why}; "
                          f"got {cfg.data.split!r}")


def _multitask_checks(m: MultitaskConfig, model: ModelConfig) -> None:
    if m.tasks and model.factory is not None:
        raise ConfigError(f"config key 'multitask.tasks' cannot apply to a user's network "
                          f"(model.factory): its heads are regulab's; got {m.tasks!r}")
    if len(set(m.tasks)) != len(m.tasks):
        raise ConfigError(f"config key 'multitask.tasks' must not repeat a task; got {m.tasks!r}")
    if m.weights is not None and len(m.weights) != len(m.tasks):
        raise ConfigError(f"config key 'multitask.weights' must have one weight per task "
                          f"({len(m.tasks)}: {m.tasks!r}); got {m.weights!r}")
    unused = [g for g in m.groups if g not in m.tasks]
    if unused:
        raise ConfigError(f"config key 'multitask.groups' defines {unused!r}, which multitask.tasks "
                          f"does not list; got tasks {m.tasks!r}")


def _transfer_checks(t: TransferConfig) -> None:
    if t.source is None:
        changed = [f.name for f in dataclasses.fields(t) if getattr(t, f.name) != f.default]
        if changed:
            raise ConfigError(f"config key 'transfer.{changed[0]}' needs transfer.source (the run "
                              f"to transfer from); got {getattr(t, changed[0])!r} and no source")
    elif t.freeze and t.lr is not None:
        raise ConfigError(f"config key 'transfer.lr' is for fine-tuning; got {t.lr!r} with "
                          "transfer.freeze = true (frozen layers do not learn)")


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Validate a nested dict (as read from TOML) into a ``Config``."""
    check_value_depth(raw, "the config")
    kwargs: dict[str, Any] = {}
    for k, value in _modernize(raw).items():
        if k == "name":
            kwargs["name"] = plain_name("name", value)
        elif k in SECTIONS:
            kwargs[k] = SECTIONS[k].from_table(value)
        else:
            raise unknown(k, ["name", *SECTIONS], "the top level")
    cfg = Config(**kwargs)
    _cross_checks(cfg)
    _multitask_checks(cfg.multitask, cfg.model)
    _transfer_checks(cfg.transfer)
    return cfg


def load_config(path: str | Path | None = None,
                overrides: Mapping[str, Any] | list[str] | None = None) -> Config:
    """Read a TOML file (or start from defaults when ``path`` is None) and apply overrides."""
    raw = code_paths(read_toml(path), Path(path).parent) if path is not None else {}
    return config_from_dict(code_paths(apply_overrides(raw, parse_overrides(overrides)), Path.cwd()))


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """A TOML file as a dict; a missing, unreadable or invalid file is a ``ConfigError``."""
    path = Path(path)
    text = read_text(path, what, max_bytes=SPEC_BYTES, error=ConfigError)   # a regular file, bounded
    check_text_depth(text, f"{what} '{path}'")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} '{path}' is not valid TOML: {e}") from None
    except ValueError:      # tomllib's int() of a literal of more than 4300 digits
        raise ConfigError(f"{what} '{path}' has an integer literal of more than 4300 digits; "
                          f"allowed: integers from {-MAX_INT - 1} to {MAX_INT}") from None


# --- writing ----------------------------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)   # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):     # an inline table; quoted keys are always valid
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def _keys(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The keys of section ``cls`` (the top level's without its sections), each with its default."""
    return [(f, f.default_factory() if f.default is dataclasses.MISSING else f.default)
            for f in dataclasses.fields(cls) if f.name not in SECTIONS]


def defaults_toml() -> str:
    """Every config key with its default, meaning and population role, as a commented TOML file
    that loads to the defaults (``regulab config --defaults``); a key unset by default (None)
    is commented out with its meaning."""
    from regulab.version import __version__
    lines = [f"# regulab {__version__}: every config key, its default and what it means. Each key's",
             "# population role says how it behaves when runs train as one population: member (members",
             "# may differ in it), shared (all must have the same), ignored (does not change training),",
             "# blocks (a value other than the default trains the run alone).", ""]

    def entries(cls: type) -> list[str]:
        out = []
        for f, default in _keys(cls):
            stack = f.metadata.get("population")
            role = f" [{stack.role}]" if stack is not None else ""
            out += textwrap.wrap(f"{f.metadata['doc']}{role}", 96, initial_indent="# ",
                                 subsequent_indent="# ")
            out.append(f"# {f.name} = (unset)" if default is None else f"{f.name} = {_toml_value(default)}")
        return out
    lines += entries(Config)
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]", *entries(cls)]
    return "\n".join(lines) + "\n"


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of a config file, for editors (``regulab config --schema``;
    Even Better TOML and other schema-aware editors read it): every section and key with its
    meaning, default and, where its constraint says it (``checks.schema_of``), its type, bounds
    or choices; unknown keys are errors, as they are to ``load_config``. A key whose constraint
    is a function of its own (a dataset reference, a size or a list) is described, not typed:
    ``load_config`` has the last word."""
    def properties(cls: type) -> dict[str, Any]:
        out = {}
        for f, default in _keys(cls):
            prop = {**schema_of(f.metadata["check"]), "description": f.metadata["doc"]}
            if default is not None and is_plain(default):
                prop["default"] = default
            out[f.name] = prop
        return out
    sections = {name: {"type": "object", "description": (cls.__doc__ or "").strip().splitlines()[0],
                       "additionalProperties": False, "properties": properties(cls)}
                for name, cls in SECTIONS.items()}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "regulab config",
            "type": "object", "additionalProperties": False,
            "properties": {**properties(Config), **sections}}


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML; keys left unset (None) are omitted."""
    d = cfg.to_dict(portable=True)
    lines = [f"name = {_toml_value(d.pop('name'))}"]
    for section, values in d.items():
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"
