"""experiments.privacy_utility: settings, reuse of finished runs, strongest attack per point,
last lines, bad options (the sweep itself is measured in the README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments import privacy_utility as pu
from fl_sim.results.store import ResultsStore


def leak_row(arm: str, attack: str, client: int, hit: bool, ssim: float) -> dict[str, object]:
    return {
        "arm": arm, "round": 1, "client": client, "attack": attack, "sample": 0,
        "label_true": 1, "label_pred": 1, "label_correct": True, "judge_pred": 1 if hit else 2,
        "judge_correct": hit, "mse": 0.1, "psnr": 10.0, "ssim": ssim, "l2": 1.0,
        "grad_loss": 1e-3, "status": "ok", "seconds": 0.1,
    }  # fmt: skip


def finished_run(out: Path, rows: list[dict[str, object]], acc: float, eps: float | None) -> None:
    with ResultsStore(out) as store:
        store.start_run({"config": {}})
        store.add_reconstructions(rows)
        for arm in ("ann", "snn"):
            store.commit_round(arm, 1, {"w": torch.zeros(1)}, accuracy=acc, seconds=1.0, replies=4)
        store.finish_run()
    privacy = [] if eps is None else [{"epsilon": eps}]
    (out / "run.json").write_text(json.dumps({"privacy": privacy}))


def test_finished_settings_are_reused_and_the_strongest_attack_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    finished_run(tmp_path / "warm", [], 0.5, None)
    plain = [
        leak_row("ann", "idlg", 0, True, 0.9), leak_row("ann", "idlg", 1, True, 0.8),
        leak_row("ann", "rates", 0, False, 0.3), leak_row("ann", "rates", 1, True, 0.6),
        leak_row("snn", "idlg", 0, False, 0.0), leak_row("snn", "rates", 0, True, 0.5),
    ]  # fmt: skip
    finished_run(tmp_path / "none", plain, 0.8, None)
    noisy = [leak_row(arm, "idlg", 0, False, 0.01) for arm in ("ann", "snn")]
    for z in ("0.01", "0.1", "1"):
        finished_run(tmp_path / f"dp-noise{z}", noisy, 0.7, 12.5)
    pu.main(["--out", str(tmp_path), "--only", "none,dp"])
    printed = capsys.readouterr().out.splitlines()
    assert sum("finished run in" in line for line in printed) == 5  # warm + 4 settings
    last = printed[-8:]
    assert last[0].startswith("ann none - acc=0.800 asr=100.0% [") and "(idlg, n=2)" in last[0]
    assert last[1].startswith("snn none - acc=0.800 asr=100.0% [") and "(rates, n=1)" in last[1]
    assert last[2].startswith("ann dp noise=0.01 acc=0.700 asr=0.0% [")
    assert {line.split()[1] for line in last} == {"none", "dp"}
    csv_text = (tmp_path / "privacy_utility.csv").read_text()
    assert csv_text.startswith(",".join(pu.COLUMNS)) and ",12.5," in csv_text
    assert (
        "| ann | dp | noise=0.1 | 12.5 | 70.0 | idlg | 1 |"
        in (tmp_path / "privacy_utility.md").read_text()
    )
    assert (tmp_path / "privacy_utility.png").stat().st_size > 10_000


def test_reduced_sweep_has_three_dp_and_pruning_strengths_and_secagg() -> None:
    defences = [s.defence for s in pu.REDUCED]
    assert defences.count("dp") >= 3 and defences.count("prune") >= 3
    assert "secagg" in defences and "none" in defences
    names = [s.name for s in pu.FULL]
    assert len(set(names)) == len(names)  # one directory per setting


@pytest.mark.parametrize(
    "argv",
    [["--set", "transforms=dp"], ["--rounds", "0"], ["--only", "dp,nope"], ["--config", "x.toml"]],
)
def test_bad_options_exit_2(argv: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as err:
        pu.main([*argv, "--out", str(tmp_path)])
    assert err.value.code == 2
