"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""


class UserError(ValueError):
    """Bad input: a message that says what was expected, what was found and what to do."""
