"""Read (and write) our record bytes inside a tf.train.Example without TensorFlow.

The TFDS builders store each serialized VideoExample in a single bytes feature named "record"; TFDS
writes every example as a tf.train.Example proto. This module speaks just enough protobuf wire
format to get those bytes back, so Grain and `records.format.deserialize` read TFDS shards like ours:

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }   // map entry: key = 1, value = 2
    Feature   { BytesList bytes_list = 1; ... }
    BytesList { repeated bytes value = 1; }
"""
from __future__ import annotations

RECORD_FEATURE = "record"
_LEN = 2  # wire type of length-delimited fields


class TFExampleError(ValueError):
    """Bytes that are not a tf.train.Example holding our record (records.format turns it into a RecordError)."""


class _WireError(ValueError):
    pass


def is_tf_example(data: bytes) -> bool:
    """A tf.train.Example starts with field 1, length-delimited (0x0a); a msgpack record with a map."""
    return len(data) > 0 and data[0] == 0x0A


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes):
    """(field number, wire type, value) of each top-level field; value is bytes for LEN fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _LEN:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise _WireError("truncated field")
            yield number, wire, data[pos:pos + size]
            pos += size
        elif wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            yield number, wire, None
        else:
            raise _WireError(f"unsupported wire type {wire}")


def _field(data: bytes, number: int) -> list[bytes]:
    return [v for n, w, v in _fields(data) if n == number and w == _LEN]


def unwrap_record(data: bytes, name: str = RECORD_FEATURE) -> bytes:
    """The first bytes value of feature `name`; TFExampleError when absent or malformed."""
    try:
        for features in _field(data, 1):
            for entry in _field(features, 1):
                key = _field(entry, 1)
                if key and key[0].decode("utf-8", "replace") == name:
                    for feature in _field(entry, 2):
                        for bytes_list in _field(feature, 1):
                            values = _field(bytes_list, 1)
                            if values:
                                return values[0]
    except _WireError as e:
        raise TFExampleError(f"corrupt tf.train.Example: {e}") from None
    raise TFExampleError(f"tf.train.Example has no bytes feature {name!r}")


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def wrap_record(record: bytes, name: str = RECORD_FEATURE) -> bytes:
    """The tf.train.Example bytes TFDS writes for {name: record} (tests check unwrapping with it)."""
    feature = _len_field(1, _len_field(1, record))  # Feature.bytes_list.value[0]
    entry = _len_field(1, name.encode()) + _len_field(2, feature)
    return _len_field(1, _len_field(1, entry))
