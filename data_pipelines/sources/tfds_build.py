"""Build one of the TFDS datasets here as array_record and return its shard paths."""
from __future__ import annotations

import glob
import os

BUILDERS = {
    "msrvtt": ("data_pipelines.tfds.msrvtt", "PegasusMsrvtt"),
    "vcg_descriptions": ("data_pipelines.tfds.vcg_descriptions", "PegasusVcgDescriptions"),
}


def build(name: str, manual_dir: str, data_dir: str) -> list[str]:
    import importlib

    import tensorflow_datasets as tfds

    module, cls = BUILDERS[name]
    builder = getattr(importlib.import_module(module), cls)(data_dir=os.path.expanduser(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir)))
    return sorted(glob.glob(os.path.join(builder.data_dir, "*.array_record*")))
