"""Which rows of the global batch each process reads, derived from the batch sharding.

`jax.make_array_from_process_local_data` expects every process to hold exactly the batch rows its
devices address, in ascending order. Which rows those are follows from the mesh, not from the
process index: with tensor or fsdp axes that span hosts, several processes address the same rows
(MaxText's 80B layout on v5p-256 has two processes per row block). Such processes form one
data-parallel group and must read the same records, so the corpus is split by group, not by
process: group g of G reads share g of G of every epoch (a `ReadSlot`).

The layout is computed from the sharding's full device -> index map, so every process derives the
same groups without talking to the others, and a layout that no corpus split can feed (processes
whose rows overlap without being equal, or groups of unequal size) is refused at start-up.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from data_pipelines.batch.read import ReadSlot
from pegasus_jax.errors import ConfigError
from pegasus_jax.sharding import ACT_BATCH, batch_sharding, rules_dict


def rows_by_process(sharding: NamedSharding, global_batch: int) -> dict[int, tuple[int, ...]]:
    """process index -> the ascending global batch rows its devices address."""
    rows: dict[int, set[int]] = {}
    for device, index in sharding.devices_indices_map((global_batch,)).items():
        rows.setdefault(device.process_index, set()).update(range(*index[0].indices(global_batch)))
    return {p: tuple(sorted(r)) for p, r in sorted(rows.items())}


def _spans(rows: tuple[int, ...]) -> str:
    """(0, 1, 2, 8, 9) -> '0:3,8:10'."""
    spans, start = [], rows[0]
    for prev, cur in zip(rows, rows[1:] + (None,)):
        if cur != prev + 1:
            spans.append(f"{start}:{prev + 1}")
            start = cur
    return ",".join(spans)


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    """One process's part of the global batch: its rows, its group and how to assemble global arrays."""

    mesh: Mesh
    axis_rules: tuple
    global_batch: int
    rows: tuple[int, ...]  # this process's global rows, ascending: its local batch in that order
    group: int  # this process's data-parallel group (processes with the same rows)
    num_groups: int

    @classmethod
    def create(cls, mesh: Mesh, axis_rules, global_batch: int, process_index: int | None = None) -> "BatchLayout":
        rules = rules_dict(axis_rules)
        shards = int(np.prod([mesh.shape[a] for a in rules.get(ACT_BATCH, ()) if a in mesh.shape]))
        if global_batch % shards:
            raise ConfigError(f"config.train.batch_size: {global_batch} does not divide over the {shards} batch "
                              f"shards of mesh {dict(mesh.shape)}")
        by_process = rows_by_process(batch_sharding(mesh, axis_rules, 1), global_batch)
        groups = sorted(set(by_process.values()))
        taken: dict[int, int] = {}
        for rows in groups:
            for row in rows:
                if row in taken:
                    other = next(p for p, r in by_process.items() if r == groups[taken[row]])
                    mine = next(p for p, r in by_process.items() if r == rows)
                    raise ConfigError(
                        f"config.mesh: processes {other} and {mine} feed overlapping but different batch rows "
                        f"({_spans(groups[taken[row]])} vs {_spans(rows)}); the mesh's batch axes must give each "
                        f"process whole data-parallel shards")
                taken[row] = groups.index(rows)
        if len({len(r) for r in groups}) > 1:
            raise ConfigError(f"config.mesh: processes feed unequal numbers of batch rows "
                              f"({sorted({len(r) for r in groups})}); every data-parallel group must read as many")
        me = jax.process_index() if process_index is None else process_index
        rows = by_process[me]
        return cls(mesh, tuple(axis_rules), global_batch, rows, groups.index(rows), len(groups))

    @property
    def read_slot(self) -> ReadSlot:
        return ReadSlot(index=self.group, count=self.num_groups, batch_size=len(self.rows))

    def to_global(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's local batch (its rows, ascending) -> global arrays sharded over the mesh."""
        out = {}
        for name, value in local.items():
            if value.shape[0] != len(self.rows):
                raise ValueError(f"batch field {name!r} has {value.shape[0]} rows; this process feeds "
                                 f"{len(self.rows)} ({_spans(self.rows)})")
            out[name] = jax.make_array_from_process_local_data(
                batch_sharding(self.mesh, self.axis_rules, value.ndim), value, (self.global_batch,) + value.shape[1:])
        return out

    def describe(self) -> str:
        return (f"batch rows {_spans(self.rows)} of {self.global_batch} (data-parallel group {self.group} of "
                f"{self.num_groups})")
