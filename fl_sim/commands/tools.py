"""``fl-sim judge`` and ``fl-sim l2-stats``: the judge and the reference l2 distances."""

from __future__ import annotations

import argparse

from fl_sim.federation.run_config import RunConfig


def cmd_judge(cfg: RunConfig, retrain: bool) -> int:
    from fl_sim.evaluation.judge import config_spec, describe, ensure_judge, train_judge

    if retrain:
        spec = config_spec(cfg.judge, cfg.data.dataset)
        judge = train_judge(cfg.data, spec, cfg.runtime.device)
    else:
        judge = ensure_judge(cfg.data, cfg.judge, cfg.runtime.device)
    print(f"judge: {describe(judge)}; {judge.train_size} train / {judge.test_size} test")
    print(f"judge: {judge.path}")
    return 0


def cmd_l2_stats(args: argparse.Namespace) -> int:
    """``fl-sim l2-stats``: Table VI of the config's dataset split, optionally as JSON."""
    import json
    import time

    from fl_sim.data.reference_l2 import format_table, reference_l2_for_config

    cfg = RunConfig.load(args.config, args.overrides)
    start = time.perf_counter()
    result = reference_l2_for_config(cfg.data, cfg.federation.seed, args.split, args.per_class)
    loaded = time.perf_counter() - start - result.seconds
    print(format_table(result))
    intra = result.intra_pooled.pairs if result.intra_pooled else 0
    inter = result.inter_pooled.pairs if result.inter_pooled else 0
    print(
        f"fl-sim: {result.samples} samples, {intra} intra + {inter} inter pairs; distances "
        f"{result.seconds:.2f}s (loading {loaded:.2f}s)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"fl-sim: wrote {args.json}")
    return 0
