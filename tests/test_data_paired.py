"""Paired pix2pix "AB" folders: direction, joint crop/flip, channels, errors, real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from bicyclegan_pl.data.datamodules import PairedFolderDataModule
from bicyclegan_pl.data.errors import DatasetError
from bicyclegan_pl.data.paired import PairedFolderDataset

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EDGES2SHOES_MINI = SHARED_DATA / "edges2shoes_mini"


def normalised(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 -> (C, H, W) float in [-1, 1], like the dataset's output."""
    return torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0


def close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal up to float rounding (the dataset scales by 1/255 then normalises)."""
    return torch.allclose(actual, expected, rtol=0.0, atol=1e-6)


def write_ab(path: Path, left: np.ndarray, right: np.ndarray) -> None:
    """Save an AB file (lossless PNG so pixel values survive exactly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)


def colour_left_gray_right(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Left: a colourful, horizontally asymmetric noise image; right: a grayscale image
    whose every channel equals the left's red channel. So after identical crop and flip,
    A's red channel equals B exactly; a different crop or flip for B breaks the equality."""
    rng = np.random.default_rng(seed)
    pattern = rng.integers(0, 256, (size, size), dtype=np.uint8)
    left = np.stack([pattern, 255 - pattern, np.full_like(pattern, 40)], axis=-1)
    right = np.repeat(pattern[..., None], 3, axis=-1)
    return left, right


@pytest.fixture
def ab_root(tmp_path) -> Path:
    root = tmp_path / "pairs"
    for index in range(6):
        write_ab(root / "train" / f"{index}_AB.png", *colour_left_gray_right(16, index))
    for index in range(3):
        write_ab(root / "val" / f"{index}_AB.png", *colour_left_gray_right(16, 100 + index))
    return root


def test_direction_selects_which_half_is_the_input(ab_root):
    left, right = colour_left_gray_right(16, 0)
    forward = PairedFolderDataset(ab_root, "train", "AtoB", load_size=16, crop_size=16, train=False)[0]
    backward = PairedFolderDataset(ab_root, "train", "BtoA", load_size=16, crop_size=16, train=False)[0]
    assert close(forward["A"], normalised(left)) and close(forward["B"], normalised(right))
    assert close(backward["A"], normalised(right)) and close(backward["B"], normalised(left))
    assert forward["path"] == backward["path"] == str(ab_root / "train" / "0_AB.png")


def test_flip_is_identical_for_a_and_b(ab_root):
    left, _ = colour_left_gray_right(16, 0)
    original = normalised(left)[0]
    dataset = PairedFolderDataset(ab_root, "train", "AtoB", load_size=16, crop_size=16, train=True)
    flipped_seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        item = dataset[0]
        red = item["A"][0]
        assert torch.equal(red, item["B"][0])  # B went through the same flip
        is_flipped = close(red, original.flip(-1))
        assert is_flipped or close(red, original)
        flipped_seen.add(is_flipped)
    assert flipped_seen == {True, False}  # flips happen, and not always


def test_random_crop_is_identical_for_a_and_b(ab_root):
    dataset = PairedFolderDataset(ab_root, "train", "AtoB", load_size=24, crop_size=12, train=True, flip=False)
    crops = set()
    for seed in range(12):
        torch.manual_seed(seed)
        item = dataset[1]
        assert item["A"].shape == (3, 12, 12) and item["B"].shape == (3, 12, 12)
        assert torch.equal(item["A"][0], item["B"][0])
        crops.add(tuple(item["A"][0, 0].tolist()))
    assert len(crops) > 3  # the crop position varies from call to call


def test_validation_resizes_and_centre_crops_without_randomness(ab_root):
    dataset = PairedFolderDataset(ab_root, "val", "AtoB", load_size=24, crop_size=12, train=False)
    outputs = []
    for seed in range(5):
        torch.manual_seed(seed)
        outputs.append(dataset[0]["A"])
    assert all(torch.equal(outputs[0], other) for other in outputs)
    assert outputs[0].shape == (3, 12, 12)


def test_one_channel_input_and_output_are_grayscale(ab_root):
    left, right = colour_left_gray_right(16, 0)
    item = PairedFolderDataset(ab_root, "train", "AtoB", 16, 16, input_nc=1, output_nc=1, train=False)[0]
    assert item["A"].shape == (1, 16, 16) and item["B"].shape == (1, 16, 16)
    luma = (left.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[..., None]
    assert torch.allclose(item["A"], normalised(luma), atol=2.5 / 127.5)
    assert torch.allclose(item["B"], normalised(right[..., :1]), atol=1.5 / 127.5)
    assert item["A"].min() >= -1 and item["A"].max() <= 1


def test_missing_dataset_names_the_path_and_the_download_command(tmp_path):
    root = tmp_path / "datasets" / "edges2shoes"
    with pytest.raises(DatasetError) as error:
        PairedFolderDataset(root)
    message = str(error.value)
    assert str(root) in message
    assert f"python -m bicyclegan_pl.data.download edges2shoes --root {tmp_path / 'datasets'}" in message


def test_missing_split_and_empty_folder_name_the_folder(tmp_path):
    root = tmp_path / "my_pairs"
    (root / "val").mkdir(parents=True)
    with pytest.raises(DatasetError, match="Split folder not found") as error:
        PairedFolderDataset(root, "train")
    assert str(root / "train") in str(error.value) and "val" in str(error.value)
    (root / "train").mkdir()
    (root / "train" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match="No images") as error:
        PairedFolderDataset(root, "train")
    assert str(root / "train") in str(error.value)


def test_corrupt_and_truncated_images_name_the_file(ab_root):
    garbage = ab_root / "train" / "9_AB.jpg"
    garbage.write_bytes(b"this is not a jpeg")
    dataset = PairedFolderDataset(ab_root, "train", load_size=16, crop_size=16)
    with pytest.raises(DatasetError, match="Cannot read image") as error:
        dataset[dataset.paths.index(garbage)]
    assert str(garbage) in str(error.value)

    truncated = ab_root / "train" / "8_AB.jpg"
    Image.fromarray(np.concatenate(colour_left_gray_right(64, 1), axis=1)).save(truncated, quality=95)
    truncated.write_bytes(truncated.read_bytes()[:600])
    dataset = PairedFolderDataset(ab_root, "train", load_size=16, crop_size=16)
    with pytest.raises(DatasetError) as error:
        dataset[dataset.paths.index(truncated)]
    assert str(truncated) in str(error.value)


def test_wrongly_shaped_image_names_the_file_and_its_size(ab_root):
    square = ab_root / "train" / "7_AB.png"
    Image.new("RGB", (30, 20), "white").save(square)
    dataset = PairedFolderDataset(ab_root, "train", load_size=16, crop_size=16)
    with pytest.raises(DatasetError, match="30x20") as error:
        dataset[dataset.paths.index(square)]
    assert str(square) in str(error.value)


def test_datamodule_batches_and_eval_split_fallback(ab_root):
    (ab_root / "val").rename(ab_root / "test")  # some sets only have test/
    datamodule = PairedFolderDataModule(
        ab_root, load_size=16, crop_size=16, input_nc=1, output_nc=3, batch_size=4, num_workers=0, val_size=2
    )
    assert (datamodule.input_nc, datamodule.output_nc) == (1, 3)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 1  # 6 files, batch 4: the partial batch is dropped
    assert set(batches[0]) == {"A", "B", "path"}
    assert batches[0]["A"].shape == (4, 1, 16, 16) and batches[0]["B"].shape == (4, 3, 16, 16)
    assert len(batches[0]["path"]) == 4
    val_paths = [p for batch in datamodule.val_dataloader() for p in batch["path"]]
    assert val_paths == [str(ab_root / "test" / "0_AB.png"), str(ab_root / "test" / "1_AB.png")]


def test_datamodule_reports_a_missing_dataset_at_setup(tmp_path):
    datamodule = PairedFolderDataModule(tmp_path / "facades", num_workers=0)  # constructing is fine
    with pytest.raises(DatasetError, match="download facades"):
        datamodule.setup("fit")


def test_edges2shoes_config_reads_the_left_edges_as_grayscale_inputs_at_256_px(tmp_path):
    """conf/data/edges2shoes.yaml on <paths.data_dir>/edges2shoes in the official layout (edge map
    left, photo right): training batches of 2, a one-channel input from the left half and the
    three-channel right half as target, both at 256 px, in training and validation."""
    black_edges, white_photo = np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)
    for split in ("train", "val"):
        for index in range(2):
            write_ab(tmp_path / "edges2shoes" / split / f"{index}_AB.png", black_edges, white_photo)
    config = OmegaConf.create(
        {"seed": 3, "paths": {"data_dir": str(tmp_path)}, "data": OmegaConf.load(CONF_DIR / "edges2shoes.yaml")}
    )
    for key in ("crop_size", "input_nc", "output_nc", "batch_size"):  # the model configs read them
        assert key in config.data
    config.data.num_workers = 0
    datamodule = instantiate(config.data)
    datamodule.setup("fit")
    assert next(iter(datamodule.train_dataloader()))["A"].shape[0] == 2
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader()):
        batch = next(iter(loader))
        assert batch["A"].shape[1:] == (1, 256, 256) and batch["B"].shape[1:] == (3, 256, 256)
        assert close(batch["A"], torch.full_like(batch["A"], -1.0)) and close(batch["B"], torch.ones_like(batch["B"]))


@pytest.mark.skipif(not EDGES2SHOES_MINI.is_dir(), reason=f"real sample data not present at {EDGES2SHOES_MINI}")
def test_real_edges2shoes_mini_needs_btoa_for_edges_to_photos():
    def channel_spread(image: torch.Tensor) -> float:
        return float((image.max(0).values - image.min(0).values).max())

    backward = PairedFolderDataset(EDGES2SHOES_MINI, "train", "BtoA", 256, 256, input_nc=3, output_nc=3, train=False)
    forward = PairedFolderDataset(EDGES2SHOES_MINI, "train", "AtoB", 256, 256, input_nc=3, output_nc=3, train=False)
    assert len(backward) == 1000
    spreads_a, spreads_b = [], []
    for index in range(16):
        item = backward[index]
        assert item["A"].shape == item["B"].shape == (3, 256, 256)
        spreads_a.append(channel_spread(item["A"]))
        spreads_b.append(channel_spread(item["B"]))
        assert torch.equal(forward[index]["A"], item["B"])  # AtoB swaps them back
    assert max(spreads_a) < 0.05, spreads_a  # A: grayscale edge maps
    assert sum(spread > 0.2 for spread in spreads_b) >= 10, spreads_b  # B: colour photos (some shoes are gray)
