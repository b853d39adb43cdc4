"""The names the run config accepts, importable without torch or flwr.

The registries behind them (attacks, datasets, models, strategies, ...) import torch or flwr,
which takes seconds; ``fl_sim.config`` validates against these plain copies so that
``fl-sim --help`` and a bad ``--set`` answer at once. ``tests/test_names.py`` checks that
every copy equals its registry: a new registry entry needs its line here too. Where the
registry is already imported, ``known`` uses it instead (entries registered at run time
count).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

AUTO = "auto"  # attacks.config.AUTO: "the attack's own choice"

# attacks.registry.ATTACKS
ATTACK_NAMES = ("dlg", "idlg", "ig", "rates", "rates-ig", "rates-idlg", "grnn")
# fl_sim.data.registry.DATASETS: name -> kind of data ("image" or "events")
DATASET_KINDS = {
    "mnist": "image",
    "mnist5k": "image",
    "cifar100": "image",
    "lfw": "image",
    "dvsgesture": "events",
    "lfw-subset": "image",
    "nmnist-emulated": "events",
}
# fl_sim.federation.strategies.STRATEGIES
STRATEGY_NAMES = (
    "fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedprox", "fedmedian",
    "fedtrimmedavg", "krum", "multikrum", "bulyan",
)  # fmt: skip
PARTITION_NAMES = ("iid", "dirichlet")  # fl_sim.federation.partition.PARTITION_SCHEMES
TRANSFORM_NAMES = (
    "dp",
    "prune",
    "quant",
    "error",
    "nan",
    "shape",
    "timeout",
)  # fl_sim.federation.transforms.TRANSFORMS
FAULT_KINDS = ("nan", "shape", "error", "timeout")  # fl_sim.federation.transforms.FAULT_KINDS
VICTIM_NAMES = ("lenet", "lenet5")  # models.VICTIMS
ARM_NAMES = ("ann", "snn")  # models.ARMS
NEURON_NAMES = ("if", "lif")  # models.NEURONS
DUMMY_NAMES = ("free", "tied")  # attacks.components.dummies.DUMMIES
INITS = (AUTO, "uniform-gray", "randn", "abs-normal")  # attacks.spike_domain.INITS
THRESHOLDS = ("none", "post", "in")  # attacks.spike_domain.THRESHOLDS
CLAMPS = (AUTO, "output", "step", "none")  # attacks.config.CLAMPS
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"  # models.device.DEVICE_PATTERN
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"  # models.device.DEVICE_CHOICES


def known(names: Iterable[str], module: str, registry: str) -> tuple[str, ...]:
    """The names of ``module.registry`` if that module is already imported (the live
    registry, with entries added at run time), else the plain copy ``names``."""
    live = getattr(sys.modules.get(module), registry, None)
    return tuple(names if live is None else live)


def dataset_kinds() -> dict[str, str]:
    """Dataset name -> kind: the live ``fl_sim.data.registry.DATASETS`` if imported, else
    ``DATASET_KINDS``."""
    live = getattr(sys.modules.get("fl_sim.data.registry"), "DATASETS", None)
    return DATASET_KINDS if live is None else {name: cls.kind for name, cls in live.items()}
