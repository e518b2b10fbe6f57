"""NTU RGB+D 60/120: the raw ``.skeleton`` reader, file-name metadata, missing lists, splits.

The ``.skeleton`` text format (one file per sample, Kinect v2 SDK dump, LF or CRLF)::

    F                                   number of frames
    repeated F times:
      B                                 number of bodies in this frame (may be 0)
      repeated B times:
        id ce hlc hls hrc hrs ir lx ly ts    10-field body info line
        25                              number of joints
        25 lines: x y z dx dy cx cy ow ox oy oz ts   12 values per joint

:func:`read_ntu_skeleton` keeps every field. It is strict: anything that does not match this
structure raises :class:`~skeleton_attention.skeletons.errors.MalformedSkeletonFile` with a reason
code and the 1-based line number. Body IDs are parsed from the text as integers and stored as
``uint64``: they are 17-digit Kinect tracking IDs that ``float64`` cannot hold exactly.

Speed: when the optional C extension ``_ntu_fast`` is built (``FAST_PARSER_AVAILABLE``), it
parses the whole file in one pass and returns the arrays; it accepts a strict subset of what the
pure reader accepts, with bit-identical values, and hands anything else back to the pure reader,
so every error is raised (reason + line) by the pure reader alone. The pure reader walks the
structure with integer line indices in Python (a few hundred structural lines per file) and
converts all numeric lines in one call to Arrow's C++ CSV parser, which is correctly rounded (its
results equal Python's ``float``). Only when that call fails or yields a non-finite value does a
line-by-line pass run, to name the offending line. ``pure=True`` or the environment variable
``SKELETON_ATTENTION_PURE_PARSER=1`` forces the pure reader (tests, benchmarks).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from .errors import MalformedSkeletonFile

try:  # the optional compiled parser (setup.py); the pure reader below is always there
    from . import _ntu_fast
except ImportError:
    _ntu_fast = None

#: True when the compiled one-pass parser is importable and used by default.
FAST_PARSER_AVAILABLE: bool = _ntu_fast is not None
#: Set to "1" to make :func:`parse_ntu_skeleton` use the pure reader even when the compiled one exists.
PURE_PARSER_ENV = "SKELETON_ATTENTION_PURE_PARSER"

NUM_JOINTS = 25
#: values on a joint line: 11 float fields + the joint tracking state
JOINT_LINE_VALUES = 12
#: values on a body-info line: body ID + 9 fields
BODY_INFO_VALUES = 10
#: lines taken by one body record: info line, joint-count line, 25 joint lines
_BODY_LINES = 2 + NUM_JOINTS

#: columns of :attr:`NtuRecording.body_info` (the body ID is kept apart, exact)
BODY_INFO_FIELDS: tuple[str, ...] = (
    "clipped_edges",
    "hand_left_confidence",
    "hand_left_state",
    "hand_right_confidence",
    "hand_right_state",
    "is_restricted",
    "lean_x",
    "lean_y",
    "tracking_state",
)
#: channels of :attr:`NtuRecording.joints`: camera-space metres, depth-image pixels,
#: colour-image pixels, joint orientation quaternion (w, x, y, z)
JOINT_FIELDS: tuple[str, ...] = (
    "x",
    "y",
    "z",
    "depth_x",
    "depth_y",
    "color_x",
    "color_y",
    "orientation_w",
    "orientation_x",
    "orientation_y",
    "orientation_z",
)

# ---------------------------------------------------------------------------------------------
# File names and dataset definition tables
# ---------------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
#: valid ranges of the name fields over NTU RGB+D 120 (NTU 60 is the subset S001-S017, A001-A060)
NAME_FIELD_RANGES: dict[str, tuple[int, int]] = {
    "setup": (1, 32),
    "camera": (1, 3),
    "performer": (1, 106),
    "replication": (1, 2),
    "action": (1, 120),
}
NTU60_MAX_SETUP = 17
NTU60_NUM_CLASSES = 60
NTU120_NUM_CLASSES = 120

#: NTU 60 cross-subject: the 20 training performers (Shahroudy et al., CVPR 2016).
NTU60_XSUB_TRAIN_PERFORMERS: frozenset[int] = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
)
#: NTU 60 cross-view: cameras 2 and 3 train, camera 1 tests.
NTU60_XVIEW_TRAIN_CAMERAS: frozenset[int] = frozenset((2, 3))
#: NTU 120 cross-subject: the 53 training performers (Liu et al., TPAMI 2019).
NTU120_XSUB_TRAIN_PERFORMERS: frozenset[int] = frozenset(
    (
        1,
        2,
        4,
        5,
        8,
        9,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        25,
        27,
        28,
        31,
        34,
        35,
        38,
        45,
        46,
        47,
        49,
        50,
        52,
        53,
        54,
        55,
        56,
        57,
        58,
        59,
        70,
        74,
        78,
        80,
        81,
        82,
        83,
        84,
        85,
        86,
        89,
        91,
        92,
        93,
        94,
        95,
        97,
        98,
        100,
        103,
    )
)
#: NTU 120 cross-setup: even setup IDs train, odd ones test (the official rule; DSTA-Net's
#: code trains on odd setups).
NTU120_XSET_TRAIN_SETUPS: frozenset[int] = frozenset(range(2, 33, 2))

#: Official action names (shahroudy/NTURGB-D README, typographic apostrophes made ASCII),
#: index = action ID - 1 (A001-A060 = NTU 60, A061-A120 added by NTU 120).
NTU_ACTION_NAMES: tuple[str, ...] = (
    "drink water",
    "eat meal/snack",
    "brushing teeth",
    "brushing hair",
    "drop",
    "pickup",
    "throw",
    "sitting down",
    "standing up (from sitting position)",
    "clapping",
    "reading",
    "writing",
    "tear up paper",
    "wear jacket",
    "take off jacket",
    "wear a shoe",
    "take off a shoe",
    "wear on glasses",
    "take off glasses",
    "put on a hat/cap",
    "take off a hat/cap",
    "cheer up",
    "hand waving",
    "kicking something",
    "put something inside pocket / take out something from pocket",
    "hopping (one foot jumping)",
    "jump up",
    "make a phone call/answer phone",
    "playing with phone/tablet",
    "typing on a keyboard",
    "pointing to something with finger",
    "taking a selfie",
    "check time (from watch)",
    "rub two hands together",
    "nod head/bow",
    "shake head",
    "wipe face",
    "salute",
    "put the palms together",
    "cross hands in front (say stop)",
    "sneeze/cough",
    "staggering",
    "falling",
    "touch head (headache)",
    "touch chest (stomachache/heart pain)",
    "touch back (backache)",
    "touch neck (neckache)",
    "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person",
    "kicking other person",
    "pushing other person",
    "pat on back of other person",
    "point finger at the other person",
    "hugging other person",
    "giving something to other person",
    "touch other person's pocket",
    "handshaking",
    "walking towards each other",
    "walking apart from each other",
    # NTU RGB+D 120 additions
    "put on headphone",
    "take off headphone",
    "shoot at the basket",
    "bounce ball",
    "tennis bat swing",
    "juggling table tennis balls",
    "hush (quite)",
    "flick hair",
    "thumb up",
    "thumb down",
    "make ok sign",
    "make victory sign",
    "staple book",
    "counting money",
    "cutting nails",
    "cutting paper (using scissors)",
    "snapping fingers",
    "open bottle",
    "sniff (smell)",
    "squat down",
    "toss a coin",
    "fold paper",
    "ball up paper",
    "play magic cube",
    "apply cream on face",
    "apply cream on hand back",
    "put on bag",
    "take off bag",
    "put something into a bag",
    "take something out of a bag",
    "open a box",
    "move heavy objects",
    "shake fist",
    "throw up cap/hat",
    "hands up (both hands)",
    "cross arms",
    "arm circles",
    "arm swings",
    "running on the spot",
    "butt kicks (kick backward)",
    "cross toe touch",
    "side kick",
    "yawn",
    "stretch oneself",
    "blow nose",
    "hit other person with something",
    "wield knife towards other person",
    "knock over other person (hit with body)",
    "grab other person's stuff",
    "shoot at other person with a gun",
    "step on foot",
    "high-five",
    "cheers and drink",
    "carry something with other person",
    "take a photo of other person",
    "follow other person",
    "whisper in other person's ear",
    "exchange things with other person",
    "support somebody with one's hand (someone is sick, help him to walk)",
    "finger-guessing game (playing rock-paper-scissors)",
)
NTU60_ACTION_NAMES: tuple[str, ...] = NTU_ACTION_NAMES[:NTU60_NUM_CLASSES]
#: two-person (mutual) actions: A050-A060 and A106-A120
NTU_MUTUAL_ACTIONS: frozenset[int] = frozenset((*range(50, 61), *range(106, 121)))


@dataclass(frozen=True, order=True)
class NtuName:
    """The identity encoded in an NTU file name ``SsssCcccPpppRrrrAaaa`` (all 1-based)."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    @property
    def sample_id(self) -> str:
        return f"S{self.setup:03d}C{self.camera:03d}P{self.performer:03d}R{self.replication:03d}A{self.action:03d}"

    @property
    def view_group(self) -> str:
        """The sample key without the camera: the three views of one recording share it."""
        return f"S{self.setup:03d}P{self.performer:03d}R{self.replication:03d}A{self.action:03d}"

    @property
    def dataset(self) -> str:
        return ntu_dataset_of(self)

    @property
    def label(self) -> int:
        """0-based class index (the same index in NTU 60 and NTU 120)."""
        return self.action - 1

    @property
    def label_name(self) -> str:
        return NTU_ACTION_NAMES[self.action - 1]

    def as_meta(self) -> dict[str, object]:
        return {
            "setup": self.setup,
            "camera": self.camera,
            "performer": self.performer,
            "replication": self.replication,
            "action": self.action,
            "view_group": self.view_group,
        }


