"""Northwestern-UCLA Multiview: reader, protocols and multi-view tables on the 1,484 real files."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skeleton_attention.pipelines.prepare_nucla.nodes import ingest_nucla
from skeleton_attention.skeletons.alignment import multiview_frame, naive_alignment
from skeleton_attention.skeletons.bundle import PreparedBundle, SideRecord, write_bundle
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.ingest import ingest
from skeleton_attention.skeletons.layouts import KINECT20
from skeleton_attention.skeletons.normalize import joint_valid_mask
from skeleton_attention.skeletons.nucla import (
    NUCLA_ACTIONS,
    copied_views,
    nucla_xsub_split,
    nucla_xview_split,
    parse_nucla_name,
    read_nucla_file,
)
from skeleton_attention.skeletons.prepare import process_nucla_file, process_nucla_recording, view_groups
from skeleton_attention.skeletons.streams import compute_streams
from tests.kedro_helpers import run_pipeline

J = KINECT20.index
ONE_FRAME = ("a02_s09_e04_v02", "a02_s09_e04_v03")
#: files per action id (measured)
PER_ACTION = {1: 150, 2: 152, 3: 141, 4: 173, 5: 148, 6: 149, 8: 142, 9: 142, 11: 145, 12: 142}
ALIGN = {"max_offset": 30, "min_overlap": 0.5, "coarse_step": 3, "min_points": 20}
#: a few recordings of every kind: complete, two or one view, copied views, the 1-frame views
SUBSET = (
    "a01_s01_e00",
    "a01_s01_e01",
    "a04_s02_e01",
    "a06_s01_e00",
    "a01_s04_e05",
    "a01_s06_e03",
    "a01_s05_e03",
    "a01_s04_e06",
    "a02_s09_e04",
    "a08_s01_e00",
    "a02_s01_e00",
)


@pytest.fixture(scope="module")
def folder(shared_data: Path) -> Path:
    return shared_data / "nucla_raw" / "all_sqe"


@pytest.fixture(scope="module")
def files(folder) -> list[Path]:
    return sorted(folder.glob("*.json"))


@pytest.fixture(scope="module")
def samples(files):
    return {p.stem: read_nucla_file(p) for p in files}


@pytest.fixture(scope="module")
def recordings(samples) -> dict[str, dict[int, np.ndarray]]:
    out: dict[str, dict[int, np.ndarray]] = {}
    for seq in samples.values():
        out.setdefault(str(seq.meta["view_group"]), {})[int(seq.meta["camera"])] = seq.coords
    return out


@pytest.fixture(scope="module")
def subset_table(folder, tmp_path_factory):
    """An intermediate bundle of the SUBSET recordings, written the way the pipeline writes it."""
    paths = sorted(p for p in folder.glob("*.json") if p.stem[:11] in SUBSET)
    target = tmp_path_factory.mktemp("nucla") / "intermediate"
    write_bundle(target, ingest_nucla(paths, {"workers": 1}))
    return PreparedBundle(target).table


# --- the files ------------------------------------------------------------------------------------


def test_every_file_reads_with_the_documented_counts(samples):
    assert len(samples) == 1484
    assert Counter(s.meta["camera"] for s in samples.values()) == {1: 516, 2: 504, 3: 464}
    assert Counter(s.meta["action"] for s in samples.values()) == PER_ACTION
    assert all(s.coords.shape[0] == 1 and s.coords.shape[2:] == (20, 3) for s in samples.values())
    frames = np.array([s.num_frames for s in samples.values()])
    assert (frames.min(), frames.max(), round(frames.mean(), 1)) == (1, 201, 39.4)
    assert sorted(k for k, s in samples.items() if s.num_frames == 1) == list(ONE_FRAME)


def test_labels_follow_the_action_ids_and_the_files_label_field(samples, files):
    names = list(NUCLA_ACTIONS.values())
    assert names[:3] == ["pick up with one hand", "pick up with two hands", "drop trash"]
    for seq in samples.values():
        assert seq.label == list(NUCLA_ACTIONS).index(seq.meta["action"]) and seq.label_name == names[seq.label]
    # the file's own 1-based label agrees (the reader raises label_mismatch otherwise): spot check
    for path in files[::97]:
        assert json.loads(path.read_text())["label"] == samples[path.stem].label + 1


def test_recordings_and_their_views(recordings):
    assert len(recordings) == 548
    assert Counter(len(v) for v in recordings.values()) == {3: 433, 2: 70, 1: 45}


def test_joint_order_is_kinect20_by_geometry(samples):
    """Head on top, feet at the bottom, limb chains, left/right symmetry and handedness."""
    frames = np.concatenate([s.coords[0] for s in samples.values()]).astype(np.float64)
    assert len(frames) == 58534
    assert np.mean(frames[:, :, 1].argmax(1) == J("head")) > 0.93  # measured 0.940
    feet = [J("left_foot"), J("right_foot"), J("left_ankle"), J("right_ankle")]
    assert np.mean(np.isin(frames[:, :, 1].argmin(1), feet)) > 0.99  # measured 0.995
    per_file = [np.mean(s.coords[0, :, J("head"), 1] > s.coords[0, :, J("hip_center"), 1]) for s in samples.values()]
    assert min(per_file) > 0.9  # measured 0.921
    for a, b in [("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle")]:
        left = np.median(np.linalg.norm(frames[:, J(f"left_{a}")] - frames[:, J(f"left_{b}")], axis=1))
        right = np.median(np.linalg.norm(frames[:, J(f"right_{a}")] - frames[:, J(f"right_{b}")], axis=1))
        assert abs(left - right) / right < 0.02 and left > 0.2
    # chirality: in Kinect's right-handed camera frame, (left - right shoulder) x (hip -> head)
    # points where the person faces, and so do the feet (ankle -> foot). A mirrored file fails this.
    side = frames[:, J("left_shoulder")] - frames[:, J("right_shoulder")]
    up = frames[:, J("head")] - frames[:, J("hip_center")]
    toes = frames[:, [J("left_foot"), J("right_foot")]].mean(1) - frames[:, [J("left_ankle"), J("right_ankle")]].mean(1)
    assert np.mean(np.einsum("ij,ij->i", np.cross(side, up), toes) > 0) > 0.94  # measured 0.949


def test_copied_views_in_the_release(recordings):
    """95 v03 files are bit-exact copies of v02; 7 v02 files of subject 1 reuse v01 frames."""
    copies = {key: copied_views(views) for key, views in recordings.items()}
    copies = {k: v for k, v in copies.items() if v}
    assert len(copies) == 102
    assert Counter(tuple(sorted(v.items())) for v in copies.values()) == {((3, 2),): 95, ((2, 1),): 7}
    exact = [k for k, v in recordings.items() if 3 in v and 2 in v and np.array_equal(v[2], v[3])]
    assert len(exact) == 95 and all(k[:3] in ("a02", "a03") for k in exact)


# --- the 1-frame views -----------------------------------------------------------------------------


def test_one_frame_views_are_kept_with_zero_motion_by_default(folder):
    for name in ONE_FRAME:
        outcome = process_nucla_file(folder / f"{name}.json")
        ((seq, _splits),) = outcome.samples
        assert seq.num_frames == 1 and outcome.excluded_reason is None
        streams = compute_streams(seq.coords, KINECT20)
        assert not streams["motion_fast"].any() and not streams["motion_slow"].any()
        assert streams["bone"].any()
    assert process_nucla_file(folder / "a02_s09_e04_v02.json").samples[0][1]["nucla_xview"] == "train"
    assert process_nucla_file(folder / "a02_s09_e04_v03.json").samples[0][1]["nucla_xview"] == "test"


def test_min_frames_excludes_short_views_with_a_reason(folder):
    outcome = process_nucla_file(folder / "a02_s09_e04_v02.json", min_frames=2)
    assert outcome.excluded_reason == "too_few_frames" and not outcome.samples
    assert "1 frame" in outcome.excluded_detail
    assert process_nucla_file(folder / "a01_s01_e00_v01.json", min_frames=2).samples


# --- protocols --------------------------------------------------------------------------------------


def test_protocol_sizes(samples, folder):
    xview = Counter(nucla_xview_split(int(s.meta["camera"])) for s in samples.values())
    assert xview == {"train": 1020, "test": 464}
    xsub = Counter(nucla_xsub_split(int(s.meta["subject"])) for s in samples.values())
    assert xsub == {"train": 724, "test": 760}
    # by subject: every view of a recording on the same side
    sides = {}
    for s in samples.values():
        sides.setdefault(s.meta["view_group"], set()).add(nucla_xsub_split(int(s.meta["subject"])))
    assert all(len(v) == 1 for v in sides.values())
    assert Counter(next(iter(v)) for v in sides.values()) == {"train": 273, "test": 275}
    with pytest.raises(ValueError):
        nucla_xview_split(4)


def test_dedup_cross_view_leaves_out_test_copies_of_training_files(folder):
    copy = process_nucla_file(folder / "a02_s01_e00_v03.json")
    assert copy.samples[0][1] == {"nucla_xview": "test", "nucla_xview_dedup": None, "nucla_xsub": "train"}
    assert copy.report["copy_of"] == "v02"
    own = process_nucla_file(folder / "a01_s01_e00_v03.json")
    assert own.samples[0][1]["nucla_xview_dedup"] == "test" and own.report["copy_of"] == ""


# --- bad input --------------------------------------------------------------------------------------

GOOD = {
    "file_name": "a01_s01_e00_v01",
    "label": 1,
    "skeletons": [[[0.1 * j, 0.05 * j, 3.0] for j in range(20)] for _ in range(3)],
}


def _write(tmp_path: Path, content, name: str = "a01_s01_e00_v01.json") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty_file"),
        (b"\x00\x01\x02", "binary_file"),
        (b'{"file_name": "a01_s01_e00_v01", "skeletons": [[', "malformed_json"),
        ([1, 2], "malformed_json"),
        ({k: v for k, v in GOOD.items() if k != "label"}, "missing_field"),
        ({**GOOD, "label": 2}, "label_mismatch"),
        ({**GOOD, "label": "1"}, "malformed_json"),
        ({**GOOD, "file_name": "a01_s01_e00_v02"}, "bad_name"),
        ({**GOOD, "skeletons": []}, "zero_frames"),
        ({**GOOD, "skeletons": [[[0.0, 0.0, 0.0]] * 20]}, "zero_frames"),
        ({**GOOD, "skeletons": [GOOD["skeletons"][0][:19]]}, "wrong_joint_count"),
        ({**GOOD, "skeletons": [[*GOOD["skeletons"][0][:19], [0.1, 0.2]]]}, "malformed_json"),
        ({**GOOD, "skeletons": [[*GOOD["skeletons"][0][:19], [0.1, "x", 0.2]]]}, "non_numeric"),
        ({**GOOD, "skeletons": "no"}, "malformed_json"),
    ],
)
def test_bad_files_raise_with_a_reason(tmp_path, content, reason):
    path = _write(tmp_path, content)
    with pytest.raises(MalformedSkeletonFile) as info:
        read_nucla_file(path)
    assert info.value.reason == reason and str(path) in str(info.value)


def test_non_finite_and_bad_names(tmp_path):
    text = json.dumps(GOOD).replace("0.1,", "NaN,", 1).encode()
    with pytest.raises(MalformedSkeletonFile) as info:
        read_nucla_file(_write(tmp_path, text))
    assert info.value.reason == "non_finite"
    for bad in ("a07_s01_e00_v01", "a01_s11_e00_v01", "a01_s01_e00_v04", "a01_s01_e00"):
        with pytest.raises(MalformedSkeletonFile) as info:
            parse_nucla_name(f"{bad}.json")
        assert info.value.reason == "bad_name"
    good = read_nucla_file(_write(tmp_path, GOOD))
    assert good.coords.shape == (1, 3, 20, 3) and good.meta["view_group"] == "a01_s01_e00"


def test_bad_files_are_quarantined_and_accounted_for(tmp_path, folder):
    paths = [
        _write(tmp_path, {**GOOD, "label": 3}),
        _write(tmp_path, b"", "a01_s01_e01_v01.json"),
        folder / "a01_s01_e00_v02.json",
    ]
    out = list(ingest(paths, partial(process_nucla_file), workers=1))
    records = [r.record for r in out if isinstance(r, SideRecord) and r.kind == "quarantine"]
    assert sorted(r["reason"] for r in records) == ["empty_file", "label_mismatch"]
    assert sum(not isinstance(r, SideRecord) for r in out) == 1


# --- multi-view ---------------------------------------------------------------------------------------


def test_view_groups_and_masks_of_missing_and_copied_views(subset_table):
    groups = {g["view_group"]: g for g in view_groups(subset_table)}
    assert set(groups) == set(SUBSET)
    assert sorted(groups["a01_s04_e05"]["rows"]) == [1, 2] and sorted(groups["a01_s04_e06"]["rows"]) == [2]
    out = process_nucla_recording(groups["a01_s06_e03"], table=subset_table, align=ALIGN)
    ((seq, splits),) = out.samples
    assert seq.coords.shape[0] == 3 and seq.meta["num_views"] == 3 and seq.meta["cameras_present"] == "13"
    assert seq.num_frames == out.report["frames"] and out.report["reference"] == 1
    assert not seq.coords[1].any(), "the missing camera 2 is a zero slot"
    assert seq.coords[0].any() and seq.coords[2].any()
    assert splits == {"nucla_xsub": "test"}  # cross-view is ill-defined with every view as input
    # only camera 2: it is the reference, slots 1 and 3 are zero
    ((seq, _),) = process_nucla_recording(groups["a01_s04_e06"], table=subset_table, align=ALIGN).samples
    assert seq.meta["cameras_present"] == "2" and seq.coords[1].any() and not seq.coords[[0, 2]].any()
    # a copied view is masked like a missing one, and named in the report
    copied = process_nucla_recording(groups["a02_s01_e00"], table=subset_table, align=ALIGN)
    assert copied.samples[0][0].meta["cameras_present"] == "12" and not copied.samples[0][0].coords[2].any()
    assert copied.report["copied_views"] == "3=2" and copied.report["files_present"] == "123"
    kept = process_nucla_recording(groups["a02_s01_e00"], table=subset_table, align=ALIGN, copied="keep")
    assert kept.samples[0][0].meta["cameras_present"] == "123"
    # the two 1-frame views copy each other: one 1-frame view is left
    one = process_nucla_recording(groups["a02_s09_e04"], table=subset_table, align=ALIGN)
    assert one.samples[0][0].meta["cameras_present"] == "2" and one.samples[0][0].num_frames == 1


def _views(recordings, key):
    return {c: v for c, v in recordings[key].items()}


def test_camera_frame_keeps_each_views_own_coordinates(recordings):
    views = _views(recordings, "a01_s01_e00")
    out = multiview_frame(views, "camera", layout=KINECT20, cameras=(1, 2, 3), **ALIGN)
    assert out.frame == "camera" and out.coords.shape == (3, 1, 44, 20, 3)
    np.testing.assert_array_equal(out.coords[0], views[1])  # the reference timeline, untouched
    for c in (2, 3):
        s = out.offsets[c] + out.rates[c] * np.arange(44)
        t = np.flatnonzero((s == np.round(s)) & (s >= 0) & (s <= views[c].shape[1] - 1))
        if len(t):  # integral positions are the view's own frames, in its own camera coordinates
            np.testing.assert_allclose(out.coords[c - 1][:, t], views[c][:, s[t].astype(int)], atol=1e-6)


def test_body_frame_centres_and_rotates_each_view_on_its_own(recordings):
    views = _views(recordings, "a01_s01_e00")
    out = multiview_frame(views, "body", layout=KINECT20, cameras=(1, 2, 3), **ALIGN)
    for slot in range(3):
        x = out.coords[slot, 0].astype(np.float64)
        ok = out.joint_mask[slot, 0].all(axis=-1)
        assert ok.sum() >= 10
        np.testing.assert_allclose(x[ok][:, J("spine")], 0.0, atol=1e-6)  # per-frame centre
        first = np.flatnonzero(ok)[0]
        axis = x[first, J("spine")] - x[first, J("hip_center")]
        assert np.allclose(axis[:2], 0, atol=1e-5) and axis[2] > 0  # spine -> +z at the first frame
        shoulders = x[first, J("left_shoulder")] - x[first, J("right_shoulder")]
        assert abs(shoulders[1]) < 1e-5 and shoulders[0] > 0  # shoulders -> +x
    # the views differ (different cameras, no cross-view transform): not the aligned result
    aligned = multiview_frame(views, "aligned", layout=KINECT20, cameras=(1, 2, 3), **ALIGN)
    assert not np.allclose(out.coords[1], aligned.coords[1], atol=1e-3)
    assert out.offsets == aligned.offsets and out.residuals == aligned.residuals


def test_aligned_frame_beats_the_naive_check_on_real_recordings(recordings):
    """Rigid alignment (estimated offset, one transform per view) vs naive (body frame, stretch by index)."""
    keys = [k for k, v in recordings.items() if len(v) == 3 and not copied_views(v)][::20]
    assert len(keys) >= 15
    rigid, naive = [], []
    for key in keys:
        out = multiview_frame(recordings[key], "aligned", layout=KINECT20, cameras=(1, 2, 3), **ALIGN)
        base = naive_alignment(recordings[key], layout=KINECT20, cameras=(1, 2, 3))
        rigid += [out.residuals[c] for c in (2, 3)]
        naive += [base.residuals[c] for c in (2, 3)]
        # aligned: all views in the reference view's body frame, so the reference spine is the origin
        ref_ok = out.joint_mask[0, 0, :, J("spine")]
        np.testing.assert_allclose(out.coords[0, 0, ref_ok, J("spine")], 0.0, atol=1e-6)
    rigid, naive = np.array(rigid), np.array(naive)
    assert rigid.mean() < naive.mean() - 0.03  # measured 0.148 vs 0.194 m on 17 recordings
    assert np.mean(rigid < naive) > 0.75  # measured 0.88 of the 34 views


def test_frame_option_is_checked(recordings):
    with pytest.raises(ValueError, match="frame must be one of"):
        multiview_frame(recordings["a01_s01_e00"], "world", layout=KINECT20)


def test_ntu_multiview_frames(shared_data):
    """The three frames on a real NTU recording: the same timing, different spaces."""
    from skeleton_attention.skeletons.views import align_views, load_ntu_view

    root = shared_data / "ntu_multiview"
    loaded = {c: load_ntu_view(root / f"S001C00{c}P001R001A001.skeleton") for c in (1, 2, 3)}
    views = {c: v[0] for c, v in loaded.items()}
    outs = {f: multiview_frame(views, f, max_offset=10) for f in ("body", "camera", "aligned")}
    legacy = align_views(views, max_offset=10, normalize_output=True)
    np.testing.assert_array_equal(outs["aligned"].coords, legacy.coords)  # today's behaviour, unchanged
    assert outs["body"].offsets == outs["camera"].offsets == legacy.offsets
    np.testing.assert_array_equal(outs["camera"].coords[0], views[1][:, :, :, :3])
    body = outs["body"].coords
    for slot in range(3):
        ok = joint_valid_mask(views[slot + 1])[0].all(-1)
        mask = outs["body"].joint_mask[slot, 0, :, 1]
        np.testing.assert_allclose(body[slot, 0, mask, 1], 0.0, atol=1e-6)  # spine_mid is each view's origin
        assert ok.any()
    # camera frame: the cameras really differ (metres apart); body and aligned bring them together
    gap = {f: np.linalg.norm(o.coords[1, 0, :, 0] - o.coords[0, 0, :, 0], axis=-1).mean() for f, o in outs.items()}
    assert gap["camera"] > 0.4 and gap["aligned"] < 0.1 and gap["body"] < 0.1  # measured 0.49, 0.04, 0.03


# --- end to end -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_prepare_nucla_end_to_end_on_the_real_folder(folder, tmp_path):
    run_pipeline("prepare_nucla", tmp_path, {"nucla_raw_dir": str(folder)})
    summary = json.loads((tmp_path / "data/08_reporting/nucla_preparation_summary.json").read_text())
    assert summary["inputs_seen"] == summary["samples"] == 1484 and summary["quarantined"] == 0
    assert summary["split_counts"]["nucla_xview"] == {"train": 1020, "test": 464}
    assert summary["split_counts"]["nucla_xview_dedup"] == {"train": 1020, "test": 369, "none": 95}
    assert summary["split_counts"]["nucla_xsub"] == {"train": 724, "test": 760}
    features = PreparedBundle(tmp_path / "data/04_feature/nucla")
    one = features.table.metadata().set_index("sample_id").loc[list(ONE_FRAME)]
    assert (one["num_frames"] == 1).all()
    multiview = PreparedBundle(tmp_path / "data/04_feature/nucla_multiview")
    meta = multiview.table.metadata()
    assert len(meta) == 548 and (meta["num_views"] == 3).all() and (meta["num_bodies"] == 3).all()
    assert "split_nucla_xview" not in meta and "split_nucla_xview_dedup" not in meta
    assert meta["split_nucla_xsub"].value_counts().to_dict() == {"train": 273, "test": 275}
    residuals = pd.read_csv(
        tmp_path / "data/08_reporting/nucla_view_residuals.csv", dtype={"cameras_present": str, "files_present": str}
    )
    assert len(residuals) == 548 and (residuals["frame"] == "body").all()
    assert Counter(residuals["files_present"].str.len()) == {3: 433, 2: 70, 1: 45}
    assert (residuals["copied_views"].notna()).sum() == 102
    assert Counter(residuals["cameras_present"].str.len()) == {3: 334, 2: 166, 1: 48}
    # every masked slot is zero, every present one is not
    for row in meta.itertuples():
        x = multiview.table.read_one(int(row.row), ("joint",))["joint"]
        for slot, camera in enumerate("123"):
            assert bool(x[slot].any()) == (camera in row.cameras_present), row.sample_id
    # aligned residual below the naive check (measured means: see docs/geometry.md)
    for c in (2, 3):
        both = residuals[[f"residual_c{c}", f"naive_residual_c{c}"]].dropna()
        assert both[f"residual_c{c}"].mean() < both[f"naive_residual_c{c}"].mean() - 0.03


@pytest.mark.slow
@pytest.mark.parametrize("frame", ["camera", "aligned"])
def test_prepare_ntu_reads_the_multiview_frame_parameter(shared_data, tmp_path, frame):
    """``prepare_ntu.multiview.frame`` reaches the NTU multi-view table (the default, body, is run
    by tests/test_prepare_pipelines.py)."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(shared_data / "ntu_multiview", raw, ignore=shutil.ignore_patterns("*.md", "*A050*"))
    missing = shared_data / "ntu_meta" / "NTU_RGBD_samples_with_missing_skeletons.txt"
    multiview = {"frame": frame, "reference_camera": 1, "max_offset": 10}
    run_pipeline(
        "prepare_ntu",
        tmp_path,
        {"ntu_raw_dir": str(raw), "ntu_missing_list": str(missing)},
        params={"prepare_ntu": {"multiview": multiview}},
    )
    bundle = PreparedBundle(tmp_path / "data/04_feature/ntu_multiview")
    assert bundle.summary["frame"] == frame
    x = bundle.table.read_one(0, ("joint",))["joint"]  # (3 views x 1 body, T, 25, 3)
    spine = x[:, :, 1]
    present = np.abs(spine).sum(-1) > 0
    if frame == "camera":  # metres in front of each camera, and the cameras disagree
        assert (spine[..., 2][present] > 1.5).all()
        assert np.linalg.norm(spine[1] - spine[0], axis=-1).mean() > 0.3
    else:  # the reference body frame: C001's spine_mid is the origin, the others near it
        assert not np.abs(x[0, :, 1]).any()
        assert np.linalg.norm(spine[1] - spine[0], axis=-1).mean() < 0.1
    residuals = pd.read_csv(tmp_path / "data/08_reporting/ntu_view_residuals.csv")
    assert (residuals["frame"] == frame).all() and residuals["residual_c2"].iloc[0] < 0.11
