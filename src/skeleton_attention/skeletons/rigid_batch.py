"""Robust rigid fits, one at a time and many at once (the candidate scoring of the multi-view alignment).

:func:`robust_rigid_fit` fits one point set at a time, and
the offset search of :func:`~skeleton_attention.skeletons.alignment.align_views` calls it for every
candidate (offset, rate, body order): about 30 candidates x 9 weighted Kabsch steps per view, each
a dozen small numpy calls, which made alignment 0.03-0.08 s per recording (docs/performance.md).
Here all candidates of a search step go through the same iteratively reweighted Kabsch together,
as (K, 3, N) arrays (the coordinate axis second, so that every per-point operation runs over
contiguous memory), with a mask for the points a candidate does not have.

Same method, same stopping rule per candidate (a candidate that has converged is frozen while the
others iterate); only the order of the floating-point sums differs, so results agree with the
one-at-a-time fit to about 1e-12 (``tests/test_alignment_batch.py`` checks 1e-6 on real views).

The weighted cross-covariance comes from one batched matrix product of the points with the weighted
reference points, each with a row of ones appended (it yields the weighted sums of p, q, p q^T and
the weights at once). The points are centred on their unweighted mean first, so that subtracting
the weighted means' product does not cancel digits.

When the optional C extension ``_rigid_fast`` is built (``COMPILED_FITS_AVAILABLE``), the
reweighting loop runs there, candidate by candidate, with the same method and stopping rule: numpy
spends most of this loop on call overhead, since each call works on a few thousand numbers
(docs/performance.md §3). Its sums run in a different order and it finds the rotation with Horn's
quaternion instead of an SVD, so it agrees with the numpy loop to about 1e-12, not bit for bit
(``tests/test_rigid_fast.py``). The environment variable ``SKELETON_ATTENTION_NUMPY_FITS=1`` (or
``USE_COMPILED_FITS = False`` in the process) runs the numpy loop instead.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

try:
    from . import _rigid_fast
except ImportError:  # no C compiler at install time: the numpy loop runs
    _rigid_fast = None

#: the optional C extension of the reweighting loop is built
COMPILED_FITS_AVAILABLE: bool = _rigid_fast is not None
#: run the reweighting loop in C when it is built (False: numpy, for comparisons and tests)
USE_COMPILED_FITS: bool = COMPILED_FITS_AVAILABLE
#: set to "1" to run the numpy loop although the extension is built (read at every call)
NUMPY_FITS_ENV = "SKELETON_ATTENTION_NUMPY_FITS"


def compiled_fits_enabled() -> bool:
    """The fits run in the C extension: it is built, ``USE_COMPILED_FITS`` and no ``NUMPY_FITS_ENV``."""
    return _rigid_fast is not None and USE_COMPILED_FITS and os.environ.get(NUMPY_FITS_ENV, "") != "1"


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


def _kabsch_from_sums(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (K, 3, 3) and translations (K, 3) from the (K, 4, 4) weighted sums of
    ``[p; 1] [1; q]^T``: ``sums[:, :3, 0]`` = sum w p, ``sums[:, :3, 1:]`` = sum w p q^T,
    ``sums[:, 3, 0]`` = sum w, ``sums[:, 3, 1:]`` = sum w q. The rotation is the one
    :func:`kabsch` returns: no reflection.
    """
    total = sums[:, 3, 0]
    mp = sums[:, :3, 0] / total[:, None]
    mq = sums[:, 3, 1:] / total[:, None]
    h = sums[:, :3, 1:] / total[:, None, None] - mp[:, :, None] * mq[:, None, :]
    u, _, vt = np.linalg.svd(h)
    v = np.swapaxes(vt, 1, 2)
    d = np.sign(np.linalg.det(v @ np.swapaxes(u, 1, 2)))
    d[d == 0] = 1.0
    v[:, :, 2] *= d[:, None]  # v @ diag(1, 1, d)
    rot = v @ np.swapaxes(u, 1, 2)
    return rot, mq - np.einsum("kij,kj->ki", rot, mp)


