"""What each run config key means, for the generated configuration reference of the docs
(``scripts/gen_docs_reference.py``; types, defaults, allowed values and roles come from the
role sections themselves). ``tests/test_docs.py`` keeps it in step with ``RunConfig.keys()``."""

from __future__ import annotations

KEY_DOCS: dict[str, str] = {
    "dataset": (
        "embedded: `mnist5k`, `lfw-subset`, `nmnist-emulated`; from files under `data_root`: "
        "`mnist`, `cifar100`, `lfw`, `dvsgesture` (see Data)"
    ),
    "data_root": "folder holding the files of a real dataset (see Data)",
    "frames": "event data: time bins per recording (the SNN's time steps on the frames)",
    "downsample": "event data: integer spatial downsampling factor of the sensor",
    "cache_dir": (
        'cache of judges and derived data (emulated events); "" = `$FL_SIM_CACHE` or '
        "`~/.cache/fl-sim`"
    ),
    "clients": "virtual SuperNodes, one partition each",
    "rounds": "FL rounds per arm",
    "batch_size": "private batch per client per round (every attack takes batches)",
    "partition": "`iid` or `dirichlet` (label skew with concentration `alpha`), via flwr-datasets",
    "alpha": "Dirichlet concentration of `partition=dirichlet` (smaller: more skewed)",
    "arms": (
        "which victims to federate; empty = every arm the data supports (`ann,snn` on images, "
        "`snn` on events)"
    ),
    "victim": (
        "victim family: `lenet` (DLG/iDLG's LeNet and its SNN twin) or `lenet5` (GRNN's LeNet-5"
        " and its twin); see Models and attacks"
    ),
    "neuron": "spiking neuron of the SNN arm: `if` or `lif` (tau 2)",
    "T": "SNN time steps on images (each image replicated over T)",
    "seed": "partitions, private batches, client sampling, model init (never given to an attack)",
    "lr": (
        "SGD learning rate: the server's step under FedSGD, the clients' local steps under FedAvg"
    ),
    "protocol": "`fedsgd` (one gradient per round) or `fedavg` (local SGD steps, see below)",
    "local_steps": "FedAvg: mini-batches of `batch_size` per local epoch",
    "local_epochs": "FedAvg: passes over those mini-batches",
    "fedavg_update": "what a FedAvg client sends: its new `weights` or the `delta`",
    "strategy": (
        "the server's Flower strategy: `fedavg`, `fedavgm`, `fedadam`, `fedyogi`, `fedadagrad`,"
        " `fedprox`, `fedmedian`, `fedtrimmedavg`, `krum`, `multikrum`, `bulyan` (the tap works"
        " on each; with `fedavg` gradient and delta replies take today's server step, with the "
        "others each reply becomes the weights it stands for, `w - lr*g` or `w + delta`, before"
        " the strategy aggregates; a run with server momentum or moments, `fedavgm` with "
        "`server_momentum` or `fedadam`/`fedyogi`/`fedadagrad`, cannot be resumed)"
    ),
    "strategy_options": (
        "the strategy's own options, `key=value,...` (e.g. `server_momentum=0.9` for `fedavgm`,"
        " `eta=0.01,tau=1e-3` for `fedadam`, `proximal_mu=0.01` for `fedprox`: FedAvg clients "
        "add `mu/2 ||w - w_global||^2` to their local loss, no effect under `fedsgd`); sampling"
        " options follow `fraction` and `clients`"
    ),
    "fraction": (
        "fraction of the clients sampled per round (seeded per round: both arms sample the same"
        " nodes)"
    ),
    "init_checkpoint": (
        "warm start: start every arm from this state dict instead of the seeded init (`{arm}` "
        "in the path is replaced by the arm, e.g. `results/train/final_model_{arm}.pt`; loaded "
        "with `weights_only=True`, checked against the model; path and SHA-256 in `run.json`)"
    ),
    "round_timeout": (
        "seconds the server waits for a round's replies; late clients are left out and recorded"
    ),
    "faults": (
        "fault injection, e.g. `nan@1,shape@2,error@3,timeout@0` (client partition 1 sends NaN,"
        " 2 a wrongly shaped array, 3 crashes, 0 replies only after `round_timeout`); applied "
        "after `transforms`, never public"
    ),
    "transforms": (
        "client update transforms applied before an update is sent, in order: comma list of "
        "`NAME[:KEY=VALUE...][@PARTITION]` (see Client update transforms)"
    ),
    "secagg": (
        "secure aggregation: `none` or Flower's SecAgg+, "
        "`secaggplus[:shares=S:threshold=R:clip=C]` (counts, or fractions with a dot; defaults "
        "1.0, 0.5, 8); needs >= 3 clients per round and an averaging strategy; the eavesdropper"
        " then captures masked updates (see Secure aggregation)"
    ),
    "attacks": (
        "comma list of `dlg`, `idlg`, `grnn`, `ig` (Inverting Gradients), `rates` (rate leak + "
        "feature inversion; the strongest on spiking victims, in the default with the paper's "
        "`dlg`, `idlg`); empty (`attacks=`) turns the eavesdropper off"
    ),
    "attack_seed": (
        "the attacker's own seed: dummies, restarts, GRNN's noise, the attack-budget draw"
    ),
    "attack_budget": (
        "attack at most this many captures per round, a seeded draw the same for every arm (0: all)"
    ),
    "attack_rounds": (
        "rounds the eavesdropper attacks, comma-separated terms: `all`, a round number, "
        "`every:N` (N, 2N, ...), `first`, `last`; e.g. `first,every:10,last`. Other rounds are "
        "captured (recorded as not attacked) and their test accuracy recorded"
    ),
    "iterations": (
        "optimiser steps per gradient-matching attack (published DLG/iDLG budget: 300 L-BFGS "
        "steps); `rates` has its own"
    ),
    "grnn_iterations": "GRNN's RMSprop iterations (published: 1000)",
    "rates_iterations": "attack `rates`: Adam steps",
    "rates_tv": (
        "attack `rates`: total-variation weight; `auto`: 60 on spiking victims (issue 11's "
        "reference), 1e-2 on the ANN, or one weight >= 0 for both"
    ),
    "feature_weight": (
        "weight of the rate-leak feature term added to the gradient loss of `dlg`, `idlg`, `ig`"
        " (0: none; see `rates`)"
    ),
    "attack_dummy": (
        "dummy parametrisation: `auto` = the attack's own (`free` for DLG/iDLG, `tied` for IG "
        "and rates), `free` (paper: T free frames on spiking victims), `tied` (one image "
        "replicated over T; images only)"
    ),
    "attack_surrogate": (
        "surrogate gradient the attacker differentiates spiking victims with: `auto` = the "
        "client's (ATan, alpha 2), or `SHAPE[:alpha=VALUE]` with `atan`, `sigmoid`, `softsign`;"
        " the forward stays the client's; not used by `grnn`"
    ),
    "attack_init": (
        "`auto`: U(0.45, 0.55) for images, \\|N(0, sigma)\\| for events (paper); `uniform-gray`, "
        "`randn` (original DLG), `abs-normal`"
    ),
    "sigma": "scale of the \\|N(0, sigma)\\| event dummy (paper Eq. 1)",
    "clamp": (
        "images: `output` clamps the reconstruction to [0,1]; `step` projects after every "
        "optimiser step; `none`; `auto` = the attack's own (`output` for DLG/iDLG, `step` for "
        "IG). Events are never clamped"
    ),
    "threshold": (
        "spike binarisation 1[x > tau]: `none`, `post` = Algorithm 1 (after optimisation), `in`"
        " = Algorithm 2 (after every optimiser step)"
    ),
    "tau": "the threshold of that binarisation",
    "restarts": "independent dummies per capture; the lowest final gradient loss is kept",
    "tolerance": "stop an attack once its gradient-matching loss is at or below this",
    "batched": (
        "attack a round's captures of one public architecture together (batched engine); "
        "`false`: one at a time"
    ),
    "judge_epochs": "judge training epochs; 0 = the judge's default (see Judges)",
    "judge_width": "DVSGestureSNN judge channel width; 0 = the default (Table I: 64)",
    "threads": "torch threads per process (see Batched attack engine)",
    "device": (
        "where models run: attacks, judges, clients (`auto`: cuda if there is one, else the "
        "CPU, said once; `cpu`; `cuda`; `cuda:N`); `cuda` without one is an error. See GPUs and"
        " Ray"
    ),
    "client_cpus": (
        "Ray CPUs per virtual client (whole CPUs: Flower's federation config takes an integer)"
    ),
    "client_gpus": "Ray GPU fraction per virtual client",
    "attack_runner": (
        "where a round's captures are attacked: `local` (the ServerApp's process) or `ray` (Ray"
        " tasks)"
    ),
    "attack_cpus": "CPUs each Ray attack task reserves (its torch threads)",
    "attack_gpus": "GPU fraction each Ray attack task reserves",
    "ray_address": (
        'Ray for attack tasks and experiments: "" = the simulation\'s own Ray or a local one; '
        "`auto`, `HOST:PORT` or `ray://HOST:10001` = a running cluster"
    ),
    "out": "output directory",
    "overwrite": "replace results already in `out`",
    "resume": "continue the run in `out` (what `--resume DIR` sets)",
    "grids": "write image grids",
    "save_captures": (
        "store every captured update and its ground truth under `out/captures/` (owner-only files)"
    ),
}
