"""Joint, bone, fast and slow motion streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skeleton_attention.skeletons.denoise import denoise_ntu
from skeleton_attention.skeletons.kinetics import read_kinetics_clip
from skeleton_attention.skeletons.layouts import KINECT20, NTU25, OPENPOSE18
from skeleton_attention.skeletons.normalize import normalize_2d, pre_normalize
from skeleton_attention.skeletons.ntu import read_ntu_skeleton
from skeleton_attention.skeletons.streams import (
    STREAM_NAMES,
    bone,
    compute_streams,
    joint,
    motion_fast,
    motion_slow,
)


def load_ntu(path: Path) -> np.ndarray:
    """A real NTU sample through the project's reader and denoiser: coords (M, T, 25, 3)."""
    sequence, report = denoise_ntu(read_ntu_skeleton(path))
    assert sequence is not None, report
    return sequence.coords


@pytest.fixture(scope="module")
def a050(ntu_raw: Path) -> np.ndarray:
    return pre_normalize(load_ntu(ntu_raw / "S001C001P001R001A050.skeleton"), NTU25)


@pytest.fixture(scope="module")
def kinetics(shared_data: Path) -> np.ndarray:
    clip = read_kinetics_clip(shared_data / "kinetics_raw" / "__vOysOPoCY.json")
    return normalize_2d(clip.coords, OPENPOSE18)


def _topological(parents: np.ndarray) -> list[int]:
    def depth(j: int) -> int:
        d = 0
        while parents[j] != j:
            j, d = parents[j], d + 1
        return d

    return sorted(range(len(parents)), key=depth)


def test_bone_of_a_chain_gives_the_known_vectors():
    # spine_base -> spine_mid -> spine_shoulder -> neck -> head with known steps
    steps = {
        "spine_mid": [0, 0.3, 0],
        "spine_shoulder": [0.01, 0.25, 0.02],
        "neck": [0, 0.08, -0.01],
        "head": [0.02, 0.12, 0.03],
    }
    coords = np.zeros((1, 1, 25, 3), dtype=np.float32)
    base = np.array([0.5, -0.2, 3.0])
    coords[0, 0, :] = base + 0.001  # every other joint somewhere non-zero
    coords[0, 0, NTU25.index("spine_base")] = base
    pos = base.copy()
    for name in ("spine_mid", "spine_shoulder", "neck", "head"):
        pos = pos + steps[name]
        coords[0, 0, NTU25.index(name)] = pos
    b = bone(coords, NTU25)
    for name, step in steps.items():
        np.testing.assert_allclose(b[0, 0, NTU25.index(name)], step, atol=1e-6)
    np.testing.assert_array_equal(b[0, 0, NTU25.index("spine_base")], 0.0)  # the root


@pytest.mark.parametrize("layout", [NTU25, KINECT20])
def test_summing_bones_from_the_root_recovers_the_joints(layout, a050):
    rng = np.random.default_rng(0)
    coords = (
        a050[:, :, : layout.num_joints]
        if layout is NTU25
        else rng.normal(size=(2, 6, layout.num_joints, 3)).astype(np.float32)
    )
    b = bone(coords, layout)
    parents = layout.parent_index()
    root = int(np.flatnonzero(parents == np.arange(len(parents)))[0])
    rebuilt = np.zeros_like(coords, dtype=np.float64)
    for j in _topological(parents):
        if j != root:
            rebuilt[:, :, j] = rebuilt[:, :, parents[j]] + b[:, :, j]
    np.testing.assert_allclose(rebuilt, coords - coords[:, :, root : root + 1], atol=1e-5)


def test_motion_of_a_constant_sequence_is_zero(a050):
    still = np.repeat(a050[:, :1], 10, axis=1)
    assert not motion_fast(still).any() and not motion_slow(still).any()


