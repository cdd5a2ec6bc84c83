"""``kfold``: K-fold cross-validation -- every variant trains K times per seed, each run
holding out one fold of the data as its test split, so each example is tested exactly once
and the spread over folds shows how much the score depends on the split.

``[kfold] k`` is K (>= 2). Each run of a variant is one (seed, fold) job with the config
overrides ``data.folds = k``, ``data.fold = f`` and the run directory ``seed-<s>-fold-<f>``;
the folds are stratified and the validation split that early stopping watches comes from the
other K - 1 folds (``regulab.data.split``). ``analysis``: ``{"k": K}``; the report adds each
fold's test score per variant.
"""

from __future__ import annotations

from dataclasses import dataclass

from regulab.checks import number
from regulab.studies.kinds.base import REQUIRED, Job, Kind, Table, option

__all__ = ["KFold"]


@dataclass
class KFoldTable(Table):
    """``[kfold]``: the number of folds."""
    SECTION = "kfold"
    k: int = option(REQUIRED, number(ge=2, integer=True), "folds K; each run holds one out")


class KFold(Kind):
    name = "kfold"
    Table = KFoldTable

    def jobs(self, spec):
        k = self.options(spec.options).k
        return [Job(seed, fold, {"data.folds": k, "data.fold": fold}, f"-fold-{fold}")
                for seed in spec.seeds for fold in range(k)]

    def analysis(self, spec, models, configs, source_runs):
        return {"k": self.options(spec.options).k}

    def figures(self, results):
        from regulab.report import MISSING, Plot, esc, plots  # matplotlib with a report only
        if not results.get("variants"):
            return []
        k = esc((results.get("analysis") or {}).get("k", MISSING))
        return [Plot("kfold", f"Test {plots.score_name(results)} on each held-out fold (dots; "
                     f"k = {k}) and the mean ± std over folds.",
                     lambda: plots.kfold_chart(results))]
