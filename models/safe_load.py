"""``torch.load(weights_only=True)`` without torch's pickle-protocol warning: a file written
with protocol 3-5 (or a crafted one) makes torch warn before it refuses or loads it, and that
library text must not precede the one-line error the user gets. Every checkpoint, capture and
cache of the project is read through here."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

# torch/_weights_only_unpickler.py: "Detected pickle protocol N in the checkpoint, ..."
PROTOCOL_WARNING = r"Detected pickle protocol"


def load_weights(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PROTOCOL_WARNING, category=UserWarning)
        return torch.load(Path(path), map_location=map_location, weights_only=True)
