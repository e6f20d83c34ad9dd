"""pegasus-jax's data: from the files users have to batches of the model's contract.

Sub-packages in the order the data flows:

    sources/    what becomes records: converters, TFDS builders, the synthetic corpus, long videos
    records/    the record format, TF-Example unwrapping, ArrayRecord shards, inspect, tokenizer corpus
    decode/     one record -> one example: PyAV decoding, the decoder registry, isolation
    batch/      Grain: read shards, mixtures, the bad-record log, the batcher, train/eval iterators
    contract.py the batch contract (leaf)
    text/       tokenizer, chat template, task prompts (leaf)
    errors.py   UserError (leaf)

Imports run one way, without cycles (tests/test_import_cycles.py): batch -> decode -> records -> the
leaves; sources/ and records/inspect.py, which write and check records, use records/ and decode/video.py.
This package never imports pegasus_jax; pegasus_jax imports it.
"""
