"""The Python API over a trained checkpoint:

    from pegasus_jax import Pegasus
    m = Pegasus.load("runs/demo")
    m.gist("clip.mp4")                      # {"id", "title", "topics", "hashtags"}
    m.summarize("clip.mp4", "chapter")      # {"id", "chapters": [...]}
    m.generate("clip.mp4", "What colour is the shape?")
    m.generate("clip.mp4", "Name the shape.", schema={...})   # or regex="..."; m.stream(...) alike
    m.gist("clip.mp4", transcript="clip.srt")   # speech: .srt/.vtt/.json file or [{"start", "end", "text"}]
    Pegasus.load("runs/pod", mesh="fsdp=4,tensor=2", dtype="bf16")   # sharded over this host's devices
    m.set_lora_alpha(4.0); m.set_num_segments(6)   # PLLaVA's controls: LoRA blend, segment windows

Every task goes through the same path: the video streams through the segment encoder into pooled
tokens, the task's prompt (pegasus_jax/prompts.py, shared with training) follows, and the KV-cache
generator decodes, constrained by the task's JSON schema where the answer is structured (a user's
schema or regex goes through the same grammar engine, infer/grammar.py).
"""
from __future__ import annotations

import json
import os
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from data_pipelines.text import prompts
from data_pipelines.text.transcript_files import check_against_duration, check_items, read_transcript
from pegasus_jax.infer import grammar, schemas
from pegasus_jax.infer.generate import Generator
from pegasus_jax.infer.sampling import SamplingParams
from pegasus_jax.infer.video_input import (SegmentEncoder, VideoPrefix, check_num_segments, check_video,
                                           require_transcript_stream)
from pegasus_jax.models.lora import check_lora_alpha, set_lora_alpha

SUMMARY_TYPES = ("summary", "chapter", "highlight")
Transcript = str | list[dict] | None  # a .srt/.vtt/.json file or the timed items themselves


