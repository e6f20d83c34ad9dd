"""`pegasus-jax compile --config FILE --topology v5p-256 [--num-slices N] | --find-topology v5p`: AOT-compile
the train step (for N slices of the topology: the config's mesh.dcn_data x mesh.dcn_fsdp split the slices)."""
from __future__ import annotations

import json

from pegasus_jax.cli.args import OVERRIDES_HELP


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compile", help="AOT-compile the train step for a TPU topology from this host", epilog=OVERRIDES_HELP,
        description="Compile the real train step for a TPU slice without a TPU (needs the tpu extra: libtpu) and "
                    "print its per-chip memory, `fits: yes|no` and the expected step time.")
    p.add_argument("--config", required=True, help="configs/<name>.py (a get_config() file)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--topology", help="a TPU slice name: v5p-256, v5e-64, v6e-256, v4-32, ...")
    target.add_argument("--find-topology", metavar="FAMILY", help="smallest slice of v4|v5p|v5e|v6e that fits")
    p.add_argument("--num-slices", type=int, default=1, metavar="N",
                   help="compile for N slices of --topology joined over DCN (multi-slice)")
    p.add_argument("--mfu", type=float, default=0.5, help="MFU assumed for the expected step time")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from pegasus_jax.config import load_config
    from pegasus_jax.errors import UserError
    from pegasus_jax.train.aot import compile_for_topology, find_topology

    if args.num_slices < 1:
        raise UserError(f"--num-slices: must be >= 1, got {args.num_slices}")
    if args.find_topology and args.num_slices != 1:
        raise UserError("--num-slices: --find-topology searches single slices; use --topology with --num-slices")
    config = load_config(args.config, args.config_overrides)
    if args.topology:
        report = compile_for_topology(config, args.topology, args.mfu, num_slices=args.num_slices)
    else:
        skipped = []
        report = find_topology(config, args.find_topology, mfu=args.mfu, skipped=skipped)
        if report is None:
            why = f"; {len(skipped)} skipped, the first {skipped[0]}" if skipped else ""
            print(f"fits: no (no {args.find_topology} slice up to 8192 chips holds {config.name}{why})")
            return 1
    print("\n".join(report.lines()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**dataclasses.asdict(report), "fits": report.fits}, f, indent=2)
    return 0
