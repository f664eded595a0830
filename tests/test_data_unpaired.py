"""Unpaired folders for CycleGAN: layouts, holdout, B draws, colorization, errors, zip download, real files."""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from bicyclegan_pl.data import download as download_module
from bicyclegan_pl.data.datamodules import (
    ColorizationDataModule,
    GTA2CityscapesDataModule,
    Monet2PhotoDataModule,
    UnpairedFolderDataModule,
)
from bicyclegan_pl.data.download import (
    CYCLEGAN_DATASETS,
    CYCLEGAN_URL_TEMPLATE,
    DATASETS,
    check_unaligned_layout,
    main,
    resolve_collection,
    unpack,
)
from bicyclegan_pl.data.errors import DatasetError
from bicyclegan_pl.data.unpaired import ColorizationDataset, UnpairedFolderDataset, holdout_split, list_images

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MONET2PHOTO_MINI = SHARED_DATA / "monet2photo_mini"


def noise(height: int, width: int, seed: int) -> np.ndarray:
    """A colourful (H, W, 3) uint8 image, different for every seed."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_images(
    folder: Path,
    count: int,
    size: tuple[int, int] = (40, 40),
    suffix: str = ".png",
    first_seed: int = 0,
    name: str = "{index:04d}",
) -> list[Path]:
    """`count` noise images in `folder` (PNG keeps pixel values exact); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / (name.format(index=index) + suffix)
        Image.fromarray(noise(size[1], size[0], first_seed + index)).save(path)
        paths.append(path)
    return paths


