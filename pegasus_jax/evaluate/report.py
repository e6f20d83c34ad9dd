"""Evaluation reports: `<out>/<benchmark>.json` (meta, aggregate, every per-item result) and
`<out>/<benchmark>.md` (a summary table); `compare_markdown` sets two reports' aggregates side by side."""
from __future__ import annotations

import glob
import json
import os

from pegasus_jax.errors import UserError


def flatten(aggregate: dict, prefix: str = "") -> dict:
    """{"criteria": {"detail": {"mean": 3}}} -> {"criteria.detail.mean": 3}."""
    flat = {}
    for key, value in aggregate.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def format_cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_summary(report: dict) -> str:
    meta = report["meta"]
    lines = [f"# {report['benchmark']} evaluation", ""]
    lines += [f"- {key}: {format_cell(value)}" for key, value in meta.items() if not isinstance(value, dict)]
    lines += ["", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {format_cell(value)} |" for name, value in flatten(report["aggregate"]).items()]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str, benchmark: str, aggregate: dict, items: list[dict], meta: dict) -> str:
    """Write both files; returns the JSON path."""
    os.makedirs(out_dir, exist_ok=True)
    report = {"benchmark": benchmark, "meta": meta, "aggregate": aggregate, "items": items}
    path = os.path.join(out_dir, f"{benchmark}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)
    with open(os.path.join(out_dir, f"{benchmark}.md"), "w", encoding="utf-8") as f:
        f.write(markdown_summary(report))
    return path


def load_reports(path: str) -> dict[str, dict]:
    """A report file, or a folder of them, as {benchmark: report}."""
    files = sorted(glob.glob(os.path.join(path, "*.json"))) if os.path.isdir(path) else [path]
    reports = {}
    for file in files:
        try:
            with open(file, encoding="utf-8") as f:
                report = json.load(f)
        except FileNotFoundError:
            raise UserError(f"{file}: no such report") from None
        except ValueError:
            raise UserError(f"{file}: not a JSON report") from None
        if isinstance(report, dict) and "benchmark" in report and "aggregate" in report:
            reports[report["benchmark"]] = report
    if not reports:
        raise UserError(f"{path}: no evaluation report found")
    return reports


def source_label(meta: dict, side: str) -> str:
    """A column's name: what made the predictions (a baseline or a checkpoint), after A or B."""
    if meta.get("baseline"):
        return f"{side}: {meta['baseline']} baseline"
    return f"{side}: model" if meta.get("checkpoint") else side


def compare_markdown(path_a: str, path_b: str) -> str:
    a, b = load_reports(path_a), load_reports(path_b)
    shared = [name for name in a if name in b]
    if not shared:
        raise UserError(f"{path_a} and {path_b} have no benchmark in common ({sorted(a)} vs {sorted(b)})")
    out = []
    for name in shared:
        flat_a, flat_b = flatten(a[name]["aggregate"]), flatten(b[name]["aggregate"])
        label_a, label_b = source_label(a[name]["meta"], "A"), source_label(b[name]["meta"], "B")
        out += [f"## {name}", "", f"| metric | {label_a} | {label_b} | B - A |", "| --- | --- | --- | --- |"]
        for metric in list(flat_a) + [m for m in flat_b if m not in flat_a]:
            va, vb = flat_a.get(metric), flat_b.get(metric)
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
            delta = format_cell(float(vb - va)) if numeric else "-"
            out.append(f"| {metric} | {format_cell(va)} | {format_cell(vb)} | {delta} |")
        out.append("")
    return f"A: {path_a}\nB: {path_b}\n\n" + "\n".join(out)
