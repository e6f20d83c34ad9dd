"""Scaling-law figures (PNG, matplotlib Agg): loss vs compute with the fitted compute-optimal frontier,
and IsoFLOP curves (loss vs N per compute group, with each group's fitted parabola). C is the runs'
own "C", 6ND (scaling/fit.py), the same C as the frontier and FIT.json; the IsoFLOP figure shows
exactly the runs of each group the fit made (FIT.json's isoflop.groups[].runs)."""
from __future__ import annotations

import os

import numpy as np

from pegasus_jax.scaling.fit import compute_optimal


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def loss_vs_compute(runs: list[dict], fit: dict):
    """The figure: every run at (C, loss), the frontier at compute_optimal(C)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    c = np.array([r["C"] for r in runs])
    points = ax.scatter(c, [r["loss"] for r in runs], c=np.log10([r["N"] for r in runs]), cmap="viridis", s=24)
    fig.colorbar(points, ax=ax, label="log10 N (non-embedding parameters)")
    budgets = np.geomspace(c.min() / 2, max(c.max(), *[o["C"] for o in fit["compute_optimal"]] or [0]) * 2, 100)
    frontier = [compute_optimal(fit, b)["loss"] for b in budgets]
    ax.plot(budgets, frontier, "k--", label=f"compute-optimal frontier (E={fit['E']:.2f})")
    ax.set(xscale="log", xlabel="training compute C = 6ND (FLOPs)", ylabel="final loss", title="Loss vs compute")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def isoflop_curves(runs: list[dict], fit: dict):
    """The figure: per fitted FLOP group its runs at (N, loss), its parabola and its minimum (a star)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    groups = fit["isoflop"]["groups"]
    colours = plt.cm.plasma(np.linspace(0, 0.85, max(len(groups), 1)))
    for group, colour in zip(groups, colours):
        members = [runs[i] for i in group["runs"]]
        n = np.array([r["N"] for r in members])
        ax.scatter(n, [r["loss"] for r in members], color=colour, s=20)
        x = np.linspace(np.log(n.min()), np.log(n.max()), 100)
        ax.plot(np.exp(x), np.polyval(group["parabola"], x), color=colour, label=f"C={group['C']:.1e}")
        ax.plot(group["N_opt"], group["loss_opt"], marker="*", color=colour, markersize=10)
    if not groups:
        ax.text(0.5, 0.5, fit["isoflop"].get("reason", "no IsoFLOP groups"), transform=ax.transAxes,
                ha="center", va="center", wrap=True, fontsize=8)
    ax.set(xscale="log", xlabel="N (non-embedding parameters)", ylabel="final loss",
           title="IsoFLOP curves (C = 6ND)")
    if groups:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_plots(runs: list[dict], fit: dict, out_dir: str) -> list[str]:
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, figure in (("loss_vs_compute.png", loss_vs_compute), ("isoflop.png", isoflop_curves)):
        fig = figure(runs, fit)
        path = os.path.join(out_dir, name)
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
