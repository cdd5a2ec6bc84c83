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

    [base]                        # config sections applied over the base file
    train = { epochs = 60 }

    [variants.baseline]           # one table per variant: config keys (dotted or nested) ...
    [variants.l2]
    regularization.l2 = 1e-3
    label = "L2 1e-3"             # ... and optional meta keys: label, group, x, members, combine

    [grid]                        # the kind's own table (see ``KINDS``)
    key = "model.dropout"
    values = [0.0, 0.2, 0.5]

Meta keys of a variant: ``label`` (shown in the report), ``group`` and ``x`` (its series and
position on the study's x axis), ``members`` (K >= 2: each seed trains a deep ensemble of K
networks and evaluates their averaged probabilities), ``combine`` (false: never part of the
clinic's best combination). ``[study] combine = N`` makes the study add a variant that merges
the N best variants on validation (one per config key, each better than the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from regulab.checks import Section, key, name, number, optional, string, text
from regulab.config.core import Config, apply_overrides, config_from_dict, read_toml
from regulab.config.files import flatten as flatten_config
from regulab.config.files import read_spec_file
from regulab.errors import ConfigError, invalid

__all__ = ["Variant", "StudySpec", "StudySection", "load_study", "study_from_dict", "source_variant",
           "flatten", "KINDS", "GENERATED", "META_KEYS", "clinic_path"]

KINDS = {   # kind -> its table's keys: (required, optional)
    "compare": ((), ()),
    "multitask": ((), ()),
    "weights": ((), ("layers", "bins")),
    "dropout_activations": ((), ("layers", "bins")),
    "grid": (("key", "values"), ("log_x",)),
    "learning_curve": (("sizes",), ("models", "log_x")),
    "capacity": (("key", "values"), ("log_x",)),
    "kfold": (("k",), ()),
    "init": ((), ("schemes", "activations", "depth", "width", "n", "bins")),
    "transfer": (("source_classes", "target_classes", "layers"), ("source", "target_train_size")),
}
GENERATED = ("grid", "learning_curve", "capacity", "transfer", "init")   # make their own variants
META_KEYS = ("label", "group", "x", "members", "combine")
KIND = "study key"


def seed_list(field: str, value: Any) -> list[int]:
    """A count n >= 1 (seeds 0..n-1) or a list of distinct seeds >= 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if (isinstance(value, list) and value and len(set(value)) == len(value)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        return list(value)
    raise invalid(field, "a count >= 1 or a list of distinct seeds >= 0", value)


def _table(field: str, value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise invalid(field, "a table of config overrides", value)
    return dict(value)


@dataclass
class StudySection(Section):
    """``[study]``: what the study is, its seeds, its base config and how it runs."""
    SECTION, KIND = "study", KIND
    name: Any = key(None, optional(name), "the study's name; default: the file's")
    kind: str = key("compare", lambda field, v: _kind(field, v), "what the study shows (KINDS)")
    description: str = key("", text, "the question, shown in the report")
    seeds: list = key(3, seed_list, "seeds 0..n-1, or a list of seeds")
    base: Any = key(None, optional(string), "a config file, relative to the study file")
    baseline: Any = key(None, optional(string), "the variant the others are compared with")
    quick: dict = key({}, _table, "config overrides applied with --quick")
    quick_seeds: Any = key(None, optional(seed_list), "seeds with --quick (default: the same)")
    combine: int = key(0, number(ge=0, integer=True), "merge the N best variants (0: no combination)")
    population: int = key(64, number(ge=0, integer=True),
                          "runs that differ only in member keys train as one model, up to this many "
                          "(0 or 1: one by one)")


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


@dataclass
class StudySpec:
    name: str
    kind: str
    base: dict[str, Any]                      # raw config (sections), seeds not applied
    variants: list[Variant]
    seeds: list[int]
    description: str = ""
    baseline: str | None = None
    combine: int = 0
    options: dict[str, Any] = field(default_factory=dict)   # the kind's own table
    quick: dict[str, Any] = field(default_factory=dict)
    quick_seeds: list[int] | None = None
    population: int = 64                # largest population trained as one model (< 2: none)

    def config(self, variant: Variant, seed: int, extra: Mapping[str, Any] | None = None) -> Config:
        """The resolved config of ``variant`` at ``seed``; errors name the variant."""
        overrides = {**variant.overrides, **(extra or {}), "train.seed": seed,
                     "name": f"{self.name}-{variant.name}"}
        try:
            return config_from_dict(apply_overrides(self.base, overrides))
        except ConfigError as e:
            raise ConfigError(f"study '{self.name}', variant '{variant.name}': {e}") from None

    def for_quick(self) -> "StudySpec":
        """The ``--quick`` version: its overrides applied to the base, its seeds."""
        import dataclasses
        return dataclasses.replace(self, base=apply_overrides(self.base, self.quick),
                                   seeds=self.quick_seeds or self.seeds)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "seeds": self.seeds, "baseline": self.baseline, "combine": self.combine,
                "population": self.population,
                "options": self.options, "base": self.base,
                "variants": [vars(v) for v in self.variants]}


def _fail(field: str, allowed: str, value: Any) -> ConfigError:
    raise invalid(field, allowed, value, kind=KIND)


def _kind(field: str, value: Any) -> str:
    if value not in KINDS:
        _fail(field, f"one of {', '.join(KINDS)}", value)
    return value


def flatten(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Nested config tables of a study file -> dotted keys (``regulab.config.files.flatten``)."""
    return flatten_config(table, where, KIND, META_KEYS)


def _variant(name: str, table: Any) -> Variant:
    where = f"variants.{name}"
    if not isinstance(table, Mapping):
        _fail(where, "a table of config keys", table)
    meta = {k: table[k] for k in META_KEYS if k in table}
    overrides = flatten({k: v for k, v in table.items() if k not in META_KEYS}, where)
    members = meta.get("members", 1)
    if not isinstance(members, int) or isinstance(members, bool) or members < 1:
        _fail(f"{where}.members", "an integer >= 2 (a deep ensemble) or 1", members)
    x = meta.get("x")
    if x is not None and (not isinstance(x, (int, float)) or isinstance(x, bool)):
        _fail(f"{where}.x", "a number", x)
    for k in ("label", "group"):
        if k in meta and not isinstance(meta[k], str):
            _fail(f"{where}.{k}", "a string", meta[k])
    if not isinstance(meta.get("combine", True), bool):
        _fail(f"{where}.combine", "true or false", meta["combine"])
    return Variant(name, overrides, meta.get("label", ""), meta.get("group"),
                   None if x is None else float(x), members, meta.get("combine", True))


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _fmt(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, list) else f"{v:g}" if isinstance(v, float) else str(v)


def _options(kind: str, raw: Any) -> dict[str, Any]:
    required, optional = KINDS[kind]
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        _fail(kind, f"a table with keys {', '.join(required + optional)}", raw)
    for k in raw:
        if k not in required + optional:
            _fail(f"{kind}.{k}", f"one of {', '.join(required + optional) or '(no keys)'}", k)
    for k in required:
        if k not in raw:
            raise ConfigError(f"study key '{kind}.{k}' is required for kind '{kind}'; got nothing")
    for k in ("values", "sizes", "layers", "source_classes", "target_classes"):
        if k in raw and (not isinstance(raw[k], list) or not raw[k]):
            _fail(f"{kind}.{k}", "a non-empty list", raw[k])
    return dict(raw)


def _generated(kind: str, o: dict[str, Any], given: list[Variant]) -> list[Variant]:
    """The variants a kind makes from its own table (grid values, sizes, widths, ...)."""
    if kind in ("grid", "capacity"):
        return [Variant(f"{_short(o['key'])}={_fmt(v)}", {o["key"]: v}, f"{o['key']} = {_fmt(v)}",
                        x=(float(v) if isinstance(v, (int, float)) else None))
                for v in o["values"]]
    if kind == "learning_curve":
        models = o.get("models") or {"model": {}}
        if not isinstance(models, Mapping):
            _fail("learning_curve.models", "a table: series name -> config overrides", models)
        out = []
        for group, table in models.items():
            over = flatten(table, f"learning_curve.models.{group}")
            for n in o["sizes"]:
                out.append(Variant(f"{group}-n{_fmt(n)}", {**over, "data.train_size": n},
                                   f"{group}, {_fmt(n)} examples", group, float(n)))
        return out
    if kind == "transfer":
        target = {"data.classes": o["target_classes"]}
        if "target_train_size" in o:
            target["data.train_size"] = o["target_train_size"]
        out = [Variant("scratch", dict(target), "from scratch", "scratch", 0.0)]
        for k in o["layers"]:
            for freeze, group in ((True, "frozen"), (False, "fine-tuned")):
                out.append(Variant(f"{group}-{k}", {**target, "transfer.source": "{source}",
                                                    "transfer.layers": k, "transfer.freeze": freeze},
                                   f"first {k} layer(s), {group}", group, float(k)))
        return out
    if kind == "init":
        return []
    return given or [Variant("baseline")]


def study_from_dict(raw: Mapping[str, Any], where: Path | None = None,
                    overrides: Mapping[str, Any] | None = None) -> StudySpec:
    """Validate a study (as read from TOML); ``where`` is the file, for relative base paths;
    ``overrides`` (dotted config keys, ``--set``) go over its base config."""
    s, base = read_spec_file(raw, where, StudySection, ("variants", *KINDS), overrides)
    kind = s.kind
    study_name = s.name or (where.stem if where else "study")
    given = [_variant(n, t) for n, t in raw.get("variants", {}).items()]
    if given and kind in GENERATED:
        _fail("variants", f"absent for kind '{kind}' (it makes its own from [{kind}])",
              [v.name for v in given])
    options = _options(kind, raw.get(kind))
    variants = _generated(kind, options, given)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        _fail("variants", "distinct names", names)
    baseline = s.baseline if s.baseline is not None else (names[0] if kind not in GENERATED else None)
    if kind == "transfer":
        baseline = "scratch"
    if baseline is not None and baseline not in names:
        _fail("study.baseline", f"one of the variants ({', '.join(names)})", baseline)
    spec = StudySpec(study_name, kind, base, variants, s.seeds, s.description, baseline, s.combine,
                     options, flatten(s.quick, "study.quick"), s.quick_seeds, s.population)
    if kind == "transfer":
        spec.options["source"] = flatten(options.get("source", {}), "transfer.source")
    for v in [*variants, *([source_variant(spec)] if kind == "transfer" else [])]:
        # every config validates before anything is trained (a transfer target without its source)
        v = Variant(v.name, {k: x for k, x in v.overrides.items() if not k.startswith("transfer.")})
        spec.config(v, spec.seeds[0])
        spec.for_quick().config(v, spec.seeds[0])
    return spec


def source_variant(spec: StudySpec) -> Variant:
    """A transfer study's source run: the source classes, with its own overrides."""
    o = spec.options
    return Variant("source", {"data.classes": o["source_classes"], **o.get("source", {})},
                   f"source (classes {', '.join(map(str, o['source_classes']))})")


def clinic_path():
    """The built-in overfitting clinic's study file (what ``regulab study`` runs)."""
    from importlib.resources import files
    return files("regulab.studies") / "clinic.toml"


def load_study(path: str | Path, overrides: Mapping[str, Any] | None = None) -> StudySpec:
    """Read and validate a study file; ``overrides`` (dotted config keys) go over its base."""
    return study_from_dict(read_toml(path, "study file"), Path(path), overrides)
