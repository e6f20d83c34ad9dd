"""Converters from the annotation formats users have to our ArrayRecord shards.

One module per format (`read_items(input_path, videos_dir) -> (items, Skips)`), one per-shard step
(`shard.convert_shard(items, out_path)`) shared by local processes and Apache Beam, and the driver
(`runner.convert`). Formats: folder, folder_csv, webvid, msrvtt, videochatgpt, activitynet.
"""
