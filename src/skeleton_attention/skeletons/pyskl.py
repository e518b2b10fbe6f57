"""PYSKL / MMAction2 skeleton annotation pickles -> samples.

The format (``ntu60_3danno.pkl``, ``ntu60_hrnet.pkl``, ...)::

    {"split": {"xsub_train": [frame_dir, ...], "xsub_val": [...], ...},
     "annotations": [{"frame_dir": str, "label": int, "keypoint": (M, T, V, C) float array,
                      "keypoint_score": (M, T, V) (2-D sets), "total_frames": T, "img_shape": (h, w), ...}]}

A pickle can run arbitrary code when loaded, so :func:`load_pyskl_pickle` uses
:class:`RestrictedUnpickler`: only numpy arrays, dtypes and scalars (and plain containers, which
need no import) are rebuilt; any other ``module.name`` is refused before anything is called.

Split names ``<bench>_train`` / ``<bench>_val`` (or ``_test``) become the protocol
``<prefix>_<bench>`` (``pyskl_xsub``); bare ``train`` / ``val`` become ``<prefix>``. PYSKL's "val"
list is the benchmark's *test* set (the papers report on it), so it maps to ``test``; validation is
carved from the training rows by the trainer, as for every data set. ``frame_dir`` values that are
NTU names (``S001C001P001R001A001``) also get the NTU identity columns and the four official NTU
protocol columns. Format and choices: ``docs/custom-data.md``.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skeleton_attention.skeletons import ntu
from skeleton_attention.skeletons.custom_files import CustomLayout, check_sample_array, load_layout_file
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.ingest import FileOutcome
from skeleton_attention.skeletons.layouts import COCO17, NTU25, JointLayout, layout_to_dict, register_layout
from skeleton_attention.skeletons.sequence import SkeletonSequence

#: (module, name) pairs a skeleton pickle may reference: numpy's array/scalar reconstruction, for
#: numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) writers, and protocol-2 bytes (``_codecs``)
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        *((core + ".multiarray", "_reconstruct") for core in ("numpy.core", "numpy._core")),
        *((core + ".multiarray", "scalar") for core in ("numpy.core", "numpy._core")),
        *((core + ".numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)
_SPLIT_RE = re.compile(r"(?:(?P<bench>.+)_)?(?P<part>train|val|test)")


class RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays and plain containers; any other global raises ``UnpicklingError``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a skeleton annotation pickle may only hold numpy "
                "arrays and plain containers (dict, list, str, numbers)"
            )
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]  # numpy 2 moved numpy.core
        return getattr(importlib.import_module(module), name)


def load_pyskl_pickle(path: str | Path) -> dict[str, Any]:
    """Load an annotation pickle safely and check its top-level structure."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PYSKL annotation pickle {path} does not exist (runtime param pyskl_pickle)")
    try:
        with open(path, "rb") as handle:
            data = RestrictedUnpickler(io.BufferedReader(handle)).load()
    except pickle.UnpicklingError as error:
        reason = "unsafe_pickle" if "refusing to load" in str(error) else "malformed_pickle"
        raise MalformedSkeletonFile(str(path), reason, str(error)) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise MalformedSkeletonFile(str(path), "malformed_pickle", f"{type(error).__name__}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise MalformedSkeletonFile(
            str(path), "malformed_pickle", f"expected a dict with an 'annotations' list, found {found}"
        )
    split = data.get("split", {})
    if not isinstance(split, dict) or not all(isinstance(v, list | tuple) for v in split.values()):
        raise MalformedSkeletonFile(str(path), "malformed_pickle", "'split' must map split names to lists of frame_dir")
    return data


# --- protocols ---------------------------------------------------------------------------------------


def split_protocols(split: Mapping[str, Sequence[str]], prefix: str = "pyskl") -> dict[str, dict[str, str]]:
    """frame_dir -> {protocol: "train"|"test"} from the pickle's split lists.

    ``xsub_train`` -> protocol ``<prefix>_xsub`` train; ``xsub_val`` / ``xsub_test`` -> test.
    A name of another form, or a frame_dir in both parts of one benchmark, raises ``ValueError``.
    """
    membership: dict[str, dict[str, str]] = {}
    for key, names in split.items():
        match = _SPLIT_RE.fullmatch(str(key))
        if match is None:
            raise ValueError(f"split {key!r} is not <benchmark>_train / _val / _test (or train / val / test)")
        protocol = f"{prefix}_{match['bench']}" if match["bench"] else prefix
        part = "train" if match["part"] == "train" else "test"
        for name in names:
            entry = membership.setdefault(str(name), {})
            if entry.get(protocol, part) != part:
                raise ValueError(f"{name} is in both the train and the test list of {protocol} ({key})")
            entry[protocol] = part
    return membership


