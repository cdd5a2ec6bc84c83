"""``load_dataset(spec)``: every data source a config can name (``data.dataset``), to a
:class:`~regulab.data.dataset.Dataset`.

``spec`` is a built-in name (the data layer's, ``regulab.data.builtins``, and each modality's:
``rotten_tomatoes``), ``csv:PATH`` or ``npz:PATH`` (``regulab.data.files``), or a modality's
own source, read as its config section says: ``images:DIR``, ``audio:DIR``, ``text:PATH``,
``video:DIR`` (``regulab.modalities.<name>.reader.read``), or ``python:FILE.py:NAME`` (also
``python:package.module:NAME``): a function of the user's, called with no arguments, whose data
``regulab.data.user`` turns into a ``Dataset`` (loading the file runs its code; regulab loads
only the file the config names). This is the one place that knows them all, so it sits above
the data layer and the modalities.
"""

from __future__ import annotations

from regulab.config.sections import SECTIONS, DataConfig
from regulab.data import files
from regulab.data.builtins import BUILTINS as ARRAY_BUILTINS
from regulab.data.builtins import Builtin, load_builtin
from regulab.data.dataset import Dataset
from regulab.data.user import user_dataset
from regulab.errors import DataError, did_you_mean, invalid
from regulab.modalities.audio import reader as audio
from regulab.modalities.image import reader as image
from regulab.modalities.text import reader as text
from regulab.modalities.video import reader as video
from regulab.user_code import OBJECT, load_object

__all__ = ["load_dataset", "list_datasets", "BUILTINS", "FILE_SOURCES"]

BUILTINS: dict[str, Builtin] = {**ARRAY_BUILTINS, text.ROTTEN_TOMATOES.name: text.ROTTEN_TOMATOES}
GENERATED = tuple(sorted(name for name, b in BUILTINS.items() if b.generated))
# source -> (its reader, the config section it reads with)
READERS = {"images": (image.read, "image"), "audio": (audio.read, "audio"),
           "text": (text.read, "text"), "video": (video.read, "video")}
FILE_SOURCES = ("csv", "npz", *READERS, "python")
FORMS = "csv:PATH, npz:PATH, images:DIR, audio:DIR, text:PATH, video:DIR, python:FILE.py:NAME"  # how each is written


def list_datasets() -> list[Builtin]:
    """Every built-in, sorted by name."""
    return [BUILTINS[k] for k in sorted(BUILTINS)]


def load_dataset(spec: str, *, target: str | None = None, task: str = "auto",
                 n_samples: int | None = None, seed: int = 0, sections=None, lazy: bool = False,
                 split_column: str | None = None) -> Dataset:
    """Load a built-in by name or a user file given as ``csv:PATH``, ``npz:PATH``, ``images:DIR``,
    ``audio:DIR``, ``text:PATH``, ``video:DIR`` or ``python:FILE.py:NAME``, a modality's source read as its section in
    ``sections`` says (a ``Config``, or anything with ``.audio``, ``.text``, ...; default:
    the sections' defaults).

    target: the csv target column (csv only, required there). split_column: the csv column that
    says each row's split, train / val / test (csv only). task: "auto" (inferred; see
    ``regulab.data.files``), "classification" or "regression". n_samples: size of a generated
    data set (mnist1d, moons, sine); refused elsewhere. seed: seeds moons and sine. lazy: the
    images of ``images:DIR`` are decoded when read (``regulab.data.stream.Rows``), not now.
    Example: ``load_dataset("moons", n_samples=500, seed=1)``.
    """
    allowed = f"a built-in name ({', '.join(sorted(BUILTINS))}) or {FORMS}"
    if not isinstance(spec, str) or not spec.strip():
        raise invalid("data.dataset", allowed, spec, error=DataError)
    for name, value in (("task", task), ("n_samples", n_samples), ("seed", seed)):
        DataConfig.check(name, value)       # the rules of the [data] keys of the same names
    if spec.startswith(OBJECT):     # written for data given from Python: it must be given again
        load_object(spec, "data.dataset", error=DataError)
    source, sep, path = spec.partition(":")
    if sep:
        return _load_file(spec, source, path, target=target, task=task, n_samples=n_samples,
                          sections=sections, lazy=lazy, split_column=split_column)
    if spec not in BUILTINS:
        hint = ""
        if spec.lower().endswith((".csv", ".npz")):
            hint = f"; to load a file write {spec.lower()[-3:]}:{spec}"
        raise DataError(f"config key 'data.dataset' must be {allowed}; got {spec!r}"
                        f"{did_you_mean(spec, BUILTINS) or hint}")
    if target is not None:
        raise invalid("data.target", "absent for a built-in (target is for csv:PATH)", target, error=DataError)
    if split_column is not None:
        raise invalid("data.split_column", "absent for a built-in (split_column is for csv:PATH)",
                      split_column, error=DataError)
    info = BUILTINS[spec]
    if task not in ("auto", info.task):
        raise invalid("data.task", f"auto or {info.task} for built-in '{spec}', a {info.task} data set",
                      task, error=DataError)
    if n_samples is not None and spec not in GENERATED:
        raise invalid("data.n_samples", f"absent for built-in '{spec}', which has a fixed size "
                      f"({info.samples}); n_samples is only for {', '.join(GENERATED)}", n_samples,
                      error=DataError)
    return load_builtin(info, n_samples, seed)


def _load_file(spec, source, path, *, target, task, n_samples, sections=None, lazy=False,
               split_column=None) -> Dataset:
    """``csv:``/``npz:`` to the data layer's readers, a modality's source to its reader."""
    if source not in FILE_SOURCES:
        raise DataError(f"config key 'data.dataset' must name a source ({FORMS}); got {spec!r}"
                        f"{did_you_mean(source, FILE_SOURCES)}")
    if n_samples is not None:
        raise invalid("data.n_samples", f"absent for {spec!r} (n_samples is only for the generated "
                      f"built-ins: {', '.join(GENERATED)})", n_samples, error=DataError)
    if source != "csv" and target is not None:
        raise invalid("data.target", f"absent for {spec!r} (target is for csv:PATH)", target, error=DataError)
    if source != "csv" and split_column is not None:
        raise invalid("data.split_column", f"absent for {spec!r} (split_column is for csv:PATH)",
                      split_column, error=DataError)
    if source == "python":
        return python_data(path, task)
    if source == "csv":
        return files.read_csv(spec, path, target=target, task=task, split_column=split_column)
    if source == "npz":
        return files.read_npz(spec, path, task=task)
    if source == "images":
        return image.read_images(spec, path, task=task, lazy=lazy)
    read, section = READERS[source]
    config = getattr(sections, section) if sections is not None else SECTIONS[section]()
    ds = read(spec, path, config, task=task)
    ds.name = spec
    return ds




def python_data(spec: str, task: str = "auto") -> Dataset:
    """``python:FILE.py:NAME``: the data NAME returns, called with no arguments (module docstring);
    the function raising or returning something else is a one-line ``DataError``."""
    fn = load_object(spec, "data.dataset", error=DataError)
    where = f"data.dataset 'python:{spec}'"
    if not callable(fn):
        raise DataError(f"config key 'data.dataset': {spec!r} names a {type(fn).__name__}, not a function "
                        "returning the data")
    try:
        data = fn()
    except Exception as e:
        raise DataError(f"config key 'data.dataset': calling {spec!r} raised {type(e).__name__}: "
                        f"{' '.join(str(e).split()) or '(no message)'}") from None
    return user_dataset(data, where, task)
