"""The global model a federation starts from: the seeded init, or a warm start
(``init_checkpoint``) loaded with ``weights_only=True`` and checked against the victim."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from fl_sim.data.config import DataConfig
from fl_sim.federation.config import FederationConfig
from fl_sim.federation.task import public_info
from fl_sim.results.preflight import state_mismatch
from models.public import model_for
from models.safe_load import load_weights


def initial_model(fed: FederationConfig, data: DataConfig, arm: str) -> torch.nn.Module:
    """Seeded init: both arms start from the same weights (same parameter names/shapes);
    or, with ``init_checkpoint``, the weights saved there (a warm start)."""
    pub = public_info(fed, data, arm)
    torch.manual_seed(fed.seed)
    model = model_for(pub)
    if fed.init_checkpoint:
        model.load_state_dict(load_init_checkpoint(init_checkpoint_path(fed, arm), arm, model))
    return model


def init_checkpoint_path(fed: FederationConfig, arm: str) -> Path:
    """``init_checkpoint`` for ``arm`` (``{arm}`` in the path is replaced by the arm)."""
    return Path(fed.init_checkpoint.replace("{arm}", arm)).expanduser().resolve()


def load_init_checkpoint(path: Path, arm: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``arm``'s warm start, loaded with ``weights_only=True`` and checked
    against ``model``: a clear error names a missing file, a file that is not a state dict,
    or the parameters that are missing, extra or of another shape."""
    if not path.is_file():
        raise FileNotFoundError(f"init_checkpoint: {path} (arm {arm}) is not a file")
    try:
        state = load_weights(path)
    except Exception as err:
        raise ValueError(
            f"init_checkpoint: {path} is not a PyTorch state dict ({type(err).__name__})"
        ) from err
    expected = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"init_checkpoint: {path} is not a state dict of tensors")
    wrong = state_mismatch(state, expected)
    if wrong:
        raise ValueError(
            f"init_checkpoint: {path} does not fit arm {arm}'s {type(model).__name__}: "
            f"missing, extra or reshaped {', '.join(wrong[:6])}"
            + (f" and {len(wrong) - 6} more" if len(wrong) > 6 else "")
        )
    return {k: v.to(expected[k].dtype) for k, v in state.items()}


def init_record(fed: FederationConfig, arms: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Per arm, the warm start's path and SHA-256 (for run.json); {} without one."""
    if not fed.init_checkpoint:
        return {}
    record = {}
    for arm in arms:
        path = init_checkpoint_path(fed, arm)
        record[arm] = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return record