def parse_ntu_name(name_or_path: str | Path | NtuName) -> NtuName:
    """Parse ``S001C002P003R002A013`` (a bare name, a file name or a path) into an :class:`NtuName`.

    The name must be the whole file stem (optionally followed by extensions) and every field must
    be inside :data:`NAME_FIELD_RANGES`; otherwise ``MalformedSkeletonFile(reason="bad_name")``.
    """
    if isinstance(name_or_path, NtuName):
        return name_or_path
    text = str(name_or_path)
    base = Path(text).name.strip()
    stem = base.split(".", 1)[0]
    match = _NAME_RE.fullmatch(stem)
    if match is None:
        raise MalformedSkeletonFile(text, "bad_name", f"{base!r} is not an NTU sample name SsssCcccPpppRrrrAaaa")
    name = NtuName(*(int(g) for g in match.groups()))
    for field_name, (low, high) in NAME_FIELD_RANGES.items():
        value = getattr(name, field_name)
        if not low <= value <= high:
            raise MalformedSkeletonFile(text, "bad_name", f"{field_name} {value} outside the NTU range {low}..{high}")
    return name


def ntu_dataset_of(name: str | Path | NtuName) -> str:
    """``"ntu60"`` for setups 1-17 with actions 1-60, else ``"ntu120"`` (NTU 120-only samples)."""
    n = parse_ntu_name(name)
    return "ntu60" if n.setup <= NTU60_MAX_SETUP and n.action <= NTU60_NUM_CLASSES else "ntu120"


