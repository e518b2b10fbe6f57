"""UTKinect-Action3D reader (Xia, Chen and Aggarwal, 2012).

``joints_sXX_eYY.txt`` holds one Kinect v1 skeleton per line: a frame id followed by 20
joints × (x, y, z), joints in the Kinect SDK order (layout ``kinect20``), metres in the
sensor frame (y up, z away from the sensor). Frame ids are the ids of the RGB/depth frames,
with gaps, and a few ids appear on two consecutive lines with different skeletons.

``actionLabel.txt`` has, per file, a header line ``sXX_eYY`` then one ``action: start end``
line per action; ``start``/``end`` are frame ids (inclusive). One entry is ``NaN NaN``
(s10_e02 carry): that action was not annotated, so the data set has 199 samples, not 200.
See docs/datasets.md for the measured quirks and the differences with
``actionLabel_modified.txt``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MalformedSkeletonFile
from .layouts import KINECT20
from .sequence import SkeletonSequence
from .textfile import read_lines

DATASET = "utkinect"
#: class order of the label index (the order the actions are listed in actionLabel.txt)
UTKINECT_ACTIONS: tuple[str, ...] = (
    "walk",
    "sitDown",
    "standUp",
    "pickUp",
    "carry",
    "throw",
    "push",
    "pull",
    "waveHands",
    "clapHands",
)
UTKINECT_SUBJECTS: tuple[int, ...] = tuple(range(1, 11))
NUM_JOINTS = KINECT20.num_joints  # 20
_FIELDS = 1 + 3 * NUM_JOINTS  # frame id + xyz per joint
_HEADER = re.compile(r"s(\d{2})_e(\d{2})")
_JOINTS_NAME = re.compile(r"joints_(s\d{2}_e\d{2})\.txt")
DUPLICATE_MODES = ("keep", "first", "last")


@dataclass(frozen=True)
class UtkSegment:
    """One annotated action of one recording; ``start``/``end`` are ``None`` when NaN."""

    action: str
    start: int | None
    end: int | None
    line: int


def _frame_bound(path: Path, token: str, number: int) -> int | None:
    if token.lower() == "nan":
        return None
    try:
        value = float(token)
    except ValueError:
        raise MalformedSkeletonFile(str(path), "non_numeric", f"frame id {token!r}", number) from None
    if not np.isfinite(value) or value != int(value):
        raise MalformedSkeletonFile(str(path), "non_numeric", f"frame id {token!r} is not an integer", number)
    return int(value)


def read_utkinect_labels(path: str | Path) -> dict[str, list[UtkSegment]]:
    """Parse an action label file into ``{"sXX_eYY": [UtkSegment, ...]}`` in file order.

    Every block must list each of the 10 actions exactly once; ``NaN NaN`` is kept as a segment
    with ``start = end = None``; a start after its end raises.
    """
    path = Path(path)
    blocks: dict[str, list[UtkSegment]] = {}
    current: str | None = None
    for number, line in enumerate(read_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        if _HEADER.fullmatch(text):
            if text in blocks:
                raise MalformedSkeletonFile(str(path), "duplicate_sample", f"block {text} repeats", number)
            blocks[text] = []
            current = text
            continue
        name, sep, rest = text.partition(":")
        if not sep:
            raise MalformedSkeletonFile(str(path), "missing_field", f"not 'action: start end': {text!r}", number)
        if current is None:
            raise MalformedSkeletonFile(str(path), "missing_field", "action line before any sXX_eYY header", number)
        name = name.strip()
        if name not in UTKINECT_ACTIONS:
            raise MalformedSkeletonFile(str(path), "label_mismatch", f"unknown action {name!r}", number)
        if any(s.action == name for s in blocks[current]):
            raise MalformedSkeletonFile(str(path), "duplicate_sample", f"{current} lists {name} twice", number)
        tokens = rest.split()
        if len(tokens) != 2:
            raise MalformedSkeletonFile(
                str(path), "missing_field", f"{name}: expected start and end, got {tokens}", number
            )
        start, end = (_frame_bound(path, t, number) for t in tokens)
        if (start is None) != (end is None):
            raise MalformedSkeletonFile(str(path), "non_numeric", f"{name}: only one bound is NaN", number)
        if start is not None and end is not None and start > end:
            raise MalformedSkeletonFile(str(path), "label_mismatch", f"{name}: start {start} > end {end}", number)
        blocks[current].append(UtkSegment(action=name, start=start, end=end, line=number))
    if not blocks:
        raise MalformedSkeletonFile(str(path), "zero_frames", "no sXX_eYY block")
    for key, segments in blocks.items():
        missing = [a for a in UTKINECT_ACTIONS if a not in {s.action for s in segments}]
        if missing:
            raise MalformedSkeletonFile(str(path), "missing_field", f"{key} lacks {missing}")
    return blocks


def read_utkinect_joints(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one joints file: frame ids ``(N,)`` int64 and skeletons ``(N, 20, 3)`` float64.

    Every line must hold exactly 61 finite numbers, the first an integer frame id; ids must
    not decrease. Rows are returned in file order, repeated ids included.
    """
    path = Path(path)
    lines = read_lines(path)
    rows: list[list[str]] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            raise MalformedSkeletonFile(str(path), "truncated", "blank line inside the file", number)
        if len(fields) != _FIELDS:
            raise MalformedSkeletonFile(
                str(path),
                "wrong_joint_count",
                f"{len(fields)} values, expected {_FIELDS} (frame id + {NUM_JOINTS} joints x 3)",
                number,
            )
        rows.append(fields)
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        for number, fields in enumerate(rows, start=1):
            for token in fields:
                try:
                    float(token)
                except ValueError:
                    raise MalformedSkeletonFile(str(path), "non_numeric", f"value {token!r}", number) from None
        raise  # pragma: no cover - numpy and float() disagree only on exotic input
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise MalformedSkeletonFile(str(path), "non_finite", f"value {rows[row][col]!r}", int(row) + 1)
    ids = values[:, 0]
    if np.any(ids != np.round(ids)) or np.any(ids < 0):
        row = int(np.flatnonzero((ids != np.round(ids)) | (ids < 0))[0])
        raise MalformedSkeletonFile(str(path), "non_numeric", f"frame id {rows[row][0]!r}", row + 1)
    frame_ids = ids.astype(np.int64)
    down = np.flatnonzero(np.diff(frame_ids) < 0)
    if down.size:
        row = int(down[0]) + 1
        raise MalformedSkeletonFile(
            str(path), "unordered_frames", f"frame id {frame_ids[row]} after {frame_ids[row - 1]}", row + 1
        )
    return frame_ids, values[:, 1:].reshape(-1, NUM_JOINTS, 3)


