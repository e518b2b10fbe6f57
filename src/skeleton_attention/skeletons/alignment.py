"""Multi-view alignment maths: put the views of one recording on a common timeline and frame.

Data-set independent (NTU and N-UCLA use it; :mod:`~skeleton_attention.skeletons.views` holds the
grouping, the NTU loader and the residual report). :func:`align_views` puts the views of one
recording on the reference camera's timeline and into a common frame:

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

:func:`multiview_frame` then picks the spatial frame the stacked views are handed over in
(``body``, ``camera`` or ``aligned``). Bodies are matched across views by trying their
permutations and keeping the lowest residual. :func:`naive_alignment` is the baseline we compare
against (body frame + resampling by index). Method and measured numbers: ``docs/geometry.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from skeleton_attention.skeletons.alignment_search import (
    Scorer,
    SearchBudget,
    _Fit,
    final_fit,
    grid,
    permutations,
    resample_frames,
    resample_mask,
    search,
)
from skeleton_attention.skeletons.layouts import NTU25, JointLayout
from skeleton_attention.skeletons.normalize import (
    body_frame_rotation,
    centre_origin,
    joint_valid_mask,
    pre_normalize,
)
from skeleton_attention.skeletons.rigid_batch import RobustMode, kabsch, robust_rigid_fit

# the search's names stay importable from here (views.py re-exports them; tests patch the scorer)
_Scorer = Scorer
__all__ = [
    "FRAMES",
    "JOINT_GROUPS",
    "AlignedViews",
    "Frame",
    "Mode",
    "RatePrior",
    "RobustMode",
    "SearchBudget",
    "align_views",
    "kabsch",
    "multiview_frame",
    "naive_alignment",
    "resample_frames",
    "robust_rigid_fit",
    "rotation_angle_deg",
    "yaw_deg",
]

#: joint groups of the residual report (names of NTU25; other layouts use the names they share)
JOINT_GROUPS: dict[str, tuple[str, ...]] = {
    "torso": (
        "spine_base",
        "spine_mid",
        "neck",
        "head",
        "spine_shoulder",
        "left_shoulder",
        "right_shoulder",
        "left_hip",
        "right_hip",
        "hip_center",
        "spine",
        "shoulder_center",
    ),
    "arms": ("left_elbow", "right_elbow", "left_wrist", "right_wrist"),
    "hands": ("left_hand", "right_hand", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb"),
    "legs": ("left_knee", "right_knee"),
    "feet": ("left_ankle", "right_ankle", "left_foot", "right_foot"),
}


# --------------------------------------------------------------------------------------------
# geometry helpers


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
RatePrior = Literal["unit", "length_ratio"]
#: the spatial frame the stacked views of a multi-view table are handed over in
Frame = Literal["body", "camera", "aligned"]
FRAMES: tuple[str, ...] = ("body", "camera", "aligned")


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
    (NaN without tracking states). ``camera_coords`` (float64, same shape as ``coords``), only with
    ``align_views(keep_camera_frame=True)``: the views resampled onto the reference timeline but
    left in their own camera frames (``joint_mask`` applies).
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
    #: the spatial frame of ``coords`` when built by :func:`multiview_frame` (``""`` otherwise)
    frame: str = ""
    camera_coords: np.ndarray | None = field(default=None, repr=False)

    def group_residuals(self, camera: int, layout: JointLayout = NTU25) -> dict[str, float]:
        """Mean residual per joint group (:data:`JOINT_GROUPS`) for one camera."""
        sums = self.joint_residuals[camera] * self.joint_counts[camera]
        out = {}
        for group, names in JOINT_GROUPS.items():
            idx = [layout.index(n) for n in names if n in layout.joint_names]
            count = self.joint_counts[camera][idx].sum()
            out[group] = float(sums[idx].sum() / count) if count else float("nan")
        return out


def _pad_bodies(x: np.ndarray, num_bodies: int) -> np.ndarray:
    if x.shape[0] >= num_bodies:
        return x
    pad = np.zeros((num_bodies - x.shape[0], *x.shape[1:]), dtype=x.dtype)
    return np.concatenate([x, pad], axis=0)


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
    rate_prior: RatePrior = "unit",
    min_overlap: float = 0.0,
    coarse_step: int = 1,
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
    search_frame_step: int = 1,
    shortlist: int = 0,
    shortlist_iterations: int = 0,
    final_tol: float = 1e-7,
    keep_camera_frame: bool = False,
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
    a ``search_iterations`` robust fit. ``rate_prior="length_ratio"`` centres the rate grid on
    ``(T_view - 1) / (T_ref - 1)`` instead of 1 (N-UCLA: the views of one recording differ in
    frame count by a median factor of 1.7, so they are not one clock with a shifted start);
    ``min_overlap`` (0-1) rejects candidates that map less than that share of the reference
    frames into the view or cover less than that share of the view. ``coarse_step`` > 1 scores
    every ``coarse_step``-th integer offset, then the integers next to the best (a wide offset
    range at a fraction of the cost). ``normalize_output`` (rigid
    mode) moves all aligned views into the reference view's body frame (its per-frame centre
    and its rotation, from ``normalize_params``), so they stay mutually consistent.
    ``search_frame_step``, ``shortlist``, ``shortlist_iterations`` and ``final_tol`` set how much
    work the search does (:class:`~skeleton_attention.skeletons.alignment_search.SearchBudget`;
    the defaults are the exhaustive search, the pipelines set cheaper ones: docs/performance.md §3).
    ``keep_camera_frame`` also keeps every view resampled onto the reference timeline in its own
    camera frame (``camera_coords``; ``mode="rigid"`` only), which :func:`multiview_frame` hands over.
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
    budget = SearchBudget(search_frame_step, shortlist, shortlist_iterations, final_tol)
    for name, value in (("search_iterations", search_iterations), ("final_iterations", final_iterations)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"align_views: {name} must be an integer >= 1, got {value!r}")
    if isinstance(min_points, bool) or not isinstance(min_points, (int, np.integer)) or min_points < 3:
        # fewer than three joints leave the rotation undetermined (a line or a point)
        raise ValueError(f"align_views: min_points must be an integer >= 3, got {min_points!r}")
    norm_params = {
        "center": "per_frame",
        "align_spine": True,
        "align_shoulders": True,
        **dict(normalize_params or {}),
        "fill_null_frames": False,
    }

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
    if keep_camera_frame:
        if mode != "rigid":
            raise ValueError("align_views: keep_camera_frame needs mode='rigid' (body mode resamples body frames)")
        result.camera_coords = np.zeros_like(out)

    if rate_prior not in ("unit", "length_ratio"):
        raise ValueError(f"rate_prior must be 'unit' or 'length_ratio', got {rate_prior!r}")
    perms = permutations(num_bodies, max_permuted_bodies) if match_bodies else [tuple(range(num_bodies))]
    for c in present:
        slot = cams.index(c)
        if c == ref_cam:
            best = _Fit(0.0, 0.0, 1.0, np.eye(3), np.zeros(3), tuple(range(num_bodies)))
        else:
            view_len = arrays[c].shape[1]
            center = (view_len - 1) / (ref_len - 1) if rate_prior == "length_ratio" and ref_len > 1 else 1.0
            offsets, rates = grid(max_offset, estimate_rate, max_rate_deviation, rate_steps, center)
            scorer = Scorer(ref, ref_ok, arrays[c], valid[c], mode, robust, search_iterations, min_points, time_scale)
            best = search(
                scorer, ref_len, view_len, perms, offsets, rates, refine_step, min_overlap, coarse_step, budget
            )
            if best is None:
                raise ValueError(f"view {c}: fewer than {min_points} joints overlap the reference")
            if mode == "rigid":
                # the final transform: all reference frames the view covers, more iterations
                best = final_fit(scorer, ref_len, best, final_iterations, budget)
        perm = list(best.perm)
        positions = best.offset + best.rate * frames
        values, ok = resample_frames(arrays[c][perm], valid[c][perm], positions)
        if result.camera_coords is not None:
            result.camera_coords[slot] = values
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
            tmask = resample_mask(trk[c][perm], positions) & trk[ref_cam]
            result.residuals_tracked[c] = float(dist[tmask].mean()) if tmask.any() else float("nan")
        else:
            result.residuals_tracked[c] = float("nan")

    if normalize_output and mode == "rigid":
        origin = centre_origin(ref, layout.center, ref_ok, norm_params["center"])  # type: ignore[arg-type]
        rot = body_frame_rotation(
            ref - origin[None, :, None, :],
            layout,
            ref_ok,
            align_spine=bool(norm_params["align_spine"]),
            align_shoulders=bool(norm_params["align_shoulders"]),
        )
        moved = (out - origin[None, None, :, None, :]) @ rot.T
        out[...] = np.where(out_ok[..., None], moved, 0.0)
    result.coords = out.astype(np.float32)
    return result


def multiview_frame(
    views: Mapping[int, np.ndarray],
    frame: Frame = "body",
    *,
    reference_camera: int = 1,
    cameras: Sequence[int] | None = None,
    layout: JointLayout = NTU25,
    tracked: Mapping[int, np.ndarray] | None = None,
    normalize_params: Mapping[str, object] | None = None,
    **align_params: object,
) -> AlignedViews:
    """The views of one recording on the reference timeline, in the spatial frame ``frame``.

    The timing (offset, rate, body matching) and the residuals always come from the rigid
    alignment (:func:`align_views` ``mode="rigid"``): its criterion is invariant to the camera
    change, so it is the best estimate of which frames correspond whatever frame is handed over.
    What differs is the space each view's coordinates are expressed in:

    * ``"body"``: each view pre-normalized in ITS OWN body frame (per-frame centre joint at the
      origin, spine -> +z, shoulders -> +x; ``normalize_params``); views stay as different as
      the cameras saw them, minus position and facing.
    * ``"camera"``: each view in its own camera frame, metres, untouched apart from resampling.
    * ``"aligned"``: every view rigidly moved into the reference camera and then into the
      reference view's body frame (``normalize_output=True``).

    ``rotations``/``translations`` report the estimated view -> reference transform in every
    case (applied only for ``"aligned"``). Absent views are zero slots with ``view_mask`` False.
    """
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    result = align_views(
        views,
        reference_camera=reference_camera,
        cameras=cameras,
        mode="rigid",
        layout=layout,
        tracked=tracked,
        normalize_output=frame == "aligned",
        normalize_params=normalize_params,
        keep_camera_frame=frame != "aligned",
        **align_params,  # type: ignore[arg-type]
    )
    result.frame = frame
    if frame == "aligned":
        return result
    camera, result.camera_coords = result.camera_coords, None  # handed over as coords, not kept twice
    norm_params = {
        "center": "per_frame",
        "align_spine": True,
        "align_shoulders": True,
        **dict(normalize_params or {}),
        "fill_null_frames": False,
    }
    out = np.zeros(result.coords.shape, dtype=np.float64)
    for c in result.offsets:
        slot = result.cameras.index(c)
        values, ok = camera[slot], result.joint_mask[slot]
        if frame == "body":
            values = pre_normalize(values, layout, **norm_params)  # type: ignore[arg-type]
        out[slot] = np.where(ok[..., None], values, 0.0)
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
    body = {
        c: _pad_bodies(
            pre_normalize(np.asarray(views[c])[..., :3], layout, fill_null_frames=False).astype(np.float64), num_bodies
        )
        for c in present
    }
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
            tmask = resample_mask(t_view, positions) & t_ref
            result.residuals_tracked[c] = float(dist[tmask].mean()) if tmask.any() else float("nan")
        else:
            result.residuals_tracked[c] = float("nan")
    result.coords = out.astype(np.float32)
    return result
