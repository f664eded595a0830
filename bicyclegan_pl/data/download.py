"""Download the official pix2pix paired datasets (BicycleGAN `datasets/download_dataset.sh`).

    python -m bicyclegan_pl.data.download edges2shoes [--root datasets]

fetches http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/edges2shoes.tar.gz with a
progress bar, unpacks it safely into `root/` and checks that `root/edges2shoes/train/*.jpg`
and a `val/` or `test/` split exist. Fetching, unpacking and checking are separate functions
so each is testable on a local archive; a complete archive already in `root/` is reused, and
a dataset folder whose layout already checks out is left alone.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from bicyclegan_pl.data.errors import DatasetError

DATASETS: tuple[str, ...] = ("edges2shoes", "edges2handbags", "facades", "maps", "night2day", "cityscapes")
URL_TEMPLATE = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
EVAL_SPLITS = ("val", "test")


def download_command(name: str, root: Path | str) -> str:
    """The shell command that downloads dataset `name` into `root/name`."""
    return f"python -m bicyclegan_pl.data.download {name} --root {root}"


def fetch(url: str, destination: Path, chunk_size: int = 1 << 20) -> Path:
    """Stream `url` to `destination` with a tqdm progress bar. Writes `destination.part`
    and renames it only once complete, so `destination` existing means a whole file."""
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=destination.name) as bar:
                while chunk := response.read(chunk_size):
                    out.write(chunk)
                    bar.update(len(chunk))
        received = partial.stat().st_size
        if total is not None and received != total:
            raise DatasetError(f"Download of {url} stopped after {received} of {total} bytes; run the command again.")
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DatasetError(f"Download of {url} failed: {error}") from error
    except DatasetError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(destination)
    return destination


def unpack(archive: Path, root: Path) -> None:
    """Extract a .tar.gz into `root`. Every member is vetted by tarfile's 'data' filter
    BEFORE anything is written (no absolute paths, no '..', no links leaving `root`, no
    device files), so a malicious or broken archive writes nothing."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                tarfile.data_filter(member, str(root))
            tar.extractall(root, members=members, filter="data")
    except tarfile.FilterError as error:
        raise DatasetError(f"Refused to unpack {archive}: unsafe member ({error}); nothing was extracted.") from error
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DatasetError(f"Cannot unpack {archive} (corrupt or incomplete archive? delete it and retry): {error}") from error


def check_layout(dataset_dir: Path) -> dict[str, int]:
    """Count the AB images of each split of `dataset_dir`; raise DatasetError saying what
    was found unless `train/*.jpg` and `val/*.jpg` or `test/*.jpg` exist."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        parent = dataset_dir.parent
        found = sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []
        raise DatasetError(f"Expected the dataset folder {dataset_dir}, not found; {parent} holds: {found or 'nothing'}")
    counts = {
        split: len(list((dataset_dir / split).glob("*.jpg")))
        for split in ("train", *EVAL_SPLITS)
        if (dataset_dir / split).is_dir()
    }
    found = ", ".join(f"{split}/ ({n} .jpg)" for split, n in counts.items()) or "no split folder"
    if not counts.get("train"):
        raise DatasetError(f"Bad layout in {dataset_dir}: expected train/*.jpg; found {found}")
    if not any(counts.get(split) for split in EVAL_SPLITS):
        raise DatasetError(f"Bad layout in {dataset_dir}: expected val/*.jpg or test/*.jpg; found {found}")
    return counts


def describe(dataset_dir: Path, counts: dict[str, int]) -> str:
    splits = ", ".join(f"{split} {n} images" for split, n in counts.items())
    return f"{dataset_dir}: {splits}"


def download(name: str, root: Path | str = "datasets", url: str | None = None, keep_archive: bool = False) -> dict[str, int]:
    """Fetch, unpack and check dataset `name` into `root/name`; returns the split counts."""
    root = Path(root)
    dataset_dir = root / name
    if dataset_dir.is_dir():
        try:
            return check_layout(dataset_dir)
        except DatasetError:
            pass  # incomplete earlier attempt: unpack again over it
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{name}.tar.gz"
    if not archive.exists():
        fetch(url or URL_TEMPLATE.format(name=name), archive)
    unpack(archive, root)
    counts = check_layout(dataset_dir)
    if not keep_archive:
        archive.unlink()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bicyclegan_pl.data.download",
        description="Download a pix2pix paired dataset (AB format) into ROOT/NAME.",
    )
    parser.add_argument("name", choices=DATASETS)
    parser.add_argument("--root", default="datasets", help="parent folder of the dataset (default: datasets)")
    parser.add_argument("--url", default=None, help="download from this URL (a mirror) instead of the official one")
    parser.add_argument("--keep-archive", action="store_true", help="keep the .tar.gz after unpacking")
    args = parser.parse_args(argv)
    try:
        counts = download(args.name, args.root, url=args.url, keep_archive=args.keep_archive)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"ready: {describe(Path(args.root) / args.name, counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
