"""Resuming a run: the stored config, and which settings a resume may change.

A resumed run continues the federation recorded in ``<out>/results.sqlite``: settings that
define it (data, clients, the run and attack seeds, models, attacks, ...) must stay as
stored; only execution settings may change, and ``rounds`` may be raised to extend a run.
A key the stored config lacks (a run recorded before the key existed) takes its default,
e.g. ``attack_seed`` 0. A strategy with server state beyond the global model (FedAvgM's
momentum, FedAdam/FedYogi/FedAdagrad's moments) is refused: checkpoints hold the model only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.strategies import parse_strategy_options, server_state
from fl_sim.ops.runtime_config import RuntimeConfig
from fl_sim.results.config import ResultsConfig
from fl_sim.results.store import ResultsStore

# Keys a resume may change: how the run executes, not what it computes (every runtime and
# results key, and these few). Any other key (a new one included) must equal the stored value.
RESUMABLE = frozenset(
    {
        *RuntimeConfig.keys(),
        *ResultsConfig.keys(),
        "rounds",  # raise it to extend a run
        "cache_dir",
        "batched",
        "round_timeout",
    }
)


def stored_config(store: ResultsStore) -> RunConfig:
    """The config of the run recorded in ``store`` (its latest invocation)."""
    values = store.run_config()
    try:
        return RunConfig.from_mapping(values)
    except ValueError as err:
        raise ValueError(f"cannot resume {store.out_dir}: its stored config: {err}") from err


def check_resumable(stored: RunConfig, cfg: RunConfig) -> None:
    """Raise ValueError if ``cfg`` would change the stored federation (or lower ``rounds``).
    Both are compared resolved: ``arms=`` (every supported arm) equals those arms spelled out."""
    old, new = stored.resolved().flat(), cfg.resolved().flat()
    changed = [
        f"{key} {old[key]!r} -> {new[key]!r}"
        for key in new
        if key not in RESUMABLE and new[key] != old[key]
    ]
    if changed:
        raise ValueError(
            f"a resumed run continues the stored federation; these settings would change it: "
            f"{'; '.join(changed)} (a resume may change only: {', '.join(sorted(RESUMABLE))})"
        )
    fed = stored.federation
    state = server_state(fed.strategy, parse_strategy_options(fed.strategy, fed.strategy_options))
    if state is not None:
        raise ValueError(
            f"cannot resume a run with strategy {fed.strategy} "
            f"({fed.strategy_options or 'default options'}): the server keeps {state} from "
            "round to round and checkpoints hold only the global model, so a resumed run would "
            "not continue it bit-identically; rerun it from the start (overwrite=true)"
        )
    if cfg.federation.rounds < stored.federation.rounds:
        raise ValueError(
            f"rounds can only be kept or raised on resume (stored {stored.federation.rounds}, "
            f"asked {cfg.federation.rounds})"
        )


def resume_config(out_dir: str | Path, changes: Mapping[str, Any] = {}) -> RunConfig:  # noqa: B006
    """The stored config of ``out_dir`` with ``changes`` (e.g. ``rounds``) applied and
    checked, set to resume there."""
    from fl_sim.results.preflight import check_store

    out = Path(out_dir).expanduser().resolve()
    check_store(out)  # read-only: a damaged or foreign store is refused, not rewritten
    with ResultsStore.open_existing(out) as store:
        stored = stored_config(store)
    cfg = RunConfig.from_mapping(changes, stored)
    cfg = cfg.replace(out=str(out), resume=True)
    if cfg.results.overwrite:
        raise ValueError("--resume and overwrite=true contradict each other")
    check_resumable(stored, cfg)
    return cfg
