"""OmegaConf resolvers used by the configs in conf/ (registered once, before composing)."""
from __future__ import annotations

import math

from omegaconf import OmegaConf


def _log2(size: int) -> int:
    value = math.log2(int(size))
    if not value.is_integer():
        raise ValueError(f"${{log2:{size}}}: the image size must be a power of two for this network, got {size}")
    return int(value)


RESOLVERS = {
    "log2": _log2,
    "div_ceil": lambda a, b: -(-int(a) // int(b)),
    "div_floor": lambda a, b: int(a) // int(b),
}


def register_resolvers() -> None:
    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
