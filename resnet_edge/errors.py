"""Errors a user can fix. Their message is one line: what is wrong and what to do instead.

The CLI turns every :class:`ResnetEdgeError` into a one-line message and a non-zero exit code, with no
traceback. Library callers can catch the specific subclasses.
"""


class ResnetEdgeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ConfigError(ResnetEdgeError, ValueError):
    """An invalid combination of options (a depth not in the paper, too small an input, ...)."""


class UnknownModelError(ResnetEdgeError, LookupError):
    """A model name that is not in the registry; the message lists the valid names."""


class MissingDependencyError(ResnetEdgeError, ImportError):
    """A package needed by this command is not installed; the message says which extra installs it."""
