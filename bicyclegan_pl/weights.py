"""Finding pretrained weight files (Inception for FID/KID/IS, LPIPS backbones) without network.

A file is looked up, by its official file name, in ``weights_dir``, in ``weights_dir/checkpoints``
(the torch hub layout, so a copied ``$TORCH_HOME/hub`` works as ``weights_dir``) and in the torch
hub cache. Only then, and only if allowed, is it downloaded, into ``weights_dir``. When it cannot
be found, the error names the file, the URL, and where to put it.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from bicyclegan_pl.errors import UserError


class WeightsNotFoundError(UserError, FileNotFoundError):
    """A pretrained weight file is missing and could not be downloaded (a user-fixable setup error)."""


def candidate_paths(filename: str, weights_dir: str | Path | None) -> list[Path]:
    places: list[Path] = []
    if weights_dir is not None:
        weights_dir = Path(weights_dir).expanduser()
        places += [weights_dir / filename, weights_dir / "checkpoints" / filename]
    places.append(Path(torch.hub.get_dir()) / "checkpoints" / filename)
    return places


def resolve_weights(url: str, weights_dir: str | Path | None, allow_download: bool, what: str) -> Path:
    """The local path of the weight file published at ``url`` (downloading it if allowed)."""
    filename = url.rsplit("/", 1)[-1]
    places = candidate_paths(filename, weights_dir)
    for place in places:
        if place.is_file():
            return place
    target = places[0] if weights_dir is not None else places[-1]
    problem = "downloads are off (allow_download: false)"
    if allow_download:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(target), progress=True)
            return target
        except Exception as error:  # no network, proxy, disk: all end in the same advice
            problem = f"downloading it failed ({type(error).__name__}: {error})"
    looked = "\n  ".join(str(place) for place in places)
    raise WeightsNotFoundError(
        f"The {what} weights file {filename} was not found, and {problem}.\n"
        f"Looked in:\n  {looked}\n"
        f"Download {url} on a machine with network and copy it to {target} "
        f"(or set paths.weights_dir to the folder that holds it)."
    )


def named_or_path(weights: str, named: dict[str, str], weights_dir: str | Path | None, allow_download: bool, what: str, hint: str) -> Path:
    """The file ``weights`` names: a key of ``named`` (name -> published URL, found or downloaded by
    :func:`resolve_weights`) or the path of an existing file; ``hint`` says in the error what may be given."""
    if weights in named:
        return resolve_weights(named[weights], weights_dir, allow_download, what)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"The {what} weights file {path} does not exist ({hint}).")
    return path


@contextlib.contextmanager
def torch_hub_with(weight_file: Path) -> Iterator[None]:
    """Point the torch hub cache at a folder whose checkpoints/ holds ``weight_file``, so
    libraries that only know how to "download" (torchvision's ``weights=``) load it instead."""
    previous = torch.hub.get_dir()
    if weight_file.parent.name == "checkpoints":
        torch.hub.set_dir(str(weight_file.parent.parent))
        try:
            yield
        finally:
            torch.hub.set_dir(previous)
        return
    with tempfile.TemporaryDirectory(prefix="bicyclegan_hub_") as hub:
        link = Path(hub) / "checkpoints" / weight_file.name
        link.parent.mkdir()
        try:
            link.symlink_to(weight_file.resolve())
        except OSError:  # file systems without symlinks
            shutil.copyfile(weight_file, link)
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)