def normalised(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W, C) uint8 array (or a (C, H, W) uint8 tensor) -> (C, H, W) float in [-1, 1]."""
    tensor = torch.from_numpy(array).permute(2, 0, 1) if isinstance(array, np.ndarray) else array
    return tensor.float() / 127.5 - 1.0


def pixels(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


def close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    return torch.allclose(actual, expected, rtol=0.0, atol=1e-6)


@pytest.fixture
def cyclegan_root(tmp_path) -> Path:
    root = tmp_path / "datasets" / "monet2photo"
    write_images(root / "trainA", 5, first_seed=0)
    write_images(root / "trainB", 8, first_seed=100)
    write_images(root / "testA", 2, first_seed=200)
    write_images(root / "testB", 3, first_seed=300)
    return root


def test_cyclegan_layout_trains_on_train_folders_and_validates_on_test_folders(cyclegan_root):
    datamodule = Monet2PhotoDataModule(cyclegan_root, load_size=40, crop_size=32, batch_size=2, num_workers=0)
    datamodule.setup("fit")
    splits = datamodule.splits
    assert splits.train_a == sorted((cyclegan_root / "trainA").iterdir())
    assert splits.val_b == sorted((cyclegan_root / "testB").iterdir())
    assert len(datamodule.train_set) == 8 and len(datamodule.val_set) == 3  # max of the domain sizes

    batch = next(iter(datamodule.train_dataloader()))
    assert batch["A"].shape == batch["B"].shape == (2, 3, 32, 32)
    assert batch["A"].dtype == torch.float32 and -1.0 <= batch["A"].min() and batch["B"].max() <= 1.0
    assert all(Path(path).parent.name == "trainA" for path in batch["A_path"])

    # evaluation: resized (a no-op at 40 px) and centre cropped, values as in the files
    item = datamodule.val_set[1]
    assert item["A_path"] == str(cyclegan_root / "testA" / "0001.png")
    assert item["B_path"] == str(cyclegan_root / "testB" / "0001.png")
    assert close(item["A"], normalised(pixels(cyclegan_root / "testA" / "0001.png")[4:36, 4:36]))
    assert close(item["B"], normalised(pixels(cyclegan_root / "testB" / "0001.png")[4:36, 4:36]))


def test_a_domain_without_test_folder_validates_on_its_holdout(cyclegan_root):
    for path in (cyclegan_root / "testB").iterdir():
        path.unlink()
    (cyclegan_root / "testB").rmdir()
    datamodule = Monet2PhotoDataModule(cyclegan_root, load_size=32, crop_size=32, num_workers=0, holdout=0.25)
    datamodule.setup("fit")
    splits = datamodule.splits
    assert [p.parent.name for p in splits.val_a] == ["testA", "testA"]  # A keeps its test folder
    assert len(splits.val_b) == 2 and len(splits.train_b) == 6  # round(0.25 * 8) held out of trainB
    assert not set(splits.val_b) & set(splits.train_b)
    assert set(datamodule.train_set.files_b) == set(splits.train_b)


def test_kaggle_layout_loads_with_a_holdout_per_domain(tmp_path):
    root = tmp_path / "gan-getting-started"
    monet = write_images(root / "monet_jpg", 6, suffix=".jpg")
    photos = write_images(root / "photo_jpg", 12, size=(48, 48), suffix=".jpg", first_seed=50)
    (root / "monet_tfrec").mkdir()  # the Kaggle download also holds TFRecords: ignored
    datamodule = Monet2PhotoDataModule(root, load_size=36, crop_size=32, num_workers=0, input_nc=1)
    datamodule.setup("fit")
    splits = datamodule.splits
    assert (len(splits.train_a), len(splits.val_a), len(splits.train_b), len(splits.val_b)) == (5, 1, 11, 1)
    assert set(splits.train_a) | set(splits.val_a) == set(monet)
    assert set(splits.train_b) | set(splits.val_b) == set(photos)
    assert len(datamodule.train_set) == 11 and len(datamodule.val_set) == 1
    item = datamodule.train_set[3]
    assert item["A"].shape == (1, 32, 32) and item["B"].shape == (3, 32, 32)  # input_nc=1: grayscale A
    assert Path(item["A_path"]).parent.name == "monet_jpg" and Path(item["B_path"]).parent.name == "photo_jpg"
    assert -1.0 <= item["B"].min() < item["B"].max() <= 1.0


def test_holdout_is_deterministic_disjoint_and_independent_of_seed_and_location(tmp_path):
    files = write_images(tmp_path / "here" / "photos", 30, size=(32, 32))
    train, val = holdout_split(files, tmp_path / "here" / "photos", 0.2)
    assert len(val) == 6 and len(train) == 24
    assert not set(train) & set(val) and set(train) | set(val) == set(files)
    assert train == sorted(train) and val == sorted(val)
    assert val != files[-6:]  # hashed, not simply the last files by name
    assert holdout_split(list(reversed(files)), tmp_path / "here" / "photos", 0.2) == (train, val)
    # the same files elsewhere: the same names are held out
    moved = tmp_path / "elsewhere" / "photos"
    moved.parent.mkdir()
    (tmp_path / "here" / "photos").rename(moved)
    moved_files = list_images(moved, "")
    _, moved_val = holdout_split(moved_files, moved, 0.2)
    assert [p.name for p in moved_val] == [p.name for p in val]
    # at least one file is held out; at least one stays for training
    assert [len(part) for part in holdout_split(moved_files[:3], moved, 0.1)] == [2, 1]
    assert [len(part) for part in holdout_split(moved_files[:2], moved, 0.9)] == [1, 1]

    other = write_images(tmp_path / "b", 10, size=(32, 32))
    splits = []
    for seed in (0, 7):
        datamodule = UnpairedFolderDataModule(moved, tmp_path / "b", seed=seed, load_size=32, crop_size=32, num_workers=0)
        datamodule.setup("fit")
        splits.append(datamodule.splits)
        assert not set(datamodule.train_set.files_a) & set(datamodule.val_set.files_a)  # held out = not trained on
        assert not set(datamodule.train_set.files_b) & set(datamodule.val_set.files_b)
    assert splits[0] == splits[1]
    assert len(splits[0].val_b) == 1 and set(splits[0].train_b) | set(splits[0].val_b) == set(other)


def test_separate_validation_folders_replace_the_holdout(tmp_path):
    write_images(tmp_path / "a", 4, size=(32, 32))
    write_images(tmp_path / "b", 6, size=(32, 32))
    val_a = write_images(tmp_path / "va", 2, size=(32, 32), first_seed=9)
    datamodule = UnpairedFolderDataModule(
        tmp_path / "a", tmp_path / "b", val_a=tmp_path / "va", load_size=32, crop_size=32, num_workers=0, val_size=1
    )
    datamodule.setup("fit")
    assert datamodule.splits.val_a == val_a and len(datamodule.splits.train_a) == 4
    assert len(datamodule.splits.train_b) == 5 and len(datamodule.splits.val_b) == 1
    assert len(datamodule.val_set) == 1 and datamodule.val_set[0]["A_path"] == str(val_a[0])  # val_size: first N


def test_training_b_is_random_balanced_and_a_function_of_seed_and_index(tmp_path):
    files_a = write_images(tmp_path / "a", 3, size=(32, 32))
    files_b = write_images(tmp_path / "b", 7, size=(32, 32), first_seed=10)
    dataset = UnpairedFolderDataset(files_a, files_b, load_size=32, crop_size=32, seed=0)
    assert len(dataset) == 7  # max(3, 7)
    draws = [dataset.b_index(index) for index in range(7)]
    assert sorted(draws) == list(range(7))  # every B once per epoch
    assert [dataset[index]["A_path"] for index in range(7)] == [str(files_a[index % 3]) for index in range(7)]

    # a fresh copy (another worker, rank or a resumed run), read in another order, agrees
    again = UnpairedFolderDataset(files_a, files_b, load_size=32, crop_size=32, seed=0)
    assert [again.b_index(index) for index in reversed(range(7))] == draws[::-1]
    assert again[5]["B_path"] == str(files_b[draws[5]])
    # other seeds draw other assignments
    by_seed = {
        tuple(UnpairedFolderDataset(files_a, files_b, 32, 32, seed=seed).b_index(i) for i in range(7)) for seed in range(6)
    }
    assert len(by_seed) >= 5

    # more A than B: blocks of len(B) items, each a permutation of B
    wide = UnpairedFolderDataset(files_b, files_a, load_size=32, crop_size=32, seed=3)
    assert len(wide) == 7
    draws = [wide.b_index(index) for index in range(7)]
    assert sorted(draws[:3]) == sorted(draws[3:6]) == [0, 1, 2]
    assert min(Counter(draws).values()) >= 2


def test_each_epoch_pairs_a_with_other_b_through_the_sampler(cyclegan_root):
    """As the reference's per-access randint: an A image meets other B images in other epochs,
    while each epoch still shows every B; the epoch travels in the sampler's indices, so workers,
    ranks and resumed runs (which set the sampler's epoch) agree."""
    from torch.utils.data import DistributedSampler

    from bicyclegan_pl.data.unpaired import EpochIndexedSampler

    datamodule = Monet2PhotoDataModule(root=cyclegan_root, load_size=32, crop_size=32, batch_size=2, num_workers=0)
    sampler = datamodule.train_dataloader().sampler
    assert isinstance(sampler, EpochIndexedSampler)
    dataset = datamodule.train_set  # 5 A, 8 B: epochs of 8 items
    plain = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=True)
    pairs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        plain.set_epoch(epoch)
        indices = list(sampler)
        assert indices == [index + 8 * epoch for index in plain]  # the same shuffle, the epoch added
        items = {dataset[index]["index"]: dataset[index] for index in indices}
        assert sorted(items) == list(range(8))
        assert sorted(item["B_path"] for item in items.values()) == sorted(str(p) for p in dataset.files_b)
        assert [items[i]["A_path"] for i in range(8)] == [str(dataset.files_a[i % 5]) for i in range(8)]
        pairs.append([items[i]["B_path"] for i in range(8)])
    assert pairs[0] != pairs[1] and pairs[1] != pairs[2]
    again = Monet2PhotoDataModule(root=cyclegan_root, load_size=32, crop_size=32, batch_size=2, num_workers=0)
    again.setup("fit")
    assert [again.train_set[8 + i]["B_path"] for i in range(8)] == pairs[1]  # a fresh copy (resume) agrees
    with pytest.raises(IndexError):
        datamodule.val_set[len(datamodule.val_set)]  # validation indices stay in range