def test_motion_values_and_the_slow_stream_equivalence(a050):
    fast, slow = motion_fast(a050), motion_slow(a050)
    np.testing.assert_allclose(fast[:, :-1], a050[:, 1:] - a050[:, :-1], atol=1e-6)
    np.testing.assert_allclose(slow[:, :-2], a050[:, 2:] - a050[:, :-2], atol=1e-6)
    assert not fast[:, -1].any() and not slow[:, -2:].any()
    # DSTA-Net's definition: subsample every second frame, then difference
    np.testing.assert_allclose(slow[:, ::2], motion_fast(a050[:, ::2]), atol=1e-6)
    np.testing.assert_allclose(slow[:, 1::2], motion_fast(a050[:, 1::2]), atol=1e-6)
    # a linear trajectory: constant velocity v, slow motion 2 v
    v = np.array([0.01, -0.02, 0.005], dtype=np.float32)
    line = (a050[:, :1] + np.arange(8, dtype=np.float32)[None, :, None, None] * v).astype(np.float32)
    np.testing.assert_allclose(motion_fast(line)[:, :-1], np.broadcast_to(v, (2, 7, 25, 3)), atol=1e-6)
    np.testing.assert_allclose(motion_slow(line)[:, :-2], np.broadcast_to(2 * v, (2, 6, 25, 3)), atol=1e-6)


def test_missing_frames_give_zeros_not_spikes(a050):
    coords = a050.copy()
    coords[1, 20] = 0.0  # body 1 missing in frame 20
    coords[0, 30:33] = 0.0  # body 0 missing in 30..32
    fast, slow = motion_fast(coords), motion_slow(coords)
    assert not fast[1, 19:21].any() and not slow[1, 18].any() and not slow[1, 20].any()
    np.testing.assert_allclose(slow[1, 19], coords[1, 21] - coords[1, 19], atol=1e-6)  # skips frame 20
    assert not fast[0, 29:33].any() and not slow[0, 28:33].any()
    # untouched elsewhere
    np.testing.assert_allclose(fast[1, 21], coords[1, 22] - coords[1, 21], atol=1e-6)
    np.testing.assert_allclose(slow[0, 33], coords[0, 35] - coords[0, 33], atol=1e-6)
    assert not bone(coords, NTU25)[1, 20].any()
    # the per-frame centre joint of body 0 is exactly 0 but present: its motion is real (zero)
    # and the bones touching it are not dropped
    b = bone(coords, NTU25)
    mid = NTU25.center
    np.testing.assert_allclose(b[0, 0, mid], coords[0, 0, mid] - coords[0, 0, NTU25.parents[mid]], atol=1e-6)
    assert np.abs(b[0, 0, mid]).sum() > 0.05


def test_2d_streams_use_scores(kinetics):
    x = kinetics
    score = x[..., 2]
    b = bone(x, OPENPOSE18)
    parents = OPENPOSE18.parent_index()
    both = (score > 0) & (score[:, :, parents] > 0)
    np.testing.assert_allclose(b[..., :2][both], (x[..., :2] - x[:, :, parents, :2])[both], atol=1e-6)
    assert not b[..., :2][~both].any()
    np.testing.assert_allclose(b[..., 2], np.where(both, np.minimum(score, score[:, :, parents]), 0.0))
    fast = motion_fast(x, OPENPOSE18)
    ok = (score[:, 1:] > 0) & (score[:, :-1] > 0)
    assert (~ok & ((score[:, 1:] > 0) | (score[:, :-1] > 0))).any()  # keypoints come and go
    np.testing.assert_allclose(fast[:, :-1, :, :2][ok], (x[:, 1:, :, :2] - x[:, :-1, :, :2])[ok], atol=1e-6)
    assert not fast[:, :-1][~ok].any()
    np.testing.assert_allclose(fast[:, :-1, :, 2][ok], np.minimum(score[:, 1:], score[:, :-1])[ok])


def test_compute_streams_shapes_and_dtypes(a050, kinetics):
    for coords, layout in ((a050, NTU25), (kinetics, OPENPOSE18)):
        streams = compute_streams(coords, layout)
        assert tuple(streams) == STREAM_NAMES
        for name, value in streams.items():
            assert value.shape == coords.shape, name
            assert value.dtype == np.float32, name
        np.testing.assert_array_equal(streams["bone"], bone(coords, layout))
    np.testing.assert_array_equal(compute_streams(a050, NTU25, ["joint"])["joint"], joint(a050))
    with pytest.raises(ValueError, match="unknown stream"):
        compute_streams(a050, NTU25, ["velocity"])
