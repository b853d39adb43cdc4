"""The results store (SQLite, committed per round) and resuming a run, in-process and killed."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from inproc_grid import InProcessGrid
from tests_helpers import same_rows

from fl_sim.cli import main as cli_main
from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.resume import resume_config
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.server_app import run_federation
from fl_sim.results.report import LEAKAGE_COLUMNS, read_rows
from fl_sim.results.schema import SCHEMA_SQL, LeakageRow
from fl_sim.results.store import DB_NAME, SCHEMA_VERSION, ResultsStore

RECORD = {"config": {"rounds": 2}, "judge": {"arch": "lenet5"}, "versions": {"torch": "x"}}
STATE = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)}


def federate(cfg: RunConfig) -> dict[str, dict[str, torch.Tensor]]:
    return run_federation(InProcessGrid(client_app, cfg.federation.clients, cfg.to_flower()), cfg)


def row(**overrides: object) -> dict[str, object]:
    """A leakage row as the scorer makes it (bools, numpy scalars, inf/nan allowed)."""
    base: dict[str, object] = {
        "arm": "ann", "round": 1, "client": 0, "attack": "idlg", "sample": 0,
        "label_true": 7, "label_pred": 7, "label_correct": True, "judge_pred": 3,
        "judge_correct": False, "mse": np.float64(0.012345678901234), "psnr": math.inf,
        "ssim": 0.95, "l2": 1.5, "grad_loss": 1e-7, "status": "ok", "seconds": 0.5,
    }  # fmt: skip
    return base | overrides


def commit(store: ResultsStore, server_round: int, arm: str = "ann") -> Path:
    return store.commit_round(arm, server_round, STATE, accuracy=0.5, seconds=1.0, replies=2)


# ------------------------------------------------------------------ store units


def test_uncommitted_round_is_invisible_after_reopening(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.start_run(RECORD)
    store.add_reconstructions([row(), row(client=1)], grid=tmp_path / "grids" / "ann-r1.png")
    store.add_capture("ann", 1, 0, True, tmp_path / "captures" / "ann-r001-c000.pt")
    store.add_capture("ann", 1, 1, True)
    store.add_fault("ann", 1, 2**64 - 5, None, "client error: boom")  # uint64 node id
    path = commit(store, 1)
    store.add_reconstructions([row(round=2)])
    store.add_capture("ann", 2, 0, True)
    store.add_fault("ann", 2, 7, 1, "NaN")
    store.close()  # round 2 never committed (the process died)

    with ResultsStore(tmp_path) as again:
        assert again.finished_rounds("ann") == [1] and again.last_round("snn") == 0
        assert [(r["round"], r["client"]) for r in again.reconstruction_rows()] == [(1, 0), (1, 1)]
        assert [(c["client"], c["path"]) for c in again.captures()] == [
            (0, "captures/ann-r001-c000.pt"),
            (1, None),
        ]
        assert again.fault_rows() == [
            {"arm": "ann", "round": 1, "node": str(2**64 - 5), "client": None,
             "reason": "client error: boom"}
        ]  # fmt: skip
        (r1,) = again.rounds()
        assert (r1["replies"], r1["captures"], r1["attacked"]) == (2, 2, 2)
        assert again.latest_checkpoint("ann") == (1, path)
        assert path == tmp_path / "checkpoints" / "ann-r001.pt"
        assert all(torch.equal(v, STATE[k]) for k, v in again.load_checkpoint("ann").items())
        assert not list((tmp_path / "checkpoints").glob(".*"))  # no temp files left
        (grid,) = {r[0] for r in again.conn.execute("SELECT grid FROM reconstructions")}
        assert grid == "grids/ann-r1.png"
        assert again.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert again.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert len(again.runs()) == 1 and again.run_config() == {"rounds": 2}


def test_a_failed_commit_writes_nothing_of_its_round(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.start_run(RECORD)
    store.add_capture("ann", 1, 0, True)
    store.add_reconstructions([row(label_pred=[1, 2])])  # sqlite3 cannot bind a list
    with pytest.raises(sqlite3.Error):
        commit(store, 1)  # fails after the round and capture rows were inserted
    assert store.rounds() == [] and store.captures() == [] and store.reconstruction_rows() == []
    store.pending.clear()
    commit(store, 1)
    assert store.finished_rounds("ann") == [1]


def test_rows_cannot_be_duplicated(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.start_run(RECORD)
    store.add_reconstructions([row()])
    with pytest.raises(ValueError, match="duplicate reconstruction row"):
        store.add_reconstructions([row(attack="dlg"), row()])
    assert len(store.pending["ann", 1].rows) == 1  # the refused call added nothing
    store.add_capture("ann", 1, 0, True)
    with pytest.raises(ValueError, match="duplicate capture"):
        store.add_capture("ann", 1, 0, False)
    with pytest.raises(ValueError, match="missing columns \\['status'\\]"):
        store.add_reconstructions([{k: v for k, v in row(round=3).items() if k != "status"}])
    commit(store, 1)
    with pytest.raises(ValueError, match="round 1 of arm ann is already committed"):
        store.add_reconstructions([row(client=5)])
    with pytest.raises(sqlite3.IntegrityError):
        commit(store, 1)
    columns = ", ".join(LEAKAGE_COLUMNS)
    values = tuple(row()[c] for c in LEAKAGE_COLUMNS)
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute(
            f"INSERT INTO reconstructions ({columns}) VALUES ({', '.join('?' * len(values))})",
            values,
        )
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.conn.execute(  # a row of a round that never finished
            f"INSERT INTO reconstructions ({columns}) VALUES ({', '.join('?' * len(values))})",
            (values[0], 9, *values[2:]),
        )
    assert len(store.reconstruction_rows()) == 1


def test_exports_equal_the_database_rows(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.start_run(RECORD)
    rows = [
        row(),
        row(client=1, ssim=float("nan"), grad_loss=np.float32(2.5), label_correct=np.bool_(0)),
        row(client=2, mse=0.0, psnr=-math.inf, judge_pred=np.int64(7), judge_correct=True),
    ]
    store.add_reconstructions(rows)
    store.add_fault("ann", 1, 11, 3, 'a "quoted", reason')
    commit(store, 1)
    stored = store.reconstruction_rows()
    assert same_rows(stored, read_rows_typed(rows))
    assert store.export_leakage_csv(tmp_path / "leakage.csv") == 3
    assert same_rows(read_rows(tmp_path / "leakage.csv"), stored)
    assert store.export_faults_csv(tmp_path / "faults.csv") == 1
    text = (tmp_path / "faults.csv").read_text().splitlines()
    assert text == ["arm,round,node,client,reason", 'ann,1,11,3,"a ""quoted"", reason"']


def read_rows_typed(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """What report.read_rows gives for these rows once written to CSV."""
    ints = {"round", "client", "sample", "label_true", "label_pred", "judge_pred"}
    out = []
    for r in rows:
        typed = {}
        for c in LEAKAGE_COLUMNS:
            v = r[c]
            if c in ints or c in ("label_correct", "judge_correct"):
                v = int(v)  # type: ignore[call-overload]
            elif c in ("mse", "psnr", "ssim", "l2", "grad_loss", "seconds"):
                v = float(v)  # type: ignore[arg-type]
            typed[c] = v
        out.append(typed)
    return out


def test_a_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    ResultsStore(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(
        ValueError, match=f"schema version {SCHEMA_VERSION + 1}; this fl-sim reads {SCHEMA_VERSION}"
    ):
        ResultsStore(tmp_path)


# The reconstructions and faults tables exactly as schema version 2 first wrote them by hand:
# databases written then must keep opening and resuming.
V2_TABLES = """
CREATE TABLE reconstructions (
    id INTEGER PRIMARY KEY,
    arm TEXT NOT NULL,
    round INTEGER NOT NULL,
    client INTEGER NOT NULL,
    attack TEXT NOT NULL,
    sample INTEGER NOT NULL,
    label_true INTEGER,
    label_pred INTEGER,
    label_correct INTEGER,
    judge_pred INTEGER,
    judge_correct INTEGER,
    mse REAL,
    psnr REAL,
    ssim REAL,
    l2 REAL,                          -- l2 distance to the ground truth (pixels or spikes)
    grad_loss REAL,
    status TEXT,
    seconds REAL,
    grid TEXT,                        -- the round's image grid, relative to the out dir
    UNIQUE (arm, round, client, attack, sample),
    FOREIGN KEY (arm, round) REFERENCES rounds (arm, round)
);
CREATE TABLE faults (
    id INTEGER PRIMARY KEY,
    arm TEXT NOT NULL,
    round INTEGER NOT NULL,
    node TEXT NOT NULL,               -- Flower node id (unsigned 64-bit: kept as text)
    client INTEGER,                   -- NULL when the reply did not say
    reason TEXT NOT NULL,
    UNIQUE (arm, round, node),
    FOREIGN KEY (arm, round) REFERENCES rounds (arm, round)
);
"""


def table_shape(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Columns (name, type, not null, pk), unique indexes and foreign keys per row table."""
    out = {}
    for table in ("reconstructions", "faults"):
        info = [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})")]
        indexes = [
            tuple(c[2] for c in conn.execute(f"PRAGMA index_info({ix[1]})"))
            for ix in conn.execute(f"PRAGMA index_list({table})")
        ]
        keys = [tuple(r[2:5]) for r in conn.execute(f"PRAGMA foreign_key_list({table})")]
        out[table] = [*info, *indexes, *keys]
    return out


