"""What every builder here shares: the single-feature schema and turning converter items into rows."""
from __future__ import annotations

import os

RECORD_FEATURE = "record"


def features():
    import numpy as np
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict({RECORD_FEATURE: tfds.features.Tensor(shape=(), dtype=np.object_)})


def rows(items: list[dict]):
    """(key, {"record": bytes}) for every item whose video exists (others are left out, as in `data convert`)."""
    from data_pipelines.sources.common import Skips
    from data_pipelines.sources.convert_shard import to_example
    from data_pipelines.records.format import serialize

    skips = Skips()
    for it in items:
        if not os.path.isfile(it["video_path"]):
            continue
        with open(it["video_path"], "rb") as f:
            data = f.read()
        if data:
            yield it["id"], {RECORD_FEATURE: serialize(to_example(it, data, skips))}


def first_existing(directory: str, names: tuple[str, ...]) -> str | None:
    return next((os.path.join(directory, n) for n in names if os.path.exists(os.path.join(directory, n))), None)
