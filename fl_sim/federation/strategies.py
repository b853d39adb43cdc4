"""Flower's aggregation strategies by name (config key ``strategy``) and their options
(``strategy_options``: "key=value,..."), checked against each strategy's own signature.

All take our replies (one ArrayRecord of weights, ``num-examples``). Left out: QFedAvg (needs
a client train loss and learning rate our replies do not carry), FedXgb* (XGBoost models) and
the DP wrappers (they wrap a strategy; another issue). Note: Flower 1.41's FedAdam returns
float64 arrays (its step size is a NumPy float64), so a fedadam run's global model is float64.
"""

from __future__ import annotations

import inspect
import math
import typing

from flwr.serverapp.strategy import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
)

STRATEGIES: dict[str, type] = {
    "fedavg": FedAvg,
    "fedavgm": FedAvgM,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "fedadagrad": FedAdagrad,
    "fedprox": FedProx,
    "fedmedian": FedMedian,
    "fedtrimmedavg": FedTrimmedAvg,
    "krum": Krum,
    "multikrum": MultiKrum,
    "bulyan": Bulyan,
}

# Arguments the eavesdropping tap sets itself (sampling, record keys, metric aggregation).
TAP_OWNED = frozenset(
    {
        "fraction_train",
        "fraction_evaluate",
        "min_train_nodes",
        "min_evaluate_nodes",
        "min_available_nodes",
        "weighted_by_key",
        "arrayrecord_key",
        "configrecord_key",
        "train_metrics_aggr_fn",
        "evaluate_metrics_aggr_fn",
    }
)

Option = int | float | bool


def option_types(name: str) -> dict[str, type]:
    """The options ``strategy_options`` may set for strategy ``name``: its ``__init__``
    arguments of type int, float or bool that the tap does not set itself."""
    hints = typing.get_type_hints(STRATEGIES[name].__init__)
    params = inspect.signature(STRATEGIES[name].__init__).parameters
    return {
        key: hints[key]
        for key in params
        if key not in TAP_OWNED and hints.get(key) in (int, float, bool)
    }


def parse_strategy_options(name: str, text: str) -> dict[str, Option]:
    """``text`` ("key=value,...") as keyword arguments of strategy ``name``, each value read
    as the argument's type; ValueError names the bad item and the valid option names."""
    if name not in STRATEGIES:
        valid = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"strategy: unknown value {name!r}; valid: {valid}")
    types = option_types(name)
    valid = ", ".join(types) or "none"
    options: dict[str, Option] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"strategy_options: {item!r} is not key=value")
        if key in TAP_OWNED:
            raise ValueError(
                f"strategy_options: {key} is set by the eavesdropping tap (sampling, record keys"
                f" and metrics follow the run config: fraction, clients); options of {name}: "
                f"{valid}"
            )
        if key not in types:
            raise ValueError(
                f"strategy_options: {name} has no option {key!r}; options of {name}: {valid}"
            )
        options[key] = _read(key, value, types[key])
    return options


def server_state(name: str, options: dict[str, Option]) -> str | None:
    """What strategy ``name`` (with ``options``) carries from round to round on the server
    beyond the global model, or None when the next round depends on the global model only."""
    cls = STRATEGIES[name]
    if cls is FedAvgM and options.get("server_momentum", 0.0):
        return "FedAvgM's momentum vector"
    if issubclass(cls, (FedAdam, FedYogi, FedAdagrad)):
        return f"{cls.__name__}'s optimiser moments"
    return None


def _read(key: str, value: str, typ: type) -> Option:
    """``value`` as ``typ`` (an int is a valid float), or a ValueError naming the option."""
    low = value.lower()
    if typ is bool and low in ("true", "false"):
        return low == "true"
    try:
        if typ is int:
            return int(value)
        if typ is float and math.isfinite(float(value)):
            return float(value)
    except ValueError:
        pass
    what = {bool: "true or false", int: "an int", float: "a finite float"}[typ]
    raise ValueError(f"strategy_options: {key}={value!r} is not {what}")