def view_group(name: str | Path | NtuName) -> str:
    """``"S001P001R001A001"``: the sample key with the camera removed."""
    return parse_ntu_name(name).view_group


def ntu_splits(
    name: str | Path | NtuName,
    *,
    ntu60_xsub_train_performers: Collection[int] = NTU60_XSUB_TRAIN_PERFORMERS,
    ntu60_xview_train_cameras: Collection[int] = NTU60_XVIEW_TRAIN_CAMERAS,
    ntu120_xsub_train_performers: Collection[int] = NTU120_XSUB_TRAIN_PERFORMERS,
    ntu120_xset_train_setups: Collection[int] = NTU120_XSET_TRAIN_SETUPS,
) -> dict[str, str | None]:
    """Membership of one sample in the four standard benchmarks.

    Returns ``{"ntu60_xsub", "ntu60_xview", "ntu120_xsub", "ntu120_xset"}`` -> ``"train"``,
    ``"test"`` or ``None`` (the sample is not part of that benchmark: NTU 120-only samples have
    ``None`` for both NTU 60 protocols). Every NTU 60 sample is also an NTU 120 sample. The
    defaults are the official definitions; the keyword arguments exist for ablations.
    """
    n = parse_ntu_name(name)

    def pick(is_train: bool) -> str:
        return "train" if is_train else "test"

    in_ntu60 = ntu_dataset_of(n) == "ntu60"
    return {
        "ntu60_xsub": pick(n.performer in ntu60_xsub_train_performers) if in_ntu60 else None,
        "ntu60_xview": pick(n.camera in ntu60_xview_train_cameras) if in_ntu60 else None,
        "ntu120_xsub": pick(n.performer in ntu120_xsub_train_performers),
        "ntu120_xset": pick(n.setup in ntu120_xset_train_setups),
    }


