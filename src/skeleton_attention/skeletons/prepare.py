"""Per-data-set preparation: raw file -> samples with split membership, then samples -> streams.

Plain functions over the readers, picklable for the ingest process pool; the Kedro nodes in
``pipelines/prepare_*`` only wire them to the catalog.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from skeleton_attention.skeletons import kinetics, msr, ntu, sbu, utkinect
from skeleton_attention.skeletons.denoise import denoise_ntu
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.ingest import FileOutcome
from skeleton_attention.skeletons.layouts import get_layout
from skeleton_attention.skeletons.normalize import normalize_sequence
from skeleton_attention.skeletons.sequence import SkeletonSequence
from skeleton_attention.skeletons.smoothing import smooth_time, smoothing_kernel_from
from skeleton_attention.skeletons.streams import compute_streams, compute_streams_many
from skeleton_attention.skeletons.table import (
    META_INT_COLUMNS,
    META_STR_COLUMNS,
    SampleTable,
    sequence_to_row,
)

NTU_PROTOCOLS: tuple[str, ...] = ("ntu60_xsub", "ntu60_xview", "ntu120_xsub", "ntu120_xset")
KINETICS_PROTOCOLS: tuple[str, ...] = ("kinetics",)
UTKINECT_PROTOCOLS: tuple[str, ...] = ("utkinect_xsub",)
#: cross-validated UTKinect protocols (fold columns): leave-one-subject-out (fold = subject 1..10) and
#: Xia et al.'s leave-one-sequence-out (fold = the sample's position among the sorted sequence ids)
UTKINECT_FOLD_PROTOCOLS: tuple[str, ...] = ("utkinect_loso", "utkinect_loocv")
#: all 20 actions, then Li et al.'s 8-action subsets AS1-AS3, each with the same odd/even subject split
MSR_PROTOCOLS: tuple[str, ...] = ("msr_xsub", "msr_as1_xsub", "msr_as2_xsub", "msr_as3_xsub")
#: ``msr_as<k>_xsub`` protocol -> its ``MSR_ACTION_SETS`` key
MSR_SUBSET_PROTOCOLS: dict[str, str] = {"msr_as1_xsub": "AS1", "msr_as2_xsub": "AS2", "msr_as3_xsub": "AS3"}


# --- NTU -------------------------------------------------------------------------------------------


def process_ntu_file(
    path: Path,
    *,
    missing: frozenset[str] = frozenset(),
    denoise: Mapping[str, object] | None = None,
    action_names: Mapping[int, str] | None = None,
) -> FileOutcome:
    """Read, check against the official missing list, and denoise one ``.skeleton`` file.

    ``action_names`` (action number -> name) replaces the official NTU class names, for data sets
    that reuse NTU's file format with their own classes (the embedded synthetic set).
    """
    name = ntu.parse_ntu_name(path)
    sample_id = name.sample_id
    if sample_id in missing:
        return FileOutcome(
            excluded_reason="official_missing_list",
            excluded_detail=f"{sample_id} is on the official missing/incomplete skeleton list",
        )
    recording = ntu.read_ntu_skeleton(path, name)
    seq, report = denoise_ntu(recording, **dict(denoise or {}))
    report = {"sample_id": sample_id, **report}
    if seq is None:
        return FileOutcome(
            report=report,
            excluded_reason="no_body_after_denoising",
            excluded_detail=str(report.get("reason", "every body was rejected by the denoising rules")),
        )
    if action_names is not None:
        seq.label_name = action_names.get(name.action, seq.label_name)
    return FileOutcome(samples=[(seq, ntu.ntu_splits(name))], report=report)


# --- Kinetics -------------------------------------------------------------------------------------


def process_kinetics_file(
    path: Path,
    *,
    train_map: Mapping[str, Mapping[str, object]],
    val_map: Mapping[str, Mapping[str, object]],
    max_people: int = 2,
    num_classes: int | None = None,
    max_frames: int | None = None,
) -> FileOutcome:
    """One clip with its split; ``num_classes`` / ``max_frames`` bound label and length (kinetics.py)."""
    clip_id = Path(path).stem
    if clip_id in train_map and clip_id in val_map:
        raise MalformedSkeletonFile(
            str(path),
            "label_conflict",
            f"clip {clip_id!r} is listed in both the train and the val label map, so its split is undefined",
        )
    in_train = clip_id in train_map
    label_map = train_map if in_train else val_map
    entry = label_map.get(clip_id)
    if entry is not None and entry.get("has_skeleton") is False:
        return FileOutcome(excluded_reason="no_skeleton", excluded_detail="label map says has_skeleton: false")
    seq = kinetics.read_kinetics_clip(
        path,
        label_map=label_map or None,
        max_people=max_people,
        num_classes=num_classes,
        max_frames=max_frames,
    )
    split = kinetics.kinetics_split(clip_id, train_map, val_map)
    return FileOutcome(samples=[(seq, {"kinetics": split})])


# --- UTKinect and MSR -----------------------------------------------------------------------------


def process_utkinect_file(path: Path, *, label_file: Path) -> FileOutcome:
    """All action segments of one ``joints_sXX_eYY.txt`` file, with their cross-subject split, their
    leave-one-subject-out fold (the subject) and their leave-one-sequence-out fold (from the label
    file, so it does not depend on which other joints files were read)."""
    sequences = utkinect.read_utkinect_file(path, label_file=label_file)
    loocv = utkinect.utkinect_loocv_folds(utkinect.read_utkinect_labels(label_file))
    samples = []
    for seq in sequences:
        subject = int(seq.meta["subject"])
        splits: dict[str, str | int | None] = {
            "utkinect_xsub": utkinect.utkinect_split(subject),
            "utkinect_loso": utkinect.utkinect_loso_fold(subject),
            "utkinect_loocv": loocv[seq.sample_id],
        }
        samples.append((seq, splits))
    return FileOutcome(samples=samples, report={"segments": len(samples)})


def process_msr_file(path: Path, *, subset: frozenset[str] | None = None) -> FileOutcome:
    """One MSR Action3D file: cross-subject split on all 20 actions, and on each action subset
    AS1-AS3 it belongs to (null in the subsets it is not part of)."""
    sample_id = msr.msr_sample_id(path)
    if subset is not None and sample_id not in subset:
        return FileOutcome(excluded_reason="not_in_subset", excluded_detail="not in the chosen file subset")
    seq = msr.read_msr_file(path)
    split = msr.msr_split(int(seq.meta["subject"]))
    action_sets = msr.msr_action_set(int(seq.meta["action"]))
    splits: dict[str, str | int | None] = {"msr_xsub": split}
    for protocol, action_set in MSR_SUBSET_PROTOCOLS.items():
        splits[protocol] = split if action_set in action_sets else None
    return FileOutcome(samples=[(seq, splits)])


# --- SBU Kinect Interaction -------------------------------------------------------------------------

#: subject-independent 5-fold cross-validation by performer pair (split_sbu_fold holds 1..5)
SBU_FOLD_PROTOCOLS: tuple[str, ...] = ("sbu_fold",)


def process_sbu_file(path: Path, *, coordinates: str = "metres") -> FileOutcome:
    """One two-person sequence; its fold comes from the performer pair (null for a pair in no fold)."""
    seq = sbu.read_sbu_file(path, coordinates=coordinates)
    return FileOutcome(samples=[(seq, {"sbu_fold": sbu.sbu_fold(str(seq.meta["performer_pair"]))})])


# --- streams ----------------------------------------------------------------------------------------


def sequence_from_metadata(meta: Mapping[str, object], coords: np.ndarray) -> SkeletonSequence:
    """Rebuild a :class:`SkeletonSequence` from a table metadata row and its coordinates."""
    fields = {k: meta.get(k) for k in (*META_INT_COLUMNS, *META_STR_COLUMNS)}
    return SkeletonSequence(
        sample_id=str(meta["sample_id"]),
        dataset=str(meta["dataset"]),
        layout=str(meta["layout"]),
        coords=coords,
        label=int(meta["label"]),  # type: ignore[arg-type]
        label_name=str(meta.get("label_name") or ""),
        source_file=str(meta.get("source_file") or ""),
        meta={k: v for k, v in fields.items() if v is not None and not _is_nan(v)},
    )


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and value != value


def _records(frame, order: np.ndarray | None = None, chunk: int = 1024) -> Iterator[dict[str, object]]:
    """Rows as dicts (in ``order``, positions into ``frame``), a chunk at a time (a full ``to_dict``
    costs ~1.5 KB per row at once)."""
    order = np.arange(len(frame)) if order is None else order
    for start in range(0, len(order), chunk):
        yield from frame.iloc[order[start : start + chunk]].to_dict("records")


def row_permutation(group_sizes: Sequence[int], seed: int = 0, open_groups: int = 8) -> np.ndarray:
    """A seeded order of a table's rows that never needs more than ``open_groups`` row groups at once.

    The row groups are dealt, in a random order, into ``open_groups`` lanes; each lane yields its
    groups one after the other, the rows of each group in a random order; the lanes are
    interleaved at random. Every window of the output therefore mixes ``open_groups`` row groups
    drawn from anywhere in the table (not one setup or camera), while reading each row group once.
    The same sizes, seed and ``open_groups`` give the same order.
    """
    rng = np.random.default_rng(seed)
    starts = np.concatenate([[0], np.cumsum(group_sizes)]).astype(np.int64)
    groups = rng.permutation(len(group_sizes))
    lanes_count = max(1, min(int(open_groups), len(group_sizes)))
    lanes = []
    for lane in range(lanes_count):
        parts = [starts[g] + rng.permutation(int(group_sizes[g])) for g in groups[lane::lanes_count]]
        lanes.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    picks = rng.permutation(np.repeat(np.arange(lanes_count), [len(lane) for lane in lanes]))
    order = np.empty(len(picks), dtype=np.int64)
    for lane in range(lanes_count):
        order[picks == lane] = lanes[lane]
    return order


def feature_row_order(table: SampleTable, row_order: Mapping[str, object] | None) -> np.ndarray:
    """The intermediate rows in the order the feature table gets them (``row_order`` parameters)."""
    params = dict(row_order or {})
    if not params.get("shuffle", False):
        return np.arange(len(table), dtype=np.int64)
    return row_permutation(table.row_group_sizes(), int(params.get("seed", 0)), int(params.get("open_row_groups", 8)))


def shuffled(items: Sequence[object], row_order: Mapping[str, object] | None) -> list[object]:
    """``items`` in a seeded random order when ``row_order.shuffle`` is set, else as they are."""
    params = dict(row_order or {})
    if not params.get("shuffle", False):
        return list(items)
    order = np.random.default_rng(int(params.get("seed", 0))).permutation(len(items))
    return [items[i] for i in order]


def featurize(
    table: SampleTable,
    normalize: Mapping[str, object] | None,
    streams: Sequence[str],
    smoothing: Mapping[str, object] | None = None,
    row_order: Mapping[str, object] | None = None,
    batch: int = 64,
) -> Iterator[dict[str, object]]:
    """Normalize each sample of an intermediate table and decouple it into streams, row by row.

    ``smoothing`` (``skeletons/smoothing.py``; default none) filters each joint in time first, on
    the intermediate coordinates, so normalization sees the smoothed skeleton. Rows come in
    :func:`feature_row_order`: file order, or with ``row_order.shuffle`` a seeded permutation read
    through a cache of about twice ``open_row_groups`` row groups (memory stays bounded by row
    groups, not by the table). The streams of ``batch`` consecutive samples are computed together
    (:func:`~skeleton_attention.skeletons.streams.compute_streams_many`: the same values, fewer
    numpy calls); the order and the values do not depend on ``batch``.
    """
    metadata = table.metadata()
    split_columns = [c for c in metadata.columns if c.startswith("split_")]
    params, names = dict(normalize or {}), tuple(streams)
    kernel = smoothing_kernel_from(smoothing)  # a bad setting fails here, before any sample
    order = feature_row_order(table, row_order)
    if row_order and row_order.get("shuffle"):
        # a reader of its own: the lanes' current groups stay cached while the lanes interleave
        table = SampleTable(table.path, cache_row_groups=2 * int(row_order.get("open_row_groups", 8)) + 1)
    pending: list[tuple[dict[str, object], SkeletonSequence]] = []
    for record in _records(metadata, order):
        coords = table.read_one(int(record["row"]), ("joint",))["joint"]
        with _naming(record):
            if kernel is not None:
                coords = smooth_time(coords, kernel).astype(np.float32)
            pending.append((record, normalize_sequence(sequence_from_metadata(record, coords), params)))
        if len(pending) >= max(1, int(batch)):
            yield from _stream_rows(pending, names, split_columns)
            pending = []
    yield from _stream_rows(pending, names, split_columns)


def _stream_rows(
    pending: Sequence[tuple[dict[str, object], SkeletonSequence]], names: tuple[str, ...], split_columns: list[str]
) -> Iterator[dict[str, object]]:
    """The table rows of normalized samples, in order; samples of one layout share a stream batch."""
    arrays: list[dict[str, np.ndarray] | None] = [None] * len(pending)
    by_layout: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for index, (_, seq) in enumerate(pending):
        by_layout.setdefault((seq.layout, seq.coords.shape[2:]), []).append(index)
    for (layout, _), indices in by_layout.items():
        try:
            batch = compute_streams_many([pending[i][1].coords for i in indices], get_layout(layout), names)
        except Exception:  # find and name the sample that fails, one at a time
            for i in indices:
                with _naming(pending[i][0]):
                    compute_streams(pending[i][1].coords, get_layout(layout), names=names)
            raise
        for i, sample in zip(indices, batch, strict=True):
            arrays[i] = sample
    for (record, seq), sample in zip(pending, arrays, strict=True):
        splits = {c[len("split_") :]: record[c] for c in split_columns}
        yield sequence_to_row(seq, sample, splits)  # type: ignore[arg-type]


@contextmanager
def _naming(record: Mapping[str, object]) -> Iterator[None]:
    """Add the sample to an error's notes: the trace alone does not say which one failed."""
    try:
        yield
    except Exception as error:
        error.add_note(f"while building the streams of {record['sample_id']} ({record['source_file']})")
        raise


