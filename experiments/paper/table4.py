"""Table IV: DLG, iDLG and GRNN on LeNet and its spiking twin, per image dataset (the paper's
Experiment 1: each sample attacked on its own freshly initialised victim, batch 1)."""

from __future__ import annotations

from typing import ClassVar

from experiments.paper.protocol import Context
from experiments.paper.published import pairing_note, published
from experiments.paper.summary import ReproTable, asr, mean_of, versus

ATTACKS = ("dlg", "idlg", "grnn")
MODELS = {"ann": "LeNet", "snn": "SNN-LeNet"}
# (metric, column title, format); asr in percent
METRICS = (
    ("asr", "ASR %", ".1f"),
    ("mse", "MSE", ".3f"),
    ("ssim", "SSIM", ".2f"),
    ("psnr", "PSNR dB", ".2f"),
)


class Table4:
    name: ClassVar[str] = "table4"
    title: ClassVar[str] = "Table IV: gradient inversion on LeNet and SNN-LeNet (Experiment 1)"
    datasets: ClassVar[tuple[str, ...]] = ("mnist5k", "cifar100", "lfw")
    kinds: ClassVar[tuple[str, ...]] = ("image",)
    trials: ClassVar[bool] = True
    split: ClassVar[str] = "train"  # the split its samples are drawn from

    def run(self, ctx: Context) -> ReproTable:
        from experiments.paper.protocol import Cell, fmt_seconds

        cells = [Cell(d, (f"attacks={','.join(ATTACKS)}",), grid=True) for d in ctx.datasets]
        results = ctx.run_cells(cells)
        columns = ["attack", "dataset", "model", "n"]
        for _, title, _ in METRICS:
            columns += [f"{title} ours [95% CI]", f"{title} paper"]
        table = ReproTable(self.name, self.title, [*columns, "paper outside our CI"])
        for attack in ATTACKS:
            for result in results:
                for arm, model in MODELS.items():
                    rows = [r for r in result.rows if r["attack"] == attack and r["arm"] == arm]
                    cells, outside = [attack, result.cell.dataset, model, str(len(rows))], []
                    for metric, title, spec in METRICS:
                        ours = asr(rows) if metric == "asr" else mean_of(rows, metric)
                        paper = published("IV", result.cell.dataset, metric, arm, attack)
                        mine, theirs, flag = versus(ours, paper, spec)
                        cells += [mine, theirs]
                        if flag:
                            outside.append(title)
                    table.add([*cells, ", ".join(outside)], bool(outside))
        cfg = results[0].cfg
        table.notes += [
            f"Protocol: each sample attacked on its own freshly initialised victim (U(-0.5, 0.5) "
            f"weights, seed per sample), batch 1, {cfg.attack.iterations} L-BFGS steps (DLG/iDLG), "
            f"{cfg.attack.grnn_iterations} GRNN iterations, victim family "
            f"{cfg.federation.victim}, SNN "
            f"{cfg.federation.neuron.upper()} neurons with T = {cfg.federation.T}, the paper's "
            "free "
            "dummies per time step. The paper attacked 1,000 samples per row.",
            "Intervals: Wilson for ASR, Student t for the means; PSNR is the mean over finite "
            "values (an exact reconstruction has infinite PSNR).",
            f"Settings beyond the paper's protocol (--set): {ctx.deviations()}.",
        ]
        for result in results:
            rows = result.rows
            infinite = sum(1 for r in rows if r["psnr"] == float("inf"))
            table.notes.append(
                f"{pairing_note(result.cell.dataset)}; n = {result.trials} samples; judge "
                f"{result.judge}; chance {result.chance:.1%}; {infinite} infinite PSNRs left "
                f"out; worker time {fmt_seconds(result.seconds)}."
            )
            if result.grid is not None:
                table.figures.append(result.grid.name)
        for dataset, why in ctx.unavailable.items():
            table.notes.append(f"{dataset}: not available here, so not reproduced ({why}).")
        return table
