"""The chat template and its loss mask.

Chat template (one conversation = alternating user/assistant turns):
    [bos] <user> prompt <assistant> answer <eot> <user> prompt <assistant> answer <eot> ...
The loss falls on the assistant's answer tokens and their closing <eot> only.
"""
from __future__ import annotations

from data_pipelines.text.tokenizer import Tokenizer


def prompt_ids(tok: Tokenizer, prompt: str) -> list[int]:
    """What inference feeds after the video prefix: [bos] <user> prompt <assistant>."""
    return [tok.bos_id, tok.user_id] + tok.encode(prompt) + [tok.assistant_id]


def render_chat(tok: Tokenizer, turns: list[dict], max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids and per-id weights (1 on answer tokens and their <eot>) of one conversation, at most
    `max_tokens + 1` ids (so tokens/targets are at most max_tokens long).

    Whole (user, assistant) pairs are kept from the start while they fit. The first pair always stays:
    when it alone is too long its prompt loses tokens from the front (the question usually ends it)
    so that the answer starts inside the window; the answer's end is what gets cut.
    """
    budget = max_tokens + 1
    ids, weights = [tok.bos_id], [0]
    for i in range(0, len(turns) - 1, 2):
        user, answer = turns[i], turns[i + 1]
        prompt = [tok.user_id] + tok.encode(user["text"]) + [tok.assistant_id]
        reply = tok.encode(answer["text"]) + [tok.eot_id]
        if len(ids) + len(prompt) + len(reply) > budget:
            if i > 0:
                break
            keep_answer = min(len(reply), max(1, (budget - 1) // 2))
            room = budget - 1 - keep_answer - 2  # minus bos, <user>, <assistant>
            prompt = [tok.user_id] + prompt[1:-1][max(0, len(prompt) - 2 - room):] + [tok.assistant_id]
        ids += prompt + reply
        weights += [0] * len(prompt) + [1] * len(reply)
    return ids[:budget], weights[:budget]
