"""Worker settings, validated in one place (`WorkerSettings.build`)."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.errors import ConfigurationError

POOLS = ("thread", "process")
PRUNE_BATCH = 2_000
"""Finished jobs deleted per prune statement: small enough to keep each write short."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Every setting of one worker, checked; see `conveyor.worker.Worker` for each."""

    queues: tuple[str, ...]
    concurrency: int
    pool: str
    burst: bool
    grace: float
    lease: float
    poll_interval: float
    heartbeat_interval: float
    prune_interval: float
    prune_batch: int
    cron: bool
    """Whether this worker may enqueue periodic jobs when it leads maintenance."""
    app_path: str | None
    max_jobs_per_child: int | None
    max_memory_per_child: float | None
    """Megabytes of resident memory past which a process-pool child is replaced."""
    install_signals: bool
    worker_id: str
    prefetch: int | None
    """Jobs fetched beyond the free slots; None: adaptive."""

    @classmethod
    def build(
        cls,
        *,
        default_queue: str,
        default_lease: float,
        default_poll_interval: float,
        find_app_path: object = None,
        queues: Sequence[str] | None = None,
        concurrency: int = 8,
        pool: str = "thread",
        burst: bool = False,
        grace: float = 30.0,
        lease: float | None = None,
        poll_interval: float | None = None,
        heartbeat_interval: float | None = None,
        prune_interval: float = 60.0,
        prune_batch: int = PRUNE_BATCH,
        cron: bool | None = None,
        app_path: str | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: float | None = None,
        install_signals: bool = True,
        worker_id: str | None = None,
        prefetch: int | None = None,
    ) -> WorkerSettings:
        """Check the `Worker(...)` keyword arguments; `find_app_path` is the app object,
        looked up among the imported modules when pool='process' needs its path."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if pool not in POOLS:
            raise ConfigurationError(f"pool must be one of {POOLS}, got {pool!r}")
        if isinstance(prune_batch, bool) or not isinstance(prune_batch, int) or prune_batch < 1:
            raise ConfigurationError(f"prune_batch must be an int >= 1, got {prune_batch!r}")
        if grace < 0:
            raise ConfigurationError(f"grace must be >= 0 seconds, got {grace!r}")
        if prefetch is not None and (
            isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0
        ):
            raise ConfigurationError(
                f"prefetch must be an int >= 0 (or None: adaptive), got {prefetch!r}"
            )
        for name, limit in (("max_jobs_per_child", max_jobs_per_child),
                            ("max_memory_per_child", max_memory_per_child)):
            if limit is None:
                continue
            if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
                unit = "jobs" if name == "max_jobs_per_child" else "MB"
                raise ConfigurationError(f"{name} must be a number of {unit} > 0, got {limit!r}")
            if pool != "process":
                raise ConfigurationError(
                    f"{name} replaces the child processes of pool='process'; with "
                    f"pool={pool!r} there are none: use pool='process' or drop {name}"
                )
        if max_jobs_per_child is not None and not isinstance(max_jobs_per_child, int):
            raise ConfigurationError(
                f"max_jobs_per_child must be a whole number of jobs, got {max_jobs_per_child!r}"
            )
        names = list(queues) if queues else [default_queue]
        if not names or len(set(names)) != len(names):
            raise ConfigurationError(f"queues must be distinct names, got {names!r}")
        lease_seconds = lease if lease is not None else default_lease
        heartbeat = heartbeat_interval or lease_seconds / 3
        if heartbeat >= lease_seconds:
            raise ConfigurationError(
                f"heartbeat_interval ({heartbeat}s) must be shorter than the lease "
                f"({lease_seconds}s)"
            )
        if pool == "process":
            app_path = app_path or module_path_of(find_app_path)
            if not app_path:
                raise ConfigurationError(
                    "pool='process' starts child processes that import the app: pass "
                    "app_path='module:app' (the CLI does this for you)"
                )
        return cls(
            queues=tuple(names),
            concurrency=concurrency,
            pool=pool,
            burst=burst,
            grace=grace,
            lease=lease_seconds,
            poll_interval=poll_interval if poll_interval is not None else default_poll_interval,
            heartbeat_interval=heartbeat,
            prune_interval=prune_interval,
            prune_batch=prune_batch,
            cron=(not burst) if cron is None else cron,
            app_path=app_path,
            max_jobs_per_child=max_jobs_per_child,
            max_memory_per_child=max_memory_per_child,
            install_signals=install_signals,
            worker_id=worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            prefetch=prefetch,
        )


def module_path_of(target: object) -> str | None:
    """The `module:attribute` under which `target` can be imported (for child processes)."""
    if target is None:
        return None
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if value is target:
                return f"{name}:{attribute}"
    return None


__all__ = ["POOLS", "PRUNE_BATCH", "WorkerSettings", "module_path_of"]
