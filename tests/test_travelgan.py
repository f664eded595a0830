"""TraVeLGAN / CLIPTraVeLGAN: one training iteration per Siamese space with a tiny CLIP built
locally, CLIP kept frozen and out of checkpoints, and the experiment configs."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from tests.cli import run_train
from tests.helpers import LearningRateRecorder, StepRecorder, build_model, clone, cpu_trainer, loader, random_batches

SMALL = (
    "model=travelgan",
    "data=synthetic_unpaired",
    "data.crop_size=32",
    "model.generator.ngf=8",
    "model.discriminator.ndf=8",
    "model.discriminator.n_layers=2",
)


def _fit_one_iteration(model, **trainer_options) -> StepRecorder:
    """One iteration on random images; every optimiser's net moves. Returns the optimiser steps."""
    before = {name: clone(net).state_dict() for name, net in model.optimizer_groups().items()}
    recorder = StepRecorder()
    trainer = cpu_trainer(limit_train_batches=1, callbacks=[recorder], **trainer_options)
    trainer.fit(model, train_dataloaders=loader(random_batches(1, 4, size=32, input_nc=3)))
    assert model.iteration == 1
    for name, net in model.optimizer_groups().items():
        assert any(not torch.equal(before[name][k], v) for k, v in net.state_dict().items()), f"{name} did not move"
    return recorder


@pytest.mark.parametrize(
    "variant",
    [
        ["model.siamese.output=pooler"],
        ["model.siamese.output=image_embeds"],
        ["model/siamese=clip_random"],
        ["model.siamese.checkpoint=true", "model.siamese.chunk_size=3"],
    ],
)
def test_clip_spaces_train_the_generator_and_leave_clip_untouched(tiny_clip_dir, variant):
    torch.manual_seed(0)
    model, _ = build_model(*SMALL, *variant, f"model.siamese.model={tiny_clip_dir}", tiny=False)
    clip = model.frozen_siamese
    weights = {k: v.clone() for k, v in clip.state_dict().items()}
    _fit_one_iteration(model)
    assert list(model.optimizer_groups()) == ["G", "D"]
    assert all(not p.requires_grad and p.grad is None for p in clip.parameters())
    assert all(torch.equal(weights[k], v) for k, v in clip.state_dict().items())
    assert not any("siamese" in key for key in model.state_dict())  # never in a checkpoint
    assert not clip.training  # eval mode even inside fit


def test_checkpointed_clip_trains_under_bf16_mixed(tiny_clip_dir):
    torch.manual_seed(0)
    model, _ = build_model(
        *SMALL, "model.siamese.checkpoint=true", "model.siamese.chunk_size=2", f"model.siamese.model={tiny_clip_dir}", tiny=False
    )
    _fit_one_iteration(model, precision="bf16-mixed")
    assert all(torch.isfinite(p).all() for p in model.generator.parameters())


def test_random_clip_differs_from_the_pretrained_one(tiny_clip_dir):
    pretrained, _ = build_model(*SMALL, f"model.siamese.model={tiny_clip_dir}", tiny=False)
    random, _ = build_model(*SMALL, "model/siamese=clip_random", f"model.siamese.model={tiny_clip_dir}", tiny=False)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(pretrained.frozen_siamese(images), random.frozen_siamese(images))


