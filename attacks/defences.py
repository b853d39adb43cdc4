"""The adaptive attacker's view of the public defences (``PublicInfo.transforms``): its
simulated update goes through the deterministic part of each defence the capture's client
applied, so that like is matched with like.

- ``prune``: the captured update shows which entries were kept (its non-zeros); the same
  mask is put on the simulated update (the "known mask" adaptive attack on pruning).
- ``dp``: the simulated update is clipped to the public norm bound, as the client clipped
  its own (differentiable: a scale ``min(1, clip / norm)``); the noise drawn stays unknown
  and remains in the target.
- ``quant`` and anything else: no differentiable mirror here; the target is matched as
  captured (a quantised estimate of the true update).

Only the grammar of the specs is shared with the clients (``models.public.TransformSpec``);
the mirrors are written here, from the published definitions, not imported from the code
that applies them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.public import PublicInfo, TransformSpec

MIRRORED = frozenset({"prune", "dp"})


def known_defences(public: PublicInfo, client: int) -> list[TransformSpec]:
    """The public defences client ``client`` applied that the attacker mirrors, in order
    (parsed once per attack problem, not per loss evaluation)."""
    specs = [TransformSpec.parse(text) for text in public.transforms]
    return [s for s in specs if s.partition in (None, client) and s.name in MIRRORED]


def mirrored(public: PublicInfo) -> bool:
    """Does any public defence change what the attack matches?"""
    return any(TransformSpec.parse(t).name in MIRRORED for t in public.transforms)


def shared_defences(public: PublicInfo) -> list[TransformSpec] | None:
    """The mirrored defences when every client applies them (what a batch of captures of
    any clients shares); None if one of them is limited to one client (``@PARTITION``)."""
    specs = [TransformSpec.parse(t) for t in public.transforms]
    specs = [s for s in specs if s.name in MIRRORED]
    return None if any(s.partition is not None for s in specs) else specs


def adapt(
    simulated: Sequence[torch.Tensor],
    target: Sequence[torch.Tensor],
    defences: Sequence[TransformSpec],
    batched: bool = False,
) -> list[torch.Tensor]:
    """``simulated`` (the dummy's update, parameter order) as ``defences`` (from
    :func:`known_defences`) would send it; ``batched``: every tensor has a leading problem
    dimension (one update per row), as in the batched engine."""
    out = list(simulated)
    for spec in defences:
        if spec.name == "prune":
            out = [u * (t != 0).to(u.dtype) for u, t in zip(out, target, strict=True)]
        elif spec.name == "dp":
            clip = float(dict(spec.params)["clip"])
            if batched:
                squares = sum((u * u).reshape(u.shape[0], -1).sum(1) for u in out)
            else:
                squares = sum((u * u).sum() for u in out)
            scale = torch.clamp(clip / (torch.sqrt(squares) + 1e-30), max=1.0)  # type: ignore[arg-type]
            out = [u * (scale.reshape(-1, *[1] * (u.dim() - 1)) if batched else scale) for u in out]
    return out
