"""Per-data-set preparation: raw file -> samples with split membership, then samples -> streams.

Plain functions over the readers, picklable for the ingest process pool; the Kedro nodes in
``pipelines/prepare_*`` only wire them to the catalog.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from skeleton_attention.skeletons import kinetics, msr, ntu, utkinect
from skeleton_attention.skeletons.denoise import denoise_ntu
from skeleton_attention.skeletons.ingest import FileOutcome
from skeleton_attention.skeletons.layouts import get_layout
from skeleton_attention.skeletons.normalize import normalize_sequence
from skeleton_attention.skeletons.sequence import SkeletonSequence
from skeleton_attention.skeletons.streams import compute_streams
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
) -> FileOutcome:
    clip_id = Path(path).stem
    in_train = clip_id in train_map
    label_map = train_map if in_train else val_map
    entry = label_map.get(clip_id)
    if entry is not None and entry.get("has_skeleton") is False:
        return FileOutcome(excluded_reason="no_skeleton", excluded_detail="label map says has_skeleton: false")
    seq = kinetics.read_kinetics_clip(path, label_map=label_map or None, max_people=max_people)
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


def _records(frame, chunk: int = 1024) -> Iterator[dict[str, object]]:
    """Rows as dicts, a chunk at a time (a full ``to_dict`` costs ~1.5 KB per row at once)."""
    for start in range(0, len(frame), chunk):
        yield from frame.iloc[start:start + chunk].to_dict("records")


def featurize(
    table: SampleTable,
    normalize: Mapping[str, object] | None,
    streams: Sequence[str],
) -> Iterator[dict[str, object]]:
    """Normalize each sample of an intermediate table and decouple it into streams, row by row."""
    metadata = table.metadata()
    split_columns = [c for c in metadata.columns if c.startswith("split_")]
    params, names = dict(normalize or {}), tuple(streams)
    for record in _records(metadata):
        coords = table.read_one(int(record["row"]), ("joint",))["joint"]
        try:
            seq = normalize_sequence(sequence_from_metadata(record, coords), params)
            arrays = compute_streams(seq.coords, get_layout(seq.layout), names=names)
        except Exception as error:  # name the sample: the trace alone does not say which one failed
            error.add_note(f"while building the streams of {record['sample_id']} ({record['source_file']})")
            raise
        splits = {c[len("split_"):]: record[c] for c in split_columns}
        yield sequence_to_row(seq, arrays, splits)


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
) -> FileOutcome:
    """Align the camera views of one recording into the reference camera's body frame.

    Each view is re-read from its raw file with the same denoising decisions but on its *full*
    timeline: denoising drops frames where no actor is present, which would shift a view against
    the others (and the raw file also carries Kinect's per-joint tracking state, which the residual
    over joints tracked in both views needs). The sample's ``coords`` stack the views: shape
    ``(views * M, T, V, 3)`` in camera order, with ``num_views`` = len(cameras); absent views are
    zeros and listed in ``cameras_present``.
    """
    from skeleton_attention.skeletons.views import align_views, load_ntu_view

    rows: Mapping[int, int] = group["rows"]  # type: ignore[assignment]
    metadata = table.metadata()
    views, tracked = {}, {}
    for camera, row in rows.items():
        views[camera], tracked[camera] = load_ntu_view(metadata.at[row, "source_file"], denoise_params=denoise)
    aligned = align_views(
        views, cameras=tuple(cameras), tracked=tracked, normalize_output=True, **dict(align or {})
    )
    num_views, bodies = aligned.coords.shape[:2]
    first = metadata.iloc[next(iter(rows.values()))].to_dict()
    present = "".join(str(c) for c, ok in zip(aligned.cameras, aligned.view_mask, strict=True) if ok)
    seq = sequence_from_metadata(first, aligned.coords.reshape(num_views * bodies, *aligned.coords.shape[2:]))
    seq.sample_id = str(group["view_group"])
    seq.meta.pop("camera", None)
    seq.meta.update({"num_views": num_views, "cameras_present": present})
    splits = {c[len("split_"):]: first[c] for c in metadata.columns if c.startswith("split_")}
    # cross-view is ill-defined when every view is an input: only the subject/setup protocols apply
    splits = {p: (s if "xview" not in p else None) for p, s in splits.items()}
    report = {
        "view_group": seq.sample_id,
        "cameras_present": present,
        "complete": len(present) == len(tuple(cameras)),
        **{f"offset_c{c}": float(v) for c, v in aligned.offsets.items()},
        **{f"residual_c{c}": float(v) for c, v in aligned.residuals.items()},
        **{f"residual_tracked_c{c}": float(v) for c, v in aligned.residuals_tracked.items()},
    }
    return FileOutcome(samples=[(seq, splits)], report=report)
