"""The standard protocols of UTKinect-Action3D and MSR Action3D on the real files, and training on a
protocol that uses only some of a table's labels (MSR's 8-action subsets)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from skeleton_attention.pipelines.preparation import build_streams
from skeleton_attention.pipelines.prepare_msr.nodes import ingest_msr
from skeleton_attention.pipelines.prepare_utkinect.nodes import ingest_utkinect
from skeleton_attention.pipelines.training_common import evaluate_model, rebuild_model, split_samples, train_model
from skeleton_attention.skeletons.bundle import PreparedBundle, write_bundle
from skeleton_attention.skeletons.msr import MSR_ACTION_SETS, MSR_ACTIONS
from skeleton_attention.skeletons.utkinect import read_utkinect_labels, utkinect_loocv_folds
from skeleton_attention.training.data import (
    DataSettings,
    build_training_data,
    is_fold_column,
    protocol_folds,
    protocol_splits,
)
from skeleton_attention.training.labels import LabelMap
from skeleton_attention.training.metrics import scores_frame

REPO = Path(__file__).resolve().parents[1]
PREPARE = yaml.safe_load((REPO / "conf/base/parameters_prepare.yml").read_text())


def _prepare(ingest, raw: list[Path], params: dict, target: Path) -> PreparedBundle:
    write_bundle(target / "intermediate", ingest(raw, {**params, "workers": 1}))
    write_bundle(target / "features", build_streams(PreparedBundle(target / "intermediate"), params))
    return PreparedBundle(target / "features")


@pytest.fixture(scope="module")
def utk(shared_data, tmp_path_factory) -> pd.DataFrame:
    raw = sorted((shared_data / "utkinect_raw").glob("joints_*.txt"))
    bundle = _prepare(ingest_utkinect, raw, PREPARE["prepare_utkinect"], tmp_path_factory.mktemp("utk"))
    return bundle.table.metadata()


@pytest.fixture(scope="module")
def msr_bundle(shared_data, tmp_path_factory) -> PreparedBundle:
    raw = sorted((shared_data / "msr_action3d_raw").glob("*_skeleton3D.txt"))
    return _prepare(ingest_msr, raw, PREPARE["prepare_msr"], tmp_path_factory.mktemp("msr"))


@pytest.fixture(scope="module")
def msr(msr_bundle) -> pd.DataFrame:
    return msr_bundle.table.metadata()


# --- UTKinect ----------------------------------------------------------------------------------------


def test_utkinect_cross_subject_and_loso(utk):
    assert len(utk) == 199
    assert Counter(utk["split_utkinect_xsub"]) == {"train": 100, "test": 99}
    assert is_fold_column(utk["split_utkinect_loso"])
    assert protocol_folds(utk, "utkinect_loso") == list(range(1, 11))
    # the fold is the subject: 20 actions x 2 recordings each, subject 10 lacks one (NaN carry)
    assert (utk["split_utkinect_loso"].astype(int) == utk["subject"].astype(int)).all()
    sizes = Counter(int(v) for v in utk["split_utkinect_loso"])
    assert sizes == {**{s: 20 for s in range(1, 10)}, 10: 19}
    for fold in (3, 10):
        splits = protocol_splits(utk, "utkinect_loso", 0.0, 0, fold=fold)
        assert len(splits.test) == sizes[fold] and len(splits.train) == 199 - sizes[fold]
        assert set(utk.loc[splits.test, "subject"]) == {fold}
        assert fold not in set(utk.loc[splits.train, "subject"])


def test_utkinect_leave_one_sequence_out(utk, shared_data):
    folds = utk["split_utkinect_loocv"].astype(int)
    # every annotated action instance is its own fold, numbered in sample_id order
    assert protocol_folds(utk, "utkinect_loocv") == list(range(1, 200))
    assert folds.notna().all() and folds.is_unique
    by_id = utk.assign(fold=folds).sort_values("sample_id")
    assert by_id["fold"].tolist() == list(range(1, 200))
    expected = utkinect_loocv_folds(read_utkinect_labels(shared_data / "utkinect_raw" / "actionLabel.txt"))
    assert dict(zip(utk["sample_id"], folds, strict=True)) == expected
    assert "s10_e02_carry" not in expected  # the NaN segment is no sequence
    splits = protocol_splits(utk, "utkinect_loocv", 0.2, 10000, val_group="subject", fold=1)
    assert len(splits.test) == 1 and len(splits.train) + len(splits.val) == 198
    assert utk.loc[splits.test[0], "sample_id"] == "s01_e01_carry"


def test_every_sample_is_in_exactly_one_fold(utk):
    for protocol in ("utkinect_loso", "utkinect_loocv"):
        tested = Counter()
        for fold in protocol_folds(utk, protocol):
            splits = protocol_splits(utk, protocol, 0.0, 0, fold=fold)
            assert not set(splits.test) & set(splits.train)
            assert len(splits.test) + len(splits.train) == len(utk)
            tested.update(int(r) for r in splits.test)
        assert sorted(tested) == list(range(len(utk))) and set(tested.values()) == {1}, protocol


# --- MSR Action3D ------------------------------------------------------------------------------------

#: (train, test) sizes of the 566 readable files per protocol
MSR_SIZES = {"msr_xsub": (291, 275), "msr_as1_xsub": (119, 106), "msr_as2_xsub": (118, 113), "msr_as3_xsub": (114, 112)}


def test_msr_action_subsets(msr):
    assert len(msr) == 566
    for protocol, (train, test) in MSR_SIZES.items():
        column = msr[f"split_{protocol}"]
        assert Counter(column.dropna()) == {"train": train, "test": test}, protocol
        if protocol == "msr_xsub":
            continue
        action_set = MSR_ACTION_SETS[protocol[4:7].upper()]
        members = column.notna()
        assert set(msr.loc[members, "label"] + 1) == set(action_set), protocol  # label = action - 1
        assert not (msr.loc[~members, "label"] + 1).isin(action_set).any()
        # the subset protocols keep the cross-subject split of the full protocol
        assert (column[members] == msr.loc[members, "split_msr_xsub"]).all()
        subjects = msr.loc[members].groupby(column[members].astype(str))["subject"].unique()
        assert set(subjects["train"]) == {1, 3, 5, 7, 9} and set(subjects["test"]) == {2, 4, 6, 8, 10}


def test_msr_published_subset_sizes(shared_data, tmp_path):
    """With the 557-file list of files_used_in_cvpr12_paper.txt (the variant most skeleton-based
    papers report on, docs/datasets.md): AS1 219, AS2 228, AS3 222 sequences."""
    params = {**PREPARE["prepare_msr"], "subset_file": "files_used_in_cvpr12_paper.txt"}
    raw = sorted((shared_data / "msr_action3d_raw").glob("*_skeleton3D.txt"))
    write_bundle(tmp_path / "intermediate", ingest_msr(raw, {**params, "workers": 1}))
    meta = PreparedBundle(tmp_path / "intermediate").table.metadata()
    counts = {p: Counter(meta[f"split_{p}"].dropna()) for p in MSR_SIZES}
    assert counts == {
        "msr_xsub": {"train": 284, "test": 273},
        "msr_as1_xsub": {"train": 114, "test": 105},
        "msr_as2_xsub": {"train": 116, "test": 112},
        "msr_as3_xsub": {"train": 111, "test": 111},
    }


# --- training on a label subset ----------------------------------------------------------------------


def test_label_map_round_trip_and_errors():
    m = LabelMap.from_labels([19, 1, 4, 1, 12], {1: "b", 4: "e", 12: "m", 19: "t"})
    assert m.original == (1, 4, 12, 19) and m.names == ("b", "e", "m", "t") and not m.is_identity
    np.testing.assert_array_equal(m.to_model([19, 1, 12]), [3, 0, 2])
    np.testing.assert_array_equal(m.to_original([3, 0, 2]), [19, 1, 12])
    with pytest.raises(ValueError, match=r"\[5\]"):
        m.to_model([1, 5])
    with pytest.raises(ValueError):
        m.to_original([4])
    assert LabelMap.from_info(m.as_info()) == m
    assert LabelMap.from_info({"class_names": ["a", "b"]}) == LabelMap.identity(2, ["a", "b"])  # old artifacts
    fixed = LabelMap.from_labels([1, 4], num_classes=20)  # explicit num_classes: no remapping
    assert fixed.is_identity and fixed.num_classes == 20
    with pytest.raises(ValueError, match="num_classes"):
        LabelMap.from_labels([1, 25], num_classes=20)


def test_scores_frame_writes_table_label_ids():
    scores = np.array([[0.1, 0.9, 0.0], [2.0, 0.0, 1.0]], dtype=np.float32)
    frame = scores_frame(["a", "b"], np.array([1, 2]), scores, label_ids=[1, 4, 12])
    assert list(frame.columns) == ["sample_id", "label", "pred", "score_1", "score_4", "score_12"]
    assert frame["label"].tolist() == [4, 12] and frame["pred"].tolist() == [4, 1]
    with pytest.raises(ValueError, match="label_ids"):
        scores_frame(["a", "b"], np.array([1, 2]), scores, label_ids=[1, 4])


def test_build_training_data_maps_a_label_subset(msr_bundle):
    settings = DataSettings.from_config(
        {"protocol": "msr_as1_xsub", "val_fraction": 0.2, "val_group": "subject", "num_bodies": 1}
    )
    data = build_training_data(msr_bundle, settings)
    as1 = [a - 1 for a in MSR_ACTION_SETS["AS1"]]
    assert data.num_classes == 8
    assert data.label_map.original == tuple(as1)
    assert data.class_names == [MSR_ACTIONS[label] for label in as1]
    for subset in (data.train, data.val, data.test):
        assert set(subset.labels.tolist()) == set(range(8))
        meta = msr_bundle.table.metadata().iloc[subset.rows]
        np.testing.assert_array_equal(data.label_map.to_original(subset.labels), meta["label"])
    # the full protocol keeps the identity
    full = build_training_data(msr_bundle, DataSettings.from_config({"protocol": "msr_xsub", "num_bodies": 1}))
    assert full.num_classes == 20 and full.label_map.is_identity


@pytest.mark.slow
def test_a_model_trained_on_as1_has_8_outputs_and_scores_in_table_ids(msr_bundle, tmp_path):
    from skeleton_attention.experiments.config import compose

    family = yaml.safe_load((REPO / "conf/base/parameters_train_sta_lstm.yml").read_text())["train_sta_lstm"]
    run = {"dataset": "msr", "protocol": "msr_as1_xsub", "fold": None, "name": None, "tag": "base"}
    params = compose(family, run)
    params["model"]["kwargs"].update(hidden_size=8, attention_hidden_size=8, num_main_layers=1)
    params["training"].update(
        phases=None, epochs=1, progress=False, device="cpu", checkpoint_dir=str(tmp_path / "ckpt")
    )
    params["evaluation"]["attention_samples"] = 1
    params["mlflow"] = {"log_epochs": False}
    splits = split_samples(msr_bundle, params)
    artifact, history = train_model(msr_bundle, splits, params, run_key="train_test_as1")
    assert artifact["info"]["label_ids"] == [a - 1 for a in MSR_ACTION_SETS["AS1"]]
    assert artifact["model_kwargs"]["data"]["num_classes"] == 8
    assert rebuild_model(artifact).classifier.out_features == 8
    metrics, scores, val_scores, _ = evaluate_model(msr_bundle, splits, artifact, params)
    columns = [f"score_{a - 1}" for a in MSR_ACTION_SETS["AS1"]]
    for frame, subset in ((scores, "test"), (val_scores, "val")):
        assert [c for c in frame.columns if c.startswith("score_")] == columns
        expected = splits.loc[splits["subset"] == subset].set_index("sample_id")["label"]
        assert frame.set_index("sample_id")["label"].sort_index().equals(expected.sort_index().astype("int64"))
        assert frame["pred"].isin([a - 1 for a in MSR_ACTION_SETS["AS1"]]).all()
    assert len(metrics["confusion_matrix"]) == 8 and metrics["num_samples"] == 106
    assert {"val_ce", "val_loss_total", "val_reg", "train_ce", "train_reg"} <= set(history.columns)