def load_missing_skeleton_list(path: str | Path, *, max_header_lines: int = 3) -> frozenset[str]:
    """Read an official "samples with missing skeletons" list file.

    See :func:`parse_missing_skeleton_list` for the accepted layout.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedSkeletonFile(str(path), "binary_file", f"not UTF-8 text: {exc}") from None
    return parse_missing_skeleton_list(text, source=str(path), max_header_lines=max_header_lines)


def parse_missing_skeleton_list(text: str, *, source: str = "<text>", max_header_lines: int = 3) -> frozenset[str]:
    """Sample names of a missing-skeletons list given as text (e.g. from a Kedro TextDataset).

    The official files start with a 3-line header (two sentences and a blank line); copies
    without the header exist too, so up to ``max_header_lines`` leading lines that are not
    sample names are skipped. After the first name, every non-blank line must be a valid name
    (``bad_name`` otherwise). Blank lines, surrounding whitespace and CRLF are tolerated.
    """
    if not text.strip():
        raise MalformedSkeletonFile(source, "empty_file", "no sample names")
    names: set[str] = set()
    seen_name = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if _NAME_RE.fullmatch(line) is None:
            if not seen_name and number <= max_header_lines:
                continue
            raise MalformedSkeletonFile(source, "bad_name", f"{line[:60]!r} is not an NTU sample name", number)
        try:
            names.add(parse_ntu_name(line).sample_id)
        except MalformedSkeletonFile as exc:
            raise MalformedSkeletonFile(source, "bad_name", exc.detail, number) from None
        seen_name = True
    return frozenset(names)


# ---------------------------------------------------------------------------------------------
# The recording
# ---------------------------------------------------------------------------------------------


@dataclass
class NtuRecording:
    """Every field of one ``.skeleton`` file, one row per body record (a body in a frame).

    ``B`` is the number of body records summed over frames; records are in file order, so
    ``body_frame`` is non-decreasing.
    """

    sample_id: str
    path: str
    name: NtuName
    num_frames: int
    #: (T,) int16, bodies listed in each frame (0 is allowed)
    bodies_per_frame: np.ndarray = field(repr=False)
    #: (B,) int32, frame index of each body record
    body_frame: np.ndarray = field(repr=False)
    #: (B,) uint64, Kinect tracking ID of each record, exact
    body_ids: np.ndarray = field(repr=False)
    #: (B, 9) float32, columns :data:`BODY_INFO_FIELDS`
    body_info: np.ndarray = field(repr=False)
    #: (B, 25, 11) float32, channels :data:`JOINT_FIELDS`
    joints: np.ndarray = field(repr=False)
    #: (B, 25) int8, per-joint tracking state (0 not tracked, 1 inferred, 2 tracked)
    joint_tracking: np.ndarray = field(repr=False)

    @property
    def num_records(self) -> int:
        return int(self.body_ids.shape[0])

    @property
    def xyz(self) -> np.ndarray:
        """(B, 25, 3) camera-space joint positions in metres (a view into ``joints``)."""
        return self.joints[:, :, :3]

    def unique_body_ids(self) -> list[int]:
        """Distinct body IDs in order of first appearance, as exact Python ints."""
        _, first = np.unique(self.body_ids, return_index=True)
        return [int(self.body_ids[i]) for i in np.sort(first)]

    def body_track(self, body_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames (int32, (n,)) and xyz ((n, 25, 3) float32) of every record with ``body_id``."""
        mask = self.body_ids == np.uint64(body_id)
        return self.body_frame[mask], self.joints[mask, :, :3]


