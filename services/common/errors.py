"""Errors that stop a service at start-up with a one-line message."""


class StartupError(Exception):
    """A problem the operator must fix; the message says what to do."""
