"""Asking a judge many things: answer cache, retries with exponential backoff (on transport errors
and on malformed answers alike), and a bounded thread pool. A question that still fails after the
last attempt yields a failed JudgeAnswer; it never raises."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Any, Callable

from pegasus_jax.evaluate.judge import Judge, JudgeError
from pegasus_jax.evaluate.judge_cache import JudgeCache, cache_key

log = logging.getLogger(__name__)


@dataclasses.dataclass
class JudgeAnswer:
    value: Any = None
    error: str | None = None  # set when every attempt failed
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclasses.dataclass
class JudgeStats:
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failed_questions: int = 0


class JudgeSession:
    def __init__(self, judge: Judge, cache: JudgeCache | None = None, attempts: int = 3,
                 backoff_s: float = 1.0, workers: int = 8):
        if attempts < 1 or workers < 1:
            raise ValueError("attempts and workers must be >= 1")
        self.judge, self.cache = judge, cache
        self.attempts, self.backoff_s, self.workers = attempts, backoff_s, workers
        self.stats = JudgeStats()
        self._stats_lock = threading.Lock()

    def ask(self, messages: list[dict], parse: Callable[[str], Any]) -> JudgeAnswer:
        """`parse(reply)` turns the reply into a value or raises ValueError (a malformed answer)."""
        key = cache_key(self.judge.identity(), messages)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    value = parse(hit)
                    self._count(cache_hits=1)
                    return JudgeAnswer(value=value, cached=True)
                except ValueError:
                    pass  # stored under an older parser; ask again
        error = "no attempt made"
        for attempt in range(self.attempts):
            if attempt:
                self._count(retries=1)
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            self._count(requests=1)
            try:
                reply = self.judge.complete(messages)
                value = parse(reply)
            except JudgeError as e:
                error = str(e)
            except ValueError as e:
                error = f"malformed answer: {e}"
            else:
                if self.cache is not None:
                    self.cache.put(key, reply)
                return JudgeAnswer(value=value)
            log.warning("judge attempt %d/%d failed: %s", attempt + 1, self.attempts, error)
        self._count(failed_questions=1)
        return JudgeAnswer(error=error)

    def map(self, fn: Callable[[Any], Any], items: list) -> list:
        """fn over items in at most `workers` threads, results in order (fn may call `ask`)."""
        if self.workers == 1 or len(items) <= 1:
            return [fn(item) for item in items]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(fn, items))

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)
