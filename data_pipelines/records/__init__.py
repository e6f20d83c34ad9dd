"""Stage 2, records: the record format, TF-Example unwrapping, ArrayRecord shards, and tools over them."""
