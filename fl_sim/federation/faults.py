"""Faulty client replies, detected on the server before aggregation.

A reply is left out of aggregation (and recorded) when the client errored, or when its
update is not exactly one ArrayRecord of finite arrays whose names and shapes match the
parameters sent, with one MetricRecord holding ``num-examples``. Clients inject faults on
purpose with the update transforms of ``fl_sim.federation.transforms.faults``.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Message


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
