"""Per-sample classifier inputs and labels from the classifier gradient of a batch (issue 29).

For N samples under mean cross-entropy, a classifier ``logits = W r + b`` has ``dW = D^T R``
and ``db = D^T 1`` with ``D[i] = (softmax(W r_i + b) - e_{y_i}) / N`` (R: the N classifier
inputs, rows; the SNN twins' mean-membrane readout makes ``r`` the mean spike rate). So:

- **label counts**: ``n_c = N (pbar_c - db_c)`` exactly, with ``pbar`` the batch's mean
  softmax. ``pbar`` is unknown; the sign rule (``db_c < 0`` iff present) needs every
  ``pbar_c < 1/N`` and fails on a peaked untrained net already at N = 2-8. Here ``pbar``
  comes from the fit itself: start from the batch's mean input read as if it were one sample
  (``dW[j] ~= db[j] rbar``), then alternate counts and the decomposition below until the
  counts no longer change (the count estimator of iLRG, Ma et al. 2023, with pbar from the
  fit instead of a closed form);
- **the decomposition**: samples that share a label share a row pattern ``e_y`` in D and
  cannot be told apart by this gradient (and ``rank D <= C - 1``), so the unknowns are one
  mean input per present class, K <= C groups of ``n_k`` samples:
  ``dW ~= sum_k n_k (softmax(W rbar_k + b) - e_k) rbar_k^T / N`` (exact for distinct labels,
  and for repeats whose members share their softmax; an approximation otherwise). It is
  solved by alternating least squares (fix the softmax: R is linear least squares, clamped to
  the inputs' range >= 0; fix R: the softmax), from several seeded starts, then L-BFGS on the
  full residual (weight and bias equations together, which ALS alone can miss: a wrong fixed
  point can fit dW but not db), keeping the lowest residual. For batches up to C samples the
  best few count vectors are then refitted with one input per sample (members of a class
  differ in their softmax, so only that fit can be exact where a label repeats, and its
  residual tells the right counts from the wrong ones). Below C samples the sign rule's
  count vectors (every class of negative ``db`` present, at most one more sample) are
  refitted too, and each per-sample fit also runs Levenberg-Marquardt in ``dW``'s row space
  (N x N unknowns), which converges where L-BFGS stalls on a trained victim's steep softmax.
  A relative residual ~1e-12 or below in float64 marks an exact decomposition.

Why not R-GAP's or iLRG's closed forms: both need N <= C - 1 distinct labels and solve the
same equations; ALS + L-BFGS covers those cases exactly and degrades to class means beyond.

FedAvg (E local SGD steps, update in gradient form ``(w0 - w_E) / lr``): the sum of E
gradients at E different weights is read as E times one gradient at ``w0``; an
approximation, exact for E = 1 and good while the local steps move the weights little.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jacfwd

ALS_ITERATIONS = 60
RESTARTS = 4
MOVES = 4
CANDIDATES = 4  # count vectors refined per sample (batches up to C samples)
REFINE_STEPS = 400
LM_STARTS = 4  # starts of the subspace Levenberg-Marquardt fit per count vector (N < C)
LM_ITERATIONS = 100
COUNT_ROUNDS = 5
EXACT = 1e-12  # relative residual (float64) at or below which the decomposition is exact


@dataclass(frozen=True)
class BatchLeak:
    """What the classifier gradient of a batch reveals: per sample (grouped by class, in
    class order) the recovered label and classifier input; ``residual``: the fit's squared
    error relative to the gradient's squared norm (weight and bias equations together)."""

    labels: torch.Tensor  # [N] int64
    # [N, F]: per sample up to C samples; beyond, the class's mean input for each of its samples
    features: torch.Tensor
    residual: float

    @property
    def exact(self) -> bool:
        """Does the decomposition explain the gradient to float64 precision?"""
        return self.residual <= EXACT


