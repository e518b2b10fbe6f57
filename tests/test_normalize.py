"""Pre-normalization: invariance to camera pose, missing data kept at zero, the 2-D rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skeleton_attention.skeletons.denoise import denoise_ntu
from skeleton_attention.skeletons.kinetics import read_kinetics_clip
from skeleton_attention.skeletons.layouts import NTU25, OPENPOSE18
from skeleton_attention.skeletons.normalize import (
    body_frame_rotation,
    fill_null_frames,
    joint_valid_mask,
    normalize_2d,
    normalize_sequence,
    pre_normalize,
)
from skeleton_attention.skeletons.ntu import read_ntu_skeleton
from skeleton_attention.skeletons.sequence import SkeletonSequence

TOL = 1e-4


def load_ntu(path: Path) -> np.ndarray:
    """A real NTU sample through the project's reader and denoiser: coords (M, T, 25, 3)."""
    sequence, report = denoise_ntu(read_ntu_skeleton(path))
    assert sequence is not None, report
    return sequence.coords


@pytest.fixture(scope="module")
def a001(ntu_raw: Path) -> np.ndarray:
    return load_ntu(ntu_raw / "S001C001P001R001A001.skeleton")


@pytest.fixture(scope="module")
def a050(ntu_raw: Path) -> np.ndarray:
    coords = load_ntu(ntu_raw / "S001C001P001R001A050.skeleton")
    assert coords.shape[0] == 2
    return coords


