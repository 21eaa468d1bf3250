"""argparse value types shared by the plain commands: a bad value gets argparse's one-line error."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _checked(convert: Callable[[str], float], valid: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
fraction = _checked(float, lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")
