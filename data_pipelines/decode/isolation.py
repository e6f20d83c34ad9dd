"""Decoding isolated in helper processes: one per reading thread, killed on a timeout, restarted on a crash.

Isolation (data.isolate_decode): each decoding thread owns one helper process
(`python -c "...serve()"`) and talks to it over pipes in length-prefixed msgpack (no pickle). A
helper that does not answer within data.decode_timeout_s is killed (kind "timeout"); one that dies
(segfault, abort) gives kind "crash". Either way a new helper starts on the next call. Without
isolation the decoder runs in the calling process: no timeout, and a crash takes the process down.

A decoder's programming error (not a media or format error; see decode/registry.py) is answered with
its type and traceback and re-raised here as DecoderBug: it stops the run, it is not counted. An
unknown decoder name is answered as a user error and re-raised as UserError.
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import select
import struct
import subprocess
import sys
import threading
import time
import traceback
import weakref

import msgpack
import numpy as np

from data_pipelines.decode.media import MediaParams
from data_pipelines.decode.registry import BadRecord, DecoderBug, call_decoder, resolve_decoder
from data_pipelines.errors import UserError
from data_pipelines.records.format import deserialize

HELPER_START_TIMEOUT_S = 120.0


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
    import av  # noqa: F401  (data_pipelines.decode.video imports it lazily, on the first record)

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a chatty decoder must not corrupt the channel
    decoders = {}
    try:
        decoders[decoder] = resolve_decoder(decoder)
    except UserError:
        pass  # answered per request below, as a user error with the message
    _write_msg(out, "ready")
    while True:
        request = _read_msg(sys.stdin.fileno(), None)
        if request is None:
            return
        try:
            name = request["decoder"]
            if name not in decoders:
                decoders[name] = resolve_decoder(name)
            arrays, notes = call_decoder(decoders[name], deserialize(request["record"]),
                                         MediaParams(**request["params"]))
            _write_msg(out, {"ok": True, "arrays": _pack_arrays(arrays), "notes": notes})
        except BadRecord as e:
            _write_msg(out, {"ok": False, "kind": e.kind, "message": e.message})
        except UserError as e:  # an unknown decoder name
            _write_msg(out, {"ok": False, "user_error": str(e)})
        except Exception as e:  # a bug: the parent stops the run with this traceback
            _write_msg(out, {"ok": False, "bug": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})


class _Helper:
    """One helper process; restarted by the caller after a timeout or crash."""

    def __init__(self, decoder: str):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from data_pipelines.decode.isolation import serve; serve(sys.argv[1])",
             decoder],
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
    """decode(record bytes, example, MediaParams) -> (arrays, notes); raises BadRecord for bad input,
    the decoder's own exception (in process) or DecoderBug (isolated) for a bug."""

    def __init__(self, decoder: str, isolate: bool, timeout_s: float):
        self.decoder, self.isolate, self.timeout_s = decoder, isolate, timeout_s
        if not isolate:
            resolve_decoder(decoder)  # fail at start-up, not on the first record

    def __call__(self, record: bytes, ex, params):
        if not self.isolate:
            return call_decoder(resolve_decoder(self.decoder), ex, params)
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
            if "bug" in reply:
                raise DecoderBug(f"data.decoder={self.decoder!r} raised {reply['bug']} on record {ex.id!r} "
                                 f"(a bug, not a bad record); traceback in the decode helper process:\n"
                                 f"{reply['traceback']}")
            if "user_error" in reply:
                raise UserError(reply["user_error"])
            raise BadRecord(reply["kind"], reply["message"])
        return _unpack_arrays(reply["arrays"]), list(reply["notes"])

    @staticmethod
    def _drop(helper: _Helper) -> None:
        helper.kill()
        _helpers.helper = None
        _all_helpers.discard(helper)
