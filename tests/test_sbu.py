"""SBU Kinect Interaction: reader, coordinates, folds, layout, smoothing and prepare_sbu, on the
282 real sequences in ../shared/data/sbu_raw."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from skeleton_attention.skeletons.bundle import PreparedBundle
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.layouts import SBU15, get_layout
from skeleton_attention.skeletons.normalize import normalize_sequence, scale_segment
from skeleton_attention.skeletons.prepare import SBU_FOLD_PROTOCOLS, process_sbu_file
from skeleton_attention.skeletons.sbu import (
    SBU_ACTIONS,
    SBU_FOLDS,
    read_sbu_file,
    read_sbu_values,
    sbu_fold,
    to_camera_metres,
)
from skeleton_attention.skeletons.smoothing import smooth_joints, smooth_time, smoothing_kernel
from skeleton_attention.skeletons.streams import compute_streams
from skeleton_attention.training.data import protocol_splits
from tests.kedro_helpers import load_config, run_pipeline

J = SBU15.index
CLASS_COUNTS = [42, 43, 40, 41, 18, 21, 39, 38]
#: measured on the release: sequences and frames per fold
FOLD_SEQUENCES = {1: 55, 2: 52, 3: 56, 4: 54, 5: 65}
FOLD_FRAMES = {1: 1439, 2: 1305, 3: 1413, 4: 1190, 5: 1475}


@pytest.fixture(scope="module")
def folder(shared_data: Path) -> Path:
    return shared_data / "sbu_raw"


@pytest.fixture(scope="module")
def files(folder) -> list[Path]:
    return sorted(folder.glob("*/*/*/skeleton_pos.txt"))


@pytest.fixture(scope="module")
def samples(files):
    return [read_sbu_file(p) for p in files]


# --- the release ------------------------------------------------------------------------------------


def test_release_counts(samples):
    assert len(samples) == 282
    assert sum(s.num_frames for s in samples) == 6822
    counts = Counter(s.label for s in samples)
    assert [counts[k] for k in range(8)] == CLASS_COUNTS
    assert {s.label_name for s in samples} == set(SBU_ACTIONS)
    assert len({s.meta["performer_pair"] for s in samples}) == 21
    assert len({s.sample_id for s in samples}) == 282
    assert min(s.num_frames for s in samples) == 10 and max(s.num_frames for s in samples) == 46


def test_identity_fields(samples, folder):
    first = read_sbu_file(folder / "s01s02/07/001/skeleton_pos.txt")
    assert first.sample_id == "s01s02_a07_e001"
    assert (first.label, first.label_name) == (6, "shaking hands")
    assert first.layout == "sbu15" and first.dataset == "sbu"
    assert first.meta["performer"] == 1 and first.meta["subject"] == 2
    assert first.meta["performer_pair"] == "s01s02" and first.meta["episode"] == 1
    assert first.meta["end_frame"] - first.meta["start_frame"] + 1 == first.num_frames
    for s in samples:
        pair = s.meta["performer_pair"]
        assert s.sample_id.startswith(f"{pair}_a{s.meta['action']:02d}_e")
        assert (s.meta["performer"], s.meta["subject"]) == (int(pair[1:3]), int(pair[4:6]))
        assert s.label == s.meta["action"] - 1


def test_both_persons_in_every_frame(samples):
    for s in samples:
        assert s.coords.shape == (2, s.num_frames, 15, 3) and s.coords.dtype == np.float32
        assert np.isfinite(s.coords).all()
        assert np.abs(s.coords).sum(axis=(2, 3)).min() > 0, s.sample_id


# --- folds ------------------------------------------------------------------------------------------


def test_fold_definition_covers_each_pair_once(samples):
    listed = [p for pairs in SBU_FOLDS.values() for p in pairs]
    assert len(listed) == len(set(listed)) == 21
    assert set(listed) == {s.meta["performer_pair"] for s in samples}
    assert sbu_fold("s08s09") is None


def test_fold_sizes(samples):
    folds = [sbu_fold(str(s.meta["performer_pair"])) for s in samples]
    assert None not in folds  # every sample has exactly one fold
    assert Counter(folds) == FOLD_SEQUENCES
    frames = Counter()
    for s, fold in zip(samples, folds, strict=True):
        frames[fold] += s.num_frames
    assert dict(frames) == FOLD_FRAMES
    # the split is subject-independent in the pair sense: no pair in two folds
    by_pair = {}
    for s, fold in zip(samples, folds, strict=True):
        assert by_pair.setdefault(s.meta["performer_pair"], fold) == fold


def test_processor_gives_the_fold_and_null_for_an_unknown_pair(folder, tmp_path):
    outcome = process_sbu_file(folder / "s06s03/05/001/skeleton_pos.txt")
    [(seq, splits)] = outcome.samples
    assert splits == {"sbu_fold": 5} and SBU_FOLD_PROTOCOLS == ("sbu_fold",)
    target = tmp_path / "s08s09/05/001/skeleton_pos.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes((folder / "s06s03/05/001/skeleton_pos.txt").read_bytes())
    [(other, splits)] = process_sbu_file(target).samples
    assert splits == {"sbu_fold": None} and other.meta["performer_pair"] == "s08s09"
    np.testing.assert_array_equal(other.coords, seq.coords)


# --- coordinates ----------------------------------------------------------------------------------


def test_raw_mode_returns_the_file_values(folder):
    path = folder / "s01s02/01/001/skeleton_pos.txt"
    raw = read_sbu_file(path, coordinates="raw")
    first_line = path.read_text().splitlines()[0].split(",")
    assert int(first_line[0]) == raw.meta["start_frame"] == 55
    values = np.array(first_line[1:], dtype=np.float32).reshape(2, 15, 3)
    np.testing.assert_array_equal(raw.coords[:, 0], values)
    metres = read_sbu_file(path)
    np.testing.assert_allclose(metres.coords, to_camera_metres(raw.coords), rtol=0, atol=1e-6)
    # x = 1280 - 2560 x', y = 960 - 1920 y', z = 1280 z' millimetres, then metres
    x, y, z = (float(v) for v in first_line[1:4])
    np.testing.assert_allclose(metres.coords[0, 0, 0], [1.28 - 2.56 * x, 0.96 - 1.92 * y, 1.28 * z], atol=1e-6)
    with pytest.raises(ValueError, match="coordinates"):
        read_sbu_file(path, coordinates="pixels")


def test_release_transform_gives_isotropic_metres(samples):
    """Bone lengths are anatomical and do not depend on depth (the x, y, z scales agree)."""
    coords = np.concatenate([s.coords for s in samples], axis=1)  # (2, 6822, 15, 3)

    def length(a, b):
        return np.linalg.norm(coords[:, :, J(a)] - coords[:, :, J(b)], axis=-1).ravel()

    depth = coords[:, :, J("torso"), 2].ravel()
    assert depth.min() > 1.0 and depth.max() < 3.2
    for (a, b), (low, high) in {
        ("left_hip", "left_knee"): (0.40, 0.46),
        ("right_knee", "right_foot"): (0.38, 0.44),
        ("left_elbow", "left_hand"): (0.25, 0.31),
        ("left_shoulder", "right_shoulder"): (0.28, 0.33),
        ("torso", "neck"): (0.20, 0.24),
    }.items():
        lengths = length(a, b)
        assert low < np.median(lengths) < high, (a, b, np.median(lengths))
        assert abs(np.corrcoef(lengths, depth)[0, 1]) < 0.1, (a, b)


def test_y_up_and_left_right_against_the_facing_direction(samples, files):
    """Raw y grows downwards; the output has y up. Persons face each other, so forward is the
    direction to the partner; in a right-handed frame a person's right is forward x up."""
    raw = read_sbu_file(files[0], coordinates="raw").coords
    assert (raw[:, :, J("head"), 1] < raw[:, :, J("torso"), 1]).all()
    consistent = total = 0
    for s in samples:
        c = s.coords.astype(np.float64)
        assert (c[:, :, J("head"), 1] > c[:, :, J("neck"), 1]).all()
        assert (c[:, :, J("neck"), 1] > c[:, :, J("torso"), 1]).all()
        if s.label_name == "departing":  # one actor turns away from the other
            continue
        for m in range(2):
            forward = c[1 - m, :, J("torso")] - c[m, :, J("torso")]
            forward[:, 1] = 0.0
            right = np.cross(forward, [0.0, 1.0, 0.0])
            shoulders = c[m, :, J("right_shoulder")] - c[m, :, J("left_shoulder")]
            consistent += int(((shoulders * right).sum(-1) > 0).sum())
            total += len(right)
    assert total == 2 * (6822 - 778)  # 778 departing frames
    assert consistent / total > 0.96  # measured 0.971


