"""iDLG (Zhao et al. 2020): label read off the classifier gradient, then L-BFGS on the input
(DLG's optimiser and loss)."""

from __future__ import annotations

from attacks.config import Recipe
from attacks.gradient_matching import GradientMatchingAttack

RECIPE = Recipe(label="idlg", dummy="free", objective="l2", optimiser="lbfgs", lr=1.0)


class IDLG(GradientMatchingAttack):
    """``build_attack("idlg", config)`` as a class, for code that subclasses it."""

    name = "idlg"
    recipe = RECIPE