def round_counts(expected: torch.Tensor, total: int) -> torch.Tensor:
    """Nonnegative integers summing to ``total`` nearest to ``expected`` (largest remainder)."""
    x = expected.clamp_min(0)
    x = x * (total / x.sum()) if x.sum() > 0 else torch.full_like(x, total / len(x))
    counts = x.floor().long()
    short = total - int(counts.sum())
    if short > 0:
        counts[torch.argsort(x - counts, descending=True)[:short]] += 1
    return counts


class _Fit:
    """The equations of one count vector: gradient ``g`` [C, F], bias ``h`` [C], classifier
    ``W``, ``b``, ``n`` samples per class; one unknown input per class with n > 0 (groups),
    or with ``per_sample`` one per sample (rows of a class in a block)."""

    def __init__(
        self,
        g: torch.Tensor,
        h: torch.Tensor,
        W: torch.Tensor,
        b: torch.Tensor,
        n: torch.Tensor,
        per_sample: bool = False,
    ) -> None:
        self.g, self.h, self.W, self.b = g, h, W, b
        present = torch.nonzero(n > 0).flatten()
        if per_sample:
            self.classes = torch.repeat_interleave(present, n[present])
            self.n = torch.ones(len(self.classes), dtype=g.dtype)
        else:
            self.classes = present
            self.n = n[present].to(g.dtype)
        self.total = float(n.sum())
        self.onehot = torch.eye(len(h), dtype=g.dtype)[self.classes]
        self.scale = float((g * g).sum() + (h * h).sum())

    def probs(self, R: torch.Tensor) -> torch.Tensor:
        return torch.softmax(R @ self.W.T + self.b, dim=-1)

    def errors(self, probs: torch.Tensor) -> torch.Tensor:
        """D [K, C] of the groups' softmax outputs ``probs`` [K, C]."""
        return self.n[:, None] * (probs - self.onehot) / self.total

    def residual(self, R: torch.Tensor) -> torch.Tensor:
        D = self.errors(self.probs(R))
        dw, db = D.T @ R - self.g, D.sum(0) - self.h
        return ((dw * dw).sum() + (db * db).sum()) / self.scale

    def als(self, probs: torch.Tensor, iterations: int) -> torch.Tensor:
        """Alternate from the groups' softmax outputs ``probs``: inputs by least squares
        given the softmax, softmax given the inputs; returns the inputs."""
        for _ in range(iterations):
            R = torch.linalg.lstsq(self.errors(probs).T, self.g).solution.clamp_min(0)
            probs = self.probs(R)
        return R

    def refine(self, R: torch.Tensor, steps: int) -> torch.Tensor:
        """L-BFGS on the full residual from ``R`` (inputs kept >= 0)."""
        x = R.detach().contiguous().clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [x],
            lr=1,
            max_iter=steps,
            tolerance_grad=1e-20,  # the residual is relative: its gradients are tiny
            tolerance_change=1e-30,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = self.residual(x.clamp_min(0))
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return x.detach().clamp_min(0)

    def mean_probs(self, R: torch.Tensor) -> torch.Tensor:
        return (self.n[:, None] * self.probs(R)).sum(0) / self.total


