"""Metrics: FID/KID/IS against independent NumPy/SciPy implementations, the standard Inception
path against torchmetrics' own FID, LPIPS diversity, ground-truth metrics, weights lookup and
the real-statistics cache."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from bicyclegan_pl.data.synthetic import SyntheticPairedDataset
from bicyclegan_pl.metrics import (
    ConvFeatures,
    DistributionMetrics,
    EvaluationSuite,
    InceptionFeatures,
    LPIPSDiversity,
    MaskIoU,
    EncodedAccuracy,
    ModeCoverage,
    RandomInceptionFeatures,
    WeightsNotFoundError,
    load_lpips,
    resolve_weights,
)
from bicyclegan_pl.metrics.features import INCEPTION_URL
from tests.metric_fixtures import (
    INCEPTION_FILE,
    MeanAbsoluteDistance,
    write_random_inception_weights,
    write_random_squeezenet_weights,
)


# ---- independent reference implementations (float64 NumPy / SciPy) ------------------------------
def frechet_distance_numpy(x: np.ndarray, y: np.ndarray) -> float:
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    sigma_x, sigma_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(sigma_x @ sigma_y, disp=False)
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(sigma_x) + np.trace(sigma_y) - 2 * np.trace(covmean.real))


def kid_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 on all samples."""
    d, m = x.shape[1], x.shape[0]
    kernel = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    off_diagonal = lambda k: k.sum() - np.trace(k)  # noqa: E731
    return float((off_diagonal(k_xx) + off_diagonal(k_yy)) / (m * (m - 1)) - 2 * k_xy.sum() / m**2)


def inception_score_numpy(logits: np.ndarray) -> float:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    marginal = p.mean(axis=0, keepdims=True)
    return float(np.exp((p * (np.log(p) - np.log(marginal))).sum(axis=1).mean()))


def random_features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=generator, dtype=torch.float64) / math.sqrt(d)
    return torch.randn(n, d, generator=generator, dtype=torch.float64) @ mixing + shift


def fid_of(real: torch.Tensor, fake: torch.Tensor) -> float:
    metrics = DistributionMetrics(real.shape[1], None, kid=False, inception_score=False)
    metrics.update(real, None, real=True)
    metrics.update(fake, None, real=False)
    return metrics.compute()["fid"]