# --- bad input ------------------------------------------------------------------------------------


def _line(frame: int, value: float = 0.5) -> str:
    return ",".join([str(frame)] + [repr(value)] * 90)


def _write(tmp_path: Path, text: str | bytes, pair: str = "s01s02", klass: str = "01") -> Path:
    path = tmp_path / pair / klass / "001" / "skeleton_pos.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _error(path: Path) -> MalformedSkeletonFile:
    with pytest.raises(MalformedSkeletonFile) as info:
        read_sbu_file(path)
    assert str(path) in str(info.value)
    return info.value


GOOD = "".join(_line(f) + "\r\n" for f in (7, 8, 9))


@pytest.mark.parametrize(
    ("text", "reason", "line"),
    [
        ("", "empty_file", None),
        (" \n\n", "empty_file", None),
        (GOOD + _line(10)[:200], "truncated", 4),  # cut mid-line, no line end
        (_line(1) + "\n\n" + _line(2) + "\n", "truncated", 2),  # blank line inside
        (_line(1) + "\n" + ",".join(["2"] + ["0.5"] * 89) + "\n" + _line(3) + "\n", "wrong_joint_count", 2),
        (GOOD + ",".join(["10"] + ["0.5"] * 91) + "\n", "wrong_joint_count", 4),
        (GOOD + _line(10)[:200] + "\n", "wrong_joint_count", 4),  # short but complete line
        (GOOD.replace("0.5", "0.5x", 1), "non_numeric", 1),
        (GOOD + _line(10).replace("0.5", "", 1) + "\n", "non_numeric", 4),
        (GOOD + "ten" + _line(10)[2:] + "\n", "non_numeric", 4),
        (GOOD + "10.5" + _line(10)[2:] + "\n", "non_numeric", 4),
        (GOOD + _line(10).replace("0.5", "nan", 1) + "\n", "non_finite", 4),
        (GOOD + _line(10).replace("0.5", "inf", 1) + "\n", "non_finite", 4),
        (GOOD + _line(8) + "\n", "unordered_frames", 4),  # going back
        (GOOD + _line(9) + "\n", "unordered_frames", 4),  # repeated
        ("".join(_line(f, 0.0) + "\n" for f in (1, 2)), "zero_frames", None),
    ],
)
def test_bad_input_names_file_reason_and_line(tmp_path, text, reason, line):
    error = _error(_write(tmp_path, text))
    assert (error.reason, error.line) == (reason, line)


