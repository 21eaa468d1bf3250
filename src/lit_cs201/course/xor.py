"""``python -m lit_cs201.course.xor``: the course's XOR program, a 2-4-1 sigmoid network with hand-written
backpropagation in numpy, and its worked example.

Run ``python -m lit_cs201.course.xor`` to train on XOR, or ``python -m lit_cs201.course.xor --worked-example`` to
print the single-step backpropagation example (inputs 0.35 and 0.7, target 0.5) step by step.

The network is `lit_cs201.course.sigmoid_net`'s (which says how its numbers compare with the course's), the example
`lit_cs201.course.worked_example`'s; their names are importable from here too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from lit_cs201.course.argtypes import ArgumentParser, positive_float, positive_int
from lit_cs201.course.sigmoid_net import NeuralNetwork, sigmoid
from lit_cs201.course.worked_example import (
    WORKED_WEIGHTS,
    ForwardPass,
    WorkedExample,
    format_worked_example,
    worked_example,
)
from lit_cs201.errors import run_command

__all__ = [
    "WORKED_WEIGHTS",
    "XOR_INPUTS",
    "XOR_TARGETS",
    "ForwardPass",
    "NeuralNetwork",
    "WorkedExample",
    "format_worked_example",
    "main",
    "sigmoid",
    "worked_example",
]

#: The four XOR rows and their targets, shaped (4, 2) and (4, 1) like the course's arrays.
XOR_INPUTS: NDArray[np.float64] = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_TARGETS: NDArray[np.float64] = np.array([[0], [1], [1], [0]], dtype=np.float64)


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lit_cs201.course.xor",
        description="Train the course's 2-4-1 sigmoid network on XOR with hand-written backpropagation, "
        "or print the worked backpropagation example step by step.",
    )
    parser.add_argument("--epochs", type=positive_int, default=10_000, help="training epochs (default: 10000)")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="learning rate (default: 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation (default: 0)")
    parser.add_argument("--hidden-size", type=positive_int, default=4, help="hidden units (default: 4)")
    parser.add_argument(
        "--log-every", type=positive_int, default=4000, help="print the loss every N epochs (default: 4000)"
    )
    parser.add_argument(
        "--worked-example",
        action="store_true",
        help="print the worked backpropagation example (x = 0.35, 0.7; target 0.5; learning rate 1) and exit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lit_cs201.course.xor``; returns the process exit status."""
    parser = _parser()
    return run_command(parser.prog, lambda: _run(parser.parse_args(argv)))


def _run(args: argparse.Namespace) -> int:
    if args.worked_example:
        print(format_worked_example(worked_example()))
        return 0

    net = NeuralNetwork(2, args.hidden_size, 1, rng=args.seed)
    net.train(XOR_INPUTS, XOR_TARGETS, args.epochs, args.lr, log_every=args.log_every)
    print(f"Final loss (after {args.epochs} epochs): {net.loss(XOR_INPUTS, XOR_TARGETS):.6f}")
    predictions = net.feedforward(XOR_INPUTS)
    print("Predictions after training:")
    for x, target, p in zip(XOR_INPUTS.astype(int), XOR_TARGETS[:, 0].astype(int), predictions[:, 0], strict=True):
        print(f"  {x[0]} XOR {x[1]} = {target}   prediction {p:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
