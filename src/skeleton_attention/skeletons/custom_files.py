"""The files of a user's own data set: the joint layout file and the per-sample arrays.

Format: ``docs/custom-data.md``. Everything here raises
:class:`~skeleton_attention.skeletons.errors.MalformedSkeletonFile` naming the file and the problem;
:mod:`skeleton_attention.skeletons.custom` turns a bad sample file into a quarantine row, a bad
layout file into a failed run (nothing can be read without it).
"""

from __future__ import annotations

import difflib
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.layouts import BUILTIN_LAYOUTS, LAYOUTS, JointLayout, check_layout, get_layout

LAYOUT_FILES: tuple[str, ...] = ("layout.yaml", "layout.yml", "layout.json")
SPATIAL_CHANNELS: tuple[str, ...] = ("x", "y", "z")
#: names accepted for one trailing confidence channel (the streams take its minimum, never a difference)
CONFIDENCE_CHANNELS: tuple[str, ...] = ("score", "confidence")
REFERENCE_JOINTS: tuple[str, ...] = ("center", "spine_bottom", "spine_top", "left_shoulder", "right_shoulder")
_LAYOUT_KEYS: tuple[str, ...] = (
    "name",
    "dataset",
    "layout",
    "joints",
    "parents",
    *REFERENCE_JOINTS,
    "channels",
    "classes",
    "description",
)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SAMPLE_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".parquet")
#: index columns of a long-format Parquet sample (one row per body, frame and joint)
PARQUET_INDEX_COLUMNS: tuple[str, ...] = ("body", "frame", "joint")


@dataclass(frozen=True)
class CustomLayout:
    """What ``layout.yaml`` declares: the joint layout, the channel names, optional classes."""

    layout: JointLayout
    channels: tuple[str, ...]
    classes: tuple[str, ...] | None = None
    dataset: str | None = None
    source: str = ""
    #: True when ``layout`` names a built-in layout (nothing to register or store)
    builtin: bool = False


# --- layout.yaml -------------------------------------------------------------------------------------


def find_layout_file(root: Path) -> Path:
    found = [root / name for name in LAYOUT_FILES if (root / name).is_file()]
    if not found:
        raise FileNotFoundError(f"{root}: no joint layout file ({' or '.join(LAYOUT_FILES)}); see docs/custom-data.md")
    if len(found) > 1:
        raise MalformedSkeletonFile(
            str(root), "bad_layout", f"several layout files {[p.name for p in found]}: keep one"
        )
    return found[0]


