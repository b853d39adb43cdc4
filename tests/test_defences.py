"""Client-side defences (update transforms): each does what it claims, bad values are refused."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tests_helpers import ann_capture

from attacks import AttackConfig, PublicInfo
from attacks.batched import reconstruct_batch
from attacks.defences import adapt, known_defences
from attacks.registry import build_attack
from fl_sim.cli import main
from fl_sim.data.registry import load_dataset
from fl_sim.federation.privacy import epsilon, privacy_record
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.transforms import TransformContext, build_step
from fl_sim.federation.transforms.defences import GaussianDp, Quantise, TopKPrune


def ctx(partition: int = 0, server_round: int = 1, seed: int = 0) -> TransformContext:
    return TransformContext(partition, 4, server_round, seed)


def update(scale: float = 1.0, n: int = 1000) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {
        "fc.weight": scale * torch.randn(n // 10, 10, generator=gen),
        "fc.bias": scale * torch.randn(10, generator=gen),
    }


def test_dp_clips_to_the_norm_bound_and_leaves_small_updates_alone() -> None:
    big, small = update(10.0), update(1e-3)
    clipped = GaussianDp(clip=2.0, noise=0.0)(big, ctx())
    assert GaussianDp.norm(big) > 2.0
    assert GaussianDp.norm(clipped) == pytest.approx(2.0, rel=1e-6)
    ratio = clipped["fc.bias"] / big["fc.bias"]  # one scale factor for the whole update
    assert torch.allclose(ratio, torch.full_like(ratio, 2.0 / GaussianDp.norm(big)))
    unchanged = GaussianDp(clip=2.0, noise=0.0)(small, ctx())
    assert all(torch.equal(unchanged[k], small[k]) for k in small)
    assert all(v.dtype == torch.float32 for v in clipped.values())


def test_dp_noise_has_the_configured_scale_and_is_seeded_per_client_and_round() -> None:
    zero = {"w": torch.zeros(200_000)}
    dp = GaussianDp(clip=0.5, noise=1.5)
    noisy = dp(zero, ctx())["w"]
    assert abs(float(noisy.mean())) < 0.01
    assert float(noisy.std()) == pytest.approx(0.75, rel=0.02)  # noise * clip
    assert torch.equal(dp(zero, ctx())["w"], noisy)  # reproducible
    assert not torch.equal(dp(zero, ctx(partition=1))["w"], noisy)
    assert not torch.equal(dp(zero, ctx(server_round=2))["w"], noisy)
    assert not torch.equal(dp(zero, ctx(seed=1))["w"], noisy)


@pytest.mark.parametrize("keep", [0.01, 0.1, 0.33, 1.0])
def test_prune_keeps_exactly_the_largest_entries_of_each_tensor(keep: float) -> None:
    upd = update()
    pruned = TopKPrune(keep=keep)(upd, ctx())
    for name, value in upd.items():
        kept = pruned[name] != 0
        k = math.ceil(keep * value.numel())
        assert int(kept.sum()) == k
        assert torch.equal(pruned[name][kept], value[kept])  # kept entries unchanged
        if k < value.numel():
            assert value[kept].abs().min() >= value[~kept].abs().max()


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_quantisation_uses_at_most_2_to_the_bits_levels(bits: int) -> None:
    upd = update()
    quant = Quantise(bits=bits)(upd, ctx())
    for name, value in upd.items():
        levels = torch.unique(quant[name])
        assert len(levels) <= 2**bits
        step = 2 * value.abs().max() / (2**bits - 1)
        assert float((quant[name] - value).abs().max()) <= float(step) / 2 + 1e-6
        assert float(quant[name].abs().max()) == pytest.approx(float(value.abs().max()), 1e-6)


def test_one_bit_quantisation_is_sign_times_mean_magnitude() -> None:
    upd = update()
    quant = Quantise(bits=1)(upd, ctx())
    for name, value in upd.items():
        scale = value.abs().mean()
        assert set(torch.unique(quant[name]).tolist()) <= {float(scale), float(-scale)}
        assert torch.equal(quant[name] > 0, value >= 0)


def test_defences_are_public_and_read_from_specs() -> None:
    step = build_step("dp:clip=0.5:noise=2")
    assert step.public and step.transform == GaussianDp(clip=0.5, noise=2.0)
    assert str(step.spec) == "dp:clip=0.5:noise=2.0:delta=1e-05"
    assert str(build_step("prune").spec) == "prune:keep=0.1"
    assert str(build_step("quant:bits=1@2").spec) == "quant:bits=1@2"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dp:clip=-1", r"clip=-1.0 is out of range; allowed: \(0.0, inf\)"),
        ("dp:noise=-0.5", r"noise=-0.5 is out of range; allowed: \[0.0, inf\)"),
        ("dp:clip=nan", "clip=nan is out of range"),
        ("prune:keep=0", r"keep=0.0 is out of range; allowed: \(0.0, 1.0\]"),
        ("prune:keep=1.5", "keep=1.5 is out of range"),
        ("quant:bits=0", r"bits=0 is out of range; allowed: 1..16"),
        ("quant:levels=4", "unknown parameter"),
    ],
)
def test_bad_values_are_refused_with_the_allowed_range(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunConfig.from_mapping({"transforms": spec})


def test_defences_refuse_raw_weights_updates() -> None:
    weights = {"protocol": "fedavg", "fedavg_update": "weights", "transforms": "dp"}
    with pytest.raises(ValueError, match="gradient or delta updates.*fedavg_update=delta"):
        RunConfig.from_mapping(weights)
    RunConfig.from_mapping({**weights, "fedavg_update": "delta"})  # accepted


def test_cli_bad_defence_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["run", "--set", "transforms=dp:noise=-1", "--out", "/nonexistent/x"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "noise=-1.0 is out of range" in lines[0]


# --- the adaptive attacker --------------------------------------------------------------------


def defended_capture(spec: str, transform: object, public_knows: bool = True):
    """A real digit's FedSGD capture (client 1) after a defence; its public info names the
    defence when ``public_knows``. Returns the capture and the true image."""
    capture = ann_capture(0)
    sent = transform(capture.update, ctx(partition=capture.client))  # type: ignore[operator]
    public = dataclasses.replace(capture.public, transforms=(spec,) if public_knows else ())
    image = load_dataset("mnist5k", "train").inputs[0:1]
    return dataclasses.replace(capture, update=sent, public=public), image


def loss_at_truth(capture, image) -> float:  # type: ignore[no-untyped-def]
    """iDLG's matching loss with the dummy at the true image (label from the capture)."""
    problem = build_attack("idlg").problem(capture, start=image)
    with torch.enable_grad():
        return float(problem.loss(False).detach())


