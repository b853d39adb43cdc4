"""Progress lines (done/total, elapsed, ETA) and the console that splits ``flwr run`` output."""

from __future__ import annotations

import io
from pathlib import Path

from fl_sim.ops.console import Console, strip_ansi
from fl_sim.ops.progress import PROGRESS, Eta, fmt_duration, steps


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fmt_duration() -> None:
    assert fmt_duration(8.56) == "8.6s"
    assert fmt_duration(66) == "1m06s"
    assert fmt_duration(2 * 3600 + 3 * 60 + 59) == "2h03m"


def test_eta_extrapolates_the_rate_so_far() -> None:
    clock = Clock()
    eta = Eta(10, done=2, clock=clock)  # resumed after 2: those took no time here
    assert eta.status() == "2/10, 0.0s elapsed, ETA unknown"
    clock.now += 8
    assert eta.advance(2) == "4/10, 8.0s elapsed, ETA 24.0s"  # 4 s per unit, 6 left
    clock.now += 100
    assert eta.advance(99) == "10/10, 1m48s elapsed, done"  # capped at total


def test_steps_plain_lines_at_tenths_no_more_often_than_min_interval() -> None:
    clock = Clock()
    lines: list[str] = []

    def items():  # each item takes 1 s
        for i in range(20):
            clock.now += 1
            yield i

    got = list(steps(items(), "emulating", 20, "digits", lines.append, False, 5.0, clock))
    assert got == list(range(20))
    # Tenths are every 2 items (2 s); a line at most every 5 s: after items 6, 12, 18.
    assert lines == [
        "emulating: 6/20 digits, 6.0s elapsed, ETA 14.0s",
        "emulating: 12/20 digits, 12.0s elapsed, ETA 8.0s",
        "emulating: 18/20 digits, 18.0s elapsed, ETA 2.0s",
    ]


FLWR_OUTPUT = [
    "Using SuperLink: fl-sim (127.0.0.1:44671)\n",
    "Successfully started run 166\n",
    "\x1b[92mINFO \x1b[0m:      Starting Flower Simulation\n",
    "\x1b[93mWARNING \x1b[0m:   Since flwr 1.32, default simulated SuperNodes changed\n",
    "\x1b[92mINFO \x1b[0m:      \tNumber of rounds: 2\n",
    "=== arm ann: lenet, 2 clients, 2 rounds ===\n",
    "[ann r1] attacks 1/2, 4.0s elapsed, ETA 4.0s (idlg)\n",
    "[ann r1 c0] idlg: ssim 1.000, judge 1/1\n",
    "\x1b[91mERROR \x1b[0m:     ClientApp raised an exception\n",
    "Traceback (most recent call last):\n",
    '  File "x.py", line 1, in f\n',
    "ValueError: injected fault\n",
    "[ann r1] left out node 7 (client 1): ValueError: injected fault\n",
    "[ann] rounds 1/2, 9.0s elapsed, ETA 9.0s\n",
    "arm  attack  n  ASR %\n",
    "ann  idlg    1  100.0\n",
]
OURS = [
    "=== arm ann: lenet, 2 clients, 2 rounds ===",
    "[ann r1] attacks 1/2, 4.0s elapsed, ETA 4.0s (idlg)",
    "[ann r1 c0] idlg: ssim 1.000, judge 1/1",
    "[ann r1] left out node 7 (client 1): ValueError: injected fault",
    "[ann] rounds 1/2, 9.0s elapsed, ETA 9.0s",
    "arm  attack  n  ASR %",
    "ann  idlg    1  100.0",
]


def feed(console: Console) -> None:
    for line in FLWR_OUTPUT:
        console.feed(line)


def test_console_keeps_flower_records_in_the_log_file(tmp_path: Path) -> None:
    out = io.StringIO()
    with Console(tmp_path / "flower.log", out=out, terminal=False) as console:
        feed(console)
    assert out.getvalue().splitlines() == OURS  # no Flower record, no traceback, no ANSI
    logged = (tmp_path / "flower.log").read_text().splitlines()
    assert logged == [
        strip_ansi(x.rstrip("\n"))
        for x in FLWR_OUTPUT
        if strip_ansi(x) not in {o + "\n" for o in OURS}
    ]
    assert "\x1b" not in (tmp_path / "flower.log").read_text()
    hint = console.failure_hint()
    assert hint.startswith("ERROR :     ClientApp raised an exception ... ValueError: injected")
    assert str(tmp_path / "flower.log") in hint


