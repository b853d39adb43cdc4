"""Bad input gets one line and exit code 2, before anything heavy: no traceback, no torch
import for a bad option, no judge prepared for a bad capture file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests_helpers import ann_capture

from attacks.capture_io import save_capture
from fl_sim.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent


def fl_sim(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``fl-sim ARGS`` in a fresh interpreter (what a user's shell runs)."""
    cmd = [sys.executable, "-m", "fl_sim.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``fl-sim: error:`` line of a failed command (and nothing else on stderr)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fl-sim: error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


def test_importing_the_cli_imports_neither_torch_nor_flwr() -> None:
    code = "import sys, fl_sim.cli; print('torch' in sys.modules, 'flwr' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_help_and_bad_options_answer_in_one_line() -> None:
    for args in (["--help"], ["run", "--help"]):
        proc = fl_sim(*args)
        assert proc.returncode == 0 and "usage: fl-sim" in proc.stdout, proc.stderr
    for setting, message in (
        ("bogus=1", "unknown config key(s) bogus; valid keys: dataset,"),
        ("clients=0", "clients must be >= 1, got 0"),
        ("attacks=nope", "attacks: unknown value 'nope'; valid: dlg, grnn, idlg, ig, rates,"),
        ("faults=boom@1", "faults: fault 'boom@1' is not KIND@PARTITION with KIND in nan,"),
        ("transforms=foo@1", "transforms: unknown transform 'foo' in 'foo@1'; valid: dp, error,"),
    ):
        proc = fl_sim("run", "--set", setting)
        assert proc.returncode == 2
        assert message in one_error_line(proc)


def test_malformed_toml_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = 2\nattacks = dlg\n")  # an unquoted string
    proc = fl_sim("run", "--config", str(bad))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert f"config file {bad}: invalid TOML:" in line and "(at line 2, column 11)" in line
    proc = fl_sim("run", "--config", str(tmp_path / "missing.toml"))
    assert proc.returncode == 2
    assert "missing.toml: No such file or directory" in one_error_line(proc)


def test_attack_on_random_bytes_is_one_line_without_traceback(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    out = tmp_path / "out"
    proc = fl_sim("attack", str(garbage), "--out", str(out))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert f"{garbage} is not an fl-sim-capture file" in line
    assert "weights_only" not in proc.stderr
    assert not out.exists()
    proc = fl_sim("attack", str(tmp_path / "missing.pt"), "--out", str(out))
    assert proc.returncode == 2
    assert f"capture file {tmp_path / 'missing.pt'} does not exist" in one_error_line(proc)


def test_attack_checks_every_input_before_preparing_the_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_judge(*args: object, **kwargs: object) -> None:
        raise AssertionError("the judge was prepared before the inputs were checked")

    monkeypatch.setattr("fl_sim.evaluation.judge.ensure_judge", no_judge)
    good = save_capture(ann_capture(), tmp_path / "good.pt")
    blob = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(blob[: len(blob) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    bad_truth = tmp_path / "bad_truth.pt"
    bad_truth.write_bytes(blob)
    (tmp_path / "bad_truth.truth.pt").write_bytes(os.urandom(100))
    for path, message in (
        (truncated, f"{truncated} is not an fl-sim-capture file (torch cannot read it: "),
        (foreign, f"{foreign} is not an fl-sim-capture file"),
        (bad_truth, f"{tmp_path / 'bad_truth.truth.pt'} is not an fl-sim ground-truth file"),
        (tmp_path, f"capture file {tmp_path} is not a file"),
    ):
        with pytest.raises(SystemExit) as exc:
            cli_main(["attack", str(good), str(path), "--out", str(tmp_path / "out")])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert "weights_only" not in err
