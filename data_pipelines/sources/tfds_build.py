"""Build one of our TFDS datasets as array_record and return its shard paths.

The builders (the `tfds` extra) cover MSR-VTT and the Video-ChatGPT description set. They read a manual
download dir, write file_format=array_record, and store each example's serialized VideoExample bytes
in one feature ("record"); `records.format.deserialize` unwraps TFDS's tf.train.Example, so Grain reads
these shards like ours. TensorFlow is imported only by the builder modules (tfds_msrvtt.py,
tfds_vcg_descriptions.py), never by the rest of the package.

    from data_pipelines.sources.tfds_build import build
    build("msrvtt", manual_dir="~/MSRVTT", data_dir="~/tfds")   # -> list of array_record shards
"""
from __future__ import annotations

import glob
import os

BUILDERS = {
    "msrvtt": ("data_pipelines.sources.tfds_msrvtt", "PegasusMsrvtt"),
    "vcg_descriptions": ("data_pipelines.sources.tfds_vcg_descriptions", "PegasusVcgDescriptions"),
}


def build(name: str, manual_dir: str, data_dir: str) -> list[str]:
    import importlib

    import tensorflow_datasets as tfds

    module, cls = BUILDERS[name]
    builder = getattr(importlib.import_module(module), cls)(data_dir=os.path.expanduser(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir)))
    return sorted(glob.glob(os.path.join(builder.data_dir, "*.array_record*")))
