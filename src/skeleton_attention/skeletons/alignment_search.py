"""The offset search of the multi-view alignment: candidates, their scoring and how much work it does.

:func:`~skeleton_attention.skeletons.alignment.align_views` calls :func:`search` once per
non-reference view. Candidates are (offset, rate, body order) triples; each is scored by the mean
Geman-McClure cost of the per-joint distances after a robust rigid fit (``rigid_batch.py``), on the
reference frames every candidate maps inside the view. The search is an integer grid (optionally
every ``coarse_step``-th offset, then the neighbours of the best), then a sub-frame refinement.

:class:`SearchBudget` says how much of that work is done (with ``align_views``' older
``search_iterations`` and ``coarse_step``). Its defaults are the exhaustive search (every core
frame, every candidate through the full robust fit, the final refit to 1e-7); the pipelines set
cheaper ones (``conf/base/parameters_prepare.yml``, measured in docs/performance.md §3):

* ``frame_step`` (``align_views``' ``search_frame_step``): score candidates on every k-th core
  frame. Motion at 30 fps is smooth, so neighbouring frames add little information about the
  offset, while every frame costs the same;
* ``shortlist``: rank the candidates of each search step by a cheap fit first (``shortlist_
  iterations`` reweighting steps; 0 is one least-squares Kabsch), and give only the best
  ``shortlist`` of them the full ``search_iterations`` robust fit, which decides;
* ``final_tol``: the final refit on the whole timeline stops when the rotation and translation
  move less than this (the reweighted fit converges linearly: the last digits take many steps).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from skeleton_attention.skeletons import rigid_batch
from skeleton_attention.skeletons.rigid_batch import (
    RobustMode,
    candidate_fits,
    compiled_candidate_fits,
    robust_rigid_fit,
)

#: the ``align_views`` keyword of each :class:`SearchBudget` field (for the error messages)
_KEYWORDS = {
    "frame_step": "search_frame_step",
    "shortlist": "shortlist",
    "shortlist_iterations": "shortlist_iterations",
}


@dataclass(frozen=True)
class SearchBudget:
    """How much work the offset search does; the defaults are the exhaustive search (module docstring)."""

    frame_step: int = 1
    shortlist: int = 0
    shortlist_iterations: int = 0
    final_tol: float = 1e-7

    def __post_init__(self) -> None:
        for name in ("frame_step", "shortlist", "shortlist_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"align_views: {_KEYWORDS[name]} must be an integer, got {value!r}")
        if self.frame_step < 1:
            raise ValueError(f"align_views: search_frame_step must be >= 1 (1 = every frame), got {self.frame_step}")
        if self.shortlist < 0:
            raise ValueError(f"align_views: shortlist must be >= 0 (0 = off), got {self.shortlist}")
        if self.shortlist_iterations < 0:
            raise ValueError(f"align_views: shortlist_iterations must be >= 0, got {self.shortlist_iterations}")
        if (
            isinstance(self.final_tol, bool)
            or not isinstance(self.final_tol, (int, float))
            or not (0 < self.final_tol < 1)
        ):
            raise ValueError(f"align_views: final_tol must be a number in (0, 1), got {self.final_tol!r}")


@dataclass
class _Fit:
    cost: float
    offset: float
    rate: float
    rot: np.ndarray
    trans: np.ndarray
    perm: tuple[int, ...]


def permutations(num_bodies: int, max_permuted: int) -> list[tuple[int, ...]]:
    """The body orders tried: all of them up to ``max_permuted`` bodies, else file order only."""
    if num_bodies <= max_permuted:
        return list(itertools.permutations(range(num_bodies)))
    return [tuple(range(num_bodies))]


def grid(
    max_offset: float, estimate_rate: bool, max_rate_deviation: float, rate_steps: int, rate_center: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The integer offsets and the rates searched."""
    offsets = np.arange(-np.floor(max_offset), np.floor(max_offset) + 1.0)
    if not estimate_rate:
        return offsets, np.array([rate_center])
    return offsets, rate_center * np.linspace(1 - max_rate_deviation, 1 + max_rate_deviation, rate_steps)


