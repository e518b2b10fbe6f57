"""NTU multi-view grouping and alignment: one recording seen by cameras C001-C003 at once.

The three Kinect cameras of an NTU setup record simultaneously, but each file has its own
frame count (the cameras start and stop independently), its own body IDs and its own camera
coordinates. :func:`align_views` puts the views of one recording on a common timeline (the
reference camera's) and into a common frame:

* ``mode="rigid"`` (default): ONE rigid transform per view into the reference camera's frame,
  because the cameras are static during a recording. The frame offset (and optionally a rate)
  is chosen by minimising the robust Procrustes distance between the reference and the
  resampled view - re-fitting the rigid transform for every candidate, so the criterion is
  invariant to the unknown view change - then the transform is re-fitted on the whole
  timeline. The fit is an iteratively reweighted Kabsch that minimises the mean per-joint
  Euclidean distance (an L1 fit: a tracking failure pulls it linearly, not quadratically).
* ``mode="body"``: every view is pre-normalized into its own body frame
  (:func:`~skeleton_attention.skeletons.normalize.pre_normalize`) and the offset is chosen by
  the mean per-joint distance of those body-frame sequences; no camera transform.

Bodies are matched across views by trying their permutations and keeping the lowest residual.
:func:`naive_alignment` is the baseline we compare against (body frame + resampling by index).
``python -m skeleton_attention.skeletons.views <ntu_dir>`` prints the residual table for every
complete group of a user's NTU download. Method and measured numbers: ``docs/geometry.md``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.layouts import NTU25, JointLayout
from skeleton_attention.skeletons.normalize import (
    body_frame_rotation,
    centre_origin,
    joint_valid_mask,
    pre_normalize,
)
from skeleton_attention.skeletons.ntu import NtuRecording, parse_ntu_name, read_ntu_skeleton

NTU_CAMERAS = (1, 2, 3)

#: joint groups of the residual report (names of NTU25; other layouts use the names they share)
JOINT_GROUPS: dict[str, tuple[str, ...]] = {
    "torso": ("spine_base", "spine_mid", "neck", "head", "spine_shoulder", "left_shoulder",
              "right_shoulder", "left_hip", "right_hip"),
    "arms": ("left_elbow", "right_elbow", "left_wrist", "right_wrist"),
    "hands": ("left_hand", "right_hand", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb"),
    "legs": ("left_knee", "right_knee"),
    "feet": ("left_ankle", "right_ankle", "left_foot", "right_foot"),
}


# --------------------------------------------------------------------------------------------
# grouping


def parse_view_name(name: str | Path) -> tuple[str, int, str]:
    """``(group_key, camera, sample_id)`` of an NTU sample id or file path.

    ``S001C002P003R001A010.skeleton`` -> ``("S001P003R001A010", 2, "S001C002P003R001A010")``.
    Raises ``MalformedSkeletonFile(reason="bad_name")`` for anything else.
    """
    parsed = parse_ntu_name(name)
    return parsed.view_group, parsed.camera, parsed.sample_id


def group_views(names: Iterable[str]) -> dict[str, dict[int, str]]:
    """Group NTU sample ids (or file paths) by recording: ``{group_key: {camera: sample_id}}``.

    Incomplete groups are kept (check them with :func:`is_complete`); groups and cameras are
    sorted. Two entries for the same camera of one recording raise ``duplicate_sample``.
    """
    groups: dict[str, dict[int, str]] = {}
    for name in names:
        key, camera, sample_id = parse_view_name(name)
        group = groups.setdefault(key, {})
        if camera in group:
            raise MalformedSkeletonFile(
                str(name), "duplicate_sample", f"camera {camera} of {key} already given as {group[camera]}"
            )
        group[camera] = sample_id
    return {key: dict(sorted(groups[key].items())) for key in sorted(groups)}


def is_complete(group: Mapping[int, object], cameras: Sequence[int] = NTU_CAMERAS) -> bool:
    """True when the group has every camera in ``cameras``."""
    return all(c in group for c in cameras)


# --------------------------------------------------------------------------------------------
# geometry helpers


def resample_frames(
    coords: np.ndarray, valid: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of (M, T, V, C) at fractional frame ``positions`` (T',).

    Returns ``(values (M, T', V, C), ok (M, T', V))``. A value is ok when its position lies in
    ``[0, T-1]`` and both neighbouring frames are valid for that joint (only the nearer one
    when the position is integral); values that are not ok are zero.
    """
    num_frames = coords.shape[1]
    pos = np.asarray(positions, dtype=np.float64)
    eps = 1e-6
    inside = (pos >= -eps) & (pos <= num_frames - 1 + eps)
    p = np.clip(pos, 0.0, num_frames - 1)
    i0 = np.floor(p + eps).astype(np.intp)
    i0 = np.minimum(i0, num_frames - 1)
    frac = p - i0
    frac[frac < eps] = 0.0
    i1 = np.minimum(i0 + 1, num_frames - 1)
    a = frac[None, :, None]
    ok = valid[:, i0] & (valid[:, i1] | (a == 0)) & inside[None, :, None]
    values = (1.0 - a)[..., None] * coords[:, i0] + a[..., None] * coords[:, i1]
    values = np.where(ok[..., None], values, 0.0)
    return values, ok


