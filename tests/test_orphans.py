"""Nothing outlives ``fl-sim``, and one writer per out directory (issue 13, items 1 and 5).

Flower starts its SuperExec, ServerApp and Ray in new sessions: a SIGKILLed ``fl-sim`` must
still leave no process, no temporary dir and no lock behind (its watchdog ends them), and a
second run on the same out directory is refused while one is writing it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from tests_helpers import committed_rounds, same_rows

from fl_sim.cli import build_parser, main
from fl_sim.federation.run_config import RunConfig
from fl_sim.ops import proctree
from fl_sim.ops.outlock import RUN_LOCK, WRITER_LOCK, OutDirBusy, OutLock, run_lock
from fl_sim.ops.tempdirs import temp_dir
from fl_sim.results.report import read_rows
from fl_sim.results.store import DB_NAME, ResultsStore

linux_only = pytest.mark.skipif(not proctree.available(), reason="reads /proc")


# --- the out-dir lock -------------------------------------------------------------------------


def test_second_holder_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    busy = rf"in use: fl-sim run \(pid {os.getpid()}\)"
    with OutLock(tmp_path, RUN_LOCK, "fl-sim run"), pytest.raises(OutDirBusy, match=busy):
        OutLock(tmp_path, RUN_LOCK, "fl-sim run").acquire()
    OutLock(tmp_path, RUN_LOCK, "fl-sim run").acquire().release()  # free again


def test_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    holder = textwrap.dedent(
        """
        import sys, time
        from fl_sim.ops.outlock import WRITER_LOCK, OutLock
        OutLock(sys.argv[1], WRITER_LOCK, "ServerApp").acquire()
        print("locked", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        # a new run checks the ServerApp's lock too (e.g. one left by a killed run)
        busy = rf"ServerApp \(pid {proc.pid}\) is writing it"
        with pytest.raises(OutDirBusy, match=busy), run_lock(tmp_path, "fl-sim run"):
            pass
    finally:
        proc.kill()
        proc.wait()
    with run_lock(tmp_path, "fl-sim run"):  # no stale lock
        pass


def test_cli_refuses_a_busy_out_dir_with_exit_code_2(
    tmp_path: Path, judge_cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    cfg = RunConfig.of(arms=("ann",), out=str(out), cache_dir=judge_cache)
    with ResultsStore(out) as store:  # a run to resume
        store.start_run({"config": cfg.flat()})
    sigterm = signal.getsignal(signal.SIGTERM)  # main() sets its own
    try:
        for name, holder in ((RUN_LOCK, "fl-sim run"), (WRITER_LOCK, "ServerApp")):
            for argv in (["run", "--out", str(out), "--overwrite"], ["run", "--resume", str(out)]):
                with OutLock(out, name, holder), pytest.raises(SystemExit) as exit_:
                    main([*argv, "--set", "arms=ann", "--set", f"cache_dir={judge_cache}"])
                assert exit_.value.code == 2
                err = capsys.readouterr().err
                assert f"in use: {holder} (pid {os.getpid()})" in err, err
                assert err.count("\n") == 1, err  # one line
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    assert (out / DB_NAME).exists()  # --overwrite was refused before it removed anything


# --- temporary dirs ---------------------------------------------------------------------------


def test_an_interrupted_command_does_not_wait_for_its_zombies() -> None:
    """A child the CLI killed stays a zombie until reaped: ``live_descendants`` (what an
    interrupted command ends and waits for) leaves it out, the raw process tree does not."""
    from fl_sim.cli import live_descendants

    child = subprocess.Popen(["sleep", "30"])
    try:
        child.kill()
        deadline = time.monotonic() + 10
        while (proc := proctree.read_proc(child.pid)) is not None and proc.alive:
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.01)
        assert proc is not None and proc.state == "Z"  # not reaped yet: we did not wait()
        assert child.pid in proctree.descendants(os.getpid())
        assert child.pid not in [p.pid for p in live_descendants()]
    finally:
        child.kill()
        child.wait()


def test_temp_dirs_go_unless_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    said: list[str] = []
    with temp_dir("fl-sim-t-", "the logs", said.append) as path:
        assert path.parent == tmp_path and path.is_dir()
    assert not path.exists() and said == []
    with (
        pytest.raises(KeyboardInterrupt),
        temp_dir("fl-sim-t-", "the logs", said.append, keep_on_error=True) as path,
    ):
        raise KeyboardInterrupt  # Ctrl-C (and SIGTERM, via SystemExit): removed
    assert not path.exists() and said == []
    with (
        pytest.raises(ValueError),
        temp_dir("fl-sim-t-", "the logs", said.append, keep_on_error=True) as path,
    ):
        raise ValueError("its logs explain this")
    assert path.is_dir() and said == [f"kept the logs in {path}"]
    with temp_dir("fl-sim-t-", "the logs", said.append, keep=True) as kept:
        pass
    assert kept.is_dir() and said[-1] == f"kept the logs in {kept}"
    assert build_parser().parse_args(["run", "--keep-temp"]).keep_temp
    assert build_parser().parse_args(["deploy", "--keep-temp"]).keep_temp


# --- the watchdog, with a stand-in for fl-sim --------------------------------------------------

FAKE_CLI = textwrap.dedent(
    """
    import subprocess, sys, time
    from fl_sim.ops import watchdog
    from fl_sim.ops.tempdirs import temp_dir

    with watchdog.watching(grace=1.0), temp_dir("fl-sim-test-", "test dir", print) as d:
        # a child that starts a grandchild in a new session, which ignores SIGTERM
        cmd = "setsid sh -c 'trap \\"\\" TERM; sleep 300' & sleep 300"
        p = subprocess.Popen(["sh", "-c", cmd], start_new_session=True)
        watchdog.watch(p.pid)
        print("ready", flush=True)
        time.sleep(float(sys.argv[1]))
    """
)


def alive(tree: list[proctree.Proc]) -> list[proctree.Proc]:
    return [p for p in tree if proctree.is_same(p)]


def wait_gone(tree: list[proctree.Proc], timeout: float) -> float:
    """Seconds until every process of ``tree`` is gone; fails (ending them) after timeout."""
    start = time.monotonic()
    while alive(tree):
        if time.monotonic() - start > timeout:
            left = alive(tree)
            proctree.end_tree(lambda: alive(tree), grace=0)  # leave nothing behind
            pytest.fail(f"still alive after {timeout}s: {[p.pid for p in left]}")
        time.sleep(0.05)
    return time.monotonic() - start


@linux_only
@pytest.mark.parametrize("how", ["sigkill", "normal-exit"])
def test_watchdog_ends_the_tree_and_removes_temp_dirs(tmp_path: Path, how: str) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    sleep = "300" if how == "sigkill" else "1"
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_CLI, sleep], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    tree: list[proctree.Proc] = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.6)  # the grandchild is running and the watchdog has seen it
        table = proctree.snapshot()
        tree = [table[p] for p in proctree.descendants(proc.pid, table)]
        assert len(tree) >= 5  # watchdog, sh, setsid'd sh, two sleeps
        assert len({p.sid for p in tree}) >= 3  # the watchdog's, sh's and the setsid'd one
        if how == "sigkill":
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        seconds = wait_gone(tree, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proctree.end_tree(lambda: alive(tree), grace=0)
    log = proc.stdout.read()
    assert seconds < 10
    assert list(tmp_path.glob("fl-sim-test-*")) == [], log
    if how == "sigkill":
        assert f"fl-sim (pid {proc.pid}) is gone; ending the" in log, log
        assert "fl-sim watchdog: removed" in log, log


# --- fl-sim run, SIGKILLed for real -----------------------------------------------------------


def ours(tmp: Path) -> list[str]:
    """What a run left in the temp dir (torch's shared ``torchinductor_<user>`` cache is not
    a run's)."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(("fl-sim-", "ray")))


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def sigkill_after_round_1(
    cmd: list[str], env: dict[str, str], out: Path, log: Path, expected: tuple[str, ...]
) -> tuple[int, list[proctree.Proc], float]:
    """Start ``cmd`` in a session of its own, wait for round 1 in its results store, snapshot
    every process below it, SIGKILL it alone (not its group) and wait up to 10 s for all of
    them to be gone. Returns its pid, the snapshot and the seconds they took to go."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    tree: list[proctree.Proc] = []
    try:
        started = time.monotonic()
        while committed_rounds(out) < 1:
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() - started < 600, "no round committed in time"
            time.sleep(0.2)
        table = proctree.snapshot()
        tree = [table[p] for p in proctree.descendants(proc.pid, table)]
        joined = "\n".join(cmdline(p.pid) for p in tree)
        for name in ("fl_sim.ops.watchdog", *expected):
            assert name in joined, joined
        assert any(p.sid != proc.pid for p in tree)  # Flower's own sessions
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        seconds = wait_gone(tree, timeout=10)
    finally:
        if proc.poll() is None:  # the test failed early: let fl-sim stop what it started
            proc.terminate()
            proc.wait(timeout=60)
        proctree.end_tree(lambda: alive(tree), grace=0)  # and leave nothing behind
    return proc.pid, tree, seconds


@linux_only
@pytest.mark.slow
def test_sigkilled_run_leaves_nothing_and_resumes(tmp_path: Path, judge_cache: str) -> None:
    """SIGKILL of ``fl-sim run`` after its first committed round: within seconds no process,
    temp dir or lock of it is left; ``--resume`` finishes both arms with exactly one row per
    key; resuming a finished run only exports and reports again."""
    arms, rounds, clients = ("ann", "snn"), 2, 2
    out = tmp_path / "out"
    # A private, short temp dir (Ray's socket paths must stay short): whatever the run puts
    # in the system temp dir lands here, and nothing else does.
    tmp = Path(tempfile.mkdtemp(prefix="fls", dir="/tmp"))
    env = {**os.environ, "TMPDIR": str(tmp)}
    cmd = [
        sys.executable, "-m", "fl_sim.cli", "run", "--out", str(out),
        "--set", f"rounds={rounds}", "--set", f"clients={clients}", "--set", "arms=ann,snn",
        "--set", "attacks=idlg", "--set", "iterations=5", "--set", "grids=false",
        "--set", f"cache_dir={judge_cache}",
    ]  # fmt: skip
    log = tmp_path / "first.log"
    expected = ("flower-superlink", "flower-superexec", "flwr run", "flwr-simulation", "raylet")
    resume = [sys.executable, "-m", "fl_sim.cli", "run", "--resume", str(out)]
    try:
        pid, tree, seconds = sigkill_after_round_1(cmd, env, out, log, expected)
        at_kill = committed_rounds(out)
        text = log.read_text()
        print(f"\n{len(tree)} processes gone {seconds:.1f}s after SIGKILL; {at_kill} rounds kept")
        assert 1 <= at_kill < len(arms) * rounds, "the run was not interrupted"
        assert f"fl-sim (pid {pid}) is gone" in text, text[-3000:]
        assert ours(tmp) == [], text[-3000:]  # the Flower home, with Ray's session
        for name in (RUN_LOCK, WRITER_LOCK):
            OutLock(out, name, "test").acquire().release()

        started = time.monotonic()
        done = subprocess.run(
            resume, capture_output=True, text=True, env=env, timeout=900, check=False
        )
        print(f"resumed in {time.monotonic() - started:.1f}s")
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        assert "fl-sim: resuming ann after round " in done.stdout
        assert ours(tmp) == []  # a normal exit cleans up too
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    with ResultsStore(out) as store:
        rows = store.reconstruction_rows()
        keys = [tuple(r[c] for c in ("arm", "round", "client", "attack", "sample")) for r in rows]
        expected_keys = {(a, r, c, "idlg", 0) for a in arms for r in (1, 2) for c in range(clients)}
        assert sorted(keys) == sorted(expected_keys)  # each exactly once
        assert [(r["arm"], r["round"]) for r in store.rounds()] == [
            (a, r) for a in arms for r in range(1, rounds + 1)
        ]
        for arm in arms:
            latest = store.load_checkpoint(arm)
            final = torch.load(out / f"final_model_{arm}.pt", weights_only=True)
            assert all(torch.equal(v, latest[k]) for k, v in final.items())
        assert same_rows(read_rows(out / "leakage.csv"), rows)
        runs = store.runs()
        assert [r["resumed"] for r in runs] == [0, 1]
        assert runs[0]["finished"] is None and runs[1]["finished"]  # the first one was killed
    assert "ASR %" in (out / "summary.txt").read_text()

    # Resuming a finished run only exports and reports again (no federation).
    again = subprocess.run(resume, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "has every round of ann, snn finished" in again.stdout
    assert same_rows(read_rows(out / "leakage.csv"), rows)


@linux_only
@pytest.mark.slow
def test_sigkilled_deploy_leaves_nothing(tmp_path: Path, judge_cache: str) -> None:
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    cmd = [
        sys.executable, "-m", "fl_sim.cli", "deploy", "--clients", "2", "--rounds", "3",
        "--out", str(out), "--set", "arms=ann", "--set", "attacks=idlg",
        "--set", "iterations=5", "--set", "grids=false", "--set", "judge_epochs=1",
        "--set", f"cache_dir={judge_cache}",
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmp)}
    log = tmp_path / "deploy.log"
    expected = ("flower-superlink", "flower-superexec", "flower-supernode", "flwr-serverapp")
    pid, tree, seconds = sigkill_after_round_1(cmd, env, out, log, expected)
    print(f"\n{len(tree)} processes gone {seconds:.1f}s after SIGKILL")
    text = log.read_text()
    assert f"fl-sim (pid {pid}) is gone" in text, text[-3000:]
    assert ours(tmp) == [], text[-3000:]  # the work dir (logs, Flower homes, pids.json)
    for name in (RUN_LOCK, WRITER_LOCK):
        OutLock(out, name, "test").acquire().release()
