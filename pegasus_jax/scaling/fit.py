"""Chinchilla-style scaling-law fit L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022).

Approach 3: minimise the Huber loss (delta 1e-3) between log L_pred = LSE(a - alpha log N,
b - beta log D, e) and log L over (a, b, e, alpha, beta), with A = exp(a), B = exp(b), E = exp(e),
by L-BFGS from a grid of initialisations, keeping the best. The grid (Hoffmann et al.'s, 4500 points) is
first scored in one vectorised pass and L-BFGS starts from the best SCREENED_STARTS of it: running it
from every point costs minutes per fit for the same optimum. Confidence intervals: bootstrap over runs.

Approach 2 (IsoFLOP): runs grouped by similar compute C; per group a parabola of loss in log N; the
groups' minima give N*(C) ~ C^a. Reported only where >= 3 groups with >= 3 distinct N exist.

Compute convention, the one C of runs.jsonl, FIT.json and the plots: C = 6 N D (N non-embedding
parameters, D training tokens; `compute`). For this model the encoders' FLOPs make the true cost per
token larger; the measured count travels beside it as "train_flops" (scaling/sweep.py), and the
compute-optimal split is in 6ND units, the convention under which Chinchilla's closed form holds.
A runs file whose C is not 6 N D is refused, naming the line.
"""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
from scipy import optimize
from scipy.special import logsumexp, softmax

from pegasus_jax.errors import UserError