def load_layout_file(path: str | Path) -> CustomLayout:
    """Parse and check a layout file; ``MalformedSkeletonFile(reason="bad_layout")`` on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        raise MalformedSkeletonFile(str(path), "bad_layout", f"cannot be parsed: {error}") from None
    if not isinstance(data, Mapping):
        raise MalformedSkeletonFile(str(path), "bad_layout", "the file must hold a mapping of keys")
    try:
        return _parse_layout(dict(data), str(path))
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedSkeletonFile(str(path), "bad_layout", str(error).strip("'\"")) from None


def _parse_layout(data: dict[str, object], source: str) -> CustomLayout:
    unknown = sorted(set(data) - set(_LAYOUT_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {with_suggestions(unknown, _LAYOUT_KEYS)}; allowed: {list(_LAYOUT_KEYS)}")
    classes = _classes(data.get("classes"))
    dataset = None if data.get("dataset") is None else str(data["dataset"])
    if data.get("layout") is not None:
        clash = sorted(k for k in ("name", "joints", "parents", *REFERENCE_JOINTS) if k in data)
        if clash:
            raise ValueError(f"'layout: {data['layout']}' reuses a built-in layout; drop {clash}")
        if str(data["layout"]) not in BUILTIN_LAYOUTS:
            raise ValueError(f"layout: {data['layout']!r} is not a built-in layout {list(BUILTIN_LAYOUTS)}")
        layout = get_layout(str(data["layout"]))
        default = ("x", "y", "z") if layout.spatial_dims == 3 else ("x", "y", "score")
        channels = _channels(data.get("channels", list(default)))
        if _spatial_dims(channels) != layout.spatial_dims:
            raise ValueError(f"channels {list(channels)} do not match the {layout.spatial_dims}-D layout {layout.name}")
        return CustomLayout(layout, channels, classes, dataset, source, builtin=True)
    missing = [k for k in ("name", "joints", "parents", *REFERENCE_JOINTS, "channels") if k not in data]
    if missing:
        raise ValueError(f"missing key(s) {missing}")
    name = str(data["name"])
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"layout name {name!r}: use letters, digits, '_', '.', '-'")
    joints = data["joints"]
    if not isinstance(joints, list) or not all(isinstance(j, str) and j for j in joints):
        raise ValueError("joints must be a list of joint names")
    names = tuple(joints)
    channels = _channels(data["channels"])
    parents = _parents(data["parents"], names)
    refs = {role: _joint_index(data[role], names, role) for role in REFERENCE_JOINTS}
    layout = JointLayout(name=name, joint_names=names, parents=parents, spatial_dims=_spatial_dims(channels), **refs)
    check_layout(layout)
    known = LAYOUTS.get(name)
    if known is not None and known != layout:
        raise ValueError(f"layout name {name!r} is already taken by a different layout; rename it")
    return CustomLayout(layout, channels, classes, dataset, source)


def with_suggestions(names: Sequence[str], known: Sequence[str]) -> str:
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        parts.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    return ", ".join(parts)


def _classes(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(c, str | int) for c in value):
        raise ValueError("classes must be a non-empty list of class names (label i is classes[i])")
    names = tuple(str(c).strip() for c in value)
    if "" in names or len(set(names)) != len(names):
        raise ValueError("classes must be unique, non-empty names")
    return names


def _channels(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError("channels must be a list such as [x, y, z] or [x, y, score]")
    channels = tuple(c.strip().lower() for c in value)
    dims = _spatial_dims(channels)
    extra = channels[dims:]
    if len(extra) > 1 or any(c not in CONFIDENCE_CHANNELS for c in extra):
        raise ValueError(
            f"channels {list(channels)}: after x, y(, z) at most one confidence channel {list(CONFIDENCE_CHANNELS)}"
        )
    return channels


def _spatial_dims(channels: Sequence[str]) -> int:
    if tuple(channels[:2]) != ("x", "y"):
        raise ValueError(f"channels {list(channels)} must start with x, y")
    return 3 if len(channels) > 2 and channels[2] == "z" else 2


def _joint_index(value: object, names: tuple[str, ...], what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is neither a joint name nor an index")
    if isinstance(value, int):
        if not 0 <= value < len(names):
            raise ValueError(f"{what}: index {value} outside 0..{len(names) - 1}")
        return value
    if isinstance(value, str) and value in names:
        return names.index(value)
    close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{what}: {value!r} is not one of the joints{hint}")


def _parents(value: object, names: tuple[str, ...]) -> tuple[int, ...]:
    """Parents as names or indices; the root is its own parent, ``null`` or ``-1``."""
    if not isinstance(value, list) or len(value) != len(names):
        count = len(value) if isinstance(value, list) else "no list of"
        raise ValueError(f"parents: {count} entries for {len(names)} joints (one parent per joint, in joint order)")
    out = []
    for joint, parent in enumerate(value):
        if parent is None or parent == -1:
            out.append(joint)
        else:
            out.append(_joint_index(parent, names, f"parent of {names[joint]!r}"))
    return tuple(out)


# --- sample files ------------------------------------------------------------------------------------


def read_sample_file(path: str | Path, layout: JointLayout, channels: Sequence[str]) -> np.ndarray:
    """One sample's ``(M, T, V, C)`` float32 array from ``.npy``, ``.npz`` or long-format ``.parquet``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise MalformedSkeletonFile(str(path), "unsupported_format", f"use one of {list(SAMPLE_SUFFIXES)}")
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)  # never unpickle a user file
        elif suffix == ".npz":
            array = _read_npz(path)
        else:
            array = _read_long_parquet(path, layout, channels)
    except MalformedSkeletonFile:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise MalformedSkeletonFile(str(path), "unreadable", f"{type(error).__name__}: {error}") from None
    return check_sample_array(array, str(path), layout, channels)