def test_colorization_partner_changes_every_epoch_and_is_never_the_photo_itself(tmp_path):
    photos = write_images(tmp_path / "photos", 6, size=(32, 32))
    dataset = ColorizationDataset(photos, 32, 32, seed=1)
    epochs = [[dataset.b_index(epoch * 6 + i) for i in range(6)] for epoch in range(3)]
    for partners in epochs:
        assert sorted(partners) == list(range(6)) and all(b != i for i, b in enumerate(partners))
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
    assert dataset[6 + 2]["A_path"] == str(photos[2]) and dataset[6 + 2]["index"] == 2


def test_validation_b_is_fixed(tmp_path):
    files_a = write_images(tmp_path / "a", 2, size=(40, 40))
    files_b = write_images(tmp_path / "b", 5, size=(40, 40), first_seed=10)
    dataset = UnpairedFolderDataset(files_a, files_b, load_size=36, crop_size=32, train=False, seed=4)
    assert [dataset.b_index(index) for index in range(5)] == [0, 1, 2, 3, 4]
    first = dataset[3]
    for seed in range(3):
        torch.manual_seed(seed)  # no randomness in evaluation
        item = dataset[3]
        assert torch.equal(item["A"], first["A"]) and torch.equal(item["B"], first["B"])
    assert first["A_path"] == str(files_a[1]) and first["B_path"] == str(files_b[3])
    assert first["A"].shape == first["B"].shape == (3, 32, 32)


