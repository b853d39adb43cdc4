"""DLG and iDLG with their default components give the reconstructions the code gave before
the composable refactor (``tests/data/attack_reference.json``, recorded from the old code by
``tests/data/record_reference.py``).

Float64 on the ANN LeNet, at most two outer L-BFGS steps: there a 1e-15 relative change of
the target moves the results by < 1e-8 (measured with ``record_reference.py --check``), so
1e-6 leaves room for other CPUs' summation orders while any change to the loss, the
optimiser, the seeding or the label handling shows up as a difference of order 1.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from attacks import AttackConfig, Capture, build_attack

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "attack_reference.json").read_text())
_spec = importlib.util.spec_from_file_location("record_reference", DATA / "record_reference.py")
assert _spec is not None and _spec.loader is not None
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)


@pytest.fixture(scope="module")
def captures() -> Iterator[dict[str, Capture]]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        digits = REFERENCE["digits"]
        yield record.make_captures(torch.tensor(digits["pixels"]), torch.tensor(digits["labels"]))
    finally:
        torch.set_default_dtype(old)


def case_id(case: dict[str, Any]) -> str:
    return case["attack"] + "-" + ",".join(f"{k}={v}" for k, v in case["config"].items())


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=case_id)
def test_defaults_reproduce_the_pre_refactor_reconstructions(
    case: dict[str, Any], captures: dict[str, Capture], float64: None
) -> None:
    attack = build_attack(case["attack"], AttackConfig(**case["config"]))
    assert attack.name == case["attack"]
    for ref in case["results"]:
        rec = attack.reconstruct(captures[ref["capture"]])
        where = (case_id(case), ref["capture"])
        assert (rec.status, rec.iterations) == (ref["status"], ref["iterations"]), where
        assert rec.labels.tolist() == ref["labels"], where
        expected = float(ref["grad_loss"])
        if math.isnan(expected):
            assert math.isnan(rec.grad_loss), where
        else:
            assert math.isclose(rec.grad_loss, expected, rel_tol=1e-6, abs_tol=1e-12), (
                where,
                rec.grad_loss,
                expected,
            )
        images = record.decode(ref["images"], ref["shape"]).to(torch.float64)
        # stored as float32: 6e-8 relative rounding on top of the comparison's 1e-6
        torch.testing.assert_close(rec.images, images, rtol=1e-6, atol=1e-7, msg=str(where))