def candidate_fits(
    values: np.ndarray,
    ok: np.ndarray,
    ref: np.ndarray,
    ref_ok: np.ndarray,
    *,
    rigid: bool,
    robust: str,
    iterations: int,
    min_points: int,
    time_scale: float,
    tol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit and score K candidates: the view resampled per candidate, ``values`` (M, K, F, V, 3) and
    ``ok`` (M, K, F, V), against the reference frames ``ref`` (M, F, V, 3), ``ref_ok`` (M, F, V).

    Returns ``(kept, costs, R, t)``: the candidates with at least ``min_points`` joints present in
    both, their mean Geman-McClure cost ``r²/(r²+time_scale²)`` over those joints, and their fit
    (identity without ``rigid``: the body-frame mode compares the coordinates as they are).
    ``tol``: a fit stops when its rotation and translation move less than this in one step.
    """
    both = ok & ref_ok[:, None]
    mask = np.moveaxis(both, 1, 0).reshape(both.shape[1], -1)
    keep = np.flatnonzero(mask.sum(axis=1) >= min_points)
    if keep.size == 0:
        return keep, np.zeros(0), np.zeros((0, 3, 3)), np.zeros((0, 3))
    # (K, 3, M*F*V): each candidate's points in the order values[both] lists them
    p = np.ascontiguousarray(np.moveaxis(values, (1, 4), (0, 1))[keep].reshape(len(keep), 3, -1))
    q = np.broadcast_to(np.moveaxis(ref, 3, 0).reshape(3, -1), p.shape)
    mask = mask[keep]
    if rigid:
        rot, trans, r = batched_robust_fit(p, q, mask, robust=robust, iterations=iterations, tol=tol)
    else:
        rot, trans = np.broadcast_to(np.eye(3), (len(keep), 3, 3)), np.zeros((len(keep), 3))
        diff = p - q
        r = np.sqrt(np.einsum("kdn,kdn->kn", diff, diff))
    r2 = r * r
    costs = np.where(mask, r2 / (r2 + time_scale**2), 0.0).sum(axis=1) / mask.sum(axis=1)
    return keep, costs, rot, trans


def compiled_candidate_fits(
    view: np.ndarray,
    view_ok: np.ndarray,
    ref: np.ndarray,
    ref_ok: np.ndarray,
    positions: np.ndarray,
    *,
    rigid: bool,
    robust: str,
    iterations: int,
    min_points: int,
    time_scale: float,
    tol: float = 1e-7,
    delta: float = 0.005,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`candidate_fits` of the view resampled at ``positions``, in the C extension.

    ``view`` (M, T, V, 3) and ``view_ok`` (M, T, V) are the whole view, ``positions`` (K, F) the
    fractional view frames of each candidate at the reference frames of ``ref`` (M, F, V, 3),
    ``ref_ok`` (M, F, V). The extension interpolates as ``alignment_search.resample_frames`` does
    (the same values, bit for bit), gathers the joints present in both and fits and scores each
    candidate without building the (M, K, F, V, 3) array. Returns what :func:`candidate_fits`
    returns. Needs ``COMPILED_FITS_AVAILABLE``.
    """
    if _rigid_fast is None:
        raise RuntimeError("the C extension _rigid_fast is not built (rigid_batch.COMPILED_FITS_AVAILABLE)")
    if robust not in ("l1", "none"):
        raise ValueError(f"batched fits support robust='l1' or 'none', got {robust!r}")
    if min_points < 3:  # the extension's fit needs three points; no candidate is dropped unsaid
        raise ValueError(f"compiled fits need min_points >= 3, got {min_points}")
    view = np.ascontiguousarray(view, dtype=np.float64)
    ref = np.ascontiguousarray(ref, dtype=np.float64)
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    bodies, view_frames, joints = view.shape[:3]
    count, frames = positions.shape
    counts, costs = np.empty(count), np.empty(count)
    rot, trans = np.empty((count, 3, 3)), np.empty((count, 3))
    _rigid_fast.score(
        (bodies, view_frames, frames, joints, count),
        view,
        np.ascontiguousarray(view_ok, dtype=bool),
        ref,
        np.ascontiguousarray(ref_ok, dtype=bool),
        positions,
        counts,
        costs,
        rot,
        trans,
        int(rigid),
        int(min_points),
        int(iterations) if robust == "l1" else 0,
        float(delta),
        float(tol),
        float(time_scale),
    )
    keep = np.flatnonzero(counts >= min_points)
    return keep, costs[keep], rot[keep], trans[keep]


def batched_robust_fit(
    p: np.ndarray,
    q: np.ndarray,
    mask: np.ndarray,
    *,
    robust: str = "l1",
    iterations: int = 30,
    delta: float = 0.005,
    tol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K robust rigid fits ``q ≈ R p + t``: ``p``, ``q`` (K, 3, N), ``mask`` (K, N) the points each has.

    ``robust`` is ``"l1"`` (iteratively reweighted Kabsch, weights ``1 / max(r, delta)``) or
    ``"none"`` (one least-squares fit), as in :func:`robust_rigid_fit`. Every fit needs
    at least 3 points. Returns ``(R (K, 3, 3), t (K, 3), residuals (K, N))``; residuals of points
    outside the mask are meaningless.
    """
    if robust not in ("l1", "none"):
        raise ValueError(f"batched fits support robust='l1' or 'none', got {robust!r}")
    weights = mask.astype(np.float64)
    count = weights.sum(axis=1)
    if np.any(count < 3):
        raise ValueError("a rigid fit needs >= 3 point pairs")
    num_points = mask.shape[1]
    columns = np.flatnonzero(mask.any(axis=0))
    if columns.size < num_points:  # points no candidate has (an absent body, say) cost time only
        p, q, mask, weights = p[:, :, columns], q[:, :, columns], mask[:, columns], weights[:, columns]
    # centre on the unweighted means: R is unchanged, t is mapped back at the end
    cp = np.einsum("kdn,kn->kd", p, weights) / count[:, None]
    cq = np.einsum("kdn,kn->kd", q, weights) / count[:, None]
    # one (K, 7, N) array [p; 1; q] (centred): the weighted sums and the residual vectors are then
    # each one batched matrix product over it
    x = np.empty((len(p), 7, p.shape[2]))
    np.subtract(p, cp[:, :, None], out=x[:, :3])
    x[:, 3] = 1.0
    np.subtract(q, cq[:, :, None], out=x[:, 4:])
    if compiled_fits_enabled():
        return _compiled_fits(x, weights, cp, cq, robust, iterations, delta, tol, columns, num_points)
    rot, tc = _kabsch_from_sums(_weighted_sums(x, weights))
    t = _to_original(rot, tc, cp, cq)
    r = _residuals(rot, tc, x)
    if robust == "none":
        return rot, t, _scatter(r, columns, num_points)
    rows = np.arange(len(p))  # the candidates still iterating; the arrays below hold only those
    out_rot, out_t, out_r = rot.copy(), t.copy(), r.copy()
    for _ in range(iterations):
        w = np.maximum(r, delta)
        np.divide(weights, w, out=w)
        new_rot, new_tc = _kabsch_from_sums(_weighted_sums(x, w))
        new_t = _to_original(new_rot, new_tc, cp, cq)
        change = np.abs(new_rot - rot).max(axis=(1, 2)) + np.abs(new_t - t).max(axis=1)
        rot, tc, t = new_rot, new_tc, new_t
        r = _residuals(rot, tc, x)
        going = change >= tol
        if not going.all():  # converged candidates keep this fit and leave every array
            done = rows[~going]
            out_rot[done], out_t[done], out_r[done] = rot[~going], t[~going], r[~going]
            rows, rot, tc, t, r = rows[going], rot[going], tc[going], t[going], r[going]
            x, weights, cp, cq = x[going], weights[going], cp[going], cq[going]
            if rows.size == 0:
                break
    out_rot[rows], out_t[rows], out_r[rows] = rot, t, r
    return out_rot, out_t, _scatter(out_r, columns, num_points)


def _compiled_fits(x, weights, cp, cq, robust, iterations, delta, tol, columns, num_points):
    """:func:`batched_robust_fit`'s loop in the C extension (same inputs, same outputs)."""
    count, length = weights.shape
    rot, tc, r = np.empty((count, 3, 3)), np.empty((count, 3)), np.empty((count, length))
    _rigid_fast.irls(  # type: ignore[union-attr]
        count,
        length,
        x,
        np.ascontiguousarray(weights),
        np.ascontiguousarray(cp),
        np.ascontiguousarray(cq),
        rot,
        tc,
        r,
        iterations if robust == "l1" else 0,
        float(delta),
        float(tol),
    )
    return rot, _to_original(rot, tc, cp, cq), _scatter(r, columns, num_points)


def _weighted_sums(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(K, 4, 4) weighted sums of [p; 1] [1; q]^T over the points of ``x`` = [p; 1; q] (K, 7, N)."""
    return (x[:, :4] * w[:, None, :]) @ np.swapaxes(x[:, 3:], 1, 2)


def _residuals(rot: np.ndarray, trans: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(K, N) distances |R p + t - q| from ``x`` = [p; 1; q]: one product with [R, t, -I]."""
    transform = np.zeros((len(rot), 3, 7))
    transform[:, :, :3] = rot
    transform[:, :, 3] = trans
    transform[:, :, 4:] = -np.eye(3)
    diff = transform @ x
    return np.sqrt(np.einsum("kdn,kdn->kn", diff, diff))


def _to_original(rot: np.ndarray, t_centred: np.ndarray, cp: np.ndarray, cq: np.ndarray) -> np.ndarray:
    """The translation in the original coordinates, from the one between the centred point sets."""
    return t_centred + cq - np.einsum("kij,kj->ki", rot, cp)


def _scatter(r: np.ndarray, columns: np.ndarray, num_points: int) -> np.ndarray:
    """Residuals back on all ``num_points`` points (zero on the points that were dropped)."""
    if columns.size == num_points:
        return r
    out = np.zeros((r.shape[0], num_points))
    out[:, columns] = r
    return out
