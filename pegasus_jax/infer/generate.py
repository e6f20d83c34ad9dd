"""KV-cache generation: prefill the video prefix and prompt once, then one token per step.

Shapes are static within a bucket: prompts are right-padded to a multiple of PROMPT_BUCKET and the
cache is sized for prefix + prompt bucket + max_new_tokens, so neither a new token nor a new prompt
length of the same bucket recompiles. Decoding runs in jitted chunks of CHUNK steps (a `lax.scan`);
between chunks the host checks stop strings and ends early when every row is done. A `constraint`
(infer/grammar.py: a JSON schema or regex) runs in the same chunks: after each sampled token the
device calls the host's grammar engine (`io_callback`), which consumes the token and returns the next
allow-bitmask, so a constrained token costs what a free one does plus the engine's mask (`_constrained`).
A step per dispatch would cost more than the mask: outside the scan the per-call work that the loop
hoists (e.g. casting fp32 parameters to the compute dtype) is paid for every token.

On a mesh (the model's parameters sharded, `Pegasus.load(mesh=...)`) the same programs run SPMD: the
activations and the KV cache are pinned by the config's axis rules (cache batch over data and fsdp, kv
heads over tensor), the rest follows the parameters' shardings.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import io_callback

from pegasus_jax.infer.sampling import SamplingParams, sample
from pegasus_jax.models.decoder import valid_positions
from pegasus_jax.models.pegasus import Pegasus
from pegasus_jax.sharding import activation_sharding

PROMPT_BUCKET = 32
CHUNK = 8


def _bucket(n: int, size: int) -> int:
    return max(size, -(-n // size) * size)


class Generator:
    """Batched generation with a Pegasus model; `stop_ids` end a row (eos / end-of-turn)."""

    def __init__(self, model: Pegasus, stop_ids: tuple[int, ...], pad_id: int = 0, mesh=None, axis_rules=None):
        """`mesh` and `axis_rules`: pin activations and the KV cache to the mesh the model is on."""
        self.graphdef, self.state = nnx.split(model)
        self.mesh, self.axis_rules = mesh, axis_rules
        self.stop_ids = jnp.asarray(stop_ids, jnp.int32)
        self.pad_id = pad_id
        self.dtype = model.decoder.embed(jnp.zeros((1, 1), jnp.int32)).dtype
        self.width = model.config.decoder.width
        # The grammar engine's callback runs once per step, on the host of the mesh's first device.
        self._callback_sharding = jax.sharding.SingleDeviceSharding(mesh.devices.flat[0]) if mesh is not None else None
        self._engine_run: _EngineRun | None = None

    def _model(self, state) -> Pegasus:
        return nnx.merge(self.graphdef, state)

    def _sharding(self):
        """Context for tracing: `constrain` in the model pins to the mesh (a no-op without one)."""
        return activation_sharding(self.mesh, self.axis_rules) if self.mesh is not None else contextlib.nullcontext()

    # -- jitted pieces ----------------------------------------------------------------------------
    @functools.partial(jax.jit, static_argnums=(0, 6))
    def _prefill(self, state, prefix, prefix_mask, prompt: jax.Array, prompt_mask: jax.Array, cache_len: int):
        with self._sharding():
            return self._prefill_traced(state, prefix, prefix_mask, prompt, prompt_mask, cache_len)

    def _prefill_traced(self, state, prefix, prefix_mask, prompt, prompt_mask, cache_len: int):
        model = self._model(state)
        text = model.decoder.embed(prompt)
        x = jnp.concatenate([prefix.astype(text.dtype), text], axis=1)
        mask = jnp.concatenate([prefix_mask, prompt_mask], axis=1)
        cache = model.decoder.init_cache(prompt.shape[0], cache_len, text.dtype)
        logits, cache = model.decoder(x, valid_positions(mask), mask, cache=cache)
        last = jnp.max(jnp.where(mask, jnp.arange(mask.shape[1]), -1), axis=1)
        next_logits = jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0]
        return next_logits, cache, mask.sum(axis=1).astype(jnp.int32)

    # The KV cache is donated to each decoding call: updated in place, never held twice (callers rebind it).
    @functools.partial(jax.jit, static_argnums=(0,), donate_argnums=(2,))
    def _step(self, state, cache, token, position):
        model = self._model(state)
        x = model.decoder.embed(token[:, None])
        with self._sharding():
            logits, cache = model.decoder(x, position[:, None], jnp.ones_like(token[:, None], bool), cache=cache)
        return logits[:, 0], cache

    @functools.partial(jax.jit, static_argnums=(0, 7, 8), donate_argnums=(2,))
    def _decode_chunk(self, state, cache, logits, position, done, mask, params: SamplingParams, steps: int, key_data):
        """`steps` tokens per row. `mask` None: free decoding, a stop id ends a row. Otherwise the (B, ceil(V/32))
        int32 allow-bitmask (bit i of word i // 32 allows id i) of the first token; after each token the
        host's engine (`_engine_step`) returns the next bitmask and which rows are finished."""
        def body(carry, key):
            cache, logits, position, done, mask = carry
            token = sample(logits, key, params, None if mask is None else _allowed(mask, logits.shape[-1]))
            token = jnp.where(done, self.pad_id, token)
            new_logits, cache = self._step(state, cache, token, position)
            if mask is None:
                finished = done | jnp.isin(token, self.stop_ids)
            else:
                shapes = (jax.ShapeDtypeStruct(mask.shape, jnp.int32), jax.ShapeDtypeStruct(done.shape, jnp.bool_))
                mask, finished = io_callback(self._engine_step, shapes, token, sharding=self._callback_sharding)
            return (cache, new_logits, position + 1, finished, mask), (token, done)

        keys = jax.random.split(jax.random.wrap_key_data(key_data), steps)
        (cache, logits, position, done, _), (tokens, was_done) = jax.lax.scan(
            body, (cache, logits, position, done, mask), keys)
        return cache, logits, position, done, tokens.T, was_done.T

    def _engine_step(self, token):
        """Host side of a constrained step (an io_callback): feed each live row's token to the engine."""
        run = self._engine_run
        run.steps += 1
        for i in np.flatnonzero(~run.finished) if run.steps <= run.budget else ():  # past it: padding steps
            t = int(token[i])
            if t in run.stop_ids:  # the engine allows the end id only where the document is complete
                run.finished[i] = True
                continue
            run.out[i].append(t)
            run.constraint.consume(i, t)
            run.finished[i] = run.constraint.stopped(i)
        if run.steps >= run.budget:  # rows still open are closed by the engine after the chunk
            return np.full_like(run.constraint.bitmask, -1), np.ones_like(run.finished)
        run.next_mask = np.array(run.constraint.masks(run.finished))
        return run.next_mask, run.finished.copy()

    # -- public API -------------------------------------------------------------------------------
    def generate_ids(self, prompts: list[list[int]], prefix: tuple[jax.Array, jax.Array] | None,
                     params: SamplingParams, decode_text: Callable[[list[int]], str] | None = None,
                     constraint=None) -> list[list[int]]:
        """Token ids generated for each prompt (stop token excluded, stop strings cut).

        `prefix` is the (B, P, W) video-token embeddings and (B, P) mask from `Pegasus.prefix` (or the
        streaming encoder), or None for text-only prompts.
        """
        result = []
        for result in self.stream_ids(prompts, prefix, params, decode_text, constraint):
            pass
        return result

    def stream_ids(self, prompts, prefix, params: SamplingParams, decode_text=None,
                   constraint=None) -> Iterator[list[list[int]]]:
        """Yields each row's ids so far after every chunk; the last yield is the final, stop-cut result."""
        b = len(prompts)
        width = _bucket(max(len(p) for p in prompts), PROMPT_BUCKET)
        prompt = np.full((b, width), self.pad_id, np.int32)
        prompt_mask = np.zeros((b, width), bool)
        for i, p in enumerate(prompts):
            prompt[i, :len(p)], prompt_mask[i, :len(p)] = p, True
        if prefix is None:
            prefix = (jnp.zeros((b, 0, self.width), self.dtype), jnp.zeros((b, 0), bool))
        max_new = _bucket(params.max_new_tokens, CHUNK)
        cache_len = prefix[0].shape[1] + width + max_new
        logits, cache, position = self._prefill(self.state, prefix[0], prefix[1], jnp.asarray(prompt),
                                                jnp.asarray(prompt_mask), cache_len)
        done = jnp.zeros((b,), bool)
        out: list[list[int]] = [[] for _ in range(b)]
        key = jax.random.key(params.seed)
        # The compiled chunk sees only the sampling rule: seed, length and stop strings stay on the host,
        # so a new seed or max_new_tokens within the bucket reuses the compiled loop instead of recompiling.
        rule = SamplingParams(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
        finished = np.zeros(b, bool)
        if constraint is not None:
            yield from self._constrained(cache, logits, position, params, rule, key, constraint, finished, out)
            return
        produced = 0
        stop_ids = set(np.asarray(self.stop_ids).tolist())
        while produced < params.max_new_tokens and not finished.all():
            key_data = jax.random.key_data(jax.random.fold_in(key, produced))
            cache, logits, position, done, tokens, was_done = self._decode_chunk(
                self.state, cache, logits, position, jnp.asarray(finished), None, rule, CHUNK, key_data)
            tokens, was_done = np.asarray(tokens), np.asarray(was_done)
            produced += CHUNK
            for i in range(b):
                for t in (int(t) for t, d in zip(tokens[i], was_done[i]) if not d):
                    if finished[i]:
                        break
                    if t in stop_ids:
                        finished[i] = True
                        break
                    out[i].append(t)
                if params.stop and decode_text is not None and not finished[i]:
                    text = decode_text(out[i])
                    if any(s in text for s in params.stop):
                        finished[i] = True
            if produced >= params.max_new_tokens:
                out = [o[:params.max_new_tokens] for o in out]
            yield [list(o) for o in out]
        if params.stop and decode_text is not None:
            yield [_cut_at_stop(o, params.stop, decode_text) for o in out]

    def _constrained(self, cache, logits, position, params, rule, key, constraint, finished, out):
        """CHUNK tokens per call under the constraint's masks (`_engine_step` fills `out` as they come);
        rows the budget cut short are closed by the engine."""
        run = _EngineRun(constraint, finished, out, set(np.asarray(self.stop_ids).tolist()), params.max_new_tokens)
        produced = 0
        while produced < params.max_new_tokens and not finished.all():
            key_data = jax.random.key_data(jax.random.fold_in(key, produced))
            # Set for each chunk, which runs to completion here: streams of one Generator may interleave.
            self._engine_run = run
            try:
                cache, logits, position, done, _, _ = self._decode_chunk(self.state, cache, logits, position,
                                                                         jnp.asarray(finished), jnp.asarray(run.next_mask),
                                                                         rule, CHUNK, key_data)
                jax.block_until_ready(done)  # the callbacks of this chunk have run
            finally:
                self._engine_run = None
            produced += CHUNK
            yield [list(o) for o in out]
        closed = False
        for i in np.flatnonzero(~finished):
            tail = constraint.close(i)
            out[i].extend(tail)
            closed |= bool(tail)
        if closed:
            yield [list(o) for o in out]


class _EngineRun:
    """One constrained generation's host state, read and updated by `Generator._engine_step`."""

    def __init__(self, constraint, finished: np.ndarray, out: list[list[int]], stop_ids: set[int], budget: int):
        self.constraint, self.finished, self.out, self.stop_ids, self.budget = constraint, finished, out, stop_ids, budget
        self.steps = 0
        self.next_mask = np.array(constraint.masks(finished))  # the next token's, updated by each step


def _allowed(bitmask, size: int):
    """(B, size) bool from an int32 bitmask (bit i of word i // 32 allows id i)."""
    ids = jnp.arange(size)
    words = bitmask[:, jnp.minimum(ids >> 5, bitmask.shape[1] - 1)]
    return ((words >> (ids & 31)) & 1).astype(bool) & (ids < 32 * bitmask.shape[1])


def _cut_at_stop(ids: list[int], stops: tuple[str, ...], decode_text) -> list[int]:
    """Shortest prefix of ids whose text contains a stop string, minus the tokens that complete it."""
    for n in range(1, len(ids) + 1):
        if any(s in decode_text(ids[:n]) for s in stops):
            return ids[:n - 1]
    return ids
