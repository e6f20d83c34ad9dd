"""Stage 3, decode: one record -> one model example (media decoding, the decoder registry, isolation)."""
