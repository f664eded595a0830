"""The download command on small local archives: never touches the network."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from bicyclegan_pl.data import download as download_module
from bicyclegan_pl.data.download import DATASETS, URL_TEMPLATE, check_layout, download, fetch, main, unpack
from bicyclegan_pl.data.errors import DatasetError
from bicyclegan_pl.data.paired import PairedFolderDataset


def make_archive(tmp_path: Path, name: str, layout: dict[str, int], top: str | None = None) -> Path:
    """A .tar.gz laid out like the Berkeley archives: top/split/N_AB.jpg (tiny AB jpgs)."""
    source = tmp_path / "source"
    for split, count in layout.items():
        folder = source / (top or name) / split
        folder.mkdir(parents=True)
        for index in range(1, count + 1):
            Image.new("RGB", (16, 8), (index * 20, 0, 0)).save(folder / f"{index}_AB.jpg")
    archive = tmp_path / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / (top or name), arcname=top or name)
    return archive


def test_unpack_and_check_layout(tmp_path):
    archive = make_archive(tmp_path, "facades", {"train": 3, "val": 2, "test": 1})
    root = tmp_path / "datasets"
    unpack(archive, root)
    assert check_layout(root / "facades") == {"train": 3, "val": 2, "test": 1}
    dataset = PairedFolderDataset(root / "facades", "train", load_size=8, crop_size=8)
    assert len(dataset) == 3 and dataset[0]["A"].shape == (3, 8, 8)


def test_bad_layouts_say_what_was_found(tmp_path):
    no_val = tmp_path / "a"
    unpack(make_archive(tmp_path / "x", "maps", {"train": 2}), no_val)
    with pytest.raises(DatasetError, match=r"expected val/\*\.jpg or test/\*\.jpg; found train/ \(2 \.jpg\)"):
        check_layout(no_val / "maps")

    no_train = tmp_path / "b"
    unpack(make_archive(tmp_path / "y", "maps", {"val": 2}), no_train)
    with pytest.raises(DatasetError, match=r"expected train/\*\.jpg; found val/ \(2 \.jpg\)"):
        check_layout(no_train / "maps")

    wrong_top = tmp_path / "c"
    unpack(make_archive(tmp_path / "z", "maps", {"train": 1, "val": 1}, top="maps_v2"), wrong_top)
    with pytest.raises(DatasetError, match="maps_v2") as error:
        check_layout(wrong_top / "maps")
    assert str(wrong_top / "maps") in str(error.value)


def test_unsafe_archive_is_refused_before_writing_anything(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("evil/train/1_AB.jpg", "../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"data"))
    root = tmp_path / "deep" / "root"
    with pytest.raises(DatasetError, match="unsafe member"):
        unpack(archive, root)
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (root / "evil").exists()


def test_corrupt_archive_names_the_file(tmp_path):
    archive = tmp_path / "edges2shoes.tar.gz"
    archive.write_bytes(b"\x1f\x8b definitely not a gzip stream")
    with pytest.raises(DatasetError, match="Cannot unpack") as error:
        unpack(archive, tmp_path / "root")
    assert str(archive) in str(error.value)


def test_fetch_copies_a_file_url_and_leaves_no_partial_file(tmp_path):
    archive = make_archive(tmp_path, "facades", {"train": 1, "val": 1})
    destination = tmp_path / "out" / "facades.tar.gz"
    destination.parent.mkdir()
    assert fetch(archive.as_uri(), destination, chunk_size=64) == destination
    assert destination.read_bytes() == archive.read_bytes()
    assert list(destination.parent.iterdir()) == [destination]


def test_fetch_failure_names_the_url(tmp_path):
    missing = (tmp_path / "nowhere.tar.gz").as_uri()
    with pytest.raises(DatasetError, match="nowhere.tar.gz"):
        fetch(missing, tmp_path / "x.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_command_end_to_end_from_a_local_mirror(tmp_path, capsys, monkeypatch):
    archive = make_archive(tmp_path, "edges2shoes", {"train": 4, "val": 2})
    root = tmp_path / "datasets"
    assert main(["edges2shoes", "--root", str(root), "--url", archive.as_uri()]) == 0
    output = capsys.readouterr().out
    assert "train 4 images" in output and "val 2 images" in output
    assert not (root / "edges2shoes.tar.gz").exists()  # archive removed after unpacking
    assert len(PairedFolderDataset(root / "edges2shoes", "val")) == 2

    # a complete dataset is left alone: nothing is fetched again
    def no_network(*args, **kwargs):
        raise AssertionError("fetch called for a dataset that is already there")

    monkeypatch.setattr(download_module, "fetch", no_network)
    assert download("edges2shoes", root) == {"train": 4, "val": 2}


def test_command_reports_errors_without_traceback(tmp_path, capsys):
    archive = make_archive(tmp_path, "night2day", {"train": 2})  # no val/test split
    assert main(["night2day", "--root", str(tmp_path / "d"), "--url", archive.as_uri()]) == 1
    error = capsys.readouterr().err  # the progress bar also writes to stderr
    assert error.splitlines()[-1].startswith("error: Bad layout") and "Traceback" not in error
    with pytest.raises(SystemExit):
        main(["not_a_dataset"])


def test_official_urls():
    assert set(DATASETS) == {"edges2shoes", "edges2handbags", "facades", "maps", "night2day", "cityscapes"}
    assert URL_TEMPLATE.format(name="edges2shoes") == "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/edges2shoes.tar.gz"
