"""Bad input: decoders by name, decoding isolated in a helper process, and the skip/count/abort log.

Kinds of bad records (skipped, counted, logged with the id): the DecodeError kinds of video.py
(empty, truncated, undecodable, no_video = audio-only, too_large, no_frames), corrupt_record,
bad_text (non-UTF-8), no_text (nothing to train on), timeout and crash (isolated decoding only),
decoder_error (any other exception from a decoder). Notes (kept, counted): no_audio (video-only),
bad_audio, one_frame.

Isolation (data.isolate_decode): each decoding thread owns one helper process
(`python -c "...serve()"`) and talks to it over pipes in length-prefixed msgpack (no pickle). A
helper that does not answer within data.decode_timeout_s is killed (kind "timeout"); one that dies
(segfault, abort) gives kind "crash". Either way a new helper starts on the next call. Without
isolation the decoder runs in the calling process: no timeout, and a crash takes the process down.

Counting happens in ONE place, `BadRecordLog`, driven by the batcher in the main process after
Grain's worker processes, so counts are exact whatever the worker count; they are per JAX process
and are part of the iterator's checkpointed state.
"""
from __future__ import annotations

import atexit
import importlib
import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time
import weakref

import msgpack
import numpy as np

from pegasus_jax.errors import UserError

log = logging.getLogger("pegasus_jax.data")

DECODERS = {"pyav": "data_pipelines.example_transform:decode_media"}
RATIO_WARMUP = 16  # the guard looks at the ratio only after this many records, so one early bad one cannot abort
LAST_BAD = 5
HELPER_START_TIMEOUT_S = 120.0


class BadRecord(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


def register_decoder(name: str, target: str) -> None:
    """Make `data.decoder = name` mean the function at "module:attribute" (importable in helpers too)."""
    DECODERS[name] = target


def resolve_decoder(name: str):
    target = DECODERS.get(name, name)
    if ":" not in target:
        raise UserError(f"config.data.decoder={name!r}: not one of {sorted(DECODERS)} and not 'module:function'")
    module, attr = target.split(":", 1)
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"config.data.decoder={name!r}: cannot import {target} ({e})") from None


def _call(decoder, ex, params):
    from data_pipelines.video import DecodeError

    try:
        return decoder(ex, params)
    except DecodeError as e:
        raise BadRecord(e.kind, str(e)) from None
    except Exception as e:  # a decoder bug or an exotic file must not stop training; it is logged with the id
        raise BadRecord("decoder_error", f"{type(e).__name__}: {e}") from None


# ---- wire format between the pipeline and a helper ---------------------------------------------

def _pack_arrays(arrays: dict[str, np.ndarray]) -> dict:
    return {k: [str(v.dtype), list(v.shape), np.ascontiguousarray(v).tobytes()] for k, v in arrays.items()}


def _unpack_arrays(packed: dict) -> dict[str, np.ndarray]:
    return {k: np.frombuffer(data, dtype).reshape(shape).copy() for k, (dtype, shape, data) in packed.items()}


