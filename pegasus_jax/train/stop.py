"""One stop decision for every process of a job, taken at the same step.

A process may want to stop for reasons only it sees: SIGTERM delivered to its host, or
`config.train.max_seconds` passed on its own clock. Acting alone would deadlock a pod: the process
that decides first enters Orbax's save (a collective) while the others enter the next step's
collectives. So each process posts its wish and all of them act on the OR of the wishes:

- every `config.train.stop_check_every` steps each process contributes its flag to a tiny jitted
  max-reduction over all devices. The result is read one check later, so the host never waits for
  the step it just dispatched; every process reads the same value at the same step.
- JAX's preemption service (through Orbax's `reached_preemption`) is asked at every step; its answer
  is agreed across processes by construction.

A single process needs no agreement and acts on its own flag at once.
"""
from __future__ import annotations

import logging
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

log = logging.getLogger("pegasus_jax.train")


class _AnyProcess:
    """Posts this process's flag to a max over every device of the job; the result stays on device."""

    def __init__(self):
        devices = np.asarray(jax.devices())
        mesh = Mesh(devices, ("all",))
        self._sharding = NamedSharding(mesh, PartitionSpec("all"))
        self._reduce = jax.jit(jnp.max, out_shardings=NamedSharding(mesh, PartitionSpec()))
        self._local = jax.local_device_count()

    def post(self, flag: bool) -> jax.Array:
        local = np.full((self._local,), int(flag), np.int32)
        return self._reduce(jax.make_array_from_process_local_data(self._sharding, local, (jax.device_count(),)))


class StopAgreement:
    """`should_stop(step)` after each step: True on every process at the same step, or on none."""

    def __init__(self, max_seconds: float, check_every: int, checkpoint_manager=None):
        self.max_seconds, self.check_every = max_seconds, check_every
        self.checkpoint_manager = checkpoint_manager
        self._term = False
        self._reason = ""
        self._started = time.perf_counter()
        self._pending: jax.Array | None = None
        self._any = _AnyProcess() if jax.process_count() > 1 else None
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        self._term = True

    def start_clock(self) -> None:
        self._started = time.perf_counter()

    def _local_wish(self) -> bool:
        if self._term and not self._reason:
            self._reason = "SIGTERM"
        if self.max_seconds and time.perf_counter() - self._started > self.max_seconds and not self._reason:
            self._reason = f"config.train.max_seconds={self.max_seconds}"
        return bool(self._reason)

    def should_stop(self, step: int) -> bool:
        wish = self._local_wish()
        if self.checkpoint_manager is not None and self.checkpoint_manager.reached_preemption(step):
            log.info("preemption notice: every process stops at step %d", step)
            return True
        if self._any is None:
            if wish:
                log.info("%s: stopping at step %d", self._reason, step)
            return wish
        agreed = False
        if self._pending is not None:
            agreed = bool(jax.device_get(self._pending))
            self._pending = None
        if not agreed and step % self.check_every == 0:
            self._pending = self._any.post(wish)
        if agreed:
            log.info("%s: every process stops at step %d", self._reason or "another process asked to stop", step)
        return agreed

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)
