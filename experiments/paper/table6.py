"""Table VI: intra- and inter-class l2 distances of a dataset split, averaged over classes
(the reference the leakage l2 is read against)."""

from __future__ import annotations

from typing import ClassVar

from experiments.paper.protocol import Context, fmt_seconds
from experiments.paper.published import STAND_INS, pairing_note, published
from experiments.paper.summary import Estimate, ReproTable, versus
from fl_sim.results.stats import t_interval

SPLIT = "test"
STATS = ("mean", "std", "min", "max")


class Table6:
    name: ClassVar[str] = "table6"
    title: ClassVar[str] = "Table VI: reference l2 distances, averaged over classes"
    datasets: ClassVar[tuple[str, ...]] = ("dvsgesture", "nmnist-emulated")
    kinds: ClassVar[tuple[str, ...]] = ("image", "events")
    trials: ClassVar[bool] = False  # no attacks: computed whole in seconds
    split: ClassVar[str] = SPLIT  # the split measured

    def run(self, ctx: Context) -> ReproTable:
        from fl_sim.data.reference_l2 import reference_l2_for_config

        columns = ["dataset", "type", "classes", "pairs"]
        for stat in STATS:
            columns += [f"{stat} ours [95% CI]", f"{stat} paper"]
        table = ReproTable(self.name, self.title, [*columns, "paper outside our CI"])
        for dataset in ctx.datasets:
            ctx.log(f"{self.name}: l2 distances of {dataset} ({SPLIT} split)")
            cfg = ctx.config(dataset)
            result = reference_l2_for_config(cfg.data, cfg.federation.seed, SPLIT)
            for kind in ("intra", "inter"):
                per_class = [getattr(k, kind) for k in result.classes if getattr(k, kind)]
                pooled = getattr(result, f"{kind}_pooled")
                cells = [dataset, kind, str(len(per_class)), str(pooled.pairs if pooled else 0)]
                outside = []
                for stat in STATS:
                    mean, lo, hi = t_interval([getattr(s, stat) for s in per_class])
                    paper = published("VI", dataset, stat, setting=kind)
                    mine, theirs, flag = versus(
                        Estimate(mean, lo, hi, len(per_class)), paper, ".2f"
                    )
                    cells += [mine, theirs]
                    if flag and dataset not in STAND_INS:
                        outside.append(stat)
                table.add([*cells, ", ".join(outside)], bool(outside))
            table.notes.append(
                f"{pairing_note(dataset)}; {result.samples} samples of the {SPLIT} split, "
                f"shape {list(result.sample_shape)}; distances in {fmt_seconds(result.seconds)}."
            )
            if dataset in STAND_INS:
                table.notes.append(
                    f"{dataset}: other recordings than DVS128 Gesture's (size, classes), so its "
                    "distances are shown beside the paper's but never flagged."
                )
        table.notes += [
            "Each statistic is the unweighted mean over classes of the per-class statistic "
            "(the paper's 'averaged over all classes'); its 95% interval is Student t over the "
            "classes (n = classes). Inter-class pairs of a class: one sample in it, one not.",
            "The paper does not say which split; this uses the test split.",
        ]
        for dataset, why in ctx.unavailable.items():
            table.notes.append(f"{dataset}: not available here, so not reproduced ({why}).")
        return table
