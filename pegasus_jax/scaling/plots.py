"""Scaling-law figures (PNG, matplotlib Agg): loss vs compute (6ND) with the fitted compute-optimal frontier,
and IsoFLOP curves (loss vs N per compute group, with each group's fitted parabola)."""
from __future__ import annotations

import os

import numpy as np

from pegasus_jax.scaling.fit import compute_optimal


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def loss_vs_compute(runs: list[dict], fit: dict, path: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    # Points at 6ND, the convention the fitted frontier is expressed in (a run's "C" also counts the
    # encoders' FLOPs, which would shift the points off the frontier's axis).
    c = np.array([6.0 * r["N"] * r["D"] for r in runs])
    points = ax.scatter(c, [r["loss"] for r in runs], c=np.log10([r["N"] for r in runs]), cmap="viridis", s=24)
    fig.colorbar(points, ax=ax, label="log10 N (non-embedding parameters)")
    budgets = np.geomspace(c.min() / 2, max(c.max(), *[o["C"] for o in fit["compute_optimal"]] or [0]) * 2, 100)
    frontier = [compute_optimal(fit, b)["loss"] for b in budgets]
    ax.plot(budgets, frontier, "k--", label=f"compute-optimal frontier, C = 6ND (E={fit['E']:.2f})")
    ax.set(xscale="log", xlabel="training compute 6ND (FLOPs)", ylabel="final loss", title="Loss vs compute")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def isoflop_curves(runs: list[dict], fit: dict, path: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    groups = fit["isoflop"]["groups"]
    colours = plt.cm.plasma(np.linspace(0, 0.85, max(len(groups), 1)))
    tol = fit["isoflop"]["group_tolerance_log10"]
    for group, colour in zip(groups, colours):
        members = [r for r in runs if abs(np.log10(r["C"]) - np.log10(group["C"])) <= tol]
        n = np.array([r["N"] for r in members])
        ax.scatter(n, [r["loss"] for r in members], color=colour, s=20)
        x = np.linspace(np.log(n.min()), np.log(n.max()), 100)
        ax.plot(np.exp(x), np.polyval(group["parabola"], x), color=colour, label=f"C={group['C']:.1e}")
        ax.plot(group["N_opt"], group["loss_opt"], marker="*", color=colour, markersize=10)
    if not groups:
        ax.text(0.5, 0.5, fit["isoflop"].get("reason", "no IsoFLOP groups"), transform=ax.transAxes,
                ha="center", va="center", wrap=True, fontsize=8)
    ax.set(xscale="log", xlabel="N (non-embedding parameters)", ylabel="final loss", title="IsoFLOP curves")
    if groups:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(runs: list[dict], fit: dict, out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    return [loss_vs_compute(runs, fit, os.path.join(out_dir, "loss_vs_compute.png")),
            isoflop_curves(runs, fit, os.path.join(out_dir, "isoflop.png"))]
