"""The runtime role's keys: threads, devices, and the Ray resources of clients and attacks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from fl_sim.config import Section, at_least_one, check_choice
from fl_sim.names import AUTO, DEVICE_CHOICES, DEVICE_PATTERN

if TYPE_CHECKING:
    import torch

ATTACK_RUNNERS = ("local", "ray")


@dataclass(frozen=True)
class RuntimeConfig(Section):
    """Where and with what a run executes; none of it changes what the run computes."""

    ROLE: ClassVar[str] = "runtime"

    # torch threads per process: MNIST-size attack steps are dispatch-bound, and in a
    # simulation the ServerApp and every client process share the machine's cores
    threads: int = 1
    # where models run (attacks, judges, clients, the server's test evaluation): auto (cuda when
    # there is one, else the CPU, said once), cpu, cuda or cuda:N (models/device.py); seeded
    # draws stay on the CPU generator, so results depend on it only through float rounding
    device: str = "cpu"
    # Ray resources per virtual client (simulation engine): whole CPUs (Flower's federation
    # config takes an integer), a GPU fraction
    client_cpus: int = 1
    client_gpus: float = 0.0
    # where a round's captures (and an experiment's trials) are attacked: "local" (in the
    # ServerApp's process) or "ray" (Ray tasks of attack_cpus CPUs and attack_gpus GPUs each,
    # on ray_address: "" = the simulation's own Ray or a local one; "auto" or "ray://HOST:PORT"
    # = a running cluster, e.g. after `ray start --head`). Experiments always use Ray tasks.
    attack_runner: str = "local"
    attack_cpus: int = 1
    attack_gpus: float = 0.0
    ray_address: str = ""

    def __post_init__(self) -> None:
        at_least_one(self, "threads", "client_cpus", "attack_cpus")
        if self.client_gpus < 0 or self.attack_gpus < 0:
            raise ValueError(
                "need client_gpus >= 0 and attack_gpus >= 0; got "
                f"client_gpus={self.client_gpus}, attack_gpus={self.attack_gpus}"
            )
        check_choice("attack_runner", self.attack_runner, ATTACK_RUNNERS)
        if not re.fullmatch(DEVICE_PATTERN, self.device):
            raise ValueError(f"device: {self.device!r} is not one of {DEVICE_CHOICES}")

    def check_components(self) -> None:
        """cuda asked for on a machine without one (``auto`` resolves where it is used)."""
        if self.device != AUTO:
            from models.device import resolve_device

            resolve_device(self.device)

    @property
    def torch_device(self) -> torch.device:
        """``device`` on this machine (``auto`` says once if it falls back to the CPU)."""
        from models.device import resolve_device

        return resolve_device(self.device)