def _write_msg(stream, obj) -> None:
    body = msgpack.packb(obj, use_bin_type=True)
    stream.write(struct.pack("<Q", len(body)) + body)
    stream.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes from fd, None on EOF; TimeoutError past the deadline."""
    chunks, got = [], 0
    while got < n:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not select.select([fd], [], [], wait)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_msg(fd: int, deadline: float | None):
    head = _read_exact(fd, 8, deadline)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack("<Q", head)[0], deadline)
    return None if body is None else msgpack.unpackb(body, raw=False)


def serve(decoder: str) -> None:
    """Helper process main loop: requests on stdin, answers on stdout, until stdin closes.

    The decoder and the media libraries are imported before "ready": a cold import can take seconds
    on a loaded host and must count against the start-up allowance, not against the first record's
    data.decode_timeout_s (which would skip a good record as "timeout")."""
    import av  # noqa: F401  (data_pipelines.video imports it lazily, on the first record)

    from data_pipelines.example_transform import MediaParams
    from data_pipelines.records import deserialize

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a chatty decoder must not corrupt the channel
    decoders = {}
    try:
        decoders[decoder] = resolve_decoder(decoder)
    except UserError:
        pass  # answered per request below, as "decoder_error" with the message
    _write_msg(out, "ready")
    while True:
        request = _read_msg(sys.stdin.fileno(), None)
        if request is None:
            return
        try:
            name = request["decoder"]
            if name not in decoders:
                decoders[name] = resolve_decoder(name)
            arrays, notes = _call(decoders[name], deserialize(request["record"]), MediaParams(**request["params"]))
            _write_msg(out, {"ok": True, "arrays": _pack_arrays(arrays), "notes": notes})
        except Exception as e:  # BadRecord, or a UserError for an unknown decoder name
            kind = e.kind if isinstance(e, BadRecord) else "decoder_error"
            _write_msg(out, {"ok": False, "kind": kind, "message": str(e)})


class _Helper:
    """One helper process; restarted by the caller after a timeout or crash."""

    def __init__(self, decoder: str):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from data_pipelines.bad_input import serve; serve(sys.argv[1])", decoder],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            ready = _read_msg(self.proc.stdout.fileno(), time.monotonic() + HELPER_START_TIMEOUT_S)
        except TimeoutError:
            ready = None
        if ready != "ready":
            self.kill()
            raise RuntimeError("the decode helper process did not start")

    def request(self, decoder: str, record: bytes, params: dict, timeout: float):
        _write_msg(self.proc.stdin, {"decoder": decoder, "record": record, "params": params})
        return _read_msg(self.proc.stdout.fileno(), time.monotonic() + timeout)

    def __del__(self):  # the owning reader thread ended (its iterator closed): the helper goes with it
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


_helpers = threading.local()  # one helper per reading thread, dropped with the thread
_all_helpers: "weakref.WeakSet[_Helper]" = weakref.WeakSet()


@atexit.register
def _stop_helpers() -> None:
    for helper in list(_all_helpers):
        helper.kill()


class DecoderCall:
    """decode(record bytes, example, MediaParams) -> (arrays, notes); raises BadRecord."""

    def __init__(self, decoder: str, isolate: bool, timeout_s: float):
        self.decoder, self.isolate, self.timeout_s = decoder, isolate, timeout_s
        if not isolate:
            resolve_decoder(decoder)  # fail at start-up, not on the first record

    def __call__(self, record: bytes, ex, params):
        import dataclasses

        if not self.isolate:
            return _call(resolve_decoder(self.decoder), ex, params)
        helper = getattr(_helpers, "helper", None)
        if helper is None:
            helper = _helpers.helper = _Helper(self.decoder)
            _all_helpers.add(helper)
        try:
            reply = helper.request(self.decoder, record, dataclasses.asdict(params), self.timeout_s)
        except TimeoutError:
            self._drop(helper)
            raise BadRecord("timeout", f"decoding took longer than data.decode_timeout_s={self.timeout_s}") from None
        except (BrokenPipeError, OSError):
            reply = None
        if reply is None:
            code = helper.proc.wait()
            self._drop(helper)
            raise BadRecord("crash", f"decoder process died (exit status {code})")
        if not reply["ok"]:
            raise BadRecord(reply["kind"], reply["message"])
        return _unpack_arrays(reply["arrays"]), list(reply["notes"])

    @staticmethod
    def _drop(helper: _Helper) -> None:
        helper.kill()
        _helpers.helper = None
        _all_helpers.discard(helper)


# ---- counting, logging, the ratio guard ----------------------------------------------------------

class BadRecordLog:
    """Counts every record the batcher sees; skips and logs bad ones; aborts past max_bad_ratio."""

    def __init__(self, max_ratio: float):
        self.max_ratio = max_ratio
        self.seen = 0
        self.bad: dict[str, int] = {}
        self.notes: dict[str, int] = {}
        self.last_bad: list[str] = []

    def admit(self, element: dict) -> bool:
        """True for a good example (to batch), False for a bad one (skipped, counted, logged)."""
        self.seen += 1
        kind = element.get("_bad")
        if kind is None:
            for note in element.get("_notes", ()):
                self.notes[note] = self.notes.get(note, 0) + 1
                log.info("kept record %s with note %s", element["_id"], note)
            return True
        self.bad[kind] = self.bad.get(kind, 0) + 1
        self.last_bad = (self.last_bad + [f"{element['_id']} ({kind})"])[-LAST_BAD:]
        log.warning("skipped bad record %s: %s", element["_id"], element.get("_why", kind))
        self._check_ratio()
        return False

    def _check_ratio(self) -> None:
        total = sum(self.bad.values())
        if self.seen >= RATIO_WARMUP and total > self.max_ratio * self.seen:
            raise UserError(f"{total} of {self.seen} records were bad ({total / self.seen:.2f} > "
                            f"config.data.max_bad_ratio={self.max_ratio}); last bad: {', '.join(self.last_bad)}")

    def stats(self) -> dict:
        return {"bad_records": dict(self.bad), "notes": dict(self.notes), "seen": self.seen,
                "bad_total": sum(self.bad.values())}

    def get_state(self) -> dict:
        return {"seen": self.seen, "bad": dict(self.bad), "notes": dict(self.notes), "last_bad": list(self.last_bad)}

    def set_state(self, state: dict) -> None:
        self.seen = int(state["seen"])
        self.bad = {k: int(v) for k, v in state["bad"].items()}
        self.notes = {k: int(v) for k, v in state["notes"].items()}
        self.last_bad = list(state["last_bad"])
