"""The vmap engine: ``torch.func.vmap`` of ``torch.func.grad`` over a per-problem function
calling the victim with its own weights through ``torch.func.functional_call``.

Works for any model torch.func can trace (the SNN surrogate is pure torch;
``SNNLeNet.forward`` resets its neurons inside the traced function) and calls the looped
objective and regularisers themselves; 1.4-2.6x slower than the grouped engine on the LeNets.
It also simulates FedAvg updates of one mini-batch per local epoch (``local_steps == 1``):
the client's SGD steps unrolled as :func:`attacks.local_update.simulated_update` unrolls them,
nested ``torch.func.grad`` instead of ``create_graph``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from attacks.batched.problems import Problems
from attacks.components.objectives import OBJECTIVES
from attacks.components.regularisers import REGULARISERS
from attacks.defences import adapt
from attacks.local_update import next_weight
from models.public import PublicInfo

Params = dict[str, torch.Tensor]
TaskLoss = Callable[[Params], torch.Tensor]


def _simulator(public: PublicInfo) -> Callable[[TaskLoss, Params], Params]:
    """What a client sends as a function of its weights and task loss, in gradient form:
    FedSGD's gradient; FedAvg's ``(w0 - w_E) / lr`` after ``local_epochs`` SGD steps on the
    whole batch (the looped unrolling's arithmetic, ``next_weight``)."""
    if public.update == "gradient":
        return lambda task_loss, params: torch.func.grad(task_loss)(params)
    if public.local_steps != 1:
        raise NotImplementedError(
            f"the vmap engine unrolls FedAvg over one mini-batch per epoch, not local_steps="
            f"{public.local_steps}: attack these updates one at a time"
        )
    lr = public.local_lr

    def fedavg(task_loss: TaskLoss, params: Params) -> Params:
        weights = params
        for _ in range(public.local_epochs):
            grads = torch.func.grad(task_loss)(weights)
            weights = {n: next_weight(w, grads[n], lr, True) for n, w in weights.items()}
        return {n: (params[n] - weights[n]) / lr for n in params}

    return fedavg


class VmapEvaluator:
    """torch.func.vmap of grad over a per-problem functional_call of the victim."""

    def __init__(self, pb: Problems) -> None:
        self.pb, self.model = pb, pb.model
        model, names = pb.model, pb.names
        objective = OBJECTIVES[pb.objective]
        regularisers = [(REGULARISERS[n], w) for n, w in pb.regularisers]
        simulate = _simulator(pb.public)

        def matching_loss(x, params, buffers, targets, consts, regularised):  # type: ignore[no-untyped-def]
            dummy, variables = pb.split(x.unsqueeze(0))
            inputs = pb.inputs(dummy)

            def task_loss(p):  # type: ignore[no-untyped-def]
                out = torch.func.functional_call(model, {**p, **buffers}, (inputs[0],))
                one = {c: v.unsqueeze(0) for c, v in consts.items()}
                return pb.task(out.unsqueeze(0), variables, one)[0]

            grads = simulate(task_loss, params)
            simulated, target = [grads[n] for n in names], [targets[n] for n in names]
            if pb.defences:  # the adaptive attacker's mirror
                simulated = adapt(simulated, target, pb.defences)
            loss = objective(simulated, target)
            for regulariser, weight in regularisers if regularised else ():
                loss = loss + weight * regulariser(dummy[0])
            return loss

        def per_flag(flag: bool):  # type: ignore[no-untyped-def]
            return lambda *args: matching_loss(*args, flag)

        self.loss = {flag: torch.func.vmap(per_flag(flag)) for flag in (True, False)}
        self.loss_and_grad = {
            flag: torch.func.vmap(torch.func.grad_and_value(per_flag(flag)))
            for flag in (True, False)
        }

    def __call__(
        self,
        rows: torch.Tensor,
        x_rows: torch.Tensor,
        need_grad: bool = True,
        regularised: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        pb = self.pb
        args = (
            x_rows.detach(),
            {n: v[rows] for n, v in pb.params.items()},
            {n: v[rows] for n, v in pb.buffers.items()},
            {n: v[rows] for n, v in pb.targets.items()},
            {c: v[rows] for c, v in pb.consts.items()},
        )
        with torch.enable_grad():
            if not need_grad:
                return self.loss[regularised](*args).detach(), None
            g, loss = self.loss_and_grad[regularised](*args)
        return loss.detach(), g.detach()
