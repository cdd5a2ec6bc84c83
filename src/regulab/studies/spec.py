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

from regulab.config.sections import SECTIONS
from regulab.config.core import Config, _apply, config_from_dict, read_toml
from regulab.errors import ConfigError

__all__ = ["Variant", "StudySpec", "load_study", "study_from_dict", "source_variant", "flatten",
           "KINDS", "GENERATED", "META_KEYS", "clinic_path"]

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
_STUDY_KEYS = ("name", "kind", "description", "seeds", "base", "baseline", "quick", "quick_seeds",
               "combine", "population")


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
            return config_from_dict(_apply(self.base, overrides))
        except ConfigError as e:
            raise ConfigError(f"study '{self.name}', variant '{variant.name}': {e}") from None

    def for_quick(self) -> "StudySpec":
        """The ``--quick`` version: its overrides applied to the base, its seeds."""
        import dataclasses
        return dataclasses.replace(self, base=_apply(self.base, self.quick),
                                   seeds=self.quick_seeds or self.seeds)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "seeds": self.seeds, "baseline": self.baseline, "combine": self.combine,
                "population": self.population,
                "options": self.options, "base": self.base,
                "variants": [vars(v) for v in self.variants]}


def _fail(key: str, allowed: str, value: Any) -> ConfigError:
    return ConfigError(f"study key '{key}' must be {allowed}; got {value!r}")


def _depth(path: list[str]) -> int:
    """How many parts a full config key starting with ``path`` has."""
    return 3 if path and path[0] == "augment" else 2


