"""TFDS builders for the named public sets (the `tfds` extra): MSR-VTT and the Video-ChatGPT
description set. They read a manual download dir, write file_format=array_record, and store each
example's serialized VideoExample bytes in one feature ("record"); `records.deserialize` unwraps
TFDS's tf.train.Example, so Grain reads these shards like ours. TensorFlow is imported only by the
builder modules, never by this package.

    from data_pipelines.tfds.build import build
    build("msrvtt", manual_dir="~/MSRVTT", data_dir="~/tfds")   # -> list of array_record shards
"""
