"""The paper's protocol and what every reproduction builds on: cells, their results and the
context a reproduction runs in.

Each reproduction (``experiments.paper.REPRODUCTIONS``) lays out its cells (a dataset and the
settings of one table entry); every cell attacks the same seeded draw of training samples,
each on its own freshly initialised victim (the paper's Experiment 1). Trials run in worker
processes and each is committed to ``OUT/reproduce.sqlite`` when it finishes, so a stopped
reproduction continues with ``--resume``; the table is then written from the store with the
published values beside ours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.cells import Job, run_cells, slug
from experiments.trials import attack_trial
from fl_sim.federation.run_config import RunConfig
from fl_sim.ops.ray_tasks import RaySettings
from fl_sim.results.trial_store import TrialStore

# The paper's attacks and dummy handling, whatever the defaults of this testbed become: free
# dummies per time step, the client's own surrogate, the paper's inits and clamping, one
# start, no extra terms, no defences.
PAPER_PROTOCOL: tuple[str, ...] = (
    "attack_dummy=free",
    "attack_surrogate=auto",
    "attack_init=auto",
    "clamp=auto",
    "feature_weight=0",
    "restarts=1",
    "tolerance=0",
    "batch_size=1",
    "transforms=",
    "faults=",
    "secagg=none",
    "threads=1",
)
GRID_SAMPLES = 8  # samples per cell whose reconstructions are kept for its grid
Log = Callable[[str], None]
KIND_WORDS = {"image": "image", "events": "event"}


@dataclass(frozen=True)
class Cell:
    """One entry set of a table: a dataset and the settings its trials run with."""

    dataset: str
    settings: tuple[str, ...] = ()  # K=V on top of the protocol and the user's --set
    grid: bool = False  # keep the first samples' reconstructions for a grid

    @property
    def key(self) -> str:
        """Store key: the dataset and the settings (the same entry in table5 and fig5 is
        one cell, so their trials are shared in one out dir)."""
        return "/".join((self.dataset, *self.settings))

    @property
    def label(self) -> str:
        """Short name for files and titles: the key without the attack list."""
        return "/".join((self.dataset, *(s for s in self.settings if not s.startswith("attacks="))))


@dataclass
class CellResult:
    """What a cell's finished trials gave."""

    cell: Cell
    cfg: RunConfig
    rows: list[dict[str, object]]
    trials: int
    seconds: float
    chance: float
    judge: str
    grid: Path | None = None


@dataclass
class Context:
    """What a reproduction needs to run its cells: options, store, out dir, log."""

    name: str
    out: Path
    overrides: tuple[str, ...]  # the user's --set items
    datasets: tuple[str, ...]  # available ones, in the order asked
    unavailable: dict[str, str]  # dataset -> why it cannot be used
    samples: int
    workers: int
    store: TrialStore | None
    log: Log = print
    failed: list[str] = field(default_factory=list)

    def config(self, dataset: str, settings: Sequence[str] = ()) -> RunConfig:
        items = [*PAPER_PROTOCOL, *self.overrides, f"dataset={dataset}", *settings]
        return RunConfig.load(overrides=items)

    def deviations(self) -> str:
        """The user's settings on top of the paper's protocol, for the table's notes."""
        return ", ".join(self.overrides) if self.overrides else "none"

    def run_cells(self, cells: Sequence[Cell]) -> list[CellResult]:
        """Every missing trial of ``cells`` (seeded sample draw per dataset), committed as
        each finishes; then each cell's rows from the store."""
        from fl_sim.evaluation.judge import describe, ensure_judge
        from fl_sim.federation.task import dataset_split

        assert self.store is not None
        jobs: list[tuple[Cell, RunConfig, int, bool]] = []
        picks: dict[str, list[int]] = {}
        for cell in cells:
            cfg = self.config(cell.dataset, cell.settings)
            if cell.dataset not in picks:
                ensure_judge(cfg.data, cfg.judge, cfg.runtime.device, log=self.log)
                picks[cell.dataset] = sample_indices(
                    len(dataset_split(cfg.data, "train")), self.samples, cfg.federation.seed
                )
            done = self.store.finished(cell.key)
            for position, index in enumerate(picks[cell.dataset]):
                if index not in done:
                    jobs.append((cell, cfg, index, cell.grid and position < GRID_SAMPLES))
        total = sum(len(picks[c.dataset]) for c in cells)
        self.log(
            f"{self.name}: {len(cells)} cells x {self.samples} samples; {total - len(jobs)} "
            f"trials stored, {len(jobs)} to run with {self.workers} workers"
        )
        self._run_jobs(jobs)
        results = []
        for cell in cells:
            cfg = self.config(cell.dataset, cell.settings)
            indices = picks[cell.dataset]
            judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device, log=lambda _: None)
            rows = self.store.rows(cell.key, indices)
            result = CellResult(
                cell, cfg, rows, len(self.store.finished(cell.key) & set(indices)),
                self.store.seconds(cell.key), 1.0 / dataset_split(cfg.data, "test").num_classes,
                describe(judge),
            )  # fmt: skip
            if cell.grid:
                try:
                    result.grid = self._grid(cell, indices[:GRID_SAMPLES])
                except Exception as err:  # a picture must not cost the table
                    self.log(f"{self.name}: grid of {cell.label} not written: {err}")
            results.append(result)
        return results

    def _run_jobs(self, jobs: list[tuple[Cell, RunConfig, int, bool]]) -> None:
        assert self.store is not None
        if not jobs:
            return
        cells = [Job(cell.key, index, (cfg, index, keep)) for cell, cfg, index, keep in jobs]
        ray = RaySettings.of(jobs[0][1].runtime)
        failed = run_cells(
            self.store, attack_trial, cells, self.workers, ray, self.name, self.log, False
        )  # run_cells() said how many are stored
        self.failed += failed

    def _grid(self, cell: Cell, indices: Sequence[int]) -> Path | None:
        """Ground truth and every (arm, attack) of the cell's first samples, as one PNG."""
        from fl_sim.results.report import save_grid

        folder = self.out / "images" / slug(cell.key)
        found = [
            (i, np.load(folder / f"{i}.npz")) for i in indices if (folder / f"{i}.npz").is_file()
        ]
        if not found:
            return None
        names = [k for k in found[0][1].files if k != "truth"]
        found = [(i, f) for i, f in found if set(f.files) == {"truth", *names}]
        path = self.out / f"{self.name}-{slug(cell.label)}.png"
        save_grid(
            path,
            np.concatenate([f["truth"] for _, f in found]),
            {k.replace("__", "/"): np.concatenate([f[k] for _, f in found]) for k in names},
            [f"#{i}" for i, _ in found],
            f"{cell.label}: ground truth and reconstructions",
        )
        return path


def sample_indices(size: int, samples: int, seed: int) -> list[int]:
    """The seeded draw of training samples: a prefix of one permutation, so a reproduction
    resumed with more ``--samples`` keeps the samples it has."""
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if samples > size:
        raise ValueError(f"--samples {samples} is more than the {size} training samples")
    return [int(i) for i in np.random.default_rng(seed).permutation(size)[:samples]]


def available(cfg: RunConfig, split: str) -> str | None:
    """None when ``split`` of ``cfg.data.dataset`` loads here, else why not (the loader's own
    message)."""
    from fl_sim.federation.task import dataset_split

    try:
        dataset_split(cfg.data, split)
    except FileNotFoundError as err:
        return str(err)
    return None


def fmt_seconds(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