def flatten(table: Mapping[str, Any], where: str, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Nested config tables -> dotted keys: ``{"model": {"dropout": 0.3}}`` -> ``model.dropout``.
    A dict found at a full key's depth (``multitask.groups``) is a value, not a table."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        parts = [*prefix, *k.split(".")]
        if parts[0] not in (*SECTIONS, "augment", "name"):
            raise ConfigError(f"study key '{where}.{k}' is not a config key (section.key) or one "
                              f"of {', '.join(META_KEYS)}; got {v!r}")
        if isinstance(v, Mapping) and len(parts) < _depth(parts):
            out.update(flatten(v, where, tuple(parts)))
        else:
            out[".".join(parts)] = v
    return out


def _seeds(value: Any, key: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if (isinstance(value, list) and value and len(set(value)) == len(value)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        return list(value)
    raise _fail(key, "a count >= 1 or a list of distinct seeds >= 0", value)


def _variant(name: str, table: Any) -> Variant:
    where = f"variants.{name}"
    if not isinstance(table, Mapping):
        raise _fail(where, "a table of config keys", table)
    meta = {k: table[k] for k in META_KEYS if k in table}
    overrides = flatten({k: v for k, v in table.items() if k not in META_KEYS}, where)
    members = meta.get("members", 1)
    if not isinstance(members, int) or isinstance(members, bool) or members < 1:
        raise _fail(f"{where}.members", "an integer >= 2 (a deep ensemble) or 1", members)
    x = meta.get("x")
    if x is not None and (not isinstance(x, (int, float)) or isinstance(x, bool)):
        raise _fail(f"{where}.x", "a number", x)
    for k in ("label", "group"):
        if k in meta and not isinstance(meta[k], str):
            raise _fail(f"{where}.{k}", "a string", meta[k])
    if not isinstance(meta.get("combine", True), bool):
        raise _fail(f"{where}.combine", "true or false", meta["combine"])
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
        raise _fail(kind, f"a table with keys {', '.join(required + optional)}", raw)
    for k in raw:
        if k not in required + optional:
            raise _fail(f"{kind}.{k}", f"one of {', '.join(required + optional) or '(no keys)'}", k)
    for k in required:
        if k not in raw:
            raise ConfigError(f"study key '{kind}.{k}' is required for kind '{kind}'; got nothing")
    for k in ("values", "sizes", "layers", "source_classes", "target_classes"):
        if k in raw and (not isinstance(raw[k], list) or not raw[k]):
            raise _fail(f"{kind}.{k}", "a non-empty list", raw[k])
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
            raise _fail("learning_curve.models", "a table: series name -> config overrides", models)
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


def study_from_dict(raw: Mapping[str, Any], where: Path | None = None) -> StudySpec:
    """Validate a study (as read from TOML); ``where`` is the file, for relative base paths."""
    for k in raw:
        if k not in ("study", "base", "variants", *KINDS):
            raise _fail(k, "one of study, base, variants or a kind's table "
                        f"({', '.join(KINDS)})", k)
    s = raw.get("study", {})
    for k in s:
        if k not in _STUDY_KEYS:
            raise _fail(f"study.{k}", f"one of {', '.join(_STUDY_KEYS)}", k)
    kind = s.get("kind", "compare")
    if kind not in KINDS:
        raise _fail("study.kind", f"one of {', '.join(KINDS)}", kind)
    name = s.get("name", where.stem if where else "study")
    if not isinstance(name, str) or not name or "/" in name:
        raise _fail("study.name", "a non-empty string without '/'", name)
    base = read_base(raw, where, "study", _fail)
    given = [_variant(n, t) for n, t in raw.get("variants", {}).items()]
    if given and kind in GENERATED:
        raise _fail("variants", f"absent for kind '{kind}' (it makes its own from [{kind}])",
                    [v.name for v in given])
    options = _options(kind, raw.get(kind))
    variants = _generated(kind, options, given)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise _fail("variants", "distinct names", names)
    baseline = s.get("baseline", names[0] if kind not in GENERATED else None)
    if kind == "transfer":
        baseline = "scratch"
    if baseline is not None and baseline not in names:
        raise _fail("study.baseline", f"one of the variants ({', '.join(names)})", baseline)
    combine = s.get("combine", 0)
    if not isinstance(combine, int) or isinstance(combine, bool) or combine < 0:
        raise _fail("study.combine", "an integer >= 0 (0: no combination)", combine)
    quick = s.get("quick", {})
    if not isinstance(quick, Mapping):
        raise _fail("study.quick", "a table of config overrides", quick)
    description = s.get("description", "")
    if not isinstance(description, str):
        raise _fail("study.description", "a string", description)
    population = s.get("population", 64)
    if not isinstance(population, int) or isinstance(population, bool) or population < 0:
        raise _fail("study.population", "an integer >= 0 (0 or 1: train runs one by one)", population)
    spec = StudySpec(name, kind, base, variants, _seeds(s.get("seeds", 3), "study.seeds"),
                     description, baseline, combine, options, flatten(quick, "study.quick"),
                     _seeds(s["quick_seeds"], "study.quick_seeds") if "quick_seeds" in s else None,
                     population)
    if kind == "transfer":
        spec.options["source"] = flatten(options.get("source", {}), "transfer.source")
    for v in [*variants, *([source_variant(spec)] if kind == "transfer" else [])]:
        # every config validates before anything is trained (a transfer target without its source)
        v = Variant(v.name, {k: x for k, x in v.overrides.items() if not k.startswith("transfer.")})
        spec.config(v, spec.seeds[0])
        spec.for_quick().config(v, spec.seeds[0])
    return spec


def read_base(raw: Mapping[str, Any], where: Path | None, table: str, fail) -> dict[str, Any]:
    """The base config of a study or sweep file: ``[<table>] base`` (a config file, relative
    to ``where``) with the file's ``[base]`` tables over it; ``fail(key, allowed, value)``
    makes the file kind's error."""
    s = raw.get(table, {})
    base: dict[str, Any] = {}
    if "base" in s:
        path = Path(s["base"]) if where is None else where.parent / s["base"]
        if not path.is_file():
            raise fail(f"{table}.base", f"an existing config file (relative to the {table} file)", s["base"])
        base = read_toml(path, f"{table}.base: config file")
    inline = raw.get("base", {})
    if not isinstance(inline, Mapping):
        raise fail("base", "a table of config sections", inline)
    return _apply(base, flatten(inline, "base"))


def source_variant(spec: StudySpec) -> Variant:
    """A transfer study's source run: the source classes, with its own overrides."""
    o = spec.options
    return Variant("source", {"data.classes": o["source_classes"], **o.get("source", {})},
                   f"source (classes {', '.join(map(str, o['source_classes']))})")


def clinic_path():
    """The built-in overfitting clinic's study file (what ``regulab study`` runs)."""
    from importlib.resources import files
    return files("regulab.studies") / "clinic.toml"


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    return study_from_dict(read_toml(path, "study file"), Path(path))
