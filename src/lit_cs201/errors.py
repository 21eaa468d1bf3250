"""Errors a user can act on. The CLI prints them as one line: status 2 for bad input, 1 for a failed run."""


class UserError(ValueError):
    """Bad input: a message that says what was expected, what was found and what to do."""


class NonFiniteLossError(RuntimeError):
    """Training diverged: a loss became NaN or infinite, so nothing trained after it can be trusted."""
