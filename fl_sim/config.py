"""Typed run configuration: defaults < optional TOML file < ``--set key=value`` overrides.

The same keys form the Flower run config (``[tool.flwr.app.config]`` in pyproject.toml),
so ``fl-sim run`` and ``flwr run .`` drive the same apps with the same settings.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fl_sim.federation.schedule import AttackSchedule
from fl_sim.names import (
    ARM_NAMES,
    ATTACK_NAMES,
    AUTO,
    CLAMPS,
    DEVICE_CHOICES,
    DEVICE_PATTERN,
    DUMMY_NAMES,
    FAULT_KINDS,
    INITS,
    NEURON_NAMES,
    PARTITION_NAMES,
    STRATEGY_NAMES,
    THRESHOLDS,
    TRANSFORM_NAMES,
    VICTIM_NAMES,
    attack_needs,
    dataset_kinds,
    known,
)

if TYPE_CHECKING:  # torch behind these: imported where used, after the cheap checks
    import torch

    from attacks import Attack, AttackConfig
    from fl_sim.data.registry import DataOptions

PROTOCOLS = ("fedsgd", "fedavg")
ATTACK_RUNNERS = ("local", "ray")
FEDAVG_UPDATES = ("weights", "delta")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; every field is a valid ``--set`` key."""

    dataset: str = "mnist5k"
    data_root: str = ""  # for datasets the user provides (e.g. mnist)
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
    attacks: tuple[str, ...] = ("dlg", "idlg")
    T: int = 4  # SNN time steps on images (each image replicated over T)
    # event data: time bins per recording (the SNN runs that many steps on the frames) and
    # the integer spatial downsampling factor of the sensor
    frames: int = 20
    downsample: int = 1
    seed: int = 0
    # seed of the attacks' dummies, restarts and attack-budget draws; never the run seed, which
    # with a partition id would let an attack replay the client's private batch choice
    attack_seed: int = 0
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
    attack_budget: int = 0  # at most this many captures attacked per round (0: all)
    # rounds attacked (every round is captured and evaluated): all, or terms N, every:N,
    # first, last, comma-separated (fl_sim/federation/schedule.py)
    attack_rounds: str = "all"
    # warm start: a state dict (e.g. another run's final_model_{arm}.pt; "{arm}" is replaced
    # by each arm) the federation starts from instead of the seeded init; "" = none
    init_checkpoint: str = ""
    # Ray resources per virtual client (simulation engine): whole CPUs (Flower's federation
    # config takes an integer), a GPU fraction
    client_cpus: int = 1
    client_gpus: float = 0.0
    round_timeout: float = 600.0  # seconds the server waits for replies in a round
    iterations: int = 300  # DLG/iDLG L-BFGS steps (published: 300)
    grnn_iterations: int = 1000  # GRNN RMSprop iterations (published: 1000)
    # attack rates (rate leak + feature inversion): Adam steps and TV weight (issue 11's
    # reference: 1000, 60)
    rates_iterations: int = 1000
    # "auto": 60 on spiking victims, 1e-2 on the ANN (attacks/rates.py); or one weight >= 0
    rates_tv: str = "auto"
    # weight of the rate-leak feature term added to dlg/idlg/ig's gradient objective (0: none)
    feature_weight: float = 0.0
    attack_dummy: str = "auto"  # auto (each attack's own), free (paper) or tied (images, SNN)
    # the surrogate the attacker differentiates spiking victims with: auto (the client's, ATan
    # alpha 2) or SHAPE[:alpha=VALUE], SHAPE in atan, sigmoid, softsign
    attack_surrogate: str = "auto"
    attack_init: str = "auto"  # auto: U(0.45, 0.55) images, |N(0, sigma)| events (paper)
    sigma: float = 0.1
    clamp: str = "auto"  # auto: the attack's own (DLG/iDLG: output, IG: step)
    threshold: str = "none"  # spike binarisation: post (Algorithm 1) or in (Algorithm 2)
    tau: float = 0.5
    restarts: int = 1
    tolerance: float = 0.0  # attack early stop on the gradient-matching loss
    # judge training: 0 = the default of the dataset's judge (fl_sim/evaluation/judge.py); the width
    # applies to the spiking DVSGestureSNN judge only (Table I: 64)
    judge_epochs: int = 0
    judge_width: int = 0
    cache_dir: str = ""  # judge cache; "" = $FL_SIM_CACHE or ~/.cache/fl-sim
    out: str = "results"
    overwrite: bool = False  # replace results already in ``out``
    resume: bool = False  # continue the run recorded in ``out`` (fl-sim run --resume)
    grids: bool = True  # write ground truth vs reconstruction grids per round
    # store every captured update (and its ground truth) under out/captures, owner-only:
    # they are sensitive, so only when asked
    save_captures: bool = False
    batched: bool = True  # attack a round's captures together (attacks.batched)
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
    # torch threads per process: MNIST-size attack steps are dispatch-bound, and in a
    # simulation the ServerApp and every client process share the machine's cores
    threads: int = 1
    # where models run (attacks, judges, clients, the server's test evaluation): auto (cuda when
    # there is one, else the CPU, said once), cpu, cuda or cuda:N (models/device.py); seeded
    # draws stay on the CPU generator, so results depend on it only through float rounding
    device: str = "cpu"
    # where a round's captures (and an experiment's trials) are attacked: "local" (in the
    # ServerApp's process) or "ray" (Ray tasks of attack_cpus CPUs and attack_gpus GPUs each,
    # on ray_address: "" = the simulation's own Ray or a local one; "auto" or "ray://HOST:PORT"
    # = a running cluster, e.g. after `ray start --head`). Experiments always use Ray tasks.
    attack_runner: str = "local"
    attack_cpus: int = 1
    attack_gpus: float = 0.0
    ray_address: str = ""

    def __post_init__(self) -> None:
        self._check_values()
        self._check_components()

    def _check_values(self) -> None:
        """Ranges and names, against the plain lists of ``fl_sim.names``: no torch or flwr
        import, so a bad value is reported at once."""
        for name in (
            "clients",
            "rounds",
            "batch_size",
            "T",
            "frames",
            "downsample",
            "iterations",
            "threads",
            "restarts",
            "grnn_iterations",
            "rates_iterations",
            "local_steps",
            "local_epochs",
            "client_cpus",
            "attack_cpus",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.alpha <= 0:
            raise ValueError(f"lr and alpha must be > 0, got lr={self.lr}, alpha={self.alpha}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.judge_epochs < 0 or self.judge_width < 0:
            raise ValueError(
                "judge_epochs and judge_width must be >= 0 (0: the judge's default), got "
                f"{self.judge_epochs}, {self.judge_width}"
            )
        _ = self.attack_schedule  # valid terms, rounds within the run
        if self.attack_budget < 0:
            raise ValueError(f"attack_budget must be >= 0 (0: all), got {self.attack_budget}")
        if self.client_gpus < 0 or self.attack_gpus < 0 or self.round_timeout <= 0:
            raise ValueError(
                "need client_gpus >= 0, attack_gpus >= 0 and round_timeout > 0; got "
                f"client_gpus={self.client_gpus}, attack_gpus={self.attack_gpus}, "
                f"round_timeout={self.round_timeout}"
            )
        _check_choice("attack_runner", self.attack_runner, ATTACK_RUNNERS)
        if not re.fullmatch(DEVICE_PATTERN, self.device):
            raise ValueError(f"device: {self.device!r} is not one of {DEVICE_CHOICES}")
        _check_choice("protocol", self.protocol, PROTOCOLS)
        _check_choice("fedavg_update", self.fedavg_update, FEDAVG_UPDATES)
        _check_choice(
            "strategy",
            self.strategy,
            known(STRATEGY_NAMES, "fl_sim.federation.strategies", "STRATEGIES"),
        )
        _check_choice("dataset", self.dataset, tuple(dataset_kinds()))
        _check_choice(
            "partition",
            self.partition,
            known(PARTITION_NAMES, "fl_sim.federation.partition", "PARTITION_SCHEMES"),
        )
        _check_choice("attack_init", self.attack_init, INITS)
        _check_choice("clamp", self.clamp, CLAMPS)
        _check_choice("threshold", self.threshold, THRESHOLDS)
        _check_choice("victim", self.victim, known(VICTIM_NAMES, "models.registry", "VICTIMS"))
        _check_choice("neuron", self.neuron, known(NEURON_NAMES, "models.surrogate", "NEURONS"))
        dummies = known(DUMMY_NAMES, "attacks.components.dummies", "DUMMIES")
        _check_choice("attack_dummy", self.attack_dummy, (AUTO, *dummies))
        if self.attack_dummy == "tied" and self.data_kind == "events":
            raise ValueError(
                "attack_dummy: 'tied' needs image data (one image replicated over T); "
                f"{self.dataset} is event data: use auto or free"
            )
        _ = self.rates_tv_weight  # "auto" or a weight >= 0
        if not self.feature_weight >= 0:
            raise ValueError(f"feature_weight must be >= 0, got {self.feature_weight}")
        for arm in self.arms:
            _check_choice("arms", arm, known(ARM_NAMES, "models.registry", "ARMS"))
            if arm not in self.supported_arms:
                raise ValueError(
                    f"arms: {arm!r} cannot take {self.dataset} ({self.data_kind} data); "
                    f"valid: {', '.join(self.supported_arms)}"
                )
        attacks = known(ATTACK_NAMES, "attacks.registry", "ATTACKS")
        for attack in self.attacks:
            _check_choice("attacks", attack, attacks)
        _check_transform_names(self.transforms, self.faults)
        one_step = self.samples_per_round == 1 and (
            self.protocol == "fedsgd" or self.local_epochs == 1
        )
        needed = [attack_needs(name) for name in self.attacks]
        if (any(n["rate_leak"] for n in needed) or self.feature_weight) and not one_step:
            raise ValueError(
                "the rate leak (attacks rates, rates-*, feature_weight) needs the gradient of one "
                "sample: batch_size=1 and, under fedavg, local_steps=1 and local_epochs=1; got "
                f"batch_size={self.batch_size}, local_steps={self.local_steps}, "
                f"local_epochs={self.local_epochs}"
            )
        if any(n["one_sample"] for n in needed) and self.samples_per_round != 1:
            which = [a for a, n in zip(self.attacks, needed, strict=True) if n["one_sample"]]
            raise ValueError(
                f"attack(s) {', '.join(which)} need one private sample per round (iDLG's label "
                f"rule): batch_size=1 and local_steps=1, got batch_size={self.batch_size}, "
                f"local_steps={self.local_steps}"
            )

    def _check_components(self) -> None:
        """What only the components themselves can check (they import torch or flwr):
        strategy options, transform parameters, the surrogate and the attack settings."""
        from fl_sim.federation.secagg import SecAggSpec
        from fl_sim.federation.transforms import update_chain
        from models.device import resolve_device
        from models.surrogate import parse_surrogate

        if self.strategy_options.strip():
            from fl_sim.federation.strategies import parse_strategy_options

            parse_strategy_options(self.strategy, self.strategy_options)  # names, types
        # names, parameters and faults are valid, and fit the updates the clients send
        update_chain(self.transforms, self.faults).check_update_kind(self.update_kind)
        secagg = SecAggSpec.parse(self.secagg)
        if secagg is not None:
            secagg.check_federation(max(1, int(self.clients * self.fraction)), self.strategy)
        if self.attack_surrogate != AUTO:
            try:
                parse_surrogate(self.attack_surrogate)
            except ValueError as err:
                raise ValueError(f"attack_surrogate: {err}") from err
        self.attack_config()  # the attack settings validate themselves (sigma, tolerance...)
        if self.device != AUTO:  # cuda on a machine without one; auto resolves where used
            resolve_device(self.device)

    @property
    def torch_device(self) -> torch.device:
        """``device`` on this machine (``auto`` says once if it falls back to the CPU)."""
        from models.device import resolve_device

        return resolve_device(self.device)

    @property
    def attack_schedule(self) -> AttackSchedule:
        """The rounds the eavesdropper attacks (``attack_rounds``)."""
        return AttackSchedule.parse(self.attack_rounds, self.rounds)

    @property
    def data_kind(self) -> str:
        """ "image" or "events" (the dataset's kind)."""
        return dataset_kinds()[self.dataset]

    @property
    def supported_arms(self) -> tuple[str, ...]:
        """Arms that can train on this dataset: event frames need the spiking victim."""
        return ("snn",) if self.data_kind == "events" else ARM_NAMES

    @property
    def federated_arms(self) -> tuple[str, ...]:
        """The arms this run federates: ``arms``, or every supported arm when it is empty."""
        return self.arms or self.supported_arms

    def resolved(self) -> RunConfig:
        """This config with ``arms`` spelled out (``federated_arms``): what a run records."""
        return dataclasses.replace(self, arms=self.federated_arms)

    @property
    def time_steps(self) -> int:
        """Steps the SNN runs: ``frames`` on event data, ``T`` on images."""
        return self.frames if self.data_kind == "events" else self.T

    @property
    def samples_per_round(self) -> int:
        """Private samples a client trains on per round (and an attack must recover)."""
        return self.batch_size * (self.local_steps if self.protocol == "fedavg" else 1)

    @property
    def update_kind(self) -> str:
        """What a client's reply holds: "gradient" (FedSGD), "weights" or "delta" (FedAvg)."""
        return "gradient" if self.protocol == "fedsgd" else self.fedavg_update

    @property
    def rates_tv_weight(self) -> float | None:
        """``rates_tv`` as a weight, or None for the attack's own per-victim default."""
        if self.rates_tv == AUTO:
            return None
        try:
            weight = float(self.rates_tv)
        except ValueError:
            weight = math.nan
        if not weight >= 0:
            raise ValueError(f"rates_tv: {self.rates_tv!r} is not auto or a weight >= 0")
        return weight

    def build_attacks(self) -> list[Attack]:
        """The configured attacks, each with its published budget unless overridden."""
        from attacks import GRNNConfig, build_attack

        grnn = GRNNConfig(iterations=self.grnn_iterations, seed=self.attack_seed)
        tv = self.rates_tv_weight
        rates = dataclasses.replace(
            self.attack_config(),
            iterations=self.rates_iterations,
            regularisers=None if tv is None else ((("tv", tv),) if tv else ()),
            feature_weight=0.0,  # rates' objective is the feature term itself
        )
        own = {"grnn": grnn, "rates": rates}
        return [
            build_attack(name, own.get(name, self.attack_config()), {"rates": rates})
            for name in self.attacks
        ]

    def attack_config(self) -> AttackConfig:
        """The attack settings of this run (shared by every attack), seeded by ``attack_seed``."""
        from attacks import AttackConfig

        return AttackConfig(
            iterations=self.iterations, init=self.attack_init, sigma=self.sigma,
            clamp=self.clamp, threshold=self.threshold, tau=self.tau,
            tolerance=self.tolerance, restarts=self.restarts, seed=self.attack_seed,
            dummy=self.attack_dummy, feature_weight=self.feature_weight,
            surrogate=self.attack_surrogate,
        )  # fmt: skip

    @property
    def data_options(self) -> DataOptions:
        """What the dataset loader needs beyond the name (part of its cache key)."""
        from fl_sim.data.registry import DataOptions

        return DataOptions(self.frames, self.downsample, self.cache_dir)

    @property
    def judge_cache(self) -> Path:
        return self.data_options.cache_path

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
        """Build from strings or TOML values (on ``base``, else the defaults; validated once);
        unknown keys are rejected with the valid ones."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ValueError(
                f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(cls.keys())}"
            )
        types = {f.name: f.type for f in fields(cls)}
        parsed = {k: _coerce(k, v, types[k]) for k, v in values.items()}
        return cls(**parsed) if base is None else dataclasses.replace(base, **parsed)

    @classmethod
    def load(cls, config_file: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:  # type: ignore[assignment]
        """Defaults, then the TOML file (if any), then ``key=value`` overrides."""
        values = read_config_file(config_file) if config_file else {}
        values.update(parse_overrides(overrides))
        return cls.from_mapping(values)

    def to_flower(self) -> dict[str, bool | int | float | str]:
        """Flat values Flower's run config accepts (sequences as comma lists)."""
        return {
            k: ",".join(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
        }

    def flower_run_config_arg(self) -> str:
        """The ``--run-config`` string for ``flwr run`` (TOML key = value pairs)."""
        parts = []
        for k, v in self.to_flower().items():
            if isinstance(v, bool):
                parts.append(f"{k}={str(v).lower()}")
            elif isinstance(v, str):
                parts.append(f'{k}="{v}"')
            else:
                parts.append(f"{k}={v!r}")
        return " ".join(parts)


def read_config_file(path: str | Path) -> dict[str, Any]:
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


def _check_choice(key: str, value: str, valid: Mapping[str, Any] | tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{key}: unknown value {value!r}; valid: {', '.join(sorted(valid))}")


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


def _coerce(key: str, value: Any, typ: Any) -> Any:
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
