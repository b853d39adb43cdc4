"""Central SGD on mnist5k: how many steps the LeNet victims need to learn, per weight init and
optimiser (what chose ``experiments/configs/training.toml``). Prints the test accuracy five
times along the run.

    python -m experiments.central_training --arch lenet --batch 16 --lr 0.1 --steps 1000
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from fl_sim.data.registry import load_dataset
from models import build_model


def reinit(model: nn.Module, init: str) -> None:
    """``paper``: the victims' own U(-0.5, 0.5); ``torch``: PyTorch's layer defaults;
    ``xavier``: Glorot-uniform weights, zero biases."""
    for module in model.modules():
        if init == "torch" and hasattr(module, "reset_parameters"):
            module.reset_parameters()
        elif init == "xavier" and isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="lenet", choices=("lenet", "snn-lenet"))
    parser.add_argument("--init", default="paper", choices=("paper", "torch", "xavier"))
    parser.add_argument("--optimiser", default="sgd", choices=("sgd", "momentum", "adam"))
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.steps < 5 or args.batch < 1 or not args.lr > 0:
        parser.error("need --steps >= 5, --batch >= 1, --lr > 0")
    torch.set_num_threads(1)
    train, test = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    torch.manual_seed(0)
    model = build_model(args.arch, train.input_shape, train.num_classes, T=4, neuron="if")
    reinit(model, args.init)
    params = model.parameters()
    opt = (
        torch.optim.Adam(params, lr=args.lr)
        if args.optimiser == "adam"
        else torch.optim.SGD(
            params, lr=args.lr, momentum=args.momentum if args.optimiser == "momentum" else 0.0
        )
    )
    gen = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(train), (args.batch,), generator=gen)
        loss = F.cross_entropy(model(train.take(idx)), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (args.steps // 5) == 0:
            with torch.no_grad():
                acc = float((model(test.inputs).argmax(1) == test.labels).float().mean())
            print(
                f"{args.arch} init={args.init} {args.optimiser} lr={args.lr} batch={args.batch} "
                f"step={step} test_acc={acc:.3f} ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
