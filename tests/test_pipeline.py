"""Records -> Grain batches: the batch contract, answer-only loss, frames equal to a direct decode,
epochs without repeats, exact resume through Orbax, eval padding, worker processes, mixtures."""
import numpy as np
import orbax.checkpoint as ocp
import pytest

from data_pipelines.batch import iterators as pipeline
from data_pipelines.sources import synth
from data_pipelines.contract import example_spec
from data_pipelines.records.shards import read_all, write_sharded
from data_pipelines.text.tokenizer import load_tokenizer
from data_pipelines.records.tokenizer_corpus import train_tokenizer_for_config
from data_pipelines.decode.video import decode_audio, sample_frames, segment_plan
from pegasus_jax import config as cfg
from data_pipelines.text import prompts

NUM = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    synth.generate_corpus(str(root), num=NUM, heldout=6, seed=0, size=32, workers=1)
    train = str(root / "train" / "*.array_record")
    tok = train_tokenizer_for_config(train, 512, str(root / "tok.model"))
    return {"root": root, "train": train, "heldout": str(root / "heldout" / "*.array_record"),
            "tok": load_tokenizer(tok), "records": {ex.id: ex for ex in read_all(train)}}


def config(path, **extra):
    c = cfg.get("tiny", data__path=path, data__isolate_decode=False, data__num_workers=0, train__batch_size=8,
                data__packing=False)  # the bucket batcher (packing: tests/test_packing.py)
    for k, v in extra.items():
        node = c
        *parents, leaf = k.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


def take(it, n):
    out = []
    for _ in range(n):
        batch = next(it)
        out.append((batch, list(it.last_ids)))
    return out


def test_batch_contract_and_answer_only_loss(corpus):
    c = config(corpus["train"])
    tok = corpus["tok"]
    captions_checked = 0
    for batch, ids in take(pipeline.make_train_iterator(c, tok), 3):
        width = batch["tokens"].shape[1]
        assert width in c.data.length_buckets
        spec = example_spec(c, width)
        assert set(batch) == set(spec)
        for k, (shape, dtype) in spec.items():
            assert batch[k].shape == (8,) + shape and batch[k].dtype == dtype, k
        assert batch["text_mask"].sum(1).max() > c.data.length_buckets[0] or width == c.data.length_buckets[0]
        for b, id_ in enumerate(ids):
            ex, n = corpus["records"][id_], int(batch["text_mask"][b].sum())
            tokens, targets, loss = batch["tokens"][b], batch["targets"][b], batch["loss_mask"][b]
            assert batch["text_mask"][b, :n].all() and not batch["text_mask"][b, n:].any()
            assert (targets[:n - 1] == tokens[1:n]).all()
            assert tokens[0] == tok.bos_id and tokens[1] == tok.user_id
            assert not loss[n:].any() and set(np.unique(loss)) <= {0.0, 1.0}
            # The loss starts right after <assistant> and covers only answer tokens.
            first = int(np.argmax(loss))
            assert tokens[first] == tok.assistant_id
            assert tok.user_id not in targets[loss > 0] and tok.assistant_id not in targets[loss > 0]
            prompt = tok.decode(tokens[2:first])
            if prompt == prompts.DESCRIBE and n < c.data.max_text_len:
                assert tok.decode(targets[loss > 0]) == ex.captions[0]
                assert targets[n - 1] == tok.eot_id
                captions_checked += 1
    assert captions_checked >= 2


def test_frames_and_audio_equal_a_direct_decode(corpus):
    c = config(corpus["train"])
    batch, ids = take(pipeline.make_train_iterator(c, corpus["tok"]), 1)[0]
    al = c.model.align
    for b, id_ in enumerate(ids[:4]):
        ex = corpus["records"][id_]
        plan = segment_plan(ex.duration, al.segment_seconds, al.frames_per_segment, c.data.max_segments)
        frames, _ = sample_frames(ex.video, [t for s in plan for t in s.timestamps], c.model.vision.image_size)
        n = len(plan)
        assert batch["segment_mask"][b].tolist() == [i < n for i in range(c.data.max_segments)]
        np.testing.assert_array_equal(batch["frames"][b, :n].reshape(frames.shape), frames)
        assert not batch["frames"][b, n:].any()
        np.testing.assert_array_equal(batch["segment_start"][b, :n], [s.start for s in plan])
        for i, s in enumerate(plan):
            wave = decode_audio(ex.video, 16000, s.start, s.start + al.segment_seconds)[:16000]
            np.testing.assert_array_equal(batch["audio"][b, i, :len(wave)], wave)
        assert batch["audio_mask"][b, :n].tolist() == [not ex.metadata["silent"]] * n  # silent clips: no track


