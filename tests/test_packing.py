"""Sequence packing: the packer (data_pipelines/batch/packing.py) and the packed forward of the model.

The model test is the contract of packing: three examples packed into one row give each example the loss
and the gradients it has alone (fp32, 1e-5). The packer tests run it over a Grain pipeline of synthetic
examples with bad-record markers mixed in: budgets held, every good example emitted exactly once and
placed intact, the same batches every time, and a restored iterator continuing exactly.
"""
import json

import grain
import jax
import numpy as np
import optax
import pytest
from flax import nnx

from data_pipelines.batch.packing import PackingBatcher, PackSpec, pack_row, place
from data_pipelines.contract import example_spec, pack_budget, packed_spec
from data_pipelines.errors import UserError
from pegasus_jax import config as cfg
from pegasus_jax.models.alignment import pool_shape
from pegasus_jax.models.pegasus import Pegasus, example_losses, loss_fn, token_nll


def tiny_config(**data):
    c = cfg.get("tiny")
    for k, v in data.items():
        c.data[k] = v
    return c


def make_example(config, rng, ident, segments, audio, transcript, text_len):
    """One example in the unpacked layout: `segments` valid segments, audio on those flagged in `audio`,
    `transcript[s]` transcript tokens in segment s, `text_len` text tokens (answer from the 4th)."""
    ex = {k: np.zeros(shape, dtype) for k, (shape, dtype) in example_spec(config).items()}
    vocab = config.model.decoder.vocab_size
    ex["frames"][:segments] = rng.integers(0, 256, ex["frames"][:segments].shape, dtype=np.uint8)
    ex["segment_mask"][:segments] = True
    ex["segment_start"][:segments] = np.arange(segments) * config.model.align.segment_seconds
    for s, (has_audio, spoken) in enumerate(zip(audio, transcript)):
        if has_audio:
            ex["audio"][s] = rng.normal(0, 0.1, ex["audio"].shape[1]).astype(np.float32)
            ex["audio_mask"][s] = True
        ex["transcript"][s, :spoken] = rng.integers(5, vocab, spoken)
        ex["transcript_mask"][s, :spoken] = True
    ids = rng.integers(5, vocab, text_len + 1)
    ex["tokens"][:text_len], ex["targets"][:text_len] = ids[:-1], ids[1:]
    ex["text_mask"][:text_len] = True
    ex["loss_mask"][3:text_len] = 1.0
    return {**ex, "_id": ident, "_notes": [], "_text_len": text_len}


THREE = [  # (segments, audio per segment, transcript tokens per segment, text length)
    (2, (True, True), (3, 0), 10),
    (1, (False, False), (0, 0), 20),
    (2, (False, True), (1, 4), 7),
]


def test_packed_examples_match_each_alone():
    config = tiny_config(pack_tokens=200, pack_segments=6)
    rng = np.random.default_rng(0)
    exs = [make_example(config, rng, f"ex{i}", *shape) for i, shape in enumerate(THREE)]
    spec = PackSpec.from_config(config, rows=1)
    packed = {k: v[None] for k, v in pack_row(exs, spec, packed_spec(config)).items()}
    assert (packed["example_ids"] == 0).sum() > 0  # a padded tail too
    pool = pool_shape(config.model, config.data.max_segments)
    graphdef, params = nnx.split(Pegasus(config.model, rngs=nnx.Rngs(0)))

    def packed_losses(p):
        logits = nnx.merge(graphdef, p)(packed, pool)
        nll, tokens = example_losses(logits, packed, len(exs))
        return nll[0] / tokens[0]

    def alone_loss(p, batch):
        logits = nnx.merge(graphdef, p)(batch, pool)
        weights = batch["loss_mask"]
        return (token_nll(logits, batch["targets"]) * weights).sum() / weights.sum()

    together = jax.jit(packed_losses)(params)
    # the training loss (text-only, chunked) of the packed row: token-weighted over its examples
    training = jax.jit(lambda p: loss_fn(nnx.merge(graphdef, p), packed, pool))(params)
    per_example_grads = jax.jit(jax.jacrev(packed_losses))(params)  # leaves (3, ...)
    alone = jax.jit(jax.value_and_grad(alone_loss))
    total_nll = total_tokens = 0.0
    for i, ex in enumerate(exs):
        loss, grads = alone(params, {k: ex[k][None] for k in example_spec(config)})
        np.testing.assert_allclose(together[i], loss, rtol=1e-5, atol=1e-5)
        tokens = packed["loss_mask"][packed["example_ids"] == i + 1].sum()
        total_nll, total_tokens = total_nll + loss * tokens, total_tokens + tokens
        assert float(optax.tree.norm(grads)) > 0
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(per_example_grads), jax.tree.leaves(grads)):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-5, err_msg=f"example {i}: {jax.tree_util.keystr(path)}")
    np.testing.assert_allclose(training[0], total_nll / total_tokens, rtol=1e-5)
    assert training[1]["loss_tokens"] == total_tokens


