"""Record format: round trip of every field, non-UTF-8 text surfaced, corrupt input rejected, shards."""
import msgpack
import pytest

from data_pipelines.records import format as record_format
from data_pipelines.records import shards as records
from data_pipelines.records.format import RecordError, VideoExample, deserialize, invalid_text_fields, serialize
from data_pipelines.records.tf_example import wrap_record
from pegasus_jax.errors import UserError


def full_example(**changes) -> VideoExample:
    fields = dict(
        id="clip-7", video=b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)), frames=[b"\xff\xd8jpeg1", b"\xff\xd8jpeg2"],
        fps=29.97, duration=12.5, audio=b"ID3audio", captions=["a dog runs", "ein Hund läuft 🐕"],
        turns=[{"role": "user", "text": "what runs?"}, {"role": "assistant", "text": "a dog"}],
        transcript=[{"start": 0.5, "end": 1.25, "text": "hello"}],
        segments=[{"start": 0.0, "end": 6.0, "text": "intro"}, {"start": 6.0, "end": 12.5, "text": "the run"}],
        metadata={"source": "unit", "split": "train", "attributes": {"colour": "red"}, "n": [1, 2.5, None]},
    )
    fields.update(changes)
    return VideoExample(**fields)


def test_round_trip_every_field():
    ex = full_example()
    back = deserialize(serialize(ex))
    assert back == ex
    assert invalid_text_fields(back) == []
    assert msgpack.unpackb(serialize(ex))["v"] == record_format.FORMAT_VERSION


def test_optional_fields_default_and_int_times_become_floats():
    back = deserialize(serialize(VideoExample(id="x", segments=[{"start": 1, "end": 2, "text": "s"}])))
    assert back.video is None and back.frames is None and back.audio is None and back.captions == []
    assert back.segments == [{"start": 1.0, "end": 2.0, "text": "s"}] and isinstance(back.segments[0]["start"], float)


def test_non_utf8_text_is_kept_as_bytes_and_named():
    raw = b"caf\xe9 \xff"  # Latin-1 bytes: not UTF-8
    surrogate = raw.decode("utf-8", "surrogateescape")  # how converters read files
    ex = full_example(captions=["fine", raw], turns=[{"role": "user", "text": surrogate}, {"role": "assistant", "text": "ok"}],
                      segments=[{"start": 0, "end": 1, "text": raw}])
    back = deserialize(serialize(ex))
    assert back.captions == ["fine", raw]
    assert back.turns[0]["text"] == raw
    assert invalid_text_fields(back) == ["captions[1]", "turns[0].text", "segments[0].text"]


def test_valid_utf8_bytes_become_str():
    back = deserialize(serialize(full_example(captions=["x".encode(), "é".encode()])))
    assert back.captions == ["x", "é"] and invalid_text_fields(back) == []


def test_foreign_invalid_utf8_in_msgpack_str_is_surfaced():
    packed = msgpack.packb({"v": 1, "id": "f", "captions": ["ok"]}, use_bin_type=True)
    bad = packed.replace(b"\xa2ok", b"\xa2\xff\xfe")  # a str header with non-UTF-8 payload
    back = deserialize(bad)
    assert back.captions == [b"\xff\xfe"] and invalid_text_fields(back) == ["captions[0]"]


@pytest.mark.parametrize("data", [
    b"", b"\x00garbage", b"\xde\x00\x05", serialize(full_example())[:-10], msgpack.packb([1, 2]),
    msgpack.packb({"v": 1}), msgpack.packb({"v": 1, "id": "a", "captions": "not a list"}),
    msgpack.packb({"v": 1, "id": "a", "turns": [{"role": "user"}]}),
    msgpack.packb({"v": 1, "id": "a", "video": "text not bytes"}),
])
def test_corrupt_records_raise_record_error(data):
    with pytest.raises(RecordError):
        deserialize(data)


def test_unknown_version_is_rejected():
    with pytest.raises(RecordError, match="version 2"):
        deserialize(msgpack.packb({"v": 2, "id": "a"}))


def test_tf_example_wrapper_is_unwrapped():
    ex = full_example()
    assert deserialize(wrap_record(serialize(ex))) == ex
    with pytest.raises(RecordError):
        deserialize(wrap_record(serialize(ex), name="other"))


def test_shards_write_list_read(tmp_path):
    examples = [full_example(id=f"ex-{i}", duration=float(i)) for i in range(7)]
    paths = records.write_sharded(examples, tmp_path / "out", num_shards=3, prefix="unit")
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"unit-{i:05d}-of-00003.array_record" for i in range(3)]
    assert records.list_shards(str(tmp_path / "out")) == paths
    assert records.list_shards(str(tmp_path / "out" / "unit-*.array_record")) == paths
    assert records.list_shards(f"{paths[2]},{paths[0]}") == [paths[2], paths[0]]
    assert records.count_records(str(tmp_path / "out")) == 7
    back = sorted(records.read_all(str(tmp_path / "out")), key=lambda e: e.id)
    assert back == examples
    assert records.write_shard(examples[:2], tmp_path / "one.array_record") == 2


def test_list_shards_nothing_is_user_error(tmp_path):
    with pytest.raises(UserError, match="no record shards"):
        records.list_shards(str(tmp_path / "missing-*.array_record"))
    with pytest.raises(UserError):
        records.list_shards(str(tmp_path))