# --- NTU multi-view -----------------------------------------------------------------------------------


def view_groups(table: SampleTable) -> list[dict[str, object]]:
    """One task per NTU recording: its ``view_group`` key and the table rows of its cameras."""
    meta = table.metadata()
    meta = meta[meta["view_group"].notna()]
    groups = []
    for key, rows in meta.groupby("view_group", sort=True):
        groups.append({"view_group": str(key), "rows": {int(r.camera): int(r.row) for r in rows.itertuples()}})
    return groups


def process_view_group(
    group: Mapping[str, object],
    *,
    table: SampleTable,
    cameras: Sequence[int] = (1, 2, 3),
    align: Mapping[str, object] | None = None,
    denoise: Mapping[str, object] | None = None,
    frame: str = "aligned",
) -> FileOutcome:
    """Put the camera views of one recording on the reference camera's timeline, in ``frame``.

    ``frame`` (``body``, ``camera`` or ``aligned``;
    :func:`~skeleton_attention.skeletons.alignment.multiview_frame`): each view in its own body
    frame, in its own camera frame, or rigidly aligned into the reference camera's body frame.

    Each view is re-read from its raw file with the same denoising decisions but on its *full*
    timeline: denoising drops frames where no actor is present, which would shift a view against
    the others (and the raw file also carries Kinect's per-joint tracking state, which the residual
    over joints tracked in both views needs). The sample's ``coords`` stack the views: shape
    ``(views * M, T, V, 3)`` in camera order, with ``num_views`` = len(cameras); absent views are
    zeros and listed in ``cameras_present``.
    """
    from skeleton_attention.skeletons.views import load_ntu_view, multiview_frame

    rows: Mapping[int, int] = group["rows"]  # type: ignore[assignment]
    metadata = table.metadata()
    views, tracked = {}, {}
    for camera, row in rows.items():
        views[camera], tracked[camera] = load_ntu_view(metadata.at[row, "source_file"], denoise_params=denoise)
    aligned = multiview_frame(
        views,
        frame,
        cameras=tuple(cameras),
        tracked=tracked,
        **dict(align or {}),  # type: ignore[arg-type]
    )
    num_views, bodies = aligned.coords.shape[:2]
    first = metadata.iloc[next(iter(rows.values()))].to_dict()
    present = "".join(str(c) for c, ok in zip(aligned.cameras, aligned.view_mask, strict=True) if ok)
    seq = sequence_from_metadata(first, aligned.coords.reshape(num_views * bodies, *aligned.coords.shape[2:]))
    seq.sample_id = str(group["view_group"])
    seq.meta.pop("camera", None)
    seq.meta.update({"num_views": num_views, "cameras_present": present})
    splits = {c[len("split_") :]: first[c] for c in metadata.columns if c.startswith("split_")}
    # cross-view is ill-defined when every view is an input: only the subject/setup protocols apply
    splits = {p: (s if "xview" not in p else None) for p, s in splits.items()}
    report = {
        "view_group": seq.sample_id,
        "cameras_present": present,
        "complete": len(present) == len(tuple(cameras)),
        "frame": frame,
        **{f"offset_c{c}": float(v) for c, v in aligned.offsets.items()},
        **{f"residual_c{c}": float(v) for c, v in aligned.residuals.items()},
        **{f"residual_tracked_c{c}": float(v) for c, v in aligned.residuals_tracked.items()},
    }
    return FileOutcome(samples=[(seq, splits)], report=report)