def test_binary_and_bad_names(tmp_path):
    assert _error(_write(tmp_path, b"\x00\x01" * 40)).reason == "binary_file"
    for pair, klass in (("s01s01", "01"), ("x01s02", "01"), ("s01s02", "09"), ("s01s02", "1")):
        assert _error(_write(tmp_path / f"{pair}{klass}", GOOD, pair, klass)).reason == "bad_name"
    other = tmp_path / "s01s02/01/001/joints.txt"
    other.write_text(GOOD)
    assert _error(other).reason == "bad_name"


def test_good_synthetic_file_and_gaps(tmp_path):
    frames, values = read_sbu_values(_write(tmp_path, GOOD + _line(20) + "\n"))
    assert list(frames) == [7, 8, 9, 20] and values.shape == (2, 4, 15, 3)  # a gap is kept as is
    seq = read_sbu_file(tmp_path / "s01s02/01/001/skeleton_pos.txt")
    np.testing.assert_allclose(seq.coords[..., 0], 1.28 - 2.56 * 0.5, atol=1e-6)


def test_an_absent_person_stays_zero(tmp_path):
    line = ",".join(["1"] + ["0.5"] * 45 + ["0"] * 45)
    seq = read_sbu_file(_write(tmp_path, line + "\n" + _line(2) + "\n"))
    assert not seq.coords[1, 0].any() and seq.coords[0, 0].any()
    np.testing.assert_allclose(seq.coords[1, 1, :, 2], 1.28 * 0.5)


# --- smoothing -----------------------------------------------------------------------------------


def _series(values, channels: int = 3) -> np.ndarray:
    """(1, T, 1, C) with channel 0 = values and the others 1 (so no frame is all-zero by accident)."""
    x = np.ones((1, len(values), 1, channels))
    x[0, :, 0, 0] = values
    return x