def test_gradients_reach_the_generator_through_clip(tiny_clip_dir):
    model, _ = build_model(*SMALL, f"model.siamese.model={tiny_clip_dir}", tiny=False)
    real_A = torch.rand(4, 3, 32, 32) * 2 - 1
    fake = model.generator(real_A)
    from bicyclegan_pl.losses import travel_loss

    loss = travel_loss(model.frozen_siamese(real_A, "A"), model.frozen_siamese(fake, "B"))
    loss.backward()
    grads = [p.grad for p in model.generator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_learned_space_trains_with_the_margin_in_travelgans_order():
    torch.manual_seed(0)
    model, _ = build_model(
        "+experiment=travelgan_monet", "data.crop_size=32", "model.generator.ngf=8", "model.generator.num_downs=2",
        "model.siamese.nf=8", "model.siamese.latent_dim=16", "model.discriminator.nf=8", tiny=False,
    )
    assert any(key.startswith("siamese.") for key in model.state_dict())  # the learned space is in checkpoints
    assert _fit_one_iteration(model).order == ["D", "G", "S"]  # D steps, then G and S on one backward


def test_margin_needs_a_learned_space(tiny_clip_dir):
    with pytest.raises(Exception, match="needs a learned Siamese space"):
        build_model(*SMALL, f"model.siamese.model={tiny_clip_dir}", "model.loss_weights.margin=1", tiny=False)


@pytest.mark.parametrize(
    ("experiment", "pretrained"),
    [("cliptravelgan_monet", True), ("cliptravelgan_gta2cityscapes", True), ("cliptravelgan_random_clip", False)],
)
def test_each_clip_experiment_steps_g_then_d_in_its_clip_space(experiment, pretrained, tiny_clip_dir):
    """One iteration of each CLIPTraVeLGAN experiment on narrow nets and the tiny CLIP: the paper's
    order (G, then D, from one forward; no optimiser for the space), and the space: CLIP's own
    weights, or (the paper's ablation) the same architecture with random weights."""
    from bicyclegan_pl.clip.siamese import ClipImageEmbedder

    torch.manual_seed(0)
    model, _ = build_model(
        f"+experiment={experiment}", "data.crop_size=32", "model.generator.ngf=8", "model.discriminator.ndf=8",
        "model.discriminator.n_layers=2", f"model.siamese.model={tiny_clip_dir}", tiny=False,
    )
    assert _fit_one_iteration(model).order == ["G", "D"]
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        embedded = model.frozen_siamese(images)
        assert torch.equal(embedded, ClipImageEmbedder.load(str(tiny_clip_dir))(images)) == pretrained


def test_checkpointed_chunked_clip_gives_the_same_loss_and_gradients_and_keeps_less(tiny_clip_dir):
    from bicyclegan_pl.clip.siamese import ClipImageEmbedder
    from bicyclegan_pl.losses import travel_loss
    from benchmarks.memory import count_saved_activations

    plain = ClipImageEmbedder.load(str(tiny_clip_dir))
    recomputed = ClipImageEmbedder(plain.model, plain.preprocess, chunk_size=3, checkpoint=True)
    real = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    outcomes = []
    for embedder in (plain, recomputed):
        fake = (real * 0.5).requires_grad_(True)  # stands in for G(x): the gradient must reach it
        source = embedder(real)
        with count_saved_activations([embedder]) as saved:
            translated = embedder(fake)
        loss = travel_loss(source, translated)
        loss.backward()
        outcomes.append((loss.detach(), fake.grad, saved.bytes))
    (loss_a, grad_a, bytes_a), (loss_b, grad_b, bytes_b) = outcomes
    assert torch.allclose(loss_a, loss_b, rtol=1e-5) and torch.allclose(grad_a, grad_b, rtol=1e-4, atol=1e-7)
    assert grad_a.abs().sum() > 0
    # checkpointed: what the preprocessing keeps plus CLIP's input, none of CLIP's layers
    with count_saved_activations() as preprocessing:
        pixels = plain.preprocess(real.clone().requires_grad_(True))
    assert bytes_b <= preprocessing.bytes + pixels.nbytes < bytes_a / 2, (bytes_a, bytes_b, preprocessing.bytes)
    with torch.no_grad():  # without a graph the chunks are plainly encoded and concatenated
        assert torch.allclose(recomputed(real), plain(real), rtol=1e-5, atol=1e-6)


def test_chunk_size_must_be_positive(tiny_clip_dir):
    from bicyclegan_pl.clip.siamese import ClipImageEmbedder

    with pytest.raises(ValueError, match="chunk_size"):
        ClipImageEmbedder.load(str(tiny_clip_dir), chunk_size=0)


@pytest.mark.parametrize("margin_weight", [0.0, 10.0])
def test_margin_keeps_the_learned_siamese_space_from_collapsing(margin_weight):
    """TraVeLGAN's degenerate solution: when G maps every input to the same image (v_G = 0), S
    can satisfy the TraVeL loss by mapping every real image to one point too. The margin term
    keeps real pairs at least sqrt(margin) apart."""
    from bicyclegan_pl.losses import pair_vectors
    from bicyclegan_pl.runtime.schedule import ForwardResults, ResultSpec

    torch.manual_seed(0)
    model, _ = build_model(
        "+experiment=travelgan_monet", "data.crop_size=16", "model.generator.ngf=8", "model.generator.num_downs=2",
        "model.siamese.nf=8", "model.siamese.latent_dim=8", "model.discriminator.nf=8",
        f"model.loss_weights.margin={margin_weight}", tiny=False,
    )
    model.setup("fit")
    real_A, real_B, same = (
        torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        for count, seed in ((6, 1), (6, 2), (1, 3))
    )
    collapsed_generator = {**model.forward_results(), "fake_B": ResultSpec(lambda r: same.expand(6, -1, -1, -1), nets=("G",))}
    terms, weights = model.loss_terms(), model.loss_weights
    optimizer = torch.optim.Adam(model.siamese.parameters(), lr=1e-3)

    def squared_distances():
        with torch.no_grad():
            return pair_vectors(model.siamese(real_A, "A")).pow(2).sum(dim=1)

    before = squared_distances()
    for _ in range(200):
        optimizer.zero_grad()
        results = ForwardResults(collapsed_generator, {"real_A": real_A, "real_B": real_B})
        loss = weights["travel"] * terms["travel"](results)
        if weights["margin"]:
            loss = loss + weights["margin"] * terms["margin"](results)
        loss.backward()
        optimizer.step()
    after = squared_distances()
    if margin_weight:
        assert after.min() > 0.9 * model.margin, after
    else:  # the same training without the margin collapses the space
        assert after.max() < 0.1 * before.min(), (before, after)


MONET = ("+experiment=cliptravelgan_monet", "data.crop_size=32", "model.generator.ngf=8", "model.discriminator.ndf=8",
         "model.discriminator.n_layers=2")


def test_cliptravelgan_monet_stages_learning_rates_in_steps_as_the_notebook(tiny_clip_dir):
    """The notebook's 14 stages of 1,400 steps: G at 2e-4 for its steps 0-9,799, 1e-4 for
    9,800-16,799, then 3e-5 (held after 19,600); D at twice G's rate. A scheduler and optimiser
    state saved at step 9,799 (a checkpoint holds both) resumes into the next stage on time."""
    model, _ = build_model(*MONET, f"model.siamese.model={tiny_clip_dir}", tiny=False)
    optimizers, schedulers = model.configure_optimizers()
    expected_g = {0: 2e-4, 9799: 2e-4, 9800: 1e-4, 16799: 1e-4, 16800: 3e-5, 19599: 3e-5, 19700: 3e-5}
    seen, saved = {}, None
    for step in range(max(expected_g) + 1):
        if step in expected_g:
            seen[step] = [optimizer.param_groups[0]["lr"] for optimizer in optimizers]
        if step == 9799:
            saved = [(o.state_dict(), s.state_dict()) for o, s in zip(optimizers, schedulers)]
        for scheduler in schedulers:
            scheduler.step()
    assert seen == {step: pytest.approx([lr, 2 * lr]) for step, lr in expected_g.items()}

    resumed, _ = build_model(*MONET, f"model.siamese.model={tiny_clip_dir}", tiny=False)
    optimizers, schedulers = resumed.configure_optimizers()
    for optimizer, scheduler, (optimizer_state, scheduler_state) in zip(optimizers, schedulers, saved):
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(scheduler_state)
    assert [o.param_groups[0]["lr"] for o in optimizers] == pytest.approx([2e-4, 4e-4])  # step 9,799
    for scheduler in schedulers:
        scheduler.step()
    assert [o.param_groups[0]["lr"] for o in optimizers] == pytest.approx([1e-4, 2e-4])  # step 9,800


def test_cliptravelgan_monet_counts_stages_in_steps_through_a_resume_and_stops_after_19600_g_steps(
    tiny_clip_dir, tmp_path
):
    """In training: the schedulers step after every iteration in which their optimiser stepped
    (here stages of one step each), also across a checkpoint resume; Lightning's global_step
    counts G's and D's steps, so the configured max_steps is 19,600 generator steps."""
    overrides = (*MONET, f"model.siamese.model={tiny_clip_dir}", "model.lr_scheduler.stages=[[1,1.0],[1,0.5],[1,0.15]]")
    batches = loader(random_batches(2, 4, size=32, input_nc=3))  # two iterations per epoch
    model, cfg = build_model(*overrides, tiny=False)
    first = LearningRateRecorder()
    trainer = cpu_trainer(max_steps=4, max_epochs=10, callbacks=[first])
    trainer.fit(model, train_dataloaders=batches)
    assert model.iteration == 2 and trainer.global_step == 4  # G and D each stepped twice
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    resumed, _ = build_model(*overrides, tiny=False)
    second = LearningRateRecorder()
    cpu_trainer(max_steps=6, max_epochs=10, callbacks=[second]).fit(
        resumed, train_dataloaders=batches, ckpt_path=tmp_path / "last.ckpt"
    )
    assert resumed.iteration == 3
    expected = [("G", 2e-4), ("D", 4e-4), ("G", 1e-4), ("D", 2e-4), ("G", 3e-5), ("D", 6e-5)]
    assert [name for name, _ in first.steps + second.steps] == [name for name, _ in expected]
    assert [lr for _, lr in first.steps + second.steps] == pytest.approx([lr for _, lr in expected])

    generator_steps_per_global_step = [name for name, _ in first.steps].count("G") / trainer.global_step
    configured = instantiate(cfg.trainer, accelerator="cpu", logger=False, default_root_dir=str(tmp_path))
    assert configured.max_steps * generator_steps_per_global_step == 19_600
    assert configured.max_epochs >= 19_600  # every epoch steps G at least once: max_steps ends the run


def test_lr_stages_are_checked():
    from bicyclegan_pl.runtime.lr_schedulers import stages

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="stages"):
        stages(optimizer, [[0, 1.0]])


