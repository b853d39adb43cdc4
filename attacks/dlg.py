"""DLG (Zhu et al. 2019): dummy input and soft dummy label optimised jointly with L-BFGS
(lr 1, PyTorch defaults) on the squared l2 distance of the gradients."""

from __future__ import annotations

from attacks.config import Recipe
from attacks.gradient_matching import GradientMatchingAttack

RECIPE = Recipe(label="soft", dummy="free", objective="l2", optimiser="lbfgs", lr=1.0)


class DLG(GradientMatchingAttack):
    """``build_attack("dlg", config)`` as a class, for code that subclasses it."""

    name = "dlg"
    recipe = RECIPE
