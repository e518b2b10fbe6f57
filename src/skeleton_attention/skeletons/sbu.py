"""SBU Kinect Interaction reader (Yun et al., CVPR Workshops 2012; release 2.0).

Layout on disk: ``<pair>/<class>/<seq>/skeleton_pos.txt``, e.g. ``s01s02/07/001``: performer
pair ``s01s02`` (first and second person), class ``01``-``08``, sequence ``001``... Each line is
one frame: the original frame number (where the recording started, e.g. 55), then 90
comma-separated values: person 1's 15 joints x, y, z, then person 2's. Joint order is layout
``sbu15``.

The files hold the data set's own normalised values: x and y span roughly 0..1 (y grows
downwards), z is depth; they are rescaled real-world positions, not image coordinates. The release
notes' way back to the Kinect frame,
``X = 1280 - 2560 x'``, ``Y = 960 - 1920 y'``, ``Z = 10000 z' / 7.8125``, gives millimetres; with
``coordinates="metres"`` (default) the reader applies it and divides by 1000, which yields the Kinect
SDK camera frame the project's other Kinect v1 sets use (right-handed, x to the sensor's left,
y up, z away from the sensor). ``coordinates="raw"`` returns the file's values unchanged. The
measurements behind this choice (isotropic bone lengths, left/right against the facing direction)
are in docs/datasets.md and tests/test_sbu.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import MalformedSkeletonFile
from .layouts import SBU15
from .sequence import SkeletonSequence
from .textfile import parse_float_rows, read_text

DATASET = "sbu"
FILE_NAME = "skeleton_pos.txt"
NUM_JOINTS = SBU15.num_joints  # 15
NUM_PERSONS = 2
_VALUES = NUM_PERSONS * NUM_JOINTS * 3  # 90 per line, after the frame number
#: class names, label = class folder number - 1 (Yun et al. 2012)
SBU_ACTIONS: tuple[str, ...] = (
    "approaching",
    "departing",
    "kicking",
    "punching",
    "pushing",
    "hugging",
    "shaking hands",
    "exchanging",
)
#: subject-independent 5-fold cross-validation by performer pair, as the release notes give it
SBU_FOLDS: dict[int, tuple[str, ...]] = {
    1: ("s01s02", "s03s04", "s05s02", "s06s04"),
    2: ("s02s03", "s02s07", "s03s05", "s05s03"),
    3: ("s01s03", "s01s07", "s07s01", "s07s03"),
    4: ("s02s01", "s02s06", "s03s02", "s03s06"),
    5: ("s04s02", "s04s03", "s04s06", "s06s02", "s06s03"),
}
_FOLD_OF_PAIR: dict[str, int] = {pair: fold for fold, pairs in SBU_FOLDS.items() for pair in pairs}
COORDINATE_MODES: tuple[str, ...] = ("metres", "raw")
#: release-note transform back to Kinect millimetres: value = offset + scale * file value
_KINECT_OFFSET_MM = np.array([1280.0, 960.0, 0.0])
_KINECT_SCALE_MM = np.array([-2560.0, -1920.0, 10000.0 / 7.8125])
_PAIR = re.compile(r"s(\d{2})s(\d{2})")
_CLASS = re.compile(r"\d{2}")
_SEQUENCE = re.compile(r"\d{3}")


def parse_sbu_path(path: str | Path) -> tuple[str, int, int]:
    """``.../s01s02/07/001/skeleton_pos.txt`` -> ``("s01s02", 7, 1)``: pair, action 1-8, episode.

    ``bad_name`` when the path is not ``<sXXsYY>/<01-08>/<NNN>/skeleton_pos.txt`` (the two
    persons of a pair must differ).
    """
    path = Path(path)
    parts = path.parts[-4:]
    if len(parts) < 4 or path.name != FILE_NAME:
        raise MalformedSkeletonFile(str(path), "bad_name", f"not <pair>/<class>/<seq>/{FILE_NAME}")
    pair, klass, seq = parts[0], parts[1], parts[2]
    match = _PAIR.fullmatch(pair)
    if match is None or match.group(1) == match.group(2):
        raise MalformedSkeletonFile(str(path), "bad_name", f"performer pair {pair!r} is not sXXsYY (two persons)")
    if _CLASS.fullmatch(klass) is None or not 1 <= int(klass) <= len(SBU_ACTIONS):
        raise MalformedSkeletonFile(str(path), "bad_name", f"class folder {klass!r} is not 01-08")
    if _SEQUENCE.fullmatch(seq) is None or int(seq) < 1:
        raise MalformedSkeletonFile(str(path), "bad_name", f"sequence folder {seq!r} is not 001, 002, ...")
    return pair, int(klass), int(seq)


def pair_persons(pair: str) -> tuple[int, int]:
    """``"s01s02"`` -> ``(1, 2)``: the first and the second person's subject numbers."""
    match = _PAIR.fullmatch(pair)
    if match is None:
        raise ValueError(f"SBU performer pair must be sXXsYY, not {pair!r}")
    return int(match.group(1)), int(match.group(2))


