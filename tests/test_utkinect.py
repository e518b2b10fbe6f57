"""UTKinect-Action3D reader on all 20 real recordings in ../shared/data/utkinect_raw."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.layouts import KINECT20
from skeleton_attention.skeletons.utkinect import (
    UTKINECT_ACTIONS,
    read_utkinect,
    read_utkinect_file,
    read_utkinect_joints,
    read_utkinect_labels,
    utkinect_loso_split,
    utkinect_split,
)

HEAD, HIP_CENTER = KINECT20.index("head"), KINECT20.index("hip_center")
LEFT_FOOT, RIGHT_FOOT = KINECT20.index("left_foot"), KINECT20.index("right_foot")
LEFT_HAND, RIGHT_HAND = KINECT20.index("left_hand"), KINECT20.index("right_hand")


@pytest.fixture(scope="module")
def root(shared_data: Path) -> Path:
    return shared_data / "utkinect_raw"


@pytest.fixture(scope="module")
def samples(root):
    return read_utkinect(root)


@pytest.fixture(scope="module")
def joints_files(root):
    return sorted(root.glob("joints_s*_e*.txt"))


CHAINS = [
    ("hip_center", "spine", "shoulder_center", "head"),
    *[(f"{s}_shoulder", f"{s}_elbow", f"{s}_wrist", f"{s}_hand") for s in ("left", "right")],
    *[(f"{s}_hip", f"{s}_knee", f"{s}_ankle", f"{s}_foot") for s in ("left", "right")],
]


def assert_chains_ordered(x: np.ndarray, max_arm_spread: float) -> None:
    """Along each limb, the median distance from the limb's root grows joint by joint."""
    for chain in CHAINS:
        idx = [KINECT20.index(j) for j in chain]
        dist = [np.median(np.linalg.norm(x[:, j] - x[:, idx[0]], axis=-1)) for j in idx[1:]]
        assert dist == sorted(dist) and dist[0] > 0.05, (chain, dist)
    for side in ("left", "right"):  # upper and lower arm keep their length (a swap would not)
        for a, b in (("shoulder", "elbow"), ("elbow", "wrist")):
            length = np.linalg.norm(x[:, KINECT20.index(f"{side}_{a}")] - x[:, KINECT20.index(f"{side}_{b}")], axis=-1)
            assert length.std() / np.median(length) < max_arm_spread, (side, a, b)


def test_counts(samples, joints_files):
    assert len(joints_files) == 20
    assert len(samples) == 199  # 20 recordings x 10 actions, minus the NaN s10_e02 carry
    assert len({s.sample_id for s in samples}) == 199
    per_class = Counter(s.label_name for s in samples)
    assert per_class == {a: (19 if a == "carry" else 20) for a in UTKINECT_ACTIONS}
    per_subject = Counter(s.meta["subject"] for s in samples)
    assert per_subject == {s: (19 if s == 10 else 20) for s in range(1, 11)}
    assert "s10_e02_carry" not in {s.sample_id for s in samples}


def test_sample_fields(samples):
    first = samples[0]
    assert first.sample_id == "s01_e01_walk"
    assert (first.dataset, first.layout, first.label, first.label_name) == ("utkinect", "kinect20", 0, "walk")
    assert first.meta == {"subject": 1, "episode": 1, "start_frame": 252, "end_frame": 390}
    for s in samples:
        assert s.coords.dtype == np.float32 and s.coords.shape[0] == 1 and s.coords.shape[2:] == (20, 3)
        assert UTKINECT_ACTIONS[s.label] == s.label_name
        assert np.isfinite(s.coords).all()


def test_segment_lengths(samples):
    lengths = [s.num_frames for s in samples]
    assert (min(lengths), max(lengths), sum(lengths)) == (5, 174, 6222)
    longest = max(samples, key=lambda s: s.num_frames)
    # the official file's typo: push 2556-3622 in s03_e01 swallows throw/pull/waveHands/clapHands
    assert longest.sample_id == "s03_e01_push" and longest.meta["start_frame"] == 2556


def test_segments_are_frame_id_ranges(root, samples):
    for s in samples:
        ids, joints = read_utkinect_joints(Path(s.source_file))
        rows = (ids >= s.meta["start_frame"]) & (ids <= s.meta["end_frame"])
        np.testing.assert_array_equal(s.coords[0], joints[rows].astype(np.float32))


def test_duplicate_frame_ids(joints_files, root):
    repeats, triple, lines = 0, None, 0
    for path in joints_files:
        ids, joints = read_utkinect_joints(path)
        lines += ids.size
        assert (np.diff(ids) >= 0).all() and (ids % 2 == 0).all()  # ids are even and never go back
        dup = np.flatnonzero(np.diff(ids) == 0)
        repeats += dup.size
        assert all(not np.array_equal(joints[i], joints[i + 1]) for i in dup)  # distinct skeletons
        counts = Counter(ids.tolist())
        if max(counts.values()) == 3:
            triple = path.name
    assert (lines, repeats, triple) == (15860, 542, "joints_s10_e02.txt")
    first = read_utkinect(root, duplicate_frames="first")
    last = read_utkinect(root, duplicate_frames="last")
    assert sum(s.num_frames for s in first) == sum(s.num_frames for s in last) == 6053
    with pytest.raises(ValueError, match="duplicate_frames"):
        read_utkinect(root, duplicate_frames="mean")


