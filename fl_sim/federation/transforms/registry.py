"""Client update transforms by name. Adding one: a module with its ``Transform`` subclass and
one line here."""

from __future__ import annotations

from fl_sim.federation.transforms.base import Transform
from fl_sim.federation.transforms.defences import GaussianDp, Quantise, TopKPrune
from fl_sim.federation.transforms.faults import ErrorFault, NanFault, ShapeFault, TimeoutFault

TRANSFORMS: dict[str, type[Transform]] = {
    "dp": GaussianDp,
    "prune": TopKPrune,
    "quant": Quantise,
    "error": ErrorFault,
    "nan": NanFault,
    "shape": ShapeFault,
    "timeout": TimeoutFault,
}