def test_training_crops_and_flips_each_domain_independently(tmp_path):
    # A and B are the same picture: identical crops would give identical tensors
    files = write_images(tmp_path / "a", 1, size=(40, 40))
    dataset = UnpairedFolderDataset(files, files, load_size=40, crop_size=24, train=True)
    differ = 0
    for seed in range(6):
        torch.manual_seed(seed)
        item = dataset[0]
        assert item["A"].shape == item["B"].shape == (3, 24, 24)
        differ += not torch.equal(item["A"], item["B"])
    assert differ >= 5


@pytest.fixture
def gta_cityscapes(tmp_path) -> tuple[Path, Path]:
    """GTA5 and Cityscapes laid out as the official downloads unpack (small non-square images)."""
    gta = tmp_path / "gta5"
    write_images(gta / "images", 10, size=(48, 27), name="{index:05d}")
    (gta / "labels").mkdir()  # segmentation labels: not images of domain A
    Image.new("P", (48, 27)).save(gta / "labels" / "00000.png")
    cityscapes = tmp_path / "cityscapes"
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for number, city in enumerate(cities):
            write_images(
                cityscapes / "leftImg8bit" / split / city, 2, size=(48, 24), first_seed=40 + number,
                name=f"{city}_{{index:06d}}_000019_leftImg8bit",
            )
    return gta, cityscapes


def test_gta_and_cityscapes_layouts_load_with_cityscapes_val_for_validation(gta_cityscapes):
    gta, cityscapes = gta_cityscapes
    datamodule = GTA2CityscapesDataModule(gta, cityscapes, load_size=36, crop_size=32, batch_size=3, num_workers=0)
    datamodule.setup("fit")
    splits = datamodule.splits
    assert len(splits.train_a) == 9 and len(splits.val_a) == 1
    assert all(p.parent == gta / "images" for p in splits.train_a + splits.val_a)
    assert [p.parent.name for p in splits.train_b] == ["aachen", "aachen", "bochum", "bochum"]
    assert splits.val_b == sorted((cityscapes / "leftImg8bit" / "val" / "frankfurt").iterdir())
    assert len(datamodule.train_set) == 9 and len(datamodule.val_set) == 2
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 3 and batches[0]["A"].shape == batches[0]["B"].shape == (3, 3, 32, 32)
    val_items = list(datamodule.val_set)
    assert [Path(item["B_path"]).parent.name for item in val_items] == ["frankfurt", "frankfurt"]


def test_gta_and_cityscapes_errors_say_where_to_get_them(gta_cityscapes, tmp_path):
    gta, cityscapes = gta_cityscapes
    with pytest.raises(DatasetError) as error:
        GTA2CityscapesDataModule(gta, tmp_path / "nowhere", num_workers=0).setup("fit")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "leftImg8bit" / "train") in message
    assert "https://www.cityscapes-dataset.com" in message and "leftImg8bit_trainvaltest.zip" in message
    assert "account" in message and "cannot download" in message

    with pytest.raises(DatasetError) as error:
        GTA2CityscapesDataModule(tmp_path / "no_gta", cityscapes, num_workers=0).setup("fit")
    assert str(tmp_path / "no_gta" / "images") in str(error.value)
    assert "https://download.visinf.tu-darmstadt.de/data/from_games/" in str(error.value)


