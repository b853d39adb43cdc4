"""Batches (issue 29): labels and per-sample classifier inputs from a batch's classifier gradient,
every attack on batches and FedAvg local steps, permutation-invariant scoring.

Exact identities in float64 on real mnist5k digits and untrained victims, on cases where the
decomposition is determined (distinct labels, B <= 3; a repeated digit); statuses and bounds
elsewhere. No float trajectory of an optimisation is asserted.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from attacks import AttackConfig, Capture, PublicInfo, build_attack
from attacks.batched import reconstruct_batch
from attacks.components.batch_leak import (
    EXACT,
    _Fit,
    _sign_candidates,
    _subspace_fit,
    decompose,
    round_counts,
)
from attacks.components.features import batch_leak, classifier_input, recovered_features
from attacks.local_update import observed_update
from attacks.types import Reconstruction
from attacks.victim import last_linear, victim_from_capture
from fl_sim.data.registry import load_dataset
from fl_sim.evaluation.audit import GroundTruth
from fl_sim.evaluation.scoring import score
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.training import local_sgd, loss_gradient
from models import build_model

ARCHS = ("lenet", "snn-lenet")


def batch_capture(
    arch: str, indices: list[int], seed: int, **public: object
) -> tuple[Capture, torch.Tensor, torch.Tensor]:
    """FedSGD capture of the mnist5k digits ``indices`` on a fresh victim (seed ``seed``),
    in the default dtype; (capture, images, labels)."""
    data = load_dataset("mnist5k", "train")
    x = data.inputs[indices].to(torch.get_default_dtype())
    y = data.labels[indices]
    pub = PublicInfo(arch, (1, 28, 28), 10, len(indices), T=4, **public)  # type: ignore[arg-type]
    torch.manual_seed(seed)
    model = build_model(arch, (1, 28, 28), 10, T=4)
    update = loss_gradient(model, feed(arch, x), y)
    return Capture(0, seed, update, model.state_dict(), pub), x, y


def feed(arch: str, x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0).expand(4, *x.shape) if arch.startswith("snn") else x


def distinct_digits(count: int, start: int = 0) -> list[int]:
    """The first training digits from ``start`` with ``count`` different labels."""
    labels = load_dataset("mnist5k", "train").labels.tolist()
    chosen: dict[int, int] = {}
    for i in range(start, len(labels)):
        chosen.setdefault(labels[i], i)
        if len(chosen) == count:
            return sorted(chosen.values())
    raise AssertionError("not enough labels")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [2, 3])
def test_distinct_labels_decompose_exactly(float64: None, arch: str, size: int) -> None:
    """Distinct labels on an untrained victim: labels and per-sample inputs exact."""
    capture, x, y = batch_capture(arch, distinct_digits(size), seed=1)
    model = victim_from_capture(capture)
    leak = batch_leak(model, capture.update, capture.public)
    assert leak.exact, leak.residual
    order = torch.argsort(y)
    assert leak.labels.tolist() == y[order].tolist()
    with torch.no_grad():
        truth = classifier_input(model, feed(arch, x))[order]
    torch.testing.assert_close(leak.features, truth, rtol=1e-8, atol=1e-10)
    # the attacks read the same split: recovered_features and the iDLG label task
    torch.testing.assert_close(recovered_features(model, capture.update, capture.public), truth)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_repeated_digit_gives_its_count_and_input(float64: None, arch: str) -> None:
    """Two copies of one digit and another digit: counts 2 and 1, each group's input exact
    (samples sharing a label and an input are one group)."""
    first, other = distinct_digits(2, start=5)
    capture, x, y = batch_capture(arch, [first, first, other], seed=2)
    model = victim_from_capture(capture)
    leak = batch_leak(model, capture.update, capture.public)
    assert leak.exact, leak.residual
    assert Counter(leak.labels.tolist()) == Counter(y.tolist())
    with torch.no_grad():
        truth = classifier_input(model, feed(arch, x))
    for label, row in zip(leak.labels.tolist(), leak.features, strict=True):
        expected = truth[y.tolist().index(label)]
        torch.testing.assert_close(row, expected, rtol=1e-8, atol=1e-10)


def test_a_batch_gradient_is_the_mean_of_its_single_gradients(float64: None) -> None:
    indices = distinct_digits(4)
    capture, x, y = batch_capture("snn-lenet", indices, seed=3)
    model = victim_from_capture(capture)
    singles = [
        loss_gradient(model, feed("snn-lenet", x[i : i + 1]), y[i : i + 1]) for i in range(4)
    ]
    for name, grad in capture.update.items():
        mean = torch.stack([s[name] for s in singles]).mean(0)
        torch.testing.assert_close(grad, mean, rtol=1e-12, atol=1e-15)


def test_the_decomposition_holds_its_invariants_on_any_batch(float64: None) -> None:
    """A random batch of 12 (labels repeat, more samples than the rank): N labels, inputs
    >= 0 of the classifier's width, a finite residual, and deterministic."""
    capture, _, y = batch_capture("snn-lenet", list(range(40, 52)), seed=4)
    model = victim_from_capture(capture)
    _, fc = last_linear(model)
    dw, db = capture.update["fc.weight"], capture.update["fc.bias"]
    leak = decompose(dw, db, fc.weight, fc.bias, 12)
    again = decompose(dw, db, fc.weight, fc.bias, 12)
    assert leak.labels.shape == (12,) and leak.features.shape == (12, fc.in_features)
    assert bool((leak.features >= 0).all()) and 0 <= leak.residual < 1
    assert torch.equal(leak.labels, again.labels) and torch.equal(leak.features, again.features)
    assert leak.labels.tolist() == sorted(leak.labels.tolist())