def test_smoothing_keeps_constants_and_length():
    rng = np.random.default_rng(0)
    const = np.broadcast_to(rng.normal(size=(2, 1, 15, 3)) + 3.0, (2, 17, 15, 3)).copy()
    for params in ({"method": "moving_average", "window": 5}, {"method": "gaussian", "window": 7, "sigma": 2.0}):
        out = smooth_joints(const, params)
        assert out.shape == const.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, const, rtol=1e-6)  # the ends included
    short = _series([1.0, 2.0])
    assert smooth_joints(short, {"method": "moving_average", "window": 9}).shape == short.shape


def test_smoothing_hand_example_and_edges():
    out = smooth_time(_series([1, 2, 6, 4, 1]), smoothing_kernel("moving_average", 3))[0, :, 0, 0]
    np.testing.assert_allclose(out, [1.5, 3.0, 4.0, 11 / 3, 2.5])  # ends average the frames they have
    w = math.exp(-0.5)
    out = smooth_time(_series([1, 2, 6, 4, 1]), smoothing_kernel("gaussian", 3, 1.0))[0, :, 0, 0]
    expected = [
        (1 + w * 2) / (1 + w),
        (w + 2 + 6 * w) / (1 + 2 * w),
        (2 * w + 6 + 4 * w) / (1 + 2 * w),
        (6 * w + 4 + w) / (1 + 2 * w),
        (4 * w + 1) / (1 + w),
    ]
    np.testing.assert_allclose(out, expected)
    ramp = smooth_joints(_series(np.arange(1.0, 12.0)), {"method": "gaussian", "window": 5, "sigma": 1.5})
    np.testing.assert_allclose(ramp[0, 2:-2, 0, 0], np.arange(3.0, 10.0), rtol=1e-6)  # symmetric kernel


def test_savitzky_golay_is_hbrnns_filter_and_keeps_quadratics():
    np.testing.assert_allclose(smoothing_kernel("savitzky_golay", 5), np.array([-3, 12, 17, 12, -3]) / 35)
    np.testing.assert_allclose(smoothing_kernel("savitzky_golay", 7, polyorder=3).sum(), 1.0)
    t = np.arange(11.0)
    quadratic = smooth_joints(_series(0.5 * t**2 - t + 2), {"method": "savitzky_golay", "window": 5})
    np.testing.assert_allclose(quadratic[0, 2:-2, 0, 0], (0.5 * t**2 - t + 2)[2:-2], rtol=1e-5)  # exact inside
    const = smooth_joints(_series(np.full(6, 4.0)), {"method": "savitzky_golay", "window": 5, "polyorder": 2})
    np.testing.assert_allclose(const[0, :, 0, 0], 4.0, rtol=1e-6)  # the renormalised ends too
    for bad in (
        {"method": "savitzky_golay", "window": 5, "polyorder": 5},
        {"method": "savitzky_golay", "window": 3, "polyorder": -1},
    ):
        with pytest.raises(ValueError, match="polyorder"):
            smooth_joints(_series([1.0, 2.0, 3.0]), bad)


def test_smoothing_skips_missing_frames_and_keeps_them_zero():
    x = _series([1, 2, 0, 4, 1])
    x[0, 2] = 0.0  # the body is missing in frame 2
    out = smooth_time(x, smoothing_kernel("moving_average", 3))[0, :, 0, 0]
    np.testing.assert_allclose(out, [1.5, 1.5, 0.0, 2.5, 2.5])