@pytest.mark.parametrize(
    ("spec", "transform"),
    [("prune:keep=0.3", TopKPrune(keep=0.3)), ("dp:clip=0.01:noise=0.0", GaussianDp(0.01, 0.0))],
)
def test_only_the_adaptive_attacker_has_the_truth_as_a_zero_loss_point(
    spec: str, transform: object
) -> None:
    known, image = defended_capture(spec, transform)
    unknown, _ = defended_capture(spec, transform, public_knows=False)
    norm = sum(float((v.double() ** 2).sum()) for v in known.update.values())
    assert loss_at_truth(known, image) < 1e-6 * norm
    assert loss_at_truth(unknown, image) > 1e-2 * norm


def test_adapt_masks_pruned_entries_and_clips_to_the_public_bound() -> None:
    target = [torch.tensor([0.0, 2.0, 0.0]), torch.tensor([1.0])]
    simulated = [torch.tensor([3.0, 4.0, 5.0]), torch.tensor([6.0])]
    public = PublicInfo("lenet", (1, 28, 28), 10, 1, transforms=("prune:keep=0.5", "quant"))
    assert [s.name for s in known_defences(public, 0)] == ["prune"]  # quant: no mirror
    masked = adapt(simulated, target, known_defences(public, client=0))
    assert [m.tolist() for m in masked] == [[0.0, 4.0, 0.0], [6.0]]
    public = PublicInfo("lenet", (1, 28, 28), 10, 1, transforms=("dp:clip=1.0:noise=1.0@2",))
    assert known_defences(public, client=0) == []  # client 2's defence only
    clipped = adapt(simulated, target, known_defences(public, client=2))
    assert float(torch.sqrt(sum((c**2).sum() for c in clipped))) == pytest.approx(1.0)


