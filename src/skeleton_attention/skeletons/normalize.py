"""Pre-normalization of skeleton sequences (numpy in, numpy out).

3-D layouts (NTU25, KINECT20) get the 2s-AGCN pre-normalization (Shi et al., CVPR 2019,
``data_gen/preprocess.py``), re-implemented with explicit masks and safe degenerate cases:

(a) per body, drop leading null frames and loop-repeat the recorded part into trailing null
    frames (a *null* frame is one where every joint of that body is exactly zero);
(b) subtract the centre joint (``layout.center``) of the reference body, per frame or once (or
    once, the midpoint of the bodies' centre joints: ``midpoint_first_frame``);
(c) rotate so that the reference body's spine (``spine_bottom -> spine_top``) points to +z;
(d) rotate about z so that its right -> left shoulder vector points to +x;
(e) optionally (``scale="spine"``) divide by the reference body's median torso length
    (spine base -> shoulder centre), as DSTA-Net divides by the spine length, so that body size
    differences between people disappear.

2-D layouts (OpenPose18, channels ``x, y, score``) get the ST-GCN Kinetics rule instead
(:func:`normalize_2d`). :func:`normalize_sequence` dispatches on the layout.

Missing data never becomes non-zero: every step keeps joints that were missing at zero.
See ``docs/geometry.md`` for the choices and how they differ from the reference code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

from skeleton_attention.skeletons.layouts import JointLayout, get_layout
from skeleton_attention.skeletons.sequence import SkeletonSequence

CenterMode = Literal["per_frame", "first_frame", "midpoint_first_frame", "none"]
_CENTER_MODES = ("per_frame", "first_frame", "midpoint_first_frame", "none")
ScaleMode = Literal["none", "spine"]
_SCALE_MODES = ("none", "spine")
#: (bottom, top) joint names of the body-size segment for ``scale="spine"``; the first pair that a
#: layout has wins. The full torso (pelvis -> shoulder centre) is ~2x longer than the layouts'
#: ``spine_bottom -> spine_top`` (pelvis -> mid-spine), so its relative Kinect noise is smaller.
SCALE_SEGMENTS: tuple[tuple[str, str], ...] = (
    ("spine_base", "spine_shoulder"),  # NTU25 (Kinect v2)
    ("hip_center", "shoulder_center"),  # KINECT20 (Kinect v1: UTKinect, MSR Action3D)
    ("torso", "neck"),  # SBU15 (OpenNI 15 joints: no pelvis joint; mid-trunk -> neck)
)


# --------------------------------------------------------------------------------------------
# validity masks


def joint_valid_mask(coords: np.ndarray, spatial_dims: int = 3, score_channel: int | None = None) -> np.ndarray:
    """(M, T, V) bool: a joint is present.

    With ``score_channel`` a joint is present when its score is > 0 (OpenPose writes score 0
    for undetected keypoints); otherwise when any of its first ``spatial_dims`` channels is
    non-zero (readers write zeros for missing bodies and frames).
    """
    if score_channel is not None:
        return coords[..., score_channel] > 0
    x = np.asarray(coords)
    dims = min(spatial_dims, x.shape[-1])
    if dims <= 0:
        return np.zeros(x.shape[:-1], dtype=bool)
    # channel by channel: ``np.any(..., axis=-1)`` over an axis of 3 is a slow strided reduction
    # (it was the largest single cost of normalizing a sample)
    mask = x[..., 0] != 0
    for channel in range(1, dims):
        mask |= x[..., channel] != 0
    return mask


def frame_valid_mask(coords: np.ndarray, spatial_dims: int = 3, score_channel: int | None = None) -> np.ndarray:
    """(M, T) bool: the body has at least one present joint in the frame."""
    return joint_valid_mask(coords, spatial_dims, score_channel).any(axis=-1)


def _check_coords(coords: np.ndarray, layout: JointLayout, min_channels: int) -> np.ndarray:
    x = np.asarray(coords)
    if x.ndim != 4:
        raise ValueError(f"coords must be (M, T, V, C), got shape {x.shape}")
    if x.shape[2] != layout.num_joints:
        raise ValueError(f"layout {layout.name} has {layout.num_joints} joints, coords have {x.shape[2]}")
    if x.shape[3] < min_channels:
        raise ValueError(f"layout {layout.name} needs >= {min_channels} channels, coords have {x.shape[3]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("coords contain NaN or inf")
    return x


# --------------------------------------------------------------------------------------------
# (a) null frames


def fill_null_frames(coords: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per body: move the first present frame to t=0 and loop the recording into trailing gaps.

    ``valid`` is the (M, T) frame mask (default: any non-zero spatial value). The block that is
    repeated is frames ``0 .. last present`` after the shift, interior gaps included (they stay
    gaps). Bodies that are never present stay all-zero. Returns a new array.
    """
    x = np.array(coords, copy=True)
    if valid is None:
        valid = frame_valid_mask(x)
    num_frames = x.shape[1]
    for m in range(x.shape[0]):
        present = np.flatnonzero(valid[m])
        if present.size == 0:
            continue
        first, last = int(present[0]), int(present[-1])
        if first == 0 and last == num_frames - 1:
            continue  # nothing to shift or fill: the loop below would copy the body onto itself
        length = last - first + 1
        block = x[m, first : last + 1].copy()
        # loop-repeat the recorded block until the T frames are full (2s-AGCN's padding)
        reps = int(np.ceil(num_frames / length))
        x[m] = np.concatenate([block] * reps, axis=0)[:num_frames]
    return x


