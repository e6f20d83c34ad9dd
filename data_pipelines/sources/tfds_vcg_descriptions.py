"""TFDS builder `pegasus_vcg_descriptions`: the Video-ChatGPT video-description set (ActivityNet videos).

manual_dir holds the description QA JSON (generic_qa.json from Video-ChatGPT's quantitative
evaluation, or any list of {"video_name", "Q", "A"} / {"video", "conversations"} entries, named
descriptions.json) and the videos in Test_Videos/, videos/ or manual_dir itself. Each example keeps
the question/answer as turns and the reference description (the answer) as its caption. One split: test.
"""
from __future__ import annotations

import os

import tensorflow_datasets as tfds

from data_pipelines.sources.tfds_features import features, first_existing, rows

ANNOTATIONS = ("generic_qa.json", "descriptions.json")
VIDEO_DIRS = ("Test_Videos", "videos")


class PegasusVcgDescriptions(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "VideoExample record format v1 in one bytes feature."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _info(self):
        return self.dataset_info_from_configs(features=features(), description=__doc__)

    def _split_generators(self, dl_manager):
        from data_pipelines.sources.videochatgpt import read_items

        manual = os.fspath(dl_manager.manual_dir)
        annotations = first_existing(manual, ANNOTATIONS)
        if annotations is None:
            raise FileNotFoundError(f"{manual}: none of {ANNOTATIONS} found")
        videos = first_existing(manual, VIDEO_DIRS) or manual
        items = read_items(annotations, videos)[0]
        for it in items:
            answers = [t["text"] for t in it["turns"] if t["role"] == "assistant"]
            it["captions"] = answers[-1:]
            it["metadata"]["source"] = "vcg_descriptions"
        return {"test": self._generate_examples(items)}

    def _generate_examples(self, items):
        yield from rows(items)
