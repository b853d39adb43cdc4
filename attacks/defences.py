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


def adapt(
    simulated: Sequence[torch.Tensor],
    target: Sequence[torch.Tensor],
    defences: Sequence[TransformSpec],
) -> list[torch.Tensor]:
    """``simulated`` (the dummy's update, parameter order) as ``defences`` (from
    :func:`known_defences`) would send it."""
    out = list(simulated)
    for spec in defences:
        if spec.name == "prune":
            out = [u * (t != 0).to(u.dtype) for u, t in zip(out, target, strict=True)]
        elif spec.name == "dp":
            clip = float(dict(spec.params)["clip"])
            norm = torch.sqrt(sum((u * u).sum() for u in out))  # type: ignore[arg-type]
            scale = torch.clamp(clip / (norm + 1e-30), max=1.0)
            out = [u * scale for u in out]
    return out
