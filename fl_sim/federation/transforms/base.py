"""What every client update transform is: a frozen dataclass of its spec's parameters that
maps an update (name -> tensor) to the update the client sends, and says if it is public."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch

Update = dict[str, torch.Tensor]
_READERS: dict[Any, Any] = {int: int, float: float, str: str}


@dataclass(frozen=True)
class TransformContext:
    """What a transform may know besides the update: which client, which round, and the
    run's public settings (seeded randomness must derive from these to be reproducible)."""

    partition_id: int
    num_partitions: int
    server_round: int
    seed: int = 0
    update_kind: str = "gradient"  # "gradient" (FedSGD), "weights" or "delta" (FedAvg)
    round_timeout: float = 600.0


@dataclass(frozen=True)
class Transform:
    """Base class. A subclass is a frozen dataclass whose fields (int, float, str or bool, with
    defaults where optional) are its ``KEY=VALUE`` parameters, and must declare ``public``:
    True if the attacker knows it (a published defence), False if not (a fault)."""

    public: ClassVar[bool]
    # The update kinds it may transform ("gradient", "weights", "delta"); None: any.
    update_kinds: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.__dict__.get("public"), bool):
            raise TypeError(f"{cls.__name__} must declare public = True or False")
        if "public" in cls.__dict__.get("__annotations__", {}):  # it would become a parameter
            raise TypeError(f"{cls.__name__}: write public = ... without an annotation")

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        """The update to send instead of ``update``: a new dict; tensors are never changed
        in place (they may be the model's own)."""
        raise NotImplementedError

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Self:
        """An instance from a spec's string parameters, read by the fields' types."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)}; "
                f"parameters: {', '.join(fields) or 'none'}"
            )
        missing = [
            name
            for name, f in fields.items()
            if name not in params
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"missing parameter(s) {', '.join(missing)}")
        hints = typing.get_type_hints(cls)
        return cls(**{name: _read(name, text, hints[name]) for name, text in params.items()})

    def params(self) -> tuple[tuple[str, str], ...]:
        """Every parameter, defaults included, as it reads back in a spec."""
        return tuple((f.name, _write(getattr(self, f.name))) for f in dataclasses.fields(self))


def _read(name: str, text: str, typ: Any) -> Any:
    if typ is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"parameter {name}: cannot read {text!r} as bool (true or false)")
        return text.lower() == "true"
    try:
        return _READERS[typ](text)
    except KeyError:
        raise TypeError(f"parameter {name} has unsupported type {typ}") from None
    except ValueError:
        raise ValueError(f"parameter {name}: cannot read {text!r} as {typ.__name__}") from None


def _write(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
