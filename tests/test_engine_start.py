"""A simulation engine (Ray) that does not start in time is tried again, a bounded number of
times; any other failure is not (injected: a fake ``run_simulation`` feeding Flower's lines)."""

from __future__ import annotations

from pathlib import Path

from fl_sim.commands.run import ENGINE_RETRY_WAIT_S, ENGINE_START_TRIES, simulate
from fl_sim.federation.run_config import RunConfig
from fl_sim.ops.console import Console
from fl_sim.ops.roles import FlowerRun
from fl_sim.results.store import DB_NAME

RAY_TIMEOUT = [
    "ERROR :     Simulation raised an exception",
    "Traceback (most recent call last):",
    '  File "/v/lib/python3.11/site-packages/ray/_private/node.py", line 424, in __init__',
    "Exception: The current node timed out during startup. This could happen because some "
    "of the raylet failed to startup or the GCS has become overloaded.",
    "ERROR :     Exit Code: 700",
]
OTHER = [
    "ERROR :     Simulation raised an exception",
    "Traceback (most recent call last):",
    '  File "/app/fl_sim/results/store.py", line 1, in commit_round',
    "OSError: [Errno 28] No space left on device: '/o/checkpoints/ann-r001.pt'",
]


class FakeEngine:
    """Feeds the console ``failures`` (one list of lines per failed try), then succeeds;
    records each try's config and makes the store on the first try, as a ServerApp would."""

    def __init__(self, failures: list[list[str]]) -> None:
        self.failures, self.configs = failures, []

    def __call__(self, run: FlowerRun, console: Console, keep_temp: bool = False) -> int:
        self.configs.append(run)
        (run.out / DB_NAME).touch()
        if len(self.configs) > len(self.failures):
            return 0
        for line in self.failures[len(self.configs) - 1]:
            console.feed(line)
        return 0  # flwr run exits 0 even when the ServerApp failed


def test_a_ray_start_timeout_is_retried_then_resumed(tmp_path: Path) -> None:
    engine, waits = FakeEngine([RAY_TIMEOUT]), []
    cfg = RunConfig.of(out=str(tmp_path))
    code, console = simulate(cfg, run=engine, sleep=waits.append)
    assert code == 0 and console.root_cause() is None  # the second try's console
    assert waits == [ENGINE_RETRY_WAIT_S[0]]
    assert [c.run_config["resume"] for c in engine.configs] == [
        False,
        True,
    ]  # continues what try 1 stored
    log = (tmp_path / "flower.log").read_text()
    assert "timed out during startup" in log  # the first try's records are kept (appended)


def test_retries_are_bounded_and_other_failures_are_not_retried(tmp_path: Path) -> None:
    engine, waits = FakeEngine([RAY_TIMEOUT] * 5), []
    code, console = simulate(RunConfig.of(out=str(tmp_path)), run=engine, sleep=waits.append)
    assert len(engine.configs) == ENGINE_START_TRIES and len(waits) == ENGINE_START_TRIES - 1
    cause = console.root_cause()
    assert cause is not None and "timed out during startup" in cause.message

    engine, waits = FakeEngine([OTHER]), []
    simulate(RunConfig.of(out=str(tmp_path / "b")), run=engine, sleep=waits.append)
    assert len(engine.configs) == 1 and waits == []
