"""An ordered chain of client update transforms, built from spec strings of the run config."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fl_sim.federation.transforms.base import Transform, TransformContext, Update
from fl_sim.federation.transforms.faults import fault_specs
from fl_sim.federation.transforms.registry import TRANSFORMS
from models.public import TransformSpec


@dataclass(frozen=True)
class Step:
    """One configured transform: its canonical spec (every parameter spelled out) and it."""

    spec: TransformSpec
    transform: Transform

    @property
    def public(self) -> bool:
        return type(self.transform).public

    def applies_to(self, partition_id: int) -> bool:
        return self.spec.partition in (None, partition_id)


def build_step(text: str) -> Step:
    """A step from one spec string; errors name the spec and the valid transforms."""
    spec = TransformSpec.parse(text)
    cls = TRANSFORMS.get(spec.name)
    if cls is None:
        raise ValueError(
            f"unknown transform {spec.name!r} in {text!r}; valid: {', '.join(sorted(TRANSFORMS))}"
        )
    try:
        transform = cls.from_params(dict(spec.params))
    except ValueError as err:
        raise ValueError(f"transform {text!r}: {err}") from None
    return Step(TransformSpec(spec.name, transform.params(), spec.partition), transform)


@dataclass(frozen=True)
class TransformChain:
    """Transforms applied in order to a client's update before it is sent."""

    steps: tuple[Step, ...] = ()

    @classmethod
    def parse(cls, specs: Iterable[str], key: str = "transforms") -> TransformChain:
        """The chain of ``specs`` (a config key's items); errors name ``key``."""
        try:
            return cls(tuple(build_step(text) for text in specs))
        except ValueError as err:
            raise ValueError(f"{key}: {err}") from None

    def __len__(self) -> int:
        return len(self.steps)

    def __add__(self, other: TransformChain) -> TransformChain:
        return TransformChain(self.steps + other.steps)

    def for_partition(self, partition_id: int) -> TransformChain:
        """The steps client ``partition_id`` applies."""
        return TransformChain(tuple(s for s in self.steps if s.applies_to(partition_id)))

    @property
    def public_specs(self) -> tuple[str, ...]:
        """Canonical specs of the public steps, in order: what the server may know."""
        return tuple(str(s.spec) for s in self.steps if s.public)

    def check_update_kind(self, kind: str) -> None:
        """Refuse a transform that cannot act on ``kind`` updates (e.g. DP on raw weights)."""
        for step in self.steps:
            kinds = type(step.transform).update_kinds
            if kinds is not None and kind not in kinds:
                raise ValueError(
                    f"transforms: {step.spec} acts on {' or '.join(kinds)} updates, and this "
                    f"run's clients send {kind} (FedAvg: set fedavg_update=delta)"
                )

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        """Apply the steps for ``ctx.partition_id`` in order."""
        for step in self.steps:
            if step.applies_to(ctx.partition_id):
                update = step.transform(update, ctx)
        return update


def update_chain(transforms: Iterable[str], faults: Iterable[str] = ()) -> TransformChain:
    """The run's chain: the ``transforms`` config key in order, then the ``faults`` key's
    injected faults (last: a fault corrupts what the client would have sent)."""
    try:
        injected = fault_specs(faults)
    except ValueError as err:
        raise ValueError(f"faults: {err}") from None
    return TransformChain.parse(transforms) + TransformChain.parse(injected, "faults")