def test_console_verbose_shows_flower_too_and_appends_on_resume(tmp_path: Path) -> None:
    (tmp_path / "flower.log").write_text("earlier run\n")
    out = io.StringIO()
    with Console(tmp_path / "flower.log", True, True, out=out, terminal=False) as console:
        feed(console)
    assert out.getvalue().splitlines() == [strip_ansi(x.rstrip("\n")) for x in FLWR_OUTPUT]
    assert (tmp_path / "flower.log").read_text().startswith("earlier run\nUsing SuperLink")


def test_console_on_a_terminal_draws_bars_for_progress_lines() -> None:
    out = io.StringIO()
    with Console(None, out=out, terminal=True) as console:
        feed(console)
        assert set(console.bars) == {"attacks", "rounds"}
        assert (console.bars["rounds"].n, console.bars["rounds"].total) == (1, 2)
    text = out.getvalue()
    assert "[ann] rounds 1/2, 9.0s elapsed" in text  # round lines are printed too
    assert "[ann r1] attacks 1/2, 4.0s" not in text  # attack lines only move their bar
    assert "INFO" not in text


def test_progress_pattern() -> None:
    assert PROGRESS.match("[ann r3] attacks 4/12, 1.0s elapsed")["kind"] == "attacks"
    assert PROGRESS.match("[snn] rounds 3/10, 1.0s elapsed")["total"] == "10"
    assert PROGRESS.match("[ann r3 c1] idlg: ssim 1.000") is None


SERVER_FAILURE = [
    "\x1b[92mINFO \x1b[0m:      Global evaluation\n",
    "\x1b[91mERROR \x1b[0m:     ClientApp raised an exception\n",
    "Traceback (most recent call last):\n",
    '  File "/tmp/app/fl_sim/federation/client_app.py", line 9, in train\n',
    "ValueError: a client fault the run survives\n",
    "\x1b[91mERROR \x1b[0m:     Simulation raised an exception\n",
    "Traceback (most recent call last):\n",
    '  File "/venv/lib/python3.11/site-packages/flwr/simulation/app.py", line 337, in run\n',
    "    simulation_result = _run_simulation(\n",
    "                        ^^^^^^^^^^^^^^^^\n",
    '  File "/tmp/fl-sim-flwr-x/apps/fl-sim.0.1.0/fl_sim/results/store.py", line 193, in '
    "commit_round\n",
    "    save_atomic(state, path)\n",
    '  File "/root/.pyenv/versions/3.11.7/lib/python3.11/pathlib.py", line 1116, in mkdir\n',
    "    os.mkdir(self, mode)\n",
    "StoreDamaged: /o/results.sqlite is damaged: move it away\n",
    "\x1b[91mERROR \x1b[0m:     Exit Code: 700\n",
]


def test_the_failure_hint_is_the_root_cause_of_the_servers_traceback(tmp_path: Path) -> None:
    out = io.StringIO()
    with Console(tmp_path / "flower.log", out=out, terminal=False) as console:
        for line in SERVER_FAILURE:
            console.feed(line)
    assert out.getvalue() == ""  # the whole traceback, any exception name, went to the log
    cause = console.root_cause()
    assert cause is not None and cause.type == "StoreDamaged"  # not the client's ValueError
    assert cause.where == "fl_sim/results/store.py:193 in commit_round"  # ours, not pathlib's
    assert console.failure_hint() == (
        "StoreDamaged: /o/results.sqlite is damaged: move it away (at "
        f"fl_sim/results/store.py:193 in commit_round); Flower's log: {tmp_path / 'flower.log'}"
    )


def test_root_cause_takes_the_last_of_chained_exceptions_and_none_without_a_traceback() -> None:
    from fl_sim.ops.root_cause import RootCause, project_path, root_cause

    lines = [
        "Traceback (most recent call last):",
        '  File "/a/fl_sim/x.py", line 1, in f',
        "KeyError: 'k'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "/a/attacks/y.py", line 2, in g',
        "ray.exceptions.ActorDiedError: The actor died",
        "  more detail",
    ]
    assert root_cause(lines) == RootCause(
        "ray.exceptions.ActorDiedError", "The actor died", "attacks/y.py:2 in g"
    )
    assert root_cause(["ERROR :     Exit Code: 700"]) is None
    assert project_path("/v/lib/python3.11/site-packages/flwr/models/x.py") is None
    assert project_path("/tmp/fl_sim/ops/a.py") == "fl_sim/ops/a.py"
