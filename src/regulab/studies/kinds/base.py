"""A study kind: what one kind of study shows, in one class.

A study file names its kind (``[study] kind = "grid"``) and may hold the kind's own table
(``[grid]``). The kind is the one place that knows what is special about it; the study reader
(``regulab.studies.spec``), the runner (``regulab.studies.study``) and the report
(``regulab.studies.report``) ask it:

- ``Table``: its table as a typed ``Section`` (``KIND = "study key"``): each key with its
  default (``REQUIRED``: none), constraint and meaning, so a bad or unknown key is the one
  error, with "did you mean"; ``options`` reads it.
- ``generates`` and ``variants``: whether the kind makes its own variants from its table (then
  a ``[variants]`` table is refused) and which; ``baseline``: the variant the others are
  compared with.
- ``sources``: runs trained before the variants (transfer: the source network).
- ``jobs``: the runs of one variant: a seed each, plus the overrides and run-directory suffix
  a job adds (kfold: one per fold).
- ``check_data``: what is checked on the data and the first model before anything is
  written (the probed layers exist).
- ``x``: a variant's place on the x axis (capacity: its parameter count); ``analysis``: what
  the kind measures beyond scores (``results.json``'s ``analysis``).
- ``figures`` and ``answer``: the report's figures of the kind and, where it has one, the
  sentence that answers the study's question instead of the best-variant sentence.

A new kind is a subclass in its own file, registered in ``regulab.studies.kinds.KINDS``.
``LayerProbe`` is the base of the kinds that draw per-layer histograms of each variant's first
run (``weights``, ``dropout_activations``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from regulab.checks import Check, Section, key, list_of, number, optional, string
from regulab.errors import ConfigError, invalid
from regulab.runs.prepare import Prepared, prepare
from regulab.studies.variant import KIND, Variant

if TYPE_CHECKING:
    from regulab.report import Plot
    from regulab.studies.spec import StudySpec

__all__ = ["Kind", "Table", "Job", "LayerProbe", "LayerTable", "REQUIRED", "option",
           "non_empty_list"]


class _Required:
    """The default of a key the kind cannot do without (the error shows it as "nothing")."""

    def __repr__(self) -> str:
        return "nothing"


REQUIRED = _Required()


def option(default: Any, check: Check, doc: str) -> Any:
    """A key of a kind's table: its default (``REQUIRED``: the key must be given), its
    constraint and its meaning."""
    return key(default, _required(check) if default is REQUIRED else check, doc)


def _required(check: Check) -> Check:
    """``check`` of a key that must be given: absent (still ``REQUIRED``), the one error."""
    def checked(field: str, value: Any) -> Any:
        if value is REQUIRED:
            raise invalid(field, f"given (required by kind '{field.split('.')[0]}')", value)
        return check(field, value)
    return checked


def non_empty_list(field: str, value: Any) -> list:
    """A non-empty list (its items are checked where they are used, as config values)."""
    if not isinstance(value, list) or not value:
        raise invalid(field, "a non-empty list", value)
    return value


@dataclass
class Table(Section):
    """A kind's own table ``[<kind>]`` of a study file; ``SECTION`` is the kind's name."""
    SECTION, KIND = "", KIND


class Job(NamedTuple):
    """One run of a variant: its seed, its fold (K-fold studies; else None), the config
    overrides it adds to the variant's and its run directory's suffix after ``seed-<s>``."""
    seed: int
    fold: int | None = None
    overrides: Mapping[str, Any] = MappingProxyType({})
    suffix: str = ""


class Kind:
    """The base of every kind: a study of the file's own variants, one run per seed, nothing
    measured beyond scores, no figure of its own and the best-variant answer."""

    name = ""
    Table: type[Table] = Table      # the keys of its table; named [name] (below) whatever its class
    generates = False       # makes its own variants from its table: [variants] is refused

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A kind's table is called ``[name]``: a ``Table`` with another ``SECTION`` (a shared
        one, as ``LayerTable``, or none of its own) becomes a subclass named for this kind."""
        super().__init_subclass__(**kwargs)
        if cls.name and cls.Table.SECTION != cls.name:
            title = "".join(part.title() for part in cls.name.split("_"))
            cls.Table = dataclass(type(f"{title}Table", (cls.Table,), {
                "SECTION": cls.name, "__module__": cls.__module__,
                "__doc__": f"``[{cls.name}]``: {(cls.Table.__doc__ or '').strip()}"}))

    def options(self, raw: Any) -> Table:
        """The kind's table (as read from the study file, or ``StudySpec.options``) as its
        typed ``Table``: every key checked, absent ones at their defaults."""
        return self.Table.from_table({} if raw is None else raw, self.name)

    def variants(self, options: Table, given: list[Variant]) -> list[Variant]:
        """The study's variants: the file's own, or one baseline without overrides."""
        return given or [Variant("baseline")]

    def baseline(self, chosen: str | None, names: list[str]) -> str | None:
        """The variant the others are compared with: ``[study] baseline`` when given, else
        the first of the file's variants (none for a kind that makes its own)."""
        if chosen is not None:
            return chosen
        return None if self.generates or not names else names[0]

    def sources(self, spec: StudySpec) -> list[Variant]:
        """Variants trained before the study's own, whose runs they use (none)."""
        return []

    def jobs(self, spec: StudySpec) -> list[Job]:
        """The runs of one variant: one per seed."""
        return [Job(seed) for seed in spec.seeds]

    def prepare_first(self, spec: StudySpec) -> Prepared:
        """The first run's data and model, prepared (``prepare`` writes nothing)."""
        job = self.jobs(spec)[0]
        p = prepare(spec.config((self.sources(spec) or spec.variants)[0], job.seed, job.overrides))
        if "val" not in p.splits:   # data.split gives it none, and the data brought none either
            raise ConfigError(f"config key 'data.split' must give validation a fraction > 0, or "
                              f"the data its own validation split: a study compares its variants "
                              f"on the validation split; got {p.cfg.data.split!r}")
        return p

    def check_data(self, spec: StudySpec) -> None:
        """Load the data and build the first run's model now, so bad input fails before the
        study directory exists."""
        self.prepare_first(spec)

    def x(self, entry: dict[str, Any]) -> float | None:
        """A variant's place on the study's x axis (its results entry has ``x`` and
        ``params``): the variant's own ``x``."""
        return entry["x"]

    def analysis(self, spec: StudySpec, models: dict[str, Any], configs: dict[str, dict],
                 source_runs: list[dict[str, Any]]) -> dict[str, Any]:
        """What the kind measures beyond scores; ``models`` and ``configs`` hold each
        variant's first run's model and resolved config, ``source_runs`` the source runs."""
        return {}

    def figures(self, results: dict[str, Any]) -> list[Plot]:
        """The report's figures of the kind, after the summary chart and the curves."""
        return []

    def answer(self, results: dict[str, Any]) -> str | None:
        """The report's answer sentence (HTML, escaped), or None for the best variant's."""
        return None


