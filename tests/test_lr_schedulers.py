"""Learning-rate schedulers are `_target_`/`_partial_` configs: the built-in policies, a scheduler
given only in YAML, and errors that name `model.lr_scheduler`."""
from __future__ import annotations

import lightning as L
import pytest
import torch

from bicyclegan_pl.config import user_errors_as_messages
from bicyclegan_pl.runtime.lr_schedulers import LRSchedulerError
from tests.helpers import LearningRateRecorder, build_model, cpu_trainer, loader, random_batches


class InitialRates(L.Callback):
    """Each optimiser's learning rate when training starts, by its group name."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rates = {o.param_groups[0]["name"]: o.param_groups[0]["lr"] for o in trainer.optimizers}


def rates(optimizers) -> dict[str, float]:
    return {o.param_groups[0]["name"]: o.param_groups[0]["lr"] for o in optimizers}


def test_a_scheduler_given_only_in_yaml_steps_every_optimiser_once_per_epoch(tmp_path):
    group = tmp_path / "model" / "lr_scheduler"
    group.mkdir(parents=True)
    (group / "exponential.yaml").write_text(
        "_target_: torch.optim.lr_scheduler.ExponentialLR\n_partial_: true\ngamma: 0.5\n"
    )
    model, _ = build_model(f"hydra.searchpath=[file://{tmp_path}]", "model/lr_scheduler=exponential", "+model.lr.E=0.001")
    initial = InitialRates()
    trainer = cpu_trainer(limit_train_batches=1, callbacks=[initial])
    trainer.fit(model, train_dataloaders=loader(random_batches(1, 2)))
    assert initial.rates == pytest.approx({"G": 2e-4, "E": 1e-3, "D_vae": 2e-4, "D_clr": 2e-4})
    assert rates(trainer.optimizers) == pytest.approx({name: 0.5 * lr for name, lr in initial.rates.items()})


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_the_default_linear_decay_is_junyanz_policy():
    """max_epochs 4: constant for 2 epochs, then 1 - 1/3, 1 - 2/3 (n_epochs_decay + 1 = 3 steps to 0)."""
    model, _ = build_model("trainer.max_epochs=4")
    optimizers, schedulers = model.configure_optimizers()
    seen = []
    for _ in range(4):
        seen.append(rates(optimizers)["G"])
        for scheduler in schedulers:
            scheduler.step()
    assert len(schedulers) == len(optimizers) == 4
    assert seen == pytest.approx([2e-4, 2e-4, 2e-4 * 2 / 3, 2e-4 / 3])


@pytest.mark.parametrize("choice", ["cosine", "step"])
def test_the_torch_policies_of_the_config_group_build(choice):
    model, _ = build_model(f"model/lr_scheduler={choice}", "model.lr_scheduler.step_size=1" if choice == "step" else "seed=0")
    _, schedulers = model.configure_optimizers()
    expected = torch.optim.lr_scheduler.CosineAnnealingLR if choice == "cosine" else torch.optim.lr_scheduler.StepLR
    assert all(type(scheduler) is expected for scheduler in schedulers)


def test_a_target_that_cannot_be_imported_is_a_one_line_error_naming_the_key(capsys):
    with pytest.raises(SystemExit) as exit_info, user_errors_as_messages():
        build_model("model.lr_scheduler._target_=torch.optim.lr_scheduler.NoSuchLR")
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("error: model.lr_scheduler: cannot import _target_ 'torch.optim.lr_scheduler.NoSuchLR'")
    assert len(message.strip().splitlines()) == 1


def test_a_scheduler_config_that_is_not_a_factory_names_the_key(capsys):
    """The former `{policy: linear, ...}` form (no _target_) is refused with the form to use."""
    with pytest.raises(SystemExit) as exit_info, user_errors_as_messages():
        build_model("~model.lr_scheduler", "+model.lr_scheduler={policy: linear, n_epochs: 1, n_epochs_decay: 1}")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: model.lr_scheduler must be null or a scheduler factory")


def test_bad_scheduler_arguments_name_the_key_and_the_optimiser():
    model, _ = build_model("model/lr_scheduler=step", "+model.lr_scheduler.no_such_argument=1", "model.lr_scheduler.step_size=1")
    with pytest.raises(LRSchedulerError, match=r"model\.lr_scheduler cannot make a scheduler for optimiser G: TypeError"):
        model.configure_optimizers()


def test_interval_step_counts_each_optimisers_own_steps():
    """`interval: step`: a scheduler steps after each iteration in which its optimiser stepped, so
    with the discriminators' phase on every second iteration (every: 2) they move through the
    stages at half the generator's pace; the epoch end (4 iterations here) does not step them."""
    model, _ = build_model(
        "+model.schedule.1.every=2", "model/lr_scheduler=stages", "model.lr_scheduler.interval=step",
        "model.lr_scheduler.stages=[[1,1.0],[1,0.5],[1,0.25]]",
    )
    recorder = LearningRateRecorder()
    trainer = cpu_trainer(max_epochs=2, callbacks=[recorder])
    trainer.fit(model, train_dataloaders=loader(random_batches(4, 2)))
    by_name = {name: [lr for stepped, lr in recorder.steps if stepped == name] for name in ("G", "E", "D_vae", "D_clr")}
    factors = [1.0, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]  # 8 iterations, stages of one step
    assert by_name["G"] == by_name["E"] == pytest.approx([2e-4 * f for f in factors])
    assert by_name["D_vae"] == by_name["D_clr"] == pytest.approx([2e-4 * f for f in factors[:4]])  # iterations 0, 2, 4, 6


def test_an_unknown_interval_is_a_one_line_error_naming_the_key(capsys):
    with pytest.raises(SystemExit) as exit_info, user_errors_as_messages():
        build_model("model/lr_scheduler=stages", "model.lr_scheduler.stages=[[1,1.0]]", "model.lr_scheduler.interval=batch")
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("error: model.lr_scheduler.interval must be one of epoch, step; got 'batch'")
    assert len(message.strip().splitlines()) == 1
