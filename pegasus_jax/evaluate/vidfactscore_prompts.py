"""Judge prompts for VidFactScore, in our own words: fuse several reference captions into one
paragraph, split a text into atomic sentences, and check atoms against the other side's atoms.
Every answer is requested as a JSON object."""
from __future__ import annotations

FUSE_SYSTEM = ("You merge several human captions of the same video into one faithful description. Keep every "
               "fact that at least one caption states, merge duplicates, resolve nothing by guessing, add nothing. "
               'Reply with only a JSON object {"paragraph": "<the description>"}.')

ATOMIZE_SYSTEM = ("You split a description of a video into atomic sentences: short, self-contained sentences that "
                  "each state exactly one fact (an object, attribute, action, count, place, sound or time order). "
                  "Replace pronouns by what they refer to. Do not add or drop facts. "
                  'Reply with only a JSON object {"atoms": ["<sentence>", ...]}.')

PRECISION_SYSTEM = ("You check a video model's statements against what annotators saw. For each numbered "
                    "candidate statement, decide whether the reference statements support it (stated or directly "
                    "implied by them). A statement that adds a fact absent from the reference is not supported. "
                    'Reply with only a JSON object {"supported": [true|false, ...]}, one verdict per candidate, in order.')

RECALL_SYSTEM = ("You check which annotated facts a video model's description covers. For each numbered reference "
                 "statement, decide whether the model's statements convey it (stated or directly implied). "
                 'Reply with only a JSON object {"found": [true|false, ...]}, one verdict per reference statement, in order.')


def _numbered(lines: list[str]) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


def fuse_messages(captions: list[str]) -> list[dict]:
    return [{"role": "system", "content": FUSE_SYSTEM},
            {"role": "user", "content": "Captions:\n" + _numbered(captions)}]


def atomize_messages(text: str) -> list[dict]:
    return [{"role": "system", "content": ATOMIZE_SYSTEM},
            {"role": "user", "content": "Description:\n" + text}]


def precision_messages(reference_atoms: list[str], predicted_atoms: list[str]) -> list[dict]:
    user = (f"Reference statements:\n{_numbered(reference_atoms)}\n\nCandidate statements "
            f"({len(predicted_atoms)}):\n{_numbered(predicted_atoms)}")
    return [{"role": "system", "content": PRECISION_SYSTEM}, {"role": "user", "content": user}]


def recall_messages(reference_atoms: list[str], predicted_atoms: list[str]) -> list[dict]:
    user = (f"Model statements:\n{_numbered(predicted_atoms)}\n\nReference statements "
            f"({len(reference_atoms)}):\n{_numbered(reference_atoms)}")
    return [{"role": "system", "content": RECALL_SYSTEM}, {"role": "user", "content": user}]

