"""Flower ServerApp: one federation per arm (ANN, SNN) on the same clients, partitions,
seeds and batches, each under a Flower strategy with the eavesdropping tap."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp

from fl_sim.data.config import DataConfig
from fl_sim.data.registry import DataSplit
from fl_sim.evaluation.attack_work import Execution
from fl_sim.evaluation.judge import Judge, ensure_judge, judge_record, split_accuracy
from fl_sim.federation.config import FederationConfig
from fl_sim.federation.eavesdropper import LEAKAGE_CSV, Eavesdropper
from fl_sim.federation.privacy import privacy_record
from fl_sim.federation.resume import check_resumable, stored_config
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.secagg import SecAggPlusGrid, SecAggSpec
from fl_sim.federation.strategies import STRATEGIES, parse_strategy_options
from fl_sim.federation.strategy import Eavesdropping, EavesdroppingFedSGD, Tap, tapped
from fl_sim.federation.task import dataset_split, public_info, replay_audit
from fl_sim.federation.warm_start import init_record, initial_model
from fl_sim.ops.outlock import supervisor_gone
from fl_sim.ops.progress import Eta
from fl_sim.results.config import ResultsConfig
from fl_sim.results.html_report import REPORT_HTML
from fl_sim.results.live_report import LiveReport
from fl_sim.results.report import write_report
from fl_sim.results.store import CHECKPOINTS, DB_NAME, ResultsStore, save_atomic

app = ServerApp()

FAULTS_CSV = "faults.csv"


class RunAborted(RuntimeError):
    """The ServerApp stops without committing the round in flight."""


class FaultLog:
    """Records every reply left out of aggregation in the results store (exported to
    ``faults.csv`` when the round commits) and on the console."""

    def __init__(self, store: ResultsStore, arm: str, log: Callable[[str], None]) -> None:
        self.store, self.arm, self.log = store, arm, log

    def __call__(self, server_round: int, node: int, client: int | None, reason: str) -> None:
        who = "?" if client is None else str(client)
        reason = " ".join(reason.split())  # one line in faults.csv and on the console
        self.store.add_fault(self.arm, server_round, node, client, reason)
        self.log(f"[{self.arm} r{server_round}] left out node {node} (client {who}): {reason}")


RESULT_FILES = (
    LEAKAGE_CSV, "summary.txt", "leakage_per_round.png", "grids", "run.json", "captures",
    FAULTS_CSV, DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", CHECKPOINTS, REPORT_HTML,
)  # fmt: skip


class RoundRecorder:
    """Commits each finished round of one arm to the results store.

    Its ``evaluate`` is the strategy's ``evaluate_fn``, which Flower calls after each round's
    aggregation with the new global model: the round's accuracy, checkpoint and everything
    the tap and the fault log handed the store are committed together, then the CSVs are
    re-exported and ``report.html`` is rewritten (rate-limited). Its ``tap`` counts the
    replies and hands them on to the eavesdropper.
    """

    def __init__(
        self,
        store: ResultsStore,
        arm: str,
        model: torch.nn.Module,
        test: DataSplit,
        done: int = 0,
        spy: Tap | None = None,
        rounds: int = 0,
        report: LiveReport | None = None,
    ) -> None:
        self.store, self.arm, self.model, self.test = store, arm, model, test
        self.done = done  # round 0 or a resumed run's last round: already recorded
        self.eta = Eta(max(rounds, done), done)  # rounds done / planned, for progress lines
        self.spy = spy
        self.report = report
        self.replies: dict[int, int] = {}
        self.clock = time.perf_counter()

    def tap(self, server_round: int, sent: ArrayRecord, replies: list[Message]) -> None:
        self.replies[server_round] = len(replies)
        if self.spy is not None:
            self.spy(server_round, sent, replies)

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        state = arrays.to_torch_state_dict()
        self.model.load_state_dict(state)
        acc = split_accuracy(self.model, self.test)
        say(f"[{self.arm} r{server_round}] global model test accuracy {acc:.2%}")
        if server_round > self.done:
            if supervisor_gone(self.store.out_dir):
                raise RunAborted(
                    f"[{self.arm} r{server_round}] the fl-sim command that started this run "
                    "has stopped: the round is not committed (a resume redoes it)"
                )
            self.store.commit_round(
                self.arm,
                server_round,
                state,
                accuracy=acc,
                seconds=time.perf_counter() - self.clock,
                replies=self.replies.pop(server_round, 0),
            )
            export_results(self.store)
            if self.report is not None:
                self.report.update()
            say(f"[{self.arm}] rounds {self.eta.advance()}")
        self.clock = time.perf_counter()
        return MetricRecord({"accuracy": acc})


def export_results(store: ResultsStore) -> None:
    """leakage.csv and faults.csv from the store (each only once it has rows)."""
    if store.reconstruction_rows():
        store.export_leakage_csv(store.out_dir / LEAKAGE_CSV)
    if store.fault_rows():
        store.export_faults_csv(store.out_dir / FAULTS_CSV)


def update_setting(fed: FederationConfig) -> str:
    """What each attacked update holds, for the summary's first line."""
    steps = (
        "FedSGD gradient"
        if fed.protocol == "fedsgd"
        else f"FedAvg {fed.fedavg_update} after {fed.local_steps} x {fed.local_epochs} local steps"
    )
    return (
        f"updates: batch_size={fed.batch_size}, {fed.samples_per_round} private sample(s) per "
        f"update ({steps}); reconstructions paired with samples by least total MSE"
    )


