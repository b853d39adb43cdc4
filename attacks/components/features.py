"""The analytic leak of the classifier's input, and the feature objective built on it.

A classifier whose logits are ``W r + b`` (the ANN LeNets: ``r`` = penultimate activations; the
SNN twins average ``W s_t + b`` over T, so ``r`` = the mean spike rate of the classifier input)
has, for one sample, ``dL/dW = delta r^T`` and ``dL/db = delta``: every row j with
``db[j] != 0`` gives ``dW[j] / db[j] == r`` exactly. For a batch the gradient is a sum of such
terms, split into per-sample inputs and labels by :func:`attacks.components.batch_leak.decompose`
(:func:`batch_leak`). :func:`recovered_features` reads ``r`` off a captured update;
:func:`classifier_input` computes ``r(x)`` for a dummy through the victim's own forward (a hook
on its last ``nn.Linear``), so an attack can invert it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from attacks.components.batch_leak import BatchLeak, decompose
from attacks.types import PublicInfo
from attacks.victim import last_linear

_LEAKS: dict[tuple[object, ...], BatchLeak] = {}  # decompositions by gradient content
_KEPT = 32


def local_steps(public: PublicInfo) -> int:
    """SGD steps behind one update: 1 for FedSGD, local_steps x local_epochs for FedAvg."""
    return 1 if public.update == "gradient" else public.local_steps * public.local_epochs


def classifier_gradients(
    model: nn.Module, update: Mapping[str, torch.Tensor]
) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """The classifier layer and its weight and bias gradients in ``update`` (gradient form).

    Raises ValueError naming what is missing: a last linear layer with bias, its gradients
    in the update, or gradients of the layer's shapes."""
    name, fc = last_linear(model)
    if fc.bias is None:
        raise ValueError(
            f"the rate leak needs a bias in the classifier layer: {type(model).__name__}.{name} "
            "is a linear layer without bias"
        )
    keys = (f"{name}.weight", f"{name}.bias")
    missing = [k for k in keys if k not in update]
    if missing:
        raise ValueError(f"the rate leak needs the classifier's gradients: update lacks {missing}")
    dw, db = (update[k].to(fc.weight.dtype) for k in keys)
    if dw.shape != fc.weight.shape or db.shape != fc.bias.shape:
        raise ValueError(
            f"classifier gradients {tuple(dw.shape)}/{tuple(db.shape)} do not match "
            f"{name}'s weight {tuple(fc.weight.shape)} and bias {tuple(fc.bias.shape)}"
        )
    return fc, dw, db


def batch_leak(
    model: nn.Module, update: Mapping[str, torch.Tensor], public: PublicInfo
) -> BatchLeak:
    """Labels and classifier inputs of the ``public.samples`` samples behind ``update``
    (gradient form; FedAvg's E steps read as E gradients at the global weights, an
    approximation for E > 1), by :func:`attacks.components.batch_leak.decompose`; computed once
    per gradient (the label task and the feature objective of one attack share it)."""
    fc, dw, db = classifier_gradients(model, update)
    steps = local_steps(public)
    arrays = (dw, db, fc.weight, fc.bias)
    key = (public.samples, steps, *(hash(a.detach().cpu().numpy().tobytes()) for a in arrays))
    if key not in _LEAKS:
        if len(_LEAKS) >= _KEPT:
            _LEAKS.pop(next(iter(_LEAKS)))
        _LEAKS[key] = decompose(dw, db, fc.weight, fc.bias, public.samples, steps)  # type: ignore[arg-type]
    leak = _LEAKS[key]
    return BatchLeak(leak.labels.to(dw.device), leak.features.to(dw.device), leak.residual)


def recovered_features(
    model: nn.Module, update: Mapping[str, torch.Tensor], public: PublicInfo
) -> torch.Tensor:
    """The classifier inputs [N, F] of the ``N = public.samples`` private samples behind an
    update in gradient form, in the order of :func:`batch_leak`'s labels.

    One sample: the least-squares solution of ``dW[j] = db[j] r`` over the rows, i.e.
    ``sum_j db[j] dW[j] / sum_j db[j]^2``, which weights rows by ``db[j]^2`` so that rows with
    tiny bias gradients barely count; per feature over the rows whose entry is nonzero (the
    adaptive read of pruned updates). Exact for one step; for a FedAvg update of E > 1 steps
    on the one sample, the ratio of summed gradients at E weights (an approximation). More
    samples: :func:`batch_leak`'s decomposition.

    Raises ValueError naming what is missing: a last linear layer with bias, its gradients in
    the update, a row with ``db[j] != 0``.
    """
    if public.samples != 1:
        return batch_leak(model, update, public).features
    fc, dw, db = classifier_gradients(model, update)
    name = last_linear(model)[0]
    if not (db * db).sum() > 0:
        raise ValueError(
            f"the rate leak needs a row with a nonzero bias gradient; {name}.bias's is all zero"
        )
    # Per feature, only the rows whose entry was sent: a zero dW[j, k] with db[j] != 0 means
    # r_k = 0 (then the whole column is zero) or an entry a defence dropped (top-k pruning,
    # quantisation to 0), which must not pull r_k to 0. Without such a defence this is the
    # plain least-squares solution.
    sent = (dw != 0).to(dw.dtype)
    weight = sent.T @ (db * db)
    features = torch.where(weight > 0, (db @ dw) / weight.clamp_min(torch.finfo(dw.dtype).tiny), 0)
    return features.unsqueeze(0)


def classifier_input(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """What the victim's last ``nn.Linear`` receives for ``inputs``, [B, F]: time-major inputs
    [T, B, F] (spiking victims) are averaged over T, the rate the identity recovers."""
    name, fc = last_linear(model)
    seen: list[torch.Tensor] = []
    handle = fc.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        model(inputs)
    finally:
        handle.remove()
    if len(seen) != 1 or seen[0].dim() not in (2, 3):
        raise ValueError(
            f"{type(model).__name__}.{name} must see one [B, F] or [T, B, F] input per forward; "
            f"got {[tuple(s.shape) for s in seen]}"
        )
    return seen[0].mean(0) if seen[0].dim() == 3 else seen[0]
