"""Reconstruct many captures at once: P independent gradient-matching attacks in one batch.

``reconstruct_batch(attack, captures)`` returns what ``[attack.reconstruct(c) for c in
captures]`` returns, up to float rounding, for every composition it can batch: L-BFGS, Adam
and signed Adam (with their schedules), l2 and cosine objectives, TV, free and tied dummies,
soft and iDLG labels, both spike-domain thresholds, the box constraint, restarts, the
attacker's surrogate, and (grouped evaluator only) the rate-leak ``features`` objective and
``feature_weight`` term. It raises NotImplementedError naming what it cannot batch (an attack
that is not a ``GradientMatchingAttack`` such as GRNN, one that overrides its methods, FedAvg
updates, components without a batched form, the feature term on the vmap evaluator); callers
fall back to one capture at a time.

Modules: ``engine`` (entry point, setup, refusals), ``problems`` (stacked problems, the
evaluator interface), ``grouped`` and ``conv`` (the grouped-convolution engine), ``vmap``
(the torch.func engine), ``forms`` (label tasks, objectives, regularisers in batched form),
``optimisers`` (per-problem loop and hygiene, batched Adam) and ``lbfgs`` (torch's L-BFGS
per problem).
"""

from attacks.batched.engine import ENGINES, check_attack, prepare, reconstruct_batch
from attacks.batched.optimisers import batched_lbfgs_attack

__all__ = ["ENGINES", "batched_lbfgs_attack", "check_attack", "prepare", "reconstruct_batch"]