# --- Northwestern-UCLA Multiview (N-UCLA) --------------------------------------------------------------

NUCLA_PROTOCOLS: tuple[str, ...] = ("nucla_xview", "nucla_xview_dedup", "nucla_xsub")


def process_nucla_file(path: Path, *, min_frames: int = 1) -> FileOutcome:
    """One ``aXX_sYY_eZZ_vWW.json`` view -> one sample with its cross-view and cross-subject splits.

    ``min_frames`` (default 1: keep everything) excludes views shorter than that with reason
    ``too_few_frames``. The default keeps the two 1-frame views of a02_s09_e04 because the standard
    cross-view counts (1,020 / 464) include them; their motion streams are zero (docs/datasets.md).
    """
    from skeleton_attention.skeletons import nucla

    seq = nucla.read_nucla_file(path)
    if seq.num_frames < min_frames:
        return FileOutcome(
            excluded_reason="too_few_frames",
            excluded_detail=f"{seq.num_frames} frame(s), fewer than min_frames={min_frames}",
        )
    view = int(seq.meta["camera"])  # type: ignore[arg-type]
    # is this file a bit-exact copy of a lower-numbered view's file of the same recording?
    copies = [v for v in nucla.NUCLA_VIEWS if v < view and nucla.is_copy_of_sibling(path, seq.coords, v)]
    leak = view not in nucla.XVIEW_TRAIN_VIEWS and any(v in nucla.XVIEW_TRAIN_VIEWS for v in copies)
    splits = {
        "nucla_xview": nucla.nucla_xview_split(view),
        "nucla_xview_dedup": nucla.nucla_xview_dedup_split(view, leak),
        "nucla_xsub": nucla.nucla_xsub_split(int(seq.meta["subject"])),  # type: ignore[arg-type]
    }
    report = {"sample_id": seq.sample_id, "frames": seq.num_frames, "copy_of": ",".join(f"v{v:02d}" for v in copies)}
    return FileOutcome(samples=[(seq, splits)], report=report)


