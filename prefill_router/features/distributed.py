"""Multi-host feature extraction: process setup, prompt assignment, barriers, local meshes.

Every host runs the same `extract_features` call on the same prompt list and shared `store_dir`.
Host p computes the missing prompts whose hash h has ``int(h[:8], 16) % P == p`` (`owner_of`; it depends
on the prompt alone, so hosts agree even when they look at the store at different moments) on its own
(local) devices and writes them into the shared store as shards; after a barrier, every host looks up
(and verifies) the rows of the whole list and process 0 writes the list's manifest. The features equal a
1-host run because a row depends only on its prompt, never on which host or batch computed it.

`maybe_initialize` reads its settings from (first match wins): the arguments; the environment
variables ``PREFILL_ROUTER_COORDINATOR`` / ``PREFILL_ROUTER_NUM_PROCESSES`` / ``PREFILL_ROUTER_PROCESS_ID``;
JAX's own ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``; a SLURM job with more
than one task (``SLURM_NTASKS`` > 1: JAX's SLURM cluster detection fills in the rest); or
``PREFILL_ROUTER_MULTIHOST=1`` alone, which lets JAX detect the cluster itself (Cloud TPU VM pods).

Processes may finish at different times (the pipeline's hosts other than 0 stop after the features stage).
JAX's shutdown barrier at exit waits 5 minutes for the others and then aborts every process, so the entry
point first waits in `wait_for_all`, which has no such limit.
"""
from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh

_ENV_SETS = (
    ("PREFILL_ROUTER_COORDINATOR", "PREFILL_ROUTER_NUM_PROCESSES", "PREFILL_ROUTER_PROCESS_ID"),
    ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"),
)
WAIT_TIMEOUT_S = 7 * 24 * 3600


def _resolve(coordinator_address, num_processes, process_id):
    for addr_var, num_var, id_var in _ENV_SETS:
        coordinator_address = coordinator_address or os.environ.get(addr_var) or None
        if num_processes is None and os.environ.get(num_var):
            num_processes = int(os.environ[num_var])
        if process_id is None and os.environ.get(id_var):
            process_id = int(os.environ[id_var])
    return coordinator_address, num_processes, process_id


def maybe_initialize(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> bool:
    """Calls `jax.distributed.initialize` when a multi-process setting is found; returns whether JAX runs
    multi-process afterwards. Must run before any other JAX call. Idempotent."""
    if jax.distributed.is_initialized():
        return True
    addr, num, pid = _resolve(coordinator_address, num_processes, process_id)
    slurm = int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1
    if num is not None and num <= 1:
        return False
    if addr is None and num is None and not slurm:
        if os.environ.get("PREFILL_ROUTER_MULTIHOST") == "1":
            logging.info("jax.distributed.initialize() with cluster auto-detection (PREFILL_ROUTER_MULTIHOST=1)")
            jax.distributed.initialize()
            return True
        return False
    if not slurm and (addr is None or num is None or pid is None):
        raise ValueError(f"incomplete multi-process setting: coordinator={addr!r}, num_processes={num!r}, "
                         f"process_id={pid!r}; set all three (e.g. PREFILL_ROUTER_COORDINATOR=host:port, "
                         f"PREFILL_ROUTER_NUM_PROCESSES=P, PREFILL_ROUTER_PROCESS_ID=p)")
    logging.info("jax.distributed.initialize(coordinator=%s, num_processes=%s, process_id=%s)", addr, num, pid)
    jax.distributed.initialize(coordinator_address=addr, num_processes=num, process_id=pid)
    return True


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def owner_of(prompt_hash: str, count: int | None = None) -> int:
    """The host (of `count`, default all processes) that computes the prompt with this hex hash."""
    count = process_count() if count is None else count
    return int(prompt_hash[:8], 16) % count


def barrier(name: str) -> None:
    """Blocks until every process reaches the barrier `name` (no-op with one process)."""
    if process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def wait_for_all(name: str, timeout_s: int = WAIT_TIMEOUT_S) -> None:
    """Blocks until every process reaches `name`, for up to `timeout_s` (no-op with one process).

    Unlike `barrier` it runs no device collective, only the coordination service's barrier, so it can wait
    for hours, e.g. for process 0 to finish training. When another process exits without reaching it, JAX
    aborts this one when its shutdown barrier fails, about 5 minutes later."""
    if process_count() > 1:
        from jax._src import distributed as jax_distributed  # no public handle; JAX's serialization uses it too
        jax_distributed.global_state.client.wait_at_barrier(name, timeout_in_ms=timeout_s * 1000)


def local_data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """1-D mesh with axis 'data' (Auto axis type) over this process's devices, or over `devices`."""
    devices = list(jax.local_devices() if devices is None else devices)
    return Mesh(np.asarray(devices), ("data",), axis_types=(AxisType.Auto,))
