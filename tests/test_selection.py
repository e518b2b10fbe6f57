"""Honest model selection: validation held out by recording (no other camera view of a training
recording validates), and monitoring on the plain validation cross-entropy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from skeleton_attention.training.data import DataSettings, build_loaders, build_training_data, protocol_splits
from skeleton_attention.training.trainer import Trainer
from tests.test_data import PROTOCOL, make_table
from tests.test_trainer import TinyModel


def _ntu_like(num_classes: int = 4, recordings: int = 10, cameras: int = 3, ungrouped: int = 9) -> pd.DataFrame:
    """Metadata of an NTU-like table: each recording seen by ``cameras`` cameras (one view_group);
    odd performers train, even test; a few rows without a view_group."""
    rows = []
    for label in range(num_classes):
        for rec in range(recordings):
            performer = rec % 4 + 1
            for camera in range(1, cameras + 1):
                group = f"S001P{performer:03d}R{rec:03d}A{label + 1:03d}"
                rows.append(
                    {
                        "sample_id": f"S001C{camera:03d}P{performer:03d}R{rec:03d}A{label + 1:03d}",
                        "label": label,
                        "view_group": group if rec != ungrouped else None,
                        f"split_{PROTOCOL}": "train" if performer % 2 else "test",
                    }
                )
    frame = pd.DataFrame(rows)
    frame["row"] = np.arange(len(frame))
    return frame


def _per_sample_carve(meta: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """The carve as it was before recordings were grouped (one draw per class over samples)."""
    train = meta[meta[f"split_{PROTOCOL}"] == "train"].sort_values("sample_id", kind="stable")
    rng = np.random.default_rng(seed)
    picked = []
    for _, group in train.groupby("label", sort=True):
        n = len(group)
        k = min(max(int(np.floor(fraction * n + 0.5)), 1), n - 1) if n >= 2 else 0
        if k:
            picked.extend(group["row"].to_numpy()[rng.permutation(n)[:k]])
    return np.sort(np.array(picked, dtype=np.int64))


@pytest.mark.parametrize("seed", [0, 1, 10000])
def test_validation_keeps_the_views_of_a_recording_together(seed):
    meta = _ntu_like()
    splits = protocol_splits(meta, PROTOCOL, 0.3, seed)
    groups = meta["view_group"]
    train_groups = set(groups.iloc[splits.train].dropna())
    val_groups = set(groups.iloc[splits.val].dropna())
    assert val_groups and not train_groups & val_groups
    # whole recordings: every camera of a validation recording is in validation
    for group in val_groups:
        assert set(meta.index[groups == group]) <= set(splits.val)
    # stratified: each class gives round(0.3 * 5 recordings) = 2 of its training recordings (6 rows)
    assert meta.iloc[splits.val].groupby("label").size().tolist() == [6] * 4
    assert not set(splits.test) & (set(splits.train) | set(splits.val))


def test_rows_without_a_view_group_are_recordings_of_their_own():
    meta = _ntu_like(ungrouped=8)  # recording 8 trains: its 3 rows have no view_group
    splits = protocol_splits(meta, PROTOCOL, 0.3, 0)
    groups = meta["view_group"]
    assert not set(groups.iloc[splits.train].dropna()) & set(groups.iloc[splits.val].dropna())
    # per class: 4 grouped recordings + 3 single rows = 7 units, round(0.3 * 7) = 2 go to validation
    units = meta.iloc[splits.val].assign(unit=groups.iloc[splits.val].fillna(meta["sample_id"]))
    assert units.groupby("label")["unit"].nunique().tolist() == [2] * 4


def test_without_view_groups_the_carve_is_the_per_sample_one():
    meta = _ntu_like().drop(columns="view_group")
    for seed in (0, 3, 10000):
        splits = protocol_splits(meta, PROTOCOL, 0.2, seed)
        np.testing.assert_array_equal(splits.val, _per_sample_carve(meta, 0.2, seed))


def test_per_sample_carve_would_leak_views():
    """The reason for grouping: a per-sample carve puts other views of validation recordings in train."""
    meta = _ntu_like()
    leaked = set(meta["view_group"].iloc[_per_sample_carve(meta, 0.3, 0)].dropna()) & set(
        meta["view_group"]
        .iloc[np.setdiff1d(np.flatnonzero(meta[f"split_{PROTOCOL}"] == "train"), _per_sample_carve(meta, 0.3, 0))]
        .dropna()
    )
    assert leaked


@pytest.fixture
def data(tmp_path):
    table = make_table(tmp_path / "samples.parquet", per_class=10, signal=1.0)
    settings = DataSettings.from_config(
        {
            "protocol": PROTOCOL,
            "val_fraction": 0.25,
            "batch_size": 4,
            "num_bodies": 2,
            "sampling": {"mode": "resample", "length": 6},
        }
    )
    built = build_training_data(table, settings)
    return built, build_loaders(built, settings)


def _fit(data, **config):
    built, loaders = data
    torch.manual_seed(0)
    model = TinyModel(built.num_classes, built.num_joints, 2, built.num_channels)
    trainer = Trainer(model, {"epochs": 3, "progress": False, "deterministic": True, **config})
    return trainer.fit(loaders["train"], loaders["val"])


def test_history_reports_cross_entropy_and_regularization_apart(data):
    result = _fit(data, monitor="val_ce", monitor_mode="min")
    for h in result.history:
        # TinyModel: CE + aux head CE + an L2 term; val_loss_total = val_ce + val_ce_aux + val_reg
        assert h["val_reg"] > 0 and h["train_reg"] == pytest.approx(h["train_reg_l2"])
        assert h["val_loss_total"] == h["val_loss"] > h["val_ce"] + h["val_reg"]
        assert h["train_loss"] == pytest.approx(h["train_ce"] + h["train_ce_aux"] + h["train_reg"], rel=1e-5)
    best = min(range(3), key=lambda i: result.history[i]["val_ce"])
    assert result.monitor == "val_ce" and result.best_epoch == best + 1
    assert result.best_metric == result.history[best]["val_ce"]


def test_val_ce_is_the_plain_cross_entropy_without_label_smoothing(data):
    built, loaders = data
    result = _fit(data, monitor="val_ce", monitor_mode="min", label_smoothing=0.2, epochs=1)
    trainer = Trainer(TinyModel(built.num_classes, built.num_joints, 2, built.num_channels), {"progress": False})
    trainer.model.load_state_dict(result.best_state)
    preds = trainer.predict(loaders["val"])
    logits, labels = torch.from_numpy(preds.logits), torch.from_numpy(preds.labels)
    plain = float(torch.nn.functional.cross_entropy(logits, labels))
    assert result.history[0]["val_ce"] == pytest.approx(plain, rel=1e-5)
    assert preds.ce == pytest.approx(plain, rel=1e-5)


def test_a_monitor_that_is_no_metric_fails_instead_of_keeping_the_last_epoch(data):
    with pytest.raises(ValueError, match=r"val_cross_entropy.*available.*val_ce"):
        _fit(data, monitor="val_cross_entropy", monitor_mode="min")