def test_schema_v2_databases_open_and_resume(tmp_path: Path) -> None:
    """The row tables the schema module generates equal version 2's hand-written ones, and a
    database written by them opens, takes a new round and reads back."""
    ResultsStore(tmp_path / "new").close()
    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / DB_NAME) as db:
        for statement in SCHEMA_SQL[:3]:  # runs, rounds, captures: unchanged text
            db.execute(statement)
        db.executescript(V2_TABLES)
        db.execute("PRAGMA user_version = 2")
    with sqlite3.connect(old / DB_NAME) as a, sqlite3.connect(tmp_path / "new" / DB_NAME) as b:
        assert table_shape(a) == table_shape(b)
        columns = [r[1] for r in a.execute("PRAGMA table_info(reconstructions)")]
        assert columns == ["id", *LEAKAGE_COLUMNS, "grid"]
    with ResultsStore.open_existing(old, writable=True) as store:
        store.start_run(RECORD)
        store.add_reconstructions([row(), row(sample=1, status="attack-failed", ssim=None)])
        store.add_fault("ann", 1, 5, None, "nan")
        commit(store, 1)
    with ResultsStore.open_existing(old) as store:
        back = store.reconstruction_rows()
        assert [r["status"] for r in back] == ["ok", "attack-failed"]
        assert math.isnan(back[1]["ssim"])  # type: ignore[arg-type]
        assert store.fault_rows() == [
            {"arm": "ann", "round": 1, "node": "5", "client": None, "reason": "nan"}
        ]


