"""Record shards: ArrayRecord files of serialized records, written, listed and read.

Shards are ArrayRecord files (group_size:1 so any record can be read alone), named
`{prefix}-{i:05d}-of-{n:05d}.array_record`; paths are local or cloud (etils.epath). TFDS's
`name.array_record-00000-of-N` shards are listed and read the same way.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from data_pipelines.errors import UserError
from data_pipelines.records.format import VideoExample, deserialize, serialize

SHARD_SUFFIX = ".array_record"
WRITER_OPTIONS = "group_size:1"


def write_records(records: Iterable[bytes], path) -> int:
    """Write already-serialized records to one ArrayRecord file; returns how many were written."""
    from array_record.python.array_record_module import ArrayRecordWriter
    from etils import epath

    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = ArrayRecordWriter(str(path), WRITER_OPTIONS)
    count = 0
    try:
        for record in records:
            writer.write(record)
            count += 1
    finally:
        writer.close()
    return count


def write_shard(examples: Iterable[VideoExample], path) -> int:
    """Serialize examples into one ArrayRecord file; returns the number written."""
    return write_records((serialize(ex) for ex in examples), path)


def shard_name(prefix: str, index: int, num_shards: int) -> str:
    return f"{prefix}-{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


def write_sharded(examples: Iterable[VideoExample], out_dir, num_shards: int, prefix: str = "data") -> list[str]:
    """Round-robin examples over `num_shards` files in out_dir; returns the shard paths in order."""
    from etils import epath

    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    buckets: list[list[bytes]] = [[] for _ in range(num_shards)]
    for i, ex in enumerate(examples):
        buckets[i % num_shards].append(serialize(ex))
    paths = [str(epath.Path(out_dir) / shard_name(prefix, i, num_shards)) for i in range(num_shards)]
    for path, records in zip(paths, buckets):
        write_records(records, path)
    return paths


def list_shards(pattern) -> list[str]:
    """Shard files named by a directory, a glob, a single file, or a comma-separated list of those.

    A directory yields its `*.array_record*` files (ours and TFDS's `name.array_record-00000-of-N`).
    Raises UserError naming the pattern when nothing matches.
    """
    from etils import epath

    found: list[str] = []
    for part in str(pattern).split(","):
        part = part.strip()
        if not part:
            continue
        path = epath.Path(part)
        if any(ch in part for ch in "*?["):
            anchor, rest = _split_glob(part)
            found += sorted(str(p) for p in epath.Path(anchor).glob(rest) if not p.is_dir())
        elif path.is_dir():
            found += sorted(str(p) for p in path.glob(f"*{SHARD_SUFFIX}*") if not p.is_dir())
        elif path.exists():
            found.append(str(path))
    if not found:
        raise UserError(f"{pattern}: no record shards found (expected a directory, glob or file of *{SHARD_SUFFIX})")
    return found


def _split_glob(pattern: str) -> tuple[str, str]:
    """Split 'gs://b/dir/sub*/x-*.array_record' into the literal directory and the glob below it."""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            anchor = "/".join(parts[:i]) or ("/" if pattern.startswith("/") else ".")
            return anchor, "/".join(parts[i:])
    return pattern, ""


def iter_raw(pattern) -> Iterator[tuple[str, int, bytes]]:
    """(shard path, index in shard, record bytes) for every record of every matching shard."""
    from array_record.python.array_record_module import ArrayRecordReader

    for path in list_shards(pattern):
        reader = ArrayRecordReader(path)
        try:
            for i in range(reader.num_records()):
                yield path, i, reader.read([i])[0]
        finally:
            reader.close()


def count_records(pattern) -> int:
    from array_record.python.array_record_module import ArrayRecordReader

    total = 0
    for path in list_shards(pattern):
        reader = ArrayRecordReader(path)
        total += reader.num_records()
        reader.close()
    return total


def read_all(pattern) -> Iterator[VideoExample]:
    """Every example of every matching shard, in shard order (for tools and tests, not training)."""
    for _, _, data in iter_raw(pattern):
        yield deserialize(data)
