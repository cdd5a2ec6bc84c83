"""``compare``: the file's own variants side by side -- a baseline and regularized variants,
each over several seeds, ranked on validation and compared with the baseline on test.

The built-in overfitting clinic (``regulab study`` without a file) is a compare study. The
answer is the best variant on validation, its test score and its change against the baseline
(``regulab.studies.aggregate``); the report shows the summary chart and the training curves.
"""

from __future__ import annotations

from regulab.studies.kinds.base import Kind

__all__ = ["Compare"]


class Compare(Kind):
    name = "compare"