def test_joint_order_head_above_feet_everywhere(joints_files):
    for path in joints_files:
        _, j = read_utkinect_joints(path)
        head_y, feet_y = j[:, HEAD, 1], np.maximum(j[:, LEFT_FOOT, 1], j[:, RIGHT_FOOT, 1])
        assert (head_y > feet_y).mean() >= 0.99, path.name
        assert np.median(head_y - j[:, HIP_CENTER, 1]) > 0.4, path.name
        assert np.isin(j[:, :, 1].argmin(axis=1), [14, 15, 18, 19]).mean() > 0.98, path.name  # ankles/feet


def test_limb_chains_in_order(samples):
    assert_chains_ordered(np.concatenate([s.coords[0] for s in samples]), max_arm_spread=0.2)


def test_left_right_bones_symmetric(samples):
    x = np.concatenate([s.coords[0] for s in samples])
    lengths = {
        KINECT20.joint_names[c]: np.median(np.linalg.norm(x[:, c] - x[:, p], axis=-1)) for c, p in KINECT20.bones
    }
    for name, value in lengths.items():
        if name.startswith("left_"):
            other = lengths["right_" + name[5:]]
            assert abs(value - other) / (value + other) < 0.03, name


def test_right_hand_does_one_arm_actions(samples):
    # throw/push/pull are one-arm; the subjects used their right hand (kinect20 index 11)
    for action in ("throw", "push", "pull"):
        seqs = [s for s in samples if s.label_name == action]
        right = [s.coords[0, :, RIGHT_HAND].std(0).sum() > s.coords[0, :, LEFT_HAND].std(0).sum() for s in seqs]
        assert np.mean(right) >= 0.9, action


def test_label_files_differ_only_in_seven_bounds(root):
    official = read_utkinect_labels(root / "actionLabel.txt")
    modified = read_utkinect_labels(root / "actionLabel_modified.txt")
    assert official.keys() == modified.keys() and len(official) == 20
    diffs = {}
    for key in official:
        for a, b in zip(official[key], modified[key], strict=True):
            assert a.action == b.action
            if (a.start, a.end) != (b.start, b.end):
                diffs[(key, a.action)] = ((a.start, a.end), (b.start, b.end))
    assert diffs == {
        ("s01_e02", "walk"): ((154, 192), (154, 270)),
        ("s03_e01", "push"): ((2556, 3622), (3556, 3622)),
        ("s07_e01", "pull"): ((3350, 3522), (3432, 3522)),
        ("s07_e02", "pull"): ((2496, 2618), (2530, 2618)),
        ("s09_e01", "push"): ((3266, 3390), (3266, 3300)),
        ("s10_e01", "carry"): ((1394, 1846), (1394, 1676)),
        ("s10_e02", "pull"): ((1982, 2062), (1994, 2062)),
    }
    nan = [(k, s.action) for k, segs in official.items() for s in segs if s.start is None]
    assert nan == [("s10_e02", "carry")]


def test_modified_labels(root):
    samples = read_utkinect(root, label_file="actionLabel_modified.txt")
    assert len(samples) == 199
    by_id = {s.sample_id: s for s in samples}
    assert by_id["s03_e01_push"].num_frames == 11
    assert max(s.num_frames for s in samples) == 114


def test_per_file_reader_matches(root, samples, tmp_path):
    label_file = root / "actionLabel.txt"
    per_file = [s for p in sorted(root.glob("joints_*.txt")) for s in read_utkinect_file(p, label_file=label_file)]
    assert [s.sample_id for s in per_file] == [s.sample_id for s in samples]
    assert all(np.array_equal(a.coords, b.coords) for a, b in zip(per_file, samples, strict=True))
    assert len(read_utkinect_file(root / "joints_s10_e02.txt", label_file=label_file)) == 9
    bad = tmp_path / "joints_s11_e01.txt"
    bad.write_text((root / "joints_s01_e01.txt").read_text())
    with pytest.raises(MalformedSkeletonFile) as err:
        read_utkinect_file(bad, label_file=label_file)
    assert err.value.reason == "missing_field" and str(bad) in str(err.value)
    renamed = tmp_path / "s01_e01.txt"
    renamed.write_text("1 2 3\n")
    with pytest.raises(MalformedSkeletonFile) as err:
        read_utkinect_file(renamed, label_file=label_file)
    assert err.value.reason == "bad_name"