@pytest.mark.parametrize("engine", ["grouped", "vmap"])
@pytest.mark.parametrize(
    ("spec", "transform"),
    [("prune:keep=0.3", TopKPrune(keep=0.3)), ("dp:clip=0.01:noise=0.1", GaussianDp(0.01, 0.1))],
)
def test_batched_engine_mirrors_defences_as_the_per_capture_path_does(
    spec: str, transform: object, engine: str, float64: None
) -> None:
    """Defended captures of two digits: the batched engine's adaptive iDLG (two L-BFGS steps)
    equals the per-capture one, and differs from matching without the mirror."""
    captures = []
    for index in (0, 2):
        capture = ann_capture(index)
        sent = transform(capture.update, ctx(partition=capture.client))  # type: ignore[operator]
        public = dataclasses.replace(capture.public, transforms=(spec,))
        captures.append(dataclasses.replace(capture, update=sent, public=public))
    attack = build_attack("idlg", AttackConfig(iterations=2))
    looped = [attack.reconstruct(c) for c in captures]
    batched = reconstruct_batch(attack, captures, engine=engine)
    for a, b in zip(looped, batched, strict=True):
        assert (a.status, a.iterations) == (b.status, b.iterations)
        assert math.isclose(a.grad_loss, b.grad_loss, rel_tol=1e-6)
        torch.testing.assert_close(b.images, a.images, rtol=1e-6, atol=1e-6)
    blind = [
        dataclasses.replace(c, public=dataclasses.replace(c.public, transforms=()))
        for c in captures
    ]
    unmirrored = reconstruct_batch(attack, blind, engine=engine)
    assert any(
        not math.isclose(a.grad_loss, u.grad_loss, rel_tol=1e-3)
        for a, u in zip(looped, unmirrored, strict=True)
    )


def test_batched_engine_leaves_one_clients_defence_to_the_per_capture_path() -> None:
    capture, _ = defended_capture("prune:keep=0.3@1", TopKPrune(keep=0.3))
    with pytest.raises(NotImplementedError, match="not those limited to one client"):
        reconstruct_batch(build_attack("idlg"), [capture, capture])


# --- privacy accounting -----------------------------------------------------------------------


def rdp_bound(noise: float, releases: int, delta: float) -> float:
    """The textbook RDP bound of composed Gaussian releases: min over orders a of
    releases * a / (2 noise^2) + log(1/delta) / (a - 1) (Mironov 2017)."""
    orders = [1 + x / 100 for x in range(1, 100_000)]
    return min(releases * a / (2 * noise**2) + math.log(1 / delta) / (a - 1) for a in orders)


@pytest.mark.parametrize(("noise", "releases"), [(1.0, 1), (2.0, 10), (4.0, 1000)])
def test_epsilon_is_within_the_textbook_rdp_bound(noise: float, releases: int) -> None:
    eps = epsilon(noise, releases, 1e-5)
    bound = rdp_bound(noise, releases, 1e-5)
    assert 0.7 * bound < eps <= bound * (1 + 1e-6)  # dp-accounting's conversion is tighter


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    assert epsilon(1.0, 0, 1e-5) == 0.0 and epsilon(0.0, 5, 1e-5) == math.inf
    assert epsilon(1.0, 10, 1e-5) < epsilon(1.0, 20, 1e-5)
    assert epsilon(2.0, 10, 1e-5) < epsilon(1.0, 10, 1e-5)
    assert epsilon(1.0, 10, 1e-3) < epsilon(1.0, 10, 1e-6)


def test_privacy_record_covers_each_dp_step() -> None:
    (rec,) = privacy_record(["prune", "dp:clip=2:noise=1.5@3", "quant"], rounds=7)
    assert rec["transform"] == "dp:clip=2.0:noise=1.5:delta=1e-05@3" and rec["clients"] == 3
    assert rec["noise_std"] == 3.0 and rec["releases_per_client"] == 7
    assert rec["epsilon"] == epsilon(1.5, 7, 1e-5)
    assert privacy_record(["prune"], rounds=7) == []


def test_experiment_captures_carry_the_defence_and_its_public_spec() -> None:
    """experiments.trials.fresh_capture (attacker_strength) applies the config's defences."""
    from experiments.trials import fresh_capture
    from fl_sim.evaluation.audit import GroundTruth

    data = load_dataset("mnist5k", "train")
    truth = GroundTruth(data.inputs[:1], data.labels[:1])
    cfg = RunConfig.of(transforms=("prune:keep=0.1",))
    capture = fresh_capture(cfg, "ann", 2, truth)
    assert capture.public.transforms == ("prune:keep=0.1",)
    for value in capture.update.values():
        assert int((value != 0).sum()) == math.ceil(0.1 * value.numel())
    plain = fresh_capture(RunConfig(), "ann", 2, truth)
    assert plain.public.transforms == () and any(
        int((v != 0).sum()) > math.ceil(0.1 * v.numel()) for v in plain.update.values()
    )