# ---- FID / KID / IS ------------------------------------------------------------------------------
def test_fid_matches_an_independent_float64_scipy_implementation():
    real, fake = random_features(300, 32, seed=0), random_features(250, 32, seed=1, shift=0.3)
    ours = fid_of(real, fake)
    reference = frechet_distance_numpy(real.numpy(), fake.numpy())
    assert reference > 1.0
    assert ours == pytest.approx(reference, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    real = random_features(400, 16, seed=2)
    assert abs(fid_of(real, real)) < 1e-6
    shifted = [fid_of(real, real + shift) for shift in (0.25, 0.5, 1.0)]
    # a shift of every coordinate by s adds exactly d * s^2
    assert shifted == pytest.approx([16 * s**2 for s in (0.25, 0.5, 1.0)], rel=1e-6)


def test_kid_matches_an_independent_unbiased_mmd_and_is_is_exp_mean_kl():
    real, fake = random_features(60, 8, seed=3), random_features(60, 8, seed=4, shift=0.5)
    metrics = DistributionMetrics(8, 5, fid=False, kid_subsets=3, kid_subset_size=1000, is_splits=1)
    metrics.update(real, None, real=True)
    logits = random_features(60, 5, seed=5) * 3
    metrics.update(fake, logits, real=False)
    results = metrics.compute()
    # the subset size is capped at the 60 samples, so every subset is the whole set
    assert results["kid_mean"] == pytest.approx(kid_numpy(real.numpy(), fake.numpy()), rel=1e-6)
    assert results["kid_std"] == pytest.approx(0.0, abs=1e-9)
    assert results["is_mean"] == pytest.approx(inception_score_numpy(logits.numpy()), rel=1e-6)


def test_inception_score_counts_confident_distinct_classes():
    metrics = DistributionMetrics(4, 4, fid=False, kid=False, is_splits=1)
    confident = torch.eye(4).repeat(10, 1) * 50.0  # 40 samples, 4 classes equally often
    metrics.update(torch.zeros(40, 4), confident, real=False)
    assert metrics.compute()["is_mean"] == pytest.approx(4.0, rel=1e-4)
    metrics.reset()
    metrics.update(torch.zeros(40, 4), torch.zeros(40, 4), real=False)  # no confidence at all
    assert metrics.compute()["is_mean"] == pytest.approx(1.0, abs=1e-9)


def test_real_statistics_survive_reset_and_round_trip_through_their_saved_state():
    real, fake = random_features(100, 8, seed=6), random_features(100, 8, seed=7, shift=0.2)
    metrics = DistributionMetrics(8, None, inception_score=False, kid_subsets=2)
    metrics.update(real, None, real=True)
    metrics.update(fake, None, real=False)
    first = metrics.compute()
    metrics.reset()
    assert metrics.num_real() == 100
    restored = DistributionMetrics(8, None, inception_score=False, kid_subsets=2)
    assert restored.load_real_state(metrics.real_state())
    restored.update(fake, None, real=False)
    assert restored.compute() == pytest.approx(first, rel=1e-12)
    # another rank's copy holds nothing (the states are summed across ranks)
    other_rank = DistributionMetrics(8, None, inception_score=False, kid_subsets=2)
    other_rank.load_real_state(metrics.real_state(), rank=1, world_size=2)
    assert other_rank.num_real() == 0 and other_rank.kid.real_features[0].shape == (50, 8)


# ---- the standard Inception path -------------------------------------------------------------------
@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return write_random_inception_weights(folder / INCEPTION_FILE)


def test_inception_features_give_torchmetrics_own_fid_with_antialias_off(inception_weights):
    from torchmetrics.image.fid import FrechetInceptionDistance

    generator = torch.Generator().manual_seed(0)
    real = torch.rand(6, 3, 32, 32, generator=generator) * 2 - 1
    fake = (real + 0.5 * torch.randn(6, 3, 32, 32, generator=generator)).clamp(-1, 1)
    features = InceptionFeatures(weights_dir=str(inception_weights.parent), allow_download=False)
    assert features.weights_path == inception_weights
    metrics = DistributionMetrics(features.num_features, features.num_logits, kid=False, inception_score=False)
    metrics.update(*features(real), real=True)
    metrics.update(*features(fake), real=False)

    reference = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(inception_weights), antialias=False)
    to_uint8 = lambda x: ((x + 1) * 127.5).round().to(torch.uint8)  # noqa: E731
    reference.update(to_uint8(real), real=True)
    reference.update(to_uint8(fake), real=False)
    assert metrics.compute()["fid"] == pytest.approx(float(reference.compute()), rel=1e-4)


def test_grayscale_images_are_repeated_to_rgb(inception_weights):
    features = InceptionFeatures(weights_path=str(inception_weights))
    gray = torch.rand(2, 1, 32, 32) * 2 - 1
    pool_gray, _ = features(gray)
    pool_rgb, _ = features(gray.repeat(1, 3, 1, 1))
    assert torch.equal(pool_gray, pool_rgb) and pool_gray.shape == (2, 2048)


def test_random_inception_features_are_seeded_and_informative():
    first, second, other = RandomInceptionFeatures(0), RandomInceptionFeatures(0), RandomInceptionFeatures(1)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    pool, logits = first(images)
    assert torch.equal(pool, second(images)[0]) and not torch.equal(pool, other(images)[0])
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
    assert 1e-3 < pool.std() < 1e3  # neither vanished nor exploded through the 94 layers
    assert first.metric_suffix == "_randinit" and InceptionFeatures.metric_suffix == ""


