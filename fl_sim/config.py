"""What every role's config shares: typed sections that read ``key=value`` strings or TOML
values, reject unknown keys with the valid ones, and check their own values.

Each package owns the section of the keys it uses (``fl_sim.data.config``,
``fl_sim.federation.config``, ``fl_sim.evaluation.attack_settings``, ...);
``fl_sim.federation.run_config.RunConfig`` composes them into the flat keys of ``--set``,
TOML files and Flower's run config. Defaults < optional TOML file < ``--set`` overrides.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self


@dataclasses.dataclass(frozen=True)
class Section:
    """A typed, frozen group of run config keys owned by one role (``ROLE``)."""

    ROLE: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> list[str]:
        """The section's keys, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Self | None = None) -> Self:
        """Build from strings or TOML values (on ``base``, else the defaults); an unknown key
        is a one-line ValueError listing the valid ones."""
        reject_unknown(values, cls.keys())
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        parsed = {k: coerce(k, v, types[k]) for k, v in values.items()}
        return cls(**parsed) if base is None else dataclasses.replace(base, **parsed)

    @classmethod
    def of_run(cls, run_config: Mapping[str, Any]) -> Self:
        """This section of a whole run's flat keys (e.g. Flower's ``context.run_config``);
        the other roles' keys are left to them."""
        own = set(cls.keys())
        return cls.from_mapping({k: v for k, v in run_config.items() if k in own})

    def values(self) -> dict[str, Any]:
        """Key -> value of this section."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def reject_unknown(values: Iterable[str], valid: list[str]) -> None:
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}"
        )


def at_least_one(section: Section, *names: str) -> None:
    """Each of ``names`` must be >= 1."""
    for name in names:
        if getattr(section, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(section, name)}")


def check_choice(key: str, value: str, valid: Mapping[str, Any] | tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{key}: unknown value {value!r}; valid: {', '.join(sorted(valid))}")


def read_config_file(path: str | Any) -> dict[str, Any]:
    """The keys of TOML file ``path``; a missing file or a syntax error is a one-line
    ValueError naming the file (and the line and column of the error)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {path}: invalid TOML: {err}") from None
    except OSError as err:
        raise ValueError(f"config file {path}: {err.strerror or err}") from None


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def coerce(key: str, value: Any, typ: Any) -> Any:
    """Turn a CLI string or TOML value into the field's type, naming the key on failure."""
    typ = str(typ)
    try:
        if typ.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(s.strip() for s in items if str(s).strip())
        if typ == "bool":
            if isinstance(value, bool):
                return value
            low = str(value).lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return low in ("true", "1", "yes")
        if typ == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if typ == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key}: cannot read {value!r} as {typ}") from err
