"""The attack->score loop: per-capture failure isolation, batching fallback, unscored
captures, and attacks seeded by their own seed, never the run seed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from tests_helpers import ann_capture

from attacks import Capture, PublicInfo, Reconstruction
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.leakage import Target, attack_and_score
from fl_sim.federation.run_config import RunConfig
from fl_sim.results.schema import ATTACK_FAILED, LEAKAGE_COLUMNS, SCORE_FAILED

PUBLIC = PublicInfo(arch="lenet", input_shape=(1, 8, 8), num_classes=10, batch_size=2)
METRICS = ("label_pred", "label_correct", "judge_pred", "judge_correct", "mse", "psnr", "ssim")


class FixedJudge:
    """A judge stand-in: predicts class 3 for every image."""

    kind = "image"

    def predict(self, images: torch.Tensor) -> np.ndarray:
        return np.full(len(images), 3)


class Scripted:
    """An attack that returns the ground truth itself, except: it raises for clients in
    ``raises`` and returns a wrongly shaped reconstruction (unscoreable) for ``garbles``."""

    name = "scripted"

    def __init__(self, truths: dict[int, GroundTruth], raises=(), garbles=()) -> None:
        self.truths, self.raises, self.garbles = truths, set(raises), set(garbles)
        self.calls: list[int] = []

    def reconstruct(self, capture: Capture) -> Reconstruction:
        self.calls.append(capture.client)
        if capture.client in self.raises:
            raise RuntimeError("optimiser exploded")
        truth = self.truths[capture.client]
        images = truth.images[:, :, :4] if capture.client in self.garbles else truth.images
        return Reconstruction(images, truth.labels, 1e-3, "ok", 5, 0.25)


def targets(n: int = 3, truth: bool = True) -> tuple[list[Target], dict[int, GroundTruth]]:
    """``n`` captures of round 1 (clients 0..n-1), two samples each, with ground truth."""
    g = torch.Generator().manual_seed(0)
    truths = {
        c: GroundTruth(torch.rand(2, 1, 8, 8, generator=g), torch.tensor([c, 3])) for c in range(n)
    }
    out = [
        Target("ann", Capture(1, c, {}, {}, PUBLIC), truths[c] if truth else None) for c in range(n)
    ]
    return out, truths


def by_client(rows: list[dict[str, object]]) -> dict[int, list[dict[str, object]]]:
    out: dict[int, list[dict[str, object]]] = {}
    for row in rows:
        out.setdefault(int(row["client"]), []).append(row)  # type: ignore[call-overload]
    return out


def test_a_scoring_failure_costs_only_its_capture_and_is_recorded() -> None:
    tgts, truths = targets()
    logs: list[str] = []
    outcomes = attack_and_score(
        tgts, [Scripted(truths, garbles={1})], FixedJudge(), log=logs.append
    )
    rows = by_client([r for o in outcomes for r in o.rows])
    assert sorted(rows) == [0, 1, 2] and all(len(rs) == 2 for rs in rows.values())
    for c in (0, 2):  # scored as usual: the reconstruction is the truth
        assert all(r["status"] == "ok" and r["ssim"] == 1.0 and r["label_correct"] for r in rows[c])
    failed = rows[1]
    assert [r["status"] for r in failed] == [SCORE_FAILED] * 2
    assert [r["label_true"] for r in failed] == [1, 3] and failed[0]["grad_loss"] == 1e-3
    assert all(r[m] is None for r in failed for m in METRICS)
    assert all(list(r) == list(LEAKAGE_COLUMNS) for rs in rows.values() for r in rs)
    assert outcomes[1].error and outcomes[1].reconstruction is not None
    assert np.isnan(outcomes[1].images).all()  # type: ignore[arg-type]
    assert any(line.startswith("[ann r1 c1] scripted scoring failed: ValueError") for line in logs)
    assert sum("ssim 1.000, judge" in line for line in logs) == 2  # progress per scored capture


def test_an_attack_failure_costs_only_its_capture_and_is_recorded() -> None:
    tgts, truths = targets()
    logs: list[str] = []
    attack = Scripted(truths, raises={0})
    outcomes = attack_and_score(tgts, [attack], FixedJudge(), log=logs.append)
    rows = by_client([r for o in outcomes for r in o.rows])
    assert [r["status"] for r in rows[0]] == [ATTACK_FAILED] * 2
    assert all(r[m] is None for r in rows[0] for m in (*METRICS, "grad_loss", "seconds"))
    assert all(r["status"] == "ok" for c in (1, 2) for r in rows[c])
    assert outcomes[0].reconstruction is None and "optimiser exploded" in str(outcomes[0].error)
    assert "[ann r1 c0] scripted failed: RuntimeError: optimiser exploded" in logs
    # the batched engine cannot take this attack: one line says so, then one at a time
    assert sum("batched engine cannot batch" in line for line in logs) == 1
    assert attack.calls == [0, 1, 2]


def test_captures_without_ground_truth_get_unscored_and_failure_rows() -> None:
    tgts, truths = targets(2, truth=False)
    logs: list[str] = []
    outcomes = attack_and_score(
        tgts, [Scripted(truths, raises={1})], FixedJudge(), batched=False, log=logs.append
    )
    rows = by_client([r for o in outcomes for r in o.rows])
    assert [(r["label_pred"], r["judge_pred"], r["ssim"]) for r in rows[0]] == [
        (0, 3, None),
        (3, 3, None),
    ]
    assert [r["status"] for r in rows[1]] == [ATTACK_FAILED] * PUBLIC.samples
    assert all(o.images is None for o in outcomes)
    assert not any("batched engine" in line for line in logs)
    assert "[ann r1 c0] scripted: labels [0, 3], grad loss 1.00e-03 (ok, 0.2s)" in logs


def test_suffix_names_the_attack_in_rows() -> None:
    tgts, truths = targets(1)
    outcomes = attack_and_score(tgts, [Scripted(truths)], FixedJudge(), suffix="-as-gradient")
    assert {r["attack"] for o in outcomes for r in o.rows} == {"scripted-as-gradient"}
    assert not any(math.isnan(float(r["mse"])) for o in outcomes for r in o.rows)  # type: ignore[arg-type]


def seeds_in(obj: object) -> list[int]:
    """Every ``seed`` field of the dataclass configs an attack object holds."""
    return [
        value.seed
        for value in vars(obj).values()
        if dataclasses.is_dataclass(value) and hasattr(value, "seed")
    ]


def test_attacks_are_seeded_by_attack_seed_never_the_run_seed() -> None:
    cfg = RunConfig.of(seed=7, attack_seed=3, attacks=("dlg", "idlg", "grnn"))
    assert cfg.attack.attack_config().seed == 3
    for attack in cfg.attack.build_attacks():
        seeds = seeds_in(attack)
        assert seeds and set(seeds) == {3}, (attack.name, seeds)
    # the run seed plays no part in a reconstruction: same attack seed, same result
    capture = ann_capture()
    recs = [
        RunConfig.of(seed=s, attack_seed=3, attacks=("dlg",), iterations=2)
        .attack.build_attacks()[0]
        .reconstruct(capture)
        for s in (0, 7)
    ]
    assert torch.equal(recs[0].images, recs[1].images)
