"""The judge interface and its one real backend: an OpenAI-compatible `/v1/chat/completions` client.

Configuration comes from flags or the environment (PEGASUS_JUDGE_URL, PEGASUS_JUDGE_MODEL,
PEGASUS_JUDGE_API_KEY). The API key is sent only in the Authorization header: it is kept out of
reprs, error messages, logs, cache keys and reports.
"""
from __future__ import annotations

import abc
import dataclasses
import json
import os
import socket
import urllib.error
import urllib.request

from pegasus_jax.errors import UserError


class JudgeError(Exception):
    """One request failed (transport, HTTP status, timeout or an unreadable response envelope)."""


class Judge(abc.ABC):
    @abc.abstractmethod
    def complete(self, messages: list[dict]) -> str:
        """The assistant's reply to chat `messages` ([{"role", "content"}, ...])."""

    @abc.abstractmethod
    def identity(self) -> dict:
        """What, besides the messages, determines the answer (model, sampling params): the cache key's rest."""

    def describe(self) -> dict:
        """Safe-to-log description for reports."""
        return self.identity()


def chat_completions_url(url: str) -> str:
    """Accept a server root, a `.../v1` base URL (OpenAI SDK style) or the full endpoint."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


@dataclasses.dataclass(frozen=True)
class HttpJudge(Judge):
    url: str
    model: str
    api_key: str | None = dataclasses.field(default=None, repr=False)
    timeout_s: float = 60.0
    temperature: float = 0.0
    max_tokens: int = 1024

    def identity(self) -> dict:
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def describe(self) -> dict:
        return {"url": chat_completions_url(self.url), **self.identity()}

    def complete(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                           "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(chat_completions_url(self.url), data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode("utf-8", "replace")
            raise JudgeError(self._scrub(f"HTTP {e.code}: {detail}")) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise JudgeError(self._scrub(f"request failed: {reason}")) from None
        try:
            content = json.loads(payload)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"not a chat-completions response: {payload[:200]!r}") from None
        if not isinstance(content, str):
            raise JudgeError("chat-completions response without text content")
        return content

    def _scrub(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text


def http_judge_from_flags(url: str | None, model: str | None, api_key: str | None = None,
                          timeout_s: float = 60.0, max_tokens: int = 1024) -> HttpJudge:
    """Flags win over PEGASUS_JUDGE_URL / PEGASUS_JUDGE_MODEL / PEGASUS_JUDGE_API_KEY."""
    url = url or os.environ.get("PEGASUS_JUDGE_URL")
    model = model or os.environ.get("PEGASUS_JUDGE_MODEL")
    api_key = api_key or os.environ.get("PEGASUS_JUDGE_API_KEY") or None
    if not url:
        raise UserError("this benchmark needs a judge: pass --judge-url or set PEGASUS_JUDGE_URL")
    if not url.startswith(("http://", "https://")):
        raise UserError(f"--judge-url {url!r}: must start with http:// or https://")
    if not model:
        raise UserError("this benchmark needs a judge model: pass --judge-model or set PEGASUS_JUDGE_MODEL")
    if timeout_s <= 0:
        raise UserError(f"--judge-timeout {timeout_s}: must be positive")
    return HttpJudge(url=url, model=model, api_key=api_key, timeout_s=timeout_s, max_tokens=max_tokens)