# ---- weights lookup --------------------------------------------------------------------------------
def test_missing_weights_name_the_file_the_places_looked_and_where_to_put_it(tmp_path):
    with pytest.raises(WeightsNotFoundError) as error:
        resolve_weights(INCEPTION_URL, tmp_path / "weights", allow_download=False, what="Inception")
    message = str(error.value)
    assert INCEPTION_FILE in message and INCEPTION_URL in message
    assert str(tmp_path / "weights" / INCEPTION_FILE) in message and "paths.weights_dir" in message
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        InceptionFeatures(weights_path=str(tmp_path / "nowhere.pth"))


def test_weights_are_found_in_the_folder_or_its_torch_hub_layout(tmp_path):
    hub_layout = tmp_path / "checkpoints" / INCEPTION_FILE
    hub_layout.parent.mkdir()
    hub_layout.write_bytes(b"x")
    assert resolve_weights(INCEPTION_URL, tmp_path, allow_download=False, what="Inception") == hub_layout
    flat = tmp_path / INCEPTION_FILE
    flat.write_bytes(b"x")
    assert resolve_weights(INCEPTION_URL, tmp_path, allow_download=False, what="Inception") == flat


# ---- LPIPS diversity -------------------------------------------------------------------------------
def test_lpips_diversity_averages_consecutive_pairs_then_inputs():
    diversity = LPIPSDiversity(MeanAbsoluteDistance())
    # input 0: samples 0, 0.2, 0.6 -> pairs 0.2, 0.4 -> 0.3; input 1: constant -> 0
    values = torch.tensor([[0.0, 0.5], [0.2, 0.5], [0.6, 0.5]])
    samples = values.view(3, 2, 1, 1, 1).expand(3, 2, 3, 4, 4)
    diversity.update(samples)
    mean, stderr = diversity.compute()
    assert float(mean) == pytest.approx(0.15)
    assert float(stderr) == pytest.approx(np.std([0.3, 0.0], ddof=1) / math.sqrt(2))


def test_lpips_diversity_of_identical_samples_is_zero_and_of_different_samples_positive(tmp_path):
    write_random_squeezenet_weights(tmp_path)
    lpips = load_lpips("squeeze", weights_dir=str(tmp_path), allow_download=False)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 4, 3, 32, 32, generator=generator) * 2 - 1
    same = LPIPSDiversity(lpips)
    same.update(image.expand(5, -1, -1, -1, -1))
    assert float(same.compute()[0]) == pytest.approx(0.0, abs=1e-7)
    different = LPIPSDiversity(lpips)
    different.update(torch.rand(5, 4, 3, 32, 32, generator=generator) * 2 - 1)
    assert float(different.compute()[0]) > 1e-3


def test_lpips_backbone_missing_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="squeezenet1_1-b8a52dc0.pth"):
        load_lpips("squeeze", weights_dir=str(tmp_path), allow_download=False)


# ---- ground truth (synthetic data) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic():
    return SyntheticPairedDataset(num_items=6, image_size=32, seed=0, split="val", num_appearances=4)


def _truth(dataset):
    masks = torch.stack([dataset[i]["mask"] for i in range(len(dataset))])
    targets = torch.stack([dataset.targets(i) for i in range(len(dataset))], dim=1)  # (K, N, 3, H, W)
    return masks, targets


