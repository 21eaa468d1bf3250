"""The argparse parser and value types of the plain commands (``python -m lit_cs201.course.xor``, ``.qa``, ...)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from lit_cs201.errors import UserError, usage_error


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error reported as bad input like any other (`lit_cs201.errors.run_command`: one line,
    exit status 2) instead of argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{usage_error(message)} (see --help)")


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
