"""The vmap engine: ``torch.func.vmap`` of ``torch.func.grad`` over a per-problem function
calling the victim with its own weights through ``torch.func.functional_call``.

Works for any model torch.func can trace (the SNN surrogate is pure torch;
``SNNLeNet.forward`` resets its neurons inside the traced function) and calls the looped
objective and regularisers themselves; 1.4-2.6x slower than the grouped engine on the LeNets.
"""

from __future__ import annotations

import torch

from attacks.batched.problems import Problems
from attacks.components.objectives import OBJECTIVES
from attacks.components.regularisers import REGULARISERS
from attacks.defences import adapt


class VmapEvaluator:
    """torch.func.vmap of grad over a per-problem functional_call of the victim."""

    def __init__(self, pb: Problems) -> None:
        self.pb, self.model = pb, pb.model
        model, names = pb.model, pb.names
        objective = OBJECTIVES[pb.objective]
        regularisers = [(REGULARISERS[n], w) for n, w in pb.regularisers]

        def matching_loss(x, params, buffers, targets, consts, regularised):  # type: ignore[no-untyped-def]
            dummy, variables = pb.split(x.unsqueeze(0))
            inputs = pb.inputs(dummy)

            def task_loss(p):  # type: ignore[no-untyped-def]
                out = torch.func.functional_call(model, {**p, **buffers}, (inputs[0],))
                one = {c: v.unsqueeze(0) for c, v in consts.items()}
                return pb.task(out.unsqueeze(0), variables, one)[0]

            grads = torch.func.grad(task_loss)(params)
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
