"""Northwestern-UCLA Multiview Action3D (N-UCLA; Wang et al., CVPR 2014), CTR-GCN JSON release.

One file per (recording, view): ``aXX_sYY_eZZ_vWW.json`` holding
``{"file_name": "aXX_sYY_eZZ_vWW", "skeletons": [T][20][3], "label": 1..10}``. Three Kinect v1
cameras (``v01``-``v03``) record one performance at once; each view is a separate file with its
own frame count and its own camera coordinates (x y z in metres, y up, z away from the sensor).
The 20 joints are already in the Kinect SDK order of layout ``kinect20`` (checked on every file
by geometry: docs/datasets.md, tests/test_nucla.py).

Identity comes from the file name: action ``aXX`` (10 non-contiguous ids -> label 0..9), subject
``sYY`` (1-10), repetition ``eZZ`` (``episode``, from 0), view ``vWW`` (``camera``, 1-3). The
views of one recording share ``view_group = aXX_sYY_eZZ``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MalformedSkeletonFile
from .layouts import KINECT20
from .sequence import SkeletonSequence
from .textfile import read_text

DATASET = "nucla"
NUM_JOINTS = KINECT20.num_joints  # 20
#: action id (the aXX of the file name) -> class name (Wang et al. 2014); label = position here
NUCLA_ACTIONS: dict[int, str] = {
    1: "pick up with one hand",
    2: "pick up with two hands",
    3: "drop trash",
    4: "walk around",
    5: "sit down",
    6: "stand up",
    8: "donning",
    9: "doffing",
    11: "throw",
    12: "carry",
}
ACTION_IDS: tuple[int, ...] = tuple(NUCLA_ACTIONS)
NUCLA_VIEWS: tuple[int, ...] = (1, 2, 3)
NUCLA_SUBJECTS: tuple[int, ...] = tuple(range(1, 11))
#: views the standard cross-view protocol trains on (the third is the test view)
XVIEW_TRAIN_VIEWS: tuple[int, ...] = (1, 2)
_NAME = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})")


@dataclass(frozen=True)
class NuclaName:
    """The identity fields of one N-UCLA file name."""

    action: int
    subject: int
    episode: int
    view: int

    @property
    def sample_id(self) -> str:
        return f"a{self.action:02d}_s{self.subject:02d}_e{self.episode:02d}_v{self.view:02d}"

    @property
    def view_group(self) -> str:
        """The recording key shared by the views of one performance."""
        return f"a{self.action:02d}_s{self.subject:02d}_e{self.episode:02d}"

    @property
    def label(self) -> int:
        """0-based class index: the position of the action id among the 10 used ids."""
        return ACTION_IDS.index(self.action)


def parse_nucla_name(name: str | Path, path: str | Path | None = None) -> NuclaName:
    """``"a08_s03_e01_v02"`` (or ``.../a08_s03_e01_v02.json``) -> its fields; ``bad_name`` otherwise."""
    stem = Path(name).name
    stem = stem[: -len(".json")] if stem.endswith(".json") else stem
    where = str(path if path is not None else name)
    match = _NAME.fullmatch(stem)
    if match is None:
        raise MalformedSkeletonFile(where, "bad_name", f"{stem!r} is not aXX_sYY_eZZ_vWW")
    action, subject, episode, view = (int(g) for g in match.groups())
    if action not in NUCLA_ACTIONS:
        raise MalformedSkeletonFile(where, "bad_name", f"{stem!r}: action {action} is not one of {ACTION_IDS}")
    if subject not in NUCLA_SUBJECTS or view not in NUCLA_VIEWS:
        raise MalformedSkeletonFile(where, "bad_name", f"{stem!r}: subject must be 1-10 and view 1-3")
    return NuclaName(action, subject, episode, view)


def _load(path: Path) -> dict[str, object]:
    try:
        data = json.loads(read_text(path, "utf-8"))
    except json.JSONDecodeError as exc:
        raise MalformedSkeletonFile(str(path), "malformed_json", exc.msg, exc.lineno) from None
    if not isinstance(data, dict):
        raise MalformedSkeletonFile(str(path), "malformed_json", "top level is not an object")
    for key in ("file_name", "skeletons", "label"):
        if key not in data:
            raise MalformedSkeletonFile(str(path), "missing_field", f"no {key!r}")
    return data


def _joints(path: Path, skeletons: object) -> np.ndarray:
    """``skeletons`` as a (T, 20, 3) float64 array, or the reason it is not one."""
    if not isinstance(skeletons, list):
        raise MalformedSkeletonFile(str(path), "malformed_json", "'skeletons' is not a list")
    if not skeletons:
        raise MalformedSkeletonFile(str(path), "zero_frames", "'skeletons' has no frame")
    for t, frame in enumerate(skeletons):
        if not isinstance(frame, list):
            raise MalformedSkeletonFile(str(path), "malformed_json", f"frame {t} is not a list")
        if len(frame) != NUM_JOINTS:
            raise MalformedSkeletonFile(str(path), "wrong_joint_count", f"frame {t} has {len(frame)} joints, not 20")
        for v, joint in enumerate(frame):
            if not isinstance(joint, list) or len(joint) != 3:
                raise MalformedSkeletonFile(str(path), "malformed_json", f"frame {t} joint {v} is not [x, y, z]")
            for value in joint:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise MalformedSkeletonFile(str(path), "non_numeric", f"frame {t} joint {v}: {value!r}")
    values = np.asarray(skeletons, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        t, v, _ = np.argwhere(bad)[0]
        raise MalformedSkeletonFile(str(path), "non_finite", f"frame {t} joint {v}: {values[t, v].tolist()}")
    return values


def read_nucla_file(path: str | Path) -> SkeletonSequence:
    """One view of one recording: coords ``(1, T, 20, 3)`` float32 in kinect20 order, metres.

    The file's ``file_name`` must equal the path's name and its ``label`` (1-based) the label the
    action id gives (``label_mismatch`` otherwise), so a renamed or mislabelled file cannot slip in.
    """
    path = Path(path)
    name = parse_nucla_name(path.name, path)
    data = _load(path)
    if data["file_name"] != name.sample_id:
        raise MalformedSkeletonFile(
            str(path), "bad_name", f"file_name {data['file_name']!r} does not match the path's {name.sample_id!r}"
        )
    label = data["label"]
    if isinstance(label, bool) or not isinstance(label, int):
        raise MalformedSkeletonFile(str(path), "malformed_json", f"label {label!r} is not an integer")
    if label != name.label + 1:
        raise MalformedSkeletonFile(
            str(path),
            "label_mismatch",
            f"label {label} but action a{name.action:02d} is class {name.label + 1} of 1..10",
        )
    joints = _joints(path, data["skeletons"])
    if not joints.any():
        raise MalformedSkeletonFile(str(path), "zero_frames", f"all {len(joints)} frames are all-zero skeletons")
    return SkeletonSequence(
        sample_id=name.sample_id,
        dataset=DATASET,
        layout=KINECT20.name,
        coords=joints[np.newaxis].astype(np.float32),
        label=name.label,
        label_name=NUCLA_ACTIONS[name.action],
        source_file=str(path),
        meta={
            "action": name.action,
            "subject": name.subject,
            "episode": name.episode,
            "camera": name.view,
            "view_group": name.view_group,
        },
    )


def nucla_xview_split(view: int) -> str:
    """The standard cross-view protocol (Wang et al. 2014): views 1 and 2 train, view 3 tests."""
    if view not in NUCLA_VIEWS:
        raise ValueError(f"N-UCLA view must be 1..3, not {view!r}")
    return "train" if view in XVIEW_TRAIN_VIEWS else "test"


def nucla_xview_dedup_split(view: int, copy_of_training_view: bool) -> str | None:
    """Cross-view without leakage: as :func:`nucla_xview`, but a test (v03) file that is an exact
    copy of a training view's file is left out (null). 95 of the 464 v03 files are such copies."""
    split = nucla_xview_split(view)
    return None if split == "test" and copy_of_training_view else split


