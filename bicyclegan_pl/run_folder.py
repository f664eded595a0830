"""The run folder's guards, used by the training entry point: which checkpoint to resume,
one training process per folder, and one W&B run per run folder across resumes."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bicyclegan_pl.errors import UserError
from bicyclegan_pl.models.checkpoint import load_checkpoint_file

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
#: start fresh or resume from <run folder>/checkpoints/last.ckpt when it exists
RESUME_AUTO = "auto"
#: resume from <run folder>/checkpoints/last.ckpt; an error when there is none
RESUME_LAST = "last"
NEW_RUN = (None, "none", "new", "null")


class RunFolderError(UserError):
    """The run folder does not allow what was asked (nothing to resume, in use, ...)."""


def _contents(folder: Path) -> str:
    if not folder.is_dir():
        return "the folder does not exist"
    names = sorted(f"{p.name}/" if p.is_dir() else p.name for p in folder.iterdir() if not p.name.startswith(".lock"))
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir():
        names += [f"checkpoints/{p.name}" for p in sorted(checkpoints.iterdir())]
    return f"it holds: {', '.join(names)}" if names else "it is empty"


@dataclass(frozen=True)
class Resume:
    """A checkpoint to resume from and the iteration it was taken after."""

    path: Path
    iteration: int


def resolve_resume(ckpt_path: str | None, run_dir: Path) -> Resume | None:
    """The checkpoint to resume from (None: a new run), after checking that it can be read.

    ``auto`` resumes when the folder has a last checkpoint; ``last`` insists on one; ``null``
    starts a new run and refuses a folder that already holds one (so nothing is overwritten);
    anything else is a checkpoint file.
    """
    last = run_dir / LAST_CHECKPOINT
    if ckpt_path in NEW_RUN:
        if last.exists():
            raise RunFolderError(
                f"{run_dir} already holds a run ({LAST_CHECKPOINT}); resume it with ckpt_path=auto (or last), "
                "or start the new run in another folder (hydra.run.dir=...)"
            )
        return None
    if ckpt_path == RESUME_AUTO:
        chosen = last if last.exists() else None
    elif ckpt_path == RESUME_LAST:
        if not last.exists():
            raise RunFolderError(
                f"ckpt_path=last: no {LAST_CHECKPOINT} in {run_dir} ({_contents(run_dir)}). Point hydra.run.dir at "
                "the folder of the run to resume, give ckpt_path=<file>, or use ckpt_path=auto to start a new run "
                "when there is nothing to resume"
            )
        chosen = last
    else:
        chosen = Path(str(ckpt_path)).expanduser()
    if chosen is None:
        return None
    checkpoint = load_checkpoint_file(chosen)  # a missing, empty or corrupt file: CheckpointError naming it
    return Resume(chosen, int(checkpoint.get("iteration", 0)))


class RunFolderLock:
    """An exclusive lock on a run folder, held by the training process for its lifetime.

    `flock` on ``<run folder>/.lock``: the kernel releases it when the process dies, however it
    dies, so a killed run never leaves a stale lock. The file names the holder (PID, host, start)
    for the message a second process gets.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            try:
                who = json.loads(holder)
                description = f"PID {who['pid']} on host {who['host']} (since {who['started']})"
            except (ValueError, KeyError, TypeError):
                description = "another process"
            raise RunFolderError(
                f"{self.path.parent} is in use by {description}: two runs in one folder would interleave their "
                "checkpoints, samples and metrics. Wait for it to finish (or stop it), or choose another hydra.run.dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def wandb_run_id(run_dir: Path, new_id: str) -> str:
    """The W&B run id of this run folder: the one stored in ``wandb_run_id`` by an earlier start
    (so a resumed run continues the same W&B run), else ``new_id``, stored now."""
    path = Path(run_dir) / "wandb_run_id"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new_id + "\n")
    return new_id

