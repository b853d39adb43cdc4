"""Faulty client replies: detect them before aggregation, and inject them for tests.

A reply is left out of aggregation (and recorded) when the client errored, or when its
update is not exactly one ArrayRecord of finite arrays whose names and shapes match the
parameters sent, with one MetricRecord holding ``num-examples``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, Message

FAULT_KINDS = ("nan", "shape", "error", "timeout")


def reply_fault(msg: Message, sent: ArrayRecord) -> str | None:
    """Why ``msg`` must not be aggregated, or None if it is sound."""
    if msg.has_error():
        return f"client error: {msg.error.reason}"
    content = msg.content
    if len(content.array_records) != 1:
        return f"expected one ArrayRecord, got {len(content.array_records)}"
    if len(content.metric_records) != 1:
        return f"expected one MetricRecord, got {len(content.metric_records)}"
    (metrics,) = content.metric_records.values()
    if "num-examples" not in metrics:
        return "MetricRecord lacks num-examples"
    (arrays,) = content.array_records.values()
    unknown = sorted(set(arrays) - set(sent))
    if unknown:
        return f"unknown arrays {unknown[:3]}"
    missing = sorted(set(sent) - set(arrays))
    if missing:
        return f"missing arrays {missing[:3]}"
    for name, array in arrays.items():
        values = array.numpy()
        expected = tuple(sent[name].shape)
        if tuple(values.shape) != expected:
            return f"{name} has shape {tuple(values.shape)}, expected {expected}"
        if not np.isfinite(values).all():
            return f"{name} has NaN/Inf"
    return None


def parse_fault_spec(spec: Iterable[str]) -> dict[int, str]:
    """``("nan@1", "shape@2")`` -> {1: "nan", 2: "shape"}: which partition injects what."""
    faults: dict[int, str] = {}
    for item in spec:
        kind, sep, partition = item.partition("@")
        if not sep or kind not in FAULT_KINDS or not partition.isdigit():
            raise ValueError(
                f"fault {item!r} is not KIND@PARTITION with KIND in {', '.join(FAULT_KINDS)}"
            )
        faults[int(partition)] = kind
    return faults


def inject(kind: str, grads: dict, round_timeout: float) -> dict:
    """Corrupt a client's update the way ``kind`` says (``error`` raises in the client,
    ``timeout`` replies only after the server stopped waiting)."""
    if kind == "error":
        raise RuntimeError("injected client failure")
    if kind == "timeout":
        time.sleep(round_timeout + 2.0)
        return grads
    name = next(iter(grads))
    bad = dict(grads)
    if kind == "nan":
        bad[name] = grads[name].clone().fill_(float("nan"))
    else:  # shape
        bad[name] = grads[name].flatten()[:-1].clone()
    return bad
