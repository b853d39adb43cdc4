"""The batched engine equals P separate ``attack.reconstruct`` runs, and its L-BFGS equals
``torch.optim.LBFGS`` per problem.

Tolerances. DLG-style L-BFGS (lr 1, no line search) is chaotic: float32 rounding differences
(a batched dot product or grouped convolution sums in another order than ``torch.dot`` or a
single convolution) grow until, within one outer step (20 L-BFGS iterations), some
trajectories visibly part (for the SNN, a membrane potential then lands on the other side of
the threshold and the spike pattern changes). The looped attack itself changes the same way
with the thread count. So the end-to-end comparisons run in float64 (default dtype switched
after the float32 captures are built; both paths then draw and compute in float64), where the
same differences start at ~1e-16 and stay below 1e-8 over one outer step; float32 is checked
where it is not amplified: one loss/gradient evaluation (rtol 1e-4: float32 sums of ~1e4 terms
in another order), and the batched L-BFGS against torch's on deterministic functions (float64,
1e-10).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import pytest
import torch

from attacks import AttackConfig, Capture, PublicInfo, build_attack
from attacks.batched import _prepare, batched_lbfgs_attack, reconstruct_batch
from attacks.batched_lbfgs import BatchedLBFGS
from attacks.gradient_matching import capture_generator, gradient_distance, lbfgs
from attacks.spike_domain import init_dummy
from attacks.victim import target_gradients, victim_from_capture
from fl_sim.data.registry import load_dataset
from fl_sim.federation.training import loss_gradient
from models import build_model

ANN = PublicInfo(arch="lenet", input_shape=(1, 28, 28), num_classes=10, batch_size=1)
SNN = PublicInfo(arch="snn-lenet", input_shape=(1, 28, 28), num_classes=10, batch_size=1, T=4)


def capture_of(public: PublicInfo, index: int) -> Capture:
    """A FedSGD capture of one real mnist5k digit on a freshly initialised victim (float32)."""
    data = load_dataset("mnist5k", "train")
    torch.manual_seed(index)
    model = build_model(
        public.arch, public.input_shape, public.num_classes, T=public.T, neuron=public.neuron
    ).float()
    x, y = data.inputs[index : index + 1].float(), data.labels[index : index + 1]
    return Capture(0, index, loss_gradient(model, x, y), model.state_dict(), public)


@pytest.fixture
def float64() -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def assert_same(looped: list, batched: list, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    assert len(looped) == len(batched)
    for i, (a, b) in enumerate(zip(looped, batched, strict=True)):
        assert (a.status, a.iterations) == (b.status, b.iterations), i
        assert torch.equal(a.labels, b.labels), i
        both_nan = math.isnan(a.grad_loss) and math.isnan(b.grad_loss)
        close = math.isclose(a.grad_loss, b.grad_loss, rel_tol=rtol, abs_tol=atol)
        assert both_nan or close, (i, a.grad_loss, b.grad_loss)
        torch.testing.assert_close(b.images, a.images, rtol=rtol, atol=atol)
        assert (a.dummy is None) == (b.dummy is None), i
        if a.dummy is not None:
            torch.testing.assert_close(b.dummy, a.dummy, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------
# the batched L-BFGS against torch.optim.LBFGS on deterministic functions
# --------------------------------------------------------------------------------------
def quadratics(
    P: int, n: int, dtype: torch.dtype, spread: float = 0.7
) -> tuple[torch.Tensor, torch.Tensor]:
    """P SPD matrices with condition numbers 1 .. 10^(spread (P-1)), and linear terms."""
    g = torch.Generator().manual_seed(0)
    mats = []
    for p in range(P):
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        mats.append((q * torch.logspace(0, spread * p, n, dtype=torch.float64)) @ q.T)
    return torch.stack(mats).to(dtype), torch.randn(P, n, generator=g, dtype=dtype)


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2).sum(-1)


def run_both(fn, x0: torch.Tensor, steps: int, split: int = 3, **kw: float):  # type: ignore[no-untyped-def]
    """Batched L-BFGS and one torch LBFGS per row (two parameter tensors, to check the
    flattening order); returns both final iterates, step losses and optimiser states."""

    def closure(rows: torch.Tensor, xr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xr = xr.detach().requires_grad_(True)
        loss = fn(xr, rows)
        return loss.detach(), torch.autograd.grad(loss.sum(), xr)[0]

    x = x0.clone()
    opt = BatchedLBFGS(x, **kw)
    batched_losses = torch.stack([opt.step(closure) for _ in range(steps)], dim=1)
    torch_x, torch_losses, states = [], [], []
    for p in range(x0.shape[0]):
        a = x0[p, :split].clone().requires_grad_(True)
        b = x0[p, split:].clone().requires_grad_(True)
        topt = torch.optim.LBFGS([a, b], **kw)

        def tclosure(a=a, b=b, topt=topt, p=p):  # type: ignore[no-untyped-def]
            topt.zero_grad()
            loss = fn(torch.cat([a, b]).unsqueeze(0), torch.tensor([p]))[0]
            loss.backward()
            return loss

        torch_losses.append([float(topt.step(tclosure).detach()) for _ in range(steps)])
        torch_x.append(torch.cat([a, b]).detach())
        states.append(topt.state[a])
    losses = torch.tensor(torch_losses, dtype=torch.float64)
    return x, batched_losses, opt, torch.stack(torch_x), losses, states


@pytest.mark.parametrize("history_size", [100, 3])
def test_batched_lbfgs_equals_torch_lbfgs_on_quadratics(history_size: int) -> None:
    """Different conditioning: problems stop at different inner iterations and steps (masks,
    frozen rows, counters across steps); history_size 3 wraps the ring buffers. (With only 3
    pairs, L-BFGS at lr 1 on a 10^3.5-conditioned quadratic amplifies 1e-15 perturbations of
    its start to 1e-2 in 80 iterations, torch's own included: milder conditioning there.)"""
    P, n = 6, 7
    A, b = quadratics(P, n, torch.float64, spread=0.7 if history_size == 100 else 0.4)

    def fn(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("ki,kij,kj->k", x, A[rows], x) - (b[rows] * x).sum(1)

    x0 = torch.randn(P, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x, bl, opt, tx, tl, states = run_both(fn, x0, steps=4, history_size=history_size)
    torch.testing.assert_close(x, tx, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bl, tl, rtol=1e-10, atol=1e-12)
    for p, st in enumerate(states):
        assert int(opt.n_iter[p]) == st["n_iter"], p
        assert int(opt.func_evals[p]) == st["func_evals"], p
        assert int(opt.hist_len[p]) == len(st["old_dirs"]), p
    assert len({int(v) for v in opt.n_iter}) > 1  # problems did stop at different points
    if history_size == 3:  # histories wrapped
        assert max(len(st["old_dirs"]) for st in states) == 3
        assert sum(st["n_iter"] > 10 for st in states) >= 3


def test_batched_lbfgs_equals_torch_lbfgs_on_rosenbrock_float32_and_lr() -> None:
    """Non-convex (curvature pairs rejected when ys <= 1e-10), lr != 1, float32 (a few
    steps: rounding differences grow on Rosenbrock's valley)."""
    x0 = torch.tensor([[-1.2, 1.0, 0.5, -0.3], [0.0, 0.0, 0.0, 0.0], [1.5, 2.0, 1.0, 0.2]])
    x0 = torch.cat([x0, x0 * 0.5]).to(torch.float64)

    def fn(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return rosenbrock(x)

    x, bl, opt, tx, tl, states = run_both(fn, x0, steps=2, split=2, lr=0.5)
    torch.testing.assert_close(x, tx, rtol=1e-7, atol=1e-8)  # 40 iterations along the valley
    torch.testing.assert_close(bl, tl, rtol=1e-7, atol=1e-8)
    assert [int(v) for v in opt.n_iter] == [st["n_iter"] for st in states]
    x, bl, opt, tx, tl, states = run_both(fn, x0.float(), steps=1, split=2, lr=0.5)
    torch.testing.assert_close(x, tx, rtol=1e-4, atol=1e-5)
    assert [int(v) for v in opt.func_evals] == [st["func_evals"] for st in states]


def test_lbfgs_hygiene_per_problem_equals_looped_lbfgs() -> None:
    """Problem 1 turns NaN, problem 2 blows up (diverged), problem 3 reaches the tolerance,
    problem 0 runs all steps: each ends as attacks.gradient_matching.lbfgs ends it, and the
    others are not disturbed."""
    P, n = 4, 5
    A, b = quadratics(P, n, torch.float64)
    x0 = torch.zeros(P, n, dtype=torch.float64)
    offset = torch.tensor([100.0, 100.0, 100.0, 1.01], dtype=torch.float64)  # 3 reaches tol 1

    def fn(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        quad = 0.5 * torch.einsum("ki,kij,kj->k", x, A[rows], x) - (b[rows] * x).sum(1)
        far = x.norm(dim=1) > 0.3
        nan = torch.full_like(quad, math.nan)
        quad = torch.where(far & (rows == 1), nan, quad)
        quad = torch.where(far & (rows == 2), quad + 1e12, quad)
        return quad + offset[rows]

    def closure(rows: torch.Tensor, xr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xr = xr.detach().requires_grad_(True)
        loss = fn(xr, rows)
        return loss.detach(), torch.autograd.grad(loss.sum(), xr)[0]

    x = x0.clone()
    status, steps = batched_lbfgs_attack(x, closure, 6, 0.05, tolerance=1.0, diverge_factor=1e8)
    for p in range(P):
        v = x0[p].clone().requires_grad_(True)
        st, k = lbfgs(
            [v],
            lambda v=v, p=p: fn(v.unsqueeze(0), torch.tensor([p]))[0],
            6,
            0.05,
            tolerance=1.0,
            diverge_factor=1e8,
        )
        assert (status[p], steps[p]) == (st, k), p
        torch.testing.assert_close(x[p], v.detach(), rtol=1e-10, atol=1e-12)
    assert status == ["ok", "nonfinite", "diverged", "converged"]


# --------------------------------------------------------------------------------------
# the attack: batched equals looped
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("public", [ANN, SNN], ids=["lenet", "snn-lenet-T4"])
@pytest.mark.parametrize("name", ["dlg", "idlg"])
def test_batched_equals_looped_reconstruct(public: PublicInfo, name: str, float64: None) -> None:
    captures = [capture_of(public, i) for i in range(4)]
    attack = build_attack(name, AttackConfig(iterations=1))
    looped = [attack.reconstruct(c) for c in captures]
    # A spiking victim amplifies 1e-15 summation-order differences within one step's 20
    # L-BFGS iterations (a membrane potential crosses the threshold): seen up to 3e-6 here,
    # depending on the torch thread count, so the SNN gets 1e-4.
    tol = 1e-4 if public.arch == "snn-lenet" else 1e-6
    assert_same(looped, reconstruct_batch(attack, captures), rtol=tol, atol=tol)


@pytest.mark.parametrize("public", [ANN, SNN], ids=["lenet", "snn-lenet-T4"])
def test_vmap_engine_equals_looped_reconstruct(public: PublicInfo, float64: None) -> None:
    captures = [capture_of(public, i) for i in range(2)]
    attack = build_attack("dlg", AttackConfig(iterations=1))
    looped = [attack.reconstruct(c) for c in captures]
    assert_same(looped, reconstruct_batch(attack, captures, engine="vmap"))


@pytest.mark.parametrize(
    "options",
    [
        {"restarts": 2},
        {"clamp": "step"},
        {"threshold": "in", "tau": 0.5},
        {"threshold": "post"},
        {"tolerance": 30.0},
        {"init": "randn", "clamp": "none", "seed": 3},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_batched_follows_attack_options(options: dict, float64: None) -> None:
    public = SNN if "threshold" in options else ANN  # the SNN is chaotic beyond one step
    captures = [capture_of(public, i) for i in range(3)]
    attack = build_attack("idlg", AttackConfig(iterations=1 if public.T > 1 else 2, **options))
    looped = [attack.reconstruct(c) for c in captures]
    assert_same(looped, reconstruct_batch(attack, captures))
    if "tolerance" in options:
        assert "converged" in {r.status for r in looped}


@pytest.mark.parametrize(
    "public",
    [
        dataclasses.replace(ANN, arch="lenet5-grnn"),
        dataclasses.replace(SNN, arch="snn-lenet5"),
        dataclasses.replace(SNN, neuron="lif"),
        dataclasses.replace(SNN, input_shape=(2, 16, 16), input_kind="events"),
    ],
    ids=["lenet5-grnn", "snn-lenet5", "snn-lenet-lif", "snn-lenet-events"],
)
def test_grouped_engine_on_other_victims(public: PublicInfo, float64: None) -> None:
    if public.input_kind == "events":  # event frames: random spikes stand in for DVS data
        torch.manual_seed(0)
        captures = []
        for i in range(2):
            model = build_model(public.arch, public.input_shape, 10, T=public.T).float()
            frames = (torch.rand(public.T, 1, *public.input_shape) < 0.2).float()
            update = loss_gradient(model, frames, torch.tensor([i]))
            captures.append(Capture(0, i, update, model.state_dict(), public))
    else:
        captures = [capture_of(public, i) for i in range(2)]
    attack = build_attack("dlg", AttackConfig(iterations=1))
    looped = [attack.reconstruct(c) for c in captures]
    assert_same(looped, reconstruct_batch(attack, captures, engine="grouped"))


@pytest.mark.parametrize("public", [ANN, SNN], ids=["lenet", "snn-lenet-T4"])
@pytest.mark.parametrize("engine", ["grouped", "vmap"])
def test_one_evaluation_equals_looped_loss_and_gradient_float32(
    public: PublicInfo, engine: str
) -> None:
    """Float32: the P matching losses and gradients at the initial dummies equal the
    per-capture computation of GradientMatchingAttack.attempt."""
    captures = [capture_of(public, i) for i in range(4)]
    attack = build_attack("dlg", AttackConfig())
    batch = _prepare(attack, captures, engine)
    loss, grad = batch.evaluate(torch.arange(4), batch.x)
    for p, capture in enumerate(captures):
        model = victim_from_capture(capture)
        params = list(model.parameters())
        target = target_gradients(model, capture)
        gen = capture_generator(0, capture)
        dummy = init_dummy(public, "auto", 0.1, gen).requires_grad_(True)
        task = attack.label_task(model, capture, gen)
        out = model(dummy)
        grads = torch.autograd.grad(task.loss(out, slice(None)), params, create_graph=True)
        ref = gradient_distance(grads, target)
        ref_grad = torch.autograd.grad(ref, [dummy, *task.variables])
        ref_grad = torch.cat([g.reshape(-1) for g in ref_grad])
        torch.testing.assert_close(loss[p], ref.detach(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(grad[p], ref_grad, rtol=1e-4, atol=1e-4 * ref_grad.abs().max())


def test_nonfinite_problem_does_not_disturb_the_others(float64: None) -> None:
    captures = [capture_of(ANN, i) for i in range(3)]
    broken = dict(captures[1].update)
    broken["fc.bias"] = torch.full_like(broken["fc.bias"], math.nan)
    captures[1] = dataclasses.replace(captures[1], update=broken)
    attack = build_attack("dlg", AttackConfig(iterations=2))
    looped = [attack.reconstruct(c) for c in captures]
    batched = reconstruct_batch(attack, captures)
    assert [r.status for r in batched] == ["ok", "nonfinite", "ok"]
    assert batched[1].iterations == 1
    assert_same(looped, batched)


def test_mismatched_public_info_raises() -> None:
    captures = [capture_of(ANN, 0), capture_of(dataclasses.replace(ANN, batch_size=2), 1)]
    with pytest.raises(ValueError, match="batch_size"):
        reconstruct_batch(build_attack("dlg", AttackConfig(iterations=1)), captures)
    with pytest.raises(ValueError, match="unknown engine"):
        reconstruct_batch(build_attack("dlg"), captures[:1], engine="gpu")
    assert reconstruct_batch(build_attack("dlg"), []) == []