def write_outputs(store: ResultsStore, data: DataConfig, fed: FederationConfig) -> str | None:
    """Export the CSVs and write the report (plot with the judge's chance level and each
    arm's test accuracy per round, summary headed by the update setting) from the store;
    returns the summary, or None when there are no reconstruction rows."""
    export_results(store)
    rows = store.reconstruction_rows()
    if not rows:
        return None
    chance = 1.0 / dataset_split(data, "test").num_classes
    accuracy: dict[str, list[tuple[int, float]]] = {}
    for r in store.rounds():
        if r["accuracy"] is not None:
            accuracy.setdefault(str(r["arm"]), []).append((int(r["round"]), float(r["accuracy"])))
    return write_report(store.out_dir, rows, chance, accuracy, update_setting(fed))


def say(text: str) -> None:
    print(text, flush=True)


def finish_from_store(store: ResultsStore, cfg: RunConfig) -> str | None:
    """Outputs of a run whose arms are all finished, from the store alone: the final models
    (latest checkpoints), the CSV exports and the reports; returns the summary."""
    for arm in cfg.federated_arms:
        save_atomic(store.load_checkpoint(arm), store.out_dir / f"final_model_{arm}.pt")
    summary = write_outputs(store, cfg.data, cfg.federation)
    LiveReport(store.out_dir, say).update(force=True)
    return summary


def prepare_out_dir(results: ResultsConfig) -> Path:
    """Create ``out``; refuse to mix with an earlier run's results unless overwrite (or
    resume, which needs the earlier run's results store)."""
    out = Path(results.out).expanduser().resolve()
    if results.resume:
        if results.overwrite:
            raise ValueError("resume and overwrite=true contradict each other")
        if not (out / DB_NAME).is_file():
            raise FileNotFoundError(f"{out} holds no {DB_NAME}: nothing to resume")
        return out
    out.mkdir(parents=True, exist_ok=True)
    old = [name for name in RESULT_FILES if (out / name).exists()]
    if old and not results.overwrite:
        raise FileExistsError(
            f"{out} already holds results ({', '.join(old)}); choose another out directory "
            "or set overwrite=true"
        )
    for name in old:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out


def write_run_record(
    out: Path, cfg: RunConfig, judge: Judge, num_classes: int | None = None
) -> dict[str, object]:
    """run.json: the config and the judge (with its test accuracy and, if given, its number of
    classes: the chance level) that produced the results; returns the record (also stored in
    the results store's ``runs``)."""
    judge_info = judge_record(judge)
    if num_classes is not None:
        judge_info["num_classes"] = num_classes
    record = {
        "config": cfg.resolved().flat(),
        "judge": judge_info,
        "init_checkpoints": init_record(cfg.federation, cfg.federated_arms),
        "privacy": privacy_record(cfg.federation.transforms, cfg.federation.rounds),
        "versions": library_versions(),
    }
    (out / "run.json").write_text(json.dumps(record, indent=2))
    return record


# Installed distributions whose version can change a run's results (models, aggregation,
# simulation, data, metrics).
VERSIONED = (
    "torch", "torchvision", "flwr", "ray", "spikingjelly", "tonic", "numpy", "scikit-image",
    "scipy",
)  # fmt: skip


