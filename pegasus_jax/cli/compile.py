"""`pegasus-jax compile --config FILE --topology v5p-256 | --find-topology v5p`: AOT-compile the train step."""
from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("compile", help="AOT-compile the train step for a TPU topology from this host")
    p.add_argument("--config", required=True)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--topology", help="a TPU slice name: v5p-256, v5e-64, v6e-256, v4-32, ...")
    target.add_argument("--find-topology", metavar="FAMILY", help="smallest slice of v4|v5p|v5e|v6e that fits")
    p.add_argument("--mfu", type=float, default=0.5, help="MFU assumed for the expected step time")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from pegasus_jax.config import load_config
    from pegasus_jax.train.aot import compile_for_topology, find_topology

    config = load_config(args.config, args.config_overrides)
    if args.topology:
        report = compile_for_topology(config, args.topology, args.mfu)
    else:
        report = find_topology(config, args.find_topology, mfu=args.mfu)
        if report is None:
            print(f"fits: no (no {args.find_topology} slice up to 8192 chips holds {config.name})")
            return 1
    print("\n".join(report.lines()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**dataclasses.asdict(report), "fits": report.fits}, f, indent=2)
    return 0
