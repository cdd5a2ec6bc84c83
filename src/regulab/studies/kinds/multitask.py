"""``multitask``: variants with and without auxiliary heads on a shared trunk, compared on
the main task (hard parameter sharing; Caruana, 1997, "Multitask learning"; Goodfellow et al.,
*Deep Learning*, 2016, section 7.7).

The variants are the file's own (``multitask.tasks`` in their overrides,
``regulab.regularize.multitask``). ``analysis``: ``{"heads": [...]}``, every auxiliary head of
any variant; the report adds each head's test accuracy per variant.
"""

from __future__ import annotations

from regulab.studies.kinds.base import Kind

__all__ = ["Multitask"]


class Multitask(Kind):
    name = "multitask"

    def analysis(self, spec, models, configs, source_runs):
        heads = {t for c in configs.values() for t in c.get("multitask", {}).get("tasks", [])}
        return {"heads": sorted(heads)}

    def figures(self, results):
        from regulab.report import Plot, plots  # here: matplotlib loads with a report only
        if not (results.get("variants") and (results.get("analysis") or {}).get("heads")):
            return []
        return [Plot("heads", "Test accuracy of each auxiliary head, mean ± std over runs, "
                     "one bar per variant.", lambda: plots.head_chart(results))]
