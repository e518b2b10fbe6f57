"""``center: midpoint_first_frame``: the origin between the bodies (interactions such as SBU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skeleton_attention.skeletons.layouts import NTU25
from skeleton_attention.skeletons.normalize import joint_valid_mask, midpoint_origin, pre_normalize
from tests.test_normalize import load_ntu, move, rotation_from_quaternion


@pytest.fixture(scope="module")
def a050(ntu_raw: Path) -> np.ndarray:
    coords = load_ntu(ntu_raw / "S001C001P001R001A050.skeleton")
    assert coords.shape[0] == 2
    return coords


def test_midpoint_of_both_bodies_is_the_origin(a050):
    out = pre_normalize(a050, NTU25, center="midpoint_first_frame")
    valid = joint_valid_mask(out)
    t = int(np.flatnonzero(valid[:, :, NTU25.center].all(axis=0))[0])
    np.testing.assert_allclose(out[:, t, NTU25.center].mean(axis=0), 0.0, atol=1e-5)
    # unlike first_frame, body 0 is no longer at the origin: the two bodies sit symmetrically
    assert np.linalg.norm(out[0, t, NTU25.center]) > 0.1
    np.testing.assert_allclose(out[0, t, NTU25.center], -out[1, t, NTU25.center], atol=1e-5)


def test_midpoint_differs_from_first_frame_by_one_constant_shift(a050):
    first = pre_normalize(a050, NTU25, center="first_frame").astype(np.float64)
    mid = pre_normalize(a050, NTU25, center="midpoint_first_frame").astype(np.float64)
    valid = joint_valid_mask(mid)
    shift = (first - mid)[valid]
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-4)
    # missing joints stay missing; first_frame turns body 0's centre joint at its first frame into
    # an exact (0, 0, 0), the one joint more that midpoint keeps non-zero
    first_valid = joint_valid_mask(first)
    assert not (first_valid & ~valid).any()
    assert (valid & ~first_valid).sum() == 1


def test_midpoint_is_invariant_to_camera_pose(a050):
    rot = rotation_from_quaternion(np.array([0.9, 0.2, -0.3, 0.1]))
    expected = pre_normalize(a050, NTU25, center="midpoint_first_frame")
    got = pre_normalize(move(a050, rot, np.array([1.5, -0.4, 3.0])), NTU25, center="midpoint_first_frame")
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_one_body_falls_back_to_first_frame(a050):
    single = a050[:1]
    assert midpoint_origin(single, NTU25.center, joint_valid_mask(single)) is None
    np.testing.assert_array_equal(
        pre_normalize(single, NTU25, center="midpoint_first_frame"), pre_normalize(single, NTU25, center="first_frame")
    )
