"""Download the official pix2pix paired and CycleGAN unpaired datasets.

    python -m bicyclegan_pl.data.download edges2shoes [--root datasets]
    python -m bicyclegan_pl.data.download monet2photo [--root datasets]

pix2pix sets (BicycleGAN `datasets/download_dataset.sh`): fetches
http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/edges2shoes.tar.gz, unpacks it into
`root/` and checks that `root/edges2shoes/train/*.jpg` and a `val/` or `test/` split exist.
CycleGAN sets (`datasets/download_cyclegan_dataset.sh`): fetches
http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/monet2photo.zip, unpacks it into `root/`
and checks that `root/monet2photo/trainA/` and `trainB/` hold images (`testA/`, `testB/`
are counted when present). `maps`, `cityscapes` and `facades` exist in both collections;
their names mean the pix2pix archive unless `--collection cyclegan` is given.

Fetching, unpacking and checking are separate functions so each is testable on a local
archive; both archive kinds are vetted member by member before anything is written. A
complete archive already in `root/` is reused, and a dataset folder whose layout already
checks out is left alone.
"""

from __future__ import annotations

import argparse
import stat
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm import tqdm

from bicyclegan_pl.data.errors import DatasetError

DATASETS: tuple[str, ...] = ("edges2shoes", "edges2handbags", "facades", "maps", "night2day", "cityscapes")
URL_TEMPLATE = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
EVAL_SPLITS = ("val", "test")

# The unaligned two-domain sets of junyanz/pytorch-CycleGAN-and-pix2pix
# `datasets/download_cyclegan_dataset.sh`. Its test-photo set `ae_photos` is left out: it has no two
# training domains for the layout check (trainA/ and trainB/) to accept.
CYCLEGAN_DATASETS: tuple[str, ...] = (
    "apple2orange",
    "summer2winter_yosemite",
    "horse2zebra",
    "monet2photo",
    "cezanne2photo",
    "ukiyoe2photo",
    "vangogh2photo",
    "maps",
    "cityscapes",
    "facades",
    "iphone2dslr_flower",
)
CYCLEGAN_URL_TEMPLATE = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
COLLECTIONS = ("pix2pix", "cyclegan")
UNALIGNED_FOLDERS = ("trainA", "trainB", "testA", "testB")
_LAYOUT_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def download_command(name: str, root: Path | str) -> str:
    """The shell command that downloads dataset `name` into `root/name`."""
    return f"python -m bicyclegan_pl.data.download {name} --root {root}"


def resolve_collection(name: str, collection: str | None = None) -> str:
    """Which collection ('pix2pix' or 'cyclegan') dataset `name` comes from: `collection`
    when given (it must hold `name`), else pix2pix for the names both collections share."""
    members = {"pix2pix": DATASETS, "cyclegan": CYCLEGAN_DATASETS}
    if collection is not None:
        if collection not in members:
            raise ValueError(f"collection must be one of {COLLECTIONS}, got {collection!r}")
        if name not in members[collection]:
            raise DatasetError(f"{name!r} is not a {collection} dataset; those are: {', '.join(members[collection])}")
        return collection
    for candidate in COLLECTIONS:
        if name in members[candidate]:
            return candidate
    raise DatasetError(f"Unknown dataset {name!r}; known: {', '.join(sorted({*DATASETS, *CYCLEGAN_DATASETS}))}")


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
    """Extract a .tar.gz (or, by its suffix, a .zip: `unpack_zip`) into `root`. Every
    member is vetted by tarfile's 'data' filter BEFORE anything is written (no absolute
    paths, no '..', no links leaving `root`, no device files), so a malicious or broken
    archive writes nothing."""
    if Path(archive).suffix.lower() == ".zip":
        unpack_zip(archive, root)
        return
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


def _unsafe_zip_member(member: zipfile.ZipInfo, root: Path) -> str | None:
    """Why `member` must not be extracted into `root`, or None when it is safe."""
    name = member.filename
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "path with '..'"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "symbolic link"
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        return "path outside the destination"
    return None


