"""Two gradient-matching attacks in sequence: the second starts from the first's
reconstruction instead of a random dummy (issue 11: "rates first, then gradient matching").

The rate leak fits the victim's classifier input well but ignores every other layer;
gradient matching (e.g. Inverting Gradients) uses all layers but starts far from the digit on
spiking victims. Starting the second from the first joins them. Each stage keeps its own
config (budget, components); the result is the second stage's reconstruction, with the
stages' steps and seconds added up and the second's status and final loss.
"""

from __future__ import annotations

import dataclasses
import time

from attacks.gradient_matching import GradientMatchingAttack
from attacks.types import Capture, Reconstruction


class ChainedAttack:
    """``first`` then ``second`` from ``first``'s result (also when the first stopped early:
    its kept iterate is still the best it found)."""

    def __init__(
        self, first: GradientMatchingAttack, second: GradientMatchingAttack, name: str = ""
    ) -> None:
        self.first, self.second = first, second
        self.name = name or f"{first.name}-{second.name}"

    def reconstruct(self, capture: Capture) -> Reconstruction:
        began = time.perf_counter()
        previous = self.first.reconstruct(capture)
        start = self.second.start_from(previous, capture.public)
        rec = self.second.reconstruct_from(capture, start)
        return dataclasses.replace(
            rec,
            iterations=previous.iterations + rec.iterations,
            seconds=time.perf_counter() - began,
        )
