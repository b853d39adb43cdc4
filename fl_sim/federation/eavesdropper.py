"""The passive eavesdropper on the server: capture each reply, attack it, score, record."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from flwr.app import ArrayRecord, Message

from attacks import Capture, PublicInfo
from attacks.capture_io import save_capture
from attacks.types import Attack
from fl_sim.evaluation.attack_work import Execution
from fl_sim.evaluation.audit import ReplayAudit, save_truth, truth_path
from fl_sim.evaluation.judge import Judge
from fl_sim.evaluation.leakage import Target, attack_and_score
from fl_sim.results.report import append_rows, save_grid

LEAKAGE_CSV = "leakage.csv"


class LeakageSink(Protocol):
    """Where the eavesdropper hands a round's results (``fl_sim.results.store.ResultsStore``)."""

    def add_reconstructions(
        self, rows: Sequence[Mapping[str, object]], grid: Path | None = None
    ) -> None: ...

    def add_capture(
        self, arm: str, server_round: int, client: int, attacked: bool, path: Path | None = None
    ) -> None: ...


class CsvSink:
    """A sink that appends rows to a leakage CSV (standalone use, without a results store)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add_reconstructions(
        self, rows: Sequence[Mapping[str, object]], grid: Path | None = None
    ) -> None:
        append_rows(self.path, rows)

    def add_capture(
        self, arm: str, server_round: int, client: int, attacked: bool, path: Path | None = None
    ) -> None:
        pass


@dataclass(frozen=True)
class ReplyMeta:
    """Ids a client reports with its update (needed by the auditor, not by attacks)."""

    partition_id: int
    num_partitions: int


def capture_from_reply(
    msg: Message, server_round: int, global_state: dict, public: PublicInfo
) -> tuple[Capture, ReplyMeta]:
    """What the eavesdropper sees in one reply; raises ValueError on a malformed reply."""
    try:
        content = msg.content
        meta = content["meta"]
        arrays = content["arrays"]
        reply = ReplyMeta(int(meta["partition-id"]), int(meta["num-partitions"]))
        declared = (str(meta["arch"]), int(meta["batch-size"]), int(meta["T"]))
    except (KeyError, TypeError) as err:
        raise ValueError(f"reply lacks {err}") from err
    expected = (public.arch, public.batch_size, public.T)
    if declared != expected:
        raise ValueError(f"reply declares (arch, batch, T)={declared}, federation uses {expected}")
    update = arrays.to_torch_state_dict()
    capture = Capture(server_round, reply.partition_id, update, global_state, public)
    return capture, reply


class Eavesdropper:
    """A tap for :class:`fl_sim.federation.strategy.EavesdroppingFedAvg` (see ``Tap``).

    Attacks get only the :class:`Capture`; the auditor's ground truth goes to the scorer.
    A round's scored rows and captures go to ``sink`` when the round's attacks are done (by
    default appended to ``out_dir/leakage.csv``; the ServerApp passes its results store).
    """

    def __init__(
        self,
        arm: str,
        public: PublicInfo,
        attacks: Sequence[Attack],
        judge: Judge,
        audit: ReplayAudit,
        out_dir: Path,
        grids: bool = True,
        log: Callable[[str], None] = print,
        save_captures: bool = False,
        batched: bool = True,
        sink: LeakageSink | None = None,
        budget: int = 0,
        attack_seed: int = 0,
        schedule: Container[int] | None = None,
        execution: Execution | None = None,
    ) -> None:
        self.arm, self.public, self.attacks = arm, public, list(attacks)
        self.judge, self.audit, self.out_dir = judge, audit, out_dir
        self.grids, self.log, self.save_captures = grids, log, save_captures
        self.batched, self.budget, self.attack_seed = batched, budget, attack_seed
        self.sink: LeakageSink = sink or CsvSink(out_dir / LEAKAGE_CSV)
        self.schedule = schedule  # rounds to attack (None: all); the others are only captured
        self.execution = execution  # device and runner of the attacks (None: here, on the CPU)

    def __call__(self, server_round: int, sent: ArrayRecord, replies: list[Message]) -> None:
        start = time.perf_counter()
        global_state = sent.to_torch_state_dict()
        captures = []
        saved: dict[int, Path] = {}  # client -> saved capture file
        for msg in replies:
            if msg.has_error():
                self.log(f"[{self.arm} r{server_round}] skipped a failed reply: {msg.error.reason}")
                continue
            try:
                capture, meta = capture_from_reply(msg, server_round, global_state, self.public)
                truth = self.audit.ground_truth(
                    server_round, meta.partition_id, meta.num_partitions
                )
            except ValueError as err:
                self.log(f"[{self.arm} r{server_round}] skipped a malformed reply: {err}")
                continue
            captures.append((capture, truth))
            if self.save_captures:
                path = self.out_dir / "captures" / capture_name(self.arm, capture)
                save_capture(capture, path)
                save_truth(truth, truth_path(path))
                saved[capture.client] = path
        captures.sort(key=lambda ct: ct[0].client)
        captured = [c.client for c, _ in captures]
        if self.schedule is not None and server_round not in self.schedule:
            for client in captured:
                self.sink.add_capture(self.arm, server_round, client, False, saved.get(client))
            self.log(f"[{self.arm} r{server_round}] not an attack round: {len(captured)} captured")
            return
        if self.budget and len(captures) > self.budget:
            chosen = attack_selection(captured, self.budget, self.attack_seed, server_round)
            self.log(
                f"[{self.arm} r{server_round}] attack budget {self.budget}: attacking clients "
                f"{', '.join(map(str, chosen))} of {len(captures)} captured"
            )
            captures = [ct for ct in captures if ct[0].client in chosen]
        attacked = {c.client for c, _ in captures} if self.attacks else set()
        truths = [truth.images.numpy() for _, truth in captures]
        captions = [
            f"c{capture.client} s{i} y={int(y)}"
            for capture, truth in captures
            for i, y in enumerate(truth.labels)
        ]
        targets = [Target(self.arm, capture, truth) for capture, truth in captures]
        outcomes = attack_and_score(
            targets,
            self.attacks,
            self.judge,
            batched=self.batched,
            log=self.log,
            execution=self.execution,
        )
        rows = [row for outcome in outcomes for row in outcome.rows]
        recons: dict[str, list[np.ndarray]] = {}
        for outcome in outcomes:  # every target has its ground truth, hence images
            if outcome.images is not None:
                recons.setdefault(outcome.attack, []).append(outcome.images)
        grid: Path | None = None
        if self.grids and truths and self.attacks:
            grid = self.out_dir / "grids" / f"{self.arm}-round{server_round:03d}.png"
            try:
                save_grid(
                    grid,
                    np.concatenate(truths),
                    {name: np.concatenate(imgs) for name, imgs in recons.items()},
                    captions,
                    f"{self.arm.upper()} round {server_round}: ground truth vs reconstructions",
                )
            except Exception as err:  # a plotting failure must not cost the round's rows
                self.log(f"[{self.arm} r{server_round}] grid not written: {err}")
                grid = None
        for client in captured:
            self.sink.add_capture(
                self.arm, server_round, client, client in attacked, saved.get(client)
            )
        self.sink.add_reconstructions(rows, grid)
        self.log(
            f"[{self.arm} r{server_round}] eavesdropper done in {time.perf_counter() - start:.1f}s"
        )


def attack_selection(clients: list[int], budget: int, seed: int, server_round: int) -> list[int]:
    """The clients whose captures are attacked under a budget: a draw per round seeded by the
    attack seed (never the run seed) from the captured clients' partition ids, the same for
    every arm. Sorted."""
    rng = random.Random(seed * 1_000_003 + server_round)
    return sorted(rng.sample(sorted(clients), min(budget, len(clients))))


def capture_name(arm: str, capture: Capture) -> str:
    return f"{arm}-r{capture.round:03d}-c{capture.client:03d}.pt"