def test_splits():
    assert [utkinect_split(s) for s in range(1, 11)] == ["train", "test"] * 5
    assert [utkinect_loso_split(s, 4) for s in (3, 4, 5)] == ["train", "test", "train"]
    for bad in (0, 11):
        with pytest.raises(ValueError):
            utkinect_split(bad)
        with pytest.raises(ValueError):
            utkinect_loso_split(1, bad)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def real_lines(root) -> list[str]:
    return (root / "joints_s01_e01.txt").read_text().splitlines()


def _joints(tmp_path: Path, lines: list[str], name: str = "joints_s01_e01.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _replace_field(line: str, index: int, value: str) -> str:
    fields = line.split()
    fields[index] = value
    return " ".join(fields)


@pytest.mark.parametrize(
    ("edit", "reason", "line"),
    [
        (lambda ls: [*ls[:3], " ".join(ls[3].split()[:-3]), *ls[4:]], "wrong_joint_count", 4),
        (lambda ls: [*ls[:3], ls[3] + " 0.5", *ls[4:]], "wrong_joint_count", 4),
        (lambda ls: [*ls[:5], _replace_field(ls[5], 7, "abc"), *ls[6:]], "non_numeric", 6),
        (lambda ls: [*ls[:5], _replace_field(ls[5], 7, "nan"), *ls[6:]], "non_finite", 6),
        (lambda ls: [*ls[:5], _replace_field(ls[5], 7, "-inf"), *ls[6:]], "non_finite", 6),
        (lambda ls: [*ls[:5], _replace_field(ls[5], 0, "200.5"), *ls[6:]], "non_numeric", 6),
        (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], "unordered_frames", 3),
        (lambda ls: [*ls[:5], "", *ls[5:]], "truncated", 6),
    ],
)
def test_bad_joints_file(tmp_path, real_lines, edit, reason, line):
    path = _joints(tmp_path, edit(list(real_lines)))
    with pytest.raises(MalformedSkeletonFile) as err:
        read_utkinect_joints(path)
    assert (err.value.reason, err.value.line) == (reason, line)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("content", "reason"), [(b"", "empty_file"), (b"\n\n", "empty_file"), (b"1 \x00 2", "binary_file")]
)
def test_unreadable_joints_file(tmp_path, content, reason):
    path = tmp_path / "joints_s01_e01.txt"
    path.write_bytes(content)
    with pytest.raises(MalformedSkeletonFile) as err:
        read_utkinect_joints(path)
    assert err.value.reason == reason and str(path) in str(err.value)


def test_crlf_joints_file_reads_the_same(tmp_path, root, real_lines):
    path = tmp_path / "crlf.txt"
    path.write_bytes(("\r\n".join(real_lines) + "\r\n").encode())
    ids, joints = read_utkinect_joints(path)
    ref_ids, ref_joints = read_utkinect_joints(root / "joints_s01_e01.txt")
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(joints, ref_joints)


@pytest.fixture(scope="module")
def real_labels(root) -> list[str]:
    return (root / "actionLabel.txt").read_text().splitlines()


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda ls: [ls[0], "jump: 252 390", *ls[2:]], "label_mismatch"),
        (lambda ls: [ls[0], "walk: 390 252", *ls[2:]], "label_mismatch"),
        (lambda ls: [ls[0], "walk: 252 x", *ls[2:]], "non_numeric"),
        (lambda ls: [ls[0], "walk: 252 NaN", *ls[2:]], "non_numeric"),
        (lambda ls: [ls[0], "walk: 252", *ls[2:]], "missing_field"),
        (lambda ls: [ls[0], "walk 252 390", *ls[2:]], "missing_field"),
        (lambda ls: [ls[0], *ls[2:]], "missing_field"),
        (lambda ls: [ls[0], ls[1], ls[1], *ls[2:]], "duplicate_sample"),
        (lambda ls: ls[1:], "missing_field"),
        (lambda ls: [*ls[:11], ls[0], *ls[1:]], "duplicate_sample"),
    ],
)
def test_bad_label_file(tmp_path, real_labels, edit, reason):
    path = tmp_path / "actionLabel.txt"
    path.write_text("\n".join(edit(list(real_labels))) + "\n")
    with pytest.raises(MalformedSkeletonFile) as err:
        read_utkinect_labels(path)
    assert err.value.reason == reason and str(path) in str(err.value)


def test_segment_without_frames_and_missing_file(tmp_path, root, real_lines):
    labels = tmp_path / "actionLabel.txt"
    block = (root / "actionLabel.txt").read_text().splitlines()[:11]
    block[1] = "walk: 191 193"  # ids 190 and 194 exist, nothing in between
    labels.write_text("\n".join(block) + "\n")
    path = _joints(tmp_path, real_lines)
    with pytest.raises(MalformedSkeletonFile) as err:
        read_utkinect(tmp_path)
    assert err.value.reason == "zero_frames" and str(path) in str(err.value)
    path.unlink()
    with pytest.raises(MalformedSkeletonFile) as err:
        read_utkinect(tmp_path)
    assert err.value.reason == "missing_field" and "joints_s01_e01.txt" in str(err.value)