def sbu_sample_id(pair: str, action: int, episode: int) -> str:
    """``("s01s02", 7, 1)`` -> ``"s01s02_a07_e001"``."""
    return f"{pair}_a{action:02d}_e{episode:03d}"


def sbu_fold(pair: str) -> int | None:
    """The cross-validation fold (1-5) of a performer pair, or None for a pair in no fold."""
    return _FOLD_OF_PAIR.get(pair)


def _line_error(path: Path, fields: list[str], number: int, last: bool, ends_clean: bool) -> MalformedSkeletonFile:
    count = len(fields) - 1
    if last and not ends_clean and count < _VALUES:
        # the last line stops short without a newline: the file was cut while being written
        return MalformedSkeletonFile(
            str(path), "truncated", f"last line has {count} of {_VALUES} values and no line end", number
        )
    return MalformedSkeletonFile(
        str(path),
        "wrong_joint_count",
        f"{count} values after the frame number, expected {_VALUES} ({NUM_PERSONS} persons x {NUM_JOINTS} joints x 3)",
        number,
    )


def read_sbu_values(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one file: frame numbers ``(T,)`` int64 and raw values ``(2, T, 15, 3)`` float64.

    Every line must be an integer frame number followed by exactly 90 finite comma-separated
    numbers, and frame numbers must increase (gaps are kept: none occurs in the release).
    """
    path = Path(path)
    text = read_text(path)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    ends_clean = text.endswith(("\n", "\r"))
    rows: list[list[str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise MalformedSkeletonFile(str(path), "truncated", "blank line inside the file", number)
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != _VALUES + 1:
            raise _line_error(path, fields, number, number == len(lines), ends_clean)
        rows.append(fields)
    values = parse_float_rows(path, rows)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise MalformedSkeletonFile(str(path), "non_finite", f"value {rows[row][col]!r}", int(row) + 1)
    ids = values[:, 0]
    wrong = (ids != np.round(ids)) | (ids < 0)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise MalformedSkeletonFile(str(path), "non_numeric", f"frame number {rows[row][0]!r}", row + 1)
    frames = ids.astype(np.int64)
    back = np.flatnonzero(np.diff(frames) <= 0)
    if back.size:
        row = int(back[0]) + 1
        raise MalformedSkeletonFile(
            str(path), "unordered_frames", f"frame {frames[row]} after frame {frames[row - 1]}", row + 1
        )
    joints = values[:, 1:].reshape(-1, NUM_PERSONS, NUM_JOINTS, 3).transpose(1, 0, 2, 3)
    return frames, joints


def to_camera_metres(raw: np.ndarray) -> np.ndarray:
    """The release-note transform to Kinect millimetres, divided by 1000: x to the sensor's left,
    y up, z away from the sensor (right-handed). ``raw`` is ``(..., 3)`` file values."""
    return (_KINECT_OFFSET_MM + _KINECT_SCALE_MM * np.asarray(raw, dtype=np.float64)) / 1000.0


def read_sbu_file(path: str | Path, *, coordinates: str = "metres") -> SkeletonSequence:
    """One sample: coords ``(2, T, 15, 3)`` float32 in layout ``sbu15``.

    ``coordinates``: ``"metres"`` (the Kinect camera frame, see the module docstring) or ``"raw"``
    (the file's values). Label = class - 1. Meta: ``performer`` / ``subject`` = the first / second
    person's number, ``performer_pair`` = the pair folder, ``action``, ``episode`` = sequence
    number, ``start_frame`` / ``end_frame`` = the first and last original frame numbers.
    """
    if coordinates not in COORDINATE_MODES:
        raise ValueError(f"coordinates must be one of {COORDINATE_MODES}, not {coordinates!r}")
    path = Path(path)
    pair, action, episode = parse_sbu_path(path)
    first, second = pair_persons(pair)
    frames, raw = read_sbu_values(path)
    if not raw.any():
        raise MalformedSkeletonFile(str(path), "zero_frames", f"all {len(frames)} frames hold only zeros")
    coords = to_camera_metres(raw) if coordinates == "metres" else raw
    # a person absent from a frame (all 45 values zero) stays zeros: the project's missing convention
    absent = ~raw.any(axis=(2, 3))
    coords[absent] = 0.0
    return SkeletonSequence(
        sample_id=sbu_sample_id(pair, action, episode),
        dataset=DATASET,
        layout=SBU15.name,
        coords=coords.astype(np.float32),
        label=action - 1,
        label_name=SBU_ACTIONS[action - 1],
        source_file=str(path),
        meta={
            "performer": first,
            "subject": second,
            "performer_pair": pair,
            "action": action,
            "episode": episode,
            "start_frame": int(frames[0]),
            "end_frame": int(frames[-1]),
        },
    )
