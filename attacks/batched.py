"""Reconstruct many captures at once: P independent gradient-matching attacks in one batch.

``reconstruct_batch(attack, captures)`` returns what ``[attack.reconstruct(c) for c in
captures]`` returns, up to float rounding: the same per-attempt setup (victim, target,
``capture_generator`` seed per capture and restart, dummy, the attack's own ``label_task``),
the same L-BFGS control flow per problem (:class:`attacks.batched_lbfgs.BatchedLBFGS`), the
same step projection, hygiene (``nonfinite``/``diverged``/``converged``), binarisation,
scoring and choice among restarts. Only the P gradient-matching losses
``sum_l ||dL_p/dW_l - g_l||^2`` and their gradients are computed in one batch, by one of:

* ``"grouped"``: one replica of the victim in which every convolution becomes a grouped
  convolution (``groups * P``: problems are folded into the channel axis) and every linear
  layer a batched matmul, each problem with its own weights. Task losses are summed (not
  averaged) over problems, so each problem's gradients are its own. Parameter gradients are
  formed from dL/d(layer output) with custom autograd functions (forward, backward-data and
  backward-weight grouped convolutions, each differentiable again), so the weights never
  require grad and the double backward computes only what the dummy's gradient needs; ATen's
  own convolution double backward would loop over the P groups. Used for victims made only
  of known layers (``GROUPED_MODELS``).
* ``"vmap"``: ``torch.func.vmap`` of ``torch.func.grad`` over a per-problem function calling
  the victim with its own weights through ``torch.func.functional_call``. Works for any model
  torch.func can trace (the SNN surrogate is pure torch; ``SNNLeNet.forward`` resets its
  neurons inside the traced function); 1.4-2.6x slower than grouped on the LeNets.

``engine="auto"`` takes the grouped engine when the victim is supported, else vmap. Label
handling is looked up per attack class (``BATCHED_LABEL_TASKS``) and checked against the
attack's own ``LabelTask.loss`` before use; options the engine does not mirror are refused.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import neuron as sj_neuron
from torch import nn
from torch.autograd import Function

from attacks.batched_lbfgs import BatchedLBFGS, Closure
from attacks.dlg import DLG
from attacks.gradient_matching import (
    RESTART_SEED_STRIDE,
    AttackConfig,
    GradientMatchingAttack,
    LabelTask,
    better,
    capture_generator,
    scored_output,
    step_projection,
)
from attacks.idlg import IDLG
from attacks.spike_domain import binarise, init_dummy, time_major
from attacks.types import Capture, PublicInfo, Reconstruction
from attacks.victim import target_gradients, victim_from_capture
from models.lenet import LeNet
from models.lenet5_victim import LeNet5Victim
from models.snn_lenet import SNNLeNet
from models.snn_lenet5 import SNNLeNet5

ENGINES = ("auto", "grouped", "vmap")

# A label task in batched form: (logits [k,B,K], variables [k,*shape] each, per-problem
# constants [k,...] each) -> task loss per problem [k]. Must equal LabelTask.loss row by row.
BatchedTaskLoss = Callable[
    [torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]], torch.Tensor
]


# ---------------------------------------------------------------------------------------
# label tasks in batched form
# ---------------------------------------------------------------------------------------
def _dlg_task(tasks: Sequence[LabelTask]) -> tuple[BatchedTaskLoss, dict[str, torch.Tensor]]:
    """DLG: soft-label cross-entropy against softmax of the optimised label logits."""

    def loss(out: torch.Tensor, variables: list[torch.Tensor], consts: dict) -> torch.Tensor:
        target = torch.softmax(variables[0], dim=-1)
        return torch.mean(torch.sum(-target * F.log_softmax(out, dim=-1), dim=-1), dim=-1)

    return loss, {}


def _idlg_task(tasks: Sequence[LabelTask]) -> tuple[BatchedTaskLoss, dict[str, torch.Tensor]]:
    """iDLG: cross-entropy with the label inferred from the classifier gradient."""

    def loss(out: torch.Tensor, variables: list[torch.Tensor], consts: dict) -> torch.Tensor:
        k, b, c = out.shape
        ce = F.cross_entropy(
            out.reshape(k * b, c), consts["label"].reshape(k * b), reduction="none"
        )
        return ce.view(k, b).mean(dim=1)

    return loss, {"label": torch.stack([t.labels().detach() for t in tasks])}


# Attack class -> builder of its batched task loss (looked up along the MRO). Every build is
# checked against the attack's own LabelTask.loss on random logits before it is used.
BATCHED_LABEL_TASKS: dict[type, Callable[..., tuple[BatchedTaskLoss, dict[str, torch.Tensor]]]] = {
    DLG: _dlg_task,
    IDLG: _idlg_task,
}


def _batched_task(
    attack: GradientMatchingAttack, tasks: Sequence[LabelTask], num_classes: int, batch: int
) -> tuple[BatchedTaskLoss, dict[str, torch.Tensor]]:
    builder = next(
        (BATCHED_LABEL_TASKS[c] for c in type(attack).__mro__ if c in BATCHED_LABEL_TASKS), None
    )
    if builder is None:
        raise NotImplementedError(
            f"no batched label task for attack {attack.name!r}; register one in "
            "attacks.batched.BATCHED_LABEL_TASKS"
        )
    fn, consts = builder(tasks)
    probe = torch.randn(len(tasks), batch, num_classes, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        variables = [
            torch.stack([t.variables[i].detach() for t in tasks])
            for i in range(len(tasks[0].variables))
        ]
        batched = fn(probe, variables, consts)
        looped = torch.stack([t.loss(probe[p], slice(None)).detach() for p, t in enumerate(tasks)])
    if not torch.allclose(batched, looped, rtol=1e-5, atol=1e-6):
        raise NotImplementedError(
            f"batched label task of attack {attack.name!r} does not match its LabelTask.loss "
            f"(max difference {float((batched - looped).abs().max()):.3g})"
        )
    return fn, consts


# ---------------------------------------------------------------------------------------
# grouped convolution with a double backward that never loops over groups
# ---------------------------------------------------------------------------------------
Geom = tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]  # stride, pad, dil, groups


def _conv_input_grad(
    gy: torch.Tensor, w: torch.Tensor, geom: Geom, in_hw: tuple[int, ...]
) -> torch.Tensor:
    s, p, d, g = geom
    if w.shape[1] == 1 and tuple(d) == (1, 1):
        return _conv_input_grad_one_channel(gy, w, geom, in_hw)
    x_like = gy.new_empty(gy.shape[0], w.shape[1] * g, *in_hw)
    return torch.ops.aten.convolution_backward(
        gy, x_like, w, None, s, p, d, False, (0, 0), g, (True, False, False)
    )[0]


def _conv_input_grad_one_channel(
    gy: torch.Tensor, w: torch.Tensor, geom: Geom, in_hw: tuple[int, ...]
) -> torch.Tensor:
    """Input gradient of a grouped conv with one input channel per group (a first layer on
    gray images): oneDNN's grouped backward-data is ~5x slower there than a batched matmul
    per group followed by col2im as kh*kw strided adds."""
    (sh, sw), (ph, pw), _, g = geom
    n, _, ho, wo = gy.shape
    o, kh, kw = w.shape[0] // g, w.shape[2], w.shape[3]
    cols = torch.bmm(  # [g, kh*kw, o] @ [g, o, n*ho*wo]
        w.reshape(g, o, kh * kw).transpose(1, 2),
        gy.reshape(n, g, o, ho * wo).permute(1, 2, 0, 3).reshape(g, o, n * ho * wo),
    ).view(g, kh, kw, n, ho, wo)
    hp = max(in_hw[0] + 2 * ph, kh + sh * (ho - 1))
    wp = max(in_hw[1] + 2 * pw, kw + sw * (wo - 1))
    out = gy.new_zeros(n, g, hp, wp)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += cols[
                :, i, j
            ].transpose(0, 1)
    return out[:, :, ph : ph + in_hw[0], pw : pw + in_hw[1]]


def _conv_weight_grad(
    x: torch.Tensor, gy: torch.Tensor, geom: Geom, w_shape: tuple[int, ...]
) -> torch.Tensor:
    s, p, d, g = geom
    w_like = x.new_empty(w_shape)
    if w_shape[1] > 1:  # oneDNN's grouped backward-weight is ~1.5-2x faster on NHWC here
        x, gy = x.contiguous(memory_format=_NHWC), gy.contiguous(memory_format=_NHWC)
    gw = torch.ops.aten.convolution_backward(
        gy, x, w_like, None, s, p, d, False, (0, 0), g, (False, True, False)
    )[1]
    return gw.contiguous()


_NHWC = torch.channels_last


class _Conv(Function):
    """y = conv2d(x, w, b); backward through _ConvData/_ConvWeight (differentiable again)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, geom: Geom
    ) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.geom, ctx.has_bias = geom, b is not None
        s, p, d, g = geom
        return F.conv2d(x, w, b, s, p, d, g)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        gx = (
            _ConvData.apply(gy, w, ctx.geom, tuple(x.shape[2:]))
            if ctx.needs_input_grad[0]
            else None
        )
        gw = _ConvWeight.apply(x, gy, ctx.geom, tuple(w.shape)) if ctx.needs_input_grad[1] else None
        gb = gy.sum(dim=(0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


class _ConvData(Function):
    """dx = conv2d's input gradient for output gradient gy (a transposed convolution)."""

    @staticmethod
    def forward(
        ctx: Any, gy: torch.Tensor, w: torch.Tensor, geom: Geom, in_hw: tuple[int, ...]
    ) -> torch.Tensor:
        ctx.save_for_backward(gy, w)
        ctx.geom = geom
        return _conv_input_grad(gy, w, geom, in_hw)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        gy, w = ctx.saved_tensors  # <g, dx(gy, w)> = <gy, conv(g, w)>
        ggy = _Conv.apply(g, w, None, ctx.geom) if ctx.needs_input_grad[0] else None
        gw = _ConvWeight.apply(g, gy, ctx.geom, tuple(w.shape)) if ctx.needs_input_grad[1] else None
        return ggy, gw, None, None


class _ConvWeight(Function):
    """dw = conv2d's weight gradient for input x and output gradient gy."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, gy: torch.Tensor, geom: Geom, w_shape: tuple[int, ...]
    ) -> torch.Tensor:
        ctx.save_for_backward(x, gy)
        ctx.geom = geom
        return _conv_weight_grad(x, gy, geom, w_shape)

    @staticmethod
    def backward(ctx: Any, gw: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, gy = ctx.saved_tensors  # <gw, dw(x, gy)> = <gy, conv(x, gw)>
        gx = (
            _ConvData.apply(gy, gw, ctx.geom, tuple(x.shape[2:]))
            if ctx.needs_input_grad[0]
            else None
        )
        ggy = _Conv.apply(x, gw, None, ctx.geom) if ctx.needs_input_grad[1] else None
        return gx, ggy, None, None


class _GroupedConv2d(nn.Module):
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
        y = _Conv.apply(x4, self.weight, self.bias, self.geom())
        self.calls.append((self, x4, y))
        return y.view(*lead, *y.shape[1:])

    def param_grads(self, x4: torch.Tensor, gy: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-problem weight/bias gradients [k, ...] from the output gradient (differentiable)."""
        assert self.weight is not None
        gw = _ConvWeight.apply(x4, gy, self.geom(), tuple(self.weight.shape))
        grads = {"weight": gw.view(self.k, -1)}
        if self.bias is not None:
            grads["bias"] = gy.sum(dim=(0, 2, 3)).view(self.k, -1)
        return grads


class _GroupedLinear(nn.Module):
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


def _grouped_supported(model: nn.Module) -> str | None:
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


# ---------------------------------------------------------------------------------------
# evaluators: (rows, x_rows, need_grad) -> (matching loss [k], its gradient [k, n] | None)
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Problems:
    """The stacked per-problem inputs of an evaluator."""

    model: nn.Module
    names: list[str]  # parameter names, named_parameters() order
    params: dict[str, torch.Tensor]  # [P, *shape]
    buffers: dict[str, torch.Tensor]  # [P, *shape]
    targets: dict[str, torch.Tensor]  # [P, *shape]
    dummy_shape: tuple[int, ...]
    var_shapes: list[tuple[int, ...]]
    task: BatchedTaskLoss
    consts: dict[str, torch.Tensor]  # [P, ...]

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Flat rows [k, n] -> dummy [k, *dummy_shape] and label variables [k, *shape]."""
        k = x.shape[0]
        nd = _numel(self.dummy_shape)
        dummy = x[:, :nd].reshape(k, *self.dummy_shape)
        out, offset = [], nd
        for shape in self.var_shapes:
            size = _numel(shape)
            out.append(x[:, offset : offset + size].reshape(k, *shape))
            offset += size
        return dummy, out


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class _GroupedEvaluator:
    """All problems through one replica with grouped convolutions and batched linears.

    The parameter gradients are formed from dL/d(layer output) (ConvWeight / bmm), not by
    differentiating with respect to weight leaves: the weights never require grad, so the
    double backward computes no weight gradient it does not need.
    """

    def __init__(self, pb: _Problems) -> None:
        self.pb = pb
        self.time_major = len(pb.dummy_shape) == 5  # [T,B,C,H,W], else [B,C,H,W]
        self.replica = copy.deepcopy(pb.model)
        self.calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
        self.slots: dict[str, tuple[nn.Module, str]] = {}
        for name, m in list(self.replica.named_modules()):
            if isinstance(m, nn.Conv2d | nn.Linear):
                new: nn.Module = (
                    _GroupedConv2d(m, self.calls)
                    if isinstance(m, nn.Conv2d)
                    else _GroupedLinear(self.calls)
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
            if isinstance(self.slots[n][0], _GroupedConv2d):
                v = v.reshape(k * v.shape[1], *v.shape[2:])
            params[n] = v
            t = self.pb.targets[n]
            targets[n] = (t if full else t.index_select(0, rows)).reshape(k, -1)
        self._cache = (rows.clone(), params, targets)
        return params, targets

    def __call__(
        self, rows: torch.Tensor, x_rows: torch.Tensor, need_grad: bool = True
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
            if self.time_major:  # [k,T,B,C,H,W] -> [T,B,k*C,H,W]
                inp = dummy.permute(1, 2, 0, 3, 4, 5).reshape(
                    *dummy.shape[1:3], -1, *dummy.shape[-2:]
                )
            else:  # [k,B,C,H,W] -> [B,k*C,H,W]
                inp = dummy.transpose(0, 1).reshape(dummy.shape[1], -1, *dummy.shape[-2:])
            out = self.replica(inp.contiguous())  # [B, k*K]
            out = out.view(out.shape[0], k, -1).transpose(0, 1)  # [k, B, K]
            consts = {c: v[rows] for c, v in pb.consts.items()}
            task_loss = pb.task(out, variables, consts)
            calls, self.calls[:] = list(self.calls), []
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
            dist: torch.Tensor = 0  # type: ignore[assignment]
            for n in pb.names:  # gradient_distance's order and summation
                g = grads.get(n)
                diff = -targets[n] if g is None else g - targets[n]
                dist = dist + (diff**2).sum(dim=1)
            if not need_grad:
                return dist.detach(), None
            (gx,) = torch.autograd.grad(dist.sum(), xr)
        return dist.detach(), gx


class _VmapEvaluator:
    """torch.func.vmap of grad over a per-problem functional_call of the victim."""

    def __init__(self, pb: _Problems) -> None:
        self.pb = pb
        model, names = pb.model, pb.names

        def matching_loss(x, params, buffers, targets, consts):  # type: ignore[no-untyped-def]
            dummy, variables = pb.split(x.unsqueeze(0))

            def task_loss(p):  # type: ignore[no-untyped-def]
                out = torch.func.functional_call(model, {**p, **buffers}, (dummy[0],))
                one = {c: v.unsqueeze(0) for c, v in consts.items()}
                return pb.task(out.unsqueeze(0), variables, one)[0]

            grads = torch.func.grad(task_loss)(params)
            return sum(((grads[n] - targets[n]) ** 2).sum() for n in names)

        self.loss_and_grad = torch.func.vmap(torch.func.grad_and_value(matching_loss))
        self.loss = torch.func.vmap(matching_loss)

    def __call__(
        self, rows: torch.Tensor, x_rows: torch.Tensor, need_grad: bool = True
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
                return self.loss(*args).detach(), None
            g, loss = self.loss_and_grad(*args)
        return loss.detach(), g.detach()


# ---------------------------------------------------------------------------------------
# public entry point
# ---------------------------------------------------------------------------------------
# AttackConfig fields this engine mirrors; any other field must keep its default.
MIRRORED_CONFIG = frozenset(
    {
        "iterations",
        "lr",
        "init",
        "sigma",
        "clamp",
        "threshold",
        "tau",
        "tolerance",
        "diverge_factor",
        "restarts",
        "seed",
    }
)


def _check_attack(attack: GradientMatchingAttack) -> None:
    """Refuse what the batched engine would silently get wrong."""
    if not isinstance(attack, GradientMatchingAttack):
        raise NotImplementedError(
            f"attack {getattr(attack, 'name', attack)!r} is not L-BFGS gradient matching"
        )
    for method in ("reconstruct", "attempt"):
        if getattr(type(attack), method) is not getattr(GradientMatchingAttack, method):
            raise NotImplementedError(
                f"attack {attack.name!r} overrides {method}(); batch it by hand"
            )
    for f in dataclasses.fields(AttackConfig):
        value = getattr(attack.config, f.name)
        if f.name not in MIRRORED_CONFIG and value != f.default:
            raise NotImplementedError(
                f"batched engine does not implement AttackConfig.{f.name}={value!r}"
            )


def _common_public(captures: Sequence[Capture]) -> PublicInfo:
    public = captures[0].public
    for c in captures[1:]:
        if c.public != public:
            fields = [
                f"{f.name} ({getattr(public, f.name)!r} vs {getattr(c.public, f.name)!r})"
                for f in dataclasses.fields(PublicInfo)
                if getattr(public, f.name) != getattr(c.public, f.name)
            ]
            raise ValueError(
                f"captures must share PublicInfo; capture round={c.round} client={c.client} "
                f"differs from the first in {', '.join(fields)}: group captures by public info"
            )
    if public.update != "gradient":
        raise NotImplementedError(
            f"batched engine matches FedSGD gradients only, not FedAvg {public.update!r} "
            "updates: attack them one at a time"
        )
    return public


@dataclasses.dataclass
class _Batch:
    """A prepared batch: problems (capture x restart), their start point and loss evaluator."""

    public: PublicInfo
    problems: _Problems
    tasks: list[LabelTask]
    x: torch.Tensor  # [P*restarts, n] initial variables, flattened as LBFGS flattens them
    evaluate: Closure  # (rows, x_rows[, need_grad]) -> (loss [k], grad [k, n])


def _prepare(attack: GradientMatchingAttack, captures: Sequence[Capture], engine: str) -> _Batch:
    """The per-attempt setup of ``GradientMatchingAttack.attempt`` for every capture and
    restart, in the same order (victim, target, seeded generator, dummy, label task)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    _check_attack(attack)
    public = _common_public(captures)
    cfg = attack.config
    model = victim_from_capture(captures[0])
    names = [n for n, _ in model.named_parameters()]
    params: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    buffers: dict[str, list[torch.Tensor]] = {n: [] for n, _ in model.named_buffers()}
    targets: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    flats, tasks = [], []
    dummy_shape: tuple[int, ...] = ()
    var_shapes: list[tuple[int, ...]] = []
    for i, capture in enumerate(captures):
        if i > 0:
            model.load_state_dict(dict(capture.global_state))
        target = target_gradients(model, capture)
        for restart in range(cfg.restarts):
            for (n, p), g in zip(model.named_parameters(), target, strict=True):
                params[n].append(p.detach().clone())
                targets[n].append(g.detach())
            for n, b in model.named_buffers():
                buffers[n].append(b.detach().clone())
            gen = capture_generator(cfg.seed + restart * RESTART_SEED_STRIDE, capture)
            dummy = init_dummy(public, cfg.init, cfg.sigma, gen)
            task = attack.label_task(model, capture, gen)
            shapes = [tuple(v.shape) for v in task.variables]
            if not tasks:
                dummy_shape, var_shapes = tuple(dummy.shape), shapes
            elif shapes != var_shapes:
                raise ValueError(
                    f"label variables of capture {i} have shapes {shapes}, not {var_shapes}"
                )
            flats.append(
                torch.cat([dummy.reshape(-1), *[v.detach().reshape(-1) for v in task.variables]])
            )
            tasks.append(task)

    task_fn, consts = _batched_task(attack, tasks, public.num_classes, public.batch_size)
    pb = _Problems(
        model=model,
        names=names,
        params={n: torch.stack(v) for n, v in params.items()},
        buffers={n: torch.stack(v) for n, v in buffers.items()},
        targets={n: torch.stack(v) for n, v in targets.items()},
        dummy_shape=dummy_shape,
        var_shapes=var_shapes,
        task=task_fn,
        consts=consts,
    )
    reason = _grouped_supported(model)
    if engine == "auto":
        engine = "grouped" if reason is None else "vmap"
    if engine == "grouped" and reason is not None:
        raise ValueError(f"grouped engine cannot replicate this victim: {reason}")
    evaluate = _GroupedEvaluator(pb) if engine == "grouped" else _VmapEvaluator(pb)
    return _Batch(public, pb, tasks, torch.stack(flats), evaluate)


def reconstruct_batch(
    attack: GradientMatchingAttack, captures: Sequence[Capture], engine: str = "auto"
) -> list[Reconstruction]:
    """``[attack.reconstruct(c) for c in captures]`` computed as one batch.

    All captures must share the same :class:`PublicInfo` (group them by it first; a mismatch
    raises ValueError). Each capture's ``restarts`` attempts are separate problems of the
    batch; the best one is kept as ``reconstruct`` keeps it. ``engine``: "auto" (grouped when
    the victim is supported, else vmap), "grouped" or "vmap". ``seconds`` of each result is
    the batch's wall time divided by the number of captures.
    """
    start = time.perf_counter()
    if len(captures) == 0:
        return []
    batch = _prepare(attack, captures, engine)
    cfg, public, pb, x = attack.config, batch.public, batch.problems, batch.x
    n_problems, nd = x.shape[0], _numel(pb.dummy_shape)
    dummies = x[:, :nd].view(n_problems, *pb.dummy_shape)  # a view: projections act on x
    status, steps = batched_lbfgs_attack(
        x,
        batch.evaluate,
        cfg.iterations,
        cfg.lr,
        project=step_projection(dummies, cfg, public),
        tolerance=cfg.tolerance,
        diverge_factor=cfg.diverge_factor,
    )
    if cfg.threshold == "post":  # Algorithm 1
        dummies.copy_(binarise(dummies, cfg.tau))
    final, _ = batch.evaluate(torch.arange(n_problems), x, need_grad=False)  # type: ignore[call-arg]
    seconds = (time.perf_counter() - start) / len(captures)

    results = []
    for i in range(len(captures)):
        best: Reconstruction | None = None
        for p in range(i * cfg.restarts, (i + 1) * cfg.restarts):
            rec = dummies[p].clone()
            task = batch.tasks[p]
            _, variables = pb.split(x[p : p + 1])
            with torch.no_grad():  # the task's own labels() reads its variables
                for v, value in zip(task.variables, variables, strict=True):
                    v.copy_(value[0])
            attempt = Reconstruction(
                images=scored_output(rec, public, cfg.clamp),
                labels=task.labels().detach(),
                grad_loss=float(final[p]),
                status=status[p],
                iterations=steps[p],
                seconds=seconds,
                dummy=rec if time_major(public) else None,
            )
            if best is None or better(attempt, best):
                best = attempt
        assert best is not None
        results.append(best)
    return results


def batched_lbfgs_attack(
    x: torch.Tensor,
    closure: Closure,
    iterations: int,
    lr: float,
    project: Callable[[], object] | None = None,
    tolerance: float = 0.0,
    diverge_factor: float = math.inf,
) -> tuple[list[str], list[int]]:
    """``attacks.gradient_matching.lbfgs`` applied to each row of ``x`` ([P, n], in place).

    ``iterations`` outer steps of one LBFGS.step per problem; after each, ``project`` (which
    acts on all of ``x``; rows already stopped are put back), then per problem: a non-finite
    step loss or iterate, or a loss above ``diverge_factor`` x its step-1 loss, restores the
    previous iterate and stops it ("nonfinite"/"diverged"); a loss at or below ``tolerance``
    stops it ("converged"). Returns per-problem status and steps taken.
    """
    P = x.shape[0]
    opt = BatchedLBFGS(x, lr=lr)
    alive = torch.ones(P, dtype=torch.bool)
    status, steps = ["ok"] * P, [iterations] * P
    saved = x.clone()
    initial = torch.full((P,), math.nan, dtype=torch.float64)
    for step in range(1, iterations + 1):
        if not bool(alive.any()):
            break
        loss = opt.step(closure, alive)
        if project is not None:
            stopped = ~alive
            kept = x[stopped]
            project()
            x[stopped] = kept
        if step == 1:
            initial = loss.clone()
        finite = torch.isfinite(loss) & torch.isfinite(x).all(dim=1)
        outcomes = (
            ("nonfinite", alive & ~finite, True),
            ("diverged", alive & finite & (loss > diverge_factor * initial), True),
            (
                "converged",
                alive & finite & ~(loss > diverge_factor * initial) & (loss <= tolerance),
                False,
            ),
        )
        for name, hit, restore in outcomes:
            if not bool(hit.any()):
                continue
            if restore:
                x[hit] = saved[hit]
            for p in hit.nonzero().view(-1).tolist():
                status[p], steps[p] = name, step
            alive &= ~hit
        saved[alive] = x[alive]
    return status, steps