def protocol_names(split: Mapping[str, Sequence[str]], prefix: str = "pyskl") -> tuple[str, ...]:
    names = []
    for key in split:
        match = _SPLIT_RE.fullmatch(str(key))
        if match is not None:
            protocol = f"{prefix}_{match['bench']}" if match["bench"] else prefix
            if protocol not in names:
                names.append(protocol)
    return tuple(names)


# --- layout ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PysklContext:
    """What each annotation task needs; picklable."""

    source: str
    layout: JointLayout
    channels: tuple[str, ...]
    #: the annotations carry ``keypoint_score``, appended as the last channel
    with_score: bool
    dataset: str
    ntu_names: bool
    pixel_to_unit: bool
    classes: tuple[str, ...] | None
    protocols: tuple[str, ...]


def choose_layout(keypoint: np.ndarray, with_score: bool, layout_file: str | Path | None, source: str) -> CustomLayout:
    """ntu25 for 25 joints in 3-D, coco17 for 17 joints in 2-D, a layout file for anything else."""
    shape = np.shape(keypoint)
    if len(shape) != 4:
        raise MalformedSkeletonFile(
            source, "wrong_rank", f"first keypoint array has shape {shape}, expected (M, T, V, C)"
        )
    joints, chans = shape[2], shape[3] + int(with_score)
    if layout_file:
        spec = load_layout_file(layout_file)
        if not spec.builtin:
            register_layout(spec.layout)
        return spec
    if (joints, shape[3], with_score) == (25, 3, False):
        return CustomLayout(NTU25, ("x", "y", "z"), builtin=True)
    if (joints, shape[3], with_score) == (17, 2, True):
        return CustomLayout(COCO17, ("x", "y", "score"), builtin=True)
    raise MalformedSkeletonFile(
        source,
        "unknown_layout",
        f"keypoints with {joints} joints x {shape[3]} channels{' + keypoint_score' if with_score else ''} "
        f"({chans} channels): only 25 x 3-D (ntu25) and 17 x 2-D (coco17) are known; give "
        "prepare_pyskl.layout_file (the layout.yaml format of docs/custom-data.md)",
    )


def plan_pyskl(
    path: str | Path, params: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], PysklContext, dict[str, Any]]:
    """Load the pickle and return one task per annotation, their context and the summary info."""
    source = str(path)
    data = load_pyskl_pickle(path)
    annotations: list[Any] = data["annotations"]
    if not annotations:
        raise MalformedSkeletonFile(source, "malformed_pickle", "the 'annotations' list is empty")
    # the layout is decided by the first annotation that has keypoints; others must match it
    first = next((a for a in annotations if isinstance(a, dict) and a.get("keypoint") is not None), {})
    with_score = first.get("keypoint_score") is not None
    spec = choose_layout(first.get("keypoint"), with_score, params.get("layout_file"), source)
    prefix = str(params.get("protocol_prefix", "pyskl"))
    split = data.get("split", {})
    try:
        membership = split_protocols(split, prefix)
    except ValueError as error:
        raise MalformedSkeletonFile(source, "malformed_pickle", str(error)) from None
    protocols = protocol_names(split, prefix)
    names = [
        str(a["frame_dir"]) if isinstance(a, dict) and a.get("frame_dir") is not None else f"annotations[{i}]"
        for i, a in enumerate(annotations)
    ]
    # unnamed annotations are quarantined anyway (malformed_annotation); they do not decide the mode
    real = [
        n for n, a in zip(names, annotations, strict=True) if isinstance(a, dict) and a.get("frame_dir") is not None
    ]
    ntu_names = bool(real) and all(_is_ntu_name(n) for n in real)
    if ntu_names:
        protocols = (*protocols, *ntu.ntu_splits(real[0]))
    classes = tuple(params["classes"]) if params.get("classes") else None
    context = PysklContext(
        source=source,
        layout=spec.layout,
        channels=spec.channels,
        with_score=with_score,
        dataset=str(params.get("dataset") or Path(path).stem),
        ntu_names=ntu_names,
        pixel_to_unit=bool(params.get("pixel_to_unit", True)),
        classes=classes,
        protocols=protocols,
    )
    annotated = set(names)
    tasks = [
        {"name": name, "index": i, "annotation": annotation, "splits": membership.get(name, {})}
        for i, (name, annotation) in enumerate(zip(names, annotations, strict=True))
    ]
    info: dict[str, Any] = {
        "dataset": "ntu (per sample)" if ntu_names else context.dataset,
        "source": source,
        "layout": spec.layout.name,
        "channels": list(spec.channels),
        "ntu_names": ntu_names,
        "split_lists": {str(k): len(v) for k, v in split.items()},
        # listed in a split but absent from the annotations: not an input, but worth seeing
        "split_entries_without_annotation": len(set(membership) - annotated),
        "warnings": [] if split else ["the pickle has no 'split' lists: no pyskl protocol column"],
    }
    if not spec.builtin:
        info["layouts"] = {spec.layout.name: layout_to_dict(spec.layout)}
    return tasks, context, info


