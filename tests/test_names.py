"""The plain name lists the config validates against equal the registries they copy."""

from __future__ import annotations

import pytest

import attacks.components.dummies
import attacks.config
import attacks.spike_domain
from attacks.registry import ATTACKS
from fl_sim import names
from fl_sim.data.registry import DATASETS
from fl_sim.federation.partition import PARTITION_SCHEMES
from fl_sim.federation.strategies import STRATEGIES
from fl_sim.federation.transforms import FAULT_KINDS, TRANSFORMS
from models import ARMS, NEURONS, VICTIMS
from models.device import DEVICE_CHOICES, DEVICE_PATTERN


def test_name_lists_equal_their_registries() -> None:
    assert set(names.ATTACK_NAMES) == set(ATTACKS)
    assert {name: loader.kind for name, loader in DATASETS.items()} == names.DATASET_KINDS
    assert set(names.STRATEGY_NAMES) == set(STRATEGIES)
    assert set(names.PARTITION_NAMES) == set(PARTITION_SCHEMES)
    assert set(names.TRANSFORM_NAMES) == set(TRANSFORMS)
    assert names.FAULT_KINDS == FAULT_KINDS
    assert set(names.VICTIM_NAMES) == set(VICTIMS)
    assert set(names.ARM_NAMES) == set(ARMS)
    assert set(names.NEURON_NAMES) == set(NEURONS)
    assert set(names.DUMMY_NAMES) == set(attacks.components.dummies.DUMMIES)
    assert names.INITS == attacks.spike_domain.INITS
    assert names.THRESHOLDS == attacks.spike_domain.THRESHOLDS
    assert names.CLAMPS == attacks.config.CLAMPS
    assert names.AUTO == attacks.config.AUTO
    assert (names.DEVICE_PATTERN, names.DEVICE_CHOICES) == (DEVICE_PATTERN, DEVICE_CHOICES)


def test_an_imported_registry_is_used_with_its_run_time_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(TRANSFORMS, "scale", object)
    module = "fl_sim.federation.transforms.registry"
    assert "scale" in names.known(names.TRANSFORM_NAMES, module, "TRANSFORMS")
    assert names.known(("a", "b"), "fl_sim.not_a_module", "X") == ("a", "b")
