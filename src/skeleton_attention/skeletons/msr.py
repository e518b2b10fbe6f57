"""MSR Action3D reader (Li, Zhang and Liu, 2010), real-world skeleton files.

``aXX_sYY_eZZ_skeleton3D.txt``: no header, one line per joint (``x y z confidence``), 20
lines per frame. Units are metres, y points up, z is the distance from the sensor. The file's
joint order is MSR's own; :data:`MSR_TO_KINECT20` permutes it to the Kinect SDK order of
layout ``kinect20``. The evidence for that order (geometry, the "use your right arm" recording
instruction, bone symmetry) is in docs/datasets.md and tested in tests/test_msr.py.

Frames whose 20 joints are all exactly (0, 0, 0) are frames where the tracker found nobody;
they stay zeros (the project's "missing frame" convention). A file with no other frame raises
``zero_frames`` (a13_s09_e02 is such a file).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import MalformedSkeletonFile
from .layouts import KINECT20
from .sequence import SkeletonSequence
from .textfile import read_lines

DATASET = "msr_action3d"
NUM_JOINTS = KINECT20.num_joints  # 20
#: class names, label = action number - 1 (Li et al. 2010)
MSR_ACTIONS: tuple[str, ...] = (
    "high arm wave",
    "horizontal arm wave",
    "hammer",
    "hand catch",
    "forward punch",
    "high throw",
    "draw x",
    "draw tick",
    "draw circle",
    "hand clap",
    "two hand wave",
    "side-boxing",
    "bend",
    "forward kick",
    "side kick",
    "jogging",
    "tennis swing",
    "tennis serve",
    "golf swing",
    "pick up & throw",
)
MSR_SUBJECTS: tuple[int, ...] = tuple(range(1, 11))
#: row ``i`` of a frame in the file is joint ``MSR_TO_KINECT20[i]`` of layout kinect20
MSR_TO_KINECT20: tuple[int, ...] = tuple(
    KINECT20.index(name)
    for name in (
        "left_shoulder",
        "right_shoulder",
        "shoulder_center",
        "spine",
        "left_hip",
        "right_hip",
        "hip_center",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hand",
        "right_hand",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "left_foot",
        "right_foot",
        "head",
    )
)
#: kinect20 joint ``k`` is file row ``KINECT20_FROM_MSR[k]`` (the inverse permutation)
KINECT20_FROM_MSR: tuple[int, ...] = tuple(int(i) for i in np.argsort(MSR_TO_KINECT20))
#: Li et al. 2010 action subsets (1-based action numbers), 8 actions each
MSR_ACTION_SETS: dict[str, tuple[int, ...]] = {
    "AS1": (2, 3, 5, 6, 10, 13, 18, 20),
    "AS2": (1, 4, 7, 8, 9, 11, 12, 14),
    "AS3": (6, 14, 15, 16, 17, 18, 19, 20),
}
_NAME = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})")
_FILE = re.compile(r"(a\d{2}_s\d{2}_e\d{2})_skeleton3D\.txt")
_VALUES_PER_LINE = 4


def parse_msr_name(name: str, path: str | Path | None = None, line: int | None = None) -> tuple[int, int, int]:
    """``"a01_s02_e03"`` -> ``(action, subject, episode)``; ranges 1-20, 1-10, >= 1."""
    match = _NAME.fullmatch(name)
    where = str(path) if path is not None else name
    if match is None:
        raise MalformedSkeletonFile(where, "bad_name", f"{name!r} is not aXX_sYY_eZZ", line)
    action, subject, episode = (int(g) for g in match.groups())
    if not (1 <= action <= len(MSR_ACTIONS) and subject in MSR_SUBJECTS and episode >= 1):
        raise MalformedSkeletonFile(where, "bad_name", f"{name!r}: action, subject or episode out of range", line)
    return action, subject, episode


def read_msr_joints(path: str | Path) -> np.ndarray:
    """Read the raw file as ``(T, 20, 4)`` float64 in MSR's joint order (x, y, z, confidence)."""
    path = Path(path)
    lines = read_lines(path)
    rows: list[list[str]] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) < _VALUES_PER_LINE:
            raise MalformedSkeletonFile(
                str(path), "truncated", f"{len(fields)} values, expected x y z confidence", number
            )
        if len(fields) > _VALUES_PER_LINE:
            raise MalformedSkeletonFile(
                str(path), "trailing_data", f"{len(fields)} values, expected x y z confidence", number
            )
        rows.append(fields)
    if len(rows) % NUM_JOINTS:
        raise MalformedSkeletonFile(
            str(path),
            "truncated",
            f"{len(rows)} joint lines is not a multiple of {NUM_JOINTS} (last frame has {len(rows) % NUM_JOINTS})",
            len(rows),
        )
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
    return values.reshape(-1, NUM_JOINTS, _VALUES_PER_LINE)


