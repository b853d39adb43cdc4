"""experiments.batch_leakage: option errors (one line, exit 2), the label-multiset accuracy and
best-attack rule on known rows, and a smoke run (files, every cell in the CSV, last lines in
the issue's format, the trained victim learnt; not attack quality)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from experiments import batch_leakage
from experiments.batch_report import best_records, best_table, final_line, label_accuracy


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-sizes", "0"], r"--batch-sizes: '0' is not an integer in 1\.\.256"),
        (["--batch-sizes", "4,x"], r"--batch-sizes: 'x' is not an integer"),
        (["--local-steps", "-1"], r"--local-steps: '-1' is not an integer in 1\.\.100"),
        (["--victims", "snn-izh-T4"], r"unknown victim 'snn-izh-T4'; valid: ann, snn-if-T"),
        (["--states", "warm"], r"--states: unknown warm; valid: untrained, trained"),
        (["--attacks", "dlgx"], r"--attacks: unknown dlgx; valid: .*rates"),
        (["--distinct", "--batch-sizes", "16"], r"--distinct: .* at most 10 digits"),
        (["--samples", "0"], r"--samples, --train-steps and --workers must be >= 1"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        batch_leakage.main([*args, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


def row(client: int, true: int, pred: int | None) -> dict[str, object]:
    return {"client": client, "label_true": true, "label_pred": pred}


def test_label_accuracy_counts_the_multiset_per_capture() -> None:
    # capture 0: truth {1, 1, 2}, recovered {1, 2, 2}: 2 of 3; capture 1: {3}, {3}: 1 of 1
    rows = [row(0, 1, 1), row(0, 1, 2), row(0, 2, 2), row(1, 3, 3)]
    assert label_accuracy(rows) == 3 / 4
    # the same labels in another order score the same; a failed attack (None) is a miss
    assert label_accuracy([row(0, 2, 1), row(0, 1, 2)]) == 1.0
    assert label_accuracy([row(0, 2, None), row(0, 1, 1)]) == 0.5


def test_best_attack_is_the_highest_mean_ssim_then_asr() -> None:
    base = {"victim": "ann", "B": 4, "E": 1, "state": "untrained", "n": 8, "label_acc": 1.0}
    recs = [
        {**base, "attack": "idlg", "ssim_mean": 0.5, "asr_pct": 50.0},
        {**base, "attack": "rates", "ssim_mean": 0.5, "asr_pct": 75.0},
        {**base, "attack": "dlg", "ssim_mean": float("nan"), "asr_pct": 100.0},
        {**base, "B": 8, "attack": "dlg", "ssim_mean": 0.1, "asr_pct": 0.0},
    ]
    assert [(r["B"], r["attack"]) for r in best_records(recs)] == [(4, "rates"), (8, "dlg")]
    assert final_line(recs)[0] == (
        "victim=ann B=4 E=1 state=untrained best=rates ssim=0.500 asr=75.0 label_acc=1.000 n=8"
    )
    # the summary table: one row per victim and state, one column per B, the best attack
    table = best_table([*recs, {**base, "E": 5, "attack": "rates", "ssim_mean": 0.2,
                                "asr_pct": 25.0}]).splitlines()  # fmt: skip
    assert "| victim | state | B = 4 | B = 8 |" in table
    assert "| ann | untrained | rates 0.500 / 75.0 / 1.00 | dlg 0.100 / 0.0 / 1.00 |" in table
    assert "| ann | untrained | rates 0.200 / 25.0 / 1.00 | - |" in table  # E = 5, no B = 8


LINE = (
    r"victim=(ann|snn-if-T4) B=(1|3) E=(1|2) state=(untrained|trained) best=(idlg|rates) "
    r"ssim=-?\d\.\d{3} asr=\d+\.\d label_acc=[01]\.\d{3} n=(3|6)"
)


def test_smoke_run(tmp_path: Path, judge_cache: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "batch"
    argv = [
        "--victims", "ann,snn-if-T4", "--batch-sizes", "1,3", "--local-steps", "1,2",
        "--states", "untrained,trained", "--samples", "3", "--train-steps", "30",
        "--workers", "1", "--out", str(out), "--set", "iterations=2",
        "--set", "rates_iterations=2", "--set", "judge_epochs=1",
        "--set", f"cache_dir={judge_cache}",
    ]  # fmt: skip
    batch_leakage.main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    cells = 2 * 2 * 2 * 2
    assert all(re.fullmatch(LINE, line) for line in lines[-cells:]), lines[-cells:]
    with (out / "batch_leakage.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert {(r["victim"], r["B"], r["E"], r["state"]) for r in table} == {
        (v, b, e, s)
        for v in ("ann", "snn-if-T4")
        for b in ("1", "3")
        for e in ("1", "2")
        for s in ("untrained", "trained")
    }
    # the default attacks: rates everywhere, iDLG on the ANN's FedSGD gradients only
    assert {(r["victim"], r["E"], r["attack"]) for r in table} == {
        ("ann", "1", "rates"), ("ann", "1", "idlg"), ("ann", "2", "rates"),
        ("snn-if-T4", "1", "rates"), ("snn-if-T4", "2", "rates"),
    }  # fmt: skip
    # n: ceil(3 / B) captures of B digits; labels are the decomposition's, never worse than none
    assert all(r["n"] == "3" for r in table) and all(0 <= float(r["label_acc"]) <= 1 for r in table)
    accuracy = {(r["victim"], r["state"]): float(r["victim_accuracy_pct"]) for r in table}
    for victim in ("ann", "snn-if-T4"):  # 30 central steps move the victim off its init
        assert accuracy[(victim, "trained")] != accuracy[(victim, "untrained")]
    assert (out / "batch_leakage.png").stat().st_size > 0
    assert "chance level 1/10 = 10.0%" in (out / "batch_leakage.md").read_text()
    assert (out / "victims" / "ann-trained.pt").is_file()
    # --resume on the same settings runs nothing new and prints the same last lines
    batch_leakage.main([*argv, "--resume"])
    again = capsys.readouterr().out.strip().splitlines()
    assert "batch_leakage: 16 cells, 16 stored, 0 to run" in "\n".join(again)
    assert again[-cells:] == lines[-cells:]
