"""Victim models: DLG LeNet layout and init; SNN twin's surrogate equals SpikingJelly's ATan."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import surrogate

from models import build_model
from models.lenet import LeNet
from models.snn_lenet import SNNLeNet


@pytest.mark.parametrize(("shape", "hidden"), [((1, 28, 28), 588), ((3, 32, 32), 768)])
def test_lenet_matches_dlg_layout(shape: tuple[int, int, int], hidden: int) -> None:
    model = LeNet(shape, 10)
    assert model.fc.in_features == hidden
    assert model(torch.rand(2, *shape)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.stride[0], c.padding[0], c.kernel_size[0]) for c in convs] == [
        (2, 2, 5),
        (2, 2, 5),
        (1, 2, 5),
    ]
    for p in model.parameters():  # DLG's weights_init: U(-0.5, 0.5) for weights and biases
        assert p.min() >= -0.5 and p.max() <= 0.5
        if p.numel() > 100:
            assert abs(float(p.detach().std()) - 0.5 / 3**0.5) < 0.03


def test_snn_twin_shares_parameter_names_and_init() -> None:
    torch.manual_seed(3)
    ann = LeNet()
    torch.manual_seed(3)
    snn = SNNLeNet(T=4)
    assert ann.state_dict().keys() == snn.state_dict().keys()
    for k, v in ann.state_dict().items():
        assert torch.equal(v, snn.state_dict()[k])


def test_snn_input_replicated_over_T_and_state_reset() -> None:
    torch.manual_seed(0)
    snn = SNNLeNet(T=4)
    x = torch.rand(3, 1, 28, 28)
    out = snn(x)
    assert out.shape == (3, 10)
    assert torch.equal(out, snn(x))  # no membrane state leaks between forwards
    assert torch.equal(out, snn(x.unsqueeze(0).repeat(4, 1, 1, 1, 1)))


def second_order(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """Logits, parameter gradients and d/dx ||dL/dW||^2, the quantities attacks rely on."""
    x = x.clone().requires_grad_(True)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    gnorm = sum((g**2).sum() for g in grads)
    (dx,) = torch.autograd.grad(gnorm, x)
    return logits.detach(), [g.detach() for g in grads], dx


def test_surrogate_matches_spikingjelly_atan_to_float64_precision() -> None:
    torch.manual_seed(1)
    ours = SNNLeNet(T=4).double()
    theirs = SNNLeNet(T=4, surrogate=surrogate.ATan()).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    y = torch.tensor([3, 7])
    lo, go, dxo = second_order(ours, x, y)
    lt, gt, dxt = second_order(theirs, x, y)
    assert torch.allclose(lo, lt, rtol=0, atol=1e-12)
    for a, b in zip(go, gt, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert dxo.abs().max() > 0  # double backward reaches the input through the surrogate
    assert torch.allclose(dxo, dxt, rtol=1e-9, atol=1e-12)


def test_registry_rejects_unknown_model() -> None:
    with pytest.raises(ValueError, match="valid: lenet, lenet5, snn-lenet"):
        build_model("resnet", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="T must be >= 1"):
        SNNLeNet(T=0)