def test_epochs_cover_every_record_once_in_new_orders(corpus):
    it = pipeline.make_train_iterator(config(corpus["train"]), corpus["tok"])
    epochs = [[i for _, ids in take(it, NUM // 8) for i in ids] for _ in range(2)]
    for ids in epochs:
        assert sorted(ids) == sorted(corpus["records"])
    assert epochs[0] != epochs[1]
    again = pipeline.make_train_iterator(config(corpus["train"]), corpus["tok"])
    assert [i for _, ids in take(again, NUM // 8) for i in ids] == epochs[0]  # deterministic by seed
    other = pipeline.make_train_iterator(config(corpus["train"], data__shuffle_seed=1), corpus["tok"])
    assert [i for _, ids in take(other, NUM // 8) for i in ids] != epochs[0]


def assert_same(a, b):
    assert [ids for _, ids in a] == [ids for _, ids in b]
    for (x, _), (y, _) in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def resume_through_orbax(make_iter, directory, before, after):
    """Take `before` batches, save the iterator with Orbax, take `after`; restore into a fresh one."""
    it = make_iter()
    take(it, before)
    with ocp.CheckpointManager(directory) as mngr:
        mngr.save(before, args=ocp.args.Composite(data=pipeline.checkpoint_args_save(it)))
        mngr.wait_until_finished()
    reference = take(it, after)
    fresh = make_iter()
    with ocp.CheckpointManager(directory) as mngr:
        mngr.restore(before, args=ocp.args.Composite(data=pipeline.checkpoint_args_restore(fresh)))
    return reference, take(fresh, after), fresh


DECODED = []


def counting_decoder(ex, params):
    """The real PyAV decoder, recording each call."""
    from data_pipelines.decode.media import decode_media

    DECODED.append(ex.id)
    return decode_media(ex, params)


def test_media_cache_decodes_each_record_once_and_changes_nothing(corpus):
    def two_epochs(cache_mb):
        DECODED.clear()
        c = config(corpus["train"], data__decoder=f"{__name__}:counting_decoder", data__cache_media_mb=cache_mb)
        batches = take(pipeline.make_train_iterator(c, corpus["tok"]), 2 * NUM // 8)
        return batches, len(DECODED)

    cached, calls_cached = two_epochs(64)
    plain, calls_plain = two_epochs(0)
    assert calls_plain >= 2 * NUM and calls_cached <= NUM + 2  # (+2: a reading thread may run ahead)
    for (a, ids_a), (b, ids_b) in zip(cached, plain):
        assert ids_a == ids_b
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # two task weightings of one corpus (configs/demo.py) share one cache: each record decoded once in all
    DECODED.clear()
    c = config(corpus["train"], data__decoder=f"{__name__}:counting_decoder", data__cache_media_mb=64,
               data__mixture=((corpus["train"], 1.0, "caption"), (corpus["train"], 1.0, "video")))
    take(pipeline.make_train_iterator(c, corpus["tok"]), 2 * NUM // 8)  # one epoch of each part
    assert len(DECODED) <= NUM + 2, len(DECODED)


def test_resume_through_orbax_is_exact(corpus, tmp_path):
    c = config(corpus["train"])
    reference, resumed, _ = resume_through_orbax(lambda: pipeline.make_train_iterator(c, corpus["tok"]),
                                                 tmp_path / "ckpt", 2, 3)  # crosses the epoch boundary
    assert_same(reference, resumed)


def test_worker_processes_give_the_same_batches(corpus):
    c0, c1 = config(corpus["train"]), config(corpus["train"], data__num_workers=1)
    assert_same(take(pipeline.make_train_iterator(c0, corpus["tok"]), 2),
                take(pipeline.make_train_iterator(c1, corpus["tok"]), 2))


def test_eval_reads_every_record_once_with_padding(corpus):
    c = config(corpus["heldout"], train__batch_size=4)
    batches = pipeline.make_eval_iterator(c, corpus["tok"])
    seen, padded = [], 0
    for batch in batches:
        for b, id_ in enumerate(batches.last_ids):
            if id_:
                seen.append(id_)
            else:
                padded += 1
                assert not batch["text_mask"][b].any() and not batch["segment_mask"][b].any()
    assert sorted(seen) == sorted(ex.id for ex in read_all(corpus["heldout"]))
    assert padded == 2  # 6 records in batches of 4


def test_mixture_follows_weights_and_resumes(corpus, tmp_path):
    examples = list(corpus["records"].values())
    for name in ("a", "b"):
        for ex in examples:
            ex.id = f"{name}-{ex.id}"
        write_sharded(examples, tmp_path / name, 2)
        for ex in examples:
            ex.id = ex.id[2:]
    c = config(corpus["train"], data__mixture=((str(tmp_path / "a" / "*.array_record"), 3.0, "video"),
                                               (str(tmp_path / "b" / "*.array_record"), 1.0, "caption")))
    make = lambda: pipeline.make_train_iterator(c, corpus["tok"])  # noqa: E731
    ids = [i for _, batch_ids in take(make(), 8) for i in batch_ids]
    share = sum(i.startswith("a-") for i in ids) / len(ids)
    assert abs(share - 0.75) <= 0.05, share
    reference, resumed, _ = resume_through_orbax(make, tmp_path / "ckpt", 3, 3)
    assert_same(reference, resumed)
    bad = config(corpus["train"], data__mixture=(("x", 1.0, "podcast"),))
    with pytest.raises(pipeline.UserError, match=r"config.data.mixture\[0\]: kind"):
        pipeline.make_train_iterator(bad, corpus["tok"])
    # the trainer names the built-in corpus's training split for 'builtin' (configs/demo.py weights its tasks so)
    from data_pipelines.batch.mixture import BUILTIN, with_builtin
    assert with_builtin(((BUILTIN, 3.0, "caption"), ("x", 1.0, "video"), ("builtin",)), "run/train/*") == (
        ("run/train/*", 3.0, "caption"), ("x", 1.0, "video"), ("builtin",))


def test_image_records_train_as_one_frame_videos(corpus, tmp_path):
    from data_pipelines.records.format import VideoExample
    from data_pipelines.records.shards import write_shard
    from data_pipelines.decode.video import decode_frame_jpegs, encode_jpeg

    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[8:40, 16:48] = (220, 40, 40)
    image = VideoExample(id="img-0", frames=[encode_jpeg(rgb)], fps=1.0, captions=["a red square"],
                         turns=[{"role": "user", "text": "colour?"}, {"role": "assistant", "text": "red"}])
    write_shard([image], tmp_path / "images.array_record")
    c = config(corpus["train"], data__mixture=((str(tmp_path / "images.array_record"), 1.0, "image"),),
               train__batch_size=2)
    it = pipeline.make_train_iterator(c, corpus["tok"])
    batch = next(it)
    assert it.last_ids == ["img-0", "img-0"]
    expected = decode_frame_jpegs(image.frames, 1.0, [0.0], c.model.vision.image_size)[0]
    assert expected[16, 16, 0] > 150  # the red square survived decode + resize
    for frame in batch["frames"][0, 0]:
        np.testing.assert_array_equal(frame, expected)
    assert batch["segment_mask"][0].tolist() == [True, False] and not batch["audio_mask"].any()
    tok = corpus["tok"]
    assert tok.decode(batch["targets"][0][batch["loss_mask"][0] > 0]) == "a red square"  # image kind: captions only
    assert pipeline.stats(it)["notes"] == {"one_frame": 2, "no_audio": 2}
