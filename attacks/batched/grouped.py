"""The grouped engine: all problems through one replica of the victim in which every
convolution becomes a grouped convolution (``groups * P``: problems are folded into the
channel axis) and every linear layer a batched matmul, each problem with its own weights.

Task losses are summed (not averaged) over problems, so each problem's gradients are its
own. Parameter gradients are formed from dL/d(layer output) with the autograd functions of
:mod:`attacks.batched.conv`, so the weights never require grad and the double backward
computes only what the dummy's gradient needs. Used for victims made only of known layers
(``GROUPED_MODELS``) and components with a batched form (:mod:`attacks.batched.forms`).

The rate-leak feature term reads each problem's classifier input off the recorded call of the
last linear layer (its mean over T on spiking victims); the ``features`` objective alone needs
no parameter gradient, so it skips the double backward.
"""

from __future__ import annotations

import copy

import torch
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn

from attacks.batched import forms
from attacks.batched.conv import Conv, ConvWeight, Geom, nhwc
from attacks.batched.problems import Problems
from attacks.components.objectives import FEATURE_OBJECTIVES
from attacks.defences import adapt
from models.lenet import LeNet
from models.lenet5_victim import LeNet5Victim
from models.snn_lenet import SNNLeNet
from models.snn_lenet5 import SNNLeNet5


