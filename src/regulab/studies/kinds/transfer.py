"""``transfer``: how many layers learned on a source task help a target task with little data,
frozen or fine-tuned, against the same network trained from scratch (Yosinski et al., 2014,
"How transferable are features in deep neural networks?", NeurIPS).

``[transfer]`` splits one dataset's classes: a source network learns ``source_classes`` (its
own overrides in ``source``) once per seed, before the variants (run directory
``source/seed-<s>``); each variant learns ``target_classes`` (on ``target_train_size``
examples when given). The variants: "scratch" (the baseline, x = 0) and, for each k in
``layers``, the first k layers copied from the source run of the same seed, "frozen" and
"fine-tuned" (x = k; ``regulab.regularize.transfer``). ``analysis``: the source's classes and
mean validation accuracy; the report draws test score against layers transferred, one line per
group, scratch as a dashed band.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from regulab.checks import list_of, number, optional, train_size
from regulab.errors import invalid
from regulab.studies.kinds.base import REQUIRED, Kind, Table, non_empty_list, option
from regulab.studies.variant import Variant, flatten

__all__ = ["Transfer"]


def overrides(field: str, value: Any) -> dict[str, Any]:
    """A table of config overrides (nested or dotted), flattened."""
    if not isinstance(value, Mapping):
        raise invalid(field, "a table of config overrides", value)
    return flatten(value, field)


@dataclass
class TransferTable(Table):
    """``[transfer]``: the source and target classes and the layers transferred."""
    SECTION = "transfer"
    source_classes: list = option(REQUIRED, non_empty_list, "the classes the source network learns")
    target_classes: list = option(REQUIRED, non_empty_list, "the classes the variants learn")
    layers: list = option(REQUIRED, list_of(number(ge=1, integer=True), min_len=1,
                                            allowed="a non-empty list of layer counts"),
                          "k: the first k layers are transferred, one frozen and one "
                          "fine-tuned variant each")
    source: dict = option({}, overrides, "config overrides of the source runs")
    target_train_size: Any = option(None, optional(train_size), "training examples of the target "
                                    "task (default: all of its training split)")


class Transfer(Kind):
    name = "transfer"
    Table = TransferTable
    generates = True

    def variants(self, options, given):
        target = {"data.classes": options.target_classes}
        if options.target_train_size is not None:
            target["data.train_size"] = options.target_train_size
        out = [Variant("scratch", dict(target), "from scratch", "scratch", 0.0)]
        for k in options.layers:        # "{source}": the source run of the seed (the runner's)
            for freeze, group in ((True, "frozen"), (False, "fine-tuned")):
                copied = {"transfer.source": "{source}", "transfer.layers": k,
                          "transfer.freeze": freeze}
                out.append(Variant(f"{group}-{k}", {**target, **copied},
                                   f"first {k} layer(s), {group}", group, float(k)))
        return out

    def baseline(self, chosen, names):
        return "scratch"

    def sources(self, spec):
        o = self.options(spec.options)
        return [Variant("source", {"data.classes": o.source_classes, **o.source},
                        f"source (classes {', '.join(map(str, o.source_classes))})")]

    def analysis(self, spec, models, configs, source_runs):
        accs = [r["results"].get("val_acc") for r in source_runs]
        accs = [a for a in accs if a is not None]
        return {"x_label": "layers transferred",
                "source": {"classes": self.options(spec.options).source_classes,
                           "val_acc": float(np.mean(accs)) if accs else None}}

    def figures(self, results):
        from regulab.report import MISSING, Plot, esc, fmt, plots  # matplotlib with a report only
        if not any(v.get("x") is not None and v.get("group") != "scratch"
                   for v in results.get("variants") or []):
            return []
        src = (results.get("analysis") or {}).get("source") or {}
        return [Plot("transfer", f"Test {plots.score_name(results)} against layers transferred "
                     f"from the source network (classes {esc(src.get('classes', MISSING))}, "
                     f"validation accuracy {fmt(src.get('val_acc'))}), one line per group; "
                     "dashed: trained from scratch (band ± std).",
                     lambda: plots.transfer_chart(results))]
