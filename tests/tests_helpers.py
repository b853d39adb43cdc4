"""Small builders shared by tests."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from attacks import Capture, PublicInfo
from fl_sim.data.registry import load_dataset
from fl_sim.federation.training import loss_gradient
from fl_sim.results.report import LEAKAGE_COLUMNS
from fl_sim.results.store import DB_NAME
from models import build_model

if TYPE_CHECKING:
    from flwr.serverapp import Grid

    from fl_sim.federation.run_config import RunConfig


def ann_capture(index: int = 0) -> Capture:
    """FedSGD capture of one real mnist5k digit on a fresh DLG LeNet (round 3, client 1)."""
    public = PublicInfo(arch="lenet", input_shape=(1, 28, 28), num_classes=10, batch_size=1)
    data = load_dataset("mnist5k", "train")
    torch.manual_seed(index)
    model = build_model(public.arch, public.input_shape, public.num_classes)
    image = data.inputs[index : index + 1].to(torch.get_default_dtype())  # float64 tests
    update = loss_gradient(model, image, data.labels[index : index + 1])
    return Capture(3, 1, update, model.state_dict(), public)


def captures_and_truth(
    audit: object, public: PublicInfo, server_round: int, sent: object, replies: list
) -> Iterator[tuple[Capture, object, dict[str, torch.Tensor]]]:
    """Per reply a tap got: the eavesdropper's capture, its meta, and the gradient the
    client's private batch (replayed by the evaluator's audit) has at the sent model."""
    from fl_sim.federation.eavesdropper import capture_from_reply
    from models.public import model_for

    state = sent.to_torch_state_dict()  # type: ignore[attr-defined]
    for msg in replies:
        capture, meta = capture_from_reply(msg, server_round, state, public)
        truth = audit.ground_truth(server_round, meta.partition_id, meta.num_partitions)  # type: ignore[attr-defined]
        model = model_for(public)
        model.load_state_dict(state)
        yield capture, meta, loss_gradient(model, truth.images, truth.labels)


def committed_rounds(out: Path) -> int:
    """Rounds committed so far in ``out``'s results store, read-only (never creates it)."""
    db = out / DB_NAME
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM rounds").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def same_rows(a: list[dict[str, object]], b: list[dict[str, object]]) -> bool:
    """Row lists equal, NaN equal to NaN."""

    def norm(r: dict[str, object]) -> tuple[object, ...]:
        return tuple(
            "nan" if isinstance(v, float) and math.isnan(v) else v
            for v in (r[c] for c in LEAKAGE_COLUMNS)
        )

    return [norm(r) for r in a] == [norm(r) for r in b]


@contextlib.contextmanager
def tmpfs(mnt: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``mnt`` (created) with ``options`` (e.g. ``ro,size=1m``) for the
    block; the test skips where mounting is not allowed (not root, no mount namespace)."""
    mnt.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def tapped_fedsgd(
    cfg: RunConfig,
    tap: Callable[..., None],
    arm: str,
    rounds: int,
    wrap: Callable[[Grid], Grid] = lambda grid: grid,
) -> None:
    """``rounds`` FedSGD rounds of ``arm`` on an in-process grid of every client of ``cfg``
    (each sampled every round), ``tap`` seeing each round's replies; ``wrap`` the grid (e.g.
    in SecAgg+)."""
    from flwr.app import ArrayRecord, ConfigRecord
    from inproc_grid import InProcessGrid

    from fl_sim.federation.client_app import app as client_app
    from fl_sim.federation.strategy import EavesdroppingFedSGD
    from fl_sim.federation.warm_start import initial_model

    n = cfg.federation.clients
    strategy = EavesdroppingFedSGD(
        lr=cfg.federation.lr, tap=tap, fraction_evaluate=0.0, min_train_nodes=n,
        min_available_nodes=n,
    )  # fmt: skip
    strategy.start(
        grid=wrap(InProcessGrid(client_app, n, cfg.to_flower())),
        initial_arrays=ArrayRecord(initial_model(cfg.federation, cfg.data, arm).state_dict()),
        num_rounds=rounds,
        train_config=ConfigRecord({"arm": arm}),
    )
