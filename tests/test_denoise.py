"""NTU multi-body denoising on the real files, and on real recordings with edited body tracks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from skeleton_attention.skeletons.denoise import body_motion, denoise_ntu, noisy_frames
from skeleton_attention.skeletons.ntu import NtuRecording, read_ntu_skeleton

GHOST = 72057594037931781  # the spurious second body of A024-A029 (about 2 m to the right, 0.45 m tall)
# action -> (kept body, number of noisy frames of the ghost)
GHOST_FILES = {
    24: (72057594037931768, 78),
    25: (72057594037931768, 106),
    26: (72057594037931768, 98),
    27: (72057594037931768, 87),
    28: (72057594037931817, 106),
    29: (72057594037931817, 131),
}


def _rec(ntu_raw: Path, action: int) -> NtuRecording:
    return read_ntu_skeleton(ntu_raw / f"S001C001P001R001A{action:03d}.skeleton")


def _subset(rec: NtuRecording, keep: np.ndarray) -> NtuRecording:
    """The recording with only the records in boolean mask ``keep``."""
    frames = rec.body_frame[keep]
    return replace(
        rec,
        body_frame=frames,
        body_ids=rec.body_ids[keep],
        body_info=rec.body_info[keep],
        joints=rec.joints[keep],
        joint_tracking=rec.joint_tracking[keep],
        bodies_per_frame=np.bincount(frames, minlength=rec.num_frames).astype(np.int16),
    )


def _with_ids(rec: NtuRecording, ids: np.ndarray) -> NtuRecording:
    return replace(rec, body_ids=np.asarray(ids, dtype=np.uint64))


@pytest.mark.parametrize("action", sorted(GHOST_FILES))
def test_spurious_second_body_is_removed_by_the_spread_rule(ntu_raw: Path, action: int) -> None:
    rec = _rec(ntu_raw, action)
    assert (rec.bodies_per_frame == 2).all() and GHOST in rec.unique_body_ids()
    kept, ghost_noisy = GHOST_FILES[action]
    seq, report = denoise_ntu(rec)
    assert seq is not None
    assert seq.num_bodies == 1 and seq.num_frames == rec.num_frames
    assert report["dropped_length"] == []
    assert [d["body_id"] for d in report["dropped_spread"]] == [str(GHOST)]
    ghost_entry = next(e for e in report["spread"] if e["body_id"] == str(GHOST))
    assert ghost_entry["noisy_frames"] == ghost_noisy
    assert ghost_entry["noisy_ratio"] == pytest.approx(ghost_noisy / rec.num_frames)
    assert report["actors"] == [[str(kept)]]
    assert report["frames_removed"] == [] and report["expected_actors"] == 1
    _, xyz = rec.body_track(kept)
    assert np.array_equal(seq.coords[0], xyz)


@pytest.mark.parametrize("action", range(50, 61))
def test_two_person_interactions_keep_two_actors(ntu_raw: Path, action: int) -> None:
    rec = _rec(ntu_raw, action)
    seq, report = denoise_ntu(rec)
    assert seq is not None
    assert seq.coords.shape == (2, rec.num_frames, 25, 3) and seq.coords.dtype == np.float32
    assert report["expected_actors"] == 2 and report["num_actors"] == 2
    assert report["dropped_spread"] == [] and report["unassigned"] == []
    first, second = (int(a[0]) for a in report["actors"])
    assert {first, second} == set(rec.unique_body_ids())
    motions = {int(m["body_id"]): m["motion"] for m in report["motion_order"]}
    assert motions[first] >= motions[second]
    assert np.array_equal(seq.coords[0], rec.body_track(first)[1])
    assert np.array_equal(seq.coords[1], rec.body_track(second)[1])
    assert seq.label == action - 1 and seq.dataset == "ntu60"


def test_single_body_files_pass_through(ntu_raw: Path) -> None:
    for action in (1, 5, 16, 23, 30, 49):
        rec = _rec(ntu_raw, action)
        seq, report = denoise_ntu(rec)
        assert seq is not None and seq.coords.shape == (1, rec.num_frames, 25, 3)
        assert np.array_equal(seq.coords[0], rec.joints[:, :, :3])
        assert report["spread"] == [] and report["dropped_length"] == []
        assert seq.layout == "ntu25" and seq.label == action - 1
        assert seq.meta == {
            "setup": 1,
            "camera": 1,
            "performer": 1,
            "replication": 1,
            "action": action,
            "view_group": f"S001P001R001A{action:03d}",
        }
        assert seq.source_file == rec.path and seq.sample_id == rec.sample_id


def test_multiview_recordings(shared_data: Path) -> None:
    for path in sorted((shared_data / "ntu_multiview").glob("*.skeleton")):
        rec = read_ntu_skeleton(path)
        seq, _ = denoise_ntu(rec)
        assert seq is not None
        assert seq.num_bodies == (2 if rec.name.action == 50 else 1)
        assert seq.num_frames == rec.num_frames


def test_id_switch_is_stitched_into_one_actor(ntu_raw: Path) -> None:
    rec = _rec(ntu_raw, 1)
    ids = rec.body_ids.copy()
    ids[30:60] = 99  # a re-identified body in the middle; frames 0-29 and 60-102 keep the ID
    seq, report = denoise_ntu(_with_ids(rec, ids))
    assert seq is not None and seq.num_bodies == 1
    assert np.array_equal(seq.coords[0], rec.joints[:, :, :3])
    assert sorted(report["actors"][0]) == sorted([str(int(rec.body_ids[0])), "99"])


def test_short_track_dropped_by_length(ntu_raw: Path) -> None:
    rec = _rec(ntu_raw, 50)
    second = rec.body_ids == rec.body_ids[1]
    keep = ~second | (rec.body_frame < 11)  # the second body only in frames 0-10 (11 frames)
    seq, report = denoise_ntu(_subset(rec, keep))
    assert report["dropped_length"] == [{"body_id": str(int(rec.body_ids[1])), "frames": 11}]
    assert seq is not None and seq.num_bodies == 1 and seq.num_frames == 74
    seq12, report12 = denoise_ntu(_subset(rec, ~second | (rec.body_frame < 12)))
    assert report12["dropped_length"] == [] and seq12 is not None and seq12.num_bodies == 2
    seq_strict, _ = denoise_ntu(_subset(rec, ~second | (rec.body_frame < 12)), min_frames=12)
    assert seq_strict is not None and seq_strict.num_bodies == 1


def test_frames_without_bodies_are_removed(ntu_raw: Path) -> None:
    rec = _rec(ntu_raw, 1)
    holed = _subset(rec, (rec.body_frame < 20) | (rec.body_frame >= 30))
    assert (holed.bodies_per_frame[20:30] == 0).all()
    seq, report = denoise_ntu(holed)
    assert seq is not None and seq.num_frames == 93
    assert report["frames_removed"] == list(range(20, 30))
    assert report["frames_without_bodies"] == 10
    assert np.array_equal(seq.coords[0, 20], rec.joints[30, :, :3])


def test_nothing_survives(ntu_raw: Path) -> None:
    rec = _rec(ntu_raw, 50)
    seq, report = denoise_ntu(_subset(rec, rec.body_frame < 11))
    assert seq is None
    assert "11 frames" in report["reason"]
    assert len(report["dropped_length"]) == 2


def test_lone_short_track_is_kept(ntu_raw: Path) -> None:
    rec = _rec(ntu_raw, 1)
    seq, report = denoise_ntu(_subset(rec, rec.body_frame < 5))
    assert seq is not None and seq.coords.shape == (1, 5, 25, 3)
    assert report["dropped_length"] == []


def test_repeated_id_in_one_frame_is_a_separate_track(ntu_raw: Path) -> None:
    rec = _rec(ntu_raw, 1)
    dup = np.r_[np.arange(41), 40, np.arange(41, rec.num_records)]  # record of frame 40 twice
    twice = replace(
        rec,
        body_frame=rec.body_frame[dup],
        body_ids=rec.body_ids[dup],
        body_info=rec.body_info[dup],
        joints=rec.joints[dup],
        joint_tracking=rec.joint_tracking[dup],
        bodies_per_frame=np.bincount(rec.body_frame[dup]).astype(np.int16),
    )
    seq, report = denoise_ntu(twice)
    assert report["repeated_id_records"] == 1
    assert report["dropped_length"] == [{"body_id": f"{int(rec.body_ids[0])}#1", "frames": 1}]
    assert seq is not None and np.array_equal(seq.coords[0], rec.joints[:, :, :3])


def test_track_overlapping_both_actors_is_unassigned(ntu_raw: Path) -> None:
    rec = _rec(ntu_raw, 50)
    first = rec.body_frame < 40
    extra = np.flatnonzero(first & (rec.body_ids == rec.body_ids[0]))
    order = np.r_[np.arange(rec.num_records), extra]
    ids = np.r_[rec.body_ids, np.full(extra.size, 7, dtype=np.uint64)]
    frames = rec.body_frame[order]
    sort = np.argsort(frames, kind="stable")
    three = replace(
        rec,
        body_frame=frames[sort],
        body_ids=ids[sort],
        body_info=rec.body_info[order][sort],
        joints=rec.joints[order][sort],
        joint_tracking=rec.joint_tracking[order][sort],
        bodies_per_frame=np.bincount(frames, minlength=rec.num_frames).astype(np.int16),
    )
    seq, report = denoise_ntu(three)
    assert seq is not None and seq.num_bodies == 2 and seq.num_frames == 74
    assert len(report["unassigned"]) == 1
    assert len(report["bodies_found"]) == 3


def test_max_actors_one(ntu_raw: Path) -> None:
    rec = _rec(ntu_raw, 50)
    seq, report = denoise_ntu(rec, max_actors=1)
    assert seq is not None and seq.num_bodies == 1
    assert report["unassigned"] == [report["motion_order"][1]["body_id"]]
    with pytest.raises(ValueError):
        denoise_ntu(rec, max_actors=0)


def test_motion_definitions(ntu_raw: Path) -> None:
    rec = _rec(ntu_raw, 50)
    _, xyz = rec.body_track(int(rec.body_ids[0]))
    xyz = xyz.astype(np.float64)
    assert body_motion(xyz) == pytest.approx(np.var(xyz.reshape(-1, 3), axis=0).sum())
    assert body_motion(xyz, "per_joint") == pytest.approx(np.var(xyz, axis=0).sum())
    assert body_motion(xyz, "per_joint") < body_motion(xyz)
    with pytest.raises(ValueError):
        body_motion(xyz, "energy")
    seq, _ = denoise_ntu(rec, motion="per_joint")
    assert seq is not None and seq.num_bodies == 2


def test_noisy_frame_rule() -> None:
    wide = np.zeros((1, 25, 3))
    wide[0, :, 0] = np.linspace(0, 1.0, 25)
    wide[0, :, 1] = np.linspace(0, 1.2, 25)
    assert noisy_frames(wide, 0.8).tolist() == [True]  # 1.0 > 0.8 * 1.2
    assert noisy_frames(wide, 0.9).tolist() == [False]  # 1.0 <= 1.08
