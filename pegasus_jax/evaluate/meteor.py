"""METEOR 1.5 through the jar that ships inside pycocoevalcap; needs a `java` on PATH (about 10 s of JVM
start-up and paraphrase-table loading per call), so it is opt-in."""
from __future__ import annotations

import shutil

from pegasus_jax.errors import UserError


def meteor_score(gts: dict, res: dict) -> tuple[float, list[float]]:
    """Corpus METEOR and per-item scores for already tokenized {id: [refs]} / {id: [hypothesis]}."""
    if shutil.which("java") is None:
        raise UserError("--meteor needs a Java runtime (`java` on PATH); install one or drop --meteor")
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    score, items = scorer.compute_score(gts, res)
    return float(score), [float(s) for s in items]