# ---------------------------------------------------------------------------------------------
# The reader
# ---------------------------------------------------------------------------------------------

_NUMERIC_COLUMNS = [f"v{i}" for i in range(JOINT_LINE_VALUES)]
# Single-threaded: the prepare pipeline already runs one file per worker process.
_ARROW_READ = pa_csv.ReadOptions(column_names=_NUMERIC_COLUMNS, use_threads=False)
_ARROW_PARSE = pa_csv.ParseOptions(
    delimiter=" ",
    quote_char=False,
    double_quote=False,
    escape_char=False,
    newlines_in_values=False,
    ignore_empty_lines=False,
)
_ARROW_CONVERT = pa_csv.ConvertOptions(
    column_types={c: pa.float64() for c in _NUMERIC_COLUMNS},
    null_values=[],
    strings_can_be_null=False,
    quoted_strings_can_be_null=False,
)
# A body-info line minus its ID has 9 values; padding it to 12 lets one Arrow call parse the
# info and joint lines together.
_INFO_PAD = b" 0 0 0"
_NUMBER_RE = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NON_FINITE_RE = re.compile(rb"[-+]?(?:nan|inf|infinity)", re.IGNORECASE)
_UINT64_MAX = 2**64 - 1


def read_ntu_skeleton(path: str | Path, name: NtuName | str | None = None, *, pure: bool | None = None) -> NtuRecording:
    """Read one NTU ``.skeleton`` file (LF or CRLF) keeping every field; see the module doc.

    Raises ``MalformedSkeletonFile`` with one of the reasons ``empty_file, binary_file,
    truncated, wrong_joint_count, wrong_body_count, missing_field, non_numeric, non_finite,
    zero_frames, trailing_data, bad_name``. The sample identity comes from the file name
    (``bad_name`` if it is not ``SsssCcccPpppRrrrAaaa``) unless ``name`` gives it. ``pure``:
    see :func:`parse_ntu_skeleton`.
    """
    path = Path(path)
    sample = parse_ntu_name(path if name is None else name)
    return parse_ntu_skeleton(path.read_bytes(), str(path), sample, pure=pure)


def parse_ntu_skeleton(data: bytes, source: str, name: NtuName, *, pure: bool | None = None) -> NtuRecording:
    """Parse the bytes of a ``.skeleton`` file; ``source`` names it in errors.

    ``pure=True`` skips the compiled parser, ``pure=False`` uses it when it is built, and
    ``None`` (default) uses it unless ``SKELETON_ATTENTION_PURE_PARSER=1``. Either way the
    result is the same: the compiled parser returns the arrays only for input it fully
    accepts and leaves everything else (and so every error message) to the pure reader.
    """
    if pure is None:
        pure = os.environ.get(PURE_PARSER_ENV, "") == "1"
    if not pure and _ntu_fast is not None:
        recording = _parse_compiled(data, source, name)
        # values beyond float32's range become inf on both paths: the pure one names the line
        if recording is not None and _all_finite(recording):
            return recording
    return _parse_pure(data, source, name)


