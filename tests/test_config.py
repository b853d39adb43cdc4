"""Run configuration: overrides, validation, and agreement with the Flower app config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from flwr.common.config import parse_config_args

from fl_sim.cli import main as cli_main
from fl_sim.federation.run_config import RunConfig

ROOT = Path(__file__).resolve().parent.parent


def test_overrides_are_typed() -> None:
    cfg = RunConfig.load(overrides=["clients=3", "attacks=idlg", "T=8", "grids=false", "lr=0.5"])
    assert (
        cfg.federation.clients,
        cfg.attack.attacks,
        cfg.federation.T,
        cfg.results.grids,
        cfg.federation.lr,
    ) == (3, ("idlg",), 8, False, 0.5)


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(
        ValueError, match="unknown config key.*clientz.*valid keys: dataset,.*rounds"
    ):
        RunConfig.load(overrides=["clientz=3"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("clients=many", "clients: cannot read 'many' as int"),
        ("rounds=0", "rounds must be >= 1, got 0"),
        ("attacks=dlg,zzz", "attacks: unknown value .zzz.; valid: dlg, "),
        ("dataset=cifar", "dataset: unknown value 'cifar'; valid: cifar100, dvsgesture, lfw, "),
        ("arms=ann,cnn", "arms: unknown value 'cnn'"),
        ("rounds", "not of the form key=value"),
        ("restarts=0", "restarts must be >= 1, got 0"),
        ("grnn_iterations=0", "grnn_iterations must be >= 1, got 0"),
        ("sigma=0", "need sigma > 0"),
        ("threshold=always", "threshold: unknown value 'always'; valid: in, none, post"),
        ("neuron=izhikevich", "neuron: unknown value 'izhikevich'; valid: if, lif"),
    ],
)
def test_bad_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunConfig.load(overrides=[override])


def test_config_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text('rounds = 5\nattacks = "dlg"\nclients = 6\n')
    cfg = RunConfig.load(path, ["clients=2"])
    assert (cfg.federation.rounds, cfg.attack.attacks, cfg.federation.clients) == (5, ("dlg",), 2)


def test_pyproject_app_config_matches_defaults() -> None:
    """`flwr run .` and `fl-sim run` must start from the same settings."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        flower = tomllib.load(fh)["tool"]["flwr"]["app"]["config"]
    assert flower == RunConfig().to_flower()
    assert RunConfig.from_mapping(flower) == RunConfig()


def test_flower_run_config_string_round_trips() -> None:
    """The --run-config string we hand to `flwr run`, read back by Flower's own parser."""
    cfg = RunConfig.load(overrides=["attacks=dlg", "out=/tmp/x y", "grids=false", "alpha=0.25"])
    parsed = parse_config_args([cfg.flower_run_config_arg()])
    assert RunConfig.from_mapping(parsed) == cfg


def test_cli_reports_bad_key_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["run", "--set", "nope=1"])
    assert exc.value.code == 2
    assert "unknown config key(s) nope; valid keys:" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "experiments" / "configs").glob("*.toml")))
def test_shipped_config_files_load(path: Path) -> None:
    cfg = RunConfig.load(path)
    assert cfg != RunConfig()


def test_each_key_belongs_to_one_role_section() -> None:
    from fl_sim.federation.run_config import SECTIONS

    owned = [key for cls in SECTIONS.values() for key in cls.keys()]  # noqa: SIM118
    assert sorted(owned) == sorted(RunConfig.keys()) and len(owned) == len(set(owned))
    cfg = RunConfig.of(clients=3, dataset="lfw-subset", device="cpu", judge_epochs=2)
    assert (cfg.federation.clients, cfg.data.dataset, cfg.judge.judge_epochs) == (
        3,
        "lfw-subset",
        2,
    )
    assert (
        RunConfig.from_mapping(cfg.flat()) == cfg and cfg.replace(clients=4).federation.clients == 4
    )
    assert {RunConfig.role_of(k) for k in ("T", "frames", "attack_rounds", "threads", "grids")} == {
        "federation", "data", "attack", "runtime", "results",
    }  # fmt: skip


def test_a_section_checks_its_own_keys_and_reads_only_them() -> None:
    from fl_sim.data.config import DataConfig
    from fl_sim.federation.config import FederationConfig
    from fl_sim.ops.runtime_config import RuntimeConfig

    with pytest.raises(ValueError, match="unknown config key.s. rounds; valid keys: dataset, "):
        DataConfig.from_mapping({"rounds": "2"})
    with pytest.raises(ValueError, match="clients must be >= 1, got 0"):
        FederationConfig.from_mapping({"clients": "0"})
    with pytest.raises(ValueError, match="device: 'tpu' is not one of auto, cpu, cuda"):
        RuntimeConfig(device="tpu")
    flower = RunConfig.of(clients=5, threads=2).to_flower()  # a ClientApp's run config
    assert FederationConfig.of_run(flower) == RunConfig.of(clients=5).federation
    assert RuntimeConfig.of_run(flower).threads == 2


def test_what_a_resume_may_change_follows_the_roles() -> None:
    from fl_sim.federation.resume import RESUMABLE
    from fl_sim.ops.runtime_config import RuntimeConfig
    from fl_sim.results.config import ResultsConfig

    assert set(RuntimeConfig.keys()) | set(ResultsConfig.keys()) <= RESUMABLE
    assert not RESUMABLE & {"seed", "attack_seed", "attacks", "dataset", "clients", "lr"}
