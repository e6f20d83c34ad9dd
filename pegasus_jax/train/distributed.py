"""Multi-controller start-up: one JAX process per host (TPU VM worker, SLURM task, or local rehearsal).

- TPU pods (PEGASUS_DISTRIBUTED=1, set by launch/tpu_vm.sh and launch/xpk.sh) and SLURM:
  `jax.distributed.initialize()` reads the cluster's own environment.
- Local rehearsal (launch/local.sh): PEGASUS_COORDINATOR=host:port, PEGASUS_NUM_PROCESSES,
  PEGASUS_PROCESS_ID; on CPU the processes exchange collectives through gloo.
"""
from __future__ import annotations

import os

import jax

from pegasus_jax.errors import UserError


def initialize() -> None:
    """Join the job's processes, if this is a multi-process run. Idempotent."""
    if jax.distributed.is_initialized():
        return
    coordinator = os.environ.get("PEGASUS_COORDINATOR")
    if coordinator:
        try:
            num = int(os.environ["PEGASUS_NUM_PROCESSES"])
            pid = int(os.environ["PEGASUS_PROCESS_ID"])
        except (KeyError, ValueError):
            raise UserError("PEGASUS_COORDINATOR is set but PEGASUS_NUM_PROCESSES / PEGASUS_PROCESS_ID are missing "
                            "or not integers") from None
        if os.environ.get("JAX_PLATFORMS", "cpu").startswith("cpu"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num, process_id=pid)
    elif os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()
    elif os.environ.get("PEGASUS_DISTRIBUTED") == "1" or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()


def is_main() -> bool:
    return jax.process_index() == 0


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def gather_json(value) -> list | None:
    """Every process's JSON-able `value`, in process order, on process 0 (None on the others).

    Through the job's own collectives (process_allgather of the UTF-8 bytes, padded to the longest):
    the same path as training's, gloo on CPU, nothing else to set up."""
    import json

    import numpy as np

    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    lengths = multihost_utils.process_allgather(np.asarray([data.size], np.int64)).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[:data.size] = data
    everyone = multihost_utils.process_allgather(padded)
    if not is_main():
        return None
    return [json.loads(bytes(row[:n])) for row, n in zip(everyone, lengths)]
