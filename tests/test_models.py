"""Victim models: DLG and GRNN LeNet layouts and init; SNN twins (IF and LIF) share the ANN's
parameters, and their surrogate equals SpikingJelly's ATan."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import neuron as spikingjelly_neuron
from spikingjelly.activation_based import surrogate

from models import ARMS, VICTIMS, build_model, victim_model_name
from models.lenet import LeNet
from models.lenet5_victim import LeNet5Victim
from models.snn_lenet import SNNLeNet
from models.snn_lenet5 import SNNLeNet5


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


@pytest.mark.parametrize(
    ("ann_cls", "snn_cls", "shape"),
    [
        (LeNet, SNNLeNet, (1, 28, 28)),
        (LeNet5Victim, SNNLeNet5, (1, 28, 28)),
        (LeNet5Victim, SNNLeNet5, (3, 32, 32)),
    ],
)
@pytest.mark.parametrize("neuron", ["if", "lif"])
def test_snn_twin_shares_parameter_names_and_init(
    ann_cls: type, snn_cls: type, shape: tuple[int, int, int], neuron: str
) -> None:
    torch.manual_seed(3)
    ann = ann_cls(shape, 10)
    torch.manual_seed(3)
    snn = snn_cls(shape, 10, T=4, neuron=neuron)
    assert ann.state_dict().keys() == snn.state_dict().keys()
    for k, v in ann.state_dict().items():
        assert torch.equal(v, snn.state_dict()[k])


@pytest.mark.parametrize(("shape", "flat"), [((1, 28, 28), 400), ((3, 32, 32), 400)])
def test_grnn_lenet5_layout(shape: tuple[int, int, int], flat: int) -> None:
    """GRNN's code: unpadded 5x5 convs on 32x32 (16*5*5 = 400); 28x28 gets conv1 padding 2."""
    model = LeNet5Victim(shape, 10)
    assert model.conv1.padding[0] == (2 if shape[1] == 28 else 0)
    assert (model.fc1.in_features, model.fc2.in_features, model.fc3.in_features) == (flat, 120, 84)
    assert model(torch.rand(2, *shape)).shape == (2, 10)
    assert [n for n, _ in model.named_parameters()] == [
        f"{layer}.{kind}"
        for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")
        for kind in ("weight", "bias")
    ]
    for p in model.parameters():  # GRNN's weights_init: U(-0.5, 0.5) for weights and biases
        assert p.min() >= -0.5 and p.max() <= 0.5
    with pytest.raises(ValueError, match="too small"):
        LeNet5Victim((1, 8, 8), 10)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("neuron", ["if", "lif"])
def test_snn_lenet5_shapes_and_neurons(shape: tuple[int, int, int], neuron: str) -> None:
    torch.manual_seed(0)
    snn = build_model("snn-lenet5", shape, 10, T=3, neuron=neuron)
    kind = {"if": spikingjelly_neuron.IFNode, "lif": spikingjelly_neuron.LIFNode}[neuron]
    nodes = [m for m in snn.modules() if isinstance(m, spikingjelly_neuron.BaseNode)]
    assert len(nodes) == 4 and all(type(m) is kind for m in nodes)
    assert all(m.detach_reset and m.step_mode == "m" for m in nodes)
    if neuron == "lif":
        assert all(m.tau == 2.0 for m in nodes)
    x = torch.rand(2, *shape)
    out = snn(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert torch.equal(out, snn(x.unsqueeze(0).repeat(3, 1, 1, 1, 1)))


def test_neuron_choice_changes_the_dynamics_not_the_parameters() -> None:
    torch.manual_seed(0)
    if_net = SNNLeNet(T=4, neuron="if")
    lif_net = SNNLeNet(T=4, neuron="lif")
    lif_net.load_state_dict(if_net.state_dict())
    x = torch.rand(2, 1, 28, 28)
    assert not torch.equal(if_net(x), lif_net(x))


def test_bad_neuron_name_is_rejected() -> None:
    for name in ("snn-lenet", "snn-lenet5"):
        with pytest.raises(ValueError, match="unknown neuron 'izhikevich'; valid: if, lif"):
            build_model(name, (1, 28, 28), 10, neuron="izhikevich")
    assert isinstance(build_model("lenet5-grnn", (1, 28, 28), 10, neuron="lif"), LeNet5Victim)


def test_victim_families_map_arms_to_models() -> None:
    assert victim_model_name("lenet5", "ann") == "lenet5-grnn"
    assert victim_model_name("lenet5", "snn") == "snn-lenet5"
    assert victim_model_name("lenet", "snn") == "snn-lenet"
    assert VICTIMS["lenet"] == ARMS
    with pytest.raises(ValueError, match="unknown victim family 'vgg'; valid: lenet, lenet5"):
        victim_model_name("vgg", "ann")
    with pytest.raises(ValueError, match="unknown arm 'cnn'; valid: ann, snn"):
        victim_model_name("lenet5", "cnn")


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


@pytest.mark.parametrize("snn_cls", [SNNLeNet, SNNLeNet5])
@pytest.mark.parametrize("neuron", ["if", "lif"])
def test_surrogate_matches_spikingjelly_atan_to_float64_precision(
    snn_cls: type, neuron: str
) -> None:
    torch.manual_seed(0)  # a draw where every layer spikes, for both neurons and both nets
    ours = snn_cls(T=4, neuron=neuron).double()
    theirs = snn_cls(T=4, neuron=neuron, surrogate=surrogate.ATan()).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    y = torch.tensor([3, 7])
    lo, go, dxo = second_order(ours, x, y)
    lt, gt, dxt = second_order(theirs, x, y)
    assert torch.allclose(lo, lt, rtol=0, atol=1e-12)
    for a, b in zip(go, gt, strict=True):
        assert a.abs().max() > 0  # every layer gets a gradient (spikes reach the classifier)
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert dxo.abs().max() > 0  # double backward reaches the input through the surrogate
    assert torch.allclose(dxo, dxt, rtol=1e-9, atol=1e-12)


def test_registry_rejects_unknown_model() -> None:
    valid = (
        "valid: dvs-gesture-snn, lenet, lenet5, lenet5-grnn, resnet50-arcface, snn-lenet, "
        "snn-lenet5"
    )
    with pytest.raises(ValueError, match=valid):
        build_model("resnet", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="T must be >= 1"):
        SNNLeNet(T=0)
    with pytest.raises(ValueError, match="T must be >= 1"):
        SNNLeNet5(T=0)
