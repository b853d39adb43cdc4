"""Client update transforms: small functions, configured by name, that change a client's update
before it is sent (injected faults today; defences such as DP noise, pruning, quantisation).

Each is a ``Transform`` registered in ``TRANSFORMS``, configured by a spec string
``NAME[:KEY=VALUE...][@PARTITION]`` (``models.public.TransformSpec``) and declared public (the
attacker knows it: ``PublicInfo.transforms``) or not. The ClientApp applies the chain with the
Flower mod in ``fl_sim.federation.transforms.mod`` (not imported here: it needs the run config,
which imports this package to validate specs).
"""

from fl_sim.federation.transforms.base import Transform, TransformContext, Update
from fl_sim.federation.transforms.chain import Step, TransformChain, build_step, update_chain
from fl_sim.federation.transforms.faults import FAULT_KINDS, parse_fault_spec
from fl_sim.federation.transforms.registry import TRANSFORMS

__all__ = [
    "FAULT_KINDS",
    "TRANSFORMS",
    "Step",
    "Transform",
    "TransformChain",
    "TransformContext",
    "Update",
    "build_step",
    "parse_fault_spec",
    "update_chain",
]
