"""Inverting Gradients (Geiping et al. 2020, their ``inversefed`` defaults): 1 - cosine
similarity of the gradients + total variation 1e-4, Adam (lr 0.1) on the sign of the
gradient, lr x0.1 at 3/8, 5/8 and 7/8 of the steps, box constraint [0, 1] after every step,
restarts keeping the lowest loss. Labels by iDLG's rule (batch 1; set ``label="soft"`` for
more). Beyond the paper: on spiking victims with image data the dummy is one image tied over
T (``dummy="free"`` gives the paper's free frames); on event data it is free.

Their script runs 4,000 steps; the budget here is ``AttackConfig.iterations`` like every
attack's. ``grad_loss`` is the final cosine distance (in [0, 2]), not DLG's l2 distance.
"""

from __future__ import annotations

from attacks.config import Recipe

RECIPE = Recipe(
    label="idlg",
    dummy="tied",
    objective="cosine",
    regularisers=(("tv", 1e-4),),
    optimiser="signed-adam",
    lr=0.1,
    schedule="ig",
    clamp="step",
)