def stacked_views_sequence(
    group: Mapping[str, object], table: SampleTable, coords: np.ndarray, cameras_present: str
) -> tuple[SkeletonSequence, dict[str, str | int | None]]:
    """The multi-view sample of a recording: ``coords`` (views, M, T, V, C) stacked to
    ``(views * M, T, V, C)``, identity from the recording's first view, cross-view splits nulled
    (every view is an input, so cross-view is ill-defined; the subject/setup protocols apply)."""
    rows: Mapping[int, int] = group["rows"]  # type: ignore[assignment]
    metadata = table.metadata()
    num_views, bodies = coords.shape[:2]
    first = metadata.iloc[next(iter(rows.values()))].to_dict()
    seq = sequence_from_metadata(first, coords.reshape(num_views * bodies, *coords.shape[2:]))
    seq.sample_id = str(group["view_group"])
    seq.source_file = ""
    seq.meta.pop("camera", None)
    seq.meta.update({"num_views": num_views, "cameras_present": cameras_present})
    splits = {c[len("split_") :]: first[c] for c in metadata.columns if c.startswith("split_")}
    return seq, {p: (s if "xview" not in p else None) for p, s in splits.items()}


def process_nucla_recording(
    group: Mapping[str, object],
    *,
    table: SampleTable,
    cameras: Sequence[int] = (1, 2, 3),
    frame: str = "body",
    align: Mapping[str, object] | None = None,
    normalize: Mapping[str, object] | None = None,
    copied: str = "mask",
    copy_min_share: float = 0.2,
) -> FileOutcome:
    """The views of one N-UCLA recording on the reference view's timeline, in the spatial ``frame``
    (``body``, ``camera`` or ``aligned``; :func:`~skeleton_attention.skeletons.alignment.multiview_frame`).

    The views come from the intermediate table (camera coordinates as read). Slot k of the stacked
    axis is camera ``cameras[k]``; a camera the recording lacks is a zero slot and is absent from
    ``cameras_present``. The report row gives, per camera, frame count, offset, rate, rotation, the
    rigid residual and the naive (body frame + stretch by index) residual, in metres.
    ``copied="mask"`` masks a view of which at least ``copy_min_share`` of the frames are bit-exact
    copies of a lower-numbered view's frames (:func:`~skeleton_attention.skeletons.nucla.copied_views`;
    102 recordings of the release); the report's ``copied_views`` names them (``"3=2"``: camera 3 copies camera 2).
    """
    from skeleton_attention.skeletons.alignment import multiview_frame, naive_alignment, rotation_angle_deg
    from skeleton_attention.skeletons.layouts import KINECT20
    from skeleton_attention.skeletons.nucla import copied_views as find_copied_views

    rows: Mapping[int, int] = group["rows"]  # type: ignore[assignment]
    views = {c: table.read_one(row, ("joint",))["joint"] for c, row in rows.items()}
    copies = find_copied_views(views, copy_min_share)
    if copied == "mask":
        # a "view" holding another camera's frames is no view: its slot is masked like a missing one
        views = {c: v for c, v in views.items() if c not in copies}
    elif copied != "keep":
        raise ValueError(f"copied_views must be 'mask' or 'keep', got {copied!r}")
    cams = tuple(cameras)
    params = dict(align or {})
    reference = int(params.pop("reference_camera", cams[0]))  # type: ignore[call-overload]
    aligned = multiview_frame(
        views,
        frame,
        reference_camera=reference,
        cameras=cams,
        layout=KINECT20,  # type: ignore[arg-type]
        normalize_params=normalize,
        **params,
    )
    naive = naive_alignment(views, reference_camera=reference, cameras=cams, layout=KINECT20)
    present = "".join(str(c) for c, ok in zip(aligned.cameras, aligned.view_mask, strict=True) if ok)
    seq, splits = stacked_views_sequence(group, table, aligned.coords, present)
    splits = {p: s for p, s in splits.items() if "xview" not in p}  # the table has no cross-view column
    report: dict[str, object] = {
        "view_group": seq.sample_id,
        "cameras_present": present,
        "complete": len(present) == len(cams),
        "frame": frame,
        "reference": aligned.reference_camera,
        "frames": int(aligned.coords.shape[2]),
        "files_present": "".join(str(c) for c in cams if c in rows),
        "copied_views": ",".join(f"{c}={s}" for c, s in sorted(copies.items())),
    }
    for c in cams:
        if c not in views or c == aligned.reference_camera:
            continue
        report.update(
            {
                f"frames_c{c}": int(views[c].shape[1]),
                f"offset_c{c}": aligned.offsets[c],
                f"rate_c{c}": aligned.rates[c],
                f"rotation_deg_c{c}": rotation_angle_deg(aligned.rotations[c]),
                f"residual_c{c}": aligned.residuals[c],
                f"naive_residual_c{c}": naive.residuals[c],
            }
        )
    return FileOutcome(samples=[(seq, splits)], report=report)
