"""Mixtures of corpora: config.data.mixture = ((records glob, weight, kind), ...).

Each corpus is its own endless, per-epoch-shuffled, process-sharded dataset with its own transform
(the kind picks which conversations it trains on: video, caption, instruction, image — image-text
records are one-frame videos), combined by `grain.MapDataset.mix` in proportion to the weights.
The mix is a pure function of the element index, so the mixture's position is part of the
iterator's checkpointed state like any other Grain position.

The glob BUILTIN names the built-in synthetic corpus's training split (generated in the workdir when
data.path is unset), so a config can weight its tasks without knowing where the run writes it.
"""
from __future__ import annotations

import grain

from data_pipelines.batch.read import corpus_dataset
from data_pipelines.decode.example import media_cache
from data_pipelines.errors import UserError
from data_pipelines.text.prompts import KINDS

BUILTIN = "builtin"


def with_builtin(entries, train_glob: str) -> tuple:
    """`entries` with the BUILTIN glob replaced by `train_glob`."""
    named = lambda e: isinstance(e, (tuple, list)) and len(e) == 3 and e[0] == BUILTIN  # noqa: E731
    return tuple((train_glob, e[1], e[2]) if named(e) else e for e in entries)


def parse_mixture(entries) -> list[tuple[str, float, str]]:
    out = []
    for i, entry in enumerate(entries):
        field = f"config.data.mixture[{i}]"
        if not isinstance(entry, (tuple, list)) or len(entry) != 3:
            raise UserError(f"{field}: expected (records glob, weight, kind), got {entry!r}")
        pattern, weight, kind = entry
        if not isinstance(pattern, str) or not pattern:
            raise UserError(f"{field}: the records glob must be a non-empty string")
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise UserError(f"{field}: weight must be > 0, got {weight!r}")
        if kind not in KINDS:
            raise UserError(f"{field}: kind must be one of {KINDS}, got {kind!r}")
        out.append((pattern, float(weight), kind))
    return out


def corpus_seed(seed: int, corpus: int) -> int:
    """Distinct shuffle seeds per corpus (each adds its epoch to it)."""
    return (seed * 1_000_003 + corpus * 7_919_000) % 2**32


def mixture_dataset(config, tokenizer, slot) -> grain.MapDataset:
    """`slot`: a ReadSlot (batch/read.py) (which share of every corpus this process reads)."""
    parts = parse_mixture(config.data.mixture)
    # corpora over the same records (one corpus, several task weights) decode each record once
    caches = {pattern: media_cache(config) for pattern, _, _ in parts}
    datasets = [corpus_dataset(pattern, config, tokenizer, slot, seed=corpus_seed(config.data.shuffle_seed, i),
                               shuffle=True, num_epochs=None, kind=kind, cache=caches[pattern])
                for i, (pattern, _, kind) in enumerate(parts)]
    return grain.MapDataset.mix(datasets, [w for _, w, _ in parts])
