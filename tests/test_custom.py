"""The plain custom data set format (docs/custom-data.md): reading, validation, protocols, k-fold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from skeleton_attention.pipelines.prepare_custom.nodes import ingest_custom
from skeleton_attention.skeletons import layouts
from skeleton_attention.skeletons.bundle import PreparedBundle, write_bundle
from skeleton_attention.skeletons.custom import assign_folds
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.normalize import normalize_sequence
from skeleton_attention.skeletons.prepare import sequence_from_metadata
from skeleton_attention.skeletons.streams import compute_streams
from tests.kedro_helpers import load_config, run_pipeline

JOINTS = ["pelvis", "spine", "neck", "left_shoulder", "right_shoulder", "left_hand", "right_hand"]
LAYOUT = {
    "name": "stick7_test",
    "dataset": "sticks",
    "joints": JOINTS,
    "parents": [None, "pelvis", "spine", "neck", "neck", "left_shoulder", "right_shoulder"],
    "center": "spine",
    "spine_bottom": "pelvis",
    "spine_top": "neck",
    "left_shoulder": "left_shoulder",
    "right_shoulder": 4,
    "channels": ["x", "y", "z"],
    "classes": ["wave", "clap", "point"],
}
REST = np.array(
    [[0, 0, 0], [0, 0.3, 0], [0, 0.6, 0], [0.2, 0.55, 0], [-0.2, 0.55, 0], [0.4, 0.2, 0.1], [-0.4, 0.2, 0.1]],
    dtype=np.float32,
)


def motion(seed: int, frames: int = 20, bodies: int = 1) -> np.ndarray:
    """A plausible skeleton moving a little: (M, T, 7, 3), camera-like offset so centring matters."""
    rng = np.random.default_rng(seed)
    base = REST + np.array([0.1 * seed, 1.0, 3.0], dtype=np.float32)
    wiggle = 0.05 * np.sin(np.linspace(0, 3, frames))[:, None, None] * rng.normal(size=(1, 7, 3))
    return np.stack([base[None] + wiggle + 0.5 * b for b in range(bodies)]).astype(np.float32)


def write_long_parquet(path: Path, array: np.ndarray, channels=("x", "y", "z"), joint_names=True) -> None:
    m, t, v, _c = array.shape
    body, frame, joint = np.meshgrid(np.arange(m), np.arange(t), np.arange(v), indexing="ij")
    table = {
        "body": body.ravel(),
        "frame": frame.ravel(),
        "joint": np.array(JOINTS)[joint.ravel()] if joint_names else joint.ravel(),
    }
    table.update({name: array[..., i].ravel() for i, name in enumerate(channels)})
    pd.DataFrame(table).to_parquet(path)


def write_dataset(root: Path, n: int = 12) -> dict[str, np.ndarray]:
    """12 samples over 4 subjects, 3 classes, files in npy / npz / parquet, two split columns."""
    (root / "skeletons").mkdir(parents=True)
    (root / "layout.yaml").write_text(yaml.safe_dump(LAYOUT))
    rows, arrays = [], {}
    for i in range(n):
        sid, subject = f"s{i:02d}", i % 4 + 1
        array = motion(i, frames=15 + i, bodies=1 + (i == 5))
        kind = ("npy", "npz", "parquet")[i % 3]
        file = f"skeletons/{sid}.{kind}"
        if kind == "npy":
            np.save(root / file, array)
        elif kind == "npz":
            np.savez(root / file, coords=array, extra=np.zeros(3))
        else:
            write_long_parquet(root / file, array, joint_names=i % 2 == 0)
        arrays[sid] = array
        rows.append(
            {
                "sample_id": sid,
                "file": file,
                "label": LAYOUT["classes"][i % 3],
                "subject": subject,
                "camera": 1 + i % 2,
                "group": f"rec{i // 2}",
                "split_xsub": "train" if subject <= 2 else "test",
                "split_half": "train" if i < 6 else "Test",
            }
        )
    pd.DataFrame(rows).to_csv(root / "samples.csv", index=False)
    return arrays


PARAMS = {"kfold": {"k": 2, "group": "subject", "seed": 0, "name": "custom_kfold"}, "workers": 1}


def prepare(root: Path, out: Path, params: dict | None = None) -> PreparedBundle:
    source = ingest_custom(sorted(root.rglob("samples.csv")), {**PARAMS, **(params or {})})
    write_bundle(out, source)
    return PreparedBundle(out)


def test_round_trip_reads_every_format_with_protocols_and_folds(tmp_path):
    arrays = write_dataset(tmp_path / "raw")
    bundle = prepare(tmp_path / "raw", tmp_path / "inter")
    meta = bundle.table.metadata().set_index("sample_id")
    assert bundle.summary["samples"] == 12 and bundle.summary["quarantined"] == 0
    assert bundle.summary["inputs_seen"] == 12
    for sid, array in arrays.items():
        np.testing.assert_array_equal(bundle.table.read_one(int(meta.at[sid, "row"]))["joint"], array)
    assert set(meta["dataset"]) == {"sticks"} and set(meta["layout"]) == {"stick7_test"}
    assert meta.at["s04", "label"] == 1 and meta.at["s04", "label_name"] == "clap"
    assert meta.at["s05", "num_bodies"] == 2
    assert meta.at["s03", "subject"] == 4 and meta.at["s03", "camera"] == 2 and meta.at["s03", "view_group"] == "rec1"
    assert list(meta["split_xsub"]) == ["train" if s <= 2 else "test" for s in meta["subject"]]
    assert (meta["split_half"] == "test").sum() == 6  # "Test" read case-insensitively
    assert bundle.table.fold_protocols == ("custom_kfold",)
    folds = meta.groupby("subject")["split_custom_kfold"].nunique()
    assert (folds == 1).all()  # a subject never straddles folds
    assert sorted(meta["split_custom_kfold"].value_counts()) == [6, 6]
    assert bundle.summary["kfold"]["group"] == "subject" and bundle.summary["layouts"]["stick7_test"]["parents"][0] == 0


def test_assign_folds_is_deterministic_balanced_and_keeps_groups():
    groups = [f"g{i}" for i in range(10) for _ in range(i % 4 + 1)]
    folds = assign_folds(groups, 3, seed=7)
    assert folds == assign_folds(groups, 3, seed=7)
    sizes = pd.Series(folds).value_counts()
    assert sizes.max() - sizes.min() <= 4  # at most the largest group apart
    assert set(folds) == {1, 2, 3}
    for group in set(groups):
        assert len({f for g, f in zip(groups, folds, strict=True) if g == group}) == 1
    with pytest.raises(ValueError, match="needs at least 11 groups"):
        assign_folds(groups, 11)


def test_kfold_without_subject_column_folds_samples_and_warns(tmp_path):
    write_dataset(tmp_path / "raw")
    frame = pd.read_csv(tmp_path / "raw" / "samples.csv").drop(columns=["subject"])
    frame.to_csv(tmp_path / "raw" / "samples.csv", index=False)
    bundle = prepare(tmp_path / "raw", tmp_path / "inter", {"kfold": {"k": 3}})
    assert bundle.summary["kfold"]["group"] == "sample"
    assert any("per sample" in w for w in bundle.summary["warnings"])
    assert sorted(bundle.table.metadata()["split_custom_kfold"].value_counts()) == [4, 4, 4]


# --- bad input: one quarantine row each, the rest kept -------------------------------------------------


def _break(root: Path, how: str) -> str:
    """Damage sample s01 (an npz) or the CSV row of s01 in one way; return the expected reason."""
    csv = root / "samples.csv"
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    row = frame.index[frame["sample_id"] == "s01"][0]
    good = motion(1)
    if how == "missing_file":
        (root / frame.at[row, "file"]).unlink()
    elif how == "wrong_rank":
        np.savez(root / frame.at[row, "file"], coords=good[0])
    elif how == "wrong_joint_count":
        np.savez(root / frame.at[row, "file"], coords=good[:, :, :6])
    elif how == "wrong_channel_count":
        np.savez(root / frame.at[row, "file"], coords=good[..., :2])
    elif how == "non_finite":
        good[0, 3, 2, 1] = np.nan
        np.savez(root / frame.at[row, "file"], coords=good)
    elif how == "zero_frames":
        np.savez(root / frame.at[row, "file"], coords=good[:, :0])
    elif how == "all_zero":
        np.savez(root / frame.at[row, "file"], coords=np.zeros_like(good))
        how = "zero_frames"
    elif how == "ambiguous_npz":
        np.savez(root / frame.at[row, "file"], a=good, b=good)
    elif how == "unreadable":
        np.save(root / "skeletons" / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        frame.at[row, "file"] = "skeletons/obj.npy"
    elif how == "unsupported_format":
        (root / "skeletons" / "s01.csv").write_text("1,2,3\n")
        frame.at[row, "file"] = "skeletons/s01.csv"
    elif how == "incomplete_grid":
        path = root / "skeletons" / "s01.parquet"
        write_long_parquet(path, good)
        pd.read_parquet(path).iloc[:-1].to_parquet(path)
        frame.at[row, "file"] = "skeletons/s01.parquet"
    elif how == "unknown_label":
        frame.at[row, "label"] = "jump"
    elif how == "bad_split":
        frame.at[row, "split_xsub"] = "val"
    elif how == "bad_value":
        frame.at[row, "subject"] = "P3"
    elif how == "duplicate_sample":
        frame.at[row, "sample_id"] = "s00"
    elif how == "bad_path":
        frame.at[row, "file"] = str((root / frame.at[row, "file"]).resolve())
    elif how == "label_mismatch":
        frame["label_name"] = ""
        frame.at[row, "label_name"] = "wave"
    frame.to_csv(csv, index=False)
    return how


BAD_CASES = [
    "missing_file",
    "wrong_rank",
    "wrong_joint_count",
    "wrong_channel_count",
    "non_finite",
    "zero_frames",
    "all_zero",
    "ambiguous_npz",
    "unreadable",
    "unsupported_format",
    "incomplete_grid",
    "unknown_label",
    "bad_split",
    "bad_value",
    "duplicate_sample",
    "bad_path",
    "label_mismatch",
]


@pytest.mark.parametrize("how", BAD_CASES)
def test_each_bad_sample_is_quarantined_with_its_reason(tmp_path, how):
    write_dataset(tmp_path / "raw")
    reason = _break(tmp_path / "raw", how)
    bundle = prepare(tmp_path / "raw", tmp_path / "inter", {"kfold": None})
    quarantine = bundle.quarantine
    assert list(quarantine["reason"]) == [reason], quarantine.to_dict("records")
    assert bundle.summary["samples"] == 11 and bundle.summary["inputs_seen"] == 12
    record = quarantine.iloc[0]
    # the CSV line of s01 (line 3), or the sample file itself
    assert (record["file"].endswith("samples.csv") and record["line"] == 3) or record["file"].endswith(
        ("s01.npz", "s01.csv", "s01.parquet", "obj.npy", "samples.csv:3")
    ), record.to_dict()


def test_strict_mode_fails_naming_the_file(tmp_path):
    write_dataset(tmp_path / "raw")
    _break(tmp_path / "raw", "wrong_joint_count")
    source = ingest_custom([tmp_path / "raw" / "samples.csv"], {**PARAMS, "strict": True})
    with pytest.raises(
        MalformedSkeletonFile, match=r"s01\.npz: wrong_joint_count: .*6 joints, layout stick7_test has 7"
    ):
        write_bundle(tmp_path / "inter", source)


# --- bad data set description: the run fails with the file and the problem --------------------------------


def _edit_csv(root: Path, edit) -> None:
    frame = pd.read_csv(root / "samples.csv", dtype=str, keep_default_na=False)
    edit(frame).to_csv(root / "samples.csv", index=False)


def _edit_layout(root: Path, **changes) -> None:
    data = {**LAYOUT, **changes}
    (root / "layout.yaml").write_text(yaml.safe_dump({k: v for k, v in data.items() if v != "DROP"}))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda r: _edit_csv(r, lambda f: f.rename(columns={"subject": "subjet"})),
            r"'subjet' \(did you mean 'subject'\?\)",
        ),
        (
            lambda r: _edit_csv(r, lambda f: f.rename(columns={"label": "Label"})),
            r"missing required column\(s\) \['label'\]",
        ),
        (lambda r: _edit_csv(r, lambda f: f.assign(view="1")), "both 'view' and 'camera'"),
        (lambda r: _edit_csv(r, lambda f: f.assign(label=["1", *list(f["label"][1:])])), "mixes class indices"),
        (lambda r: _edit_csv(r, lambda f: f.iloc[:0]), "no sample rows"),
        (
            lambda r: _edit_layout(
                r, parents=[None, "pelvis", "spine", "neck", "neck", "left_shoulder", "rigth_shoulder"]
            ),
            r"layout.yaml: bad_layout: parent of 'right_hand': 'rigth_shoulder' is not one of the joints "
            r"\(did you mean 'right_shoulder'\?\)",
        ),
        (
            lambda r: _edit_layout(
                r, parents=["spine", "neck", "pelvis", "neck", "neck", "left_shoulder", "right_shoulder"]
            ),
            "0 root joints",
        ),
        (lambda r: _edit_layout(r, parents=[None, "pelvis"]), "2 entries for 7 joints"),
        (lambda r: _edit_layout(r, centre="spine"), r"'centre' \(did you mean 'center'\?\)"),
        (lambda r: _edit_layout(r, channels=["x", "z", "y"]), "must start with x, y"),
        (lambda r: _edit_layout(r, name="ntu25"), "already taken"),
        (lambda r: _edit_layout(r, spine_top="DROP"), r"missing key\(s\) \['spine_top'\]"),
    ],
)
def test_a_misdescribed_data_set_fails_clearly(tmp_path, edit, message):
    write_dataset(tmp_path / "raw")
    edit(tmp_path / "raw")
    with pytest.raises((MalformedSkeletonFile, ValueError), match=message):
        ingest_custom([tmp_path / "raw" / "samples.csv"], PARAMS)


def test_too_few_subjects_for_k_folds_fails(tmp_path):
    write_dataset(tmp_path / "raw")
    with pytest.raises(ValueError, match=r"k=5 needs at least 5 groups.*kfold"):
        ingest_custom([tmp_path / "raw" / "samples.csv"], {"kfold": {"k": 5}})


def test_integer_labels_without_class_list_and_a_builtin_layout(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    (root / "layout.yaml").write_text("layout: kinect20\n")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        np.save(root / f"{i}.npy", rng.normal(size=(1, 5, 20, 3)).astype(np.float32))
        rows.append(
            {
                "sample_id": f"k{i}",
                "file": f"{i}.npy",
                "label": i % 2,
                "label_name": ["a", "b"][i % 2],
                "split": "train" if i < 2 else "test",
            }
        )
    pd.DataFrame(rows).to_csv(root / "samples.csv", index=False)
    bundle = prepare(root, tmp_path / "inter", {"kfold": None})
    meta = bundle.table.metadata()
    assert list(meta["label"]) == [0, 1, 0, 1] and list(meta["label_name"]) == ["a", "b", "a", "b"]
    assert list(meta["layout"].unique()) == ["kinect20"] and "layouts" not in bundle.summary
    assert list(meta["split_raw"]) == ["train", "train", "test", "test"]  # `split` -> protocol named after the data set


def test_runtime_layout_registration_refuses_a_different_definition():
    with pytest.raises(ValueError, match="built-in"):
        layouts.register_layout(layouts.JointLayout("ntu25", ("a",), (0,), 0, 0, 0, 0, 0))
    mine = layouts.JointLayout("tiny_test_layout", ("a", "b"), (0, 0), 0, 0, 1, 0, 1)
    assert layouts.register_layout(mine) is mine and layouts.register_layout(mine) is mine
    with pytest.raises(ValueError, match="another definition"):
        layouts.register_layout(layouts.JointLayout("tiny_test_layout", ("a", "c"), (0, 0), 0, 0, 1, 0, 1))
    with pytest.raises(ValueError, match="cycle"):
        layouts.check_layout(layouts.JointLayout("cyc", ("a", "b", "c"), (0, 2, 1), 0, 0, 1, 0, 1))


# --- the Kedro pipeline ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_prepare_custom_pipeline_end_to_end(tmp_path):
    write_dataset(tmp_path / "raw")
    run_pipeline(
        "prepare_custom",
        tmp_path,
        runtime_params={"custom_raw_dir": str(tmp_path / "raw"), "custom_name": "sticks"},
        params={"prepare_custom": {"kfold": {"k": 2, "group": "subject", "seed": 0, "name": "custom_kfold"}}},
    )
    inter = PreparedBundle(tmp_path / "data/02_intermediate/sticks")
    features = PreparedBundle(tmp_path / "data/04_feature/sticks")
    summary = json.loads((tmp_path / "data/08_reporting/sticks_preparation_summary.json").read_text())
    assert summary["samples"] == 12 and summary["fold_protocols"] == ["custom_kfold"]
    assert set(summary["protocols"]) == {"xsub", "half"}
    _, parameters = load_config()
    normalize = parameters["prepare_custom"]["normalize"]
    meta = features.table.metadata()
    folds = inter.table.metadata().set_index("sample_id")["split_custom_kfold"]
    assert meta.set_index("sample_id")["split_custom_kfold"].sort_index().equals(folds.sort_index())  # rows shuffled
    for record in inter.table.metadata().to_dict("records"):
        raw = inter.table.read_one(int(record["row"]))["joint"]
        seq = normalize_sequence(sequence_from_metadata(record, raw), normalize)
        expected = compute_streams(seq.coords, layouts.get_layout("stick7_test"))
        row = int(meta.index[meta["sample_id"] == record["sample_id"]][0])
        got = features.table.read_one(row, tuple(expected))
        for name, array in expected.items():
            np.testing.assert_allclose(got[name], array, rtol=0, atol=1e-6, err_msg=f"{record['sample_id']} {name}")
    first = str(inter.table.metadata().at[0, "sample_id"])
    feature_row = int(meta.index[meta["sample_id"] == first][0])
    assert not np.allclose(features.table.read_one(feature_row)["joint"], inter.table.read_one(0)["joint"])
    # a fresh interpreter (a spawned DataLoader worker, a later `kedro run`) resolves the layout from the bundle
    code = (
        "import sys; from skeleton_attention.skeletons.bundle import PreparedBundle; "
        "from skeleton_attention.skeletons.layouts import get_layout; "
        "PreparedBundle(sys.argv[1]); print(get_layout('stick7_test').num_joints)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}  # this checkout's code
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "data/04_feature/sticks")], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "7"


def test_the_raw_directory_must_hold_one_data_set(tmp_path):
    from skeleton_attention.pipelines.prepare_custom.nodes import dataset_root

    nested = [tmp_path / "set" / "samples.csv", tmp_path / "set" / "sub" / "samples.csv"]
    assert dataset_root(nested) == tmp_path / "set"
    with pytest.raises(ValueError, match="several data sets"):
        dataset_root([tmp_path / "a" / "samples.csv", tmp_path / "b" / "samples.csv"])
    with pytest.raises(FileNotFoundError, match=r"no samples\.csv"):
        dataset_root([tmp_path / "x.npy"])
    (tmp_path / "layout.yaml").write_text("layout: stick7_test\n")
    with pytest.raises(MalformedSkeletonFile, match="not a built-in layout"):
        from skeleton_attention.skeletons.custom_files import load_layout_file

        load_layout_file(tmp_path / "layout.yaml")
