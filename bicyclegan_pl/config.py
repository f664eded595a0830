"""OmegaConf resolvers used by the configs in conf/ (registered once, before composing)."""
from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from bicyclegan_pl.errors import UserError


def _log2(size: int) -> int:
    value = math.log2(int(size))
    if not value.is_integer():
        raise ValueError(f"${{log2:{size}}}: the image size must be a power of two for this network, got {size}")
    return int(value)


def _run_dir(checkpoint: str) -> tuple[Path, str]:
    """(<run folder>, <checkpoint name>) for <run folder>/checkpoints/<name>.ckpt."""
    path = Path(checkpoint).expanduser().absolute()
    return (path.parent.parent if path.parent.name == "checkpoints" else path.parent), path.stem


def _eval_dir(checkpoint: str, split: str, data_group: str | None = None, data_root: str | None = None) -> str:
    """<run folder>/eval/<checkpoint name>[-<dataset>]-<split>.

    The checkpoint's own data (no ``data=<name>``) keeps the short ``<ckpt>-<split>`` (what
    ``report --eval`` reads by default); another dataset adds its name, ``data=<name>`` plus the
    folder name of ``data.root`` where that differs, so evaluating one checkpoint on several
    datasets (or on two copies of one, e.g. edges2shoes and edges2shoes_mini) leaves one folder each.
    """
    run_dir, name = _run_dir(checkpoint)
    parts = [name]
    if data_group:
        parts.append(str(data_group))
        root_name = Path(str(data_root)).name if data_root else ""
        if root_name and root_name != data_group:
            parts.append(root_name)
    return str(run_dir / "eval" / "-".join([*parts, split]))


def _guide_dir(checkpoint: str) -> str:
    """<run folder>/guide/<checkpoint name>."""
    run_dir, name = _run_dir(checkpoint)
    return str(run_dir / "guide" / name)


def _generate_dir(checkpoint: str) -> str:
    """<run folder>/generate/<checkpoint name>."""
    run_dir, name = _run_dir(checkpoint)
    return str(run_dir / "generate" / name)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; otherwise a torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


RESOLVERS = {
    "log2": _log2,
    "div_ceil": lambda a, b: -(-int(a) // int(b)),
    "div_floor": lambda a, b: int(a) // int(b),
    "eval_dir": _eval_dir,
    "guide_dir": _guide_dir,
    "generate_dir": _generate_dir,
}


def register_resolvers() -> None:
    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and its causes: Hydra wraps errors raised while instantiating
    (InstantiationException), and a user error must still reach the user as such."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def _unimportable_target(error: BaseException) -> str | None:
    """The message for Hydra's error about a ``_target_`` it cannot import (a misspelt name, a
    package not installed): a config mistake, reported with the key Hydra names."""
    if not isinstance(error, InstantiationException) or not isinstance(error.__cause__, ImportError):
        return None
    text = str(error)
    target = re.search(r"Error locating target '([^']*)'", text)
    if target is None:
        return None
    key = re.search(r"full_key: (\S+)", text)
    hint = str(error.__cause__).strip().splitlines()[-1]
    return f"{key.group(1) + ': ' if key else ''}cannot import _target_ {target.group(1)!r} ({hint})"


def _missing_value(error: BaseException) -> str | None:
    """A required setting (``???`` in the config) left out on the command line."""
    from omegaconf.errors import MissingMandatoryValue

    if not isinstance(error, MissingMandatoryValue):
        return None
    key = getattr(error, "full_key", None) or "a required setting"
    return f"{key} is required: give it on the command line, e.g. {key}=..."


@contextmanager
def user_errors_as_messages() -> Iterator[None]:
    """Report a user mistake (a :class:`UserError` anywhere in the chain, or a ``_target_`` that
    cannot be imported) as one ``error: ...`` line and exit status 2; anything else keeps its
    traceback."""
    try:
        yield
    except Exception as error:
        for cause in _chain(error):
            message = str(cause) if isinstance(cause, UserError) else _missing_value(cause) or _unimportable_target(cause)
            if message is not None:
                print(f"error: {message}", file=sys.stderr)
                sys.exit(2)
        raise
