"""Faulty client replies, detected on the server before aggregation.

A reply is left out of aggregation (and recorded) when the client errored, or when its
update is not exactly one ArrayRecord of finite arrays whose names and shapes match the
parameters sent, with one MetricRecord holding ``num-examples``. Clients inject faults on
purpose with the update transforms of ``fl_sim.federation.transforms.faults``.
"""

from __future__ import annotations

import re

import numpy as np
from flwr.app import ArrayRecord, Message
from flwr.common.constant import ErrorCode

# A ClientApp's exception as the client re-raises it (``tag_client_error``), so that the
# server, which only sees the error text, learns the partition and the original exception.
_CLIENT_TAG = re.compile(r"\[fl-sim partition-id=(\d+)\] ([^\n]*)")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # colour codes of Ray's and Flower's logs
# Flower's error reason: "<class 'TYPE'>:<'MESSAGE'>"
_FLOWER_WRAPPED = re.compile(r"<class '([^']*)'>:<'(.*)'>", re.S)
# "RuntimeError: message", "ray.exceptions.RayTaskError(X): message": a traceback's last line
_EXCEPTION_LINE = re.compile(
    r"[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\w*(?:\([\w.]+\))?: .+"
)
MAX_REASON = 300  # characters of an untagged error kept in a fault's reason


class ClientFailure(RuntimeError):
    """A ClientApp's exception re-raised with the client's partition id (see
    ``tag_client_error``)."""


def tag_client_error(partition_id: int, err: BaseException) -> ClientFailure:
    """The exception a client raises for ``err``: one line with its partition id, the
    exception type and the first line of its message, which the server reads back
    (``client_error``) from the error reply's text."""
    text = (str(err).strip().splitlines() or [""])[0]
    return ClientFailure(f"[fl-sim partition-id={partition_id}] {type(err).__name__}: {text}")


def client_error(reason: str) -> tuple[int | None, str]:
    """(partition id or None, one readable line) of an error reply's reason, without ANSI
    codes: a tagged client exception as "TYPE: message"; a traceback (Ray's, multi-line) as
    its root exception's "TYPE: message" line; other text as its first and last lines."""
    text = _ANSI.sub("", reason).strip()
    wrapped = _FLOWER_WRAPPED.fullmatch(text)
    if wrapped is not None:
        kind, text = wrapped[1], wrapped[2].strip()
        text = text if "\n" in text else f"{kind}: {text}"
    tagged = _CLIENT_TAG.search(text)
    if tagged is not None:
        return int(tagged[1]), tagged[2].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = [line for line in lines if _EXCEPTION_LINE.fullmatch(line)]
    if raised:  # a traceback: its first "Type: message" line is the root cause
        line = raised[0]
    else:
        line = " ... ".join(lines[:1] + lines[-1:]) if len(lines) > 1 else "".join(lines)
    if len(line) > MAX_REASON:
        line = line[: MAX_REASON - 3] + "..."
    return None, line or "(no reason given)"


# Ray's own failures in a simulation: the engine was torn down (a signal, the CLI gone) or
# broke, not the client: an actor that died or was cancelled, an empty actor pool.
_ENGINE_FAILURE = re.compile(
    r"ray\.exceptions\.|ActorDiedError|RayActorError|TaskCancelledError|"
    r"cancelled before it started running|actor pool is empty"
)


class EngineFailure(RuntimeError):
    """A reply says the simulation engine failed (``engine_failure``): the round is aborted,
    not committed with its clients recorded as faulty."""


def engine_failure(msg: Message) -> str | None:
    """One line if ``msg`` is an error the simulation engine raised on a client's behalf
    (never a ClientApp's own exception, which is the client's fault), else None."""
    if not msg.has_error() or msg.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION:
        return None
    reason = msg.error.reason or ""
    if _ENGINE_FAILURE.search(reason) is None:
        return None
    return client_error(reason)[1]


def reply_fault(msg: Message, sent: ArrayRecord) -> str | None:
    """Why ``msg`` must not be aggregated (one line), or None if it is sound."""
    if msg.has_error():
        return f"client error: {client_error(msg.error.reason)[1]}"
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
