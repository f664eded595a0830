"""The base class of the errors a user fixes."""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user fixes: a path, a config key, a file, a setting (the message says what
    to change). The entry points print its message as one ``error: ...`` line, without a
    traceback, and exit with status 2 (``config.user_errors_as_messages``); any other
    exception is a bug and keeps its traceback."""
