"""Warnings about one data file, each given once per process.

A training run reads every file once per epoch, in several worker processes: a warning per
read would bury the log under copies. Each process remembers what it has said (workers
forked after the setup scan inherit what the scan said). Messages go to the
`bicyclegan_pl.data` logger, which Hydra writes to the console and the run's log file.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("bicyclegan_pl.data")

_said: set[tuple[str, str]] = set()


def warn_once(path: Path | str, topic: str, message: str) -> bool:
    """Log `message` as a warning unless this process already warned about `topic` for
    `path`; True when it was logged."""
    key = (str(path), topic)
    if key in _said:
        return False
    _said.add(key)
    log.warning(message)
    return True