def library_versions() -> dict[str, str]:
    """Version of each of ``VERSIONED`` (package metadata), "absent" if not installed."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def build_strategy(
    fed: FederationConfig,
    tap: Tap | None,
    on_fault: FaultLog,
    round_offset: int = 0,
    node_partitions: dict[int, int] | None = None,
) -> Eavesdropping:
    """Flower's ``strategy`` (with ``strategy_options``) under the tap, with seeded client
    sampling of ``fraction`` of the clients (all must be connected) and no client-side
    evaluation. Gradient and delta replies: under fedavg, one server step on the mean
    (EavesdroppingFedSGD, as before strategies existed); under any other strategy, each
    reply becomes the weights it stands for before the strategy aggregates them.
    ``node_partitions`` (node id -> partition id) is shared by the arms of a run."""
    kwargs = dict(
        tap=tap,
        on_fault=on_fault,
        node_partitions=node_partitions,
        sampling_seed=fed.seed,
        round_offset=round_offset,
        fraction_train=fed.fraction,
        fraction_evaluate=0.0,
        min_train_nodes=fed.sampled_clients,
        min_available_nodes=fed.clients,
    )
    if fed.strategy == "fedavg" and fed.update_kind == "gradient":
        return EavesdroppingFedSGD(lr=fed.lr, **kwargs)  # type: ignore[arg-type]
    if fed.strategy == "fedavg" and fed.update_kind == "delta":
        return EavesdroppingFedSGD(lr=-1.0, **kwargs)  # type: ignore[arg-type]
    options = parse_strategy_options(fed.strategy, fed.strategy_options)
    strategy_cls = tapped(STRATEGIES[fed.strategy])
    return strategy_cls(update_kind=fed.update_kind, gradient_lr=fed.lr, **options, **kwargs)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = RunConfig.from_mapping(context.run_config)
    torch.set_num_threads(cfg.runtime.threads)
    run_federation(grid, cfg)


def run_federation(grid: Grid, cfg: RunConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Run every arm; return each arm's final global model (state dict). Holds the out dir's
    writer lock meanwhile: one ServerApp writes a directory at a time (``fl_sim.ops.outlock``)."""
    from fl_sim.ops.outlock import writer_lock

    with writer_lock(cfg.results.out):
        return _run_federation(grid, cfg)


def _run_federation(grid: Grid, cfg: RunConfig) -> dict[str, dict[str, torch.Tensor]]:
    out = prepare_out_dir(cfg.results)
    say(f"fl-sim: results go to {out}")
    store = ResultsStore(out)
    if cfg.results.resume:
        check_resumable(stored_config(store), cfg)
    judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device, say)
    test = dataset_split(cfg.data, "test")
    record = write_run_record(out, cfg, judge, test.num_classes)
    store.start_run(record, resumed=cfg.results.resume)
    for dp in record["privacy"]:  # type: ignore[attr-defined]
        say(
            f"fl-sim: {dp['transform']}: epsilon {dp['epsilon']} at delta {dp['delta']} after "
            f"{dp['releases_per_client']} rounds per client ({dp['accountant']})"
        )
    audit = replay_audit(cfg.federation, cfg.data)
    secagg = SecAggSpec.parse(cfg.federation.secagg)
    if secagg is not None:  # the strategy's train rounds run Flower's SecAgg+ protocol
        grid = SecAggPlusGrid(grid, secagg, max_weight=cfg.federation.samples_per_round)
        say(f"fl-sim: {secagg}: the server receives masked updates only")
    report = LiveReport(out, say)
    finals: dict[str, dict[str, torch.Tensor]] = {}
    node_partitions: dict[int, int] = {}  # the same nodes serve every arm
    for arm in cfg.federated_arms:
        start = time.perf_counter()
        public = public_info(cfg.federation, cfg.data, arm)
        done = store.last_round(arm)
        if done >= cfg.federation.rounds:
            say(f"=== arm {arm}: all {cfg.federation.rounds} rounds already finished ===")
            finals[arm] = store.load_checkpoint(arm)
            save_atomic(finals[arm], out / f"final_model_{arm}.pt")
            continue
        model = initial_model(cfg.federation, cfg.data, arm)
        if done:
            model.load_state_dict(store.load_checkpoint(arm))
            say(f"=== arm {arm}: resuming after round {done} (checkpoint) ===")
        tap = None
        if cfg.attack.attacks:
            plan, results = cfg.attack, cfg.results
            tap = Eavesdropper(
                arm, public, plan.build_attacks(), judge, audit, out, results.grids, say,
                results.save_captures, plan.batched, sink=store, budget=plan.attack_budget,
                attack_seed=plan.attack_seed, schedule=cfg.attack_schedule,
                execution=Execution.of(cfg.runtime),
            )  # fmt: skip
        recorder = RoundRecorder(store, arm, model, test, done, tap, cfg.federation.rounds, report)
        fed = cfg.federation
        say(f"=== arm {arm}: {public.arch}, {fed.clients} clients, {fed.rounds} rounds ===")
        strategy = build_strategy(
            cfg.federation, recorder.tap, FaultLog(store, arm, say), done, node_partitions
        )
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=cfg.federation.rounds - done,
            timeout=cfg.federation.round_timeout,
            train_config=ConfigRecord({"arm": arm}),
            evaluate_fn=recorder.evaluate,
        )
        finals[arm] = result.arrays.to_torch_state_dict()
        save_atomic(finals[arm], out / f"final_model_{arm}.pt")
        say(f"=== arm {arm} done in {time.perf_counter() - start:.1f}s ===")
    summary = write_outputs(store, cfg.data, cfg.federation)
    if summary is not None:
        say(f"judge {judge.arch}: test accuracy {judge.accuracy:.2%} on {judge.dataset}\n{summary}")
    store.finish_run()
    report.update(force=True)  # after finish_run: the page says finished
    store.close()
    return finals