def _is_ntu_name(name: str) -> bool:
    try:
        ntu.parse_ntu_name(name)
    except MalformedSkeletonFile:
        return False
    return True


# --- one annotation ----------------------------------------------------------------------------------


def process_pyskl_annotation(task: Mapping[str, Any], *, context: PysklContext) -> FileOutcome:
    """One annotation -> one sample; ``MalformedSkeletonFile`` naming the frame_dir otherwise."""
    name = str(task["name"])
    where = f"{context.source}[{name}]"
    ann = task["annotation"]
    if not isinstance(ann, dict):
        raise MalformedSkeletonFile(where, "malformed_annotation", f"annotation is a {type(ann).__name__}, not a dict")
    missing = [k for k in ("frame_dir", "label", "keypoint") if k not in ann]
    if missing:
        raise MalformedSkeletonFile(where, "malformed_annotation", f"missing key(s) {missing}")
    coords = _coords(ann, context, where)
    label = ann["label"]
    if isinstance(label, bool) or not isinstance(label, int | np.integer) or int(label) < 0:
        raise MalformedSkeletonFile(where, "unknown_label", f"label {label!r} is not a class index >= 0")
    label = int(label)
    if context.classes is not None and label >= len(context.classes):
        raise MalformedSkeletonFile(where, "unknown_label", f"label {label} outside 0..{len(context.classes) - 1}")
    label_name = context.classes[label] if context.classes is not None else ""
    splits: dict[str, str | int | None] = {p: None for p in context.protocols}
    splits.update(task["splits"])
    meta: dict[str, object] = {}
    dataset = context.dataset
    if context.ntu_names:
        ntu_name = ntu.parse_ntu_name(name)
        if ntu_name.label != label:
            raise MalformedSkeletonFile(
                where, "label_mismatch", f"label {label} but the name says action {ntu_name.action}"
            )
        meta.update(ntu_name.as_meta())
        splits.update(ntu.ntu_splits(ntu_name))
        dataset, label_name = ntu_name.dataset, label_name or ntu_name.label_name
    seq = SkeletonSequence(
        sample_id=name,
        dataset=dataset,
        layout=context.layout.name,
        coords=coords,
        label=label,
        label_name=label_name,
        source_file=context.source,
        meta=meta,
    )
    return FileOutcome(samples=[(seq, splits)])


def _coords(ann: Mapping[str, Any], context: PysklContext, where: str) -> np.ndarray:
    keypoint = np.asarray(ann["keypoint"])
    if keypoint.dtype.kind not in "fiu":
        raise MalformedSkeletonFile(where, "non_numeric", f"keypoint dtype {keypoint.dtype}")
    if keypoint.ndim != 4:
        raise MalformedSkeletonFile(where, "wrong_rank", f"keypoint shape {keypoint.shape}, expected (M, T, V, C)")
    total = ann.get("total_frames")
    if total is not None and int(total) != keypoint.shape[1]:
        raise MalformedSkeletonFile(
            where, "frame_count_mismatch", f"total_frames {total} but keypoint has {keypoint.shape[1]} frames"
        )
    keypoint = keypoint.astype(np.float64)
    score = ann.get("keypoint_score")
    if context.with_score:
        if score is None or np.shape(score) != keypoint.shape[:3]:
            raise MalformedSkeletonFile(
                where, "bad_keypoint_score", f"keypoint_score shape {np.shape(score)}, expected {keypoint.shape[:3]}"
            )
    elif score is not None:
        raise MalformedSkeletonFile(
            where, "bad_keypoint_score", "keypoint_score present, but the first annotation had none"
        )
    if context.layout.spatial_dims == 2 and context.pixel_to_unit:
        shape = ann.get("img_shape")
        if shape is None or len(shape) != 2 or min(shape) <= 0:
            raise MalformedSkeletonFile(
                where,
                "missing_img_shape",
                f"img_shape {shape!r}: pixel coordinates cannot be scaled to 0..1 "
                "(set prepare_pyskl.pixel_to_unit: false to keep pixels)",
            )
        height, width = (float(v) for v in shape)
        keypoint = keypoint / np.array([width, height])  # x / width, y / height, as Kinetics-skeleton
    if context.with_score:
        keypoint = np.concatenate([keypoint, np.asarray(score, dtype=np.float64)[..., None]], axis=-1)
    return check_sample_array(keypoint, where, context.layout, context.channels)
