"""Save and load captured updates, so attacks can run outside a simulation.

Captures are sensitive (they leak the client's data): files are written owner-only (0600)
and loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from attacks.types import Capture, PublicInfo
from models.safe_load import load_weights

FORMAT = "fl-sim-capture"
VERSION = 1


def save_capture(capture: Capture, path: str | Path) -> Path:
    """Write one capture (update, global model, public metadata) with owner-only access."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "round": capture.round,
        "client": capture.client,
        "public": dataclasses.asdict(capture.public),
        "update": {k: v.detach().cpu() for k, v in capture.update.items()},
        "global_state": {k: v.detach().cpu() for k, v in capture.global_state.items()},
    }
    write_private(path, blob)
    return path


def write_private(path: Path, blob: object) -> None:
    """torch.save to ``path`` via a 0600 temporary file and an atomic rename; the temporary
    file is removed if the write fails. (Not ``fl_sim.atomic_file``: attack code imports
    nothing from fl_sim, the threat model's boundary.)"""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(blob, fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_private(path: str | Path, what: str) -> object:
    """``torch.load(weights_only=True)`` of a file this module wrote. A file torch cannot
    read that way (random bytes, a truncated or foreign file) is a one-line ValueError
    saying it is not ``what``; a missing or unreadable file raises its OSError."""
    try:
        return load_weights(path)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as err:  # UnpicklingError, the zip reader's RuntimeError or OSError...
        first = (str(err).strip().splitlines() or [""])[0].split(". ")[0]  # first sentence
        # torch's weights_only failure advises weights_only=False: never for a capture
        why = type(err).__name__
        if first and "weights" not in first.lower():
            why = f"{why}: {first}"
        raise ValueError(f"{path} is not {what} (torch cannot read it: {why})") from None


def load_capture(path: str | Path) -> Capture:
    """Read a capture written by :func:`save_capture`; errors name what is wrong."""
    blob = load_private(path, f"an {FORMAT} file")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not an {FORMAT} file")
    if blob.get("version") != VERSION:
        raise ValueError(
            f"{path} has capture format version {blob.get('version')}, expected {VERSION}"
        )
    try:
        public = dict(blob["public"])
        valid = {f.name for f in dataclasses.fields(PublicInfo)}
        unknown = sorted(set(public) - valid)
        if unknown:
            raise ValueError(f"{path}: unknown public fields {unknown}; valid: {sorted(valid)}")
        public["input_shape"] = tuple(public["input_shape"])
        return Capture(
            round=int(blob["round"]),
            client=int(blob["client"]),
            update=dict(blob["update"]),
            global_state=dict(blob["global_state"]),
            public=PublicInfo(**public),
        )
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{path} is not a complete {FORMAT} file ({type(err).__name__}: {err})"
        ) from None