def _deduplicate(frame_ids: np.ndarray, joints: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "keep":
        return frame_ids, joints
    if mode not in DUPLICATE_MODES:
        raise ValueError(f"duplicate_frames must be one of {DUPLICATE_MODES}, not {mode!r}")
    # ids are non-decreasing, so repeats are adjacent
    if mode == "first":
        keep = np.concatenate(([True], frame_ids[1:] != frame_ids[:-1]))
    else:
        keep = np.concatenate((frame_ids[1:] != frame_ids[:-1], [True]))
    return frame_ids[keep], joints[keep]


def _subject_episode(key: str) -> tuple[int, int]:
    match = _HEADER.fullmatch(key)
    assert match is not None  # keys come from read_utkinect_labels or _JOINTS_NAME
    return int(match.group(1)), int(match.group(2))


def _segments(joints_path: Path, key: str, segments: list[UtkSegment], duplicate_frames: str) -> list[SkeletonSequence]:
    """Cut one recording into its annotated actions (NaN segments are skipped)."""
    frame_ids, joints = _deduplicate(*read_utkinect_joints(joints_path), duplicate_frames)
    subject, episode = _subject_episode(key)
    samples: list[SkeletonSequence] = []
    for seg in segments:
        if seg.start is None or seg.end is None:
            continue
        rows = (frame_ids >= seg.start) & (frame_ids <= seg.end)
        if not rows.any():
            raise MalformedSkeletonFile(
                str(joints_path), "zero_frames", f"{seg.action} [{seg.start}, {seg.end}] has no frame"
            )
        samples.append(
            SkeletonSequence(
                sample_id=f"{key}_{seg.action}",
                dataset=DATASET,
                layout=KINECT20.name,
                coords=joints[rows][np.newaxis].astype(np.float32),
                label=UTKINECT_ACTIONS.index(seg.action),
                label_name=seg.action,
                source_file=str(joints_path),
                meta={"subject": subject, "episode": episode, "start_frame": seg.start, "end_frame": seg.end},
            )
        )
    return samples


def read_utkinect_file(
    path: str | Path, *, label_file: str | Path, duplicate_frames: str = "keep"
) -> list[SkeletonSequence]:
    """The annotated actions of one ``joints_sXX_eYY.txt``, cut with the label file at
    ``label_file`` (a path); see :func:`read_utkinect` for the rules."""
    path = Path(path)
    match = _JOINTS_NAME.fullmatch(path.name)
    if match is None:
        raise MalformedSkeletonFile(str(path), "bad_name", f"{path.name!r} is not joints_sXX_eYY.txt")
    key = match.group(1)
    blocks = read_utkinect_labels(label_file)
    if key not in blocks:
        raise MalformedSkeletonFile(str(path), "missing_field", f"label file {label_file} has no {key} block")
    return _segments(path, key, blocks[key], duplicate_frames)


def read_utkinect(
    root: str | Path,
    *,
    label_file: str = "actionLabel.txt",
    duplicate_frames: str = "keep",
) -> list[SkeletonSequence]:
    """One sample per (recording, annotated action): coords ``(1, T, 20, 3)``, layout kinect20.

    ``label_file`` is a name inside ``root``. A segment is every joints row whose frame id lies
    in ``[start, end]`` (inclusive), in file order. ``duplicate_frames`` decides what a
    repeated frame id contributes: ``"keep"`` (default: every row, they are distinct
    skeletons), ``"first"`` or ``"last"``. NaN segments are not samples. A segment with no row
    raises ``zero_frames``; a block whose joints file is absent raises ``missing_field``.
    """
    root = Path(root)
    label_path = root / label_file
    blocks = read_utkinect_labels(label_path)
    samples: list[SkeletonSequence] = []
    for key in sorted(blocks):
        joints_path = root / f"joints_{key}.txt"
        if not joints_path.is_file():
            raise MalformedSkeletonFile(str(label_path), "missing_field", f"no joints file {joints_path.name}")
        samples.extend(_segments(joints_path, key, blocks[key], duplicate_frames))
    return samples


def utkinect_split(subject: int) -> str:
    """Cross-subject protocol: odd subjects (1, 3, 5, 7, 9) train, even subjects test."""
    if subject not in UTKINECT_SUBJECTS:
        raise ValueError(f"UTKinect subject must be 1..10, not {subject!r}")
    return "train" if subject % 2 == 1 else "test"


def utkinect_loso_split(subject: int, test_subject: int) -> str:
    """Leave-one-subject-out fold ``test_subject``: that subject tests, the other nine train."""
    for value in (subject, test_subject):
        if value not in UTKINECT_SUBJECTS:
            raise ValueError(f"UTKinect subject must be 1..10, not {value!r}")
    return "test" if subject == test_subject else "train"


def utkinect_sequence_ids(blocks: dict[str, list[UtkSegment]]) -> list[str]:
    """The sample ids of every annotated action (NaN segments excluded), sorted: the "sequences"
    of the leave-one-sequence-out protocol (one annotated action instance of one recording)."""
    return sorted(
        f"{key}_{seg.action}"
        for key, segments in blocks.items()
        for seg in segments
        if seg.start is not None and seg.end is not None
    )


def utkinect_loocv_folds(blocks: dict[str, list[UtkSegment]]) -> dict[str, int]:
    """Leave-one-sequence-out cross-validation (Xia et al. 2012): every annotated action sequence is
    its own fold; fold numbers 1..N follow the sorted sample ids, so they depend only on the label
    file (199 folds with ``actionLabel.txt``), not on which joints files were read."""
    return {sample_id: fold for fold, sample_id in enumerate(utkinect_sequence_ids(blocks), start=1)}


def utkinect_loso_fold(subject: int) -> int:
    """Leave-one-subject-out as one fold column: the fold of a sample is its subject (1..10)."""
    if subject not in UTKINECT_SUBJECTS:
        raise ValueError(f"UTKinect subject must be 1..10, not {subject!r}")
    return int(subject)