def _all_finite(recording: NtuRecording) -> bool:
    return bool(np.isfinite(recording.joints).all() and np.isfinite(recording.body_info).all())


def _parse_compiled(data: bytes, source: str, name: NtuName) -> NtuRecording | None:
    """The compiled one-pass parser's arrays as a recording, or None when it declines the input."""
    parsed = _ntu_fast.parse(data)
    if parsed is None:
        return None
    num_frames, bodies_per_frame, body_frame, body_ids, body_info, joints, tracking = parsed
    num_bodies = len(body_ids) // 8
    # bytearrays: the arrays are writable, like the pure reader's
    return NtuRecording(
        sample_id=name.sample_id,
        path=source,
        name=name,
        num_frames=num_frames,
        bodies_per_frame=np.frombuffer(bodies_per_frame, dtype=np.int16),
        body_frame=np.frombuffer(body_frame, dtype=np.int32),
        body_ids=np.frombuffer(body_ids, dtype=np.uint64),
        body_info=np.frombuffer(body_info, dtype=np.float32).reshape(num_bodies, len(BODY_INFO_FIELDS)),
        joints=np.frombuffer(joints, dtype=np.float32).reshape(num_bodies, NUM_JOINTS, len(JOINT_FIELDS)),
        joint_tracking=np.frombuffer(tracking, dtype=np.int8).reshape(num_bodies, NUM_JOINTS),
    )


def _parse_pure(data: bytes, source: str, name: NtuName) -> NtuRecording:
    """The pure-Python/pyarrow reader: the reference for values and the source of every error."""
    lines = _split_lines(data, source)
    num_frames, bodies_per_frame, starts = _walk_structure(lines, source)
    body_ids, info_rows = _body_info_rows(lines, starts, source)
    values = _parse_numeric(lines, starts, info_rows, source, data.endswith(b"\n"))

    num_bodies = len(starts)
    joint_values = values[: num_bodies * NUM_JOINTS].reshape(num_bodies, NUM_JOINTS, JOINT_LINE_VALUES)
    tracking = joint_values[:, :, JOINT_LINE_VALUES - 1]
    bad = (tracking != np.round(tracking)) | (np.abs(tracking) > 127)
    if bad.any():
        b, j = np.argwhere(bad)[0]
        raise MalformedSkeletonFile(
            source,
            "non_numeric",
            f"joint tracking state {float(tracking[b, j])} is not a small integer",
            starts[b] + 3 + int(j),
        )
    # A value beyond float32 becomes inf in the cast and is reported just below as non_finite
    # (naming its line, like the C parser); numpy's overflow warning would only repeat that.
    with np.errstate(over="ignore"):
        joints = joint_values[:, :, : len(JOINT_FIELDS)].astype(np.float32)
        body_info = values[num_bodies * NUM_JOINTS :, : len(BODY_INFO_FIELDS)].astype(np.float32)
    if not np.isfinite(joints).all():
        b, j, _ = np.argwhere(~np.isfinite(joints))[0]
        raise MalformedSkeletonFile(source, "non_finite", "a joint value overflows float32", starts[b] + 3 + int(j))
    if not np.isfinite(body_info).all():
        b = int(np.argwhere(~np.isfinite(body_info))[0][0])
        raise MalformedSkeletonFile(source, "non_finite", "a body-info value overflows float32", starts[b] + 1)
    return NtuRecording(
        sample_id=name.sample_id,
        path=source,
        name=name,
        num_frames=num_frames,
        bodies_per_frame=np.asarray(bodies_per_frame, dtype=np.int16),
        body_frame=np.repeat(np.arange(num_frames, dtype=np.int32), bodies_per_frame),
        body_ids=np.asarray(body_ids, dtype=np.uint64),
        body_info=body_info,
        joints=joints,
        joint_tracking=tracking.astype(np.int8),
    )