@pytest.mark.parametrize(
    ("expected", "total"),
    [([0.2, 1.7, 1.1], 3), ([5.0, -1.0, 0.0], 4), ([0.0, 0.0], 3), ([0.5] * 10, 7)],
)
def test_rounded_counts_are_nonnegative_and_sum_to_the_batch(
    expected: list[float], total: int
) -> None:
    counts = round_counts(torch.tensor(expected, dtype=torch.float64), total)
    assert int(counts.sum()) == total and bool((counts >= 0).all())


def test_the_sign_rule_candidates_hold_every_negative_class() -> None:
    h = torch.tensor([0.1, -0.2, 0.0, -0.1, 0.3], dtype=torch.float64)
    assert [c.tolist() for c in _sign_candidates(h, 2)] == [[0, 1, 0, 1, 0]]
    three = _sign_candidates(h, 3)
    assert len(three) == 5 and all(int(c.sum()) == 3 and c[1] >= 1 and c[3] >= 1 for c in three)
    assert _sign_candidates(h, 5) == []  # more than one sample unaccounted for


def test_the_row_space_fit_recovers_a_confident_classifier_exactly(float64: None) -> None:
    """A steep softmax (logits of scale ~10, as on a trained victim), four samples of three
    labels: from inputs 20% off, the fit in dW's row space returns the true inputs."""
    gen = torch.Generator().manual_seed(3)
    W = 3 * torch.randn(10, 16, generator=gen, dtype=torch.float64)
    b = torch.randn(10, generator=gen, dtype=torch.float64)
    R = torch.rand(4, 16, generator=gen, dtype=torch.float64)
    labels = torch.tensor([2, 5, 5, 7])
    D = (torch.softmax(R @ W.T + b, dim=-1) - torch.eye(10, dtype=torch.float64)[labels]) / 4
    fit = _Fit(D.T @ R, D.sum(0), W, b, torch.bincount(labels, minlength=10), per_sample=True)
    start = R * (1 + 0.2 * torch.randn(R.shape, generator=gen, dtype=torch.float64))
    found = _subspace_fit(fit, start, gen)
    assert float(fit.residual(found)) <= EXACT
    assert torch.allclose(found, R, atol=1e-6)


def test_fedavg_steps_are_read_as_steps_gradients_at_the_global_weights(float64: None) -> None:
    """FedAvg, E = 3 small local steps on one batch: the decomposition of (w0 - w3) / lr
    divided by E gives the labels and inputs within 1% (an approximation, exact at E = 1)."""
    indices = distinct_digits(3, start=20)
    capture, x, y = batch_capture("lenet", indices, seed=5)
    model = victim_from_capture(capture)
    after = local_sgd(model, x, y, batch_size=3, local_steps=1, local_epochs=3, lr=1e-3)
    public = dataclasses.replace(capture.public, update="weights", local_lr=1e-3, local_epochs=3)
    fedavg = Capture(0, 5, after, capture.global_state, public)
    leak = batch_leak(victim_from_capture(fedavg), observed_update(fedavg), public)
    order = torch.argsort(y)
    assert leak.labels.tolist() == y[order].tolist()
    with torch.no_grad():
        truth = classifier_input(victim_from_capture(capture), x)[order]
    assert float((leak.features - truth).norm() / truth.norm()) < 1e-2


class LabelJudge:
    """A judge that answers each image's mean brightness bucket: depends on the image only."""

    def predict(self, images: torch.Tensor) -> np.ndarray:
        return (images.flatten(1).mean(1) * 30).long().clamp(0, 9).numpy()


def test_scoring_does_not_depend_on_the_order_of_the_reconstructions() -> None:
    capture, x, y = batch_capture("lenet", distinct_digits(4), seed=6)
    gen = torch.Generator().manual_seed(0)
    images = (x + 0.1 * torch.rand(x.shape, generator=gen, dtype=x.dtype)).clamp(0, 1)
    rec = Reconstruction(images, y.clone(), 0.0, "ok", 1, 0.0)
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = dataclasses.replace(rec, images=images[perm], labels=y[perm])
    truth = GroundTruth(x, y)
    a = score("ann", "x", capture, rec, truth, LabelJudge())  # type: ignore[arg-type]
    b = score("ann", "x", capture, shuffled, truth, LabelJudge())  # type: ignore[arg-type]
    assert a.rows == b.rows
    np.testing.assert_array_equal(a.matched_images, b.matched_images)
    assert all(row["label_correct"] for row in a.rows)  # each matched to its own digit


