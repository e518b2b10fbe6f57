"""The compiled candidate fits of the multi-view alignment (``_rigid_fast.c``) against the numpy ones.

The C loop finds each rotation with Horn's quaternion where numpy takes an SVD, and sums in another
order, so the two agree to rounding (1e-9 here), not bit for bit; the resampled values themselves
are the same operations in the same order. The alignment's choices on real recordings are
compared too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from skeleton_attention.skeletons import alignment, rigid_batch
from skeleton_attention.skeletons.alignment_search import resample_frames
from skeleton_attention.skeletons.layouts import KINECT20
from skeleton_attention.skeletons.rigid_batch import batched_robust_fit, candidate_fits, compiled_candidate_fits
from tests.kedro_helpers import REPO_ROOT

needs_compiled = pytest.mark.skipif(
    not rigid_batch.COMPILED_FITS_AVAILABLE, reason="C extension _rigid_fast not built: only the numpy fits are tested"
)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _fits(compiled: bool, monkeypatch: pytest.MonkeyPatch, *args, **kwargs):
    monkeypatch.setattr(rigid_batch, "USE_COMPILED_FITS", compiled)
    return batched_robust_fit(*args, **kwargs)


def test_fast_fits_are_built_under_ci() -> None:
    if os.environ.get("CI"):
        assert rigid_batch.COMPILED_FITS_AVAILABLE, "CI installs with a compiler: _rigid_fast should have been built"


@needs_compiled
@pytest.mark.parametrize("robust", ["l1", "none"])
def test_compiled_fits_equal_the_numpy_fits(monkeypatch, robust):
    rng = np.random.default_rng(3)
    count, points = 9, 400
    p = rng.normal(size=(count, 3, points)) + np.array([0.0, 1.0, 3.0])[:, None]
    q = np.stack([_rotation(rng) @ p[k] + rng.normal(size=(3, 1)) for k in range(count)])
    q += rng.normal(scale=0.01, size=q.shape)
    q[:, :, :40] += rng.normal(scale=0.7, size=(count, 3, 40))  # tracking failures
    mask = rng.random((count, points)) > 0.3
    mask[:, -5:] = False  # points no candidate has: dropped before fitting
    mask[4, 10:] = False  # a candidate with few points
    numpy_fit = _fits(False, monkeypatch, p, q, mask, robust=robust, iterations=8)
    compiled_fit = _fits(True, monkeypatch, p, q, mask, robust=robust, iterations=8)
    for a, b in zip(numpy_fit, compiled_fit, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() < 1e-9
    assert np.allclose(np.linalg.det(compiled_fit[0]), 1.0)
    assert np.all(compiled_fit[2][:, -5:] == 0.0)  # as numpy scatters them: zero


@needs_compiled
def test_compiled_rotation_is_proper_where_least_squares_would_reflect(monkeypatch):
    """A mirrored point set: the best orthogonal map is a reflection; both paths return the same
    proper rotation (numpy flips the SVD's last singular vector, Horn's quaternion is proper by
    construction)."""
    rng = np.random.default_rng(1)
    p = rng.normal(size=(1, 3, 50)) * np.array([3.0, 2.0, 1.0])[:, None]
    q = p * np.array([1.0, 1.0, -1.0])[:, None]
    mask = np.ones((1, 50), dtype=bool)
    numpy_rot = _fits(False, monkeypatch, p, q, mask, robust="none")[0]
    compiled_rot = _fits(True, monkeypatch, p, q, mask, robust="none")[0]
    assert np.linalg.det(compiled_rot[0]) == pytest.approx(1.0)
    assert np.abs(numpy_rot - compiled_rot).max() < 1e-9


def _view_pair(rng: np.random.Generator):
    """A two-body view of 40 frames with missing joints and a dropped frame, and the reference frames."""
    bodies, frames, joints = 2, 40, 20
    view = rng.normal(size=(bodies, frames, joints, 3)) + np.array([0.0, 0.0, 3.0])
    view_ok = rng.random((bodies, frames, joints)) > 0.1
    view_ok[1, 5] = False  # a frame the tracker lost
    view = np.where(view_ok[..., None], view, 0.0)
    ref_frames = 25
    ref = np.einsum("ij,mtvj->mtvi", _rotation(rng), view[:, 3 : 3 + ref_frames]) + 0.3
    ref += rng.normal(scale=0.02, size=ref.shape)
    ref_ok = rng.random((bodies, ref_frames, joints)) > 0.1
    return view, view_ok, np.where(ref_ok[..., None], ref, 0.0), ref_ok


@needs_compiled
@pytest.mark.parametrize("rigid,robust", [(True, "l1"), (True, "none"), (False, "l1")])
def test_compiled_candidate_fits_resample_and_score_as_numpy_does(rigid, robust):
    rng = np.random.default_rng(7)
    view, view_ok, ref, ref_ok = _view_pair(rng)
    frames = np.arange(ref.shape[1], dtype=np.float64)
    # integer and fractional offsets, offsets that leave the view (fewer points), a near-integer
    # position (the 1e-6 tolerance) and one candidate with no overlap at all
    offsets = np.array([3.0, 2.0, 4.0, 3.25, 2.75, -10.0, 14.5, 3.0 + 1e-8, 100.0])
    rates = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.98, 1.0, 1.0])
    positions = offsets[:, None] + rates[:, None] * frames
    settings = dict(rigid=rigid, robust=robust, iterations=8, min_points=30, time_scale=0.05, tol=1e-7)
    values, ok = resample_frames(view, view_ok, positions)
    keep, costs, rot, trans = candidate_fits(values, ok, ref, ref_ok, **settings)
    fast_keep, fast_costs, fast_rot, fast_trans = compiled_candidate_fits(
        view, view_ok, ref, ref_ok, positions, **settings
    )
    assert keep.tolist() == fast_keep.tolist() and 0 in keep and 8 not in keep
    assert np.abs(costs - fast_costs).max() < 1e-9
    assert np.abs(rot - fast_rot).max() < 1e-9 and np.abs(trans - fast_trans).max() < 1e-9
    assert int(np.argmin(fast_costs)) == int(np.argmin(costs)) == 0  # the true offset wins


@needs_compiled
def test_compiled_candidate_fits_reject_wrong_buffers():
    rng = np.random.default_rng(0)
    view, view_ok, ref, ref_ok = _view_pair(rng)
    positions = np.zeros((2, ref.shape[1]))
    settings = dict(rigid=True, robust="l1", iterations=2, min_points=30, time_scale=0.05)
    with pytest.raises(ValueError, match="robust='l1' or 'none'"):
        compiled_candidate_fits(view, view_ok, ref, ref_ok, positions, **{**settings, "robust": "trimmed"})
    with pytest.raises(ValueError, match="ref_ok holds"):
        compiled_candidate_fits(view, view_ok, ref, ref_ok[:, :-1], positions, **settings)
    with pytest.raises(ValueError, match="ref holds 3000 values, expected 2880"):  # F from positions
        compiled_candidate_fits(view, view_ok, ref, ref_ok, positions[:, :-1], **settings)
    with pytest.raises(ValueError, match="min_points >= 3, got 2"):  # never drops candidates unsaid
        compiled_candidate_fits(view, view_ok, ref, ref_ok, positions, **{**settings, "min_points": 2})


@pytest.mark.parametrize("min_points", [2, 0, 2.5, True])
def test_align_views_rejects_fewer_than_three_points(min_points):
    views = {1: np.zeros((1, 10, KINECT20.num_joints, 3)), 2: np.zeros((1, 10, KINECT20.num_joints, 3))}
    with pytest.raises(ValueError, match="min_points must be an integer >= 3"):
        alignment.align_views(views, layout=KINECT20, min_points=min_points)


def _real_cases(shared_data):
    from skeleton_attention.skeletons import nucla
    from skeleton_attention.skeletons.views import load_ntu_view

    ntu = defaultdict(dict)
    for path in sorted((shared_data / "ntu_multiview").glob("*.skeleton")):
        ntu[path.stem[16:]][int(path.stem[5:8])] = load_ntu_view(path)[0]
    cases = [
        dict(views=views, max_offset=15, coarse_step=3, search_iterations=2, search_frame_step=3)
        for views in ntu.values()
    ]
    groups: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    for path in sorted((shared_data / "nucla_raw").rglob("a0[36]_s0[12]_e00_v*.json")):
        groups[path.stem.rsplit("_", 1)[0]][int(nucla.read_nucla_file(path).meta["camera"])] = nucla.read_nucla_file(
            path
        ).coords
    nucla_settings = dict(
        layout=KINECT20, rate_prior="length_ratio", estimate_rate=True, min_overlap=0.5, max_offset=20
    )
    cases += [dict(views=views, **nucla_settings) for views in groups.values() if len(views) > 1]
    return cases


@needs_compiled
def test_alignment_choices_are_the_same_with_compiled_and_numpy_fits(shared_data, monkeypatch):
    cases = _real_cases(shared_data)
    assert len(cases) >= 4
    compiled = [alignment.multiview_frame(frame="aligned", **case) for case in cases]
    monkeypatch.setenv(rigid_batch.NUMPY_FITS_ENV, "1")
    assert not rigid_batch.compiled_fits_enabled()
    plain = [alignment.multiview_frame(frame="aligned", **case) for case in cases]
    for a, b in zip(compiled, plain, strict=True):
        assert a.offsets == b.offsets and a.rates == b.rates and a.body_order == b.body_order
        for c in a.rotations:
            assert np.abs(a.rotations[c] - b.rotations[c]).max() < 1e-8
            assert abs(a.residuals[c] - b.residuals[c]) < 1e-9
        assert np.abs(a.coords - b.coords).max() < 1e-5


def test_alignment_without_the_extension(shared_data):
    """With the extension unimportable, the module loads and aligns with the numpy fits."""
    code = (
        "import sys; sys.modules['skeleton_attention.skeletons._rigid_fast'] = None\n"
        "from pathlib import Path\n"
        "from skeleton_attention.skeletons import alignment, rigid_batch\n"
        "from skeleton_attention.skeletons.views import load_ntu_view\n"
        "assert rigid_batch.COMPILED_FITS_AVAILABLE is False and not rigid_batch.compiled_fits_enabled()\n"
        f"paths = sorted(Path({str(shared_data / 'ntu_multiview')!r}).glob('*.skeleton'))[:3]\n"
        "views = {int(p.stem[5:8]): load_ntu_view(p)[0] for p in paths}\n"
        "a = alignment.align_views(views, max_offset=6)\n"
        "print(sorted(a.offsets.items()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    assert out.stdout.startswith("[(1, 0.0), (2, ")
