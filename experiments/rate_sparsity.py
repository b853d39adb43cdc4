"""How much the rate leak has to read: the fraction of the SNN twins' classifier inputs with a
nonzero mean spike rate, per neuron and T, on untrained victims (Experiment 1's seeds: victim
of digit i seeded by i) and the first N mnist5k training digits.

    python -m experiments.rate_sparsity --digits 10
"""

from __future__ import annotations

import argparse

import torch

from attacks.components.features import classifier_input
from fl_sim.data.registry import load_dataset
from models import build_model
from models.surrogate import NEURONS


def activity(neuron: str, T: int, digits: int) -> tuple[float, float]:
    """(mean fraction of nonzero classifier inputs, mean rate) over the first ``digits``."""
    data = load_dataset("mnist5k", "train")
    nonzero, rate = [], []
    for i in range(digits):
        torch.manual_seed(i)
        model = build_model("snn-lenet", data.input_shape, data.num_classes, T=T, neuron=neuron)
        with torch.no_grad():
            r = classifier_input(model, data.take(slice(i, i + 1)))
        nonzero.append(float((r > 0).float().mean()))
        rate.append(float(r.mean()))
    return sum(nonzero) / digits, sum(rate) / digits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--digits", type=int, default=10)
    parser.add_argument("--T", default="4,8,16", help="comma list of time steps")
    args = parser.parse_args(argv)
    if args.digits < 1:
        parser.error(f"--digits must be >= 1, got {args.digits}")
    for neuron in sorted(NEURONS):
        for T in (int(t) for t in args.T.split(",")):
            frac, rate = activity(neuron, T, args.digits)
            print(f"{neuron} T={T} nonzero={frac:.3f} mean_rate={rate:.3f}")


if __name__ == "__main__":
    main()
