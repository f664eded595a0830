"""OmegaConf resolvers used by the configs in conf/ (registered once, before composing)."""
from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import OmegaConf


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
}


def register_resolvers() -> None:
    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


def find_cause(error: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of ``types`` in ``error``'s chain: Hydra wraps errors raised while
    instantiating (InstantiationException), and a user error must still reach the user as such."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, types):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def user_errors_as_messages(types: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Report a user mistake (an exception of ``types`` anywhere in the chain) as one
    ``error: ...`` line and exit status 2; anything else keeps its traceback."""
    try:
        yield
    except Exception as error:
        cause = find_cause(error, types)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