def nucla_xsub_split(subject: int) -> str:
    """Our cross-subject protocol (no official one exists): odd subjects train, even subjects test.

    It is by subject, so every view of a recording falls on the same side: a single-view model
    and a model taking all views of a recording can be compared on the same people.
    """
    if subject not in NUCLA_SUBJECTS:
        raise ValueError(f"N-UCLA subject must be 1..10, not {subject!r}")
    return "train" if subject % 2 == 1 else "test"


def shared_frame_share(source: np.ndarray, copy: np.ndarray) -> float:
    """The share of ``copy``'s frames that occur, bit for bit, among ``source``'s frames.

    Two cameras never produce the same float coordinates for a frame, so a share above zero means
    one "view" file holds (part of) another camera's data: 95 v03 files of the release are exact
    copies of their v02 file and 7 v02 files of subject 1 (a08, a09) reuse v01 frames
    (docs/datasets.md).
    """
    source_rows = np.asarray(source, dtype=np.float32).reshape(-1, NUM_JOINTS * 3)
    frames = {np.ascontiguousarray(f).tobytes() for f in source_rows}
    rows = np.asarray(copy, dtype=np.float32).reshape(-1, NUM_JOINTS * 3)
    if len(rows) == 0:
        return 0.0
    return float(np.mean([np.ascontiguousarray(f).tobytes() in frames for f in rows]))


def copied_views(views: Mapping[int, np.ndarray], min_share: float = 0.2) -> dict[int, int]:
    """``{camera: earlier camera it copies}`` for views whose frames are at least ``min_share``
    exact copies of an earlier (lower-numbered) view's frames. ``views``: camera -> (M, T, V, 3)."""
    out: dict[int, int] = {}
    cams = sorted(views)
    for i, later in enumerate(cams):
        for earlier in cams[:i]:
            if earlier not in out and shared_frame_share(views[earlier], views[later]) >= min_share:
                out[later] = earlier
                break
    return out


def is_copy_of_sibling(path: str | Path, coords: np.ndarray, sibling_view: int) -> bool:
    """Is this view's file an exact copy of the same recording's ``sibling_view`` file?

    A sibling that is absent or unreadable counts as "not a copy" (the sibling's own problem is
    reported when that file is ingested)."""
    path = Path(path)
    name = parse_nucla_name(path.name, path)
    sibling = path.with_name(f"{name.view_group}_v{sibling_view:02d}.json")
    if sibling_view == name.view or not sibling.is_file():
        return False
    try:
        other = read_nucla_file(sibling).coords
    except MalformedSkeletonFile:
        return False
    return other.shape == coords.shape and bool(np.array_equal(other, coords))