def test_moving_the_module_moves_the_frozen_clip(tiny_clip_dir):
    model, _ = build_model(*SMALL, f"model.siamese.model={tiny_clip_dir}", tiny=False)
    model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in model.frozen_siamese.parameters())
    assert not any("siamese" in key for key in model.state_dict())


def test_semantic_travel_cosine_over_all_pairs_equals_the_loss_and_is_blocked_exactly():
    from bicyclegan_pl.losses import travel

    generator = torch.Generator().manual_seed(4)
    source, translated = torch.randn(9, 5, generator=generator), torch.randn(9, 5, generator=generator)
    expected = 1 - travel.travel_loss(source.double(), translated.double(), reduction="mean")
    assert torch.allclose(travel.travel_cosine(source, translated).double(), expected, atol=1e-6)
    original = travel._BLOCK_ELEMENTS
    try:  # two rows per block: the diagonal of every block must still be left out
        travel._BLOCK_ELEMENTS = 2 * 9 * 5
        assert torch.allclose(travel.travel_cosine(source, translated).double(), expected, atol=1e-6)
    finally:
        travel._BLOCK_ELEMENTS = original
    assert float(travel.travel_cosine(source, 3 * source + 1)) == pytest.approx(1.0, abs=1e-6)


def test_lambda_sweep_then_evaluate_then_report_per_lambda(tmp_path, tiny_clip_dir):
    """The user path of seed 002's sweep: +sweep=cliptravelgan_lambda (two of its lambdas here),
    evaluate a job, report FID and both semantic measures per lambda."""
    import json

    sweep_dir = tmp_path / "sweep"
    tiny = ["data=synthetic_unpaired", "~data.load_size", "data.crop_size=32", "data.train_size=8", "data.val_size=8", "data.batch_size=4",
            "model.generator.ngf=8", "model.discriminator.ndf=8", "model.discriminator.n_layers=2",
            f"model.siamese.model={tiny_clip_dir}", "model.lr_scheduler=null"]
    result = run_train(
        "-m", "+experiment=cliptravelgan_monet", "+sweep=cliptravelgan_lambda", *tiny, "trainer.max_epochs=1",
        "logger=csv", "metrics/feature_extractor=conv", "model.loss_weights.travel=0.0003,0.01",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header = (sweep_dir / "0" / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/fid_conv", "val/space_cosine", "val/travel_cosine", "train/travel_epoch"} <= set(header)
    assert "val/lpips_diversity" not in header
    for job in ("0", "1"):  # last.ckpt only: no "best" by a metric (FID and semantics pull apart)
        assert sorted(p.name for p in (sweep_dir / job / "checkpoints").glob("*.ckpt")) == ["last.ckpt"]

    evaluation = run_train(f"ckpt={sweep_dir / '1' / 'checkpoints' / 'last.ckpt'}", "metrics/feature_extractor=conv",
                           module="bicyclegan_pl.evaluate")
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    metrics = json.loads((sweep_dir / "1" / "eval" / "last-val" / "metrics.json").read_text())["metrics"]
    assert {"fid_conv", "space_cosine", "travel_cosine", "shape_iou", "colour_kept"} <= set(metrics)
    assert -1 <= metrics["travel_cosine"] <= 1 and "TraVeL cosine" in evaluation.stdout

    report = run_train(str(sweep_dir), "--group-by", "model.loss_weights.travel", module="bicyclegan_pl.report")
    assert report.returncode == 0, report.stderr
    grouped = report.stdout.split("Per job:")[0]
    rows = [line for line in grouped.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].split("|")]
    assert header[1] == "model.loss_weights.travel"
    # job 1 was evaluated too: its eval/ values sit beside every job's last validation
    assert {"val/fid_conv", "val/space_cosine", "val/travel_cosine", "eval/travel_cosine"} <= set(header)
    by_lambda = {row.split("|")[1].strip(): [cell.strip() for cell in row.split("|")] for row in rows[1:]}
    assert list(by_lambda) == ["0.0003", "0.01"]
    column = header.index("eval/travel_cosine")
    assert by_lambda["0.0003"][column] == "" and float(by_lambda["0.01"][column]) == pytest.approx(metrics["travel_cosine"], abs=1e-3)


def test_semantic_preservation_counts_each_held_out_input_once():
    from bicyclegan_pl.losses.travel import semantic_preservation
    from bicyclegan_pl.metrics.semantic import evaluate_semantic_preservation

    generator = torch.Generator().manual_seed(5)
    images = torch.randn(4, 6, generator=generator)

    def embed_pair(batch_images):  # a fixed "space" and a translator that keeps half of each vector
        return batch_images, batch_images * torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])

    # an unaligned split repeats A: items show A0 A1 A2 A3 A0 A1 in batches of 3
    order = [0, 1, 2, 3, 0, 1]
    batches = [
        {"A": images[order[i : i + 3]], "A_path": [f"a{j}.png" for j in order[i : i + 3]]} for i in (0, 3)
    ]
    measured = evaluate_semantic_preservation(embed_pair, batches)
    expected = {k: float(v) for k, v in semantic_preservation(*embed_pair(images)).items()}
    assert measured == pytest.approx(expected, rel=1e-6)


def test_a_missing_clip_names_the_siamese_key_and_how_to_get_it(tmp_path):
    from bicyclegan_pl.clip.loading import ClipNotFoundError
    from bicyclegan_pl.clip.siamese import ClipImageEmbedder

    missing = tmp_path / "nowhere" / "clip"
    with pytest.raises(ClipNotFoundError, match=r"model\.siamese\.model=.*no such folder") as caught:
        ClipImageEmbedder.load(str(missing))
    assert f"python -m bicyclegan_pl.clip.pretrain out_dir={missing}" in str(caught.value)
    with pytest.raises(ClipNotFoundError, match=r"model\.siamese\.model=openai/clip-vit-large-patch14.*huggingface-cli download"):
        ClipImageEmbedder.load("openai/clip-vit-large-patch14", local_files_only=True)