def test_colorization_a_is_the_grayscale_photo_and_b_another_colour_photo(tmp_path):
    photos = write_images(tmp_path / "photos" / "nested", 6, size=(32, 32))
    dataset = ColorizationDataset(photos, load_size=32, crop_size=32, train=True, flip=False, seed=1)
    partners = []
    for index, photo in enumerate(photos):
        item = dataset[index]
        colour = torch.from_numpy(pixels(photo)).permute(2, 0, 1)
        assert item["A"].shape == (1, 32, 32) and item["A_path"] == str(photo)
        assert close(item["A"], normalised(TF.rgb_to_grayscale(colour, num_output_channels=1)))
        assert item["B_path"] != str(photo)  # a DIFFERENT photo: unpaired
        partner = photos.index(Path(item["B_path"]))
        assert close(item["B"], normalised(pixels(photos[partner])))  # B keeps its colours
        assert (item["B"].amax(0) - item["B"].amin(0)).mean() > 0.3
        partners.append(partner)
    assert sorted(partners) == list(range(6))  # every photo is some item's B once per epoch
    assert partners == [ColorizationDataset(photos, 32, 32, seed=1).b_index(i) for i in range(6)]
    assert partners != [ColorizationDataset(photos, 32, 32, seed=2).b_index(i) for i in range(6)]

    three = ColorizationDataset(photos, 32, 32, train=False, input_nc=3)[2]
    assert three["A"].shape == (3, 32, 32) and torch.equal(three["A"][0], three["A"][2])
    assert three["B_path"] == str(photos[2])  # validation: the photo's own colours


def test_colorization_datamodule_holds_out_photos(tmp_path):
    write_images(tmp_path / "photos" / "a", 5, size=(40, 40))
    write_images(tmp_path / "photos" / "b", 5, size=(40, 40), first_seed=20)
    datamodule = ColorizationDataModule(tmp_path / "photos", load_size=36, crop_size=32, batch_size=2, num_workers=0)
    assert (datamodule.input_nc, datamodule.output_nc) == (1, 3)
    datamodule.setup("fit")
    train_files, val_files = datamodule.photos
    assert len(train_files) == 9 and len(val_files) == 1 and not set(train_files) & set(val_files)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["A"].shape == (2, 1, 32, 32) and batch["B"].shape == (2, 3, 32, 32)
    assert datamodule.val_set[0]["A_path"] == datamodule.val_set[0]["B_path"] == str(val_files[0])
    with pytest.raises(ValueError, match="output_nc must be 3"):
        ColorizationDataModule(tmp_path / "photos", output_nc=1)


def test_missing_or_invalid_monet_root_lists_what_was_found_and_how_to_get_it(tmp_path):
    root = tmp_path / "datasets" / "monet2photo"
    with pytest.raises(DatasetError) as error:
        Monet2PhotoDataModule(root, num_workers=0).setup("fit")  # constructing is fine; setup reports
    message = str(error.value)
    assert str(root) in message and "not found" in message
    assert f"python -m bicyclegan_pl.data.download monet2photo --root {tmp_path / 'datasets'}" in message
    assert "gan-getting-started" in message

    (root / "photos").mkdir(parents=True)
    with pytest.raises(DatasetError) as error:
        Monet2PhotoDataModule(root, num_workers=0).setup("fit")
    assert "photos/" in str(error.value) and "trainA/ and trainB/" in str(error.value)


