"""The exception types of the data package.

Everything a user can fix (a missing folder, a corrupt file, a wrongly shaped image, a bad
archive) raises `DatasetError` with a message that names the path and, where there is one,
the command that fixes it. Entry points catch this class and print the message without a
traceback; anything else is a bug and keeps its traceback.

A DataLoader worker cannot send the exception itself to the main process: torch re-raises it
there as `DatasetError("Caught DatasetError in DataLoader worker process N.\\nOriginal
Traceback ...")`, the worker's whole traceback as text around the message. The constructor
takes the original message back out of that text, so a user sees the same one line whether
the file was read in the main process or in a worker (`num_workers > 0`).
"""

from __future__ import annotations

import re
from pathlib import Path

from bicyclegan_pl.errors import UserError

# how torch.utils.data (`torch._utils.ExceptionWrapper.reraise`) words an exception of a worker
_WORKER_TEXT = re.compile(r"\ACaught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def _original_message(text: str, error_type: type[BaseException]) -> str:
    """The message of the `error_type` exception a worker raised, out of torch's wrapped
    text; `text` itself when it is not such a text. The traceback's last line is
    '<module>.<class>: <message>' and the message runs to the end (it may span lines)."""
    if not _WORKER_TEXT.match(text):
        return text
    marker = f"\n{error_type.__module__}.{error_type.__qualname__}: "
    start = text.rfind(marker)
    return text if start < 0 else text[start + len(marker) :].rstrip("\n")


class DatasetError(UserError):
    """A problem with the data on disk that the user can fix; the message says how."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_original_message(args[0], type(self)),)
        super().__init__(*args)


class BadImageError(DatasetError):
    """One image file that cannot be used (unreadable, wrongly shaped, far too small).
    `path` names it, so `data.on_bad_image=skip` can leave it out and list it; None when
    the error was re-raised from a DataLoader worker (the message still names the file)."""

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)
