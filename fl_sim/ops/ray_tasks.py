"""Attack work as Ray tasks: on the Ray this process already runs (Flower's simulation engine
starts one in the ServerApp's process), a local Ray started for the command, or a cluster
(``ray_address=auto`` after ``ray start --head``, or ``ray://HOST:10001``).

Ray's own task API is used as it is; this module only adds what the testbed needs around
it: tasks that run with the submitter's torch default dtype and one torch thread per CPU
they reserve (so a task computes what the same call computes in process), futures in job
order, and an exit that cancels whatever still runs (Ctrl-C must not leave attacks going).
A local Ray started here stays up for later work of the same process (starting one takes
seconds to tens of seconds) and dies with it: Ray shuts it down at exit, and its reaper ends
it when the process that started it is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from fl_sim.ops import watchdog

if TYPE_CHECKING:
    from fl_sim.ops.runtime_config import RuntimeConfig

# environment of local Ray processes: quiet, no runtime installs, GPUs left as they are
RAY_ENV = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0", "RAY_DEDUP_LOGS": "0"}


@dataclass(frozen=True)
class RaySettings:
    """Where attack tasks run and what each reserves (run config keys ``ray_address``,
    ``attack_cpus``, ``attack_gpus``)."""

    address: str = ""  # "": this process's Ray, else a local one; "auto", "ray://...", HOST:PORT
    cpus: int = 1
    gpus: float = 0.0

    @classmethod
    def of(cls, runtime: RuntimeConfig) -> RaySettings:
        """The settings of a run's runtime section."""
        return cls(runtime.ray_address, runtime.attack_cpus, runtime.attack_gpus)


_OWN_RAY: list[bool] = []  # [True] once this module has started or connected this process's Ray


def ensure_ray(settings: RaySettings, local_cpus: int | None = None) -> bool:
    """Connect to the Ray ``settings`` names, or start a local one with ``local_cpus`` CPUs
    (None: all). A Ray this process already runs is used as it is, whatever ``address``
    says (Flower's simulation engine, an earlier call).

    Returns whether tasks should reserve CPUs: not on a Ray someone else started in this
    process, i.e. Flower's simulation engine, whose client actors hold every CPU for the
    whole run (tasks reserving one would never start) and are idle while the server
    aggregates, which is when the eavesdropper attacks."""
    import ray

    if ray.is_initialized():
        return bool(_OWN_RAY)
    os.environ.update(RAY_ENV)
    local = not settings.address
    # Ctrl-C reaches the whole process group. Ray's own processes block SIGINT (Ray's
    # start_ray_process), but a KeyboardInterrupt raised inside ray.init can be swallowed
    # there: 2 of 51 unblocked tries here never exited (the stacks of one: still attacking;
    # tests/test_reproduce.py). With SIGINT blocked meanwhile, the interrupt is
    # delivered here when ray.init returns; the CLI then ends every process it started
    # (fl_sim.cli). The price: a Ctrl-C waits for the rest of ray.init (1-10 s seen).
    if local:  # the active watchdog, if any, ends what Ray starts here should we die
        watchdog.watch(os.getpid())  # (Ray's agents outlived a SIGKILLed driver by ~50 s)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        ray.init(
            # "local": a new Ray for this process, not the one a RAY_ADDRESS inherited from
            # a parent that runs Ray names (a test session's; Ray sets it for its children)
            address=settings.address or "local",
            num_cpus=local_cpus if local else None,
            include_dashboard=False if local else None,
            logging_level="ERROR",
            log_to_driver=True,
            configure_logging=True,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    _OWN_RAY[:] = [True]
    return True


def shutdown_own_ray() -> None:
    """Stop (or disconnect from) the Ray :func:`ensure_ray` started or joined, if any."""
    if _OWN_RAY:
        import ray

        ray.shutdown()
        _OWN_RAY.clear()


def _call(fn: Callable[..., Any], args: tuple[Any, ...], dtype: torch.dtype, threads: int) -> Any:
    """Run ``fn(*args)`` in a Ray worker as the submitter would: its default dtype, and one
    torch thread per reserved CPU (Ray reuses workers, so both are set on every call)."""
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)
    return fn(*args)


class RayPool:
    """``submit(fn, *args)`` as a Ray task reserving ``settings.cpus``/``gpus``; each gives a
    :class:`concurrent.futures.Future`. ``cancel()`` force-cancels every unfinished task.
    ``reserve_cpus=False``: the tasks reserve no CPU (see :func:`ensure_ray`)."""

    def __init__(self, settings: RaySettings, reserve_cpus: bool = True) -> None:
        import ray

        self.settings = settings
        self._task = ray.remote(_call).options(
            num_cpus=settings.cpus if reserve_cpus else 0, num_gpus=settings.gpus, max_retries=0
        )
        self._refs: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        ref = self._task.remote(fn, args, torch.get_default_dtype(), max(1, self.settings.cpus))
        self._refs.append(ref)
        return ref.future()

    def cancel(self) -> None:
        import ray

        for ref in self._refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)


@contextlib.contextmanager
def ray_pool(settings: RaySettings, workers: int | None = None) -> Iterator[RayPool]:
    """A :class:`RayPool` on the Ray of ``settings`` (a local one gets ``workers`` x
    ``settings.cpus`` CPUs, so ``workers`` tasks run at once). Leaving it by an exception
    cancels the tasks still queued or running."""
    cpus = None if workers is None else max(1, workers) * max(1, settings.cpus)
    pool = RayPool(settings, ensure_ray(settings, cpus))
    try:
        yield pool
    except BaseException:
        pool.cancel()
        raise
