"""Studies: many runs of one question (compare, grid, learning curve, capacity, K-fold, init,
dropout activations, weights, transfer, multi-task), aggregated over seeds and reported.

The names below load on first use: ``regulab.train`` imports ``study.diagnose``, and
``study.study`` imports ``regulab.train``.
"""

from importlib import import_module

__all__ = ["StudySpec", "Variant", "StudyResult", "load_study", "study_from_dict", "run_study",
           "study", "load_results", "clinic_path", "SweepSpec", "load_sweep", "SweepResult"]

_WHERE = {"StudySpec": "spec", "Variant": "spec", "load_study": "spec", "study_from_dict": "spec",
          "StudyResult": "study", "run_study": "study", "study": "study", "load_results": "study",
          "SweepSpec": "sweep_spec", "load_sweep": "sweep_spec", "SweepResult": "sweep"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def clinic_path():
    """The built-in overfitting clinic's study file (what ``regulab study`` runs)."""
    from importlib.resources import files
    return files(__name__) / "clinic.toml"
