"""Faulty updates injected on purpose (tests, demos): not public, an attacker cannot know them.

The run config key ``faults`` (``KIND@PARTITION`` items, e.g. ``nan@1,error@3``) is a list of
these transforms, one per partition at most (the last item for a partition wins).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from fl_sim.federation.transforms.base import Transform, TransformContext, Update

FAULT_KINDS = ("nan", "shape", "error", "timeout")


@dataclass(frozen=True)
class NanFault(Transform):
    """The first array of the update becomes NaN."""

    public = False

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        name = next(iter(update))
        return {**update, name: update[name].clone().fill_(float("nan"))}


@dataclass(frozen=True)
class ShapeFault(Transform):
    """The first array of the update loses its shape and its last element."""

    public = False

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        name = next(iter(update))
        return {**update, name: update[name].flatten()[:-1].clone()}


@dataclass(frozen=True)
class ErrorFault(Transform):
    """The client raises instead of replying (Flower turns it into an error reply)."""

    public = False

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        raise RuntimeError("injected client failure")


@dataclass(frozen=True)
class TimeoutFault(Transform):
    """The client replies only after the server stopped waiting for the round."""

    public = False

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        time.sleep(ctx.round_timeout + 2.0)
        return update


def parse_fault_spec(spec: Iterable[str]) -> dict[int, str]:
    """``("nan@1", "shape@2")`` -> {1: "nan", 2: "shape"}: which partition injects what."""
    faults: dict[int, str] = {}
    for item in spec:
        kind, sep, partition = item.partition("@")
        if not sep or kind not in FAULT_KINDS or not partition.isdigit():
            raise ValueError(
                f"fault {item!r} is not KIND@PARTITION with KIND in {', '.join(FAULT_KINDS)}"
            )
        faults[int(partition)] = kind
    return faults


def fault_specs(faults: Iterable[str]) -> tuple[str, ...]:
    """The transform specs of the ``faults`` config key (``kind@partition`` each)."""
    return tuple(f"{kind}@{p}" for p, kind in parse_fault_spec(faults).items())
