"""`pegasus-jax scaling fit RUNS.jsonl --out FIT.json` and `pegasus-jax scaling sweep --sweep FILE --workdir DIR`."""
from __future__ import annotations

import json

from pegasus_jax.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("scaling", help="scaling-law sweeps and the Chinchilla fit")
    sub = p.add_subparsers(dest="scaling_command", required=True)
    f = sub.add_parser("fit", help="fit L(N, D) = E + A/N^alpha + B/D^beta to runs")
    f.add_argument("runs", help="JSONL, one run per line with N, D, C, loss")
    f.add_argument("--out", required=True, help="FIT.json")
    f.add_argument("--budgets", default="", help="comma-separated FLOP budgets for compute-optimal N, D (C = 6ND)")
    f.add_argument("--plots", metavar="DIR", help="write loss_vs_compute.png and isoflop.png here")
    f.add_argument("--bootstrap", type=int, default=50, help="bootstrap resamples for the 95%% intervals")
    f.set_defaults(func=run_fit)
    s = sub.add_parser("sweep", help="train a grid of model sizes x token counts and collect runs.jsonl")
    s.add_argument("--sweep", required=True, help="configs/scaling/<name>.py (a get_sweep() file)")
    s.add_argument("--workdir", required=True, help="one folder per point, the shared corpus, runs.jsonl")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")
    mode.add_argument("--emit-commands", action="store_true", help="print one cluster launch command per point")
    s.add_argument("--launcher", default="local", choices=("local", "slurm", "xpk", "tpu_vm"))
    s.add_argument("--launcher-args", default="",
                   help="extra launcher flags for --emit-commands, written --launcher-args='--zone us-east5-a ...'")
    s.set_defaults(func=run_sweep)


def _budgets(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--budgets: expected comma-separated numbers, got {text!r}") from None


def run_fit(args) -> int:
    from pegasus_jax.scaling.fit import fit_chinchilla, load_runs

    budgets = _budgets(args.budgets)
    runs = load_runs(args.runs)
    fit = fit_chinchilla(runs, budgets=budgets, bootstrap=args.bootstrap)
    try:
        with open(args.out, "w") as f:
            json.dump(fit, f, indent=2)
    except OSError as e:
        raise UserError(f"--out: cannot write {args.out} ({e.strerror})") from None
    print(f"L(N, D) = {fit['E']:.4g} + {fit['A']:.4g}/N^{fit['alpha']:.4f} + {fit['B']:.4g}/D^{fit['beta']:.4f} "
          f"({fit['n_runs']} runs)")
    for point in fit["compute_optimal"]:
        print(f"C={point['C']:.3g}: N*={point['N']:.4g} D*={point['D']:.4g} loss={point['loss']:.4f}")
    iso = fit["isoflop"]
    if iso["available"]:
        print(f"isoflop: N* ~ C^{iso['n_exponent']:.3f} ({len(iso['groups'])} FLOP groups)")
    else:
        print(f"isoflop: not available: {iso['reason']}")
    if args.plots:
        from pegasus_jax.scaling.plots import write_plots

        for path in write_plots(runs, fit, args.plots):
            print(f"wrote {path}")
    return 0


def run_sweep(args) -> int:
    from pegasus_jax.scaling import sweep

    spec = sweep.load_sweep(args.sweep)
    points = sweep.plan(spec, args.workdir)
    if args.dry_run:
        for line in sweep.describe(points, spec, args.workdir):
            print(line)
        return 0
    if args.emit_commands:
        for line in sweep.launch_commands(points, spec, args.workdir, args.launcher, args.launcher_args):
            print(line)
        return 0
    if args.launcher != "local":
        raise UserError(f"--launcher {args.launcher}: only local runs here; add --emit-commands for a cluster")
    return sweep.run_local(points, spec, args.workdir)
