"""Stage 1, sources: what becomes records (converters from annotation formats, TFDS builders, the
synthetic corpus, long videos).

Converters: one module per format (`read_items(input_path, videos_dir) -> (items, Skips)`), one
per-shard step (`convert_shard.convert_shard(items, out_path)`) shared by local processes and
Apache Beam (beam.py), and the driver (`convert.convert`). Formats: folder, folder_csv, webvid,
msrvtt, videochatgpt, activitynet. TFDS builders: tfds_*.py.
"""