def kabsch(p: np.ndarray, q: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares rotation and translation with ``q ≈ R @ p + t`` (no reflection)."""
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if total <= 0:
        raise ValueError("kabsch needs positive total weight")
    w = w / total
    mp = w @ p
    mq = w @ q
    h = (p - mp).T @ ((q - mq) * w[:, None])
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, mq - rot @ mp


RobustMode = Literal["l1", "trimmed", "none"]


def robust_rigid_fit(
    p: np.ndarray,
    q: np.ndarray,
    *,
    robust: RobustMode = "l1",
    iterations: int = 30,
    delta: float = 0.005,
    keep: float = 0.8,
    tol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rigid ``q ≈ R p + t`` robust to bad points; returns ``(R, t, residuals)``.

    ``"l1"``: iteratively reweighted Kabsch with weights ``1 / max(r, delta)``, which minimises
    the sum of Euclidean distances (``delta``, metres, caps the weight of near-exact points).
    ``"trimmed"``: re-fit on the ``keep`` fraction of smallest residuals. ``"none"``: one
    least-squares fit. Residuals are the distances of all points under the final transform.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if len(p) < 3:
        raise ValueError(f"a rigid fit needs >= 3 point pairs, got {len(p)}")
    rot, t = kabsch(p, q)
    r = np.linalg.norm(p @ rot.T + t - q, axis=1)
    if robust == "none":
        return rot, t, r
    if robust not in ("l1", "trimmed"):
        raise ValueError(f"robust must be 'l1', 'trimmed' or 'none', got {robust!r}")
    for _ in range(iterations):
        w = 1.0 / np.maximum(r, delta) if robust == "l1" else (r <= np.quantile(r, keep)).astype(np.float64)
        new_rot, new_t = kabsch(p, q, w)
        change = np.abs(new_rot - rot).max() + np.abs(new_t - t).max()
        rot, t = new_rot, new_t
        r = np.linalg.norm(p @ rot.T + t - q, axis=1)
        if change < tol:
            break
    return rot, t, r


def rotation_angle_deg(rot: np.ndarray) -> float:
    """The angle of a rotation matrix, degrees in [0, 180]."""
    return float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))


def yaw_deg(rot: np.ndarray) -> float:
    """Horizontal angle of the view camera's optical axis in the reference camera's frame.

    Kinect camera frames have x right, y up, z forward, so the view camera's axis is
    ``rot @ (0, 0, 1)`` and its yaw is ``atan2(x, z)`` (positive: the view camera looks
    towards the reference camera's +x side).
    """
    axis = np.asarray(rot)[:, 2]
    return float(np.degrees(np.arctan2(axis[0], axis[2])))


# --------------------------------------------------------------------------------------------
# alignment


Mode = Literal["rigid", "body"]


@dataclass
class AlignedViews:
    """The views of one recording on the reference camera's timeline.

    ``coords`` (views, M, T, V, 3) in ``cameras`` order; absent views are zeros with
    ``view_mask`` False. ``joint_mask`` (views, M, T, V) says which values exist (a view may not
    cover the whole reference timeline). Per present camera: ``offsets``/``rates`` map reference
    frame t to view frame ``offset + rate * t``; ``rotations``/``translations`` map view
    coordinates to the reference camera (identity in ``body`` mode); ``body_order[c][m]`` is the
    view's body placed in slot m; ``residuals`` the mean per-joint Euclidean distance to the
    reference (metres) over joints present in both, ``joint_residuals`` the same per joint,
    ``residuals_tracked`` restricted to joints Kinect tracked (not inferred) in both views
    (NaN without tracking states).
    """

    cameras: tuple[int, ...]
    reference_camera: int
    mode: str
    coords: np.ndarray
    view_mask: np.ndarray
    joint_mask: np.ndarray
    offsets: dict[int, float] = field(default_factory=dict)
    rates: dict[int, float] = field(default_factory=dict)
    rotations: dict[int, np.ndarray] = field(default_factory=dict)
    translations: dict[int, np.ndarray] = field(default_factory=dict)
    body_order: dict[int, tuple[int, ...]] = field(default_factory=dict)
    residuals: dict[int, float] = field(default_factory=dict)
    residuals_tracked: dict[int, float] = field(default_factory=dict)
    residuals_median: dict[int, float] = field(default_factory=dict)
    joint_residuals: dict[int, np.ndarray] = field(default_factory=dict)
    joint_counts: dict[int, np.ndarray] = field(default_factory=dict)

    def group_residuals(self, camera: int, layout: JointLayout = NTU25) -> dict[str, float]:
        """Mean residual per joint group (:data:`JOINT_GROUPS`) for one camera."""
        sums = self.joint_residuals[camera] * self.joint_counts[camera]
        out = {}
        for group, names in JOINT_GROUPS.items():
            idx = [layout.index(n) for n in names if n in layout.joint_names]
            count = self.joint_counts[camera][idx].sum()
            out[group] = float(sums[idx].sum() / count) if count else float("nan")
        return out


@dataclass
class _Fit:
    cost: float
    offset: float
    rate: float
    rot: np.ndarray
    trans: np.ndarray
    perm: tuple[int, ...]


def _pad_bodies(x: np.ndarray, num_bodies: int) -> np.ndarray:
    if x.shape[0] >= num_bodies:
        return x
    pad = np.zeros((num_bodies - x.shape[0], *x.shape[1:]), dtype=x.dtype)
    return np.concatenate([x, pad], axis=0)


def _permutations(num_bodies: int, max_permuted: int) -> list[tuple[int, ...]]:
    if num_bodies <= max_permuted:
        return list(itertools.permutations(range(num_bodies)))
    return [tuple(range(num_bodies))]


def _grid(max_offset: float, estimate_rate: bool, max_rate_deviation: float, rate_steps: int):
    offsets = np.arange(-np.floor(max_offset), np.floor(max_offset) + 1.0)
    if not estimate_rate:
        return offsets, np.array([1.0])
    return offsets, np.linspace(1 - max_rate_deviation, 1 + max_rate_deviation, rate_steps)


def _core_frames(ref_len: int, view_len: int, offsets: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Reference frames every candidate maps inside the view: all candidates are scored on them."""
    t = np.arange(ref_len, dtype=np.float64)
    corners = [o + r * t for o in (offsets.min(), offsets.max()) for r in (rates.min(), rates.max())]
    lo, hi = np.min(corners, axis=0), np.max(corners, axis=0)
    return np.flatnonzero((lo >= 0) & (hi <= view_len - 1))


@dataclass
class _Scorer:
    """Scores (offset, rate, permutation) candidates for one view against the reference."""

    ref: np.ndarray
    ref_ok: np.ndarray
    view: np.ndarray
    view_ok: np.ndarray
    mode: str
    robust: RobustMode
    search_iterations: int
    min_points: int
    time_scale: float

    def pairs(self, frames, offset, rate, perm):
        frames = np.asarray(frames, dtype=np.intp)
        positions = offset + rate * frames
        values, ok = resample_frames(self.view[list(perm)], self.view_ok[list(perm)], positions)
        both = ok & self.ref_ok[:, frames]
        return values[both], self.ref[:, frames][both]

    def score(self, frames, offset, rate, perm, iterations=None) -> _Fit | None:
        p, q = self.pairs(frames, offset, rate, perm)
        if len(p) < self.min_points:
            return None
        if self.mode == "body":
            rot, trans = np.eye(3), np.zeros(3)
            r = np.linalg.norm(p - q, axis=1)
        else:
            rot, trans, r = robust_rigid_fit(
                p, q, robust=self.robust, iterations=iterations or self.search_iterations
            )
        # Geman-McClure: bounded, so a joint Kinect lost costs the same at every offset and
        # the timing is decided by the joints both cameras see
        cost = float(np.mean(r**2 / (r**2 + self.time_scale**2)))
        return _Fit(cost, float(offset), float(rate), rot, trans, tuple(perm))


def _search(
    scorer: _Scorer, ref_len: int, view_len: int, perms, offsets, rates, refine_step: float
) -> _Fit | None:
    core = _core_frames(ref_len, view_len, offsets, rates)
    if len(core) < max(10, ref_len // 4):
        # too short for the requested search range: score on each candidate's own overlap
        core = np.arange(ref_len)
    best: _Fit | None = None
    for perm in perms:
        for rate in rates:
            for offset in offsets:
                fit = scorer.score(core, offset, rate, perm)
                if fit is not None and (best is None or fit.cost < best.cost):
                    best = fit
    if best is None or refine_step <= 0:
        return best
    # sub-frame refinement around the best integer offset (and rate), same frames
    fine_offsets = best.offset + np.arange(-1.0, 1.0 + 1e-9, refine_step)
    fine_offsets = fine_offsets[(fine_offsets >= offsets.min()) & (fine_offsets <= offsets.max())]
    rate_step = (rates[1] - rates[0]) if len(rates) > 1 else 0.0
    fine_rates = best.rate + np.array([-0.5, 0.0, 0.5]) * rate_step if rate_step else [best.rate]
    for rate in fine_rates:
        for offset in fine_offsets:
            fit = scorer.score(core, offset, rate, best.perm)
            if fit is not None and fit.cost < best.cost:
                best = fit
    return best


def _residual_stats(diff_ok: np.ndarray, dist: np.ndarray, num_joints: int):
    counts = diff_ok.sum(axis=(0, 1)).astype(np.int64)
    sums = np.where(diff_ok, dist, 0.0).sum(axis=(0, 1))
    per_joint = np.divide(sums, counts, out=np.full(num_joints, np.nan), where=counts > 0)
    values = dist[diff_ok]
    mean = float(values.mean()) if values.size else float("nan")
    median = float(np.median(values)) if values.size else float("nan")
    return mean, median, per_joint, counts


def align_views(
    views: Mapping[int, np.ndarray],
    *,
    reference_camera: int = 1,
    cameras: Sequence[int] | None = None,
    mode: Mode = "rigid",
    layout: JointLayout = NTU25,
    tracked: Mapping[int, np.ndarray] | None = None,
    max_offset: float = 15.0,
    estimate_rate: bool = False,
    max_rate_deviation: float = 0.05,
    rate_steps: int = 11,
    refine_step: float = 0.25,
    robust: RobustMode = "l1",
    time_scale: float = 0.05,
    search_iterations: int = 8,
    final_iterations: int = 50,
    match_bodies: bool = True,
    max_permuted_bodies: int = 4,
    normalize_output: bool = False,
    normalize_params: Mapping[str, object] | None = None,
    min_points: int = 30,
) -> AlignedViews:
    """Align the camera views of one recording (see the module docstring for the method).

    ``views`` maps camera number -> coords (M, T, V, 3), each in its own frame and timeline,
    zeros where missing. ``cameras`` fixes the output slots (default: the given cameras,
    sorted); a slot without a view is zero with ``view_mask`` False. If the reference camera
    is absent, the first present camera of ``cameras`` is the reference.
    ``tracked`` (optional) maps camera -> (M, T, V) bool, Kinect's per-joint "tracked" state,
    only used for ``residuals_tracked``. Offsets are searched over integers in
    ``[-max_offset, max_offset]`` (and rates ``1 ± max_rate_deviation`` when
    ``estimate_rate``), then refined in ``refine_step`` frames; candidates are scored by the
    mean Geman-McClure cost ``r²/(r²+time_scale²)`` of the per-joint distances (metres) after
    a ``search_iterations`` robust fit. ``normalize_output`` (rigid
    mode) moves all aligned views into the reference view's body frame (its per-frame centre
    and its rotation, from ``normalize_params``), so they stay mutually consistent.
    """
    if not views:
        raise ValueError("align_views needs at least one view")
    cams = tuple(sorted(views)) if cameras is None else tuple(cameras)
    missing = [c for c in views if c not in cams]
    if missing:
        raise ValueError(f"views for cameras {missing} have no slot in cameras={cams}")
    present = [c for c in cams if c in views]
    ref_cam = reference_camera if reference_camera in views else present[0]
    if mode not in ("rigid", "body"):
        raise ValueError(f"mode must be 'rigid' or 'body', got {mode!r}")
    norm_params = {"center": "per_frame", "align_spine": True, "align_shoulders": True,
                   **dict(normalize_params or {}), "fill_null_frames": False}

    arrays: dict[int, np.ndarray] = {}
    for c in present:
        x = np.asarray(views[c], dtype=np.float64)
        if x.ndim != 4 or x.shape[2] != layout.num_joints or x.shape[3] < 3:
            raise ValueError(f"view {c}: coords must be (M, T, {layout.num_joints}, >=3), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"view {c}: coords contain NaN or inf")
        arrays[c] = x[..., :3]
    num_bodies = max(a.shape[0] for a in arrays.values())
    valid = {c: _pad_bodies(joint_valid_mask(a), num_bodies) for c, a in arrays.items()}
    arrays = {c: _pad_bodies(a, num_bodies) for c, a in arrays.items()}
    if mode == "body":
        arrays = {c: pre_normalize(a, layout, **norm_params).astype(np.float64) for c, a in arrays.items()}
    trk = None
    if tracked is not None:
        trk = {c: _pad_bodies(np.asarray(tracked[c], dtype=bool), num_bodies) & valid[c] for c in present}

    ref, ref_ok = arrays[ref_cam], valid[ref_cam]
    ref_len = ref.shape[1]
    frames = np.arange(ref_len, dtype=np.float64)
    out = np.zeros((len(cams), num_bodies, ref_len, layout.num_joints, 3))
    out_ok = np.zeros((len(cams), num_bodies, ref_len, layout.num_joints), dtype=bool)
    result = AlignedViews(cams, ref_cam, mode, out, np.array([c in views for c in cams]), out_ok)

    offsets, rates = _grid(max_offset, estimate_rate, max_rate_deviation, rate_steps)
    perms = _permutations(num_bodies, max_permuted_bodies) if match_bodies else [tuple(range(num_bodies))]
    for c in present:
        slot = cams.index(c)
        if c == ref_cam:
            best = _Fit(0.0, 0.0, 1.0, np.eye(3), np.zeros(3), tuple(range(num_bodies)))
        else:
            scorer = _Scorer(ref, ref_ok, arrays[c], valid[c], mode, robust, search_iterations,
                             min_points, time_scale)
            best = _search(scorer, ref_len, arrays[c].shape[1], perms, offsets, rates, refine_step)
            if best is None:
                raise ValueError(f"view {c}: fewer than {min_points} joints overlap the reference")
            if mode == "rigid":
                # the final transform: all reference frames the view covers, more iterations
                refit = scorer.score(frames, best.offset, best.rate, best.perm, iterations=final_iterations)
                best = refit if refit is not None else best
        perm = list(best.perm)
        positions = best.offset + best.rate * frames
        values, ok = resample_frames(arrays[c][perm], valid[c][perm], positions)
        values = values @ best.rot.T + best.trans
        out[slot] = np.where(ok[..., None], values, 0.0)
        out_ok[slot] = ok
        dist = np.linalg.norm(out[slot] - ref, axis=-1)
        mean, median, per_joint, counts = _residual_stats(ok & ref_ok, dist, layout.num_joints)
        result.offsets[c], result.rates[c] = best.offset, best.rate
        result.rotations[c], result.translations[c] = best.rot, best.trans
        result.body_order[c] = tuple(best.perm)
        result.residuals[c], result.residuals_median[c] = mean, median
        result.joint_residuals[c], result.joint_counts[c] = per_joint, counts
        if trk is not None:
            _, trk_ok = resample_frames(arrays[c][perm], trk[c][perm], positions)
            tmask = trk_ok & trk[ref_cam]
            result.residuals_tracked[c] = float(dist[tmask].mean()) if tmask.any() else float("nan")
        else:
            result.residuals_tracked[c] = float("nan")

    if normalize_output and mode == "rigid":
        origin = centre_origin(ref, layout.center, ref_ok, norm_params["center"])  # type: ignore[arg-type]
        rot = body_frame_rotation(ref - origin[None, :, None, :], layout, ref_ok,
                                  align_spine=bool(norm_params["align_spine"]),
                                  align_shoulders=bool(norm_params["align_shoulders"]))
        moved = (out - origin[None, None, :, None, :]) @ rot.T
        out[...] = np.where(out_ok[..., None], moved, 0.0)
    result.coords = out.astype(np.float32)
    return result


def naive_alignment(
    views: Mapping[int, np.ndarray],
    *,
    reference_camera: int = 1,
    cameras: Sequence[int] | None = None,
    layout: JointLayout = NTU25,
    tracked: Mapping[int, np.ndarray] | None = None,
) -> AlignedViews:
    """The baseline: each view pre-normalized into its own body frame (per-frame centre on the
    spine, spine -> +z, shoulders -> +x), stretched onto the reference's frame count by index
    (linear interpolation, first frame to first frame, last to last), bodies in file order."""
    cams = tuple(sorted(views)) if cameras is None else tuple(cameras)
    present = [c for c in cams if c in views]
    ref_cam = reference_camera if reference_camera in views else present[0]
    num_bodies = max(np.asarray(v).shape[0] for v in views.values())
    body = {c: _pad_bodies(pre_normalize(np.asarray(views[c])[..., :3], layout, fill_null_frames=False)
                           .astype(np.float64), num_bodies) for c in present}
    valid = {c: _pad_bodies(joint_valid_mask(np.asarray(views[c])), num_bodies) for c in present}
    ref, ref_ok = body[ref_cam], valid[ref_cam]
    ref_len = ref.shape[1]
    out = np.zeros((len(cams), num_bodies, ref_len, layout.num_joints, 3))
    out_ok = np.zeros(out.shape[:-1], dtype=bool)
    result = AlignedViews(cams, ref_cam, "naive", out, np.array([c in views for c in cams]), out_ok)
    for c in present:
        slot = cams.index(c)
        view_len = body[c].shape[1]
        rate = (view_len - 1) / (ref_len - 1) if ref_len > 1 else 1.0
        positions = np.arange(ref_len) * rate
        values, ok = resample_frames(body[c], valid[c], positions)
        out[slot], out_ok[slot] = values, ok
        dist = np.linalg.norm(values - ref, axis=-1)
        mean, median, per_joint, counts = _residual_stats(ok & ref_ok, dist, layout.num_joints)
        result.offsets[c], result.rates[c] = 0.0, float(rate)
        result.rotations[c], result.translations[c] = np.eye(3), np.zeros(3)
        result.body_order[c] = tuple(range(num_bodies))
        result.residuals[c], result.residuals_median[c] = mean, median
        result.joint_residuals[c], result.joint_counts[c] = per_joint, counts
        if tracked is not None:
            t_ref = _pad_bodies(np.asarray(tracked[ref_cam], dtype=bool), num_bodies) & ref_ok
            t_view = _pad_bodies(np.asarray(tracked[c], dtype=bool), num_bodies) & valid[c]
            _, trk_ok = resample_frames(body[c], t_view, positions)
            tmask = trk_ok & t_ref
            result.residuals_tracked[c] = float(dist[tmask].mean()) if tmask.any() else float("nan")
        else:
            result.residuals_tracked[c] = float("nan")
    result.coords = out.astype(np.float32)
    return result


# --------------------------------------------------------------------------------------------
# the residual report


Loader = Callable[[Path], tuple[np.ndarray, np.ndarray | None]]


def _record_labels(recording: NtuRecording) -> list[str]:
    """Per body record, its track label: the body ID, with ``#k`` for the k-th repeat of that
    ID within one frame (the labels :func:`~skeleton_attention.skeletons.denoise.denoise_ntu`
    reports its actors with)."""
    seen: dict[tuple[int, int], int] = {}
    labels = []
    for frame, body_id in zip(recording.body_frame.tolist(), recording.body_ids.tolist(), strict=True):
        k = seen.get((frame, body_id), 0)
        seen[(frame, body_id)] = k + 1
        labels.append(str(body_id) if k == 0 else f"{body_id}#{k}")
    return labels


def stack_ntu_bodies(
    recording: NtuRecording, actors: Sequence[Sequence[str]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Bodies of a recording on its full timeline (no frame is removed, so views stay in step).

    Without ``actors`` every track (body ID) gets a slot, in order of first appearance. With
    ``actors`` (track labels per slot, e.g. ``denoise_ntu``'s ``report["actors"]``) slot k holds
    the union of its tracks. Returns ``(coords (M, T, 25, 3) float32, tracked (M, T, 25) bool)``,
    zeros / False where a body is absent; ``tracked`` is Kinect's joint state 2 (not inferred).
    """
    labels = _record_labels(recording)
    if actors is None:
        actors = [[label] for label in dict.fromkeys(labels)]
    slot_of = {label: k for k, actor in enumerate(actors) for label in actor}
    unknown = set(slot_of) - set(labels)
    if unknown:
        raise ValueError(f"{recording.path}: actor tracks {sorted(unknown)} are not in the recording")
    keep = np.array([label in slot_of for label in labels], dtype=bool)
    slots = np.array([slot_of[label] for label in labels if label in slot_of], dtype=np.intp)
    coords = np.zeros((len(actors), recording.num_frames, recording.joints.shape[1], 3), dtype=np.float32)
    tracked = np.zeros(coords.shape[:3], dtype=bool)
    coords[slots, recording.body_frame[keep]] = recording.xyz[keep]
    tracked[slots, recording.body_frame[keep]] = recording.joint_tracking[keep] == 2
    return coords, tracked


def load_ntu_view(
    path: str | Path, *, denoise: bool = True, denoise_params: Mapping[str, object] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One camera view for alignment: ``(coords (M, T, 25, 3), tracked (M, T, 25))``.

    With ``denoise`` the actors are those :func:`~skeleton_attention.skeletons.denoise.denoise_ntu`
    selects (spurious Kinect bodies dropped), but every frame is kept: ``denoise_ntu`` removes
    frames where no actor is present, which would shift this view's timeline against the others.
    """
    recording = read_ntu_skeleton(path)
    if not denoise:
        return stack_ntu_bodies(recording)
    from skeleton_attention.skeletons.denoise import denoise_ntu

    sequence, report = denoise_ntu(recording, **dict(denoise_params or {}))  # type: ignore[arg-type]
    if sequence is None:
        reason = f"no body survived denoising: {report['reason']}"
        raise MalformedSkeletonFile(str(path), "no_skeleton", reason)
    return stack_ntu_bodies(recording, report["actors"])


def view_residual_report(
    root_dir: str | Path,
    *,
    reference_camera: int = 1,
    cameras: Sequence[int] = NTU_CAMERAS,
    loader: Loader | None = None,
    align_params: Mapping[str, object] | None = None,
    layout: JointLayout = NTU25,
) -> pd.DataFrame:
    """Residual table for every complete multi-view group under ``root_dir`` (``*.skeleton``).

    One row per (group, non-reference camera): frame counts, the estimated offset, rate,
    rotation angle and yaw, and the mean per-joint residual in metres of ``naive`` (body frame
    + resampling by index), ``body`` (body frame + estimated offset), ``rigid`` (one rigid
    transform + estimated offset, the default of :func:`align_views`), plus ``rigid``'s median,
    its residual on tracked joints (when the loader returns tracking states) and per joint group.
    """
    root = Path(root_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    files = sorted(root.glob("*.skeleton"))
    paths = {parse_view_name(p.name)[2]: p for p in files}
    groups = group_views(paths)
    load = loader or load_ntu_view
    rows = []
    for key, group in groups.items():
        if not is_complete(group, cameras):
            continue
        loaded = {c: load(paths[group[c]]) for c in cameras}
        coords = {c: v[0] for c, v in loaded.items()}
        have_states = all(v[1] is not None for v in loaded.values())
        tracked = {c: v[1] for c, v in loaded.items()} if have_states else None
        params = dict(align_params or {})
        naive = naive_alignment(coords, reference_camera=reference_camera, cameras=cameras,
                                layout=layout, tracked=tracked)
        body = align_views(coords, reference_camera=reference_camera, cameras=cameras, mode="body",
                           layout=layout, tracked=tracked, **params)  # type: ignore[arg-type]
        rigid = align_views(coords, reference_camera=reference_camera, cameras=cameras, mode="rigid",
                            layout=layout, tracked=tracked, **params)  # type: ignore[arg-type]
        for c in cameras:
            if c == rigid.reference_camera:
                continue
            row: dict[str, object] = {
                "group": key, "camera": c, "reference": rigid.reference_camera,
                "frames_ref": int(coords[rigid.reference_camera].shape[1]),
                "frames_view": int(coords[c].shape[1]), "bodies": int(rigid.coords.shape[1]),
                "offset": rigid.offsets[c], "rate": rigid.rates[c],
                "rotation_deg": rotation_angle_deg(rigid.rotations[c]),
                "yaw_deg": yaw_deg(rigid.rotations[c]),
                "naive_m": naive.residuals[c], "body_m": body.residuals[c], "rigid_m": rigid.residuals[c],
                "rigid_median_m": rigid.residuals_median[c],
                "naive_tracked_m": naive.residuals_tracked[c], "rigid_tracked_m": rigid.residuals_tracked[c],
            }
            row.update({f"rigid_{g}_m": v for g, v in rigid.group_residuals(c, layout).items()})
            row.update({f"naive_{g}_m": v for g, v in naive.group_residuals(c, layout).items()})
            rows.append(row)
    return pd.DataFrame(rows)


CHECK_VIEWS_DESCRIPTION = (
    "Align the C001-C003 views of every complete NTU recording in a directory and print per-view "
    "residuals (metres): naive body-frame check vs rigid camera alignment."
)


def add_report_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of the residual report (shared by ``skeleton-attention check-views``)."""
    parser.add_argument("ntu_dir", type=Path, help="directory holding NTU .skeleton files")
    parser.add_argument("--reference", type=int, default=1, help="reference camera (default 1)")
    parser.add_argument("--max-offset", type=float, default=15.0, help="frame offset search range")
    parser.add_argument("--rate", action="store_true", help="also estimate a frame-rate ratio")
    parser.add_argument("--groups", action="store_true", help="also print residuals per joint group")
    return parser


def print_report(args: argparse.Namespace) -> int:
    """Print the residual table of ``args.ntu_dir``; 0 when at least one complete group was found.

    Raises ``NotADirectoryError`` for a path that is not a directory and
    ``MalformedSkeletonFile`` for an unreadable file (the command line turns both into one line).
    """
    if not Path(args.ntu_dir).is_dir():
        raise NotADirectoryError(f"not a directory: {args.ntu_dir}")
    table = view_residual_report(
        args.ntu_dir, reference_camera=args.reference,
        align_params={"max_offset": args.max_offset, "estimate_rate": args.rate},
    )
    if table.empty:
        print(f"no complete C001-C003 group in {args.ntu_dir}", file=sys.stderr)
        return 1
    cols = ["group", "camera", "frames_ref", "frames_view", "offset", "rotation_deg", "yaw_deg",
            "naive_m", "body_m", "rigid_m", "rigid_median_m", "rigid_tracked_m"]
    if args.groups:
        cols += [c for c in table.columns if c.startswith("rigid_") and c.endswith("_m") and c not in cols]
    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.precision", 3):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        summary = table[["naive_m", "body_m", "rigid_m"]].mean()
        print(f"\nmean over {len(table)} views: naive {summary['naive_m']:.3f} m, body "
              f"{summary['body_m']:.3f} m, rigid {summary['rigid_m']:.3f} m")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m skeleton_attention.skeletons.views <ntu_dir> [--reference 1] [--rate]``."""
    parser = argparse.ArgumentParser(
        prog="python -m skeleton_attention.skeletons.views",
        description=CHECK_VIEWS_DESCRIPTION,
    )
    return print_report(add_report_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
