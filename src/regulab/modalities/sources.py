"""``load_dataset(spec)``: every data source a config can name (``data.dataset``), to a
:class:`~regulab.data.dataset.Dataset`.

``spec`` is a built-in name (the data layer's, ``regulab.data.builtins``, and each modality's:
``rotten_tomatoes``), ``csv:PATH`` or ``npz:PATH`` (``regulab.data.files``), or a modality's
own source, read as its config section says: ``images:DIR``, ``audio:DIR``, ``text:PATH``,
``video:DIR`` (``regulab.modalities.<name>.reader.read``). This is the one place that knows
them all, so it sits above the data layer and the modalities.
"""

from __future__ import annotations

from regulab.config.sections import SECTIONS
from regulab.data import files
from regulab.data.builtins import BUILTINS as ARRAY_BUILTINS
from regulab.data.builtins import Builtin, load_builtin
from regulab.data.dataset import TASKS, Dataset
from regulab.errors import DataError, did_you_mean
from regulab.modalities.audio import reader as audio
from regulab.modalities.image import reader as image
from regulab.modalities.text import reader as text
from regulab.modalities.video import reader as video

__all__ = ["load_dataset", "list_datasets", "BUILTINS", "FILE_SOURCES"]

BUILTINS: dict[str, Builtin] = {**ARRAY_BUILTINS, text.ROTTEN_TOMATOES.name: text.ROTTEN_TOMATOES}
GENERATED = tuple(sorted(name for name, b in BUILTINS.items() if b.generated))
# source -> (its reader, the config section it reads with)
READERS = {"images": (image.read, "image"), "audio": (audio.read, "audio"),
           "text": (text.read, "text"), "video": (video.read, "video")}
FILE_SOURCES = ("csv", "npz", *READERS)


def list_datasets() -> list[Builtin]:
    """Every built-in, sorted by name."""
    return [BUILTINS[k] for k in sorted(BUILTINS)]


def load_dataset(spec: str, *, target: str | None = None, task: str = "auto",
                 n_samples: int | None = None, seed: int = 0, sections=None) -> Dataset:
    """Load a built-in by name or a user file given as ``csv:PATH``, ``npz:PATH``, ``images:DIR``,
    ``audio:DIR``, ``text:PATH`` or ``video:DIR``, a modality's source read as its section in
    ``sections`` says (a ``Config``, or anything with ``.audio``, ``.text``, ...; default:
    the sections' defaults).

    target: the csv target column (csv only, required there). task: "auto" (inferred; see
    ``regulab.data.files``), "classification" or "regression". n_samples: size of a generated
    data set (mnist1d, moons, sine); refused elsewhere. seed: seeds moons and sine.
    Example: ``load_dataset("moons", n_samples=500, seed=1)``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data.dataset: got {spec!r}; expected a built-in name "
                        f"({', '.join(sorted(BUILTINS))}) or csv:PATH, npz:PATH, images:DIR")
    if task not in TASKS:
        raise DataError(f"data.task: got {task!r}{did_you_mean(task, TASKS)}; allowed: {', '.join(TASKS)}")
    if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, int)
                                  or n_samples < 2):
        raise DataError(f"data.n_samples: got {n_samples!r}; allowed: an integer >= 2, or None")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"data.seed: got {seed!r}; allowed: an integer >= 0")
    source, sep, path = spec.partition(":")
    if sep:
        return _load_file(spec, source, path, target=target, task=task, n_samples=n_samples,
                          sections=sections)
    if spec not in BUILTINS:
        hint = ""
        if spec.lower().endswith((".csv", ".npz")):
            hint = f"; to load a file write {spec.lower()[-3:]}:{spec}"
        raise DataError(f"data.dataset: unknown dataset {spec!r}{did_you_mean(spec, BUILTINS) or hint} "
                        f"(built-ins: {', '.join(sorted(BUILTINS))}; or csv:PATH, npz:PATH, images:DIR)")
    if target is not None:
        raise DataError(f"data.target: got {target!r} for built-in '{spec}'; target is only for csv:PATH")
    info = BUILTINS[spec]
    if task not in ("auto", info.task):
        raise DataError(f"data.task: got {task!r} for built-in '{spec}', a {info.task} data set; "
                        f"allowed: auto, {info.task}")
    if n_samples is not None and spec not in GENERATED:
        raise DataError(f"data.n_samples: got {n_samples} for built-in '{spec}', which has a fixed "
                        f"size ({info.samples}); n_samples is only for {', '.join(GENERATED)}")
    return load_builtin(info, n_samples, seed)


def _load_file(spec, source, path, *, target, task, n_samples, sections=None) -> Dataset:
    """``csv:``/``npz:`` to the data layer's readers, a modality's source to its reader."""
    if source not in FILE_SOURCES:
        raise DataError(f"data.dataset: unknown source '{source}:' in {spec!r}"
                        f"{did_you_mean(source, FILE_SOURCES)}; allowed: csv:PATH, npz:PATH, images:DIR, "
                        "audio:DIR, text:PATH, video:DIR")
    if n_samples is not None:
        raise DataError(f"data.n_samples: got {n_samples} for {spec!r}; n_samples is only for "
                        f"the generated built-ins ({', '.join(GENERATED)})")
    if source != "csv" and target is not None:
        raise DataError(f"data.target: got {target!r} for {spec!r}; target is only for csv:PATH")
    if source == "csv":
        return files.read_csv(spec, path, target=target, task=task)
    if source == "npz":
        return files.read_npz(spec, path, task=task)
    read, section = READERS[source]
    config = getattr(sections, section) if sections is not None else SECTIONS[section]()
    ds = read(spec, path, config, task=task)
    ds.name = spec
    return ds


