"""Multi-view grouping, the NTU view loader and the residual report.

The three Kinect cameras of an NTU setup record simultaneously, but each file has its own
frame count (the cameras start and stop independently), its own body IDs and its own camera
coordinates. The alignment maths (offset and rate search, robust rigid fit, residuals, the
spatial frame of the output) is data-set independent and lives in
:mod:`~skeleton_attention.skeletons.alignment`; its public names are re-exported here so
``from skeleton_attention.skeletons.views import align_views`` keeps working.
``python -m skeleton_attention.skeletons.views <ntu_dir>`` prints the residual table for every
complete group of a user's NTU download. Method and measured numbers: ``docs/geometry.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from skeleton_attention.skeletons.alignment import (
    FRAMES,
    JOINT_GROUPS,
    AlignedViews,
    Frame,
    Mode,
    RobustMode,
    align_views,
    kabsch,
    multiview_frame,
    naive_alignment,
    resample_frames,
    robust_rigid_fit,
    rotation_angle_deg,
    yaw_deg,
)
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.layouts import NTU25, JointLayout
from skeleton_attention.skeletons.ntu import NtuRecording, parse_ntu_name, read_ntu_skeleton

__all__ = [
    "FRAMES",
    "JOINT_GROUPS",
    "NTU_CAMERAS",
    "AlignedViews",
    "Frame",
    "Mode",
    "RobustMode",
    "align_views",
    "group_views",
    "is_complete",
    "kabsch",
    "load_ntu_view",
    "main",
    "multiview_frame",
    "naive_alignment",
    "parse_view_name",
    "resample_frames",
    "robust_rigid_fit",
    "rotation_angle_deg",
    "stack_ntu_bodies",
    "view_residual_report",
    "yaw_deg",
]

NTU_CAMERAS = (1, 2, 3)

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
        naive = naive_alignment(
            coords, reference_camera=reference_camera, cameras=cameras, layout=layout, tracked=tracked
        )
        body = align_views(
            coords,
            reference_camera=reference_camera,
            cameras=cameras,
            mode="body",
            layout=layout,
            tracked=tracked,
            **params,
        )  # type: ignore[arg-type]
        rigid = align_views(
            coords,
            reference_camera=reference_camera,
            cameras=cameras,
            mode="rigid",
            layout=layout,
            tracked=tracked,
            **params,
        )  # type: ignore[arg-type]
        for c in cameras:
            if c == rigid.reference_camera:
                continue
            row: dict[str, object] = {
                "group": key,
                "camera": c,
                "reference": rigid.reference_camera,
                "frames_ref": int(coords[rigid.reference_camera].shape[1]),
                "frames_view": int(coords[c].shape[1]),
                "bodies": int(rigid.coords.shape[1]),
                "offset": rigid.offsets[c],
                "rate": rigid.rates[c],
                "rotation_deg": rotation_angle_deg(rigid.rotations[c]),
                "yaw_deg": yaw_deg(rigid.rotations[c]),
                "naive_m": naive.residuals[c],
                "body_m": body.residuals[c],
                "rigid_m": rigid.residuals[c],
                "rigid_median_m": rigid.residuals_median[c],
                "naive_tracked_m": naive.residuals_tracked[c],
                "rigid_tracked_m": rigid.residuals_tracked[c],
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
        args.ntu_dir,
        reference_camera=args.reference,
        align_params={"max_offset": args.max_offset, "estimate_rate": args.rate},
    )
    if table.empty:
        print(f"no complete C001-C003 group in {args.ntu_dir}", file=sys.stderr)
        return 1
    cols = [
        "group",
        "camera",
        "frames_ref",
        "frames_view",
        "offset",
        "rotation_deg",
        "yaw_deg",
        "naive_m",
        "body_m",
        "rigid_m",
        "rigid_median_m",
        "rigid_tracked_m",
    ]
    if args.groups:
        cols += [c for c in table.columns if c.startswith("rigid_") and c.endswith("_m") and c not in cols]
    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.precision", 3):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        summary = table[["naive_m", "body_m", "rigid_m"]].mean()
        print(
            f"\nmean over {len(table)} views: naive {summary['naive_m']:.3f} m, body "
            f"{summary['body_m']:.3f} m, rigid {summary['rigid_m']:.3f} m"
        )
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