def _split_lines(data: bytes, source: str) -> list[bytes]:
    """Lines without their ``\\n`` (a CRLF line keeps its ``\\r``); trailing blank lines dropped."""
    if not data.strip():
        raise MalformedSkeletonFile(source, "empty_file", f"{len(data)} bytes, no content")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise MalformedSkeletonFile(source, "binary_file", f"NUL byte at offset {nul}", data.count(b"\n", 0, nul) + 1)
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedSkeletonFile(
                source,
                "binary_file",
                f"not text: {exc.reason} at offset {exc.start}",
                data.count(b"\n", 0, exc.start) + 1,
            ) from None
    lines = data.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _count(line: bytes) -> int | None:
    """A non-negative integer count line, or None. Counts beyond 18 digits come back as 10**18:
    no file can hold that many lines, and ``int()`` refuses texts over 4300 digits."""
    text = line.strip()
    if not text.isdigit():
        return None
    text = text.lstrip(b"0") or b"0"
    return int(text) if len(text) <= 18 else 10**18


def _walk_structure(lines: list[bytes], source: str) -> tuple[int, list[int], list[int]]:
    """Check the frame/body/joint structure; return frame count, bodies per frame and the
    0-based line index of every body-info line."""
    n = len(lines)
    num_frames = _count(lines[0])
    if num_frames is None:
        raise MalformedSkeletonFile(
            source, "non_numeric", f"frame count {lines[0].strip()[:40]!r} is not a non-negative integer", 1
        )
    if num_frames == 0:
        raise MalformedSkeletonFile(source, "zero_frames", "the file declares 0 frames", 1)
    bodies_per_frame: list[int] = []
    starts: list[int] = []
    i = 1
    for frame in range(num_frames):
        if i >= n:
            raise MalformedSkeletonFile(
                source,
                "truncated",
                f"file ends after {n} lines, inside frame {frame + 1} of {num_frames} (expected its body count)",
                n + 1,
            )
        count_line = i
        num_bodies = _count(lines[i])
        if num_bodies is None:
            raise MalformedSkeletonFile(
                source,
                "wrong_body_count",
                f"frame {frame + 1}: body count {lines[i].strip()[:40]!r} is not a non-negative integer",
                i + 1,
            )
        bodies_per_frame.append(num_bodies)
        i += 1
        for body in range(num_bodies):
            if i + _BODY_LINES > n:
                raise MalformedSkeletonFile(
                    source,
                    "truncated",
                    f"file ends after {n} lines, inside body {body + 1} of "
                    f"frame {frame + 1} (needs lines {i + 1}..{i + _BODY_LINES})",
                    n + 1,
                )
            joint_count = lines[i + 1]
            if joint_count != b"25" and _count(joint_count) != NUM_JOINTS:
                if _count(lines[i]) is not None:
                    # The "info line" is a count: this frame lists fewer bodies than it declares.
                    raise MalformedSkeletonFile(
                        source,
                        "wrong_body_count",
                        f"frame {frame + 1} declares {num_bodies} bodies but line {i + 1} ends its body {body}",
                        count_line + 1,
                    )
                raise MalformedSkeletonFile(
                    source,
                    "wrong_joint_count",
                    f"frame {frame + 1}, body {body + 1}: joint count {joint_count.strip()[:40]!r}, expected 25",
                    i + 2,
                )
            starts.append(i)
            i += _BODY_LINES
    if i < n:
        raise MalformedSkeletonFile(
            source, "trailing_data", f"{n - i} non-blank line(s) after the {num_frames} declared frames", i + 1
        )
    if not starts:
        raise MalformedSkeletonFile(source, "zero_frames", f"none of the {num_frames} frames has a body", 1)
    return num_frames, bodies_per_frame, starts


