"""Grouped convolution whose double backward never loops over groups.

``_Conv`` computes ``conv2d(x, w, b)``; its backward goes through ``_ConvData`` (input
gradient, a transposed convolution) and ``_ConvWeight`` (weight gradient), each
differentiable again through the others, so a gradient-matching loss (which differentiates
a parameter gradient with respect to the input) costs grouped convolutions only. ATen's own
convolution double backward would loop over the P groups.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd import Function

Geom = tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]  # stride, pad, dil, groups


def _conv_input_grad(
    gy: torch.Tensor, w: torch.Tensor, geom: Geom, in_hw: tuple[int, ...]
) -> torch.Tensor:
    s, p, d, g = geom
    if w.shape[1] == 1 and tuple(d) == (1, 1):
        return _conv_input_grad_one_channel(gy, w, geom, in_hw)
    x_like = torch.empty(
        gy.shape[0],
        w.shape[1] * g,
        *in_hw,
        dtype=gy.dtype,
        device=gy.device,
        memory_format=_NHWC,
    )
    return torch.ops.aten.convolution_backward(
        nhwc(gy), x_like, nhwc(w), None, s, p, d, False, (0, 0), g, (True, False, False)
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
    gy_t = gy.permute(0, 2, 3, 1).reshape(n * ho * wo, g, o).permute(1, 2, 0)  # a view if NHWC
    cols = torch.bmm(w.reshape(g, o, kh * kw).transpose(1, 2), gy_t)  # [g, kh*kw, n*ho*wo]
    cols = cols.view(g, kh, kw, n, ho, wo)
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
    w_like = torch.empty(w_shape, dtype=x.dtype, device=x.device, memory_format=_NHWC)
    gw = torch.ops.aten.convolution_backward(  # all NHWC, or oneDNN converts gy back to NCHW
        nhwc(gy), nhwc(x), w_like, None, s, p, d, False, (0, 0), g, (False, True, False)
    )[1]
    return gw  # NHWC; GroupedConv2d.param_grads flattens it in that order, copy-free


_NHWC = torch.channels_last


def nhwc(t: torch.Tensor) -> torch.Tensor:
    """``t`` in channels-last layout with canonical strides (a no-op if it is): oneDNN's
    grouped convolutions and their backward passes run ~1.5-2x faster on it here than on
    NCHW. ``contiguous`` alone keeps odd strides of size-1 dims (a batch stride of C when
    N = 1), which torch's float64 grouped weight gradient reads wrongly."""
    n, c, h, w = t.shape
    if t.stride() == (c * h * w, 1, w * c, c):
        return t
    return torch.empty_like(t, memory_format=_NHWC).copy_(t)


class Conv(Function):
    """y = conv2d(x, w, b); backward through _ConvData/_ConvWeight (differentiable again)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, geom: Geom
    ) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.geom, ctx.has_bias = geom, b is not None
        s, p, d, g = geom
        return F.conv2d(nhwc(x), nhwc(w), b, s, p, d, g)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        gx = (
            ConvData.apply(gy, w, ctx.geom, tuple(x.shape[2:])) if ctx.needs_input_grad[0] else None
        )
        gw = ConvWeight.apply(x, gy, ctx.geom, tuple(w.shape)) if ctx.needs_input_grad[1] else None
        gb = gy.sum(dim=(0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


class ConvData(Function):
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
        ggy = Conv.apply(g, w, None, ctx.geom) if ctx.needs_input_grad[0] else None
        gw = ConvWeight.apply(g, gy, ctx.geom, tuple(w.shape)) if ctx.needs_input_grad[1] else None
        return ggy, gw, None, None


class ConvWeight(Function):
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
            ConvData.apply(gy, gw, ctx.geom, tuple(x.shape[2:]))
            if ctx.needs_input_grad[0]
            else None
        )
        ggy = Conv.apply(x, gw, None, ctx.geom) if ctx.needs_input_grad[1] else None
        return gx, ggy, None, None
