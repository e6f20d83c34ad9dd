"""TFDS builder `pegasus_msrvtt`: MSR-VTT from a manual download dir.

manual_dir holds train_val_videodatainfo.json and/or test_videodatainfo.json (the MSR-VTT annotation
JSON) and the videos as {video_id}.mp4 in one of: TrainValVideo/, TestVideo/, videos/all/, videos/, or
manual_dir itself. Splits follow each video's "split" field (train / validate / test).
"""
from __future__ import annotations

import os

import tensorflow_datasets as tfds

from data_pipelines.sources.tfds_features import features, rows

ANNOTATIONS = ("train_val_videodatainfo.json", "test_videodatainfo.json", "videodatainfo.json")
VIDEO_DIRS = ("TrainValVideo", "TestVideo", "videos/all", "videos")


class PegasusMsrvtt(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "VideoExample record format v1 in one bytes feature."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _info(self):
        return self.dataset_info_from_configs(features=features(), description=__doc__)

    def _split_generators(self, dl_manager):
        from data_pipelines.sources.msrvtt import read_items

        manual = os.fspath(dl_manager.manual_dir)
        items = []
        for name in ANNOTATIONS:
            path = os.path.join(manual, name)
            if os.path.isfile(path):
                items += read_items(path, manual)[0]
        if not items:
            raise FileNotFoundError(f"{manual}: none of {ANNOTATIONS} found")
        dirs = [d for d in (os.path.join(manual, v) for v in VIDEO_DIRS) if os.path.isdir(d)] + [manual]
        for it in items:
            found = [p for p in (os.path.join(d, it["metadata"]["video_id"] + ".mp4") for d in dirs) if os.path.isfile(p)]
            it["video_path"] = found[0] if found else it["video_path"]
        splits = sorted({it["metadata"].get("split", "train") for it in items})
        return {split: self._generate_examples([it for it in items if it["metadata"].get("split", "train") == split])
                for split in splits}

    def _generate_examples(self, items):
        yield from rows(items)
