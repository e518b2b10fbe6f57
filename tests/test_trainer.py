"""training/trainer.py: loss, schedules, phases, early stopping, validation-only selection, exact resume."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from skeleton_attention.models.base import ModelOutput
from skeleton_attention.skeletons.table import SampleTable
from skeleton_attention.training.callbacks import HistoryRecorder, StopAfterEpochs, TrainingInterruptedError
from skeleton_attention.training.checkpoints import (
    CheckpointDir,
    capture_rng_state,
    load_torch_file,
    restore_rng_state,
)
from skeleton_attention.training.data import DataSettings, build_loaders, build_training_data
from skeleton_attention.training.trainer import (
    EpochSchedule,
    Trainer,
    TrainerConfig,
    build_optimizer,
    compute_loss,
)
from tests.test_data import PROTOCOL, make_table  # the sibling test module writes the tiny tables

VOLATILE = ("train_time_s", "val_time_s", "train_samples_per_s")


class TinyModel(nn.Module):
    """Follows the model interface: masked temporal mean -> MLP, an extra head, a regularizer,
    a temporal attention map, and a phase switch that freezes the encoder."""

    def __init__(self, num_classes: int, num_joints: int, num_bodies: int, in_channels: int, hidden: int = 8):
        super().__init__()
        self.encoder = nn.Linear(num_bodies * num_joints * in_channels, hidden)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(hidden, num_classes)
        self.aux = nn.Linear(hidden, num_classes)
        self.frame_score = nn.Linear(hidden, 1)
        self.phases_seen: list[str] = []

    def configure_phase(self, phase: Mapping[str, Any]) -> None:
        self.phases_seen.append(str(phase.get("name")))
        if phase.get("reset_head"):  # like STA-LSTM's reset_main: re-initializes from the torch RNG
            self.head.reset_parameters()
        frozen = bool(phase.get("freeze_encoder", False))
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)

    def forward(self, batch):
        x, mask = batch["x"], batch["mask"]
        n, m, t, v, c = x.shape
        h = torch.tanh(self.encoder(x.permute(0, 2, 1, 3, 4).reshape(n, t, m * v * c)))
        h = self.dropout(h)
        score = self.frame_score(h).squeeze(-1)
        score = score.masked_fill(~mask, torch.finfo(score.dtype).min)
        beta = torch.softmax(score, dim=1)
        pooled = (beta.unsqueeze(-1) * h).sum(1)
        reg = 1e-3 * self.head.weight.pow(2).sum()
        return ModelOutput(
            logits=self.head(pooled),
            head_logits={"aux": self.aux(pooled)},
            regularization={"l2": reg},
            attention={"temporal": beta.detach()},
        )


@pytest.fixture
def tiny_table(tmp_path) -> SampleTable:
    return SampleTable(make_table(tmp_path / "samples.parquet", per_class=10, signal=1.0))


def _setup(table, seed: int = 0, batch_size: int = 4):
    settings = DataSettings.from_config(
        {
            "protocol": PROTOCOL,
            "val_fraction": 0.25,
            "batch_size": batch_size,
            "num_bodies": 2,
            "sampling": {"mode": "crop_resize", "length": 6, "crop_ratio": [0.6, 1.0]},
            "augmentation": {"noise_std": 0.05, "rotation_deg": 15},
        }
    )
    data = build_training_data(table, settings, seed=seed)
    loaders = build_loaders(data, settings, seed=seed)
    torch.manual_seed(seed)
    model = TinyModel(data.num_classes, data.num_joints, 2, data.num_channels)
    return model, loaders


def _strip(history):
    """History without timings; NaN (e.g. no selectable epoch yet) as None so that it compares equal."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in h.items() if k not in VOLATILE}
        for h in history
    ]


# --- loss, optimizers, schedules -------------------------------------------------------------------


