"""MSR Action3D reader on all 567 real files in ../shared/data/msr_action3d_raw."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.layouts import KINECT20
from skeleton_attention.skeletons.msr import (
    KINECT20_FROM_MSR,
    MSR_ACTION_SETS,
    MSR_ACTIONS,
    MSR_TO_KINECT20,
    load_msr_subset,
    msr_action_set,
    msr_split,
    parse_msr_name,
    read_msr_file,
    read_msr_joints,
)

J = KINECT20.index
EMPTY_FILE = "a13_s09_e02"  # 38 frames, every joint (0, 0, 0)
# files with all-zero frames (measured): name -> (frames, all-zero frames)
ZERO_FRAMES = {
    "a07_s04_e01": (45, 36),
    "a13_s02_e02": (30, 12),
    "a13_s02_e03": (66, 12),
    "a13_s06_e01": (36, 15),
    "a13_s06_e02": (31, 14),
    "a13_s06_e03": (37, 9),
    "a13_s08_e02": (57, 18),
    "a13_s09_e01": (39, 12),
    "a13_s09_e03": (936, 740),
    "a13_s10_e02": (31, 10),
    "a14_s03_e01": (38, 9),
    "a20_s02_e01": (56, 32),
    "a20_s02_e02": (50, 29),
    "a20_s02_e03": (53, 33),
    "a20_s06_e01": (54, 33),
    "a20_s07_e01": (71, 19),
    "a20_s07_e03": (56, 7),
    "a20_s08_e02": (54, 19),
    "a20_s08_e03": (60, 16),
}
NOT_IN_SUBSET = {
    "a02_s03_e02",
    "a04_s03_e01",
    "a07_s04_e01",
    "a13_s09_e01",
    "a13_s09_e02",
    "a13_s09_e03",
    "a14_s03_e01",
    "a20_s07_e01",
    "a20_s07_e03",
    "a20_s10_e03",
}


@pytest.fixture(scope="module")
def folder(shared_data: Path) -> Path:
    return shared_data / "msr_action3d_raw"


@pytest.fixture(scope="module")
def files(folder) -> list[Path]:
    return sorted(folder.glob("*_skeleton3D.txt"))


@pytest.fixture(scope="module")
def samples(files):
    return {p.name[:11]: read_msr_file(p) for p in files if not p.name.startswith(EMPTY_FILE)}


def _valid(coords: np.ndarray) -> np.ndarray:
    """(T, 20, 3) frames that are not all-zero."""
    x = coords[0, :, :, :3]
    return x[x.any(axis=(1, 2))]


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


def test_every_file_parses(files, samples, folder):
    assert len(files) == 567
    assert len(samples) == 566
    with pytest.raises(MalformedSkeletonFile) as err:
        read_msr_file(folder / f"{EMPTY_FILE}_skeleton3D.txt")
    assert err.value.reason == "zero_frames" and EMPTY_FILE in str(err.value)
    frames = [s.num_frames for s in samples.values()]
    assert (min(frames), max(frames), sum(frames)) == (13, 936, 23440)
    assert sum(len(read_msr_joints(p)) for p in files) == 23478  # 23440 + the empty file's 38


def test_labels_and_meta(samples):
    counts = Counter(s.label for s in samples.values())
    assert sorted(counts) == list(range(20))
    assert counts[12] == 29  # bend: 30 files minus the empty one
    s = samples["a20_s10_e03"]
    assert (s.label, s.label_name, s.meta) == (
        19,
        "pick up & throw",
        {"action": 20, "subject": 10, "episode": 3},
    )
    assert (s.sample_id, s.dataset, s.layout) == ("a20_s10_e03", "msr_action3d", "kinect20")
    for name, seq in samples.items():
        action, subject, episode = parse_msr_name(name)
        assert seq.label == action - 1 and seq.label_name == MSR_ACTIONS[action - 1]
        assert seq.meta == {"action": action, "subject": subject, "episode": episode}
        assert seq.coords.shape[0] == 1 and seq.coords.shape[2:] == (20, 3)
        assert seq.coords.dtype == np.float32


def test_zero_frames_kept_as_zeros(samples, files):
    found = {}
    for name, seq in samples.items():
        x = seq.coords[0]
        empty = ~x.any(axis=(1, 2))
        partial = (x == 0).all(axis=2).any(axis=1) & ~empty
        assert not partial.any(), name  # a joint is never zero on its own
        if empty.any():
            found[name] = (seq.num_frames, int(empty.sum()))
    assert found == ZERO_FRAMES


def test_permutation_is_the_kinect_order(folder):
    assert sorted(MSR_TO_KINECT20) == list(range(20))
    assert [MSR_TO_KINECT20[i] for i in KINECT20_FROM_MSR] == list(range(20))
    raw = read_msr_joints(folder / "a01_s01_e01_skeleton3D.txt")
    seq = read_msr_file(folder / "a01_s01_e01_skeleton3D.txt")
    np.testing.assert_array_equal(seq.coords[0, :, J("head")], raw[:, 19, :3].astype(np.float32))
    np.testing.assert_array_equal(seq.coords[0, :, J("hip_center")], raw[:, 6, :3].astype(np.float32))
    np.testing.assert_array_equal(seq.coords[0, :, J("left_shoulder")], raw[:, 0, :3].astype(np.float32))


def test_head_above_feet_in_every_file(samples):
    for name, seq in samples.items():
        x = _valid(seq.coords)
        feet = np.maximum(x[:, J("left_foot"), 1], x[:, J("right_foot"), 1])
        assert (x[:, J("head"), 1] > feet).mean() >= 0.9, name
        assert np.median(x[:, J("head"), 1] - x[:, J("hip_center"), 1]) > 0.25, name  # min: bend, 0.29


def test_head_top_and_feet_bottom_overall(samples):
    x = np.concatenate([_valid(s.coords) for s in samples.values()])
    assert (x[:, :, 1].argmax(axis=1) == J("head")).mean() > 0.8  # hands go above it in arm actions
    lowest = [J("left_ankle"), J("right_ankle"), J("left_foot"), J("right_foot")]
    assert np.isin(x[:, :, 1].argmin(axis=1), lowest).mean() > 0.99


def test_limb_chains_in_order(samples):
    assert_chains_ordered(np.concatenate([_valid(s.coords) for s in samples.values()]), max_arm_spread=0.1)


def test_left_right_bones_symmetric_and_stable(samples):
    x = np.concatenate([_valid(s.coords) for s in samples.values()])
    stats = {}
    for c, p in KINECT20.bones:
        length = np.linalg.norm(x[:, c] - x[:, p], axis=-1)
        stats[KINECT20.joint_names[c]] = (np.median(length), length.std() / np.median(length))
    for name, (median, spread) in stats.items():
        assert spread < 0.2, name  # a wrong pairing would give a bone of varying length
        if name.startswith("left_"):
            other = stats["right_" + name[5:]][0]
            assert abs(median - other) / (median + other) < 0.02, name


def test_right_limb_performs_one_limb_actions(samples):
    # Li et al. asked subjects to use the right arm or leg for one-limb actions
    def moves_more(seq, right, left):
        x = _valid(seq.coords)
        return x[:, right].std(0).sum() > x[:, left].std(0).sum()

    for action in (1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 18):
        seqs = [s for s in samples.values() if s.meta["action"] == action]
        assert np.mean([moves_more(s, J("right_hand"), J("left_hand")) for s in seqs]) >= 0.9, action
    for action in (14, 15):
        seqs = [s for s in samples.values() if s.meta["action"] == action]
        assert np.mean([moves_more(s, J("right_foot"), J("left_foot")) for s in seqs]) >= 0.9, action


def test_axes_and_units(samples):
    x = np.concatenate([_valid(s.coords) for s in samples.values()])
    height = np.median(x[:, J("head"), 1] - x[:, [J("left_foot"), J("right_foot")], 1].mean(axis=1))
    assert 1.4 < height < 1.8  # metres, y up
    assert 2.0 < np.median(x[:, J("spine"), 2]) < 3.5  # z: distance from the sensor
    # x grows towards the subject's right (right shoulder has the larger x)
    assert (x[:, J("right_shoulder"), 0] > x[:, J("left_shoulder"), 0]).mean() > 0.95


def test_confidence_channel(folder):
    seq = read_msr_file(folder / "a01_s01_e01_skeleton3D.txt", with_confidence=True)
    assert seq.coords.shape[-1] == 4
    conf = seq.coords[..., 3]
    assert conf.min() >= 0 and conf.max() <= 1 and (conf == 0).any()


def test_subset(folder, files):
    subset = load_msr_subset(folder / "files_used_in_cvpr12_paper.txt")
    names = {p.name[:11] for p in files}
    assert len(subset) == 557 and subset <= names
    assert names - subset == NOT_IN_SUBSET
    assert EMPTY_FILE not in subset


def test_splits_and_action_sets(samples):
    assert [msr_split(s) for s in range(1, 11)] == ["train", "test"] * 5
    with pytest.raises(ValueError):
        msr_split(11)
    split = Counter(msr_split(s.meta["subject"]) for s in samples.values())
    assert split == {"train": 291, "test": 275}
    assert all(len(v) == 8 for v in MSR_ACTION_SETS.values())
    assert set().union(*MSR_ACTION_SETS.values()) == set(range(1, 21))
    assert msr_action_set(6) == ("AS1", "AS3") and msr_action_set(1) == ("AS2",)
    with pytest.raises(ValueError):
        msr_action_set(21)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def real_lines(folder) -> list[str]:
    return (folder / "a01_s01_e01_skeleton3D.txt").read_text().splitlines()


def _write(tmp_path: Path, lines: list[str], name: str = "a01_s01_e01_skeleton3D.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("edit", "reason", "line"),
    [
        (lambda ls: ls[:-1], "truncated", None),
        (lambda ls: [*ls, ls[0]], "truncated", None),
        (lambda ls: [*ls[:4], " ".join(ls[4].split()[:3]), *ls[5:]], "truncated", 5),
        (lambda ls: [*ls[:4], ls[4] + " 7", *ls[5:]], "trailing_data", 5),
        (lambda ls: [*ls[:4], "0.1 abc 2.6 1.0", *ls[5:]], "non_numeric", 5),
        (lambda ls: [*ls[:4], "0.1 nan 2.6 1.0", *ls[5:]], "non_finite", 5),
        (lambda ls: [*ls[:4], "0.1 0.2 inf 1.0", *ls[5:]], "non_finite", 5),
        (lambda ls: [*ls[:4], "", *ls[5:]], "truncated", 5),
        (lambda ls: ["0.0 0.0 0.0 0.0"] * 40, "zero_frames", None),
    ],
)
def test_bad_file(tmp_path, real_lines, edit, reason, line):
    path = _write(tmp_path, edit(list(real_lines)))
    with pytest.raises(MalformedSkeletonFile) as err:
        read_msr_file(path)
    assert err.value.reason == reason
    if line is not None:
        assert err.value.line == line
    assert str(path) in str(err.value)


def test_truncated_message_counts_lines(tmp_path, real_lines):
    path = _write(tmp_path, real_lines[:-7])
    with pytest.raises(MalformedSkeletonFile, match="not a multiple of 20") as err:
        read_msr_file(path)
    assert err.value.line == len(real_lines) - 7


@pytest.mark.parametrize(
    ("content", "reason"), [(b"", "empty_file"), (b" \n", "empty_file"), (b"\x00\x00", "binary_file")]
)
def test_unreadable_file(tmp_path, content, reason):
    path = tmp_path / "a01_s01_e01_skeleton3D.txt"
    path.write_bytes(content)
    with pytest.raises(MalformedSkeletonFile) as err:
        read_msr_file(path)
    assert err.value.reason == reason and str(path) in str(err.value)


@pytest.mark.parametrize(
    "name", ["a21_s01_e01_skeleton3D.txt", "a01_s11_e01_skeleton3D.txt", "a01_s01_skeleton3D.txt", "x.txt"]
)
def test_bad_name(tmp_path, real_lines, name):
    path = _write(tmp_path, real_lines, name)
    with pytest.raises(MalformedSkeletonFile) as err:
        read_msr_file(path)
    assert err.value.reason == "bad_name" and str(path) in str(err.value)


def test_crlf_reads_the_same(tmp_path, real_lines, folder):
    path = tmp_path / "a01_s01_e01_skeleton3D.txt"
    path.write_bytes(("\r\n".join(real_lines) + "\r\n").encode())
    ref = read_msr_file(folder / "a01_s01_e01_skeleton3D.txt")
    np.testing.assert_array_equal(read_msr_file(path).coords, ref.coords)


def test_bad_subset_file(tmp_path):
    path = tmp_path / "subset.txt"
    path.write_text("a01_s01_e01\na01_s01_e02\na01_s01_e01\n")
    with pytest.raises(MalformedSkeletonFile) as err:
        load_msr_subset(path)
    assert (err.value.reason, err.value.line) == ("duplicate_sample", 3)
    path.write_text("a01_s01_e01\na01-s01-e02\n")
    with pytest.raises(MalformedSkeletonFile) as err:
        load_msr_subset(path)
    assert (err.value.reason, err.value.line) == ("bad_name", 2) and str(path) in str(err.value)