HUBER_DELTA = 1e-3
REQUIRED_KEYS = ("N", "D", "C", "loss")
# Hoffmann et al.'s initialisation grid for (a, b, e, alpha, beta).
INIT_GRID = (
    (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    (-1.0, -0.5, 0.0, 0.5, 1.0),
    (0.0, 0.5, 1.0, 1.5, 2.0),
    (0.0, 0.5, 1.0, 1.5, 2.0),
)
PARAM_NAMES = ("E", "A", "alpha", "B", "beta")
SCREENED_STARTS = 16


def compute(n, d):
    """C = 6 N D: training FLOPs in the Chinchilla convention (2 forward + 4 backward per parameter and token)."""
    return 6.0 * n * d


def load_runs(path: str) -> list[dict]:
    """Runs from a JSONL file, one JSON object per line with at least N, D, C, loss (positive numbers)."""
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read runs file ({e.strerror})") from None
    runs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(run, dict):
            raise UserError(f"{path}:{number}: expected a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in run]
        if missing:
            raise UserError(f"{path}:{number}: missing key(s) {', '.join(missing)}")
        for key in REQUIRED_KEYS:
            value = run[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
                raise UserError(f"{path}:{number}: {key} must be a positive finite number, got {value!r}")
        if not math.isclose(run["C"], compute(run["N"], run["D"]), rel_tol=1e-3):
            raise UserError(f"{path}:{number}: C {run['C']:.6g} is not 6*N*D = {compute(run['N'], run['D']):.6g} "
                            "(the compute convention of the fit and its plots; other FLOP counts go in another field)")
        runs.append(run)
    if not runs:
        raise UserError(f"{path}: no runs")
    return runs


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray):
    """Mean Huber loss of the log-space residuals, divided by delta (same minimiser, O(1) gradients), and
    its gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    residual = logsumexp(terms, axis=0) - log_loss
    small = np.abs(residual) <= HUBER_DELTA
    huber = np.where(small, 0.5 * residual ** 2, HUBER_DELTA * (np.abs(residual) - 0.5 * HUBER_DELTA))
    d_residual = np.where(small, residual, HUBER_DELTA * np.sign(residual)) / (HUBER_DELTA * len(log_n))
    w = softmax(terms, axis=0)
    grad = np.array([
        np.sum(d_residual * w[0]), np.sum(d_residual * w[1]), np.sum(d_residual * w[2]),
        -np.sum(d_residual * w[0] * log_n), -np.sum(d_residual * w[1] * log_d),
    ])
    return huber.mean() / HUBER_DELTA, grad


def _screened_starts(log_n, log_d, log_loss) -> np.ndarray:
    grid = np.array(list(itertools.product(*INIT_GRID)))
    a, b, e, alpha, beta = (grid[:, i:i + 1] for i in range(5))
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, (len(grid), len(log_n)))])
    residual = np.abs(logsumexp(terms, axis=0) - log_loss)
    huber = np.where(residual <= HUBER_DELTA, 0.5 * residual ** 2, HUBER_DELTA * (residual - 0.5 * HUBER_DELTA))
    return grid[np.argsort(huber.mean(axis=1))[:SCREENED_STARTS]]


def _minimise(starts, log_n, log_d, log_loss) -> tuple[np.ndarray, float]:
    best, best_value = None, math.inf
    for start in starts:
        res = optimize.minimize(_objective, np.asarray(start, float), args=(log_n, log_d, log_loss), jac=True,
                                method="L-BFGS-B", options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-8})
        if np.all(np.isfinite(res.x)) and res.fun < best_value:
            best, best_value = res.x, float(res.fun)
    return best, best_value


def _law(theta: np.ndarray) -> dict[str, float]:
    a, b, e, alpha, beta = (float(x) for x in theta)
    return {"E": math.exp(e), "A": math.exp(a), "alpha": alpha, "B": math.exp(b), "beta": beta}


def compute_optimal(law: dict, budget: float) -> dict[str, float]:
    """N*, D* minimising L(N, D) subject to 6 N D = budget (closed form for the fitted law)."""
    alpha, beta = law["alpha"], law["beta"]
    g = (alpha * law["A"] / (beta * law["B"])) ** (1.0 / (alpha + beta))
    n = g * (budget / 6.0) ** (beta / (alpha + beta))  # budget = compute(n, d) = 6 n d
    d = budget / 6.0 / n
    return {"C": budget, "N": n, "D": d, "loss": predict(law, n, d)}


def predict(law: dict, n, d):
    return law["E"] + law["A"] / np.power(n, law["alpha"]) + law["B"] / np.power(d, law["beta"])


def _arrays(runs):
    n = np.array([r["N"] for r in runs], float)
    d = np.array([r["D"] for r in runs], float)
    loss = np.array([r["loss"] for r in runs], float)
    return np.log(n), np.log(d), np.log(loss)


def isoflop(runs: list[dict], group_tolerance: float = 0.1) -> dict:
    """Approach 2: group runs whose log10 C lie within `group_tolerance` of the group's smallest, fit
    loss = p2 x^2 + p1 x + p0 with x = log N per group, and a power law through the groups' minima.
    Each fitted group lists its members as indices into `runs` ("runs"), the points its plot shows."""
    order = sorted(range(len(runs)), key=lambda i: runs[i]["C"])
    groups, current = [], []
    for i in order:
        if current and math.log10(runs[i]["C"]) - math.log10(runs[current[0]]["C"]) > group_tolerance:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    fitted, skipped = [], []
    for indices in groups:
        group = [runs[i] for i in indices]
        c = float(np.exp(np.mean([math.log(r["C"]) for r in group])))
        if len({r["N"] for r in group}) < 3:
            skipped.append({"C": c, "reason": f"{len({r['N'] for r in group})} distinct N (needs 3)"})
            continue
        x = np.log([r["N"] for r in group])
        p2, p1, p0 = np.polyfit(x, [r["loss"] for r in group], 2)
        if p2 <= 0:
            skipped.append({"C": c, "reason": "loss is not convex in log N"})
            continue
        x_min = -p1 / (2 * p2)
        fitted.append({"C": c, "parabola": [float(p2), float(p1), float(p0)], "N_opt": float(math.exp(x_min)),
                       "loss_opt": float(p0 - p1 ** 2 / (4 * p2)), "n_runs": len(group), "runs": indices})
    result = {"groups": fitted, "skipped_groups": skipped, "group_tolerance_log10": group_tolerance}
    if len(fitted) < 3:
        result.update(available=False, reason=f"{len(fitted)} FLOP group(s) with >= 3 distinct model sizes and a "
                      f"convex loss curve (needs 3); {len(groups)} group(s) of similar C in {len(runs)} runs")
        return result
    log_c = np.log([g["C"] for g in fitted])
    slope, intercept = np.polyfit(log_c, np.log([g["N_opt"] for g in fitted]), 1)
    # D* = C / (6 N*) under the 6ND convention, so its exponent is 1 - a.
    result.update(available=True, n_exponent=float(slope), n_coefficient=float(math.exp(intercept)),
                  d_exponent=float(1.0 - slope))
    return result


def fit_chinchilla(runs: list[dict], budgets=(), bootstrap: int = 50, seed: int = 0) -> dict:
    """Fit L(N, D); bootstrap 95% intervals; compute-optimal N, D per budget (C = 6ND); IsoFLOP analysis."""
    if len(runs) < 5:
        raise UserError(f"runs: {len(runs)} run(s); fitting 5 parameters needs at least 5")
    log_n, log_d, log_loss = _arrays(runs)
    theta, value = _minimise(_screened_starts(log_n, log_d, log_loss), log_n, log_d, log_loss)
    if theta is None:
        raise UserError("runs: the fit did not converge from any initialisation")
    law = _law(theta)
    rng = np.random.default_rng(seed)
    # Bootstrap refits start from the full-data optimum: a resample's optimum lies near it, and a
    # screened multi-start per resample would cost seconds each.
    near_starts = [theta]
    samples = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(runs), len(runs))
        t, _v = _minimise(near_starts, log_n[idx], log_d[idx], log_loss[idx])
        if t is not None:
            samples.append(_law(t))
    intervals = {k: [float(np.percentile([s[k] for s in samples], q)) for q in (2.5, 97.5)]
                 for k in PARAM_NAMES} if samples else {}
    optimal = []
    for budget in budgets:
        point = compute_optimal(law, float(budget))
        if samples:
            boot = [compute_optimal(s, float(budget)) for s in samples]
            point["N_interval"] = [float(np.percentile([b["N"] for b in boot], q)) for q in (2.5, 97.5)]
            point["D_interval"] = [float(np.percentile([b["D"] for b in boot], q)) for q in (2.5, 97.5)]
        optimal.append({k: (float(v) if not isinstance(v, list) else v) for k, v in point.items()})
    return {
        **law,
        "a_exponent_N_opt": law["beta"] / (law["alpha"] + law["beta"]),
        "b_exponent_D_opt": law["alpha"] / (law["alpha"] + law["beta"]),
        "objective": value,
        "intervals": intervals,
        "interval_level": 0.95,
        "bootstrap_samples": len(samples),
        "compute_optimal": optimal,
        "compute_convention": "C = 6 N D (N non-embedding parameters, D training tokens)",
        "isoflop": isoflop(runs),
        "n_runs": len(runs),
    }
