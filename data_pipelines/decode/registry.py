"""The decoder registry: `data.decoder` names -> functions, and what a decoder's exception means.

A decoder is `fn(example, MediaParams) -> (arrays, notes)`. What it raises decides the record's fate:
- media and format errors are bad records (skipped, counted, logged with the id): DecodeError (its
  kind), a PyAV/FFmpeg error (av.error.FFmpegError, kind "decoder_error"), a RecordError
  ("corrupt_record");
- anything else (TypeError, AttributeError, KeyError, ... from our code) is a bug: it propagates
  with its traceback and stops the run. It is never counted, so a broken decode path cannot drop a
  corpus quietly. Across the isolation boundary it arrives as DecoderBug (decode/isolation.py).
"""
from __future__ import annotations

import importlib

from data_pipelines.decode.video import DecodeError
from data_pipelines.errors import UserError
from data_pipelines.records.format import RecordError

DECODERS = {"pyav": "data_pipelines.decode.media:decode_media"}


class BadRecord(Exception):
    """A record that cannot be used (media or format error); `kind` is what the log counts."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


class DecoderBug(RuntimeError):
    """A programming error raised by a decoder in the isolated helper process, re-raised in the pipeline
    with the helper's traceback in the message; stops the run, never counted as a bad record."""


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


def _is_media_error(e: Exception) -> bool:
    import av  # already imported by any decoder that reached PyAV

    return isinstance(e, av.error.FFmpegError)


def call_decoder(decoder, ex, params):
    """decoder(ex, params); media and format errors become BadRecord, anything else propagates."""
    try:
        return decoder(ex, params)
    except DecodeError as e:
        raise BadRecord(e.kind, str(e)) from None
    except RecordError as e:
        raise BadRecord("corrupt_record", str(e)) from None
    except Exception as e:
        if _is_media_error(e):
            raise BadRecord("decoder_error", f"{type(e).__name__}: {e}") from None
        raise
