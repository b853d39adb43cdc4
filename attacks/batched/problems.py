"""P independent problems (capture x restart) stacked for an evaluator, and the evaluator
interface: ``(rows, x_rows, need_grad=True, regularised=True) -> (loss [k], its gradient
[k, n] or None)`` at the problems ``rows`` (``x_rows = x[rows]``, flat variables)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

from attacks.batched.forms import BatchedTaskLoss
from attacks.components.dummies import Dummy
from attacks.types import PublicInfo
from models.public import TransformSpec


class Evaluator(Protocol):
    model: nn.Module  # the module the losses run through (its surrogate is what anneals)

    def __call__(
        self,
        rows: torch.Tensor,
        x_rows: torch.Tensor,
        need_grad: bool = True,
        regularised: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Objective (+ weighted regularisers if ``regularised``) per problem, and its
        gradient with respect to ``x_rows`` if ``need_grad``."""


@dataclasses.dataclass
class Problems:
    """The stacked per-problem inputs of an evaluator."""

    model: nn.Module
    public: PublicInfo
    names: list[str]  # parameter names, named_parameters() order
    params: dict[str, torch.Tensor]  # [P, *shape]
    buffers: dict[str, torch.Tensor]  # [P, *shape]
    targets: dict[str, torch.Tensor]  # [P, *shape]
    dummy: Dummy  # the parametrisation of the input
    dummy_shape: tuple[int, ...]  # of the optimised dummy variable, per problem
    var_shapes: list[tuple[int, ...]]  # of the label variables, per problem
    task: BatchedTaskLoss
    consts: dict[str, torch.Tensor]  # [P, ...]
    objective: str  # attacks.components.objectives name
    regularisers: tuple[tuple[str, float], ...]  # (attacks.components.regularisers name, weight)
    # the rate leak: classifier inputs read off each update [P, B, F] (None when unused), the
    # weight of their term next to a gradient objective, and the classifier layer's name
    features: torch.Tensor | None = None
    feature_weight: float = 0.0
    classifier: str = ""
    # the public defences every capture's client applied, mirrored on the simulated updates
    # (attacks.defences.adapt)
    defences: tuple[TransformSpec, ...] = ()

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Flat rows [k, n] -> dummy [k, *dummy_shape] and label variables [k, *shape]."""
        k = x.shape[0]
        nd = numel(self.dummy_shape)
        dummy = x[:, :nd].reshape(k, *self.dummy_shape)
        out, offset = [], nd
        for shape in self.var_shapes:
            size = numel(shape)
            out.append(x[:, offset : offset + size].reshape(k, *shape))
            offset += size
        return dummy, out

    def inputs(self, dummy: torch.Tensor) -> torch.Tensor:
        """What the victim of each problem is fed: [k, *input] from the dummies [k, ...]."""
        return self.dummy.inputs(dummy, self.public, lead=1)


def numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