def unpack_zip(archive: Path, root: Path) -> None:
    """Extract a .zip (the CycleGAN archives) into `root`, with the same guarantee as the
    tar path: every member is checked (no absolute path, no '..', no link, nothing that
    resolves outside `root`) BEFORE anything is written."""
    archive, root = Path(archive), Path(root)
    root.mkdir(parents=True, exist_ok=True)
    resolved_root = root.resolve()
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                reason = _unsafe_zip_member(member, resolved_root)
                if reason is not None:
                    raise DatasetError(
                        f"Refused to unpack {archive}: unsafe member {member.filename!r} ({reason}); nothing was extracted."
                    )
            bundle.extractall(root, members=members)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError) as error:
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


def check_unaligned_layout(dataset_dir: Path) -> dict[str, int]:
    """Count the images of each CycleGAN domain folder of `dataset_dir`; raise DatasetError
    saying what was found unless `trainA/` and `trainB/` both hold images."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        parent = dataset_dir.parent
        found = sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []
        raise DatasetError(f"Expected the dataset folder {dataset_dir}, not found; {parent} holds: {found or 'nothing'}")
    counts = {
        folder: sum(1 for p in (dataset_dir / folder).iterdir() if p.suffix.lower() in _LAYOUT_IMAGE_SUFFIXES)
        for folder in UNALIGNED_FOLDERS
        if (dataset_dir / folder).is_dir()
    }
    found = ", ".join(f"{folder}/ ({n} images)" for folder, n in counts.items()) or "no trainA/trainB/testA/testB folder"
    missing = [folder for folder in ("trainA", "trainB") if not counts.get(folder)]
    if missing:
        wanted = " and ".join(f"{folder}/*.jpg" for folder in missing)
        raise DatasetError(f"Bad layout in {dataset_dir}: expected {wanted}; found {found}")
    return counts


def describe(dataset_dir: Path, counts: dict[str, int]) -> str:
    splits = ", ".join(f"{split} {n} images" for split, n in counts.items())
    return f"{dataset_dir}: {splits}"


def download(
    name: str,
    root: Path | str = "datasets",
    url: str | None = None,
    keep_archive: bool = False,
    collection: str | None = None,
) -> dict[str, int]:
    """Fetch, unpack and check dataset `name` into `root/name`; returns the split (pix2pix)
    or domain-folder (CycleGAN) counts. `collection` picks pix2pix or cyclegan for the
    names both hold (default pix2pix)."""
    collection = resolve_collection(name, collection)
    if collection == "pix2pix":
        template, suffix, check = URL_TEMPLATE, ".tar.gz", check_layout
    else:
        template, suffix, check = CYCLEGAN_URL_TEMPLATE, ".zip", check_unaligned_layout
    root = Path(root)
    dataset_dir = root / name
    if dataset_dir.is_dir():
        try:
            return check(dataset_dir)
        except DatasetError:
            pass  # incomplete earlier attempt: unpack again over it
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{name}{suffix}"
    if not archive.exists():
        fetch(url or template.format(name=name), archive)
    unpack(archive, root)
    counts = check(dataset_dir)
    if not keep_archive:
        archive.unlink()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bicyclegan_pl.data.download",
        description=(
            "Download a pix2pix paired dataset (AB format) or a CycleGAN unpaired dataset "
            "(trainA/ trainB/ testA/ testB/) into ROOT/NAME."
        ),
    )
    parser.add_argument("name", choices=sorted({*DATASETS, *CYCLEGAN_DATASETS}))
    parser.add_argument("--root", default="datasets", help="parent folder of the dataset (default: datasets)")
    parser.add_argument("--url", default=None, help="download from this URL (a mirror) instead of the official one")
    parser.add_argument("--keep-archive", action="store_true", help="keep the .tar.gz / .zip after unpacking")
    parser.add_argument(
        "--collection",
        choices=COLLECTIONS,
        default=None,
        help="pix2pix (.tar.gz, AB pairs) or cyclegan (.zip, unpaired domains); needed only for maps, "
        "cityscapes and facades, which both hold (default: pix2pix for those)",
    )
    args = parser.parse_args(argv)
    try:
        counts = download(args.name, args.root, url=args.url, keep_archive=args.keep_archive, collection=args.collection)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"ready: {describe(Path(args.root) / args.name, counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
