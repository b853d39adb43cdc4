"""The federation role's keys: clients, rounds, the victims, local training, the server's
strategy and the clients' update transforms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from fl_sim.config import Section, at_least_one, check_choice
from fl_sim.data.config import DataConfig
from fl_sim.names import (
    ARM_NAMES,
    FAULT_KINDS,
    NEURON_NAMES,
    PARTITION_NAMES,
    STRATEGY_NAMES,
    TRANSFORM_NAMES,
    VICTIM_NAMES,
    known,
)

PROTOCOLS = ("fedsgd", "fedavg")
FEDAVG_UPDATES = ("weights", "delta")


@dataclass(frozen=True)
class FederationConfig(Section):
    """What the federation is and how it trains (both arms alike)."""

    ROLE: ClassVar[str] = "federation"

    clients: int = 4
    rounds: int = 3
    batch_size: int = 1
    partition: str = "iid"
    alpha: float = 0.5  # Dirichlet concentration (partition=dirichlet)
    # victims federated: () = every arm the data supports (ann,snn on images; snn on events,
    # which only a spiking network takes, as in the paper)
    arms: tuple[str, ...] = ()
    victim: str = "lenet"  # family: lenet (DLG/iDLG's) or lenet5 (GRNN's), ANN + SNN twin
    neuron: str = "if"  # spiking neuron of the SNN arm: if or lif
    T: int = 4  # SNN time steps on images (each image replicated over T)
    seed: int = 0
    # learning rate (public): the server's SGD step under FedSGD, the clients' local SGD
    # steps under FedAvg
    lr: float = 0.1
    # fedsgd: one gradient of one batch per round; fedavg: local_epochs passes over
    # local_steps mini-batches of batch_size, replying new weights or the delta
    protocol: str = "fedsgd"
    local_steps: int = 1
    local_epochs: int = 1
    fedavg_update: str = "weights"  # what a FedAvg client sends: "weights" or "delta"
    # the server's aggregation: a Flower strategy by name (fl_sim/federation/strategies.py)
    # and its options "key=value,..." (e.g. fedavgm: server_momentum=0.9)
    strategy: str = "fedavg"
    strategy_options: str = ""
    fraction: float = 1.0  # fraction of the clients sampled per round (seeded per round)
    # warm start: a state dict (e.g. another run's final_model_{arm}.pt; "{arm}" is replaced
    # by each arm) the federation starts from instead of the seeded init; "" = none
    init_checkpoint: str = ""
    round_timeout: float = 600.0  # seconds the server waits for replies in a round
    # fault injection for tests and demos: KIND@PARTITION items, KIND in nan, shape, error,
    # timeout (update transforms that are not public, applied after ``transforms``)
    faults: tuple[str, ...] = ()
    # client update transforms, applied in order before an update is sent: specs
    # NAME[:KEY=VALUE...][@PARTITION] (fl_sim/federation/transforms); public ones (defences)
    # are known to the attacker (PublicInfo.transforms)
    transforms: tuple[str, ...] = ()
    # secure aggregation: none, or Flower's SecAgg+ as secaggplus[:shares=S:threshold=R:clip=C]
    # (fl_sim/federation/secagg.py); the eavesdropper then captures masked updates
    secagg: str = "none"

    def __post_init__(self) -> None:
        at_least_one(self, "clients", "rounds", "batch_size", "T", "local_steps", "local_epochs")
        if self.lr <= 0 or self.alpha <= 0:
            raise ValueError(f"lr and alpha must be > 0, got lr={self.lr}, alpha={self.alpha}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.round_timeout <= 0:
            raise ValueError(f"round_timeout must be > 0, got {self.round_timeout}")
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_choice("fedavg_update", self.fedavg_update, FEDAVG_UPDATES)
        strategies = known(STRATEGY_NAMES, "fl_sim.federation.strategies", "STRATEGIES")
        check_choice("strategy", self.strategy, strategies)
        partitions = known(PARTITION_NAMES, "fl_sim.federation.partition", "PARTITION_SCHEMES")
        check_choice("partition", self.partition, partitions)
        check_choice("victim", self.victim, known(VICTIM_NAMES, "models.registry", "VICTIMS"))
        check_choice("neuron", self.neuron, known(NEURON_NAMES, "models.surrogate", "NEURONS"))
        for arm in self.arms:
            check_choice("arms", arm, known(ARM_NAMES, "models.registry", "ARMS"))
        _check_transform_names(self.transforms, self.faults)

    @property
    def sampled_clients(self) -> int:
        """Clients the server samples per round (``fraction`` of them, at least one)."""
        return max(1, int(self.clients * self.fraction))

    @property
    def samples_per_round(self) -> int:
        """Private samples a client trains on per round (and an attack must recover)."""
        return self.batch_size * (self.local_steps if self.protocol == "fedavg" else 1)

    def time_steps(self, data: DataConfig) -> int:
        """Steps the SNN runs: ``frames`` on event data, ``T`` on images."""
        return data.frames if data.kind == "events" else self.T

    @property
    def update_kind(self) -> str:
        """What a client's reply holds: "gradient" (FedSGD), "weights" or "delta" (FedAvg)."""
        return "gradient" if self.protocol == "fedsgd" else self.fedavg_update


# The NAME part of a transform spec NAME[:KEY=VALUE...][@PARTITION] (models.public._SPEC).
_TRANSFORM_NAME = re.compile(r"[a-z][a-z0-9_-]*(?=[:@]|$)")


def _check_transform_names(transforms: tuple[str, ...], faults: tuple[str, ...]) -> None:
    """Unknown transform names and fault kinds, with the messages ``update_chain`` gives
    them (which then checks the whole specs and their parameters)."""
    valid = known(TRANSFORM_NAMES, "fl_sim.federation.transforms.registry", "TRANSFORMS")
    for text in transforms:
        name = _TRANSFORM_NAME.match(text.strip())
        if name is not None and name[0] not in valid:
            raise ValueError(
                f"transforms: unknown transform {name[0]!r} in {text!r}; "
                f"valid: {', '.join(sorted(valid))}"
            )
    for item in faults:
        if item.partition("@")[0] not in FAULT_KINDS:
            raise ValueError(
                f"faults: fault {item!r} is not KIND@PARTITION with KIND in "
                f"{', '.join(FAULT_KINDS)}"
            )
