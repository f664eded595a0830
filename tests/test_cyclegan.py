"""CycleGAN on the schedule engine: the reference update bit for bit, the image pool, the
two-way evaluation and the configs."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from bicyclegan_pl.models.image_pool import ImagePool
from tests.cli import run_train
from tests.helpers import SMALL_CYCLEGAN, StepRecorder, build_model, clone, cpu_trainer, loader, random_batches
from tests.metric_fixtures import MeanAbsoluteDistance


def _set_requires_grad(nets, flag: bool) -> None:
    for net in nets:
        for parameter in net.parameters():
            parameter.requires_grad = flag


def _mse(prediction, target_is_real: bool):
    return torch.nn.MSELoss()(prediction, torch.tensor(1.0 if target_is_real else 0.0).expand_as(prediction))


def reference_loop(G_A, G_B, D_A, D_B, batches, lambda_A=10.0, lambda_B=10.0, lambda_idt=0.5):
    """junyanz cycle_gan_model.optimize_parameters(), written out by hand (pool disabled)."""
    opt_G = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=0.0002, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=0.0002, betas=(0.5, 0.999))
    for batch in batches:
        real_A, real_B = batch["A"], batch["B"]
        fake_B = G_A(real_A)
        rec_A = G_B(fake_B)
        fake_A = G_B(real_B)
        rec_B = G_A(fake_A)
        _set_requires_grad([D_A, D_B], False)
        opt_G.zero_grad()
        idt_A = G_A(real_B)
        loss_idt_A = F.l1_loss(idt_A, real_B) * lambda_B * lambda_idt
        idt_B = G_B(real_A)
        loss_idt_B = F.l1_loss(idt_B, real_A) * lambda_A * lambda_idt
        loss_G_A = _mse(D_A(fake_B), True)
        loss_G_B = _mse(D_B(fake_A), True)
        loss_cycle_A = F.l1_loss(rec_A, real_A) * lambda_A
        loss_cycle_B = F.l1_loss(rec_B, real_B) * lambda_B
        loss_G = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
        loss_G.backward()
        opt_G.step()
        _set_requires_grad([D_A, D_B], True)
        opt_D.zero_grad()
        loss_D_A = (_mse(D_A(real_B), True) + _mse(D_A(fake_B.detach()), False)) * 0.5
        loss_D_A.backward()
        loss_D_B = (_mse(D_B(real_A), True) + _mse(D_B(fake_A.detach()), False)) * 0.5
        loss_D_B.backward()
        opt_D.step()
    return opt_G, opt_D


def test_reference_update_is_bit_identical_to_a_hand_written_loop():
    torch.manual_seed(0)
    model, _ = build_model(*SMALL_CYCLEGAN, "model.pool_size=0", tiny=False)
    nets = [clone(net) for net in model.optimizer_groups().values()]
    before = clone(model.generator_A).state_dict()
    batches = random_batches(3, batch_size=2, size=32, input_nc=3, seed=1)

    cpu_trainer(limit_train_batches=3).fit(model, train_dataloaders=loader(batches))
    assert model.iteration == 3
    assert any(not torch.equal(before[k], v) for k, v in model.generator_A.state_dict().items())

    opt_G, opt_D = reference_loop(*nets, batches)
    for name, ours, theirs in zip(["G_A", "G_B", "D_A", "D_B"], model.optimizer_groups().values(), nets):
        for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key} differs from the hand-written reference loop"
    # four per-net Adams hold the same moments as the reference's two chained ones
    ours = [state for optimizer in model.trainer.optimizers for state in optimizer.state_dict()["state"].values()]
    theirs = [*opt_G.state_dict()["state"].values(), *opt_D.state_dict()["state"].values()]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_image_pool_fills_then_swaps_half_the_time():
    pool = ImagePool(pool_size=2)
    images = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1)
    # third image: uniform 0.9 > 0.5 -> returns stored slot 1 (image 1) and stores image 2 there
    out = pool.query(images, (torch.tensor([0.0, 0.0, 0.9]), torch.tensor([0, 0, 1])))
    assert out.flatten().tolist() == [0.0, 1.0, 1.0]
    assert [float(i) for i in pool.images] == [0.0, 2.0]
    # uniform 0.1 -> the new image itself, pool unchanged
    out = pool.query(torch.full((1, 1, 1, 1), 7.0), (torch.tensor([0.1]), torch.tensor([0])))
    assert out.flatten().tolist() == [7.0] and [float(i) for i in pool.images] == [0.0, 2.0]
    # size 0: the images pass through
    assert torch.equal(ImagePool(0).query(images, ImagePool(0).draw(3, torch.Generator())), images)


def test_pool_feeds_the_discriminators_and_survives_a_checkpoint():
    torch.manual_seed(0)
    model, _ = build_model(*SMALL_CYCLEGAN, "model.pool_size=3", tiny=False)
    cpu_trainer(limit_train_batches=4).fit(model, train_dataloaders=loader(random_batches(4, 2, size=32, input_nc=3)))
    assert len(model.pool_fake_B.images) == 3 and len(model.pool_fake_A.images) == 3
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    restored, _ = build_model(*SMALL_CYCLEGAN, "model.pool_size=3", tiny=False)
    restored.on_load_checkpoint(checkpoint)
    for a, b in zip(model.pool_fake_B.images, restored.pool_fake_B.images):
        assert torch.equal(a, b)


def test_identity_loss_with_different_channel_counts_is_refused_with_the_fix():
    with pytest.raises(Exception, match="model.loss_weights.idt_A=0"):
        build_model(*SMALL_CYCLEGAN, "data.input_nc=1", tiny=False)


def test_two_way_outputs_and_sample_columns():
    model, _ = build_model(*SMALL_CYCLEGAN, tiny=False)
    batch = random_batches(1, 2, size=32, input_nc=3)[0]
    directions = model.evaluation_directions()
    assert {name: key for name, (_, key) in directions.items()} == {"AtoB": "B", "BtoA": "A"}
    assert torch.equal(directions["AtoB"][0](batch), model.generator_A(batch["A"]).detach())
    assert torch.equal(directions["BtoA"][0](batch), model.generator_B(batch["B"]).detach())
    columns = model.sample_columns(batch, 5, torch.Generator())
    assert [title for title, _ in columns] == ["real A", "fake B", "rec A", "real B", "fake A", "rec B"]
    assert torch.equal(columns[2][1], model.generator_B(model.generator_A(batch["A"])).detach())
    samples = model.sample_outputs(batch, 3, torch.Generator())
    assert samples.shape == (3, 2, 3, 32, 32) and torch.equal(samples[0], samples[2])


@pytest.mark.parametrize("experiment", ["cyclegan_synthetic", "cyclegan_monet", "cyclegan_gta2cityscapes", "cyclegan_colorization"])
def test_each_experiment_trains_both_directions_and_measures_no_diversity(experiment, tmp_path, monkeypatch):
    """One iteration of each experiment (narrow nets, 32 px, its data's channel counts: grayscale
    inputs for colorization): both generators, then both discriminators, each step once; and the
    evaluation suite its config builds leaves LPIPS diversity out (a deterministic translator has
    none to measure) without loading LPIPS weights."""
    loaded = []
    monkeypatch.setattr("bicyclegan_pl.metrics.load_lpips", lambda **options: loaded.append(options) or MeanAbsoluteDistance())
    torch.manual_seed(0)
    model, cfg = build_model(
        f"+experiment={experiment}", *SMALL_CYCLEGAN[2:], "metrics/feature_extractor=conv", f"paths.weights_dir={tmp_path}",
        tiny=False,
    )
    recorder = StepRecorder()
    batches = random_batches(1, 2, size=32, input_nc=cfg.data.input_nc)
    cpu_trainer(limit_train_batches=1, callbacks=[recorder]).fit(model, train_dataloaders=loader(batches))
    assert recorder.order == ["G_A", "G_B", "D_A", "D_B"]
    assert all(any(g.abs().sum() > 0 for g in gradients) for _, gradients in recorder.steps)
    suite = instantiate(cfg.metrics, _convert_="all")  # as callbacks.metrics and the evaluate command build it
    assert "lpips_diversity" not in suite.metric_names() and not loaded


def test_train_then_evaluate_both_directions_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    tiny = ["model.generator.ngf=8", "model.generator.n_blocks=2", "model.discriminator.ndf=8", "model.discriminator.n_layers=2",
            "data.crop_size=32", "data.train_size=8", "data.val_size=8", "data.batch_size=2"]
    result = run_train(
        "+experiment=cyclegan_synthetic", *tiny, "trainer.max_epochs=1", "logger=csv", "metrics/feature_extractor=conv",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert {"val/fid_conv", "val/recon_l1", "val/cycle_A_l1", "train/cycle_A_epoch"} <= set(header.split(","))
    assert "val/lpips_diversity" not in header  # no LPIPS weights were needed (the default config would load them)
    evaluation = run_train(
        f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", "metrics/feature_extractor=conv", "metrics.lpips=null",
        module="bicyclegan_pl.evaluate",
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    summary = json.loads((run_dir / "eval" / "last-val" / "metrics.json").read_text())
    metrics = summary["metrics"]
    assert {"AtoB/fid_conv", "BtoA/fid_conv", "AtoB/kid_mean_conv", "BtoA/kid_mean_conv"} <= set(metrics)
    # the synthetic unpaired inputs come with their mask and colour: what each direction keeps of them
    assert {"AtoB/shape_iou", "AtoB/colour_kept", "BtoA/shape_iou", "BtoA/colour_kept"} <= set(metrics)
    assert "val/shape_iou" in header and all(0 <= metrics[f"{d}/shape_iou"] <= 1 for d in ("AtoB", "BtoA"))
    assert metrics["AtoB/fid_conv"] != metrics["BtoA/fid_conv"]
    # each direction states what it saw and how it was measured, not only the last one
    assert "protocol" not in summary and "num_inputs" not in summary
    directions = summary["directions"]
    assert {name: found["compared_with"] for name, found in directions.items()} == {"AtoB": "B", "BtoA": "A"}
    assert all(found["num_inputs"] == 8 for found in directions.values())
    assert all(found["protocol"]["feature_extractor"].startswith("conv-random") for found in directions.values())
    caches = {found["protocol"]["real_statistics_cache"] for found in directions.values()}
    assert len(caches) == 2  # real B and real A have their own statistics
    report = (run_dir / "eval" / "last-val" / "metrics.md").read_text()
    assert "AtoB: FID" in report
    assert "AtoB: 8 inputs, compared with real B; one output per input" in report
    assert "BtoA: 8 inputs, compared with real A; one output per input" in report


def test_alternating_order_steps_each_generator_then_the_discriminator_that_judges_it():
    torch.manual_seed(0)
    model, _ = build_model("+experiment=cyclegan_alternating", *SMALL_CYCLEGAN[2:], tiny=False)
    before = {name: clone(net).state_dict() for name, net in model.optimizer_groups().items()}
    recorder = StepRecorder()
    batches = random_batches(2, 2, size=32, input_nc=3)
    cpu_trainer(limit_train_batches=2, callbacks=[recorder]).fit(model, train_dataloaders=loader(batches))
    assert recorder.order == ["G_A", "D_A", "G_B", "D_B"] * 2  # D_A judges G_A's fakes (B), D_B G_B's (A)
    for name, net in model.optimizer_groups().items():
        assert any(not torch.equal(before[name][k], v) for k, v in net.state_dict().items()), f"{name} did not move"
    assert [int(o.state_dict()["state"][0]["step"]) for o in model.trainer.optimizers] == [2, 2, 2, 2]


def test_k_discriminator_steps_per_generator_step_each_on_its_own_minibatch():
    """Seed 004's Algorithm 2 with k = 2: D_X and D_Y step on iterations 0 and 1, G and F on 2;
    a generator iteration computes no discriminator loss and a discriminator iteration no
    generator gradient."""
    torch.manual_seed(0)
    model, _ = build_model("+experiment=cyclegan_k_discriminator_steps", *SMALL_CYCLEGAN[2:], tiny=False)
    computed: list[tuple[int, str]] = []
    terms = model.loss_terms()
    model.loss_terms = lambda: {
        name: (lambda r, n=name, f=fn: computed.append((model.iteration, n)) or f(r)) for name, fn in terms.items()
    }
    recorder = StepRecorder()
    batches = random_batches(6, 2, size=32, input_nc=3)
    cpu_trainer(limit_train_batches=6, callbacks=[recorder]).fit(model, train_dataloaders=loader(batches))
    assert recorder.order == ["D_A", "D_B", "D_A", "D_B", "G_A", "G_B"] * 2
    assert [int(o.state_dict()["state"][0]["step"]) for o in model.trainer.optimizers] == [2, 2, 4, 4]
    by_iteration = {i: {n for j, n in computed if j == i} for i in range(6)}
    for iteration in (0, 1, 3, 4):
        assert by_iteration[iteration] == {"d_A", "d_B"}
    for iteration in (2, 5):
        assert "d_A" not in by_iteration[iteration] and {"gan_A", "cycle_A"} <= by_iteration[iteration]
