"""Run the same per-shard conversion under Apache Beam (the optional `beam` extra).

Each shard task is one element; `convert_shard_task` runs on the workers and its per-shard summaries
are written as JSON lines next to nothing the reader globs (a temporary folder), then read back.
DirectRunner by default; pass other pipeline options (e.g. --runner=DataflowRunner ...) through
`beam_args` for millions of videos.
"""
from __future__ import annotations

import json
import os
import tempfile

from data_pipelines.errors import UserError


def run_beam(tasks: list[tuple], beam_args: list[str] | None = None) -> list[dict]:
    try:
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise UserError("--runner beam: apache_beam is not installed (pip install 'pegasus-jax[beam]')") from None
    from data_pipelines.sources.convert_shard import convert_shard_task

    options = PipelineOptions(beam_args or ["--runner=DirectRunner"])
    with tempfile.TemporaryDirectory() as tmp:
        summary_prefix = os.path.join(tmp, "shard_summaries")
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline
                 | "shards" >> beam.Create(tasks, reshuffle=True)
                 | "convert" >> beam.Map(convert_shard_task)
                 | "to json" >> beam.Map(json.dumps)
                 | "summaries" >> beam.io.WriteToText(summary_prefix, shard_name_template="-SSSSS-of-NNNNN"))
        results = []
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name)) as f:
                results += [json.loads(line) for line in f if line.strip()]
    return results
