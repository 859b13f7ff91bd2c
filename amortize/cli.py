"""The ``amortize`` command."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="amortize", description="Amortized Bayesian inference for NumPyro programs.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train on eight schools simulations, sample the real data, write plots")
    demo.add_argument("--out", default="amortize-demo", help="output folder (default: amortize-demo)")
    demo.add_argument("--steps", type=int, default=1500, help="training steps (default: 1500)")
    demo.add_argument("--batch-size", type=int, default=64, help="simulations per step (default: 64)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--samples", type=int, default=4000, help="posterior draws (default: 4000)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from amortize.demo import run_demo

        run_demo(args.out, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                 num_samples=args.samples, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