@dataclass
class LayerTable(Table):
    """The table of a kind that probes layers: which layers, how many histogram bins."""
    layers: Any = option(None, optional(list_of(string, min_len=1, allowed="a non-empty list of "
                                                "layer names")), "the layers to measure (all)")
    bins: int = option(40, number(ge=1, integer=True), "bins of each histogram")


class LayerProbe(Kind):
    """Per-layer histograms of each variant's first run (``regulab.studies.probes``): the
    layers named in the table are checked on the first model before anything trains, and the
    report draws one row of histograms per variant (``what`` says what they show)."""

    Table = LayerTable
    what = ""                   # the figure's caption, up to the limits
    norms = False               # the panels' titles carry L1 and L2 norms

    def histograms(self, model: Any, config: dict[str, Any], bins: int,
                   layers: list[str] | None) -> list[dict[str, Any]]:
        """One histogram dict per layer of a trained ``model`` (a ``Pipeline``) whose
        resolved config is ``config``."""
        raise NotImplementedError

    def check_layers(self, prepared: Prepared, layers: list[str] | None) -> None:
        """Raise the one error when ``layers`` names a layer the prepared model lacks."""
        raise NotImplementedError

    def check_data(self, spec: StudySpec) -> None:
        self.check_layers(self.prepare_first(spec), self.options(spec.options).layers)

    def analysis(self, spec, models, configs, source_runs):
        o, hist = self.options(spec.options), []
        for name, model in models.items():
            found = self.histograms(model.to("cpu"), configs[name], o.bins, o.layers)
            hist += [{"variant": name, **h} for h in found]
        return {"hist": hist}

    def figures(self, results):
        from regulab.report import Plot, plots  # here: matplotlib loads with a report only
        if not (results.get("analysis") or {}).get("hist"):
            return []
        return [Plot("hist", f"{self.what}. At most {plots.MAX_ROWS} variants × {plots.MAX_COLS} "
                     "layers.", lambda: plots.layer_histograms(results, norms=self.norms))]
