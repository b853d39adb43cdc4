"""The run config: every role's section under one flat set of keys.

The keys are those of ``--set key=value``, of TOML config files and of the Flower run config
(``[tool.flwr.app.config]`` in pyproject.toml), so ``fl-sim run`` and ``flwr run .`` drive
the same apps with the same settings. Each key belongs to one section, owned by the package
that uses it; this class only splits the keys among them and checks what spans two roles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fl_sim.config import Section, parse_overrides, read_config_file, reject_unknown
from fl_sim.data.config import DataConfig
from fl_sim.evaluation.attack_settings import AttackSettings
from fl_sim.evaluation.judge_config import JudgeConfig
from fl_sim.evaluation.schedule import AttackSchedule
from fl_sim.federation.config import FederationConfig
from fl_sim.names import ARM_NAMES
from fl_sim.ops.roles import FlowerRun, run_config_arg
from fl_sim.ops.runtime_config import RuntimeConfig
from fl_sim.results.config import ResultsConfig

# Section attribute -> its class, in the order the keys are listed.
SECTIONS: dict[str, type[Section]] = {
    "data": DataConfig,
    "federation": FederationConfig,
    "attack": AttackSettings,
    "judge": JudgeConfig,
    "runtime": RuntimeConfig,
    "results": ResultsConfig,
}
# Key -> the section attribute that owns it.
KEY_SECTION: dict[str, str] = {key: name for name, cls in SECTIONS.items() for key in cls.keys()}  # noqa: SIM118 (a classmethod)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, one section per role; every key is a valid ``--set`` key."""

    data: DataConfig = field(default_factory=DataConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    attack: AttackSettings = field(default_factory=AttackSettings)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)

    def __post_init__(self) -> None:
        self._check_across_roles()
        self._check_federation_components()
        self.attack.check_components()
        self.runtime.check_components()

    def _check_across_roles(self) -> None:
        """What no one section can check alone."""
        fed, attack = self.federation, self.attack
        for arm in fed.arms:
            if arm not in self.supported_arms:
                raise ValueError(
                    f"arms: {arm!r} cannot take {self.data.dataset} ({self.data.kind} data); "
                    f"valid: {', '.join(self.supported_arms)}"
                )
        if attack.attack_dummy == "tied" and self.data.kind == "events":
            raise ValueError(
                "attack_dummy: 'tied' needs image data (one image replicated over T); "
                f"{self.data.dataset} is event data: use auto or free"
            )
        _ = self.attack_schedule  # valid terms, rounds within the run

    def _check_federation_components(self) -> None:
        """What only the federation's components can check (they import torch or flwr):
        strategy options, transform parameters and SecAgg+'s fit to the federation."""
        from fl_sim.federation.secagg import SecAggSpec
        from fl_sim.federation.strategies import parse_strategy_options
        from fl_sim.federation.transforms import update_chain

        fed = self.federation
        if fed.strategy_options.strip():
            parse_strategy_options(fed.strategy, fed.strategy_options)  # names, types
        # names, parameters and faults are valid, and fit the updates the clients send
        update_chain(fed.transforms, fed.faults).check_update_kind(fed.update_kind)
        secagg = SecAggSpec.parse(fed.secagg)
        if secagg is not None:
            secagg.check_federation(fed.sampled_clients, fed.strategy)

    @property
    def attack_schedule(self) -> AttackSchedule:
        """The rounds the eavesdropper attacks (``attack_rounds`` of ``rounds``)."""
        return self.attack.schedule(self.federation.rounds)

    @property
    def supported_arms(self) -> tuple[str, ...]:
        """Arms that can train on this dataset: event frames need the spiking victim."""
        return ("snn",) if self.data.kind == "events" else ARM_NAMES

    @property
    def federated_arms(self) -> tuple[str, ...]:
        """The arms this run federates: ``arms``, or every supported arm when it is empty."""
        return self.federation.arms or self.supported_arms

    @property
    def time_steps(self) -> int:
        """Steps the SNN runs: ``frames`` on event data, ``T`` on images."""
        return self.federation.time_steps(self.data)

    def resolved(self) -> RunConfig:
        """This config with ``arms`` spelled out (``federated_arms``): what a run records."""
        return self.replace(arms=self.federated_arms)

    @staticmethod
    def keys() -> list[str]:
        return list(KEY_SECTION)

    @staticmethod
    def role_of(key: str) -> str:
        """The role that owns ``key`` (its section's ``ROLE``)."""
        return SECTIONS[KEY_SECTION[key]].ROLE

    @classmethod
    def of(cls, **values: Any) -> RunConfig:
        """The defaults with these keys set (typed values or strings)."""
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
        """Build from flat keys given as strings or TOML values (on ``base``, else the
        defaults; validated once); unknown keys are rejected with the valid ones."""
        reject_unknown(values, cls.keys())
        base = base or cls()
        sections = {}
        for name, section_cls in SECTIONS.items():
            own = {k: v for k, v in values.items() if KEY_SECTION[k] == name}
            current = getattr(base, name)
            sections[name] = section_cls.from_mapping(own, current) if own else current
        return cls(**sections)  # type: ignore[arg-type]

    def replace(self, **values: Any) -> RunConfig:
        """This config with these keys changed (revalidated)."""
        return self.from_mapping(values, self)

    @classmethod
    def load(cls, config_file: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:  # type: ignore[assignment]
        """Defaults, then the TOML file (if any), then ``key=value`` overrides."""
        values = read_config_file(config_file) if config_file else {}
        values.update(parse_overrides(overrides))
        return cls.from_mapping(values)

    def flat(self) -> dict[str, Any]:
        """Key -> value of every key (what a run records)."""
        out: dict[str, Any] = {}
        for name in SECTIONS:
            out.update(getattr(self, name).values())
        return out

    def to_flower(self) -> dict[str, bool | int | float | str]:
        """Flat values Flower's run config accepts (sequences as comma lists)."""
        return {k: ",".join(v) if isinstance(v, tuple) else v for k, v in self.flat().items()}

    def flower_run(self) -> FlowerRun:
        """What the launchers need to start this run on Flower."""
        return FlowerRun(
            self.to_flower(), self.federation.clients, self.federation.rounds,
            self.federated_arms, self.runtime, Path(self.results.out).expanduser(),
        )  # fmt: skip

    def flower_run_config_arg(self) -> str:
        """The ``--run-config`` string for ``flwr run`` (TOML key = value pairs)."""
        return run_config_arg(self.to_flower())


def section_fields() -> list[tuple[str, dataclasses.Field[Any]]]:
    """(role, field) of every key, in key order: what the config reference lists."""
    return [(cls.ROLE, f) for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
