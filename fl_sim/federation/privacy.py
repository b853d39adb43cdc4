"""Privacy accounting of the DP defence (``dp`` transforms), with Flower's RDP accountant
(``flwr.supercore.privacy_accounting``, backed by Google's dp-accounting).

The threat model sets the accounting: the eavesdropper sees every client's update on its
own, so each round a client takes part in is one Gaussian release of its clipped update
(sensitivity ``clip`` under add-or-remove of the client's data, noise ``noise * clip``),
with no amplification by sampling (the server knows whom it sampled) or by aggregation (it
sees the updates before they are summed). A client in every round makes ``rounds``
releases; with ``fraction`` < 1 that is an upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from fl_sim.federation.transforms import update_chain
from fl_sim.federation.transforms.defences import GaussianDp

ACCOUNTANT = "Flower RdpAccountant (dp-accounting RDP), add-or-remove-one, no amplification"


def epsilon(noise: float, releases: int, delta: float) -> float:
    """Epsilon at ``delta`` of ``releases`` Gaussian releases with this noise multiplier
    (inf without noise; 0 without releases)."""
    from flwr.supercore.privacy_accounting import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        SamplingMethod,
    )
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    if releases <= 0:
        return 0.0
    if noise <= 0:
        return math.inf
    config = PrivacyConfig(
        target_delta=delta,
        population_size=1,
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
        sampling_method=SamplingMethod.NO_AMPLIFICATION,
    )
    accountant = RdpAccountant(config)
    accountant.compose(GaussianPrivacyEvent(noise, 1, 1), count=releases)
    return float(accountant.get_epsilon(delta))


def privacy_record(transforms: Iterable[str], rounds: int) -> list[dict[str, object]]:
    """Per ``dp`` step of the run's transforms: its parameters, whom it covers and the
    epsilon after ``rounds`` rounds (for run.json and the console)."""
    record = []
    for step in update_chain(transforms).steps:
        dp = step.transform
        if not isinstance(dp, GaussianDp):
            continue
        eps = epsilon(dp.noise, rounds, dp.delta)
        record.append(
            {
                "transform": str(step.spec),
                "clients": "all" if step.spec.partition is None else step.spec.partition,
                "clip": dp.clip, "noise_multiplier": dp.noise, "noise_std": dp.noise * dp.clip,
                "releases_per_client": rounds, "delta": dp.delta,
                "epsilon": eps if math.isfinite(eps) else "inf",
                "accountant": ACCOUNTANT,
            }
        )  # fmt: skip
    return record