def test_empty_folder_and_unreadable_image_name_the_path(tmp_path, cyclegan_root):
    for path in (cyclegan_root / "trainB").iterdir():
        path.unlink()
    (cyclegan_root / "trainB" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="No images") as error:
        Monet2PhotoDataModule(cyclegan_root, num_workers=0).setup("fit")
    assert str(cyclegan_root / "trainB") in str(error.value)

    with pytest.raises(DatasetError, match="Image folder not found") as error:
        UnpairedFolderDataModule(tmp_path / "a_missing", cyclegan_root / "trainA", num_workers=0).setup("fit")
    assert str(tmp_path / "a_missing") in str(error.value)

    broken = cyclegan_root / "testA" / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    dataset = UnpairedFolderDataset(sorted((cyclegan_root / "testA").iterdir()), [broken], 32, 32, train=False)
    with pytest.raises(DatasetError, match="Cannot read image") as error:
        dataset[0]
    assert str(broken) in str(error.value)


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def cyclegan_zip(tmp_path: Path, name: str, counts: dict[str, int]) -> Path:
    """A .zip laid out like the Berkeley CycleGAN archives: name/trainA/*.jpg, ..."""
    source = tmp_path / "source"
    for folder, count in counts.items():
        write_images(source / name / folder, count, size=(32, 32), suffix=".jpg", name="{index}_A")
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted((source / name).rglob("*.jpg")):
            bundle.write(file, file.relative_to(source).as_posix())
    return archive


def test_zip_unpacks_and_downloads_end_to_end_from_a_local_mirror(tmp_path, capsys, monkeypatch):
    archive = cyclegan_zip(tmp_path, "monet2photo", {"trainA": 3, "trainB": 4, "testA": 1, "testB": 2})
    root = tmp_path / "datasets"
    unpack(archive, tmp_path / "direct")
    assert check_unaligned_layout(tmp_path / "direct" / "monet2photo") == {"trainA": 3, "trainB": 4, "testA": 1, "testB": 2}

    assert main(["monet2photo", "--root", str(root), "--url", archive.as_uri()]) == 0
    output = capsys.readouterr().out
    assert "trainA 3 images" in output and "testB 2 images" in output
    assert not (root / "monet2photo.zip").exists()
    datamodule = Monet2PhotoDataModule(root / "monet2photo", load_size=32, crop_size=32, num_workers=0)
    datamodule.setup("fit")
    assert len(datamodule.train_set) == 4 and len(datamodule.val_set) == 2

    monkeypatch.setattr(download_module, "fetch", lambda *args, **kwargs: pytest.fail("fetched an existing dataset"))
    assert download_module.download("monet2photo", root)["trainB"] == 4


def test_zip_path_traversal_and_absolute_members_are_refused_before_writing(tmp_path):
    for bad_name in ("../escaped.txt", "/tmp_absolute_member.txt", "monet2photo/../../escaped.txt"):
        archive = make_zip(tmp_path / "archives" / "evil.zip", {"monet2photo/trainA/1.jpg": b"data", bad_name: b"evil"})
        root = tmp_path / "deep" / "root"
        with pytest.raises(DatasetError, match="unsafe member") as error:
            unpack(archive, root)
        assert bad_name in str(error.value)
        assert not (root / "monet2photo").exists()  # the safe member before it was not written either
        assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()

    corrupt = tmp_path / "broken.zip"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match="Cannot unpack") as error:
        unpack(corrupt, tmp_path / "root")
    assert str(corrupt) in str(error.value)


def test_unaligned_layout_check_and_collections(tmp_path, capsys):
    archive = cyclegan_zip(tmp_path, "horse2zebra", {"trainA": 2, "testA": 1})
    assert main(["horse2zebra", "--root", str(tmp_path / "d"), "--url", archive.as_uri()]) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("error: Bad layout") and "expected trainB/*.jpg" in error and "trainA/ (2 images)" in error

    # names in both collections mean pix2pix unless asked; the zip path is taken for cyclegan
    assert resolve_collection("maps") == "pix2pix" and resolve_collection("monet2photo") == "cyclegan"
    maps = cyclegan_zip(tmp_path / "m", "maps", {"trainA": 1, "trainB": 1})
    assert main(["maps", "--collection", "cyclegan", "--root", str(tmp_path / "e"), "--url", maps.as_uri()]) == 0
    assert (tmp_path / "e" / "maps" / "trainB").is_dir()
    with pytest.raises(DatasetError, match="not a pix2pix dataset"):
        resolve_collection("monet2photo", "pix2pix")
    assert {"monet2photo", "horse2zebra", "vangogh2photo", "iphone2dslr_flower"} <= set(CYCLEGAN_DATASETS)
    assert "edges2shoes" in DATASETS and "edges2shoes" not in CYCLEGAN_DATASETS
    url = CYCLEGAN_URL_TEMPLATE.format(name="monet2photo")
    assert url == "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/monet2photo.zip"


