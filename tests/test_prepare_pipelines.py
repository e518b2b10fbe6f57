"""End-to-end preparation pipelines on the real files: every input accounted for, outputs readable."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skeleton_attention.skeletons.bundle import PreparedBundle
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from tests.kedro_helpers import run_pipeline


def _summary(workdir: Path, name: str) -> dict:
    return json.loads((workdir / "data" / "08_reporting" / f"{name}_preparation_summary.json").read_text())


@pytest.mark.slow
def test_prepare_msr_accounts_for_every_file(shared_data, tmp_path):
    run_pipeline("prepare_msr", tmp_path, {"msr_raw_dir": str(shared_data / "msr_action3d_raw")})
    summary = _summary(tmp_path, "msr")
    assert summary["inputs_seen"] == 567
    assert summary["samples"] + summary["quarantined"] + summary["excluded"] == 567
    assert summary["reasons"] == {"quarantined:zero_frames": 1}
    assert summary["split_counts"]["msr_xsub"] == {"train": 291, "test": 275}
    assert summary["split_counts"]["msr_as1_xsub"] == {"train": 119, "test": 106, "none": 341}
    assert summary["protocols"] == ["msr_xsub", "msr_as1_xsub", "msr_as2_xsub", "msr_as3_xsub"]
    quarantine = pd.read_csv(tmp_path / "data/02_intermediate/msr_quarantine.csv")
    assert quarantine["file"].str.endswith("a13_s09_e02_skeleton3D.txt").all()
    features = PreparedBundle(tmp_path / "data/04_feature/msr")
    meta = features.table.metadata()
    assert len(meta) == 566 and meta["label"].between(0, 19).all() and meta["label"].nunique() == 20
    sample = features.table.read_one(0, ("joint", "bone", "motion_fast", "motion_slow"))
    assert all(a.shape == sample["joint"].shape and a.dtype == np.float32 for a in sample.values())


def _ntu_workdir(shared_data: Path, tmp_path: Path) -> Path:
    """Real NTU files + their CRLF twins (duplicates) + malformed copies, in one raw tree."""
    raw = tmp_path / "raw"
    (raw / "crlf").mkdir(parents=True)
    for path in sorted((shared_data / "ntu_raw").glob("*.skeleton"))[:12]:
        (raw / path.name).symlink_to(path)
    for path in sorted((shared_data / "ntu_raw_crlf").glob("*.skeleton")):
        (raw / "crlf" / path.name).symlink_to(path)
    good = (shared_data / "ntu_raw" / "S001C001P001R001A001.skeleton").read_bytes()
    (raw / "S002C001P003R001A001.skeleton").write_bytes(good[: len(good) // 2])  # truncated
    (raw / "S002C001P003R001A002.skeleton").write_bytes(b"")  # empty
    (raw / "S002C001P003R001A003.skeleton").write_bytes(good.replace(b"\n25\n", b"\n24\n", 1))
    (raw / "S002C001P003R001A004.skeleton").write_bytes(b"\x00\x01\x02" * 50)  # binary
    # on the (real, official) missing list: excluded, not quarantined
    (raw / "S001C002P005R002A008.skeleton").symlink_to(shared_data / "ntu_raw" / "S001C001P001R001A008.skeleton")
    return raw


@pytest.mark.slow
def test_prepare_ntu_quarantines_bad_files_and_keeps_the_rest(shared_data, tmp_path):
    raw = _ntu_workdir(shared_data, tmp_path)
    missing = shared_data / "ntu_meta" / "NTU_RGBD_samples_with_missing_skeletons.txt"
    run_pipeline("prepare_ntu", tmp_path, {"ntu_raw_dir": str(raw), "ntu_missing_list": str(missing)})
    summary = _summary(tmp_path, "ntu")
    assert summary["inputs_seen"] == 12 + 5 + 4 + 1
    assert summary["samples"] == 12
    assert summary["reasons"] == {
        "excluded:official_missing_list": 1,
        "quarantined:binary_file": 1,
        "quarantined:duplicate_sample": 5,
        "quarantined:empty_file": 1,
        "quarantined:truncated": 1,
        "quarantined:wrong_joint_count": 1,
    }
    quarantine = pd.read_csv(tmp_path / "data/02_intermediate/ntu_quarantine.csv")
    assert len(quarantine) == 10 and quarantine["detail"].notna().all()
    truncated = quarantine[quarantine["reason"] == "truncated"]
    assert truncated["file"].iloc[0].endswith("S002C001P003R001A001.skeleton")
    assert summary["split_counts"]["ntu60_xsub"] == {"train": 12}
    assert summary["split_counts"]["ntu60_xview"] == {"test": 12}
    assert summary["split_counts"]["ntu120_xset"] == {"test": 12}
    report = PreparedBundle(tmp_path / "data/02_intermediate/ntu").report
    assert len(report) == 12 + 5  # a decision record for every parsed file, duplicates included


@pytest.mark.slow
def test_prepare_ntu_strict_mode_fails_naming_the_file(shared_data, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = (shared_data / "ntu_raw" / "S001C001P001R001A001.skeleton").read_bytes()
    (raw / "S001C001P001R001A001.skeleton").write_bytes(good)
    (raw / "S001C001P001R001A002.skeleton").write_bytes(good.replace(b"\n25\n", b"\n24\n", 1))
    (raw / "missing.txt").write_text("header\n\n\n")
    with pytest.raises(Exception) as info:
        run_pipeline(
            "prepare_ntu",
            tmp_path,
            {"ntu_raw_dir": str(raw), "ntu_missing_list": str(raw / "missing.txt")},
            params={"prepare_ntu": {"strict": True}},
        )
    error = info.value
    while error is not None and not isinstance(error, MalformedSkeletonFile):
        error = error.__cause__ or error.__context__
    assert isinstance(error, MalformedSkeletonFile)
    assert "S001C001P001R001A002.skeleton" in str(error) and error.reason == "wrong_joint_count"
    assert not (tmp_path / "data/02_intermediate/ntu").exists(), "a failed run must leave no bundle"


@pytest.mark.slow
def test_prepare_ntu_multiview_on_the_real_three_camera_recordings(shared_data, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(shared_data / "ntu_multiview", raw, ignore=shutil.ignore_patterns("*.md"))
    missing = shared_data / "ntu_meta" / "NTU_RGBD_samples_with_missing_skeletons.txt"
    run_pipeline("prepare_ntu", tmp_path, {"ntu_raw_dir": str(raw), "ntu_missing_list": str(missing)})
    residuals = pd.read_csv(tmp_path / "data/08_reporting/ntu_view_residuals.csv")
    assert list(residuals["view_group"]) == ["S001P001R001A001", "S001P001R001A050"]
    assert residuals["complete"].all()
    # well below the 10-16 cm a naive body-frame + index resampling leaves (docs/geometry.md)
    assert (residuals[["residual_c2", "residual_c3"]] < 0.13).all().all()
    assert residuals.loc[0, ["residual_c2", "residual_c3"]].max() < 0.10
    multiview = PreparedBundle(tmp_path / "data/04_feature/ntu_multiview")
    meta = multiview.table.metadata().sort_values("sample_id")  # rows are written in a seeded order
    assert list(meta["num_views"]) == [3, 3] and list(meta["cameras_present"]) == ["123", "123"]
    assert list(meta["num_bodies"]) == [3, 6]  # views x bodies
    assert meta["split_ntu60_xview"].isna().all()
    a001 = multiview.table.read_one(int(meta["row"].iloc[0]))["joint"]
    # after alignment into the reference body frame, the views of one recording agree on the torso
    torso = [0, 1, 20, 2]
    spread = np.linalg.norm(a001[1, :, torso] - a001[0, :, torso], axis=-1)
    assert np.median(spread) < 0.06


@pytest.mark.slow
def test_embedded_default_data_runs_end_to_end(tmp_path):
    """A fresh clone: synthetic raw files (real formats) -> prepared NTU and Kinetics bundles."""
    small = {
        "ntu": {"num_classes": 4, "performers": [1, 3], "replications": [1], "cameras": [1, 2, 3], "seed": 3},
        "kinetics": {"num_clips": 12, "num_classes": 3, "seed": 3},
    }
    run_pipeline(["synthetic", "prepare_ntu", "prepare_kinetics"], tmp_path, params={"synthetic": small})
    ntu = _summary(tmp_path, "ntu")
    assert ntu["inputs_seen"] == 4 * 2 * 3 and ntu["samples"] == 24 and ntu["num_classes_present"] == 4
    assert ntu["split_counts"]["ntu60_xsub"] == {"train": 12, "test": 12}
    features = PreparedBundle(tmp_path / "data/04_feature/ntu")
    meta = features.table.metadata()
    assert meta.loc[meta["action"] == 1, "label_name"].iloc[0] == "wave right hand"
    residuals = pd.read_csv(tmp_path / "data/08_reporting/ntu_view_residuals.csv")
    assert len(residuals) == 8 and residuals["complete"].all()
    assert residuals[["residual_c2", "residual_c3"]].median().max() < 0.05
    # the generator's known geometry: view c starts master_offset frames into the recording
    truth = json.loads((tmp_path / "data/01_raw/synthetic/ntu/synthetic_manifest.json").read_text())["files"]
    errors = []
    for row in residuals.itertuples():
        s, p, r, a = (row.view_group[i : i + 4] for i in (0, 4, 8, 12))
        start = {c: truth[f"{s}C{c:03d}{p}{r}{a}.skeleton"]["master_offset"] for c in (1, 2, 3)}
        errors += [getattr(row, f"offset_c{c}") - (start[1] - start[c]) for c in (2, 3)]
    assert np.mean(np.abs(errors) <= 0.5) >= 0.9
    kinetics = _summary(tmp_path, "kinetics")
    assert kinetics["inputs_seen"] == kinetics["samples"] + kinetics["quarantined"] + kinetics["excluded"]
    assert kinetics["samples"] >= 10
    assert set(kinetics["split_counts"]["kinetics"]) <= {"train", "test"}


def test_an_input_without_samples_is_recorded_not_dropped(shared_data, tmp_path):
    """A UTKinect recording whose every segment is NaN yields no sample: it must still be accounted for."""
    from skeleton_attention.skeletons.bundle import SideRecord
    from skeleton_attention.skeletons.ingest import IngestCounter, ingest
    from skeleton_attention.skeletons.prepare import process_utkinect_file

    root = shared_data / "utkinect_raw"
    lines = (root / "actionLabel.txt").read_text().splitlines()
    block = lines.index("s01_e01")
    for i in range(block + 1, block + 11):  # its ten actions
        lines[i] = lines[i].split(":")[0] + ": NaN NaN"
    labels = tmp_path / "actionLabel.txt"
    labels.write_text("\n".join(lines) + "\n")
    counter = IngestCounter()
    files = [root / "joints_s01_e01.txt", root / "joints_s01_e02.txt"]
    out = list(ingest(files, partial(process_utkinect_file, label_file=labels), workers=1, counter=counter))
    manifest = [r.record for r in out if isinstance(r, SideRecord) and r.kind == "quarantine"]
    assert manifest == [
        {
            "file": str(files[0]),
            "kind": "excluded",
            "reason": "no_samples",
            "line": None,
            "detail": "the input holds no sample",
        }
    ]
    assert (counter.inputs_seen, counter.excluded, counter.quarantined) == (2, 1, 0)
    assert counter.samples == 10 == sum(not isinstance(r, SideRecord) for r in out)


def test_raw_files_dataset_swaps_generated_directories_and_refuses_others(tmp_path):
    from kedro.io import DatasetError

    from skeleton_attention.datasets import RawFilesDataset

    target = tmp_path / "raw"
    dataset = RawFilesDataset(str(target), patterns=("*.txt",))
    dataset.save(lambda d: (d / "a.txt").write_text("first"))
    dataset.save(lambda d: (d / "b.txt").write_text("second"))
    assert [p.name for p in dataset.load()] == ["b.txt"]

    def failing(directory: Path) -> None:
        (directory / "c.txt").write_text("half")
        raise RuntimeError("generator failed")

    with pytest.raises(DatasetError, match="generator failed"):  # kedro wraps save errors
        dataset.save(failing)
    assert [p.name for p in dataset.load()] == ["b.txt"], "a failed save keeps the previous directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"], "no temporary or aside directory is left"
    user = tmp_path / "user"
    user.mkdir()
    with pytest.raises(DatasetError, match="not generated by this project"):
        RawFilesDataset(str(user)).save(lambda d: None)
