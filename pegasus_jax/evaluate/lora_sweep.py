"""`eval --lora-alpha 0,2,4,8,16`: PLLaVA's post-training alpha sweep in one run.

The checkpoint is loaded once; for each alpha the LoRA deltas are rescaled in place (alpha 0 skips them:
the base model exactly) and the benchmark's generation and scoring run again, each alpha's full report in
<out>/lora_alpha_<alpha>/. The scores per alpha are tabled in <out>/<benchmark>_lora_alpha.json and .md
(PLLaVA's figure of score against alpha).
"""
from __future__ import annotations

import json
import os
from typing import Callable

from pegasus_jax.evaluate.report import format_cell, flatten


def alpha_folder(out: str, alpha: float) -> str:
    return os.path.join(out, f"lora_alpha_{alpha:g}")


def sweep_lora_alpha(model, alphas: list[float], evaluate: Callable[[str, float], dict | None], out: str, benchmark: str,
                     meta: dict) -> dict | None:
    """Run `evaluate(report folder, alpha)` once per alpha on `model` (the Python API) and write the table; returns
    it, or None in a process that writes no report (a multi-process job's others)."""
    rows = []
    for alpha in alphas:
        model.set_lora_alpha(alpha)
        aggregate = evaluate(alpha_folder(out, alpha), alpha)
        if aggregate is not None:
            rows.append({"lora_alpha": alpha, **flatten(aggregate)})
    if not rows:
        return None
    table = {"benchmark": benchmark, "meta": meta, "rows": rows}
    path = os.path.join(out, f"{benchmark}_lora_alpha")
    with open(path + ".json", "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1)
    with open(path + ".md", "w", encoding="utf-8") as f:
        f.write(table_markdown(table))
    return table


def table_markdown(table: dict) -> str:
    """One row per alpha, one column per score."""
    columns = list(dict.fromkeys(k for row in table["rows"] for k in row))
    lines = [f"# {table['benchmark']}: scores per LoRA alpha", "", "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    for row in table["rows"]:
        lines.append("| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"