def stream(config, count=40, seed=1):
    """`count` examples of random sizes with a bad-record marker after every 9th."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        segments = int(rng.integers(1, config.data.max_segments + 1))
        audio = tuple(bool(a) for a in rng.integers(0, 2, config.data.max_segments))
        transcript = tuple(int(t) for t in rng.integers(0, config.model.transcript_tokens + 1, config.data.max_segments))
        items.append(make_example(config, rng, f"ex{i}", segments, audio, transcript,
                                  int(rng.integers(4, config.data.max_text_len + 1))))
        if i % 9 == 8:
            items.append({"_bad": "empty", "_id": f"bad{i}", "_why": "zero bytes"})
    return items


def packer(config, items, rows=3):
    ds = grain.MapDataset.source(items).to_iter_dataset()
    return iter(PackingBatcher.from_config(ds, config, rows))


PACK = dict(pack_tokens=120, pack_segments=4, pack_window=8, max_bad_ratio=0.5)


def test_packer_keeps_budgets_and_every_example_once_intact():
    config = tiny_config(**PACK)
    items = stream(config)
    by_id = {e["_id"]: e for e in items if "_bad" not in e}
    it = packer(config, items)
    tokens, segments = pack_budget(config)
    seen, rows_seen = [], 0
    for batch in it:
        ids = iter(it.last_ids)
        for r in range(batch["example_ids"].shape[0]):
            row = {k: v[r] for k, v in batch.items()}
            assert row["segment_mask"].sum() <= segments and (row["segment_dest"] <= tokens).all()
            rows_seen += 1
            slot = 0
            for n in range(1, row["example_ids"].max() + 1):
                ex = by_id[next(ids)]
                at = np.flatnonzero(row["example_ids"] == n)
                assert (np.diff(at) == 1).all() and (row["positions"][at] == np.arange(len(at))).all()
                text = at[row["text_mask"][at]]
                k = ex["_text_len"]
                assert len(text) == k and (row["tokens"][text] == ex["tokens"][:k]).all()
                assert (row["loss_mask"][text] == ex["loss_mask"][:k]).all()
                for s in np.flatnonzero(ex["segment_mask"]):
                    assert (row["frames"][slot] == ex["frames"][s]).all() and row["audio_mask"][slot] == ex["audio_mask"][s]
                    dest = row["segment_dest"][slot]
                    assert set(dest[dest < tokens]) <= set(at)
                    slot += 1
                seen.append(ex["_id"])
            assert not row["segment_mask"][slot:].any()
    assert sorted(seen) == sorted(by_id) and len(seen) == len(by_id)  # none dropped, none repeated
    assert it.stats()["bad_total"] == len(items) - len(by_id)
    assert len(seen) > 1.5 * rows_seen  # packing, not one example per row


def test_best_fit_places_oldest_first_tightest_row():
    placed, left = place([(60, 1), (50, 1), (40, 1), (70, 2), (20, 1)], rows=2, tokens=100, segments=2)
    assert placed == [[0, 2], [1, 4]] and left == [3]


def batches(it, n):
    return [(next(it), list(it.last_ids)) for _ in range(n)]


def assert_same(a, b):
    assert [ids for _, ids in a] == [ids for _, ids in b]
    for (x, _), (y, _) in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_packer_is_deterministic_and_resumes_from_its_state():
    config = tiny_config(**PACK)
    items = stream(config)
    assert_same(batches(packer(config, items), 5), batches(packer(config, items), 5))
    it = packer(config, items, rows=2)
    batches(it, 4)
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint holds
    # the hard case: examples held across the checkpoint, a later one already emitted, a bad one among them
    assert state["emitted"] and state["read"] > len(state["emitted"])
    rest = batches(it, 3)
    resumed = packer(config, items, rows=2)
    resumed.set_state(state)
    assert_same(batches(resumed, 3), rest)
    assert resumed.stats() == it.stats()  # bad records replayed are not counted twice


def test_pack_budget_must_hold_one_example():
    with pytest.raises(UserError, match="config.data.pack_tokens=20 cannot hold one example"):
        PackSpec.from_config(tiny_config(pack_tokens=20), rows=2)


def test_packed_work_counts_each_example_as_alone():
    """MFU and tokens/s count a packed row's examples as the same examples unpacked (attention per example)."""
    from pegasus_jax.scaling.flops import WORK_KEYS, work_of_batch

    config = tiny_config(pack_tokens=200, pack_segments=6)
    rng = np.random.default_rng(0)
    exs = [make_example(config, rng, f"ex{i}", *shape) for i, shape in enumerate(THREE)]
    packed = {k: v[None] for k, v in pack_row(exs, PackSpec.from_config(config, rows=1), packed_spec(config)).items()}
    alone = [work_of_batch(config, {k: ex[k][None] for k in example_spec(config)}) for ex in exs]
    work = work_of_batch(config, packed)
    for k in WORK_KEYS:
        assert float(work[k]) == sum(float(w[k]) for w in alone), k
    assert int(work["tokens"]) == int((packed["example_ids"] > 0).sum())


def test_training_packs_real_records_by_default_and_evaluation_does_not(corpus):
    from data_pipelines.batch import iterators as pipeline
    from data_pipelines.text.tokenizer import load_tokenizer

    c = cfg.get("tiny", data__path=corpus["train"], data__isolate_decode=False, train__batch_size=2,
                data__pack_segments=4, data__pack_tokens=2 * pack_budget(cfg.get("tiny"))[0])
    assert c.data.packing  # the default
    tok = load_tokenizer(corpus["tokenizer"])
    train = pipeline.make_train_iterator(c, tok)
    batch = next(train)
    assert set(batch) == set(packed_spec(c)) and batch["example_ids"].max(axis=1).tolist() == [2, 2]
    assert len(set(train.last_ids)) == 4
    evaluation = next(pipeline.make_eval_iterator(c, tok))
    assert set(evaluation) == set(example_spec(c))


def test_pack_row_refuses_examples_that_overflow_it():
    config = tiny_config(pack_tokens=100, pack_segments=4)
    rng = np.random.default_rng(0)
    exs = [make_example(config, rng, f"ex{i}", 2, (True, True), (0, 0), 40) for i in range(2)]
    with pytest.raises(ValueError, match="overflow a row of 100 / 4"):
        pack_row(exs, PackSpec.from_config(config, rows=1), packed_spec(config))