class Pegasus:
    def __init__(self, model, config, tokenizer):
        self.model, self.config, self.tokenizer = model, config, tokenizer
        self.encoder = SegmentEncoder(model, config, tokenizer=tokenizer)
        self.generator = self._generator()
        self._vocabulary = None  # the grammar engine's, built on the first constrained call

    def _generator(self) -> Generator:
        # the mesh the model was loaded onto (a model built in place has single-device arrays)
        mesh = getattr(jax.tree.leaves(nnx.state(self.model, nnx.Param))[0].sharding, "mesh", None)
        return Generator(self.model, stop_ids=(self.tokenizer.eot_id, self.tokenizer.eos_id),
                         pad_id=self.tokenizer.pad_id, mesh=mesh if mesh is not None and mesh.size > 1 else None,
                         axis_rules=self.config.mesh.axis_rules)

    @classmethod
    def load(cls, checkpoint: str, *, mesh=None, dtype: str | None = None) -> "Pegasus":
        """`mesh`: 'fsdp=4,tensor=2' (or a dict of axis sizes) over this process's devices, parameters
        restored straight into their shards; `dtype`: 'bf16' or 'fp32' (default: the checkpoint's)."""
        from pegasus_jax.flax_settings import configure
        from pegasus_jax.infer.checkpoint_loader import load

        configure()  # the Python API is an entry point too
        model, config, tokenizer, _ = load(checkpoint, mesh=mesh, dtype=dtype)
        return cls(model, config, tokenizer)

    # -- PLLaVA's inference controls ------------------------------------------------------------
    def set_lora_alpha(self, alpha: float) -> None:
        """Scale the LoRA deltas by alpha / rank from now on, without re-exporting; 0 is the base model
        exactly (the delta is skipped). The generator's programs retrace: alpha is part of the graph."""
        check_lora_alpha(self.config, alpha)
        set_lora_alpha(self.model, alpha)
        self.generator = self._generator()

    def set_num_segments(self, num_segments: int) -> None:
        """Cut every video into `num_segments` segment windows (PLLaVA's frame-count control) instead of
        the data.max_segments training used, pooled to fit the visual-token budget at that count."""
        check_num_segments(self.config, num_segments)
        config = self.config.copy_and_resolve_references()
        config.data.max_segments = num_segments
        self.config = config
        self.encoder = SegmentEncoder(self.model, config, tokenizer=self.tokenizer)

    # -- building blocks --------------------------------------------------------------------------
    def encode_video(self, video_path: str, transcript: Transcript = None) -> VideoPrefix:
        return self.encoder.encode_file(video_path, self.timed_transcript(transcript, video_path))

    def timed_transcript(self, transcript: Transcript, video_path: str) -> list[dict] | None:
        """`transcript` (a .srt/.vtt/.json path or a list of {start, end, text}) as a checked list: UserError for
        a bad file, a cue past the video's end, or a model without a transcript stream."""
        if transcript is None:
            return None
        name = transcript if isinstance(transcript, str) else "transcript"
        items = read_transcript(transcript) if isinstance(transcript, str) else check_items(transcript, name)
        require_transcript_stream(self.config, items)
        check_against_duration(items, check_video(video_path).duration, name)
        return items

    def _prompt(self, prompt: str) -> list[int]:
        from data_pipelines.text.chat import prompt_ids

        return prompt_ids(self.tokenizer, prompt)

    def _constraint(self, schema: dict | None, regex: str | None, rows: int, stop) -> grammar.GrammarConstraint | None:
        """The grammar for `schema` or `regex` (checked first: UserError names what is wrong), or None."""
        rule = grammar.request_grammar(schema, regex, stop)
        if rule is None:
            return None
        if self._vocabulary is None:
            self._vocabulary = grammar.Vocabulary(self.tokenizer, self.tokenizer.eot_id,
                                                  self.config.model.decoder.vocab_size)
        return grammar.GrammarConstraint(self._vocabulary, rule, rows)

    def _text(self, ids: list[int], constraint) -> str:
        return constraint.text(ids) if constraint is not None else self.tokenizer.decode(ids)

    # -- generation -------------------------------------------------------------------------------
    def generate(self, video_path: str, prompt: str, *, schema: dict | None = None, regex: str | None = None,
                 transcript: Transcript = None, **sampling) -> str:
        """The answer; with `schema` a JSON document that validates, with `regex` text that fully matches it;
        `transcript`: the video's timed speech (file or list), in the transcript stream as training puts it."""
        return self.generate_batch([(video_path, prompt)], schema=schema, regex=regex, transcripts=[transcript],
                                   **sampling)[0]

    def generate_batch(self, items: list[tuple[str, str]], *, schema: dict | None = None, regex: str | None = None,
                       transcripts: list[Transcript] | None = None, **sampling) -> list[str]:
        """One answer per (video, prompt) (and per transcript in `transcripts`, None for none); the videos are
        encoded one by one and decoded as a batch."""
        params = SamplingParams(**{"max_new_tokens": 96, **sampling})
        constraint = self._constraint(schema, regex, len(items), params.stop)
        transcripts = transcripts or [None] * len(items)
        if len(transcripts) != len(items):
            raise ValueError(f"{len(transcripts)} transcripts for {len(items)} items: give one per item (None for none)")
        prefixes = [self.encode_video(path, transcript) for (path, _), transcript in zip(items, transcripts)]
        prefix = _stack_prefixes(prefixes)
        ids = [self._prompt(p) for _, p in items]
        out = self.generator.generate_ids(ids, prefix, params, self.tokenizer.decode, constraint)
        return [self._text(o, constraint) for o in out]

    def stream(self, video_path: str, prompt: str, *, schema: dict | None = None, regex: str | None = None,
               transcript: Transcript = None, **sampling) -> Iterator[str]:
        """Text pieces as they are generated (the decoded text grows monotonically); the pieces of a
        constrained answer join into the same document `generate` returns."""
        params = SamplingParams(**{"max_new_tokens": 96, **sampling})
        constraint = self._constraint(schema, regex, 1, params.stop)
        prefix = self.encode_video(video_path, transcript)
        sent = ""
        for ids in self.generator.stream_ids([self._prompt(prompt)], (prefix.embeddings, prefix.mask), params,
                                             self.tokenizer.decode, constraint):
            text = self._text(ids[0], constraint)
            if text.startswith(sent) and len(text) > len(sent):
                yield text[len(sent):]
                sent = text

    # -- tasks ------------------------------------------------------------------------------------
    def gist(self, video_path: str, transcript: Transcript = None, **sampling) -> dict:
        return self.gist_batch([video_path], [transcript], **sampling)[0]

    def gist_batch(self, video_paths: list[str], transcripts: list[Transcript] | None = None, **sampling) -> list[dict]:
        """`gist` of each video (with its transcript in `transcripts`, None for none), decoded as one batch."""
        docs = self.generate_batch([(p, prompts.GIST) for p in video_paths], schema=schemas.GIST,
                                   transcripts=transcripts, **{"max_new_tokens": 160, **sampling})
        return [{"id": _video_id(p), **json.loads(d)} for p, d in zip(video_paths, docs)]

    def summarize(self, video_path: str, type: str = "summary", transcript: Transcript = None, **sampling) -> dict:
        return self.summarize_batch([video_path], type, [transcript], **sampling)[0]

    def summarize_batch(self, video_paths: list[str], type: str = "summary",
                        transcripts: list[Transcript] | None = None, **sampling) -> list[dict]:
        """`summarize` of each video (with its transcript in `transcripts`); chapters and highlights are decoded
        one batch per duration, since their schema bounds the times by it."""
        if type not in SUMMARY_TYPES:
            raise ValueError(f"type must be one of {SUMMARY_TYPES}")
        if type == "summary":
            texts = self.generate_batch([(p, prompts.SUMMARY) for p in video_paths], transcripts=transcripts, **sampling)
            return [{"id": _video_id(p), "summary": t.strip()} for p, t in zip(video_paths, texts)]
        transcripts = transcripts or [None] * len(video_paths)
        task, key = (prompts.CHAPTER, "chapters") if type == "chapter" else (prompts.HIGHLIGHT, "highlights")
        durations = [check_video(p).duration for p in video_paths]  # headers only; generate encodes the video
        out = [None] * len(video_paths)
        for duration in sorted(set(durations)):
            rows = [i for i, d in enumerate(durations) if d == duration]
            schema = schemas.chapters(duration) if type == "chapter" else schemas.highlights(duration)
            docs = self.generate_batch([(video_paths[i], task) for i in rows], schema=schema,
                                       transcripts=[transcripts[i] for i in rows], **{"max_new_tokens": 256, **sampling})
            for i, doc in zip(rows, docs):
                out[i] = {"id": _video_id(video_paths[i]),
                          key: schemas.order_timed(json.loads(doc), numbered=type == "chapter")}
        return out

    # -- scoring ----------------------------------------------------------------------------------
    def eval_loss(self, records_glob: str, batches: int = 50) -> dict:
        """Mean answer-token loss and perplexity over (at most `batches` batches of) a records glob."""
        from data_pipelines.batch import iterators as pipeline
        from pegasus_jax.models.pegasus import cross_entropy_loss

        config = self.config.copy_and_resolve_references()
        config.data.path = records_glob
        score = nnx.jit(lambda model, batch: cross_entropy_loss(model(batch), batch))
        total, tokens = 0.0, 0.0
        for i, batch in enumerate(pipeline.make_eval_iterator(config, self.tokenizer)):
            if i >= batches:
                break
            loss, aux = score(self.model, batch)
            total += float(loss) * float(aux["loss_tokens"])
            tokens += float(aux["loss_tokens"])
        loss = total / max(tokens, 1.0)
        return {"loss": loss, "perplexity": float(np.exp(loss)), "tokens": tokens}

    def option_logprobs(self, video_path: str, question: str, options: list[str]) -> list[float]:
        """Sum of log-probabilities of each option's tokens as the answer to `question`."""
        prefix = self.encode_video(video_path)
        return [self._answer_logprob(prefix, question, option) for option in options]

    def _answer_logprob(self, prefix: VideoPrefix, question: str, answer: str) -> float:
        prompt = self._prompt(question)
        answer_ids = self.tokenizer.encode(answer) + [self.tokenizer.eot_id]
        tokens = jnp.asarray([prompt + answer_ids])
        model = self.model
        x = jnp.concatenate([prefix.embeddings, model.decoder.embed(tokens).astype(prefix.embeddings.dtype)], 1)
        mask = jnp.concatenate([prefix.mask, jnp.ones(tokens.shape, bool)], 1)
        from pegasus_jax.models.decoder import valid_positions

        logits, _ = model.decoder(x, valid_positions(mask), mask)
        logp = jax.nn.log_softmax(logits[0, -len(answer_ids) - 1:-1], axis=-1)
        return float(np.sum(np.asarray(logp)[np.arange(len(answer_ids)), answer_ids]))


def _stack_prefixes(prefixes: list[VideoPrefix]):
    """Right-pad per-video prefixes to one (B, P, W) batch (padding masked out)."""
    longest = max(p.embeddings.shape[1] for p in prefixes)
    emb = jnp.concatenate([jnp.pad(p.embeddings, ((0, 0), (0, longest - p.embeddings.shape[1]), (0, 0)))
                           for p in prefixes])
    mask = jnp.concatenate([jnp.pad(p.mask, ((0, 0), (0, longest - p.mask.shape[1]))) for p in prefixes])
    return emb, mask


def _video_id(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