def test_smoothing_settings_are_checked():
    x = _series([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(smooth_joints(x, {"method": "none"}), x.astype(np.float32))
    np.testing.assert_array_equal(smooth_joints(x, {"method": "moving_average", "window": 1}), x)
    for bad in (
        {"method": "median"},
        {"method": "moving_average", "window": 4},
        {"method": "gaussian", "window": 5, "sigma": 0},
        {"method": "gaussian", "width": 5},
        {"method": "moving_average", "window": True},
    ):
        with pytest.raises(ValueError):
            smooth_joints(x, bad)


# --- layout, normalization, streams ---------------------------------------------------------------


def test_sbu15_layout():
    layout = get_layout("sbu15")
    assert layout is SBU15 and layout.num_joints == 15
    assert layout.joint_names[:3] == ("head", "neck", "torso")
    assert len(layout.bones) == 14 and layout.parents[J("torso")] == J("torso")
    for joint in range(15):  # a tree: every joint reaches the root
        seen = set()
        while layout.parents[joint] != joint:
            assert joint not in seen
            seen.add(joint)
            joint = layout.parents[joint]
        assert joint == J("torso")
    for side in ("left", "right"):
        chain = [f"{side}_{j}" for j in ("shoulder", "elbow", "hand")]
        assert [layout.joint_names[layout.parents[J(j)]] for j in chain] == ["neck", *chain[:2]]
        chain = [f"{side}_{j}" for j in ("hip", "knee", "foot")]
        assert [layout.joint_names[layout.parents[J(j)]] for j in chain] == ["torso", *chain[:2]]
    assert [layout.joint_names[j] for j in scale_segment(layout)] == ["torso", "neck"]


def test_pre_normalize_on_two_persons(folder):
    seq = read_sbu_file(folder / "s02s03/04/001/skeleton_pos.txt")
    before = seq.coords.astype(np.float64)
    for center in ("per_frame", "first_frame"):
        out = normalize_sequence(seq, {"method": "pre_normalize", "center": center}).coords
        assert out.shape == seq.coords.shape
        torso = out[0, :, J("torso")] if center == "per_frame" else out[0, :1, J("torso")]
        np.testing.assert_allclose(torso, 0.0, atol=1e-6)
        spine = out[0, 0, J("neck")] - out[0, 0, J("torso")]
        np.testing.assert_allclose(spine / np.linalg.norm(spine), [0, 0, 1], atol=1e-5)
        shoulders = out[0, 0, J("left_shoulder")] - out[0, 0, J("right_shoulder")]
        assert shoulders[0] > 0 and abs(shoulders[1]) < 1e-5
        # a rigid motion: distances inside a frame, across the two persons, are kept
        d_before = np.linalg.norm(before[0, :, J("right_hand")] - before[1, :, J("head")], axis=-1)
        d_after = np.linalg.norm(out[0, :, J("right_hand")] - out[1, :, J("head")], axis=-1)
        np.testing.assert_allclose(d_after, d_before, atol=1e-5)
    scaled = normalize_sequence(seq, {"method": "pre_normalize", "scale": "spine"}).coords
    torso = np.linalg.norm(scaled[0, :, J("neck")] - scaled[0, :, J("torso")], axis=-1)
    assert abs(np.median(torso) - 1.0) < 1e-5


def test_streams_on_two_persons(folder):
    seq = read_sbu_file(folder / "s03s04/06/001/skeleton_pos.txt")
    streams = compute_streams(seq.coords, SBU15)
    assert set(streams) == {"joint", "bone", "motion_fast", "motion_slow"}
    assert all(v.shape == seq.coords.shape for v in streams.values())
    assert not streams["bone"][:, :, J("torso")].any()
    np.testing.assert_allclose(
        streams["bone"][1, :, J("head")], seq.coords[1, :, J("head")] - seq.coords[1, :, J("neck")], atol=1e-6
    )


# --- prepare_sbu ------------------------------------------------------------------------------------


def test_config_has_the_sbu_entries():
    catalog, parameters = load_config({"sbu_raw_dir": "/somewhere/sbu"})
    assert catalog["sbu_raw_files"]["path"] == "/somewhere/sbu"
    assert catalog["sbu_raw_files"]["patterns"] == ["skeleton_pos.txt"]
    params = parameters["prepare_sbu"]
    assert params["raw_dir"] == "/somewhere/sbu"
    assert params["smoothing"]["method"] in ("none", "moving_average", "gaussian")
    assert params["coordinates"] == "metres"
    assert load_config()[1]["prepare_sbu"]["raw_dir"] == "data/01_raw/sbu"


def test_prepare_sbu_on_an_empty_folder_names_it(tmp_path):
    raw = tmp_path / "empty_sbu"
    raw.mkdir()
    with pytest.raises(Exception, match="empty_sbu"):
        run_pipeline("prepare_sbu", tmp_path, {"sbu_raw_dir": str(raw)})


@pytest.mark.slow
def test_prepare_sbu_end_to_end(folder, tmp_path):
    run_pipeline("prepare_sbu", tmp_path, {"sbu_raw_dir": str(folder)})
    summary = json.loads((tmp_path / "data/08_reporting/sbu_preparation_summary.json").read_text())
    assert summary["inputs_seen"] == 282 == summary["samples"] + summary["quarantined"] + summary["excluded"]
    assert (summary["samples"], summary["quarantined"], summary["excluded"]) == (282, 0, 0)
    assert summary["fold_protocols"] == ["sbu_fold"] and summary["protocols"] == []
    assert summary["split_counts"]["sbu_fold"] == {str(k): v for k, v in FOLD_SEQUENCES.items()}
    features = PreparedBundle(tmp_path / "data/04_feature/sbu")
    assert features.summary["smoothing"] == {"method": "gaussian", "window": 5, "sigma": 1.0}
    table = features.table
    assert table.fold_protocols == ("sbu_fold",)
    meta = table.metadata()
    assert Counter(meta["split_sbu_fold"]) == FOLD_SEQUENCES
    assert (meta["layout"] == "sbu15").all() and (meta["num_bodies"] == 2).all()
    assert (meta["num_joints"] == 15).all() and meta["num_frames"].sum() == 6822
    assert [int((meta["label"] == k).sum()) for k in range(8)] == CLASS_COUNTS
    assert meta["performer_pair"].nunique() == 21 and meta["episode"].min() == 1
    for fold, size in FOLD_SEQUENCES.items():  # the trainer's view: fold k tests, the other four train
        split = protocol_splits(meta, "sbu_fold", 0.1, 0, val_group="performer_pair", fold=fold)
        assert len(split.test) == size and len(split.train) + len(split.val) == 282 - size
        test_pairs = set(meta.loc[meta["row"].isin(split.test), "performer_pair"])
        assert test_pairs == set(SBU_FOLDS[fold])
        assert not test_pairs & set(meta.loc[meta["row"].isin(split.val), "performer_pair"])
    row = int(meta.index[meta["sample_id"] == "s01s02_a07_e001"][0])
    sample = table.read_one(row, ("joint", "bone", "motion_fast", "motion_slow"))
    assert all(a.shape == (2, meta.at[row, "num_frames"], 15, 3) for a in sample.values())
    # first_frame centring: person 1's torso at the origin in frame 0 only
    np.testing.assert_allclose(sample["joint"][0, 0, J("torso")], 0.0, atol=1e-6)
    intermediate = PreparedBundle(tmp_path / "data/02_intermediate/sbu")
    inter_meta = intermediate.table.metadata()
    inter_row = int(inter_meta.index[inter_meta["sample_id"] == "s01s02_a07_e001"][0])  # feature rows are shuffled
    raw = intermediate.table.read_one(inter_row, ("joint",))["joint"]
    np.testing.assert_allclose(raw, read_sbu_file(folder / "s01s02/07/001/skeleton_pos.txt").coords)
    # the feature joint stream is the smoothed, then normalized, intermediate sample
    params = load_config()[1]["prepare_sbu"]
    seq = read_sbu_file(folder / "s01s02/07/001/skeleton_pos.txt")
    expected = normalize_sequence(seq.with_coords(smooth_joints(seq.coords, params["smoothing"])), params["normalize"])
    np.testing.assert_allclose(sample["joint"], expected.coords, atol=1e-6)
    unsmoothed = normalize_sequence(seq, params["normalize"]).coords
    assert np.abs(sample["joint"] - unsmoothed).max() > 1e-3


@pytest.mark.slow
def test_prepare_sbu_quarantines_bad_files_and_keeps_count(folder, tmp_path):
    raw = tmp_path / "raw"
    for path in sorted(folder.glob("s01s02/0[12]/*/skeleton_pos.txt")):
        target = raw / path.relative_to(folder)
        target.parent.mkdir(parents=True)
        target.symlink_to(path)
    good = (folder / "s01s02/01/001/skeleton_pos.txt").read_bytes()
    for rel, data in {
        "s05s02/03/001/skeleton_pos.txt": good[: good.index(b"\n") + 100],  # cut inside line 2
        "s05s02/03/002/skeleton_pos.txt": b"",
        "s09s08/03/001/skeleton_pos.txt": good,  # a pair in no fold: a sample with a null fold
    }.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(data)
    run_pipeline(
        "prepare_sbu",
        tmp_path,
        {"sbu_raw_dir": str(raw)},
        params={"prepare_sbu": {"workers": 1, "smoothing": {"method": "none"}}},
    )
    summary = json.loads((tmp_path / "data/08_reporting/sbu_preparation_summary.json").read_text())
    good_files = len(list(folder.glob("s01s02/0[12]/*/skeleton_pos.txt")))
    assert summary["inputs_seen"] == good_files + 3
    assert summary["inputs_seen"] == summary["samples"] + summary["quarantined"] + summary["excluded"]
    assert summary["reasons"] == {"quarantined:truncated": 1, "quarantined:empty_file": 1}
    assert summary["split_counts"]["sbu_fold"] == {"1": good_files, "none": 1}
    features = PreparedBundle(tmp_path / "data/04_feature/sbu")
    assert features.summary["smoothing"] == {"method": "none"}