def _interpolation(num_frames: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``i0``, ``i1``, the weight ``a`` of ``i1`` and whether the position is inside the
    view, for fractional frame ``positions`` of a view of ``num_frames`` frames."""
    pos = np.asarray(positions, dtype=np.float64)
    eps = 1e-6
    inside = (pos >= -eps) & (pos <= num_frames - 1 + eps)
    p = np.clip(pos, 0.0, num_frames - 1)
    i0 = np.floor(p + eps).astype(np.intp)
    i0 = np.minimum(i0, num_frames - 1)
    frac = p - i0
    frac[frac < eps] = 0.0
    i1 = np.minimum(i0 + 1, num_frames - 1)
    return i0, i1, frac, inside


def resample_frames(coords: np.ndarray, valid: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of (M, T, V, C) at fractional frame ``positions`` (T',) or (K, T').

    Returns ``(values (M, T', V, C), ok (M, T', V))`` (with positions (K, T'): (M, K, T', V, C)
    and (M, K, T', V), every row of positions interpolated the same way). A value is ok when its position lies in
    ``[0, T-1]`` and both neighbouring frames are valid for that joint (only the nearer one
    when the position is integral); values that are not ok are zero.
    """
    i0, i1, frac, inside = _interpolation(coords.shape[1], positions)
    ok = _interpolated_mask(valid, i0, i1, frac, inside)
    a = frac[None, ..., None]
    values = (1.0 - a)[..., None] * coords[:, i0] + a[..., None] * coords[:, i1]
    values = np.where(ok[..., None], values, 0.0)
    return values, ok


def resample_mask(valid: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The ``ok`` of :func:`resample_frames` alone (for masks such as Kinect's tracking states)."""
    return _interpolated_mask(valid, *_interpolation(valid.shape[1], positions))


def _interpolated_mask(valid, i0, i1, frac, inside) -> np.ndarray:
    """Both neighbouring frames valid (only the nearer one at an integral position), inside the view."""
    return valid[:, i0] & (valid[:, i1] | (frac == 0)[None, ..., None]) & inside[None, ..., None]


def _overlap_ok(ref_len: int, view_len: int, offsets: np.ndarray, rates: np.ndarray, min_overlap: float) -> np.ndarray:
    """Which candidates overlap at least ``min_overlap`` of the SHORTER sequence (the share of
    reference frames it maps into the view, or the share of the view it covers, whichever is
    larger)? Without it, a candidate that overlaps a few well-fitting frames would beat the true
    one when candidates are scored on their own overlap. All candidates at once (one call per
    candidate cost 1 ms per N-UCLA recording)."""
    if min_overlap <= 0:
        return np.ones(len(offsets), dtype=bool)
    pos = np.asarray(offsets, dtype=np.float64)[:, None] + np.asarray(rates, dtype=np.float64)[:, None] * np.arange(
        ref_len, dtype=np.float64
    )
    inside = (pos >= -1e-6) & (pos <= view_len - 1 + 1e-6)
    span = np.where(inside, pos, -np.inf).max(axis=1) - np.where(inside, pos, np.inf).min(axis=1)
    covered = (span + 1.0) / view_len
    return inside.any(axis=1) & (np.maximum(inside.mean(axis=1), covered) >= min_overlap)


def _core_frames(ref_len: int, view_len: int, offsets: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Reference frames every candidate maps inside the view: all candidates are scored on them."""
    t = np.arange(ref_len, dtype=np.float64)
    corners = [o + r * t for o in (offsets.min(), offsets.max()) for r in (rates.min(), rates.max())]
    lo, hi = np.min(corners, axis=0), np.max(corners, axis=0)
    return np.flatnonzero((lo >= 0) & (hi <= view_len - 1))


@dataclass
class Scorer:
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
    #: a fit stops when its rotation and translation move less than this in one reweighting step
    tol: float = 1e-7
    #: the view and its mask with the bodies in each order tried (every scoring call needs them)
    _permuted: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def permuted(self, perm: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The view and its mask with body ``perm[m]`` in slot m (contiguous, computed once)."""
        if perm not in self._permuted:
            self._permuted[perm] = (self.view[list(perm)], self.view_ok[list(perm)])
        return self._permuted[perm]

    def pairs(self, frames, offset, rate, perm):
        frames = np.asarray(frames, dtype=np.intp)
        positions = offset + rate * frames
        values, ok = resample_frames(*self.permuted(tuple(perm)), positions)
        both = ok & self.ref_ok[:, frames]
        return values[both], self.ref[:, frames][both]

    def score(self, frames, offset, rate, perm, iterations=None) -> _Fit | None:
        return self.score_many(frames, [(offset, rate, tuple(perm))], iterations)[0]

    def _cost(self, r: np.ndarray) -> float:
        # Geman-McClure: bounded, so a joint Kinect lost costs the same at every offset and
        # the timing is decided by the joints both cameras see
        return float(np.mean(r**2 / (r**2 + self.time_scale**2)))

    def _score_one(self, frames, offset, rate, perm, iterations=None) -> _Fit | None:
        """One candidate with :func:`robust_rigid_fit`: the ``trimmed`` fit (not batched), and the
        plain reference the batched scoring is tested and benchmarked against."""
        p, q = self.pairs(frames, offset, rate, perm)
        if len(p) < self.min_points:
            return None
        if self.mode == "body":
            rot, trans, r = np.eye(3), np.zeros(3), np.linalg.norm(p - q, axis=1)
        else:
            iterations = self.search_iterations if iterations is None else iterations
            rot, trans, r = robust_rigid_fit(p, q, robust=self.robust, iterations=iterations, tol=self.tol)
        return _Fit(self._cost(r), float(offset), float(rate), rot, trans, tuple(perm))

    def score_many(self, frames, candidates, iterations=None) -> list[_Fit | None]:
        """Score ``(offset, rate, perm)`` candidates on the reference ``frames``, all at once
        (:mod:`~skeleton_attention.skeletons.rigid_batch`); None where fewer than ``min_points``
        joints overlap."""
        iterations = self.search_iterations if iterations is None else iterations  # 0: least squares only
        if self.mode != "body" and self.robust == "trimmed":
            return [self._score_one(frames, o, r, perm, iterations) for o, r, perm in candidates]
        frames = np.asarray(frames, dtype=np.intp)
        fits: list[_Fit | None] = [None] * len(candidates)
        ref, ref_ok = self.ref[:, frames], self.ref_ok[:, frames]
        for perm in dict.fromkeys(c[2] for c in candidates):
            index = [k for k, c in enumerate(candidates) if c[2] == perm]
            offsets = np.array([candidates[k][0] for k in index], dtype=np.float64)
            rates = np.array([candidates[k][1] for k in index], dtype=np.float64)
            positions = offsets[:, None] + rates[:, None] * frames[None, :]
            settings = {
                "rigid": self.mode != "body",
                "robust": self.robust,
                "iterations": iterations,
                "min_points": self.min_points,
                "time_scale": self.time_scale,
                "tol": self.tol,
            }
            view, view_ok = self.permuted(perm)
            if rigid_batch.compiled_fits_enabled():
                # resampling, gathering and fitting in C: no (M, K, F, V, 3) array (rigid_batch)
                keep, costs, rot, trans = compiled_candidate_fits(view, view_ok, ref, ref_ok, positions, **settings)
            else:
                values, ok = resample_frames(view, view_ok, positions)
                keep, costs, rot, trans = candidate_fits(values, ok, ref, ref_ok, **settings)
            for j, k in enumerate(keep):
                fits[index[k]] = _Fit(
                    float(costs[j]),
                    float(offsets[k]),
                    float(rates[k]),
                    np.array(rot[j]),
                    np.array(trans[j]),
                    tuple(perm),
                )
        return fits


def _best(fits: Sequence[_Fit | None], best: _Fit | None = None) -> _Fit | None:
    """The first fit of lowest cost, scanning from ``best`` (which a later fit must strictly beat)."""
    for fit in fits:
        if fit is not None and (best is None or fit.cost < best.cost):
            best = fit
    return best


#: the frame subset of ``frame_step`` keeps at least this many frames (short views keep them all)
MIN_SEARCH_FRAMES = 10


def _frame_subset(core: np.ndarray, frame_step: int) -> np.ndarray:
    """Every ``frame_step``-th core frame, but never fewer than :data:`MIN_SEARCH_FRAMES` frames."""
    step = min(frame_step, max(1, len(core) // MIN_SEARCH_FRAMES))
    return core[::step] if step > 1 else core


def _shortlisted(scorer: Scorer, frames: np.ndarray, candidates: list, budget: SearchBudget) -> list:
    """The ``budget.shortlist`` candidates of lowest cheap cost, in their original order (so the
    tie rule of :func:`_best`, the first of lowest cost, keeps its meaning)."""
    if budget.shortlist <= 0 or len(candidates) <= budget.shortlist:
        return candidates
    cheap = scorer.score_many(frames, candidates, budget.shortlist_iterations)
    ranked = sorted((fit.cost, k) for k, fit in enumerate(cheap) if fit is not None)
    return [candidates[k] for k in sorted(k for _, k in ranked[: budget.shortlist])]


def search(
    scorer: Scorer,
    ref_len: int,
    view_len: int,
    perms: Sequence[tuple[int, ...]],
    offsets: np.ndarray,
    rates: np.ndarray,
    refine_step: float,
    min_overlap: float = 0.0,
    coarse_step: int = 1,
    budget: SearchBudget = SearchBudget(),
) -> _Fit | None:
    """The best (offset, rate, body order) candidate of one view, or None when none overlaps enough."""
    core = _core_frames(ref_len, view_len, offsets, rates)
    if len(core) < max(10, ref_len // 4):
        # too short for the requested search range: score on each candidate's own overlap
        core = np.arange(ref_len)
    core = _frame_subset(core, budget.frame_step)

    def scored(candidates, best=None):
        if candidates:
            ok = _overlap_ok(
                ref_len,
                view_len,
                np.array([c[0] for c in candidates]),
                np.array([c[1] for c in candidates]),
                min_overlap,
            )
            candidates = [c for c, keep in zip(candidates, ok, strict=True) if keep]
        candidates = _shortlisted(scorer, core, candidates, budget)
        return _best(scorer.score_many(core, candidates), best) if candidates else best

    # coarse_step > 1: every coarse_step-th offset first, then every integer next to the best one
    coarse = offsets[::coarse_step] if coarse_step > 1 else offsets
    best = scored([(offset, rate, perm) for perm in perms for rate in rates for offset in coarse])
    if best is not None and coarse_step > 1:
        near = offsets[(np.abs(offsets - best.offset) < coarse_step) & (offsets != best.offset)]
        best = scored([(offset, best.rate, best.perm) for offset in near], best)
    if best is None or refine_step <= 0:
        return best
    # sub-frame refinement around the best integer offset (and rate), same frames
    fine_offsets = best.offset + np.arange(-1.0, 1.0 + 1e-9, refine_step)
    fine_offsets = fine_offsets[(fine_offsets >= offsets.min()) & (fine_offsets <= offsets.max())]
    rate_step = (rates[1] - rates[0]) if len(rates) > 1 else 0.0
    fine_rates = best.rate + np.array([-0.5, 0.0, 0.5]) * rate_step if rate_step else [best.rate]
    return scored([(offset, rate, best.perm) for rate in fine_rates for offset in fine_offsets], best)


def final_fit(scorer: Scorer, ref_len: int, best: _Fit, iterations: int, budget: SearchBudget) -> _Fit:
    """The final transform of the chosen candidate: all reference frames the view covers, up to
    ``iterations`` reweighting steps, stopping at ``budget.final_tol``."""
    refit = replace(scorer, tol=budget.final_tol).score(
        np.arange(ref_len), best.offset, best.rate, best.perm, iterations=iterations
    )
    return refit if refit is not None else best
