"""Chinchilla fit: recovers a known law from noisy synthetic runs; compute-optimal closed form; IsoFLOP;
the `scaling fit` CLI contract (FIT.json keys, one-line errors naming the line); plots are real PNGs."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from pegasus_jax.errors import UserError
from pegasus_jax.scaling.fit import compute_optimal, fit_chinchilla, isoflop, load_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRUE = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}


def law(n, d):
    return TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]


def grid_runs(seed=0, noise=0.005):
    rng = np.random.default_rng(seed)
    runs = []
    for n in np.geomspace(1e6, 1e10, 7):
        for d in np.geomspace(1e8, 1e12, 7):
            runs.append({"N": float(n), "D": float(d), "C": 6 * n * d,
                         "loss": float(law(n, d) * math.exp(rng.normal(0, noise)))})
    return runs


def isoflop_runs():
    """Runs on 4 FLOP budgets, 5 model sizes each, losses from the true law (D = C / 6N)."""
    runs = []
    for c in (1e18, 1e19, 1e20, 1e21):
        n_opt = compute_optimal(TRUE, c)["N"]
        for n in n_opt * np.geomspace(0.1, 10, 5):
            d = c / (6 * n)
            runs.append({"N": float(n), "D": float(d), "C": c, "loss": float(law(n, d))})
    return runs


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pegasus_jax.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True)


def test_fit_recovers_known_law():
    fit = fit_chinchilla(grid_runs(), budgets=[1e21], bootstrap=8)
    assert abs(fit["alpha"] - TRUE["alpha"]) < 0.05, fit
    assert abs(fit["beta"] - TRUE["beta"]) < 0.05, fit
    assert abs(fit["E"] - TRUE["E"]) / TRUE["E"] < 0.05, fit
    assert fit["bootstrap_samples"] == 8
    for name in ("E", "A", "alpha", "B", "beta"):
        lo, hi = fit["intervals"][name]
        assert lo <= hi
    lo, hi = fit["intervals"]["alpha"]
    assert lo - 0.05 < TRUE["alpha"] < hi + 0.05


def test_compute_optimal_closed_form_is_the_constrained_minimum():
    point = compute_optimal(TRUE, 1e21)
    assert math.isclose(6 * point["N"] * point["D"], 1e21, rel_tol=1e-9)
    # Along the 6ND = C curve, the closed form beats its neighbours.
    for factor in (0.8, 1.25):
        n = point["N"] * factor
        assert law(n, 1e21 / (6 * n)) > point["loss"]
    # Doubling C grows N* by 2^(beta / (alpha + beta)).
    ratio = compute_optimal(TRUE, 2e21)["N"] / point["N"]
    assert math.isclose(ratio, 2 ** (0.28 / 0.62), rel_tol=1e-9)


def test_isoflop_recovers_exponent_and_explains_absence():
    result = isoflop(isoflop_runs())
    assert result["available"], result
    assert abs(result["n_exponent"] - 0.28 / 0.62) < 0.05, result
    sparse = isoflop(grid_runs()[:10])
    assert not sparse["available"] and "needs 3" in sparse["reason"]


def test_cli_fit_writes_contract_and_plots(tmp_path):
    runs = tmp_path / "runs.jsonl"
    runs.write_text("".join(json.dumps({**r, "name": f"r{i}"}) + "\n" for i, r in enumerate(isoflop_runs())))
    out, plots = tmp_path / "fit.json", tmp_path / "plots"
    res = cli("scaling", "fit", str(runs), "--out", str(out), "--budgets", "1e20,1e21", "--plots", str(plots),
              "--bootstrap", "4")
    assert res.returncode == 0, res.stderr
    fit = json.loads(out.read_text())
    for key in ("E", "A", "alpha", "B", "beta"):
        assert isinstance(fit[key], float)
    assert {"intervals", "compute_optimal", "isoflop", "n_runs"} <= set(fit)
    assert fit["n_runs"] == 20 and [p["C"] for p in fit["compute_optimal"]] == [1e20, 1e21]
    assert fit["isoflop"]["available"]
    for name in ("loss_vs_compute.png", "isoflop.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_plots_hold_the_fitted_points():
    """Each figure shows the runs the fit used, at the C the fit used (6ND): every run on loss-vs-compute,
    each IsoFLOP group's own runs with its parabola and its minimum."""
    from pegasus_jax.scaling.plots import isoflop_curves, loss_vs_compute

    runs = isoflop_runs()
    fit = {**TRUE, "compute_optimal": [compute_optimal(TRUE, 1e21)], "isoflop": isoflop(runs)}  # FIT.json's parts
    ax = loss_vs_compute(runs, fit).axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), [[r["C"], r["loss"]] for r in runs])
    frontier = ax.lines[0].get_xydata()
    np.testing.assert_allclose(frontier[:, 1], [compute_optimal(fit, c)["loss"] for c in frontier[:, 0]])
    groups = fit["isoflop"]["groups"]
    assert len(groups) >= 3 and sorted(i for g in groups for i in g["runs"]) == list(range(len(runs)))
    ax = isoflop_curves(runs, fit).axes[0]
    assert len(ax.collections) == len(groups)
    for group, scatter, (curve, star) in zip(groups, ax.collections, zip(ax.lines[::2], ax.lines[1::2])):
        members = [runs[i] for i in group["runs"]]
        assert all(math.isclose(r["C"], group["C"], rel_tol=0.3) for r in members)
        np.testing.assert_allclose(scatter.get_offsets(), [[r["N"], r["loss"]] for r in members])
        x, y = curve.get_xydata().T
        np.testing.assert_allclose(y, np.polyval(group["parabola"], np.log(x)), rtol=1e-9)
        np.testing.assert_allclose(star.get_xydata(), [[group["N_opt"], group["loss_opt"]]])


def test_runs_file_errors_name_the_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"N": 1, "D": 2, "C": 12, "loss": 3}\n{"N": 1, "D": 2, "loss": 3}\n')
    with pytest.raises(UserError, match=r"runs.jsonl:2: missing key\(s\) C"):
        load_runs(str(path))
    path.write_text('{"N": 1, "D": 2, "C": 12, "loss": -3}\n')
    with pytest.raises(UserError, match=r":1: loss must be a positive"):
        load_runs(str(path))
    path.write_text('{"N": 1, "D": 2, "C": 12, "loss": 3}\n{"N": 1, "D": 2, "C": 99, "loss": 3}\n')
    with pytest.raises(UserError, match=r"runs.jsonl:2: C 99 is not 6\*N\*D = 12 "):
        load_runs(str(path))
    path.write_text("not json\n")
    with pytest.raises(UserError, match=r":1: not valid JSON"):
        load_runs(str(path))
    res = cli("scaling", "fit", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "f.json"))
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "absent.jsonl" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
