"""The embedded synthetic data: determinism, ground truth, and the data modules' loaders."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from bicyclegan_pl.data.appearance import appearance_palette, classify_appearance
from bicyclegan_pl.data.errors import DatasetError
from bicyclegan_pl.data.datamodules import SyntheticPairedDataModule, SyntheticUnpairedDataModule
from bicyclegan_pl.data.synthetic import SyntheticPairedDataset, SyntheticUnpairedDataset

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "data"


def boundary_of(mask: torch.Tensor) -> torch.Tensor:
    """Mask pixels with at least one of their 8 neighbours outside the mask, computed by
    shifting (independently of the library's max-pool implementation)."""
    padded = F.pad(mask, (1, 1, 1, 1), value=1.0)  # the image border does not count as outside
    height, width = mask.shape[-2:]
    outside_near = torch.zeros_like(mask, dtype=torch.bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            outside_near |= shifted == 0
    return (mask == 1) & outside_near


# ---------------------------------------------------------------- paired dataset


def test_items_are_a_function_of_seed_and_index_only():
    first = SyntheticPairedDataset(50, image_size=32, seed=3)
    second = SyntheticPairedDataset(50, image_size=32, seed=3)
    for index in (7, 0, 49):  # access order must not matter
        a, b = first[index], second[index]
        for key in ("A", "B", "mask", "appearance"):
            assert torch.equal(a[key], b[key]), key
    other_seed = SyntheticPairedDataset(50, image_size=32, seed=4)
    differing = sum(not torch.equal(first[i]["mask"], other_seed[i]["mask"]) for i in range(20))
    assert differing == 20
    differing_indices = sum(not torch.equal(first[i]["mask"], first[i + 1]["mask"]) for i in range(20))
    assert differing_indices == 20


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("input_nc", [1, 3])
def test_item_shapes_ranges_and_types(image_size, input_nc):
    dataset = SyntheticPairedDataset(10, image_size=image_size, seed=0, input_nc=input_nc, num_appearances=4)
    for index in range(10):
        item = dataset[index]
        assert item["A"].shape == (input_nc, image_size, image_size)
        assert item["B"].shape == (3, image_size, image_size)
        assert item["mask"].shape == (1, image_size, image_size)
        assert item["A"].dtype == item["B"].dtype == item["mask"].dtype == torch.float32
        assert item["B"].min() >= -1 and item["B"].max() <= 1
        assert set(item["A"].unique().tolist()) == {-1.0, 1.0}  # dark lines on white
        assert (item["A"] == 1).float().mean() > 0.8  # mostly white background
        assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
        assert item["appearance"].dtype == torch.int64 and item["appearance"].dim() == 0
        assert 0 <= int(item["appearance"]) < 4
        assert item["index"] == index
        if input_nc == 3:  # the edge channel repeated
            assert torch.equal(item["A"][0], item["A"][1]) and torch.equal(item["A"][0], item["A"][2])
    gray = SyntheticPairedDataset(10, image_size=image_size, seed=0, input_nc=1)
    assert torch.equal(gray[4]["A"][0], dataset[4]["A"][0])


def test_appearances_are_equally_likely():
    dataset = SyntheticPairedDataset(2000, image_size=32, seed=0, num_appearances=4)
    ids = torch.tensor([dataset.sample(i)[1] for i in range(len(dataset))])
    counts = torch.bincount(ids, minlength=4).float()
    expected = len(dataset) / 4
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert chi_square < 16.27, counts  # p = 0.001 for 3 degrees of freedom
    # the ids the items carry are the sampled ones
    assert all(int(dataset[i]["appearance"]) == int(ids[i]) for i in range(20))


def test_every_object_has_k_targets_that_differ_only_in_colour():
    dataset = SyntheticPairedDataset(20, image_size=32, seed=1, num_appearances=5)
    palette = dataset.palette
    for index in range(5):
        item = dataset[index]
        targets = dataset.targets(index)
        assert targets.shape == (5, 3, 32, 32)
        assert torch.equal(targets[int(item["appearance"])], item["B"])
        inside = item["mask"][0].bool()
        for k in range(5):
            assert torch.allclose(targets[k][:, inside], palette[k].view(3, 1).expand(3, int(inside.sum())))
            assert torch.all(targets[k][:, ~inside] == 1.0)  # white background
        assert not torch.equal(targets[0], targets[1])
    # the object (and so the input) does not depend on how many appearances there are
    eight = SyntheticPairedDataset(20, image_size=32, seed=1, num_appearances=8)
    assert all(torch.equal(eight[i]["A"], dataset[i]["A"]) for i in range(5))


@pytest.mark.parametrize("image_size", [32, 64])
def test_edge_map_is_exactly_the_outline_of_the_mask(image_size):
    dataset = SyntheticPairedDataset(40, image_size=image_size, seed=2)
    for index in range(len(dataset)):
        item = dataset[index]
        mask = item["mask"]
        edges = item["A"] == -1
        assert torch.equal(edges, boundary_of(mask)), f"item {index}"
        assert mask.sum() > edges.sum()  # a filled interior, not just a line
        # the whole object is inside the image: a white border row/column all round
        assert mask[0, 0].sum() == mask[0, -1].sum() == mask[0, :, 0].sum() == mask[0, :, -1].sum() == 0


def test_classify_appearance_recovers_the_ground_truth():
    dataset = SyntheticPairedDataset(100, image_size=32, seed=5, num_appearances=4)
    items = [dataset[i] for i in range(100)]
    images = torch.stack([item["B"] for item in items])
    masks = torch.stack([item["mask"] for item in items])
    truth = torch.stack([item["appearance"] for item in items])
    assert torch.equal(classify_appearance(images, masks, dataset.palette), truth)
    assert len(truth.unique()) == 4
    # on one image, and on the K repaintings of one object
    assert int(classify_appearance(items[0]["B"], items[0]["mask"], dataset.palette)) == int(truth[0])
    targets = dataset.targets(3)
    ids = classify_appearance(targets, items[3]["mask"].expand(4, 1, 32, 32), dataset.palette)
    assert torch.equal(ids, torch.arange(4))


def test_train_and_val_splits_share_no_object():
    train = SyntheticPairedDataset(2000, image_size=32, seed=0, split="train")
    val = SyntheticPairedDataset(64, image_size=32, seed=0, split="val")
    train_objects = {train.sample(i)[0] for i in range(len(train))}
    val_objects = {val.sample(i)[0] for i in range(len(val))}
    assert len(val_objects) == 64
    assert not train_objects & val_objects


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="num_appearances"):
        SyntheticPairedDataset(10, num_appearances=9)
    with pytest.raises(ValueError, match="split"):
        SyntheticPairedDataset(10, split="test")
    with pytest.raises(IndexError):
        SyntheticPairedDataset(10)[10]


# ---------------------------------------------------------------- unpaired dataset


def test_unpaired_items_shapes_determinism_and_styles():
    dataset = SyntheticUnpairedDataset(30, image_size=32, seed=0)
    again = SyntheticUnpairedDataset(30, image_size=32, seed=0)
    other = SyntheticUnpairedDataset(30, image_size=32, seed=1)
    palette = appearance_palette(4)
    for index in range(10):
        item = dataset[index]
        assert item["A"].shape == item["B"].shape == (3, 32, 32)
        assert item["index"] == index
        for key in ("A", "B"):
            assert item[key].min() >= -1 and item[key].max() <= 1
            assert torch.equal(item[key], again[index][key])
            assert not torch.equal(item[key], other[index][key])
        # A: one flat palette colour on white
        colours_a = item["A"].flatten(1).T.unique(dim=0)
        assert len(colours_a) == 2 and (colours_a == 1).all(dim=1).any()
        assert any(torch.allclose(c, p) for c in colours_a for p in palette)
        # B: stripes (colour + darker shade) and a black outline on white
        colours_b = item["B"].flatten(1).T.unique(dim=0)
        assert len(colours_b) == 4
        assert (colours_b == -1).all(dim=1).any()
    # the two domains are drawn independently: different objects
    object_a = [(dataset[i]["A"] != 1).any(0) for i in range(10)]
    object_b = [(dataset[i]["B"] != 1).any(0) for i in range(10)]
    assert sum(not torch.equal(a, b) for a, b in zip(object_a, object_b)) == 10


# ---------------------------------------------------------------- data modules


def test_synthetic_datamodule_batches():
    datamodule = SyntheticPairedDataModule(crop_size=32, train_size=40, val_size=16, batch_size=8, seed=0)
    assert (datamodule.input_nc, datamodule.output_nc) == (1, 3)
    assert torch.equal(datamodule.palette, appearance_palette(4))
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 5
    batch = batches[0]
    assert set(batch) == {"A", "B", "mask", "appearance", "index"}
    assert batch["A"].shape == (8, 1, 32, 32) and batch["B"].shape == (8, 3, 32, 32)
    assert batch["mask"].shape == (8, 1, 32, 32) and batch["appearance"].shape == (8,)
    seen = torch.cat([b["index"] for b in batches])
    assert sorted(seen.tolist()) == list(range(40))  # one epoch visits every item once


def test_partial_batches_are_dropped_and_small_val_sets_give_several_batches():
    datamodule = SyntheticPairedDataModule(crop_size=16, train_size=21, val_size=8, batch_size=8, seed=0)
    datamodule.setup("fit")
    sizes = [len(b["index"]) for b in datamodule.train_dataloader()]
    assert sizes == [8, 8]
    val_batches = list(datamodule.val_dataloader())
    assert len(val_batches) >= 4
    assert torch.cat([b["index"] for b in val_batches]).tolist() == list(range(8))  # sequential
    again = SyntheticPairedDataModule(crop_size=16, train_size=21, val_size=8, batch_size=8, seed=0)
    again.setup("validate")
    assert all(torch.equal(x["B"], y["B"]) for x, y in zip(val_batches, again.val_dataloader()))


def test_loader_options():
    datamodule = SyntheticPairedDataModule(crop_size=16, train_size=16, val_size=8, batch_size=4, num_workers=2)
    loader = datamodule.train_dataloader()
    assert loader.drop_last and loader.persistent_workers and loader.num_workers == 2
    assert loader.pin_memory == torch.cuda.is_available()
    assert not SyntheticPairedDataModule(crop_size=16, train_size=16, val_size=8).train_dataloader().persistent_workers
    with pytest.raises(DatasetError, match="fewer than one batch"):
        SyntheticPairedDataModule(crop_size=16, train_size=3, val_size=8, batch_size=4).train_dataloader()


def epoch_order(datamodule, epoch: int) -> list[int]:
    sampler = datamodule.train_dataloader().sampler
    assert isinstance(sampler, DistributedSampler)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_train_order_is_a_function_of_seed_and_epoch():
    def make(seed):
        return SyntheticPairedDataModule(crop_size=16, train_size=64, val_size=8, batch_size=4, seed=seed)

    assert epoch_order(make(0), 0) == epoch_order(make(0), 0)
    assert epoch_order(make(0), 3) == epoch_order(make(0), 3)
    assert epoch_order(make(0), 0) != epoch_order(make(0), 1)
    assert epoch_order(make(0), 0) != epoch_order(make(1), 0)


def test_ranks_get_disjoint_shards_of_each_epoch():
    shards = []
    for rank in range(2):
        datamodule = SyntheticPairedDataModule(crop_size=16, train_size=64, val_size=8, batch_size=4, seed=0)
        datamodule.trainer = SimpleNamespace(world_size=2, global_rank=rank, strategy=SimpleNamespace(root_device=torch.device("cpu")))
        shards.append(epoch_order(datamodule, 2))
    assert len(shards[0]) == len(shards[1]) == 32
    assert sorted(shards[0] + shards[1]) == list(range(64))


class _IndexRecorder(L.LightningModule):
    """Records which items each training step sees."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, list[int]]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, batch["index"].tolist()))
        return (self.weight * 0).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(max_epochs: int, checkpoint: Path | None = None) -> tuple[_IndexRecorder, L.Trainer]:
    datamodule = SyntheticPairedDataModule(crop_size=16, train_size=24, val_size=4, batch_size=4, seed=7)
    model = _IndexRecorder()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=checkpoint)
    return model, trainer


def test_lightning_keeps_the_sampler_and_a_resumed_run_sees_the_same_batches(tmp_path):
    full, trainer = _fit(max_epochs=2)
    assert isinstance(trainer.train_dataloader.sampler, DistributedSampler)
    by_epoch = {epoch: [i for e, batch in full.seen if e == epoch for i in batch] for epoch in (0, 1)}
    expected = SyntheticPairedDataModule(crop_size=16, train_size=24, val_size=4, batch_size=4, seed=7)
    assert by_epoch[0] == epoch_order(expected, 0)
    assert by_epoch[1] == epoch_order(expected, 1) != by_epoch[0]  # Lightning called set_epoch

    _, first_half = _fit(max_epochs=1)
    first_half.save_checkpoint(tmp_path / "epoch0.ckpt")
    resumed, _ = _fit(max_epochs=2, checkpoint=tmp_path / "epoch0.ckpt")
    assert resumed.seen == [entry for entry in full.seen if entry[0] == 1]


def test_unpaired_datamodule_batches():
    datamodule = SyntheticUnpairedDataModule(crop_size=32, train_size=16, val_size=8, batch_size=4, seed=0)
    assert (datamodule.input_nc, datamodule.output_nc) == (3, 3)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"A", "B", "index", "mask_A", "mask_B", "colour_A", "colour_B"}
    assert batch["A"].shape == batch["B"].shape == (4, 3, 32, 32)
    assert batch["mask_A"].shape == (4, 1, 32, 32) and batch["colour_A"].dtype == torch.int64
    # the masks are the drawn objects: white outside, not white inside
    white = (batch["A"] > 0.99).all(dim=1, keepdim=True)
    assert torch.equal(white, batch["mask_A"] < 0.5)
    assert len(list(datamodule.val_dataloader())) >= 4


@pytest.mark.parametrize("name", ["synthetic", "synthetic_unpaired"])
def test_configs_instantiate_the_datamodules(name):
    config = OmegaConf.create({"seed": 11, "data": OmegaConf.load(CONF_DIR / f"{name}.yaml")})
    data = config.data
    for key in ("crop_size", "input_nc", "output_nc", "batch_size"):  # the model configs read them
        assert key in data
    datamodule = instantiate(data)
    datamodule.setup("fit")
    assert len(datamodule.train_set) == data.train_size and len(datamodule.val_set) == data.val_size
    # batches as the models built from the same keys expect them
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["A"].shape == (data.batch_size, data.input_nc, data.crop_size, data.crop_size)
    assert batch["B"].shape == (data.batch_size, data.output_nc, data.crop_size, data.crop_size)
    # the images follow the run's seed
    config.seed = 12
    reseeded = instantiate(config.data)
    reseeded.setup("fit")
    assert not torch.equal(reseeded.train_set[0]["B"], datamodule.train_set[0]["B"])