def msr_sample_id(path: str | Path) -> str:
    """``.../a01_s02_e03_skeleton3D.txt`` -> ``"a01_s02_e03"``; ``bad_name`` for any other file name."""
    path = Path(path)
    match = _FILE.fullmatch(path.name)
    if match is None:
        raise MalformedSkeletonFile(str(path), "bad_name", f"{path.name!r} is not aXX_sYY_eZZ_skeleton3D.txt")
    return match.group(1)


def read_msr_file(path: str | Path, *, with_confidence: bool = False) -> SkeletonSequence:
    """One sample: coords ``(1, T, 20, C)`` in kinect20 order, ``C`` = 3 (x, y, z in metres)
    or 4 with the file's per-joint confidence when ``with_confidence``.

    Label = action number - 1; meta has action, subject, episode.
    """
    path = Path(path)
    name = msr_sample_id(path)
    action, subject, episode = parse_msr_name(name, path)
    raw = read_msr_joints(path)
    empty = ~raw[:, :, :3].any(axis=(1, 2))
    if empty.all():
        raise MalformedSkeletonFile(str(path), "zero_frames", f"all {len(raw)} frames are all-zero skeletons")
    joints = raw[:, KINECT20_FROM_MSR, :]
    if not with_confidence:
        joints = joints[:, :, :3]
    return SkeletonSequence(
        sample_id=name,
        dataset=DATASET,
        layout=KINECT20.name,
        coords=joints[np.newaxis].astype(np.float32),
        label=action - 1,
        label_name=MSR_ACTIONS[action - 1],
        source_file=str(path),
        meta={"action": action, "subject": subject, "episode": episode},
    )


def load_msr_subset(path: str | Path) -> frozenset[str]:
    """Read ``files_used_in_cvpr12_paper.txt``: the sample names (``aXX_sYY_eZZ``) it lists."""
    path = Path(path)
    names: set[str] = set()
    for number, line in enumerate(read_lines(path), start=1):
        name = line.strip()
        if not name:
            continue
        parse_msr_name(name, path, number)
        if name in names:
            raise MalformedSkeletonFile(str(path), "duplicate_sample", f"{name} listed twice", number)
        names.add(name)
    return frozenset(names)


def msr_split(subject: int) -> str:
    """Cross-subject protocol of Li et al. 2010: subjects 1, 3, 5, 7, 9 train, 2, 4, 6, 8, 10 test."""
    if subject not in MSR_SUBJECTS:
        raise ValueError(f"MSR Action3D subject must be 1..10, not {subject!r}")
    return "train" if subject % 2 == 1 else "test"


def msr_action_set(action: int) -> tuple[str, ...]:
    """The Li et al. subsets (``"AS1"``..``"AS3"``) an action number (1-20) belongs to."""
    if not 1 <= action <= len(MSR_ACTIONS):
        raise ValueError(f"MSR Action3D action must be 1..20, not {action!r}")
    return tuple(name for name, actions in MSR_ACTION_SETS.items() if action in actions)