def test_mode_coverage_is_one_over_k_for_one_appearance_and_one_for_the_ground_truth(synthetic):
    masks, targets = _truth(synthetic)
    k = synthetic.palette.shape[0]
    collapsed = ModeCoverage(synthetic.palette)
    collapsed.update(targets[2:3].expand(20, -1, -1, -1, -1), masks)  # always appearance 2
    coverage, kl, off_palette = collapsed.compute()
    assert float(coverage) == pytest.approx(1 / k) and float(kl) == pytest.approx(math.log(k))
    assert float(off_palette) == 0.0
    truth = ModeCoverage(synthetic.palette)
    truth.update(targets.repeat(5, 1, 1, 1, 1), masks)  # 20 samples, every appearance 5 times
    coverage, kl, off_palette = truth.compute()
    assert float(coverage) == pytest.approx(1.0) and float(kl) == pytest.approx(0.0, abs=1e-12)
    assert truth.histogram.tolist() == [5 * len(synthetic)] * k and float(off_palette) == 0.0


def test_mode_coverage_does_not_count_garbage_as_a_mode(synthetic):
    """Noise, a black square or a coloured background are nearest to SOME palette colour, but
    show no appearance: they cover no mode and count as off-palette."""
    masks, targets = _truth(synthetic)
    k, n = synthetic.palette.shape[0], len(synthetic)
    noise = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    black = -torch.ones(n, 3, 32, 32)
    red_everywhere = synthetic.palette[0].view(1, 3, 1, 1).expand(n, 3, 32, 32)
    garbage = torch.stack([noise, black, red_everywhere])  # (3, N, 3, H, W)
    only_garbage = ModeCoverage(synthetic.palette)
    only_garbage.update(garbage, masks)
    coverage, kl, off_palette = only_garbage.compute()
    assert float(coverage) == 0.0 and float(off_palette) == 1.0 and float(kl) == pytest.approx(math.log(k))
    # two true appearances and the three garbage samples: 2 of K covered, 3 of 5 off-palette, the
    # recognised samples spread evenly over their two modes
    mixed = ModeCoverage(synthetic.palette)
    mixed.update(torch.cat([targets[:2], garbage]), masks)
    coverage, kl, off_palette = mixed.compute()
    assert float(coverage) == pytest.approx(2 / k) and float(off_palette) == pytest.approx(3 / 5)
    assert float(kl) == pytest.approx(math.log(k / 2))


def test_encoded_accuracy_counts_reconstructions_of_the_targets_own_appearance(synthetic):
    masks, targets = _truth(synthetic)
    truth = torch.tensor([int(synthetic[i]["appearance"]) for i in range(len(synthetic))])
    own = targets[truth, torch.arange(len(synthetic))]
    accuracy = EncodedAccuracy(synthetic.palette)
    accuracy.update(own, masks, truth)
    assert float(accuracy.compute()) == 1.0
    shifted = targets[(truth + 1) % synthetic.palette.shape[0], torch.arange(len(synthetic))]
    half = EncodedAccuracy(synthetic.palette)
    half.update(torch.cat([own[:2], shifted[2:4], -torch.ones_like(own[4:])]), masks, truth)
    assert float(half.compute()) == pytest.approx(2 / len(synthetic))


def test_mask_iou_is_one_for_the_ground_truth_and_zero_for_a_blank_image(synthetic):
    masks, targets = _truth(synthetic)
    iou = MaskIoU(synthetic.palette)
    iou.update(targets.flatten(0, 1), masks.repeat(targets.shape[0], 1, 1, 1))
    assert float(iou.compute()) == pytest.approx(1.0)
    blank = MaskIoU(synthetic.palette)
    blank.update(torch.ones(len(synthetic), 3, 32, 32), masks)
    assert float(blank.compute()) == pytest.approx(0.0)


# ---- the suite and its cache ---------------------------------------------------------------------
def _suite(cache_dir, **options):
    defaults = dict(
        feature_extractor=lambda: ConvFeatures(num_features=16, width=8), lpips=MeanAbsoluteDistance,
        kid_subsets=2, samples_per_input=4, diversity_inputs=4, cache_dir=str(cache_dir),
    )
    return EvaluationSuite(**{**defaults, **options})


