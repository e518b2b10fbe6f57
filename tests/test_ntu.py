"""The NTU .skeleton reader, names, missing lists and splits, against the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.ntu import (
    NTU60_XSUB_TRAIN_PERFORMERS,
    NTU120_XSUB_TRAIN_PERFORMERS,
    NTU_ACTION_NAMES,
    NTU_MUTUAL_ACTIONS,
    NtuName,
    load_missing_skeleton_list,
    ntu_dataset_of,
    ntu_splits,
    parse_ntu_name,
    read_ntu_skeleton,
    view_group,
)

# Frame counts of ntu_raw/S001C001P001R001A001..A060, taken with `head -1` (not with this reader).
FRAMES = [
    103,
    158,
    104,
    99,
    54,
    75,
    86,
    71,
    67,
    69,
    82,
    102,
    63,
    161,
    177,
    205,
    134,
    96,
    76,
    111,
    78,
    109,
    67,
    78,
    106,
    103,
    87,
    108,
    131,
    85,
    84,
    100,
    94,
    91,
    78,
    92,
    109,
    104,
    84,
    76,
    109,
    195,
    85,
    96,
    82,
    126,
    93,
    96,
    85,
    74,
    72,
    74,
    133,
    69,
    95,
    115,
    93,
    71,
    99,
    93,
]
TWO_BODY_ACTIONS = set(range(24, 30)) | set(range(50, 61))


def _reference_read(path: Path) -> dict[str, list]:
    """A deliberately naive line-by-line reader used as the oracle for the fast reader."""
    lines = path.read_text().splitlines()
    pos = 1
    out: dict[str, list] = {"bodies": [], "ids": [], "info": [], "joints": []}
    for _ in range(int(lines[0])):
        count = int(lines[pos])
        out["bodies"].append(count)
        pos += 1
        for _ in range(count):
            fields = lines[pos].split()
            out["ids"].append(int(fields[0]))
            out["info"].append([float(v) for v in fields[1:]])
            assert int(lines[pos + 1]) == 25
            out["joints"].append([[float(v) for v in lines[pos + 2 + j].split()] for j in range(25)])
            pos += 27
    assert pos == len(lines)
    return out


@pytest.fixture(scope="module")
def ntu_files(ntu_raw: Path) -> list[Path]:
    files = sorted(ntu_raw.glob("*.skeleton"))
    assert len(files) == 60
    return files


def test_all_sixty_files_frames_and_bodies(ntu_files: list[Path]) -> None:
    for action, path in enumerate(ntu_files, start=1):
        rec = read_ntu_skeleton(path)
        assert rec.sample_id == f"S001C001P001R001A{action:03d}"
        assert rec.name == NtuName(1, 1, 1, 1, action)
        assert rec.num_frames == FRAMES[action - 1]
        expected_bodies = 2 if action in TWO_BODY_ACTIONS else 1
        assert rec.bodies_per_frame.dtype == np.int16
        assert (rec.bodies_per_frame == expected_bodies).all()
        num_records = expected_bodies * rec.num_frames
        assert rec.body_ids.dtype == np.uint64 and rec.body_ids.shape == (num_records,)
        assert rec.body_frame.dtype == np.int32
        assert np.array_equal(rec.body_frame, np.repeat(np.arange(rec.num_frames), expected_bodies))
        assert rec.body_info.shape == (num_records, 9) and rec.body_info.dtype == np.float32
        assert rec.joints.shape == (num_records, 25, 11) and rec.joints.dtype == np.float32
        assert rec.joint_tracking.shape == (num_records, 25) and rec.joint_tracking.dtype == np.int8
        assert set(np.unique(rec.joint_tracking)) <= {0, 1, 2}
        assert len(rec.unique_body_ids()) == expected_bodies


def test_fast_reader_equals_naive_reader_on_every_file(ntu_files: list[Path]) -> None:
    for path in ntu_files:
        rec = read_ntu_skeleton(path)
        ref = _reference_read(path)
        assert rec.bodies_per_frame.tolist() == ref["bodies"]
        assert [int(v) for v in rec.body_ids] == ref["ids"]
        assert np.array_equal(rec.body_info, np.asarray(ref["info"], dtype=np.float32))
        joints = np.asarray(ref["joints"], dtype=np.float64)
        assert np.array_equal(rec.joints, joints[:, :, :11].astype(np.float32))
        assert np.array_equal(rec.joint_tracking, joints[:, :, 11].astype(np.int8))


def test_exact_values_read_from_the_text(ntu_raw: Path) -> None:
    # S001C001P001R001A024 lines 3-5: first body's info line and first two joint lines.
    rec = read_ntu_skeleton(ntu_raw / "S001C001P001R001A024.skeleton")
    assert int(rec.body_ids[0]) == 72057594037931768
    assert int(rec.body_ids[1]) == 72057594037931781
    assert rec.body_info[0].tolist() == pytest.approx([0, 1, 1, 0, 0, 0, 0.03753794, -0.0193784, 2])
    np.testing.assert_array_equal(
        rec.joints[0, 0],
        np.array(
            [
                0.2868106,
                0.1681394,
                3.734849,
                284.4378,
                192.0282,
                1056.696,
                519.8274,
                -0.180732,
                0.0336758,
                0.969856,
                -0.1599412,
            ],
            dtype=np.float32,
        ),
    )
    assert rec.joint_tracking[0, 7] == 1 and rec.joint_tracking[0, 0] == 2
    # A003 has one body per frame, 28 lines per frame after line 1: line 1831 is frame 65
    # (0-based), joint 6, and holds "-9.276937E-05" as orientation y; line 2280 is frame 81,
    # joint 7, x = -9.404495E-05 with tracking state 1.
    rec = read_ntu_skeleton(ntu_raw / "S001C001P001R001A003.skeleton")
    assert rec.joints[65, 6, 9] == np.float32(-9.276937e-05)
    assert rec.joints[65, 6, 0] == np.float32(0.0024016)
    assert rec.joints[81, 7, 0] == np.float32(-9.404495e-05)
    assert rec.joint_tracking[81, 7] == 1
    # The last three joint lines of A060 (frame 92, second body, joints 22-24).
    rec = read_ntu_skeleton(ntu_raw / "S001C001P001R001A060.skeleton")
    assert int(rec.body_ids[-1]) == 72057594037932220
    assert rec.joints[-1, 24, :3].tolist() == pytest.approx([-1.588914, 0.01302583, 3.6385])
    assert rec.joints[-1, 22, 5] == np.float32(511.8272)


def test_body_ids_are_exact_beyond_float64(ntu_raw: Path) -> None:
    rec = read_ntu_skeleton(ntu_raw / "S001C001P001R001A050.skeleton")
    ids = rec.unique_body_ids()
    assert ids == [72057594037932185, 72057594037932127]
    # float64 would merge neighbouring IDs: the exact uint64 must not.
    assert float(72057594037932185) == float(72057594037932184)
    assert np.uint64(72057594037932185) != np.uint64(72057594037932184)
    frames, xyz = rec.body_track(72057594037932127)
    assert frames.tolist() == list(range(74))
    assert xyz.shape == (74, 25, 3)
    assert np.array_equal(xyz, rec.joints[1::2, :, :3])
    assert rec.body_track(72057594037932184)[0].size == 0


def test_large_file_parsed_in_several_arrow_blocks(ntu_raw: Path, tmp_path: Path) -> None:
    # 8 copies of A050's frames (592 frames x 2 bodies, about 3 MB): larger than one parse block.
    lines = (ntu_raw / "S001C001P001R001A050.skeleton").read_text().splitlines()
    path = tmp_path / "S001C001P001R001A050.skeleton"
    path.write_text("\n".join([str(74 * 8)] + lines[1:] * 8) + "\n")
    assert path.stat().st_size > 2**21
    rec = read_ntu_skeleton(path)
    ref = _reference_read(path)
    assert rec.num_frames == 592 and rec.num_records == 1184
    joints = np.asarray(ref["joints"], dtype=np.float64)
    assert np.array_equal(rec.joints, joints[:, :, :11].astype(np.float32))
    assert np.array_equal(rec.body_info, np.asarray(ref["info"], dtype=np.float32))


def test_crlf_twins_give_identical_arrays(shared_data: Path) -> None:
    crlf_files = sorted((shared_data / "ntu_raw_crlf").glob("*.skeleton"))
    assert len(crlf_files) == 5
    for crlf_path in crlf_files:
        assert b"\r\n" in crlf_path.read_bytes()
        a = read_ntu_skeleton(crlf_path)
        b = read_ntu_skeleton(shared_data / "ntu_raw" / crlf_path.name)
        assert a.num_frames == b.num_frames
        for field in ("bodies_per_frame", "body_frame", "body_ids", "body_info", "joints", "joint_tracking"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize(
    ("name", "frames", "ids"),
    [
        ("S001C001P001R001A001", 103, [72057594037931101]),
        ("S001C002P001R001A001", 109, [72057594037930535]),
        ("S001C003P001R001A001", 109, [72057594037930544]),
        ("S001C001P001R001A050", 74, [72057594037932185, 72057594037932127]),
        ("S001C002P001R001A050", 75, [72057594037931337, 72057594037931332]),
        ("S001C003P001R001A050", 75, [72057594037931766, 72057594037931762]),
    ],
)
def test_multiview_files(shared_data: Path, name: str, frames: int, ids: list[int]) -> None:
    rec = read_ntu_skeleton(shared_data / "ntu_multiview" / f"{name}.skeleton")
    assert rec.num_frames == frames
    assert rec.unique_body_ids() == ids
    assert (rec.bodies_per_frame == len(ids)).all()
    assert rec.name.view_group == name[:4] + name[8:]


def test_multiview_camera1_equals_ntu_raw(shared_data: Path) -> None:
    for action in ("A001", "A050"):
        a = read_ntu_skeleton(shared_data / "ntu_multiview" / f"S001C001P001R001{action}.skeleton")
        b = read_ntu_skeleton(shared_data / "ntu_raw" / f"S001C001P001R001{action}.skeleton")
        assert np.array_equal(a.joints, b.joints) and np.array_equal(a.body_ids, b.body_ids)


def test_missing_skeleton_lists(shared_data: Path, tmp_path: Path) -> None:
    meta = shared_data / "ntu_meta"
    ntu60 = load_missing_skeleton_list(meta / "NTU_RGBD_samples_with_missing_skeletons.txt")
    ntu120 = load_missing_skeleton_list(meta / "NTU_RGBD120_samples_with_missing_skeletons.txt")
    assert len(ntu60) == 302
    assert len(ntu120) == 535
    assert "S001C002P005R002A008" in ntu60 and "S001C003P002R001A055" in ntu60
    assert ntu60 <= ntu120
    assert all(ntu_dataset_of(n) == "ntu120" for n in ntu120 - ntu60)
    assert not any(p.stem in ntu60 for p in (shared_data / "ntu_raw").glob("*.skeleton"))
    # Headerless copy with CRLF and blank lines (like st-gcn's copy) gives the same set.
    names = sorted(ntu60)
    variant = tmp_path / "missing.txt"
    variant.write_bytes(("\r\n".join(names[:100]) + "\r\n\r\n" + "\r\n".join(names[100:]) + "\r\n").encode())
    assert load_missing_skeleton_list(variant) == ntu60
    bad = tmp_path / "bad.txt"
    bad.write_text("header\n\nS001C002P005R002A008\nnot a name\n")
    with pytest.raises(MalformedSkeletonFile) as err:
        load_missing_skeleton_list(bad)
    assert err.value.reason == "bad_name" and err.value.line == 4


def test_name_override_for_renamed_files(ntu_raw: Path, tmp_path: Path) -> None:
    path = tmp_path / "renamed.skeleton"
    path.write_bytes((ntu_raw / "S001C001P001R001A007.skeleton").read_bytes())
    with pytest.raises(MalformedSkeletonFile) as err:
        read_ntu_skeleton(path)
    assert err.value.reason == "bad_name" and "renamed.skeleton" in str(err.value)
    rec = read_ntu_skeleton(path, name="S001C001P001R001A007")
    assert rec.sample_id == "S001C001P001R001A007" and rec.num_frames == 86


def test_parse_name_and_dataset() -> None:
    name = parse_ntu_name("/x/y/S017C003P040R002A060.skeleton")
    assert name == NtuName(17, 3, 40, 2, 60)
    assert name.sample_id == "S017C003P040R002A060"
    assert view_group(name) == "S017P040R002A060" == view_group("S017C001P040R002A060")
    assert ntu_dataset_of(name) == "ntu60"
    assert ntu_dataset_of("S017C003P040R002A061") == "ntu120"
    assert ntu_dataset_of("S018C001P040R002A001") == "ntu120"
    assert name.label == 59 and name.label_name == "walking apart from each other"
    for bad in (
        "S001C001P001R001A001x.skeleton",
        "C001P001R001A001",
        "S001C004P001R001A001",
        "S001C001P001R001A121",
        "S000C001P001R001A001",
        "S033C001P001R001A001",
        "",
    ):
        with pytest.raises(MalformedSkeletonFile) as err:
            parse_ntu_name(bad)
        assert err.value.reason == "bad_name"


def test_action_names_table() -> None:
    assert len(NTU_ACTION_NAMES) == 120 and len(set(NTU_ACTION_NAMES)) == 120
    assert NTU_ACTION_NAMES[0] == "drink water"
    assert NTU_ACTION_NAMES[24] == "put something inside pocket / take out something from pocket"
    assert NTU_ACTION_NAMES[49] == "punching/slapping other person"
    assert NTU_ACTION_NAMES[66] == "hush (quite)"  # sic, the official spelling
    assert NTU_ACTION_NAMES[118].startswith("support somebody with one's hand")
    assert NTU_ACTION_NAMES[60] == "put on headphone"
    assert NTU_ACTION_NAMES[119] == "finger-guessing game (playing rock-paper-scissors)"
    assert len(NTU_MUTUAL_ACTIONS) == 26


def test_split_tables() -> None:
    assert len(NTU60_XSUB_TRAIN_PERFORMERS) == 20
    assert len(NTU120_XSUB_TRAIN_PERFORMERS) == 53
    assert NTU60_XSUB_TRAIN_PERFORMERS < NTU120_XSUB_TRAIN_PERFORMERS


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # P001 trains in both cross-subject protocols; C001 tests in cross-view; S001 odd -> test.
        ("S001C001P001R001A001", ("train", "test", "train", "test")),
        ("S001C002P003R001A001", ("test", "train", "test", "test")),
        ("S002C003P038R002A060", ("train", "train", "train", "train")),
        ("S017C001P040R001A010", ("test", "test", "test", "test")),
        # NTU120-only samples: not part of the NTU60 benchmarks.
        ("S001C001P001R001A061", (None, None, "train", "test")),
        ("S018C002P045R001A001", (None, None, "train", "train")),
        ("S032C003P106R002A120", (None, None, "test", "train")),
        ("S031C001P103R001A120", (None, None, "train", "test")),
    ],
)
def test_splits(name: str, expected: tuple) -> None:
    splits = ntu_splits(name)
    assert list(splits) == ["ntu60_xsub", "ntu60_xview", "ntu120_xsub", "ntu120_xset"]
    assert tuple(splits.values()) == expected


def test_split_overrides() -> None:
    assert ntu_splits("S001C001P001R001A001", ntu60_xview_train_cameras={1})["ntu60_xview"] == "train"
    assert ntu_splits("S001C001P001R001A001", ntu120_xset_train_setups={1})["ntu120_xset"] == "train"
    assert ntu_splits("S001C001P001R001A001", ntu60_xsub_train_performers=())["ntu60_xsub"] == "test"
