"""Where tensors live: the ``device`` setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

Attacks, judges and clients run their models on the resolved device; seeded draws (dummies,
label logits, batch order) stay on the CPU generator and are moved, so a result depends on
the device only through float rounding. Reconstructions come back to the CPU for scoring.
"""

from __future__ import annotations

import functools
import re
import sys

import torch

DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"
CPU = torch.device("cpu")


def check_device_spec(spec: str) -> None:
    """Reject a malformed spec (without asking the machine anything)."""
    if not re.fullmatch(DEVICE_PATTERN, spec):
        raise ValueError(f"device: {spec!r} is not one of {DEVICE_CHOICES}")


@functools.cache
def resolve_device(spec: str) -> torch.device:
    """The torch device of ``spec`` on this machine. ``cuda`` without a CUDA device (or an
    index past the last one) is an error naming what there is; ``auto`` takes ``cuda`` when
    there is one and otherwise says once per process that it runs on the CPU."""
    check_device_spec(spec)
    if spec == "cpu":
        return CPU
    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    if spec == "auto":
        if available:
            return torch.device("cuda")
        print("device auto: no CUDA device on this machine, running on the CPU", file=sys.stderr)
        return CPU
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= count:
        have = f"{count} CUDA device(s) (cuda:0..cuda:{count - 1})" if count else "no CUDA device"
        raise ValueError(
            f"device: {spec!r} is not available, this machine has {have}; use cpu or auto"
        )
    return torch.device(spec)