def test_loss_is_ce_plus_head_ce_plus_regularization():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    head = torch.tensor([[0.0, 3.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1])
    out = ModelOutput(logits=logits, head_logits={"h": head}, regularization={"r": torch.tensor(0.25)})
    total, parts = compute_loss(out, labels)
    ce = -np.mean([np.log(np.exp(2) / (np.exp(2) + 1)), np.log(np.e / (1 + np.e))])
    ce_head = -np.mean([np.log(1 / (1 + np.exp(3))), np.log(0.5)])
    assert float(parts["ce"]) == pytest.approx(ce, rel=1e-6)
    assert float(parts["ce_h"]) == pytest.approx(ce_head, rel=1e-6)
    assert float(total) == pytest.approx(ce + ce_head + 0.25, rel=1e-6)
    with pytest.raises(ValueError, match="must be a scalar"):
        compute_loss(ModelOutput(logits=logits, regularization={"r": torch.ones(2)}), labels)


def _lrs(config, epochs, metrics=None, mode="max"):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = EpochSchedule(opt, config, epochs, mode)
    out = [opt.param_groups[0]["lr"]]
    for e in range(epochs - 1):
        schedule.step(None if metrics is None else metrics[e])
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_schedules_follow_their_definitions():
    warm_multi = _lrs(
        {"name": "multistep", "milestones": [4, 6], "gamma": 0.1, "warmup_epochs": 2, "warmup_start_factor": 0.5}, 8
    )
    np.testing.assert_allclose(warm_multi, [0.5, 0.75, 1, 1, 0.1, 0.1, 0.01, 0.01])
    np.testing.assert_allclose(_lrs({"name": "step", "step_size": 2, "gamma": 0.5}, 5), [1, 1, 0.5, 0.5, 0.25])
    cosine = _lrs({"name": "cosine", "eta_min": 0.0}, 5)
    # T_max = the phase's epochs: the rate would reach eta_min one step after the last epoch
    np.testing.assert_allclose(cosine, [0.5 * (1 + math.cos(math.pi * e / 5)) for e in range(5)], atol=1e-12)
    # plateau on a max metric: improves twice then flat; patience 1 -> reduce after 2 flat epochs
    plateau = _lrs({"name": "plateau", "factor": 0.1, "patience": 1}, 6, metrics=[0.1, 0.2, 0.2, 0.2, 0.2])
    np.testing.assert_allclose(plateau, [1, 1, 1, 1, 0.1, 0.1])
    # the plateau logic never sees the warm-up epochs' (higher) metrics: it first reduces after epoch 4
    warm_plateau = _lrs({"name": "plateau", "patience": 0, "warmup_epochs": 2}, 5, metrics=[0.5, 0.4, 0.3, 0.2])
    np.testing.assert_allclose(warm_plateau, [0.1, 0.55, 1.0, 1.0, 0.1])
    with pytest.raises(ValueError, match="after the warm-up"):
        _lrs({"name": "multistep", "milestones": [1], "warmup_epochs": 2}, 3)


def test_optimizers_from_config():
    params = [nn.Parameter(torch.zeros(2))]
    sgd = build_optimizer(params, {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4})
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["weight_decay"] == 5e-4
    assert isinstance(build_optimizer(params, {"name": "adamw", "lr": 1e-3}), torch.optim.AdamW)
    with pytest.raises(ValueError, match="not one of"):
        TrainerConfig(optimizer={"name": "lbfgs", "lr": 1.0})
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer([], {"name": "adam", "lr": 1e-3})
    with pytest.raises(ValueError, match="unknown trainer settings"):
        TrainerConfig.from_config({"epoch": 3})


# --- resume -------------------------------------------------------------------------------------------

CONFIG = {
    "optimizer": {"name": "adam", "lr": 0.01},
    "schedule": {"name": "cosine", "warmup_epochs": 1},
    "phases": [
        {"name": "frozen_encoder", "epochs": 2, "freeze_encoder": True},
        {"name": "all", "epochs": 3, "reset_head": True, "schedule": {"name": "plateau", "patience": 0, "factor": 0.5}},
    ],
    "grad_clip_norm": 1.0,
    "seed": 7,
    "progress": False,
}


@pytest.mark.parametrize("stop_after", [2, 3])
def test_resume_reproduces_an_uninterrupted_run_exactly(tiny_table, tmp_path, stop_after):
    model, loaders = _setup(tiny_table)
    full = Trainer(model, {**CONFIG, "checkpoint_dir": str(tmp_path / "a")}).fit(loaders["train"], loaders["val"])

    model_b, loaders_b = _setup(tiny_table)
    with pytest.raises(TrainingInterruptedError):
        Trainer(
            model_b, {**CONFIG, "checkpoint_dir": str(tmp_path / "b")}, callbacks=[StopAfterEpochs(stop_after)]
        ).fit(loaders_b["train"], loaders_b["val"])
    # a fresh process would rebuild everything: new model (other init), new loaders
    model_c, loaders_c = _setup(tiny_table, seed=123)
    recorder = HistoryRecorder()
    resumed = Trainer(
        model_c, {**CONFIG, "checkpoint_dir": str(tmp_path / "b"), "resume": True}, callbacks=[recorder]
    ).fit(loaders_c["train"], loaders_c["val"])

    assert [h["epoch"] for h in recorder.epochs] == list(range(stop_after + 1, 6))
    assert _strip(resumed.history) == _strip(full.history)
    for key, value in model.state_dict().items():
        assert torch.equal(value, model_c.state_dict()[key]), key
    assert resumed.best_epoch == full.best_epoch
    for key, value in full.best_state.items():
        assert torch.equal(value, resumed.best_state[key]), key
    # sanity: training changed the weights and the run did learn something
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]