@pytest.mark.parametrize("name", ["idlg", "ig", "rates"])
def test_every_attack_takes_a_batch_and_fedavg_steps(name: str) -> None:
    """A FedSGD batch of 3 and a FedAvg update of 2 steps on 3 samples: B labels and images
    through the loop and the batched engine, statuses of a run that worked."""
    capture, x, y = batch_capture("snn-lenet", distinct_digits(3, start=30), seed=7)
    model = victim_from_capture(capture)
    after = local_sgd(model, feed("snn-lenet", x), y, 3, 1, 2, lr=0.01)
    public = dataclasses.replace(capture.public, update="weights", local_lr=0.01, local_epochs=2)
    fedavg = Capture(0, 8, after, capture.global_state, public)
    attack = build_attack(name, AttackConfig(iterations=2))
    for target in (capture, fedavg):
        rec = attack.reconstruct(target)
        assert rec.images.shape == x.shape and rec.labels.shape == y.shape
        assert rec.status in ("ok", "converged") and rec.iterations <= 2
        assert Counter(rec.labels.tolist()) == Counter(y.tolist())
    both = reconstruct_batch(attack, [capture, capture])  # type: ignore[arg-type]
    assert [r.images.shape for r in both] == [x.shape, x.shape]


def test_run_config_takes_batches_for_the_default_attacks() -> None:
    cfg = RunConfig.of(batch_size=8, protocol="fedavg", local_epochs=5)
    assert cfg.attack.attacks == ("dlg", "idlg", "rates")
    assert (cfg.federation.samples_per_round, cfg.federation.local_epochs) == (8, 5)


def test_decomposition_needs_samples_and_steps() -> None:
    dw, db = torch.zeros(10, 4), torch.zeros(10)
    with pytest.raises(ValueError, match="need samples >= 1 and steps >= 1, got 0 and 1"):
        decompose(dw, db, torch.zeros(10, 4), torch.zeros(10), 0)
    assert EXACT < 1e-9


def test_the_batched_engine_takes_the_rate_leak_of_fedavg_updates(float64: None) -> None:
    """rates reads FedAvg updates without simulating them: batched == looped at one step."""
    capture, x, y = batch_capture("snn-lenet", distinct_digits(3, start=40), seed=9)
    model = victim_from_capture(capture)
    after = local_sgd(model, feed("snn-lenet", x), y, 3, 1, 2, lr=0.01)
    public = dataclasses.replace(capture.public, update="weights", local_lr=0.01, local_epochs=2)
    captures = [Capture(0, k, after, capture.global_state, public) for k in (1, 2)]
    attack = build_attack("rates", AttackConfig(iterations=1))
    batched = reconstruct_batch(attack, captures)  # type: ignore[arg-type]
    for one, rec in zip(captures, batched, strict=True):
        torch.testing.assert_close(rec.images, attack.reconstruct(one).images, rtol=1e-9, atol=1e-9)


def test_the_rate_loss_of_a_batch_is_the_mean_of_its_images_losses(float64: None) -> None:
    """Each dummy weighs its rate error against TV (a mean over images) as at batch 1: the
    batch's feature objective is the mean of the per-image ones, not their sum."""
    from attacks.components.objectives import OBJECTIVES

    gen = torch.Generator().manual_seed(0)
    d, t = torch.rand(5, 7, generator=gen), torch.rand(5, 7, generator=gen)
    loss = OBJECTIVES["features"]
    singles = torch.stack([loss([d[i : i + 1]], [t[i : i + 1]]) for i in range(5)])
    torch.testing.assert_close(loss([d], [t]), singles.mean(), rtol=1e-15, atol=0.0)
    assert float(loss([d[:1]], [t[:1]])) == float(((d[0] - t[0]) ** 2).sum())


def test_the_run_summary_names_what_each_update_holds(tmp_path: Path) -> None:
    from fl_sim.federation.server_app import update_setting
    from fl_sim.results.report import write_report

    fedsgd = update_setting(RunConfig.of(batch_size=4).federation)
    assert fedsgd.startswith("updates: batch_size=4, 4 private sample(s) per update (FedSGD")
    fedavg = RunConfig.of(batch_size=8, protocol="fedavg", local_steps=2, local_epochs=5)
    assert "16 private sample(s) per update (FedAvg weights after 2 x 5 local steps)" in (
        update_setting(fedavg.federation)
    )
    text = write_report(tmp_path, [], setting=fedsgd)
    assert (tmp_path / "summary.txt").read_text().splitlines()[0] == fedsgd == text.splitlines()[0]