def decompose(
    dW: torch.Tensor,
    db: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    samples: int,
    steps: int = 1,
    seed: int = 0,
) -> BatchLeak:
    """Labels and per-sample classifier inputs of the ``samples`` samples behind the
    classifier gradients ``dW`` [C, F], ``db`` [C] (mean loss over the samples; ``steps``
    local steps summed, see the module docstring) at classifier weights ``W``, ``b``.
    Computed in float64 from seeded starts (``seed``): deterministic."""
    if samples < 1 or steps < 1:
        raise ValueError(f"need samples >= 1 and steps >= 1, got {samples} and {steps}")
    dtype = dW.dtype
    g, h = dW.double() / steps, db.double() / steps
    Wd, bd = W.detach().double(), b.detach().double()
    gen = torch.Generator().manual_seed(seed)
    # the batch read as one sample: dW ~= db rbar^T (exact when every input is rbar)
    rbar = ((h @ g) / (h * h).sum().clamp_min(torch.finfo(g.dtype).tiny)).clamp_min(0)
    pbar = torch.softmax(Wd @ rbar + bd, dim=-1)
    fits: dict[tuple[int, ...], tuple[float, torch.Tensor]] = {}

    def fitted(counts: torch.Tensor) -> torch.Tensor:
        """The mean softmax of the group fit of ``counts`` (fitted once, kept in ``fits``)."""
        key = tuple(counts.tolist())
        fit = _Fit(g, h, Wd, bd, counts)
        if key not in fits:
            R = _best_start(fit, rbar, gen)
            fits[key] = (float(fit.residual(R)), R)
        return fit.mean_probs(fits[key][1])

    # counts and fit to a fixed point of n = N (pbar - db), pbar from the fit ...
    counts = round_counts(samples * (pbar - h), samples)
    for _ in range(COUNT_ROUNDS):
        new = round_counts(samples * (fitted(counts) - h), samples)
        if tuple(new.tolist()) in fits:
            break
        counts = new
    counts = _lowest(fits)
    # ... then greedy moves of one sample between classes while they lower the residual
    # (batches up to C samples: beyond, no count vector fits exactly and the search is slow)
    for _ in range(MOVES if samples <= len(h) else 0):
        if fits[tuple(counts.tolist())][0] <= EXACT:
            break
        for moved in _neighbours(counts):
            fitted(moved)
        best = _lowest(fits)
        if torch.equal(best, counts):
            break
        counts = best
    signed = [tuple(c.tolist()) for c in _sign_candidates(h, samples)] if samples < len(h) else []
    for key in signed:
        fitted(torch.tensor(key))
    residual, R = fits[tuple(counts.tolist())]
    grouped = True
    if residual > EXACT:
        # inputs per sample, L-BFGS on the full residual, for the best few count vectors
        # (where a label repeats, its samples' softmax outputs differ: only a per-sample
        # fit can be exact, and its residual tells the right counts from the wrong ones);
        # beyond C samples, the best count vector's groups alone
        grouped = samples > len(h)
        ranked = sorted(fits, key=lambda k: fits[k][0])[: 1 if grouped else CANDIDATES]
        if not grouped:  # the sign rule's, whatever their group fit
            ranked += [key for key in signed if key not in ranked]
        chosen: tuple[float, torch.Tensor, torch.Tensor] | None = None
        for key in ranked:
            n = torch.tensor(key)
            fit = _Fit(g, h, Wd, bd, n, per_sample=not grouped)
            start = fits[key][1]
            if not grouped:  # each sample at its class's input, ties broken by 1% noise
                start = torch.repeat_interleave(start, n[n > 0], dim=0)
                noise = torch.randn(start.shape, generator=gen, dtype=start.dtype)
                start = start * (1 + 0.01 * noise)
            tried = [fit.refine(start, REFINE_STEPS)]
            if not grouped and samples < len(h):
                tried.append(_subspace_fit(fit, start, gen))
            for refined in tried:
                res = float(fit.residual(refined))
                if chosen is None or res < chosen[0]:
                    chosen = (res, n, refined)
            if chosen[0] <= EXACT:
                break
        assert chosen is not None
        residual, counts, R = chosen
    classes = torch.nonzero(counts > 0).flatten()
    reps = counts[classes]
    labels = torch.repeat_interleave(classes, reps)
    features = (torch.repeat_interleave(R, reps, dim=0) if grouped else R).to(dtype)
    return BatchLeak(labels, features, residual)


def _sign_candidates(h: torch.Tensor, samples: int) -> list[torch.Tensor]:
    """Count vectors with one sample in every class of negative bias gradient (present
    for sure where no other sample's softmax outweighs it: a trained victim's) and at most
    one more sample anywhere; none where more are unaccounted for."""
    base = (h < 0).long()
    spare = samples - int(base.sum())
    if spare == 0:
        return [base]
    return [base + one for one in torch.eye(len(h), dtype=torch.long)] if spare == 1 else []


def _lowest(fits: dict[tuple[int, ...], tuple[float, torch.Tensor]]) -> torch.Tensor:
    """The count vector of the lowest residual so far."""
    key = min(fits, key=lambda k: fits[k][0])
    return torch.tensor(key)


