"""Body-size normalization (``scale="spine"``): invariance to size, default unchanged, zeros kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skeleton_attention.skeletons.denoise import denoise_ntu
from skeleton_attention.skeletons.layouts import KINECT20, NTU25, OPENPOSE18
from skeleton_attention.skeletons.msr import read_msr_file
from skeleton_attention.skeletons.normalize import (
    joint_valid_mask,
    normalize_sequence,
    pre_normalize,
    reference_length,
    scale_segment,
)
from skeleton_attention.skeletons.ntu import read_ntu_skeleton
from skeleton_attention.skeletons.sequence import SkeletonSequence


@pytest.fixture(scope="module")
def a050(ntu_raw: Path) -> np.ndarray:
    """Two people (NTU25), the reference body and a second one of another size."""
    sequence, report = denoise_ntu(read_ntu_skeleton(ntu_raw / "S001C001P001R001A050.skeleton"))
    assert sequence is not None and sequence.coords.shape[0] == 2, report
    return sequence.coords


@pytest.fixture(scope="module")
def msr(shared_data: Path) -> np.ndarray:
    """MSR Action3D (KINECT20) sample with 12 all-zero frames among 30."""
    coords = read_msr_file(shared_data / "msr_action3d_raw" / "a13_s02_e02_skeleton3D.txt").coords
    assert (~coords.any(axis=(2, 3))).sum() == 12
    return coords


def rotation(angles: np.ndarray) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def similarity(coords: np.ndarray, factor: float, rot: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Scale, rotate and shift the present joints; missing ones stay exactly zero."""
    present = joint_valid_mask(coords)
    moved = factor * coords.astype(np.float64) @ rot.T + shift
    return np.where(present[..., None], moved, 0.0).astype(np.float32)


def test_segment_is_the_torso_by_joint_name():
    assert [NTU25.joint_names[j] for j in scale_segment(NTU25)] == ["spine_base", "spine_shoulder"]
    assert [KINECT20.joint_names[j] for j in scale_segment(KINECT20)] == ["hip_center", "shoulder_center"]
    with pytest.raises(ValueError, match="body-size"):
        scale_segment(OPENPOSE18)


def test_real_torso_lengths_are_adult_sized(a050, msr):
    for coords, layout in ((a050, NTU25), (msr, KINECT20)):
        length = reference_length(coords, layout, joint_valid_mask(coords))
        assert length is not None and 0.35 < length < 0.65, length


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    factor=st.floats(0.3, 3.0),
    angles=st.lists(st.floats(-np.pi, np.pi), min_size=3, max_size=3).map(np.array),
    shift=st.lists(st.floats(-5, 5), min_size=3, max_size=3).map(np.array),
)
def test_scaled_copy_normalizes_to_the_same_output(a050, msr, factor, angles, shift):
    for coords, layout in ((a050, NTU25), (msr, KINECT20)):
        expected = pre_normalize(coords, layout, scale="spine")
        got = pre_normalize(similarity(coords, factor, rotation(angles), shift), layout, scale="spine")
        assert got.shape == coords.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_spine_scaling_is_the_default_divided_by_the_torso(a050, msr):
    for coords, layout in ((a050, NTU25), (msr, KINECT20)):
        plain = pre_normalize(coords, layout)
        scaled = pre_normalize(coords, layout, scale="spine")
        length = reference_length(coords, layout, joint_valid_mask(coords))
        # one length for the whole sample: the second NTU body keeps its size relative to the first
        np.testing.assert_allclose(scaled * length, plain, atol=1e-5)
        # the reference body's median torso is now 1
        bottom, top = scale_segment(layout)
        ok = joint_valid_mask(scaled)[0][:, [bottom, top]].all(axis=1)
        torso = np.linalg.norm(scaled[0, ok, top] - scaled[0, ok, bottom], axis=-1)
        assert abs(float(np.median(torso)) - 1.0) < 1e-3


def test_default_is_unchanged(a050, msr):
    for coords, layout in ((a050, NTU25), (msr, KINECT20)):
        plain = pre_normalize(coords, layout)
        np.testing.assert_array_equal(pre_normalize(coords, layout, scale="none"), plain)
        # still metres: the median torso of the result is the input's
        bottom, top = scale_segment(layout)
        ok = joint_valid_mask(plain)[0][:, [bottom, top]].all(axis=1)
        torso = float(np.median(np.linalg.norm(plain[0, ok, top] - plain[0, ok, bottom], axis=-1)))
        assert abs(torso - reference_length(coords, layout, joint_valid_mask(coords))) < 1e-5
    seq = SkeletonSequence("a13_s02_e02", "msr", "kinect20", msr, 12)
    conf = {
        "method": "pre_normalize",
        "fill_null_frames": True,
        "center": "per_frame",
        "align_spine": True,
        "align_shoulders": True,
    }
    np.testing.assert_array_equal(
        normalize_sequence(seq, conf).coords, normalize_sequence(seq, {**conf, "scale": "none"}).coords
    )
    np.testing.assert_array_equal(
        normalize_sequence(seq, {**conf, "scale": "spine"}).coords, pre_normalize(msr, KINECT20, scale="spine")
    )


def test_missing_joints_and_frames_stay_zero(a050, msr):
    holes = a050.copy()
    holes[1, 10:20] = 0.0  # second person gone for 10 frames
    holes[0, 30:33, 7:12] = 0.0  # a few joints of the first
    for coords, layout in ((holes, NTU25), (msr, KINECT20)):
        missing = ~joint_valid_mask(coords)
        assert missing.any()
        out = pre_normalize(coords, layout, fill_null_frames=False, scale="spine")
        assert not out[missing].any()
        assert np.all(np.isfinite(out))
    # with filling, MSR's empty frames are looped over, never scaled into non-zero garbage
    out = pre_normalize(msr, KINECT20, scale="spine")
    assert np.all(np.isfinite(out)) and np.abs(out).max() < 5
    assert not pre_normalize(np.zeros((2, 5, 25, 3), np.float32), NTU25, scale="spine").any()


def test_degenerate_torso_is_left_unscaled(a050):
    bottom, top = scale_segment(NTU25)
    collapsed = a050.copy()
    collapsed[0, :, top] = collapsed[0, :, bottom]  # zero-length torso in every frame
    np.testing.assert_array_equal(pre_normalize(collapsed, NTU25, scale="spine"), pre_normalize(collapsed, NTU25))
    unseen = a050.copy()
    unseen[0, :, top] = 0.0  # the shoulder centre is never tracked
    assert reference_length(unseen, NTU25, joint_valid_mask(unseen)) is None
    np.testing.assert_array_equal(pre_normalize(unseen, NTU25, scale="spine"), pre_normalize(unseen, NTU25))


def test_bad_scale_raises(a050):
    with pytest.raises(ValueError, match="scale"):
        pre_normalize(a050, NTU25, scale="height")
    kinetics = SkeletonSequence("x", "kinetics", "openpose18", np.zeros((1, 2, 18, 3), np.float32), 0)
    with pytest.raises(ValueError, match="unknown normalization parameter"):
        normalize_sequence(kinetics, {"method": "normalize_2d", "scale": "spine"})
