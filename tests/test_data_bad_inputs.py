"""Bad inputs that used to slip through: 16-bit and transparent files, tiny images, errors in
DataLoader workers, the setup scan (and its cache), and on_bad_image=skip."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from bicyclegan_pl.data import scan as scan_module
from bicyclegan_pl.data import screening
from bicyclegan_pl.data.datamodules import ColorizationDataModule, PairedFolderDataModule, UnpairedFolderDataModule
from bicyclegan_pl.data.errors import BadImageError, DatasetError
from bicyclegan_pl.data.images import open_rgb
from bicyclegan_pl.data.paired import PairedFolderDataset
from bicyclegan_pl.data.skipping import SKIPPED_IMAGES_FILE, count_skipped
from bicyclegan_pl.data.unpaired import UnpairedFolderDataset
from tests.helpers import TINY_NETS

REPO = Path(__file__).resolve().parents[1]
DATA_LOGGER = "bicyclegan_pl.data"


# ---------------------------------------------------------------- fixtures: files of every kind


def write_png16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (PIL cannot write 16-bit colour): (H, W) gray, (H, W, 3)
    RGB or (H, W, 4) RGBA, uint16."""
    color_type = 0 if array.ndim == 2 else {3: 2, 4: 6}[array.shape[2]]
    height, width = array.shape[:2]
    rows = b"".join(b"\x00" + array[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def gradient(size: int = 32) -> np.ndarray:
    """(size, size) uint8: 0 on the left to 255 on the right."""
    return np.tile(np.linspace(0, 255, size).round().astype(np.uint8), (size, 1))


def noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def truncated_jpeg(path: Path, height: int, width: int) -> Path:
    """A JPEG whose header opens (size known) but whose pixel data is cut off."""
    save(path, noise(height, width, 7), quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with Image.open(path) as picture:
        assert picture.size == (width, height)  # the header still reads: only decoding fails
    return path


def ab_folder(root: Path, train: int = 4, val: int = 2, size: int = 32) -> Path:
    """A pix2pix AB folder of `size` x 2`size` noise pairs."""
    for index in range(train):
        save(root / "train" / f"{index}_AB.png", noise(size, 2 * size, index))
    for index in range(val):
        save(root / "val" / f"{index}_AB.png", noise(size, 2 * size, 100 + index))
    return root


def warnings_about(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    """The warnings of the data package that name `path`."""
    records = [r for r in caplog.records if r.name == DATA_LOGGER and r.levelno >= logging.WARNING]
    return [r.getMessage() for r in records if str(path) in r.getMessage()]


def load_unpaired(path: Path, size: int = 32, **options: object) -> torch.Tensor:
    """Image `path` through the real unpaired loader (no crop, no flip): (3, H, W) in [-1, 1]."""
    return UnpairedFolderDataset([path], [path], load_size=size, crop_size=size, train=False, **options)[0]["A"]


# ---------------------------------------------------------------- 1. 16-bit files


def test_16bit_gray_png_gives_the_same_picture_as_its_8bit_version(tmp_path):
    eight = gradient()
    file_8 = save(tmp_path / "g8.png", eight)
    file_16 = write_png16(tmp_path / "g16.png", eight.astype(np.uint16) * 257)
    assert Image.open(file_16).mode == "I;16"  # what PIL clipped to white before
    assert torch.equal(load_unpaired(file_16), load_unpaired(file_8))

    # any 16-bit value: round(value / 257)
    full = np.tile(np.linspace(0, 65535, 32).round().astype(np.uint16), (32, 1))
    expected = save(tmp_path / "expected.png", np.rint(full / 257).astype(np.uint8))
    assert torch.equal(load_unpaired(write_png16(tmp_path / "full16.png", full)), load_unpaired(expected))


def test_16bit_ab_file_gives_the_same_pair_as_its_8bit_version(tmp_path):
    eight = np.concatenate([gradient(), gradient()[:, ::-1]], axis=1)  # A ramps up, B down
    save(tmp_path / "eight" / "train" / "0_AB.png", eight)
    write_png16(tmp_path / "sixteen" / "train" / "0_AB.png", eight.astype(np.uint16) * 257)
    items = [
        PairedFolderDataset(tmp_path / name, "train", load_size=32, crop_size=32, input_nc=1, train=False)[0]
        for name in ("eight", "sixteen")
    ]
    assert torch.equal(items[0]["A"], items[1]["A"]) and torch.equal(items[0]["B"], items[1]["B"])
    assert items[1]["A"].min() == -1.0  # not clipped to white


def test_16bit_rgb_and_32bit_and_float_files_scale_to_8_bits(tmp_path):
    eight = noise(8, 8, 1)
    rgb16 = write_png16(tmp_path / "rgb16.png", eight.astype(np.uint16) * 257)
    assert np.array_equal(np.asarray(open_rgb(rgb16)), eight)
    gray = gradient(8)
    wide = save(tmp_path / "i32.tif", gray.astype(np.int32) * 257)  # mode I with 16-bit values
    unit = save(tmp_path / "f.tif", gray.astype(np.float32) / 255)  # mode F in [0, 1]
    assert (Image.open(wide).mode, Image.open(unit).mode) == ("I", "F")
    for path in (wide, unit):
        assert np.array_equal(np.asarray(open_rgb(path))[..., 0], gray), path
    negative = save(tmp_path / "negative.tif", gray.astype(np.float32) - 300)
    with pytest.raises(BadImageError, match="fits neither the 8-bit nor the 16-bit range") as error:
        open_rgb(negative)
    assert error.value.path == negative


# ---------------------------------------------------------------- 2. colour modes and transparency


def test_right_conversions_stay_silent(tmp_path, caplog):
    colours = noise(8, 8, 2)
    opaque = np.concatenate([colours, np.full((8, 8, 1), 255, np.uint8)], axis=2)
    files = {
        "palette.png": Image.fromarray(colours).convert("P"),
        "opaque.png": Image.fromarray(opaque),  # RGBA, alpha 255 everywhere
        "gray.png": Image.fromarray(colours[..., 0]),
        "cmyk.tif": Image.fromarray(colours).convert("CMYK"),
    }
    caplog.set_level(logging.INFO, logger=DATA_LOGGER)
    for name, picture in files.items():
        picture.save(tmp_path / name)
        expected = np.asarray(picture.convert("RGB"))
        assert np.array_equal(np.asarray(open_rgb(tmp_path / name)), expected), name
    assert not [r for r in caplog.records if r.name == DATA_LOGGER], caplog.text


def test_transparent_pixels_are_composited_on_white_with_one_warning_per_file(tmp_path, caplog):
    black_transparent = np.zeros((8, 8, 4), np.uint8)
    black_transparent[:4, :, 3] = 255  # top half opaque black, bottom half transparent (stored black)
    palette = Image.fromarray(np.zeros((8, 8, 3), np.uint8)).convert("P")
    palette.info["transparency"] = 0  # the only colour, black, is transparent
    paths = [tmp_path / "rgba.png", tmp_path / "la.png", tmp_path / "palette.png"]
    Image.fromarray(black_transparent).save(paths[0])
    gray_alpha = Image.fromarray(np.zeros((8, 8), np.uint8))
    gray_alpha.putalpha(128)  # LA: black at 50% opacity
    gray_alpha.save(paths[1])
    palette.save(paths[2])
    assert [Image.open(p).mode for p in paths] == ["RGBA", "LA", "P"]

    caplog.set_level(logging.WARNING, logger=DATA_LOGGER)
    rgba = np.asarray(open_rgb(paths[0]))
    assert (rgba[:4] == 0).all() and (rgba[4:] == 255).all()  # black stays, transparent becomes white
    assert np.abs(np.asarray(open_rgb(paths[1])).astype(int) - 127).max() <= 1  # 50% black on white
    assert (np.asarray(open_rgb(paths[2])) == 255).all()
    for _ in range(3):  # every epoch reads the files again: still one warning each
        for path in paths:
            load_unpaired(path, size=8)
    for path in paths:
        messages = warnings_about(caplog, path)
        assert len(messages) == 1 and "composited on a white background" in messages[0], messages


# ---------------------------------------------------------------- 3. images far smaller than the crop


def test_small_images_warn_once_and_tiny_ones_are_refused(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=DATA_LOGGER)
    small = save(tmp_path / "small.png", noise(8, 10, 3))  # crop 32: smaller than half, >= 32 // 8
    for _ in range(2):
        load_unpaired(small)
    messages = warnings_about(caplog, small)
    assert len(messages) == 1 and "10x8" in messages[0] and "crop of 32 px" in messages[0]

    tiny = save(tmp_path / "tiny.png", noise(3, 30, 4))  # shorter side 3 < 32 // 8
    with pytest.raises(BadImageError, match="too small") as error:
        load_unpaired(tiny)
    assert str(tiny) in str(error.value) and "30x3" in str(error.value) and "min_image_size=4" in str(error.value)
    load_unpaired(tiny, min_image_size=3)  # the threshold is an option
    with pytest.raises(ValueError, match="min_image_size"):
        UnpairedFolderDataModule(tmp_path, tmp_path, crop_size=32, load_size=32, min_image_size=0)


def test_ab_files_are_judged_by_their_half(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=DATA_LOGGER)
    root = tmp_path / "pairs"
    half_small = save(root / "train" / "small_AB.png", noise(8, 16, 5))  # halves 8x8 for a 32 crop
    dataset = PairedFolderDataset(root, "train", load_size=32, crop_size=32, train=False)
    dataset[0]
    messages = warnings_about(caplog, half_small)
    assert len(messages) == 1 and "each half of this AB pair is 8x8" in messages[0]
    tiny = save(root / "train" / "tiny_AB.png", noise(3, 6, 6))  # halves 3x3 < 4
    dataset = PairedFolderDataset(root, "train", load_size=32, crop_size=32, train=False)
    with pytest.raises(BadImageError, match="each half of this AB pair is 3x3"):
        dataset[dataset.paths.index(tiny)]


# ---------------------------------------------------------------- 4. errors raised in DataLoader workers


def test_a_worker_error_reaches_the_main_process_as_its_one_line_message(tmp_path):
    good = save(tmp_path / "good.png", noise(32, 32, 1))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    dataset = UnpairedFolderDataset([good, broken], [good], load_size=32, crop_size=32, train=False)
    with pytest.raises(BadImageError) as in_process:
        dataset[1]
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    with pytest.raises(DatasetError) as from_worker:
        next(iter(loader))
    message = str(from_worker.value)
    assert message == str(in_process.value)  # not torch's "Caught ... in DataLoader worker process"
    assert "Traceback" not in message and "\n" not in message and str(broken) in message
    assert type(from_worker.value) is BadImageError


# ---------------------------------------------------------------- 5. the setup scan and its cache


def test_scan_at_setup_names_the_first_bad_file_and_counts_the_others(tmp_path):
    root = ab_folder(tmp_path / "pairs")
    (root / "train" / "5_AB.jpg").write_bytes(b"garbage")
    save(root / "train" / "6_AB.png", noise(32, 32, 6))  # square: not an AB pair
    save(root / "val" / "7_AB.png", noise(2, 4, 7))  # halves 2x2: too small for a 32 crop
    datamodule = PairedFolderDataModule(root, load_size=32, crop_size=32, batch_size=2, num_workers=0)
    with pytest.raises(BadImageError, match="Cannot read image") as error:
        datamodule.setup("fit")  # at setup, before any training step
    assert str(root / "train" / "5_AB.jpg") in str(error.value)
    assert "2 more bad image files" in str(error.value) and "on_bad_image=skip" in str(error.value)


def test_scan_is_cached_per_folder_and_rereads_only_changed_files(tmp_path, monkeypatch):
    root = ab_folder(tmp_path / "pairs", train=3, val=1)
    reads: list[Path] = []
    real_read = scan_module.read_header
    monkeypatch.setattr(scan_module, "read_header", lambda path: reads.append(path) or real_read(path))

    def setup() -> None:
        PairedFolderDataModule(root, load_size=32, crop_size=32, num_workers=0, cache_dir=tmp_path / "cache").setup("fit")

    setup()
    assert len(reads) == 4 and (root / scan_module.CACHE_NAME).is_file()  # writable dataset folder: kept there
    reads.clear()
    setup()
    assert reads == []  # unchanged files: from the cache
    changed = root / "train" / "1_AB.png"
    save(changed, noise(32, 64, 99))
    os.utime(changed, ns=(1, 1))
    setup()
    assert reads == [changed]

    (root / scan_module.CACHE_NAME).unlink()
    reads.clear()
    root.chmod(0o555)  # a read-only dataset: the cache goes to cache_dir
    try:
        setup()
        setup()
    finally:
        root.chmod(0o755)
    assert len(reads) == 4 and not (root / scan_module.CACHE_NAME).exists()
    assert len(list((tmp_path / "cache" / "image_scan").glob("pairs-*.json"))) == 1


def test_scan_option_auto_stops_at_the_limit(tmp_path, monkeypatch):
    root = ab_folder(tmp_path / "pairs", train=3, val=1)
    (root / "train" / "9_AB.jpg").write_bytes(b"garbage")
    monkeypatch.setattr(screening, "AUTO_SCAN_LIMIT", 4)  # 5 files: too many for auto
    PairedFolderDataModule(root, load_size=32, crop_size=32, num_workers=0).setup("fit")  # no scan
    PairedFolderDataModule(root, load_size=32, crop_size=32, num_workers=0, scan=False).setup("fit")
    with pytest.raises(BadImageError, match="9_AB.jpg"):
        PairedFolderDataModule(root, load_size=32, crop_size=32, num_workers=0, scan=True).setup("fit")
    with pytest.raises(ValueError, match="scan must be auto, true or false"):
        PairedFolderDataModule(root, scan="sometimes")
    with pytest.raises(ValueError, match="on_bad_image"):
        PairedFolderDataModule(root, on_bad_image="ignore")


# ---------------------------------------------------------------- 6. on_bad_image=skip


def test_skip_leaves_out_bad_files_and_replaces_items_that_fail_to_load(tmp_path):
    folder_a = tmp_path / "a"
    good = [save(folder_a / f"{index}.png", noise(32, 32, index)) for index in range(4)]
    (folder_a / "5_garbage.jpg").write_bytes(b"garbage")  # found by the scan
    truncated = truncated_jpeg(folder_a / "6_truncated.jpg", 32, 32)  # header fine: found when loaded
    save(tmp_path / "b" / "0.png", noise(32, 32, 50))
    save(tmp_path / "b" / "1.png", noise(32, 32, 51))
    log_dir = tmp_path / "run"
    datamodule = UnpairedFolderDataModule(
        folder_a, tmp_path / "b", val_a=folder_a, val_b=tmp_path / "b", load_size=32, crop_size=32,
        num_workers=0, on_bad_image="skip", log_dir=log_dir,
    )
    datamodule.setup("fit")
    assert datamodule.splits.train_a == [*good, truncated]  # the garbage file is gone before training
    position = len(good)  # the truncated file's item
    first = datamodule.train_set[position]
    assert first["A_path"] == str(good[0])  # replaced by the next item (wrapping around)
    assert datamodule.train_set[position]["A_path"] == first["A_path"]  # deterministic
    epoch_two = datamodule.train_set[len(datamodule.train_set) + position]  # an index carrying epoch 1
    assert epoch_two["A_path"] == str(good[0]) and epoch_two["index"] == 0
    lines = (log_dir / SKIPPED_IMAGES_FILE).read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(folder_a / "5_garbage.jpg"), str(truncated)]
    assert "Cannot read image" in lines[0] and "truncated" in lines[1]
    assert count_skipped(log_dir / SKIPPED_IMAGES_FILE) == 2


def test_skip_with_every_file_bad_says_so(tmp_path):
    photos = tmp_path / "photos"
    for index in range(3):
        (photos / f"{index}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (photos / f"{index}.jpg").write_bytes(b"garbage")
    datamodule = ColorizationDataModule(photos, load_size=32, crop_size=32, num_workers=0, on_bad_image="skip")
    with pytest.raises(DatasetError, match="is bad"):
        datamodule.setup("fit")


# ---------------------------------------------------------------- the real entry point


def run_train(cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BICYCLEGAN_CACHE": str(cache)}  # a cache of its own (offline: conftest.py)
    return subprocess.run(
        [sys.executable, "-m", "bicyclegan_pl.train", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


TINY_PAIRED = [
    "data=edges2shoes", *TINY_NETS, "data.batch_size=2", "data.num_workers=2", "trainer.max_epochs=1",
    "logger=csv", "callbacks.metrics=null", "callbacks.sample_grid.num_inputs=2", "callbacks.sample_grid.num_samples=2",
]


def test_train_cli_reports_an_image_that_fails_in_a_worker_in_one_line(tmp_path):
    root = ab_folder(tmp_path / "shoes", train=3, val=2)
    broken = truncated_jpeg(root / "train" / "3_AB.jpg", 32, 64)  # passes the header scan, fails in a worker
    result = run_train(tmp_path / "cache", *TINY_PAIRED, f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and str(broken) in error_lines[0] and "Cannot read image" in error_lines[0]


def test_train_cli_skips_bad_images_lists_them_and_counts_them_every_epoch(tmp_path):
    root = ab_folder(tmp_path / "shoes", train=3, val=2)
    garbage = root / "train" / "4_AB.jpg"
    garbage.write_bytes(b"garbage")
    small = save(root / "train" / "5_AB.png", noise(2, 4, 5))  # halves 2x2 < 32 // 8
    square = save(root / "val" / "6_AB.png", noise(32, 32, 6))
    truncated = truncated_jpeg(root / "train" / "3_AB.jpg", 32, 64)  # found in a worker
    run_dir = tmp_path / "run"
    result = run_train(
        tmp_path / "cache", *TINY_PAIRED, f"data.root={root}", "data.on_bad_image=skip", "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (run_dir / SKIPPED_IMAGES_FILE).read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == sorted(map(str, [garbage, small, square, truncated]))
    # the count after each training epoch, in the console and the run's log
    for epoch in (0, 1):
        assert f"epoch {epoch}: 4 image file(s) skipped so far" in result.stdout, result.stdout[-3000:]
    assert "data/skipped_images" in (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