def test_resume_refuses_other_settings_and_finished_runs_do_not_retrain(tiny_table, tmp_path):
    model, loaders = _setup(tiny_table)
    config = {**CONFIG, "checkpoint_dir": str(tmp_path / "c")}
    first = Trainer(model, config).fit(loaders["train"], loaders["val"])
    again = Trainer(model, {**config, "resume": True}).fit(loaders["train"], loaders["val"])
    assert _strip(again.history) == _strip(first.history)
    with pytest.raises(ValueError, match="different training settings"):
        Trainer(model, {**config, "resume": True, "seed": 8}).fit(loaders["train"], loaders["val"])
    last = load_torch_file(tmp_path / "c" / "last.pt")  # weights_only: no pickled objects inside
    assert last["finished"] and last["epoch"] == 5
    best = CheckpointDir(tmp_path / "c").load_best()
    assert best["epoch"] == first.best_epoch and best["monitor"] == "val_acc"


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = (np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (np.random.rand(), torch.rand(1).item()) == a


# --- phases, early stopping, selection --------------------------------------------------------------


def test_phases_configure_the_model_and_rebuild_the_optimizer(tiny_table):
    model, loaders = _setup(tiny_table)
    encoder_before = model.encoder.weight.detach().clone()
    recorder = HistoryRecorder()

    class Snapshot(HistoryRecorder):
        def on_epoch_end(self, trainer, metrics):
            if metrics["epoch"] == 2:
                self.encoder = model.encoder.weight.detach().clone()
                self.params = sum(len(g["params"]) for g in trainer.optimizer.param_groups)

    snap = Snapshot()
    Trainer(model, {**CONFIG, "progress": False}, callbacks=[recorder, snap]).fit(loaders["train"], loaders["val"])
    assert model.phases_seen == ["frozen_encoder", "all"]
    assert recorder.phases == [0, 1]
    assert torch.equal(snap.encoder, encoder_before)  # frozen during phase 1
    assert not torch.equal(model.encoder.weight, encoder_before)  # trained in phase 2
    assert snap.params == len(list(model.parameters())) - 2  # encoder weight and bias excluded
    assert [h["phase"] for h in recorder.epochs] == ["frozen_encoder"] * 2 + ["all"] * 3


class ScriptedModel(nn.Module):
    """Right on group-0 samples during the first ``switch`` epochs, right on group-1 samples after.

    (It reads the label: a test double for model selection, not a classifier.)
    """

    def __init__(self, num_classes: int, switch: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.num_classes, self.switch = num_classes, switch

    def forward(self, batch):
        if self.training:
            self.steps += 1
        group = batch["x"][:, 0, 0, 0, 0]
        good = (group == 0) if int(self.steps) <= self.switch else (group == 1)
        right = nn.functional.one_hot(batch["label"], self.num_classes).float()
        wrong = right.roll(1, dims=1)
        logits = torch.where(good[:, None], right, wrong) * 5 + self.w * 0
        return ModelOutput(logits=logits)


class GroupData(Dataset):
    def __init__(self, group: int, n: int = 8, num_classes: int = 4) -> None:
        self.group, self.n, self.c = group, n, num_classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return {
            "x": torch.full((1, 2, 1, 1), float(self.group)),
            "mask": torch.ones(2, dtype=torch.bool),
            "label": torch.tensor(i % self.c),
            "index": torch.tensor(i),
        }


def test_best_epoch_is_chosen_on_validation_even_when_test_prefers_another(tmp_path):
    model = ScriptedModel(num_classes=4, switch=1)
    train = DataLoader(GroupData(0), batch_size=8)
    val = DataLoader(GroupData(0), batch_size=8)  # validation looks like group 0
    test = DataLoader(GroupData(1), batch_size=8)  # test would prefer the later epochs
    trainer = Trainer(model, {"epochs": 4, "progress": False, "checkpoint_dir": str(tmp_path)})
    result = trainer.fit(train, val)
    assert [h["val_acc"] for h in result.history] == [1.0, 0.0, 0.0, 0.0]
    assert result.best_epoch == 1 and int(result.best_state["steps"]) == 1
    final_test = trainer.predict(test)
    assert np.mean(final_test.logits.argmax(1) == final_test.labels) == 1.0
    model.load_state_dict(result.best_state)
    best_test = trainer.predict(test)
    assert np.mean(best_test.logits.argmax(1) == best_test.labels) == 0.0
    assert CheckpointDir(tmp_path).load_best()["epoch"] == 1


def test_early_stopping_ends_the_phase_and_training_continues_with_the_next(tmp_path):
    model = ScriptedModel(num_classes=4, switch=1)
    loader, val = DataLoader(GroupData(0), batch_size=8), DataLoader(GroupData(0), batch_size=8)
    config = {
        "phases": [{"name": "a", "epochs": 10}, {"name": "b", "epochs": 2}],
        "early_stopping": {"patience": 2},
        "progress": False,
    }
    result = Trainer(model, config).fit(loader, val)
    # phase a: epoch 1 best, epochs 2-3 without improvement -> stop; phase b runs its 2 epochs
    assert [h["phase"] for h in result.history] == ["a", "a", "a", "b", "b"]
    assert result.stopped_early and result.epochs_run == 5
    only = Trainer(ScriptedModel(4, 1), {"epochs": 10, "early_stopping": {"patience": 3}, "progress": False})
    assert only.fit(loader, val).epochs_run == 4
    with pytest.raises(ValueError, match="needs a validation loader"):
        Trainer(ScriptedModel(4, 1), {"epochs": 1, "progress": False}).fit(loader, None)


def test_select_best_from_last_phase_only():
    model = ScriptedModel(num_classes=4, switch=1)
    loader, val = DataLoader(GroupData(0), batch_size=8), DataLoader(GroupData(0), batch_size=8)
    config = {
        "phases": [{"name": "pre", "epochs": 1}, {"name": "final", "epochs": 2}],
        "select_best_from_phase": -1,
        "progress": False,
    }
    result = Trainer(model, config).fit(loader, val)
    assert result.best_phase_index == 1 and result.best_epoch == 2  # epoch 1 (val acc 1.0) not eligible


def test_non_finite_loss_raises():
    class Broken(ScriptedModel):
        def forward(self, batch):
            out = super().forward(batch)
            return ModelOutput(logits=out.logits * float("nan"))

    loader = DataLoader(GroupData(0), batch_size=8)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        Trainer(Broken(4, 1), {"epochs": 1, "progress": False, "monitor": "train_acc"}).fit(loader)


def test_predict_keeps_attention_of_the_first_samples(tiny_table):
    model, loaders = _setup(tiny_table)
    trainer = Trainer(model, {"epochs": 1, "progress": False, "amp": "bf16"})  # AMP is a no-op on CPU
    assert trainer.amp_dtype is None
    preds = trainer.predict(loaders["test"], keep_attention=3)
    n = len(loaders["test"].dataset)
    assert preds.logits.shape == (n, 3) and len(preds.attention) == 3
    np.testing.assert_array_equal(preds.indices, np.arange(n))
    assert preds.attention[0]["temporal"].shape == (6,) and preds.lengths[0] == 6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_amp_code_paths_run_when_forced_on_cpu(tiny_table, tmp_path, dtype):
    """AMP is only enabled on CUDA; forcing it on the CPU still runs autocast and (fp16) the
    GradScaler path, its checkpointing and its resume, so those lines are exercised without a GPU."""
    model, loaders = _setup(tiny_table)
    config = {
        "epochs": 2,
        "progress": False,
        "checkpoint_dir": str(tmp_path),
        "optimizer": {"name": "adam", "lr": 0.01},
    }
    trainer = Trainer(model, config)
    trainer.amp_dtype = dtype
    if dtype is torch.float16:
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    result = trainer.fit(loaders["train"], loaders["val"])
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    last = load_torch_file(tmp_path / "last.pt")
    assert (last["scaler"] is not None) == (dtype is torch.float16)
    preds = trainer.predict(loaders["test"])
    assert preds.logits.dtype == np.float32 and np.isfinite(preds.logits).all()
    # resume with the same forced settings: the finished run is restored, scaler state included
    again = Trainer(model, {**config, "resume": True})
    again.amp_dtype = trainer.amp_dtype
    if dtype is torch.float16:
        # a fresh scaler with another scale: the checkpointed scale must replace it
        again.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    assert _strip(again.fit(loaders["train"], loaders["val"]).history) == _strip(result.history)
    if dtype is torch.float16:
        assert again.scaler.get_scale() == trainer.scaler.get_scale() != 1.0


def test_resume_refuses_changed_data_or_model_settings(tiny_table, tmp_path):
    model, loaders = _setup(tiny_table)
    config = {"epochs": 1, "progress": False, "checkpoint_dir": str(tmp_path)}
    Trainer(model, config, fingerprint_extra={"data": {"batch_size": 4}}).fit(loaders["train"], loaders["val"])
    with pytest.raises(ValueError, match="different training settings"):
        Trainer(model, {**config, "resume": True}, fingerprint_extra={"data": {"batch_size": 8}}).fit(
            loaders["train"], loaders["val"]
        )


@pytest.mark.parametrize("stop_after", [4, 5])
def test_sta_lstm_algorithm_1_through_the_trainer_resumes_exactly(tiny_table, tmp_path, stop_after):
    """The real model and its Algorithm 1 phases (step 5 re-initializes the main network): a run
    stopped just before step 5 (4) or inside it (5) and resumed equals the uninterrupted one."""
    from skeleton_attention.models.registry import build_model
    from skeleton_attention.models.sta_lstm import algorithm_1_phases

    phases = algorithm_1_phases(pretrain_epochs=2, n1_epochs=1, n2_epochs=1)

    def run(directory, callbacks=(), resume=False):
        _, loaders = _setup(tiny_table)
        torch.manual_seed(0)
        model = build_model(
            "sta_lstm",
            num_classes=3,
            num_joints=4,
            num_bodies=2,
            in_channels=3,
            hidden_size=8,
            attention_hidden_size=8,
            spatial_fc_size=8,
        )
        config = {
            "phases": phases,
            "progress": False,
            "checkpoint_dir": str(directory),
            "resume": resume,
            "optimizer": {"name": "adam", "lr": 0.01},
            "grad_clip_norm": 1.0,
            "select_best_from_phase": -1,
        }
        return model, Trainer(model, config, callbacks=list(callbacks)).fit(loaders["train"], loaders["val"])

    full_model, full = run(tmp_path / "a")
    assert [h["phase"] for h in full.history][:5] == [
        "pretrain_temporal",
        "pretrain_temporal",
        "grow_main_temporal_fixed",
        "finetune_temporal",
        "pretrain_spatial",  # epochs 5-6: step 5 re-initializes the main network at its start
    ]
    with pytest.raises(TrainingInterruptedError):
        run(tmp_path / "b", callbacks=[StopAfterEpochs(stop_after)])
    model, resumed = run(tmp_path / "b", resume=True)
    assert _strip(resumed.history) == _strip(full.history)
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    assert full.best_phase_index == len(phases) - 1


def test_a_non_finite_loss_fails_at_the_end_of_its_epoch_naming_the_first_bad_step(tiny_table):
    """The step loop reads nothing on the host; the check runs once per epoch (training/epoch.py)."""
    model, loaders = _setup(tiny_table)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    trainer = Trainer(model, {"epochs": 2, "progress": False, "monitor": "train_loss", "monitor_mode": "min"})
    with pytest.raises(FloatingPointError, match=r"non-finite loss at epoch 1 step 1 of rank 0 \(parts: \{'loss': nan"):
        trainer.fit(loaders["train"], loaders["val"])