def _body_info_rows(lines: list[bytes], starts: list[int], source: str) -> tuple[list[int], list[bytes]]:
    """Exact body IDs, and each info line's other 9 values padded to a 12-value row."""
    body_ids: list[int] = []
    rows: list[bytes] = []
    for start in starts:
        parts = lines[start].split()
        if len(parts) != BODY_INFO_VALUES:
            raise MalformedSkeletonFile(
                source,
                "missing_field",
                f"body info line has {len(parts)} values, expected {BODY_INFO_VALUES}",
                start + 1,
            )
        token = parts[0]
        if not token.isdigit() or len(token.lstrip(b"0")) > 20 or int(token) > _UINT64_MAX:
            raise MalformedSkeletonFile(
                source, "non_numeric", f"body ID {token[:40]!r} is not an unsigned 64-bit integer", start + 1
            )
        body_ids.append(int(token))
        rows.append(b" ".join(parts[1:]) + _INFO_PAD)
    return body_ids, rows


def _parse_numeric(
    lines: list[bytes], starts: list[int], info_rows: list[bytes], source: str, ends_with_newline: bool
) -> np.ndarray:
    """All joint lines (in body order) then all info rows, as one (25*B + B, 12) float64 array."""
    joint_lines: list[bytes] = []
    for start in starts:
        joint_lines.extend(lines[start + 2 : start + _BODY_LINES])
    rows = joint_lines + info_rows
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(b"\n".join(rows)),
            read_options=_ARROW_READ,
            parse_options=_ARROW_PARSE,
            convert_options=_ARROW_CONVERT,
        )
    except pa.ArrowInvalid:
        table = None
    if table is not None and table.num_rows == len(rows) and not any(c.null_count for c in table.columns):
        values = np.empty((len(rows), JOINT_LINE_VALUES), dtype=np.float64)
        for k, column in enumerate(table.columns):
            values[:, k] = _float64_values(column)
        if np.isfinite(values).all():
            return values
    # Slow path: only for files the fast path rejects (odd whitespace, bad tokens, NaN, ...).
    # It either names the offending line or, for merely unusual spacing, returns the values.
    line_numbers = [s + 3 + j for s in starts for j in range(NUM_JOINTS)] + [s + 1 for s in starts]
    last_line = len(lines)
    values = np.empty((len(rows), JOINT_LINE_VALUES), dtype=np.float64)
    for r, (row, number) in enumerate(zip(rows, line_numbers, strict=True)):
        is_info = r >= len(joint_lines)
        tokens = row.split()
        if not is_info and len(tokens) != JOINT_LINE_VALUES:
            if number == last_line and not ends_with_newline and len(tokens) < JOINT_LINE_VALUES:
                raise MalformedSkeletonFile(
                    source, "truncated", f"last line ends after {len(tokens)} of 12 joint values", number
                )
            raise MalformedSkeletonFile(
                source, "wrong_joint_count", f"joint line has {len(tokens)} values, expected 12", number
            )
        for k, token in enumerate(tokens):
            values[r, k] = _strict_float(token, source, number)
    return values


def _float64_values(column: pa.ChunkedArray) -> np.ndarray:
    """A null-free float64 Arrow column as numpy, read from its data buffers: Arrow's own
    ``to_numpy`` imports pandas on first use (about 50 MiB of RSS and 0.5 s)."""
    parts = [
        np.frombuffer(chunk.buffers()[1], dtype=np.float64, count=len(chunk), offset=chunk.offset * 8)
        for chunk in column.chunks
        if len(chunk)
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _strict_float(token: bytes, source: str, line: int) -> float:
    if _NUMBER_RE.fullmatch(token) is None:
        if _NON_FINITE_RE.fullmatch(token) is not None:
            raise MalformedSkeletonFile(source, "non_finite", f"value {token.decode()!r}", line)
        shown = token[:40].decode("utf-8", errors="replace")
        raise MalformedSkeletonFile(source, "non_numeric", f"value {shown!r} is not a number", line)
    value = float(token)
    if not np.isfinite(value):
        raise MalformedSkeletonFile(source, "non_finite", f"value {token.decode()!r} overflows to {value}", line)
    return value