def compose(name: str, data_dir: Path, **data: object):
    data_config = OmegaConf.load(CONF_DIR / f"{name}.yaml")
    config = OmegaConf.create({"seed": 5, "paths": {"data_dir": str(data_dir)}, "data": data_config})
    config.data.merge_with(data)
    return config


def test_configs_instantiate_with_cyclegan_sizes(tmp_path, cyclegan_root):
    datasets = cyclegan_root.parent
    expected = {
        "monet2photo": (Monet2PhotoDataModule, {"root": datasets / "monet2photo"}, (3, 3)),
        "gta2cityscapes": (
            GTA2CityscapesDataModule,
            {"gta_root": datasets / "gta5", "cityscapes_root": datasets / "cityscapes"},
            (3, 3),
        ),
        "colorization": (ColorizationDataModule, {"root": datasets / "monet2photo" / "trainB"}, (1, 3)),
        "unpaired_folders": (UnpairedFolderDataModule, {"root_a": Path("x"), "root_b": Path("y")}, (3, 3)),
    }
    for name, (cls, paths, channels) in expected.items():
        overrides = {"root_a": "x", "root_b": "y"} if name == "unpaired_folders" else {}
        config = compose(name, datasets, **overrides)
        datamodule = instantiate(config.data)
        assert type(datamodule) is cls, name
        assert all(getattr(datamodule, key) == value for key, value in paths.items()), name
        assert (datamodule.load_size, datamodule.crop_size, datamodule.batch_size, datamodule.seed) == (286, 256, 1, 5), name
        assert (datamodule.input_nc, datamodule.output_nc, datamodule.holdout, datamodule.val_size) == (*channels, 0.1, None)
    with pytest.raises(MissingMandatoryValue):
        instantiate(compose("unpaired_folders", datasets).data)

    small = instantiate(compose("monet2photo", datasets, crop_size=32, load_size=36, num_workers=0).data)
    small.setup("fit")
    assert small.train_set[0]["A"].shape == (3, 32, 32)


@pytest.mark.skipif(not MONET2PHOTO_MINI.is_dir(), reason=f"real sample data not present at {MONET2PHOTO_MINI}")
def test_real_monet2photo_mini_at_64_px():
    datamodule = Monet2PhotoDataModule(MONET2PHOTO_MINI, load_size=72, crop_size=64, batch_size=4, num_workers=0, val_size=8)
    datamodule.setup("fit")
    splits = datamodule.splits
    assert (len(splits.train_a), len(splits.val_a), len(splits.train_b), len(splits.val_b)) == (270, 30, 900, 100)
    assert len(datamodule.train_set) == 900 and len(datamodule.val_set) == 8

    batch = next(iter(datamodule.train_dataloader()))
    assert batch["A"].shape == batch["B"].shape == (4, 3, 64, 64)
    assert all(Path(path).parent.name == "trainA" for path in batch["A_path"])
    assert all(Path(path).parent.name == "trainB" for path in batch["B_path"])
    val_batches = list(datamodule.val_dataloader())
    assert [batch["A"].shape[0] for batch in val_batches] == [2, 2, 2, 2]  # >= 4 val batches on a small set
    images = torch.cat([batch["B"] for batch in val_batches])
    assert images.shape == (8, 3, 64, 64) and images.min() >= -1.0 and images.max() <= 1.0
    assert images.std() > 0.2  # real photos, not blank


def test_the_draw_cache_stays_bounded_over_many_epochs():
    from bicyclegan_pl.data.unpaired import CACHED_BLOCKS, BalancedDraw

    draw = BalancedDraw(5, seed=0, stream="test")
    first = [draw(i) for i in range(5)]
    for index in range(5 * 100):
        draw(index)
    assert len(draw._blocks) <= CACHED_BLOCKS
    assert [draw(i) for i in range(5)] == first  # an evicted block is redrawn identically
