"""Stage 4, batch: Grain datasets from shards to batches of the contract (mixture, batcher, iterators)."""