def _read_npz(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        if "coords" in keys:
            return archive["coords"]
        if len(keys) == 1:
            return archive[keys[0]]
    detail = "holds no array" if not keys else f"holds arrays {keys}: name the sample's array 'coords'"
    raise MalformedSkeletonFile(str(path), "ambiguous_npz", detail)


def _read_long_parquet(path: Path, layout: JointLayout, channels: Sequence[str]) -> np.ndarray:
    """Long format: columns ``body, frame, joint`` plus one column per channel, a complete grid."""
    frame = pd.read_parquet(path)
    expected = [*PARQUET_INDEX_COLUMNS, *channels]
    missing = [c for c in expected if c not in frame.columns]
    extra = [c for c in frame.columns if c not in expected]
    if missing or extra:
        raise MalformedSkeletonFile(
            str(path), "bad_columns", f"columns must be {expected}; missing {missing}, unexpected {extra}"
        )
    if frame.empty:
        raise MalformedSkeletonFile(str(path), "zero_frames", "the file has no rows")
    if frame[expected].isna().any().any():
        column = next(c for c in expected if frame[c].isna().any())
        raise MalformedSkeletonFile(str(path), "non_finite", f"column {column} has empty (null) values")
    joints = frame["joint"]
    if joints.dtype.kind in "iu":
        joint_index = joints.to_numpy(dtype=np.int64)
    else:
        lookup = {name: i for i, name in enumerate(layout.joint_names)}
        unknown = sorted(set(joints.astype(str)) - set(lookup))
        if unknown:
            raise MalformedSkeletonFile(
                str(path), "unknown_joint", f"joint names {unknown[:5]} not in layout {layout.name}"
            )
        joint_index = joints.astype(str).map(lookup).to_numpy(dtype=np.int64)
    index = {}
    for column in ("body", "frame"):
        if frame[column].dtype.kind not in "iu":
            raise MalformedSkeletonFile(str(path), "non_numeric", f"column {column} must hold integers")
        index[column] = frame[column].to_numpy(dtype=np.int64)
    for column, values, bound in (
        ("body", index["body"], None),
        ("frame", index["frame"], None),
        ("joint", joint_index, layout.num_joints),
    ):
        if values.min() < 0 or (bound is not None and values.max() >= bound):
            raise MalformedSkeletonFile(
                str(path),
                "unknown_joint" if bound else "bad_index",
                f"column {column} outside 0..{(bound or values.max() + 1) - 1}",
            )
    bodies, frames, v = int(index["body"].max()) + 1, int(index["frame"].max()) + 1, layout.num_joints
    flat = (index["body"] * frames + index["frame"]) * v + joint_index
    if len(frame) != bodies * frames * v or len(np.unique(flat)) != len(flat):
        raise MalformedSkeletonFile(
            str(path),
            "incomplete_grid",
            f"{len(frame)} rows ({len(np.unique(flat))} distinct body/frame/joint), a complete grid of "
            f"{bodies} bodies x {frames} frames x {v} joints needs {bodies * frames * v}",
        )
    values = frame[list(channels)].to_numpy()
    if values.dtype.kind not in "fiu":
        raise MalformedSkeletonFile(str(path), "non_numeric", f"channel columns {list(channels)} must be numeric")
    out = np.zeros((bodies * frames * v, len(channels)), dtype=np.float64)
    out[flat] = values
    return out.reshape(bodies, frames, v, len(channels))


def check_sample_array(array: np.ndarray, source: str, layout: JointLayout, channels: Sequence[str]) -> np.ndarray:
    """Check rank, shape against the layout, dtype and values; return it as float32."""
    x = np.asarray(array)
    if x.dtype.kind not in "fiu":
        raise MalformedSkeletonFile(source, "non_numeric", f"array dtype {x.dtype} is not numeric")
    if x.ndim != 4:
        hint = " (one body? add the body axis: array[None])" if x.ndim == 3 else ""
        raise MalformedSkeletonFile(
            source,
            "wrong_rank",
            f"array of shape {x.shape}: expected 4 axes (M bodies, T frames, V joints, C channels){hint}",
        )
    bodies, frames, joints, chans = x.shape
    if joints != layout.num_joints:
        raise MalformedSkeletonFile(
            source,
            "wrong_joint_count",
            f"shape {x.shape}: {joints} joints, layout {layout.name} has {layout.num_joints}",
        )
    if chans != len(channels):
        raise MalformedSkeletonFile(
            source, "wrong_channel_count", f"shape {x.shape}: {chans} channels, layout file declares {list(channels)}"
        )
    if bodies == 0:
        raise MalformedSkeletonFile(source, "zero_bodies", f"shape {x.shape}: no body")
    if frames == 0:
        raise MalformedSkeletonFile(source, "zero_frames", f"shape {x.shape}: no frame")
    with np.errstate(over="ignore"):
        out = x.astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        m, t, v, c = (int(i) for i in np.argwhere(bad)[0])
        raise MalformedSkeletonFile(
            source,
            "non_finite",
            f"{int(bad.sum())} NaN/inf value(s) (or beyond float32), first at body {m}, frame {t}, "
            f"joint {layout.joint_names[v]!r}, channel {channels[c]!r}",
        )
    if not out.any():
        raise MalformedSkeletonFile(source, "zero_frames", "every value is zero: no body is ever present")
    return out
