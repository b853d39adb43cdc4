"""Damaged out dirs are refused before anything starts: one line, exit 2, nothing written
(issue 27). No federation runs here: every case is refused while the command reads its
inputs, which is the point."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from flwr.app import Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity
from tests_helpers import tmpfs

from fl_sim.atomic_file import atomic_write
from fl_sim.cli import main
from fl_sim.federation.faults import engine_failure
from fl_sim.federation.run_config import RunConfig
from fl_sim.ops.outlock import RUN_LOCK, SUPERVISED_ENV, OutLock, run_lock, supervisor_gone
from fl_sim.results import preflight
from fl_sim.results.store import DB_NAME, ResultsStore

STATE = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)}


def finished_run(out: Path, rounds: int = 2) -> Path:
    """A store with ``rounds`` committed rounds of arm ann (checkpoints written by it)."""
    cfg = RunConfig.of(clients=2, rounds=rounds, arms=("ann",), out=str(out))
    with ResultsStore(out) as store:
        store.start_run({"config": cfg.flat(), "versions": {}})
        for r in range(1, rounds + 1):
            store.commit_round("ann", r, STATE, accuracy=0.5, seconds=1.0, replies=2)
    (out / "leakage.csv").write_text("arm\n")
    return out


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) -> its SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, expect exit 2 and one line on stderr without a traceback; return it."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def garble(path: Path, offset: int, size: int = 4096) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(os.urandom(size))


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda d: garble(d / DB_NAME, 4096), "is damaged"),
        (lambda d: os.truncate(d / DB_NAME, 5000), "is damaged"),
        (lambda d: os.truncate(d / DB_NAME, 0), "is an empty file, not a results store"),
        (lambda d: garble(d / DB_NAME, 0, 100), "is damaged (file is not a database)"),
        (lambda d: os.truncate(d / "checkpoints" / "ann-r002.pt", 100), "does not load"),
        (lambda d: (d / "checkpoints" / "ann-r002.pt").unlink(), "ann-r002.pt (arm ann's"),
        (lambda d: ((d / "leakage.csv").unlink(), (d / "leakage.csv").mkdir()), "is a directory"),
    ],
    ids=["garbled-page", "truncated", "empty", "header", "ckpt-truncated", "ckpt-missing",
         "csv-is-dir"],
)  # fmt: skip
def test_a_damaged_run_is_refused_on_resume_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: object, says: str
) -> None:
    out = finished_run(tmp_path / "run")
    for name in ("-wal", "-shm"):  # as after a clean close
        Path(f"{out / DB_NAME}{name}").unlink(missing_ok=True)
    damage(out)  # type: ignore[operator]
    before = tree_digest(out)
    err = refused(["run", "--resume", str(out), "--set", "rounds=3"], capsys)
    assert says in err and str(out) in err
    assert tree_digest(out) == before  # not one byte written, no side file created


def test_a_sound_store_passes_and_reports_its_rounds(tmp_path: Path) -> None:
    out = finished_run(tmp_path / "run")
    preflight.check_store(out)
    assert preflight.check_checkpoints(out, {"ann": STATE, "snn": STATE}) == {"ann": 2, "snn": 0}
    with pytest.raises(preflight.Refused, match=r"does not fit the model \(extra\)"):
        preflight.check_checkpoints(out, {"ann": {**STATE, "extra": torch.zeros(1)}})


def test_report_of_a_damaged_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = finished_run(tmp_path / "run")
    garble(out / DB_NAME, 4096)
    before = tree_digest(out)
    assert "is damaged" in refused(["report", str(out)], capsys)
    assert tree_digest(out) == before


def test_out_dirs_that_cannot_be_written_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("user data")
    for out, says in [
        (afile, f"--out {afile} is a file, not a directory"),
        (afile / "sub", f"{afile} is a file, not a directory"),
    ]:
        assert says in refused(["run", "--out", str(out), "--set", "rounds=1"], capsys)
    assert afile.read_text() == "user data"


def test_a_read_only_file_system_is_named(tmp_path: Path) -> None:
    refused = pytest.raises(preflight.Refused, match="is on a read-only file system")
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mnt, refused:
        preflight.check_out_dir(mnt / "x")


def test_too_little_disk_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    preflight.check_free_space(tmp_path / "new", 1)
    with pytest.raises(preflight.Refused, match="MB free on its file system, the run needs"):
        preflight.check_free_space(tmp_path / "new", free + (1 << 40))
    assert not (tmp_path / "new").exists()
    size = preflight.state_bytes(STATE)
    assert size == 8 * 4
    base = preflight.expected_write_bytes({"ann": 0}, {"ann": STATE}, 4, True)
    assert base == preflight.MARGIN_BYTES
    more = preflight.expected_write_bytes({"ann": 3}, {"ann": STATE}, 4, True)
    assert more - base == 3 * (size + preflight.ROUND_EXTRA_BYTES + 4 * 2 * size)


def test_a_failed_atomic_write_leaves_no_temp_file_and_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="No space left") as err, atomic_write(target) as fh:
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a full disk fails a write
    assert err.value.filename == str(target) and err.value.errno == errno.ENOSPC  # named
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]
    below = pytest.raises(NotADirectoryError, match="ckpt.pt is a file where a directory")
    with below, atomic_write(target / "below.pt"):
        pass
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(IsADirectoryError), atomic_write(tmp_path / "dir.csv", "w") as fh:
        fh.write("never")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "dir.csv"]
    with atomic_write(target, perms=0o600) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new" and (target.stat().st_mode & 0o777) == 0o600


def test_the_server_app_sees_its_command_gone_once_the_run_lock_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SUPERVISED_ENV, raising=False)
    assert not supervisor_gone(tmp_path)  # not started by fl-sim run: never "gone"
    monkeypatch.setenv(SUPERVISED_ENV, "1")
    assert supervisor_gone(tmp_path)  # no lock file at all
    with run_lock(tmp_path, "test") as lock:
        assert not supervisor_gone(tmp_path)
        assert (tmp_path / RUN_LOCK).read_text().startswith(f"{os.getpid()} test")
        lock.release()  # what the signal handler does first
        assert supervisor_gone(tmp_path)
    OutLock(tmp_path, RUN_LOCK, "again").acquire().release()  # the check left no lock behind


def error_reply(code: int, reason: str) -> Message:
    msg = Message(RecordDict(), dst_node_id=1, message_type="train")
    msg.metadata.__dict__["_message_id"] = "instruction-1"  # as the grid gives it when sent
    return Message(Error(code=code, reason=reason), reply_to=msg)


def test_engine_failures_are_told_from_client_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("_run_id", "_node_id", "_task_id"):  # what Flower's runtime sets in a process
        monkeypatch.setattr(TaskIdentity, key, 1)
    died = "<class 'ray.exceptions.ActorDiedError'>:<'The actor died unexpectedly before finishing this task.'>"  # noqa: E501
    assert "ActorDiedError" in str(engine_failure(error_reply(ErrorCode.UNKNOWN, died)))
    cancelled = "Task was cancelled before it started running"
    assert engine_failure(error_reply(ErrorCode.UNKNOWN, cancelled)) is not None
    client = "<class 'flwr.ClientAppException'>:<'RuntimeError: injected'>"
    assert engine_failure(error_reply(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, died)) is None
    assert engine_failure(error_reply(ErrorCode.UNKNOWN, client)) is None
    assert engine_failure(error_reply(ErrorCode.NODE_UNAVAILABLE, "node unavailable")) is None


def test_a_crafted_pickle_is_refused_without_torchs_protocol_warning(tmp_path: Path) -> None:
    """Protocol 4 makes torch warn before its weights-only unpickler refuses the file; no
    library text may precede the one-line error."""
    import pickle
    import warnings

    from models.safe_load import load_weights

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("never printed",))

    path = tmp_path / "crafted.pt"
    path.write_bytes(pickle.dumps({"w": Payload()}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(pickle.UnpicklingError):
            load_weights(path)
    assert [str(w.message) for w in caught] == []
