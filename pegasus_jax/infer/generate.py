"""KV-cache generation: prefill the video prefix and prompt once, then one token per step.

Shapes are static within a bucket: prompts are right-padded to a multiple of PROMPT_BUCKET and the
cache is sized for prefix + prompt bucket + max_new_tokens, so neither a new token nor a new prompt
length of the same bucket recompiles. Decoding runs in jitted chunks of CHUNK steps (a `lax.scan`);
between chunks the host checks stop strings and ends early when every row is done. A `constraint`
(infer/grammar.py: a JSON schema or regex) instead steps one token at a time with an allow-bitmask
from the host, computed while the device runs the step (`_constrained`).

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

    @functools.partial(jax.jit, static_argnums=(0, 6, 7), donate_argnums=(2,))
    def _decode_chunk(self, state, cache, logits, position, done, params: SamplingParams, steps: int, key_data):
        def body(carry, key):
            cache, logits, position, done = carry
            token = sample(logits, key, params)
            token = jnp.where(done, self.pad_id, token)
            new_logits, cache = self._step(state, cache, token, position)
            finished = done | jnp.isin(token, self.stop_ids)
            return (cache, new_logits, position + 1, finished), (token, done)

        keys = jax.random.split(jax.random.wrap_key_data(key_data), steps)
        (cache, logits, position, done), (tokens, was_done) = jax.lax.scan(body, (cache, logits, position, done), keys)
        return cache, logits, position, done, tokens.T, was_done.T

    @functools.partial(jax.jit, static_argnums=(0, 5))
    def _sample_masked(self, logits, bitmask, key_data, position, params: SamplingParams):
        """Token ids from logits under an int32 bitmask (bit i of word i // 32 allows id i); the next positions."""
        ids = jnp.arange(logits.shape[-1])
        words = bitmask[:, jnp.minimum(ids >> 5, bitmask.shape[1] - 1)]
        allowed = ((words >> (ids & 31)) & 1).astype(bool) & (ids < 32 * bitmask.shape[1])
        # row 0's position counts the steps on the device: a fresh key each step, no host transfer
        key = jax.random.fold_in(jax.random.wrap_key_data(key_data), position[0])
        return sample(logits, key, params, allowed), position + 1

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
                self.state, cache, logits, position, jnp.asarray(finished), rule, CHUNK, key_data)
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
        """One token a step under the constraint's masks. Sampling and the step are dispatched without
        waiting, so the device runs the step while the host reads the sampled ids, feeds them to the
        engine and computes the next mask. Rows the budget cut short are closed by the engine."""
        stop_ids = set(np.asarray(self.stop_ids).tolist())
        key_data = jax.random.key_data(key)
        mask = constraint.masks(finished)
        for _ in range(params.max_new_tokens):
            if finished.all():
                break
            token, next_position = self._sample_masked(logits, jnp.asarray(mask), key_data, position, rule)
            logits, cache = self._step(self.state, cache, token, position)
            position = next_position
            token = np.asarray(token)  # waits for the sampling only: the step runs on
            for i in np.flatnonzero(~finished):
                t = int(token[i])
                if t in stop_ids:  # the engine allows the end id only where the document is complete
                    finished[i] = True
                    continue
                out[i].append(t)
                constraint.consume(i, t)
                finished[i] = constraint.stopped(i)
            mask = constraint.masks(finished)
            yield [list(o) for o in out]
        closed = False
        for i in np.flatnonzero(~finished):
            tail = constraint.close(i)
            out[i].extend(tail)
            closed |= bool(tail)
        if closed:
            yield [list(o) for o in out]


def _cut_at_stop(ids: list[int], stops: tuple[str, ...], decode_text) -> list[int]:
    """Shortest prefix of ids whose text contains a stop string, minus the tokens that complete it."""
    for n in range(1, len(ids) + 1):
        if any(s in decode_text(ids[:n]) for s in stops):
            return ids[:n - 1]
    return ids
