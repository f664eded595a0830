"""The one exception type of the data package.

Everything a user can fix (a missing folder, a corrupt file, a wrongly shaped image, a bad
archive) raises `DatasetError` with a message that names the path and, where there is one,
the command that fixes it. Entry points catch this class and print the message without a
traceback; anything else is a bug and keeps its traceback.
"""


class DatasetError(Exception):
    """A problem with the data on disk that the user can fix; the message says how."""