def _neighbours(counts: torch.Tensor) -> list[torch.Tensor]:
    """Every count vector with one sample moved from a present class to another class."""
    out = []
    for src in torch.nonzero(counts > 0).flatten().tolist():
        for dst in range(len(counts)):
            if dst != src:
                moved = counts.clone()
                moved[src] -= 1
                moved[dst] += 1
                out.append(moved)
    return out


def _best_start(fit: _Fit, rbar: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """ALS from ``RESTARTS`` starts (the first: every group's softmax at ``rbar``'s; then
    random softmax outputs, logits N(0, 1) or N(0, 16)); the lowest residual."""
    k, c = len(fit.classes), len(fit.h)
    best_r, best_res = None, float("inf")
    for restart in range(RESTARTS):
        if restart:
            spread = 1.0 + 3.0 * (restart % 2)
            logits = spread * torch.randn(k, c, generator=gen, dtype=rbar.dtype)
            start = torch.softmax(logits, dim=-1)
        else:
            start = fit.probs(rbar.expand(k, -1))
        R = fit.als(start, ALS_ITERATIONS)
        res = float(fit.residual(R))
        if best_r is None or res < best_res:
            best_r, best_res = R, res
        if best_res <= EXACT:
            break
    assert best_r is not None
    return best_r


def _subspace_fit(fit: _Fit, start: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample inputs by Levenberg-Marquardt in the gradient's row space (N < C).

    ``dW = D^T R`` has rank N, so every input lies in the span of dW's top N right singular
    vectors ``V`` (R = A V^T) and ``D^T A = U S``: N x N unknowns instead of N x F, which
    Gauss-Newton steps solve where L-BFGS in the full space stalls (the softmax of a trained
    victim is steep in few directions). Starts: ``start`` projected, then random softmax
    outputs with A the least-squares solution given them. Returns inputs [N, F], >= 0."""
    samples = len(fit.classes)
    U, S, Vh = torch.linalg.svd(fit.g, full_matrices=False)
    US, Vh = U[:, :samples] * S[:samples], Vh[:samples]
    WV = fit.W @ Vh.T
    norm = fit.scale**0.5

    def resid(A: torch.Tensor) -> torch.Tensor:
        D = fit.errors(torch.softmax(A @ WV.T + fit.b, dim=-1))
        return torch.cat([(D.T @ A - US).flatten(), D.sum(0) - fit.h]) / norm

    best, best_loss = start @ Vh.T, float("inf")
    for restart in range(LM_STARTS):
        if restart:
            logits = (1 + restart % 2) * torch.randn(
                fit.onehot.shape, generator=gen, dtype=US.dtype
            )
            D = fit.errors(torch.softmax(logits + restart * fit.onehot, dim=-1))
            a = torch.linalg.lstsq(D.T, US).solution
        else:
            a = start @ Vh.T
        a, loss = _levenberg_marquardt(resid, a)
        if loss < best_loss:
            best, best_loss = a, loss
        if best_loss <= EXACT:
            break
    return (best @ Vh).clamp_min(0)


def _levenberg_marquardt(
    resid: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Minimise ``|resid(x)|^2`` (Marquardt's diagonal scaling); returns x and the loss."""
    damping = 1e-2
    r = resid(x)
    loss = float(r @ r)
    for _ in range(LM_ITERATIONS):
        J = jacfwd(resid)(x).reshape(len(r), -1)
        JTJ, grad = J.T @ J, J.T @ r
        while True:
            A = JTJ + damping * torch.diag(torch.diag(JTJ) + 1e-15)
            trial = x + torch.linalg.solve(A, -grad).reshape(x.shape)
            rt = resid(trial)
            lt = float(rt @ rt)
            if lt < loss:
                x, r, loss, damping = trial, rt, lt, max(damping / 3, 1e-15)
                break
            damping *= 4
            if damping > 1e15:
                return x, loss
        if loss <= EXACT * 1e-2:
            break
    return x, loss