def test_suite_caches_real_statistics_on_disk_per_dataset(tmp_path, synthetic):
    masks, targets = _truth(synthetic)
    batch = {"B": targets[0], "mask": masks}
    samples = targets[[1, 2, 3, 1]]
    data_config = {"_target_": "Synthetic", "crop_size": 32, "seed": 0, "batch_size": 4}

    first = _suite(tmp_path)
    first.prepare(palette=synthetic.palette, data_config=data_config, num_items=len(synthetic))
    assert not first.has_real
    first.update(batch, samples)
    results = first.compute()
    cached = list((tmp_path / first.features.name).glob("*.pt"))
    assert len(cached) == 1
    assert set(results) == set(first.metric_names())
    assert results["mode_coverage"] == pytest.approx(0.75) and results["mask_iou"] == pytest.approx(1.0)

    again = _suite(tmp_path)  # a later evaluation: real statistics come from disk
    again.prepare(palette=synthetic.palette, data_config={**data_config, "batch_size": 16}, num_items=len(synthetic))
    assert again.has_real
    again.update({"B": torch.zeros_like(batch["B"]), "mask": masks}, samples)  # real images unused now
    assert again.compute()["fid_conv"] == pytest.approx(results["fid_conv"], rel=1e-9)

    other = _suite(tmp_path)  # another resolution is another dataset
    other.prepare(palette=synthetic.palette, data_config={**data_config, "crop_size": 64}, num_items=len(synthetic))
    assert not other.has_real


def test_suite_skips_metrics_whose_weights_are_missing_only_when_asked(tmp_path):
    missing = lambda: InceptionFeatures(weights_dir=str(tmp_path), allow_download=False)  # noqa: E731
    with pytest.raises(WeightsNotFoundError):
        EvaluationSuite(feature_extractor=missing, lpips=None)
    with pytest.warns(UserWarning, match="fid/kid/is is skipped"):
        suite = EvaluationSuite(feature_extractor=missing, lpips=None, on_missing_weights="skip")
    assert suite.distribution is None and "fid/kid/is" in suite.skipped
    assert "fid" not in suite.metric_names()


def test_source_preservation_of_the_unpaired_set_keeps_shape_and_colour_of_the_input():
    from bicyclegan_pl.data.synthetic import SyntheticUnpairedDataset, striped_image
    from bicyclegan_pl.metrics.ground_truth import ColourKept, MaskIoU, dominant_colour

    def kept(outputs):  # (shape IoU, colour kept) of translations of the 24 inputs
        shape, colour = MaskIoU(dataset.palette), ColourKept(dataset.palette)
        shape.update(outputs, masks)
        colour.update(outputs, masks, colours)
        return float(shape.compute()), float(colour.compute())

    dataset = SyntheticUnpairedDataset(24, image_size=32, seed=2)
    items = [dataset[index] for index in range(len(dataset))]
    flat = torch.stack([item["A"] for item in items])
    masks = torch.stack([item["mask_A"] for item in items])
    colours = torch.stack([item["colour_A"] for item in items])
    # the ideal translation: the same object, striped (domain B's style) in the same colour
    striped = torch.stack([
        striped_image(dataset.sample("A", index)[0], dataset.palette[int(colours[index])], 32) for index in range(24)
    ])
    assert torch.equal(dominant_colour(striped, masks, dataset.palette), colours)
    assert torch.equal(dominant_colour(flat, masks, dataset.palette), colours)
    assert kept(flat) == kept(striped) == (1.0, 1.0)
    # a translation that keeps the shape but changes every colour; one that draws nothing
    recoloured = torch.stack([
        striped_image(dataset.sample("A", index)[0], dataset.palette[(int(colours[index]) + 1) % 4], 32) for index in range(24)
    ])
    assert kept(recoloured) == (1.0, 0.0)
    assert kept(torch.ones_like(flat)) == (0.0, 0.0)
    # another object of the same colour (domain B's own drawing): the shape is not kept
    other = torch.stack([item["B"] for item in items])
    assert kept(other)[0] < 0.6
