"""Kinetics-skeleton reader (the ST-GCN release: one OpenPose JSON per clip).

A clip file is ``{"data": [{"frame_index": i, "skeleton": [{"pose": [x0, y0, ..., x17, y17],
"score": [s0, ..., s17]}, ...]}, ...], "label": str, "label_index": int}``. Joints are the
OpenPose COCO-18 keypoints (layout ``openpose18``).

What this module keeps *raw*: ``x`` and ``y`` are OpenPose's coordinates divided by the
video frame's width and height, so they lie in about ``[0, 1]`` (the release has values up to
1.04 for keypoints just outside the frame); ``score`` is OpenPose's part confidence (seen up
to 1.18, so not a probability). An undetected keypoint is ``(0, 0)`` with score 0 (in the
real files score 0 and pose ``(0, 0)`` always coincide). ST-GCN's centring (``x - 0.5``) and
zeroing of score-0 joints belong to ``normalize.py``.

Person slots: per frame, people are ranked by summed joint score and the best
``max_people`` fill slots ``0..max_people-1`` in that order (ST-GCN's rule). OpenPose has no
tracking, so slot ``m`` is "the m-th most confident person of that frame", not one person
followed through the clip. Ties keep the file order (stable sort).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MalformedSkeletonFile
from .layouts import OPENPOSE18
from .sequence import SkeletonSequence
from .textfile import read_text

NUM_JOINTS = OPENPOSE18.num_joints  # 18
DATASET = "kinetics"


@dataclass(frozen=True)
class KineticsFrame:
    """One ``data`` entry: its ``frame_index`` and the people as ``(P, 18, 3)`` (x, y, score)."""

    frame_index: int
    people: np.ndarray


@dataclass(frozen=True)
class KineticsClip:
    """A validated clip file, every person kept, before slot selection."""

    clip_id: str
    label: str
    label_index: int
    frames: tuple[KineticsFrame, ...]

    def people_per_frame(self) -> list[int]:
        return [int(f.people.shape[0]) for f in self.frames]


# --------------------------------------------------------------------------- label files


class LabelConflict(ValueError):
    """A clip listed in both label maps: the maps cannot say which split it belongs to."""


def label_map_classes(*label_maps: Mapping[str, Mapping[str, object]] | None) -> int | None:
    """The number of classes the label maps define: their distinct label names (``None`` if empty).

    The official maps index the 400 names 0..399, so a ``label_index`` at or above this count
    cannot be a Kinetics-400 class, even when file and map agree on it.
    """
    names = {entry["label"] for m in label_maps if m for entry in m.values()}
    return len(names) or None


def _load_json(path: Path) -> object:
    text = read_text(path, "utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedSkeletonFile(str(path), "malformed_json", exc.msg, exc.lineno) from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_label_map(path: str | Path) -> dict[str, dict[str, object]]:
    """Read an ST-GCN label map: ``{clip_id: {"label", "label_index", "has_skeleton"}}``.

    Every entry must have a string ``label``, an integer ``label_index`` and a boolean
    ``has_skeleton``; anything else raises :class:`MalformedSkeletonFile`.
    """
    path = Path(path)
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise MalformedSkeletonFile(str(path), "malformed_json", "top level is not an object")
    out: dict[str, dict[str, object]] = {}
    for clip_id, entry in doc.items():
        if not isinstance(entry, dict):
            raise MalformedSkeletonFile(str(path), "malformed_json", f"entry {clip_id!r} is not an object")
        for key in ("label", "label_index", "has_skeleton"):
            if key not in entry:
                raise MalformedSkeletonFile(str(path), "missing_field", f"entry {clip_id!r} has no {key!r}")
        label, index, has_skeleton = entry["label"], entry["label_index"], entry["has_skeleton"]
        if not isinstance(label, str):
            raise MalformedSkeletonFile(str(path), "malformed_json", f"entry {clip_id!r}: label not a string")
        if not _is_int(index):
            raise MalformedSkeletonFile(
                str(path), "non_numeric", f"entry {clip_id!r}: label_index {index!r} is not an integer"
            )
        if not isinstance(has_skeleton, bool):
            raise MalformedSkeletonFile(str(path), "malformed_json", f"entry {clip_id!r}: has_skeleton not a boolean")
        out[clip_id] = {"label": label, "label_index": index, "has_skeleton": has_skeleton}
    return out


def load_label_names(path: str | Path) -> list[str]:
    """Read ``label_name.txt``: line ``i`` (0-based) is the name of class ``i``.

    Trailing blank lines are ignored; a blank line inside the list or a repeated name raises
    (either would make name-based remapping ambiguous).
    """
    path = Path(path)
    lines = read_text(path, "utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    seen: dict[str, int] = {}
    for number, name in enumerate(lines, start=1):
        if not name.strip():
            raise MalformedSkeletonFile(str(path), "missing_field", "blank class name", number)
        if name in seen:
            raise MalformedSkeletonFile(
                str(path), "label_mismatch", f"class name {name!r} repeats line {seen[name]}", number
            )
        seen[name] = number
    return lines


def remap_by_name(
    label_map: Mapping[str, Mapping[str, object]], label_names: Sequence[str]
) -> dict[str, dict[str, object]]:
    """Return a copy of ``label_map`` whose ``label_index`` is the position of ``label`` in
    ``label_names``.

    Used for the fork's re-indexed train maps (``kinetics_raw_relabelled``: names right, indices
    0-4) so they can be mixed with official data. An unknown name raises ``ValueError``.
    """
    index_of = {name: i for i, name in enumerate(label_names)}
    out: dict[str, dict[str, object]] = {}
    for clip_id, entry in label_map.items():
        name = entry["label"]
        if name not in index_of:
            raise ValueError(f"clip {clip_id!r}: label {name!r} is not among the {len(label_names)} names")
        out[clip_id] = {**entry, "label_index": index_of[name]}
    return out


def kinetics_split(
    clip_id: str,
    train_map: Mapping[str, object] | None,
    val_map: Mapping[str, object] | None,
) -> str | None:
    """``"train"`` if the clip is in the train map, ``"test"`` if in the val map, else ``None``.

    Kinetics-skeleton has no held-out test labels, so its val set is the test set (ST-GCN).
    A clip in both maps raises :class:`LabelConflict` (a ``ValueError``): the maps then cannot
    define a split; the preparation quarantines such a clip as ``label_conflict``.
    """
    in_train = train_map is not None and clip_id in train_map
    in_val = val_map is not None and clip_id in val_map
    if in_train and in_val:
        raise LabelConflict(f"clip {clip_id!r} is in both the train and the val label map")
    if in_train:
        return "train"
    if in_val:
        return "test"
    return None


# --------------------------------------------------------------------------- clip parsing


def _numbers(path: Path, values: object, expected: int, what: str, where: str) -> np.ndarray:
    if not isinstance(values, list):
        raise MalformedSkeletonFile(str(path), "malformed_json", f"{where}: {what} is not a list")
    if len(values) != expected:
        raise MalformedSkeletonFile(
            str(path), "wrong_joint_count", f"{where}: {what} has {len(values)} values, expected {expected}"
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise MalformedSkeletonFile(str(path), "non_numeric", f"{where}: {what} holds {v!r}")
        if not math.isfinite(v):
            raise MalformedSkeletonFile(str(path), "non_finite", f"{where}: {what} holds {v!r}")
    return np.asarray(values, dtype=np.float64)


def _field(path: Path, obj: Mapping[str, object], key: str, where: str) -> object:
    if key not in obj:
        raise MalformedSkeletonFile(str(path), "missing_field", f"{where} has no {key!r}")
    return obj[key]


def parse_kinetics_json(path: str | Path) -> KineticsClip:
    """Validate a clip file and return every frame with every person (no selection yet)."""
    path = Path(path)
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise MalformedSkeletonFile(str(path), "malformed_json", "top level is not an object")
    data = _field(path, doc, "data", "clip")
    label = _field(path, doc, "label", "clip")
    label_index = _field(path, doc, "label_index", "clip")
    if not isinstance(data, list):
        raise MalformedSkeletonFile(str(path), "malformed_json", "'data' is not a list")
    if not isinstance(label, str):
        raise MalformedSkeletonFile(str(path), "malformed_json", f"label {label!r} is not a string")
    if not _is_int(label_index):
        raise MalformedSkeletonFile(str(path), "non_numeric", f"label_index {label_index!r} not an integer")

    frames: list[KineticsFrame] = []
    for k, entry in enumerate(data):
        where = f"data[{k}]"
        if not isinstance(entry, dict):
            raise MalformedSkeletonFile(str(path), "malformed_json", f"{where} is not an object")
        index = _field(path, entry, "frame_index", where)
        people = _field(path, entry, "skeleton", where)
        if not _is_int(index):
            raise MalformedSkeletonFile(str(path), "non_numeric", f"{where}: frame_index {index!r}")
        if index < 0:
            raise MalformedSkeletonFile(str(path), "malformed_json", f"{where}: frame_index {index} < 0")
        if not isinstance(people, list):
            raise MalformedSkeletonFile(str(path), "malformed_json", f"{where}: 'skeleton' is not a list")
        arr = np.zeros((len(people), NUM_JOINTS, 3), dtype=np.float64)
        for p, person in enumerate(people):
            pwhere = f"{where}.skeleton[{p}]"
            if not isinstance(person, dict):
                raise MalformedSkeletonFile(str(path), "malformed_json", f"{pwhere} is not an object")
            pose = _numbers(path, _field(path, person, "pose", pwhere), 2 * NUM_JOINTS, "pose", pwhere)
            score = _numbers(path, _field(path, person, "score", pwhere), NUM_JOINTS, "score", pwhere)
            if (score < 0).any():
                # OpenPose confidences are >= 0 (0 = not detected); a negative one is corruption
                raise MalformedSkeletonFile(str(path), "bad_score", f"{pwhere}: negative score {float(score.min())!r}")
            arr[p, :, 0] = pose[0::2]
            arr[p, :, 1] = pose[1::2]
            arr[p, :, 2] = score
        frames.append(KineticsFrame(frame_index=index, people=arr))
    return KineticsClip(clip_id=path.stem, label=label, label_index=label_index, frames=tuple(frames))


def _frame_slots(
    path: Path, clip: KineticsClip, frame_index_base: int | None, max_frames: int | None = None
) -> tuple[list[int], int]:
    """Map each frame to its 0-based time slot; return the slots and the clip length.

    ``max_frames`` bounds the length *before* anything is allocated: one corrupt ``frame_index``
    (say 1,000,000) would otherwise make a mostly-empty array of a million frames.
    """
    indices = [f.frame_index for f in clip.frames]
    # The ST-GCN release numbers frames from 1; a 0 can only mean a 0-based file.
    base = (0 if min(indices) == 0 else 1) if frame_index_base is None else frame_index_base
    if base not in (0, 1):
        raise ValueError(f"frame_index_base must be 0, 1 or None, not {frame_index_base!r}")
    seen: dict[int, int] = {}
    for k, index in enumerate(indices):
        if index < base:
            raise MalformedSkeletonFile(
                str(path), "malformed_json", f"data[{k}]: frame_index {index} below base {base}"
            )
        if index in seen:
            raise MalformedSkeletonFile(
                str(path), "malformed_json", f"frame_index {index} repeats: data[{seen[index]}], data[{k}]"
            )
        seen[index] = k
    slots = [i - base for i in indices]
    length = max(slots) + 1
    if max_frames is not None and length > max_frames:
        k = slots.index(length - 1)
        raise MalformedSkeletonFile(
            str(path),
            "too_many_frames",
            f"data[{k}]: frame_index {indices[k]} makes a clip of {length} frames, above max_frames={max_frames}",
        )
    return slots, length


def select_people(people: np.ndarray, max_people: int, max_candidates: int | None = None) -> np.ndarray:
    """Rank one frame's ``(P, V, 3)`` people by summed score; return the best ``max_people``.

    ``max_candidates`` reproduces ST-GCN's ``num_person_in`` (it ranks only the first 5 people
    listed); ``None`` ranks everyone.
    """
    if max_candidates is not None:
        people = people[:max_candidates]
    order = np.argsort(-people[:, :, 2].sum(axis=1), kind="stable")
    return people[order[:max_people]]


def _resolve_label(
    path: Path,
    clip: KineticsClip,
    label_map: Mapping[str, Mapping[str, object]] | None,
    label_names: Sequence[str] | None,
    num_classes: int | None = None,
) -> tuple[int, str]:
    name, index = clip.label, clip.label_index
    if label_map is not None:
        entry = label_map.get(clip.clip_id)
        if entry is None:
            raise MalformedSkeletonFile(str(path), "label_mismatch", f"{clip.clip_id!r} not in label map")
        if not entry["has_skeleton"]:
            raise MalformedSkeletonFile(str(path), "no_skeleton", "label map marks has_skeleton=false")
        if entry["label"] != name or entry["label_index"] != index:
            raise MalformedSkeletonFile(
                str(path),
                "label_mismatch",
                f"file says {name!r}/{index}, label map says {entry['label']!r}/{entry['label_index']}",
            )
        # the map wins, but it has just been checked to agree with the file
    if label_names is not None:
        try:
            index = list(label_names).index(name)
        except ValueError:
            raise MalformedSkeletonFile(
                str(path), "label_mismatch", f"label {name!r} is not among the {len(label_names)} class names"
            ) from None
    if index < 0:
        raise MalformedSkeletonFile(str(path), "label_mismatch", f"label_index {index} is negative")
    if num_classes is not None and index >= num_classes:
        raise MalformedSkeletonFile(
            str(path),
            "label_mismatch",
            f"label_index {index} is outside [0, {num_classes}): {num_classes} classes (label maps listing a "
            "subset of the classes need prepare_kinetics.num_classes)",
        )
    return index, name


def read_kinetics_clip(
    path: str | Path,
    *,
    label_map: Mapping[str, Mapping[str, object]] | None = None,
    label_names: Sequence[str] | None = None,
    max_people: int = 2,
    num_frames: int | None = None,
    frame_index_base: int | None = None,
    max_candidates: int | None = None,
    num_classes: int | None = None,
    max_frames: int | None = None,
) -> SkeletonSequence:
    """Read one clip as coords ``(max_people, T, 18, 3)`` with channels (x, y, score).

    * ``T`` is the last frame's slot + 1; a frame absent from ``data`` or with nobody in it is
      zeros. ``frame_index_base`` 1 (the release), 0, or ``None`` = 0 if some frame_index is
      0 else 1. ``num_frames`` pads ``T`` up to that length (ST-GCN uses 300); a longer clip
      raises ``trailing_data`` rather than being cut silently.
    * Label: the file's ``label_index``; with ``label_map`` the map entry must agree with the
      file (else ``label_mismatch``) and ``has_skeleton=false`` raises ``no_skeleton``; with
      ``label_names`` the index becomes the position of the label name in that list.
    * A clip with no frames raises ``zero_frames``; one where nobody is ever detected raises
      ``no_skeleton``; a negative score raises ``bad_score``.
    * ``num_classes`` bounds the label (``label_mismatch`` outside ``[0, num_classes)``);
      ``max_frames`` bounds ``T`` before allocating (``too_many_frames``).
    """
    if max_people < 1:
        raise ValueError(f"max_people must be >= 1, not {max_people}")
    path = Path(path)
    clip = parse_kinetics_json(path)
    if not clip.frames:
        raise MalformedSkeletonFile(str(path), "zero_frames", "'data' is empty")
    if not any(f.people.shape[0] for f in clip.frames):
        raise MalformedSkeletonFile(str(path), "no_skeleton", f"no person detected in any of {len(clip.frames)} frames")
    label, label_name = _resolve_label(path, clip, label_map, label_names, num_classes)
    slots, length = _frame_slots(path, clip, frame_index_base, max_frames)
    if num_frames is not None:
        if length > num_frames:
            raise MalformedSkeletonFile(
                str(path), "trailing_data", f"clip has {length} frames, more than num_frames={num_frames}"
            )
        length = num_frames
    coords = np.zeros((max_people, length, NUM_JOINTS, 3), dtype=np.float32)
    for slot, frame in zip(slots, clip.frames, strict=True):
        if frame.people.shape[0]:
            best = select_people(frame.people, max_people, max_candidates)
            coords[: best.shape[0], slot] = best
    return SkeletonSequence(
        sample_id=clip.clip_id,
        dataset=DATASET,
        layout=OPENPOSE18.name,
        coords=coords,
        label=label,
        label_name=label_name,
        source_file=str(path),
        meta={"clip_id": clip.clip_id},
    )