def rotation_from_quaternion(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def move(coords: np.ndarray, rot: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Rigidly move the present joints; missing ones stay exactly zero."""
    present = joint_valid_mask(coords)
    moved = coords.astype(np.float64) @ rot.T + shift
    return np.where(present[..., None], moved, 0.0).astype(np.float32)


quaternions = st.lists(st.floats(-1, 1), min_size=4, max_size=4).map(np.array).filter(lambda q: np.linalg.norm(q) > 0.2)
shifts = st.lists(st.floats(-5, 5), min_size=3, max_size=3).map(np.array)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=quaternions, shift=shifts, center=st.sampled_from(["per_frame", "first_frame"]))
def test_real_sample_is_invariant_to_camera_pose(a001, a050, q, shift, center):
    rot = rotation_from_quaternion(q)
    for coords in (a001, a050):
        expected = pre_normalize(coords, NTU25, center=center)
        got = pre_normalize(move(coords, rot, shift), NTU25, center=center)
        assert got.shape == coords.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=TOL)


def skeleton_like(seed: int, num_frames: int = 12) -> np.ndarray:
    """A random 2-body NTU25 sequence built along the tree: random bone lengths and directions,
    a torso with a clear spine and shoulder line, smooth random motion and a missing stretch."""
    rng = np.random.default_rng(seed)
    parents = NTU25.parent_index()
    order = sorted(range(25), key=lambda j: _depth(parents, j))
    coords = np.zeros((2, num_frames, 25, 3), dtype=np.float64)
    for m in range(2):
        bones = rng.normal(size=(25, 3))
        bones /= np.linalg.norm(bones, axis=1, keepdims=True)
        bones *= rng.uniform(0.05, 0.4, size=(25, 1))
        bones[NTU25.spine_top] = [0, 0.3, 0]  # spine_mid above spine_base
        bones[NTU25.index("spine_shoulder")] = [0, 0.25, 0]
        bones[NTU25.left_shoulder] = [0.18, 0, 0.02]
        bones[NTU25.right_shoulder] = [-0.18, 0, -0.02]
        root = rng.uniform(-1, 1, size=3) + np.array([0.0, 0.0, 3.0])
        for t in range(num_frames):
            wiggle = bones + 0.02 * rng.normal(size=bones.shape) * (np.arange(25) > 4)[:, None]
            for j in order:
                p = parents[j]
                coords[m, t, j] = root + 0.01 * t if p == j else coords[m, t, p] + wiggle[j]
    coords[1, num_frames - 3 :] = 0.0  # the second body leaves
    coords[1, :2] = 0.0  # and arrives late
    return coords.astype(np.float32)


def _depth(parents: np.ndarray, j: int) -> int:
    depth = 0
    while parents[j] != j:
        j, depth = parents[j], depth + 1
    return depth


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), q=quaternions, shift=shifts)
def test_random_skeletons_are_invariant_to_camera_pose(seed, q, shift):
    coords = skeleton_like(seed)
    rot = rotation_from_quaternion(q)
    for fill in (True, False):
        expected = pre_normalize(coords, NTU25, fill_null_frames=fill)
        got = pre_normalize(move(coords, rot, shift), NTU25, fill_null_frames=fill)
        np.testing.assert_allclose(got, expected, atol=TOL)


def test_output_is_in_the_body_frame(a050):
    out = pre_normalize(a050, NTU25)
    assert out.shape == a050.shape
    # centre joint of body 0 at the origin in every frame
    np.testing.assert_allclose(out[0, :, NTU25.center], 0.0, atol=1e-6)
    spine = out[0, 0, NTU25.spine_top] - out[0, 0, NTU25.spine_bottom]
    np.testing.assert_allclose(spine[:2], 0.0, atol=1e-5)
    assert spine[2] > 0.1
    shoulders = out[0, 0, NTU25.left_shoulder] - out[0, 0, NTU25.right_shoulder]
    assert abs(shoulders[1]) < 1e-5 and shoulders[0] > 0.1
    # lengths are untouched by a rigid motion
    for coords_, out_ in ((a050, out),):
        bone_in = np.linalg.norm(coords_[:, :, 3] - coords_[:, :, 2], axis=-1)
        bone_out = np.linalg.norm(out_[:, :, 3] - out_[:, :, 2], axis=-1)
        np.testing.assert_allclose(bone_out, bone_in, atol=1e-5)


def test_first_frame_centring_keeps_the_trajectory(a001):
    out = pre_normalize(a001, NTU25, center="first_frame")
    np.testing.assert_allclose(out[0, 0, NTU25.center], 0.0, atol=1e-6)
    # translation over time survives: same path length as in the camera frame
    path_in = np.linalg.norm(np.diff(a001[0, :, NTU25.center], axis=0), axis=-1).sum()
    path_out = np.linalg.norm(np.diff(out[0, :, NTU25.center], axis=0), axis=-1).sum()
    assert path_out == pytest.approx(path_in, rel=1e-4)
    assert path_out > 0.01


def test_zero_frames_stay_zero_without_filling(a050):
    coords = a050.copy()
    coords[1, 10:20] = 0.0  # body 1 missing for a while
    coords[:, 40] = 0.0  # nobody in frame 40
    out = pre_normalize(coords, NTU25, fill_null_frames=False)
    assert out.shape == coords.shape
    assert not out[1, 10:20].any() and not out[:, 40].any()
    assert np.all(np.isfinite(out))
    # the centre joint of body 0 is 0 by construction; everything else present stays non-zero
    present = joint_valid_mask(coords)
    present[0, :, NTU25.center] = False
    assert np.all(np.any(out != 0, axis=-1)[present])


def test_null_frames_are_moved_and_looped():
    coords = np.zeros((2, 10, 25, 3), dtype=np.float32)
    values = np.arange(1, 5, dtype=np.float32)[:, None, None] * np.ones((4, 25, 3), dtype=np.float32)
    coords[0, 3:7] = values  # frames 3..6 recorded: 3 leading, 3 trailing null frames
    out = fill_null_frames(coords)
    expected_order = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    np.testing.assert_array_equal(out[0, :, 0, 0], expected_order)
    assert not out[1].any()  # a body that never appears stays empty


def test_interior_gaps_are_kept_by_the_loop():
    coords = np.zeros((1, 7, 25, 3), dtype=np.float32)
    coords[0, [0, 2]] = 1.0  # frame 1 is an interior gap, 3..6 trailing
    out = fill_null_frames(coords)
    np.testing.assert_array_equal(out[0, :, 0, 0], [1, 0, 1, 1, 0, 1, 1])


def test_filled_sequence_is_normalized_from_its_first_valid_frame(a001):
    shifted = np.zeros_like(a001)
    shifted[:, 5:] = a001[:, :-5]  # 5 leading null frames
    out = pre_normalize(shifted, NTU25)
    reference = pre_normalize(a001[:, :-5], NTU25)
    np.testing.assert_allclose(out[:, : a001.shape[1] - 5], reference, atol=1e-5)
    np.testing.assert_allclose(out[:, a001.shape[1] - 5 :], reference[:, :5], atol=1e-5)


def test_degenerate_vectors_are_safe(a001):
    coords = a001.copy()
    # spine of zero length in every frame: step (c) is skipped, (d) still rotates about z
    coords[0, :, NTU25.spine_top] = coords[0, :, NTU25.spine_bottom]
    out = pre_normalize(coords, NTU25)
    assert np.all(np.isfinite(out))
    # a rotation about z only: the vertical distances between joints are unchanged
    dz_in = coords[0, :, 3, 2] - coords[0, :, 0, 2]
    dz_out = out[0, :, 3, 2] - out[0, :, 0, 2]
    np.testing.assert_allclose(dz_out, dz_in, atol=1e-5)
    # shoulders parallel to the spine: (d) is skipped
    coords = a001.copy()
    spine = coords[0, 0, NTU25.spine_top] - coords[0, 0, NTU25.spine_bottom]
    coords[0, 0, NTU25.left_shoulder] = coords[0, 0, NTU25.right_shoulder] + 2 * spine
    valid = joint_valid_mask(coords)
    rot = body_frame_rotation(coords, NTU25, valid, align_shoulders=True)
    rot_spine_only = body_frame_rotation(coords, NTU25, valid, align_shoulders=False)
    np.testing.assert_allclose(rot, rot_spine_only, atol=1e-9)
    # spine pointing straight down (the unstable case of the minimal rotation)
    down = np.zeros((1, 1, 25, 3), dtype=np.float32)
    down[0, 0] = np.array([1.0, 2.0, 3.0])
    down[0, 0, NTU25.spine_top] = [1.0, 2.0, 2.5]
    rot = body_frame_rotation(down, NTU25, joint_valid_mask(down), align_shoulders=False)
    np.testing.assert_allclose(rot @ [0, 0, -0.5], [0, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    # nothing at all
    assert not pre_normalize(np.zeros((2, 5, 25, 3), np.float32), NTU25).any()


def test_bad_arguments_raise(a001):
    with pytest.raises(ValueError, match="center"):
        pre_normalize(a001, NTU25, center="middle")
    with pytest.raises(ValueError, match="joints"):
        pre_normalize(a001[:, :, :20], NTU25)
    bad = a001.copy()
    bad[0, 3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pre_normalize(bad, NTU25)
    with pytest.raises(ValueError, match="3-D"):
        pre_normalize(np.zeros((1, 2, 18, 3), np.float32), OPENPOSE18)


@pytest.fixture(scope="module")
def kinetics_clip(shared_data: Path) -> SkeletonSequence:
    return read_kinetics_clip(shared_data / "kinetics_raw" / "__vOysOPoCY.json")


def test_normalize_2d_is_the_st_gcn_rule(kinetics_clip):
    raw = kinetics_clip.coords
    out = normalize_2d(raw, OPENPOSE18)
    seen = raw[..., 2] > 0
    assert (~seen).any() and seen.any()  # the clip has both detected and missing keypoints
    np.testing.assert_allclose(out[..., 0][seen], raw[..., 0][seen] - 0.5, atol=1e-6)
    np.testing.assert_allclose(out[..., 1][seen], 0.5 - raw[..., 1][seen], atol=1e-6)
    np.testing.assert_array_equal(out[..., 2], raw[..., 2])
    assert not out[~seen].any()
    assert out.shape == raw.shape and out.dtype == np.float32


def test_normalize_2d_neck_centring(kinetics_clip):
    raw = kinetics_clip.coords
    out = normalize_2d(raw, OPENPOSE18, center="per_frame")
    neck = OPENPOSE18.center
    seen_neck = raw[0, :, neck, 2] > 0
    np.testing.assert_allclose(out[0, seen_neck, neck, :2], 0.0, atol=1e-6)
    # relative positions survive
    plain = normalize_2d(raw, OPENPOSE18)
    seen = (raw[0, :, :, 2] > 0) & seen_neck[:, None]
    rel_plain = plain[0, :, :, :2] - plain[0, :, neck : neck + 1, :2]
    np.testing.assert_allclose(out[0, :, :, :2][seen], rel_plain[seen], atol=1e-6)


def test_normalize_sequence_dispatches_on_the_layout(a001, kinetics_clip):
    seq = SkeletonSequence("S001C001P001R001A001", "ntu60", "ntu25", a001, 0)
    out = normalize_sequence(seq, {"center": "first_frame", "2d": {"flip_y": False}})
    np.testing.assert_array_equal(out.coords, pre_normalize(a001, NTU25, center="first_frame"))
    assert out.sample_id == seq.sample_id and out.label == 0
    out2 = normalize_sequence(kinetics_clip, {"3d": {"align_spine": False}, "2d": {"flip_y": False}})
    np.testing.assert_array_equal(out2.coords, normalize_2d(kinetics_clip.coords, OPENPOSE18, flip_y=False))
    assert normalize_sequence(seq, {"enabled": False}) is seq
    assert normalize_sequence(seq, {"method": "none", "center": "first_frame"}) is seq
    # the conf/base/parameters_prepare.yml shape
    conf = {
        "method": "pre_normalize",
        "fill_null_frames": True,
        "center": "per_frame",
        "align_spine": True,
        "align_shoulders": True,
    }
    np.testing.assert_array_equal(normalize_sequence(seq, conf).coords, pre_normalize(a001, NTU25))
    np.testing.assert_array_equal(
        normalize_sequence(kinetics_clip, {"method": "normalize_2d"}).coords,
        normalize_2d(kinetics_clip.coords, OPENPOSE18),
    )
    with pytest.raises(ValueError, match="does not apply"):
        normalize_sequence(kinetics_clip, conf)
    with pytest.raises(ValueError, match="unknown normalization method"):
        normalize_sequence(seq, {"method": "zscore"})
    with pytest.raises(ValueError, match="unknown normalization parameter"):
        normalize_sequence(seq, {"centre": "per_frame"})