# --------------------------------------------------------------------------------------------
# (b) centring


def reference_body(joint_valid: np.ndarray) -> int | None:
    """Index of the body the frame is defined by: body 0, or the first present one."""
    present = joint_valid.reshape(joint_valid.shape[0], -1).any(axis=1)
    idx = np.flatnonzero(present)
    return int(idx[0]) if idx.size else None


def _nearest_fill(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Replace rows where ``ok`` is False by the nearest row where it is True (ties: earlier)."""
    if ok.all():  # the common case: every row is its own nearest
        return values
    good = np.flatnonzero(ok)
    t = np.arange(len(ok))
    pos = np.searchsorted(good, t)
    left = good[np.clip(pos - 1, 0, len(good) - 1)]
    right = good[np.clip(pos, 0, len(good) - 1)]
    nearest = np.where(np.abs(t - left) <= np.abs(right - t), left, right)
    return values[nearest]


def centre_origin(
    coords: np.ndarray, joint: int, joint_valid: np.ndarray, mode: CenterMode, dims: int = 3
) -> np.ndarray:
    """(T, dims) origin to subtract: the reference body's ``joint`` per frame or at its first frame.

    Frames where that joint is missing take the origin of the nearest frame where it is present
    (2s-AGCN subtracts zeros there, which leaves the other body uncentred). ``"none"`` gives zeros.
    ``"midpoint_first_frame"``: see :func:`midpoint_origin`.
    """
    num_frames = coords.shape[1]
    origin = np.zeros((num_frames, dims), dtype=np.float64)
    if mode == "none":
        return origin
    if mode not in _CENTER_MODES:
        raise ValueError(f"center must be one of {_CENTER_MODES}, got {mode!r}")
    if mode == "midpoint_first_frame":
        mid = midpoint_origin(coords, joint, joint_valid, dims)
        if mid is not None:
            return np.broadcast_to(mid, origin.shape).copy()
        mode = "first_frame"  # fewer than two bodies ever share a frame: the single-body rule
    ref = reference_body(joint_valid)
    if ref is None:
        return origin
    ok = joint_valid[ref, :, joint]
    if not ok.any():
        # the centre joint is never seen: fall back to the mean of the body's present joints
        ok = joint_valid[ref].any(axis=-1)
        pts = np.where(joint_valid[ref][..., None], coords[ref, :, :, :dims], 0.0).sum(axis=1)
        track = pts / np.maximum(joint_valid[ref].sum(axis=1), 1)[:, None]
    else:
        track = coords[ref, :, joint, :dims].astype(np.float64)
    if mode == "first_frame":
        return np.broadcast_to(track[np.flatnonzero(ok)[0]], origin.shape).copy()
    return _nearest_fill(track, ok)


def midpoint_origin(coords: np.ndarray, joint: int, joint_valid: np.ndarray, dims: int = 3) -> np.ndarray | None:
    """(dims,) mean of the present bodies' ``joint`` at the first frame where at least two bodies
    have it, or None when no frame has two. For an interaction (SBU) this puts the origin between
    the two people, so neither person is the privileged one at the origin (with ``first_frame``
    person 1 always starts at 0 and person 2 wherever they stood); translation is still kept."""
    has = joint_valid[:, :, joint]  # (M, T)
    frames = np.flatnonzero(has.sum(axis=0) >= 2)
    if frames.size == 0:
        return None
    t = int(frames[0])
    return coords[has[:, t], t, joint, :dims].astype(np.float64).mean(axis=0)


# --------------------------------------------------------------------------------------------
# (c), (d) rotation


def _unit(v: np.ndarray, eps: float) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return v / n if n > eps else None


def _rotation_to_z(v: np.ndarray) -> np.ndarray:
    """A rotation taking unit ``v`` onto +z: the minimal one (Rodrigues), stable for any v.

    Near v = -z the minimal rotation's axis is ill-defined, so we first flip by pi about x
    (which maps -z to +z) and then apply the minimal rotation from the flipped vector.
    """
    flip = np.eye(3)
    if v[2] < 0:
        flip = np.diag([1.0, -1.0, -1.0])
        v = flip @ v
    z = np.array([0.0, 0.0, 1.0])
    # v x z written out: the same products and differences as np.cross, without its overhead
    axis = np.array([v[1] * z[2] - v[2] * z[1], v[2] * z[0] - v[0] * z[2], v[0] * z[1] - v[1] * z[0]])
    c = float(v @ z)  # >= 0 here, so 1 + c >= 1
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return (np.eye(3) + k + k @ k / (1.0 + c)) @ flip


def _first_frame_with(joint_valid: np.ndarray, ref: int, joints: tuple[int, int]) -> int | None:
    ok = joint_valid[ref, :, joints[0]] & joint_valid[ref, :, joints[1]]
    idx = np.flatnonzero(ok)
    return int(idx[0]) if idx.size else None


def body_frame_rotation(
    coords: np.ndarray,
    layout: JointLayout,
    joint_valid: np.ndarray,
    *,
    align_spine: bool = True,
    align_shoulders: bool = True,
    eps: float = 1e-6,
) -> np.ndarray:
    """(3, 3) rotation R (apply as ``R @ p``) for steps (c) and (d).

    Both vectors are taken from the reference body at the first frame where both of their joints
    are present. Spine -> +z; then the shoulder vector, with its spine component removed, -> +x
    (a rotation about z, so the spine stays on z). Degenerate cases are skipped, not guessed:
    a spine shorter than ``eps`` skips (c); a shoulder vector parallel to the spine (or shorter
    than ``eps``) skips (d). Without (c), (d) still rotates about the camera's z axis.
    """
    rot = np.eye(3)
    ref = reference_body(joint_valid)
    if ref is None:
        return rot
    if align_spine:
        t = _first_frame_with(joint_valid, ref, (layout.spine_bottom, layout.spine_top))
        if t is not None:
            spine = coords[ref, t, layout.spine_top, :3] - coords[ref, t, layout.spine_bottom, :3]
            z_axis = _unit(spine.astype(np.float64), eps)
            if z_axis is not None:
                rot = _rotation_to_z(z_axis)
    if align_shoulders:
        t = _first_frame_with(joint_valid, ref, (layout.right_shoulder, layout.left_shoulder))
        if t is not None:
            sh = coords[ref, t, layout.left_shoulder, :3] - coords[ref, t, layout.right_shoulder, :3]
            sh = rot @ sh.astype(np.float64)
            # orthogonalise against z; the angle in the xy plane is rotated away
            xy_norm = float(np.hypot(sh[0], sh[1]))
            if xy_norm > eps * max(1.0, float(np.linalg.norm(sh))):
                c, s = sh[0] / xy_norm, sh[1] / xy_norm
                rz = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
                rot = rz @ rot
    return rot


# --------------------------------------------------------------------------------------------
# (e) body size


def scale_segment(layout: JointLayout) -> tuple[int, int]:
    """(bottom, top) joint indices of the body-size segment of ``layout`` (see ``SCALE_SEGMENTS``)."""
    for bottom, top in SCALE_SEGMENTS:
        if bottom in layout.joint_names and top in layout.joint_names:
            return layout.index(bottom), layout.index(top)
    raise ValueError(f"layout {layout.name} has none of the body-size segments {SCALE_SEGMENTS}")


def reference_length(
    coords: np.ndarray, layout: JointLayout, joint_valid: np.ndarray, eps: float = 1e-6
) -> float | None:
    """Median over frames of the reference body's torso length (``scale_segment``), or None.

    Only frames where both joints are present count; the median ignores the odd frame where
    Kinect mis-tracks the shoulders. None when the body or the segment is never seen, or the
    median is not above ``eps`` (a degenerate skeleton is left unscaled rather than blown up).
    """
    ref = reference_body(joint_valid)
    if ref is None:
        return None
    bottom, top = scale_segment(layout)
    ok = joint_valid[ref, :, bottom] & joint_valid[ref, :, top]
    if not ok.any():
        return None
    seg = coords[ref, ok, top, :3].astype(np.float64) - coords[ref, ok, bottom, :3]
    length = float(np.median(np.linalg.norm(seg, axis=-1)))
    return length if length > eps else None


# --------------------------------------------------------------------------------------------
# public entry points


def pre_normalize(
    coords: np.ndarray,
    layout: JointLayout,
    *,
    fill_null_frames: bool = True,
    center: CenterMode = "per_frame",
    align_spine: bool = True,
    align_shoulders: bool = True,
    scale: ScaleMode = "none",
    eps: float = 1e-6,
) -> np.ndarray:
    """2s-AGCN pre-normalization of (M, T, V, C) 3-D coordinates; returns float32, same shape.

    Only the first three channels are transformed; extra channels (if any) are copied. Joints
    that are missing (all-zero xyz) stay zero. The result is invariant to any rotation and
    translation of the input when ``center != "none"`` and both alignments are on.
    ``scale="spine"`` divides all bodies by one per-sample length (:func:`reference_length`,
    measured on the input before filling so that every recorded frame counts once), which makes
    the result also invariant to uniform scaling; ``"none"`` keeps metres.
    """
    if layout.spatial_dims != 3:
        raise ValueError(f"pre_normalize needs a 3-D layout; {layout.name} is {layout.spatial_dims}-D")
    x = _check_coords(coords, layout, 3).astype(np.float64)
    if center not in _CENTER_MODES:
        raise ValueError(f"center must be one of {_CENTER_MODES}, got {center!r}")
    if scale not in _SCALE_MODES:
        raise ValueError(f"scale must be one of {_SCALE_MODES}, got {scale!r}")
    valid = joint_valid_mask(x)
    length = reference_length(x, layout, valid, eps) if scale == "spine" else None
    if fill_null_frames:
        frames = valid.any(axis=-1)
        if not frames.all():  # a body present in every frame needs neither a shift nor a fill
            x = _fill(x, frames)
            valid = joint_valid_mask(x)
    origin = centre_origin(x, layout.center, valid, center)
    xyz = x[..., :3] - origin[None, :, None, :]
    rot = body_frame_rotation(xyz, layout, valid, align_spine=align_spine, align_shoulders=align_shoulders, eps=eps)
    xyz = xyz @ rot.T
    if length is not None:
        xyz = xyz / length
    # xyz is a new array: zeroing its missing joints in place gives np.where(valid, xyz, 0.0)'s
    # values without broadcasting the mask over a last axis of 3
    xyz[~valid] = 0.0
    x[..., :3] = xyz
    return x.astype(np.float32)


_fill = fill_null_frames  # the keyword argument of pre_normalize shadows the function name


def normalize_2d(
    coords: np.ndarray,
    layout: JointLayout,
    *,
    image_center: float | None = 0.5,
    flip_y: bool = True,
    score_threshold: float = 0.0,
    center: CenterMode = "none",
) -> np.ndarray:
    """ST-GCN's Kinetics rule for (M, T, V, 3) ``x, y, score`` keypoints in [0, 1] image units.

    x, y minus ``image_center`` (``None`` skips), y negated when ``flip_y`` (image y points down;
    this makes +y up as in ST-GCN's feeder), and x, y (and the score) set to 0 where
    score <= ``score_threshold``. ``center="per_frame"|"first_frame"`` additionally subtracts the
    reference body's ``layout.center`` joint (the neck), like step (b) of the 3-D path.
    """
    if layout.spatial_dims != 2:
        raise ValueError(f"normalize_2d needs a 2-D layout; {layout.name} is {layout.spatial_dims}-D")
    x = _check_coords(coords, layout, 3).astype(np.float64)
    if center not in _CENTER_MODES:
        raise ValueError(f"center must be one of {_CENTER_MODES}, got {center!r}")
    valid = x[..., 2] > score_threshold
    xy = x[..., :2]
    if image_center is not None:
        xy = xy - image_center
    if flip_y:
        xy = xy * np.array([1.0, -1.0])
    origin = centre_origin(xy, layout.center, valid, center, dims=2)
    xy = xy - origin[None, :, None, :]
    x[..., :2] = np.where(valid[..., None], xy, 0.0)
    x[..., 2] = np.where(valid, x[..., 2], 0.0)
    return x.astype(np.float32)


_PARAMS_3D = ("fill_null_frames", "center", "align_spine", "align_shoulders", "scale", "eps")
_PARAMS_2D = ("image_center", "flip_y", "score_threshold", "center")
_METHODS = {"pre_normalize": 3, "normalize_2d": 2}


def normalize_sequence(seq: SkeletonSequence, params: Mapping[str, object] | None = None) -> SkeletonSequence:
    """Normalize a sample according to its layout's dimensionality.

    ``params`` are the keyword arguments of :func:`pre_normalize` (3-D layouts) or
    :func:`normalize_2d` (2-D layouts), flat; optional sub-mappings ``"3d"`` / ``"2d"`` let one
    config serve both kinds (the matching one is merged over the flat keys). ``method`` may name
    the function (``"pre_normalize"``, ``"normalize_2d"``; a mismatch with the layout raises) or
    be ``"none"``; ``enabled: false`` does the same as ``"none"``: the sample is returned
    unchanged. Unknown keys raise ``ValueError``.
    """
    layout = get_layout(seq.layout)
    raw = dict(params or {})
    sub = raw.pop("3d" if layout.spatial_dims == 3 else "2d", None) or {}
    raw.pop("2d" if layout.spatial_dims == 3 else "3d", None)
    raw.update(dict(sub))
    method = raw.pop("method", None)
    if not raw.pop("enabled", True) or method == "none":
        return seq
    if method is not None:
        if method not in _METHODS:
            raise ValueError(f"unknown normalization method {method!r}; known: {[*_METHODS, 'none']}")
        if _METHODS[str(method)] != layout.spatial_dims:
            raise ValueError(
                f"normalization method {method!r} does not apply to the {layout.spatial_dims}-D layout {layout.name}"
            )
    allowed = _PARAMS_3D if layout.spatial_dims == 3 else _PARAMS_2D
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ValueError(f"unknown normalization parameter(s) {unknown} for {layout.name}; allowed {allowed}")
    if layout.spatial_dims == 3:
        out = pre_normalize(seq.coords, layout, **raw)  # type: ignore[arg-type]
    else:
        out = normalize_2d(seq.coords, layout, **raw)  # type: ignore[arg-type]
    return seq.with_coords(out)