def test_leakage_columns_are_those_of_the_published_csv() -> None:
    assert LEAKAGE_COLUMNS == (
        "arm", "round", "client", "attack", "sample", "label_true", "label_pred",
        "label_correct", "judge_pred", "judge_correct", "mse", "psnr", "ssim", "l2",
        "grad_loss", "status", "seconds",
    )  # fmt: skip
    assert list(LeakageRow(arm="ann", round=1, client=0, attack="dlg", sample=0).as_dict()) == [
        *LEAKAGE_COLUMNS
    ]


# ------------------------------------------------------------------ resume config


def stored_run(out: Path, cfg: RunConfig) -> None:
    """A results store recording ``cfg`` (what a run writes before its first round)."""
    with ResultsStore(out) as store:
        store.start_run({"config": cfg.flat(), "versions": {}})


def test_resume_takes_the_stored_config_and_refuses_federation_changes(tmp_path: Path) -> None:
    cfg = RunConfig.of(clients=2, rounds=3, seed=4, attacks=("idlg",), out=str(tmp_path))
    stored_run(tmp_path, cfg)
    resumed = resume_config(tmp_path, {"rounds": "5", "threads": 2})
    assert resumed == cfg.replace(rounds=5, threads=2, resume=True)
    with pytest.raises(ValueError, match="would change it: seed 4 -> 1; clients 2 -> 3|"
                       "would change it: clients 2 -> 3; seed 4 -> 1"):  # fmt: skip
        resume_config(tmp_path, {"seed": 1, "clients": 3})
    with pytest.raises(ValueError, match="would change it: attack_seed 0 -> 1 "):
        resume_config(tmp_path, {"attack_seed": 1})
    with pytest.raises(ValueError, match="rounds can only be kept or raised"):
        resume_config(tmp_path, {"rounds": 2})
    with pytest.raises(FileNotFoundError, match="holds no results.sqlite: nothing to resume"):
        resume_config(tmp_path / "elsewhere")


