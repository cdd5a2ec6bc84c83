"""``load_dataset(spec)``: a data spec to a :class:`~regulab.data.dataset.Dataset`.

``spec`` is a built-in name (``regulab.data.builtins``) or ``csv:PATH``, ``npz:PATH``,
``images:DIR`` (read by ``regulab.data.files``), ``audio:DIR``, ``text:PATH``, ``video:DIR``
(read by their modality, as its config section says).
"""

from __future__ import annotations

from regulab.checks import did_you_mean
from regulab.data.builtins import BUILTINS, GENERATED, load_builtin
from regulab.data.dataset import TASKS, Dataset
from regulab.errors import DataError

__all__ = ["load_dataset", "FILE_SOURCES"]

FILE_SOURCES = ("csv", "npz", "images", "audio", "text", "video")


def load_dataset(spec: str, *, target: str | None = None, task: str = "auto",
                 n_samples: int | None = None, seed: int = 0, options=None) -> Dataset:
    """Load a built-in by name or a user file given as ``csv:PATH``, ``npz:PATH``, ``images:DIR``,
    ``audio:DIR``, ``text:PATH`` or ``video:DIR`` (read as ``options``, the ``[augment]`` config,
    says for its modality).

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
                          options=options)
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
    return load_builtin(spec, n_samples, seed)


def _load_file(spec, source, path, *, target, task, n_samples, options=None) -> Dataset:
    """Dispatch ``csv:``/``npz:``/``images:`` specs to the readers in ``files.py``, and
    ``audio:``/``text:``/``video:`` to their modules."""
    from regulab.data import files  # lazy: files.py builds on Dataset from this module

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
    if source in ("audio", "text", "video"):
        return _load_modality(spec, source, path, options)
    return files.read_images(spec, path, task=task)


def _load_modality(spec: str, source: str, path: str, options) -> Dataset:
    """``audio:DIR``, ``text:PATH``, ``video:DIR``, read as ``[augment.<source>]`` says."""
    from regulab.config.sections import AugmentConfig
    opts = getattr(options or AugmentConfig(), source)
    if source == "audio":
        from regulab.modalities.audio.reader import load_audio_dir
        ds = load_audio_dir(path, sample_rate=opts.sample_rate, seconds=opts.seconds,
                            label=opts.label, test_indices=opts.test_indices)
    elif source == "text":
        from regulab.modalities.text.reader import load_text
        ds = load_text(path, text_column=opts.text_column, label_column=opts.label_column)
    else:
        from regulab.modalities.video.reader import load_video_dir
        ds = load_video_dir(path, frames=opts.frames, sampling=opts.sampling, size=tuple(opts.size)
                            if isinstance(opts.size, list) else opts.size, gray=opts.gray, flow=opts.flow)
    ds.name = spec
    return ds