class GroupedConv2d(nn.Module):
    """A Conv2d replicated over k problems folded into channels: [..., k*C, H, W].

    Weights are plain (detached) tensors set per evaluation; each call is recorded in
    ``calls`` so the evaluator can form the parameter gradients from dL/d(output).
    """

    def __init__(self, conv: nn.Conv2d, calls: list) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.groups = conv.groups
        self.weight: torch.Tensor | None = None  # [k*O, C/groups, kh, kw]
        self.bias: torch.Tensor | None = None  # [k*O]
        self.k = 0
        self.calls = calls

    def geom(self) -> Geom:
        return (self.stride, self.padding, self.dilation, self.groups * self.k)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        x4 = x.reshape(-1, *x.shape[-3:])
        y = Conv.apply(x4, self.weight, self.bias, self.geom())
        self.calls.append((self, x4, y))
        return y.view(*lead, *y.shape[1:])

    def param_grads(self, x4: torch.Tensor, gy: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-problem weight/bias gradients [k, ...] from the output gradient (differentiable)."""
        assert self.weight is not None
        gw = ConvWeight.apply(x4, gy, self.geom(), tuple(self.weight.shape))
        grads = {"weight": flat_nhwc(gw, self.k)}
        if self.bias is not None:
            grads["bias"] = gy.sum(dim=(0, 2, 3)).view(self.k, -1)
        return grads


def flat_nhwc(w: torch.Tensor, k: int) -> torch.Tensor:
    """Conv weights (or their gradients) [k*O, C, kh, kw] as k rows in (O, kh, kw, C) order:
    a view of the NHWC tensors the convolutions produce. The objectives sum over each row,
    so an order shared by simulated and target gradients changes only rounding."""
    return w.permute(0, 2, 3, 1).reshape(k, -1)


class GroupedLinear(nn.Module):
    """A Linear replicated over k problems folded into features: [..., k*in] -> [..., k*out]."""

    def __init__(self, calls: list) -> None:
        super().__init__()
        self.weight: torch.Tensor | None = None  # [k, out, in]
        self.bias: torch.Tensor | None = None  # [k, out]
        self.k = 0
        self.calls = calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.weight is not None
        k = self.k
        lead = x.shape[:-1]
        xs = x.reshape(-1, k, x.shape[-1] // k).transpose(0, 1)  # [k, M, in]
        w = self.weight.transpose(1, 2)
        y = torch.bmm(xs, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), xs, w)
        self.calls.append((self, xs, y))
        return y.transpose(0, 1).reshape(*lead, -1)

    def param_grads(self, xs: torch.Tensor, gy: torch.Tensor) -> dict[str, torch.Tensor]:
        grads = {"weight": torch.bmm(gy.transpose(1, 2), xs).view(self.k, -1)}
        if self.bias is not None:
            grads["bias"] = gy.sum(dim=1)
        return grads


# Victims whose forward() only applies its layers and channel-agnostic reshapes/means, so it
# runs unchanged on problems folded into the channel axis.
GROUPED_MODELS: tuple[type[nn.Module], ...] = (LeNet, SNNLeNet, LeNet5Victim, SNNLeNet5)
# Parameter-free layers that act per channel (or elementwise), hence per problem.
_PER_CHANNEL = (
    nn.Sigmoid,
    nn.ReLU,
    nn.Tanh,
    nn.Identity,
    nn.Flatten,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.Sequential,
    sj_neuron.BaseNode,
)


def victim_unsupported(model: nn.Module) -> str | None:
    """None if the grouped engine can replicate ``model``, else the reason it cannot."""
    if type(model) not in GROUPED_MODELS:
        return f"{type(model).__name__} is not a known grouped-safe victim"
    if any(True for _ in model.buffers()):
        return "the model has buffers"
    neurons = [m for m in model.modules() if isinstance(m, sj_neuron.BaseNode)]
    inside_neuron = {id(c) for m in neurons for c in m.modules() if c is not m}
    for name, m in model.named_modules():
        if m is model or id(m) in inside_neuron:  # a neuron's surrogate function
            continue
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                return f"{name}: unsupported padding"
        elif isinstance(m, sj_neuron.BaseNode):
            if any(True for _ in m.parameters()):
                return f"{name}: neuron with parameters"
        elif not isinstance(m, (nn.Linear, *_PER_CHANNEL)):
            return f"{name}: unsupported layer {type(m).__name__}"
    return None


class GroupedEvaluator:
    """All problems through one replica with grouped convolutions and batched linears.

    The parameter gradients are formed from dL/d(layer output) (ConvWeight / bmm), not by
    differentiating with respect to weight leaves: the weights never require grad, so the
    double backward computes no weight gradient it does not need.
    """

    def __init__(self, pb: Problems) -> None:
        self.pb = pb
        self.features_only = pb.objective in FEATURE_OBJECTIVES
        self.objective = (
            None
            if self.features_only
            else forms.objective(pb.objective, [v.shape[1:] for v in pb.targets.values()])
        )
        self.regularisers = [
            (forms.regulariser(name, pb.dummy_shape), weight) for name, weight in pb.regularisers
        ]
        self.replica = self.model = copy.deepcopy(pb.model)
        self.calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
        self.slots: dict[str, tuple[nn.Module, str]] = {}
        for name, m in list(self.replica.named_modules()):
            if isinstance(m, nn.Conv2d | nn.Linear):
                new: nn.Module = (
                    GroupedConv2d(m, self.calls)
                    if isinstance(m, nn.Conv2d)
                    else GroupedLinear(self.calls)
                )
                parent_name, _, child = name.rpartition(".")
                setattr(self.replica.get_submodule(parent_name), child, new)
                for attr in ("weight", "bias"):
                    if getattr(m, attr) is not None:
                        self.slots[f"{name}.{attr}"] = (new, attr)
        if set(self.slots) != set(pb.names):
            raise ValueError(
                f"grouped engine: parameters {sorted(set(pb.names) ^ set(self.slots))}"
            )
        self.slot_names = {(id(m), attr): n for n, (m, attr) in self.slots.items()}
        self.classifier = self.slots[f"{pb.classifier}.weight"][0] if pb.classifier else None
        self._cache: (
            tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]] | None
        ) = None

    def _rows(self, rows: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Weights (grouped layout) and flat targets of ``rows``, cached per active set."""
        if self._cache is not None and torch.equal(self._cache[0], rows):
            return self._cache[1], self._cache[2]
        k = rows.numel()
        full = k == next(iter(self.pb.params.values())).shape[0]
        params, targets = {}, {}
        for n, v in self.pb.params.items():
            v = v if full else v.index_select(0, rows)
            if isinstance(self.slots[n][0], GroupedConv2d):
                v = v.reshape(k * v.shape[1], *v.shape[2:])
                v = nhwc(v) if v.dim() == 4 else v  # the layout the convolutions run in
            params[n] = v
            t = self.pb.targets[n]
            t = t if full else t.index_select(0, rows)
            conv_weight = isinstance(self.slots[n][0], GroupedConv2d) and t.dim() == 5
            targets[n] = flat_nhwc(t.flatten(0, 1), k) if conv_weight else t.reshape(k, -1)
        self._cache = (rows.clone(), params, targets)
        return params, targets

    def __call__(
        self,
        rows: torch.Tensor,
        x_rows: torch.Tensor,
        need_grad: bool = True,
        regularised: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        pb, k = self.pb, rows.numel()
        params, targets = self._rows(rows)
        for n, value in params.items():
            mod, attr = self.slots[n]
            mod.k = k
            setattr(mod, attr, value)
        self.calls.clear()
        with torch.enable_grad():
            xr = x_rows.detach().requires_grad_(True)
            dummy, variables = pb.split(xr)
            inputs = pb.inputs(dummy)
            if inputs.dim() == 6:  # [k,T,B,C,H,W] -> [T,B,k*C,H,W]
                inp = inputs.permute(1, 2, 0, 3, 4, 5).reshape(
                    *inputs.shape[1:3], -1, *inputs.shape[-2:]
                )
            else:  # [k,B,C,H,W] -> [B,k*C,H,W]
                inp = inputs.transpose(0, 1).reshape(inputs.shape[1], -1, *inputs.shape[-2:])
            out = self.replica(inp.contiguous())  # [B, k*K]
            out = out.view(out.shape[0], k, -1).transpose(0, 1)  # [k, B, K]
            calls, self.calls[:] = list(self.calls), []
            feature_loss = self._feature_loss(rows, calls, out.shape[1])
            if self.features_only:
                assert feature_loss is not None
                loss = feature_loss
            else:
                loss = self._gradient_loss(rows, out, variables, calls, targets, need_grad)
                if feature_loss is not None and pb.feature_weight:
                    loss = loss + pb.feature_weight * feature_loss
            for regulariser, weight in self.regularisers if regularised else ():
                loss = loss + weight * regulariser(dummy)
            if not need_grad:
                return loss.detach(), None
            (gx,) = torch.autograd.grad(loss.sum(), xr)
        return loss.detach(), gx

    def _gradient_loss(
        self,
        rows: torch.Tensor,
        out: torch.Tensor,
        variables: list[torch.Tensor],
        calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]],
        targets: dict[str, torch.Tensor],
        need_grad: bool,
    ) -> torch.Tensor:
        """The objective between each problem's simulated gradient and its target, [k]."""
        pb = self.pb
        consts = {c: v[rows] for c, v in pb.consts.items()}
        task_loss = pb.task(out, variables, consts)
        g_out = torch.autograd.grad(
            task_loss.sum(), [y for _, _, y in calls], create_graph=need_grad, allow_unused=True
        )
        grads: dict[str, torch.Tensor] = {}
        for (mod, inp_, _), gy in zip(calls, g_out, strict=True):
            if gy is None:
                continue
            for attr, g in mod.param_grads(inp_, gy).items():  # type: ignore[operator]
                n = self.slot_names[(id(mod), attr)]
                grads[n] = grads[n] + g if n in grads else g
        simulated = [  # a parameter the task loss does not reach has gradient 0
            grads[n] if n in grads else torch.zeros_like(targets[n]) for n in pb.names
        ]
        assert self.objective is not None
        target = [targets[n] for n in pb.names]
        if pb.defences:  # the adaptive attacker's mirror, one update per row
            simulated = adapt(simulated, target, pb.defences, batched=True)
        return self.objective(simulated, target)

    def _feature_loss(
        self,
        rows: torch.Tensor,
        calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]],
        batch: int,
    ) -> torch.Tensor | None:
        """Squared error of each problem's classifier inputs against the leaked ones, summed
        per sample and averaged over its samples, [k] (the looped ``features`` objective);
        None when the loss does not use it."""
        if self.pb.features is None:
            return None
        (xs,) = [x for mod, x, _ in calls if mod is self.classifier]  # [k, (T*)B, F]
        feats = xs.reshape(xs.shape[0], -1, batch, xs.shape[-1]).mean(dim=1)  # [k, B, F]
        return ((feats - self.pb.features[rows]) ** 2).flatten(1).sum(dim=1) / batch