def test_cli_resume_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stored_run(tmp_path / "run", RunConfig.of(clients=2, out=str(tmp_path / "run")))
    cases = [
        (["--resume", str(tmp_path / "none")], "holds no results.sqlite: nothing to resume"),
        (["--resume", str(tmp_path / "run"), "--set", "dataset=mnist"], "dataset 'mnist5k' ->"),
        (["--resume", str(tmp_path / "run"), "--overwrite"], "cannot be combined with"),
        (["--resume", str(tmp_path / "run"), "--out", str(tmp_path)], "different directories"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exc:
            cli_main(["run", *args])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


# ------------------------------------------------------------------ resume in-process


def final_weights(out: Path, arms: tuple[str, ...]) -> dict[str, dict[str, torch.Tensor]]:
    return {arm: torch.load(out / f"final_model_{arm}.pt", weights_only=True) for arm in arms}


def assert_bit_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for arm in a:
        assert a[arm].keys() == b[arm].keys()
        for key, value in a[arm].items():
            assert torch.equal(value, b[arm][key]), (arm, key)


@pytest.mark.slow
def test_resumed_federation_is_bit_identical_to_an_uninterrupted_one(
    small_cfg: RunConfig, tmp_path: Path
) -> None:
    """3 clients (the summation order matters), both arms; interrupted after round 1, and
    (from the full run's store, rounds rolled back) in the middle of the second arm."""
    base = small_cfg.replace(clients=3, rounds=3, attacks=("idlg",), iterations=2, grids=False,
        save_captures=True,
    )  # fmt: skip
    full = federate(base.replace(out=str(tmp_path / "full")))

    part = tmp_path / "part"
    federate(base.replace(rounds=1, out=str(part)))
    resumed = federate(resume_config(part, {"rounds": 3}))
    assert_bit_identical(resumed, full)
    assert_bit_identical(final_weights(part, base.federated_arms), full)

    with ResultsStore(tmp_path / "full") as a, ResultsStore(part) as b:
        ignore_time = [{**r, "seconds": 0.0} for r in a.reconstruction_rows()]
        assert same_rows([{**r, "seconds": 0.0} for r in b.reconstruction_rows()], ignore_time)
        assert [r["run_id"] for r in b.rounds()] == [1, 2, 2, 1, 2, 2]  # ann 1-3, snn 1-3
        assert [r["resumed"] for r in b.runs()] == [0, 1]
        assert all(r["finished"] for r in b.runs())
        captures = b.captures()
        assert len(captures) == 2 * 3 * 3 and all(c["attacked"] for c in captures)
        for c in captures:
            assert (part / str(c["path"])).stat().st_mode & 0o777 == 0o600
        assert same_rows(read_rows(part / "leakage.csv"), b.reconstruction_rows())

    # Killed after ann finished and snn round 1: roll the full run's store back to that.
    with ResultsStore(tmp_path / "full") as store, store.transaction() as db:
        for table in ("reconstructions", "captures", "faults", "rounds"):
            db.execute(f"DELETE FROM {table} WHERE arm = 'snn' AND round > 1")
    for name in ("final_model_snn.pt", "final_model_ann.pt"):
        (tmp_path / "full" / name).unlink()
    again = federate(resume_config(tmp_path / "full"))
    assert_bit_identical(again, full)
    with ResultsStore(tmp_path / "full") as store:
        assert [(r["arm"], r["round"], r["run_id"]) for r in store.rounds()] == [
            ("ann", 1, 1), ("ann", 2, 1), ("ann", 3, 1), ("snn", 1, 1), ("snn", 2, 2),
            ("snn", 3, 2),
        ]  # fmt: skip
        rows = store.reconstruction_rows()
        assert len(rows) == len({tuple(r[c] for c in LEAKAGE_COLUMNS[:5]) for r in rows}) == 18

    # Resuming a finished run runs nothing and reports again.
    before = (tmp_path / "full" / "leakage.csv").read_text()
    federate(resume_config(tmp_path / "full"))
    assert (tmp_path / "full" / "leakage.csv").read_text() == before
