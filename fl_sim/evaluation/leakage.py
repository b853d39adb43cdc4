"""Attack captures and score the reconstructions: the one loop behind the eavesdropper,
``fl-sim attack`` and the offline experiments.

A round's captures go through the batched engine together when it can take them (else one
at a time, with one log line saying why). Failures are isolated per capture: an attack that
raises, or a reconstruction that cannot be scored, costs only that capture's rows, which are
recorded with status ``attack-failed`` / ``score-failed`` and empty metrics, and logged with
the capture's arm, round, client and attack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from attacks.types import Attack, Capture, Reconstruction
from fl_sim.evaluation.attack_work import RUNNERS, Execution, Unit
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.judge import Judge
from fl_sim.evaluation.scoring import failed_rows, score, unscored_rows
from fl_sim.ops.progress import Eta
from fl_sim.results.schema import ATTACK_FAILED, SCORE_FAILED
from models.public import PublicInfo

Log = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """A capture to attack, the arm it came from, and its ground truth if known (the
    truth goes to the scorer only, never to an attack)."""

    arm: str
    capture: Capture
    truth: GroundTruth | None = None

    def where(self, attack: str) -> str:
        """Log prefix naming the capture and attack, e.g. ``[ann r3 c1] idlg``."""
        return f"[{self.arm} r{self.capture.round} c{self.capture.client}] {attack}"


@dataclass(frozen=True)
class Outcome:
    """What one attack did to one target: its leakage rows (failures included), the
    reconstruction (None if the attack failed), the reconstructed images in ground-truth
    order for grids (NaN if attack or scoring failed; None without ground truth) and the
    error that cost the capture its metrics, if any."""

    target: Target
    attack: str
    rows: list[dict[str, object]]
    reconstruction: Reconstruction | None
    images: np.ndarray | None
    error: str | None = None


def attack_and_score(
    targets: Sequence[Target],
    attacks: Sequence[Attack],
    judge: Judge,
    *,
    batched: bool = True,
    log: Log = print,
    progress: bool = True,
    suffix: str = "",
    execution: Execution | None = None,
) -> list[Outcome]:
    """Every attack on every target, scored against the target's ground truth (or, without
    one, the attack's and the judge's word only); ordered by attack, then target.

    ``batched``: use the batched engine where it applies. ``log`` gets failures, fallbacks
    and, if ``progress``, one line per scored (capture, attack) and progress lines (work
    done, elapsed, ETA). ``suffix`` is appended to each attack's name in the rows (e.g.
    ``-as-gradient``). ``execution``: device and runner of the attacks (default: this
    process, the CPU).
    """
    outcomes = []
    eta = Eta(len(attacks) * len(targets))
    label = progress_label(targets)
    for attack in attacks:
        name = attack.name + suffix

        def tick(done: int, name: str = name) -> None:
            if progress:
                log(f"{label} attacks {eta.advance(done)} ({name})")

        results = reconstruct_all(attack, targets, batched, log, tick, execution)
        for target, rec in zip(targets, results, strict=True):
            outcomes.append(_score_one(name, target, rec, judge, log, progress))
    return outcomes


def progress_label(targets: Sequence[Target]) -> str:
    """``[ann r3]`` when the targets share arm and round, else ``[ann]`` or ``[captures]``."""
    arms = {t.arm for t in targets}
    rounds = {t.capture.round for t in targets}
    if len(arms) != 1:
        return "[captures]"
    arm = next(iter(arms))
    return f"[{arm} r{next(iter(rounds))}]" if len(rounds) == 1 else f"[{arm}]"


def reconstruct_all(
    attack: Attack,
    targets: Sequence[Target],
    batched: bool = True,
    log: Log = print,
    done: Callable[[int], None] | None = None,
    execution: Execution | None = None,
) -> list[Reconstruction | Exception]:
    """``attack.reconstruct`` of every target's capture, in order, an exception in place of a
    failed one. Captures sharing their public info go through the batched engine together
    when ``batched`` (same results to float rounding); if it cannot take them, one log line
    says why and they are attacked one at a time. ``execution``: the device and the runner
    (in process, the default, or Ray tasks; :mod:`fl_sim.evaluation.attack_work`).
    ``done(k)`` hears of every k captures finished (for progress)."""
    execution = execution or Execution()
    tell = done or (lambda k: None)
    groups: dict[PublicInfo, list[int]] = {}
    for i, target in enumerate(targets):
        groups.setdefault(target.capture.public, []).append(i)
    units, order = [], []
    for indices in groups.values():
        where = f"[{targets[indices[0]].arm}]"
        captures = tuple(targets[i].capture for i in indices)
        if batched and len(captures) > 1:
            units.append(Unit(attack, captures, True, where))
            order.append(indices)
        else:
            units += [Unit(attack, (c,), False, where) for c in captures]
            order += [[i] for i in indices]
    answers = RUNNERS[execution.runner](units, execution, log, lambda u: tell(len(u.captures)))
    results: list[Reconstruction | Exception | None] = [None] * len(targets)
    for indices, answer in zip(order, answers, strict=True):
        for i, rec in zip(indices, answer, strict=True):
            results[i] = rec
    return results  # type: ignore[return-value]


def _score_one(
    name: str,
    target: Target,
    rec: Reconstruction | Exception,
    judge: Judge,
    log: Log,
    progress: bool,
) -> Outcome:
    """Rows of one (target, attack); an attack or scoring failure becomes failure rows."""
    arm, capture, truth = target.arm, target.capture, target.truth
    blank = None if truth is None else np.full(tuple(truth.images.shape), np.nan)
    if isinstance(rec, Exception):
        error = f"{type(rec).__name__}: {rec}"
        log(f"{target.where(name)} failed: {error}")
        rows = failed_rows(arm, name, capture, ATTACK_FAILED, truth)
        return Outcome(target, name, rows, None, blank, error)
    try:
        if truth is None:
            rows, images = unscored_rows(arm, name, capture, rec, judge), None
        else:
            scored = score(arm, name, capture, rec, truth, judge)
            rows, images = scored.rows, scored.matched_images
    except Exception as err:  # e.g. a reconstruction of the wrong shape, a judge error
        error = f"{type(err).__name__}: {err}"
        log(f"{target.where(name)} scoring failed: {error}")
        rows = failed_rows(arm, name, capture, SCORE_FAILED, truth, rec)
        return Outcome(target, name, rows, rec, blank, error)
    if progress:
        log(progress_line(target.where(name), rows, rec))
    return Outcome(target, name, rows, rec, images)


def progress_line(where: str, rows: list[dict[str, object]], rec: Reconstruction) -> str:
    """One line on a scored (capture, attack): mean SSIM, judge and label hits; without
    ground truth, the recovered labels."""
    tail = f"grad loss {rec.grad_loss:.2e} ({rec.status}, {rec.seconds:.1f}s)"
    if rows and rows[0]["ssim"] is None:  # no ground truth
        return f"{where}: labels {rec.labels.tolist()}, {tail}"
    ssim = float(np.mean([float(x["ssim"]) for x in rows]))  # type: ignore[arg-type]
    judged = sum(bool(x["judge_correct"]) for x in rows)
    labels = sum(bool(x["label_correct"]) for x in rows)
    return (
        f"{where}: ssim {ssim:.3f}, judge {judged}/{len(rows)}, labels {labels}/{len(rows)}, {tail}"
    )
