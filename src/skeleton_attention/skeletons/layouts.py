"""Joint layouts: names, parents (bones) and the reference joints used by normalization.

All indices are 0-based. ``parents[j]`` is the parent of joint ``j`` along the skeleton tree;
the root is its own parent, so its bone vector is zero. Readers emit joints in the order
defined here (a reader whose file order differs permutes to it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointLayout:
    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    #: joint whose position is subtracted when centring (per frame)
    center: int
    #: spine axis, bottom -> top, rotated onto +z
    spine_bottom: int
    spine_top: int
    #: shoulder axis, right -> left, rotated onto +x
    right_shoulder: int
    left_shoulder: int
    #: number of spatial dimensions of a joint position (2 for image keypoints)
    spatial_dims: int = 3

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(child, parent) pairs, excluding the root's self-loop."""
        return [(c, p) for c, p in enumerate(self.parents) if c != p]

    def parent_index(self) -> np.ndarray:
        return np.asarray(self.parents, dtype=np.intp)

    def index(self, joint_name: str) -> int:
        return self.joint_names.index(joint_name)


def _parents(names: tuple[str, ...], edges: dict[str, str], root: str) -> tuple[int, ...]:
    lookup = {n: i for i, n in enumerate(names)}
    parents = [lookup[edges[n]] if n != root else lookup[root] for n in names]
    return tuple(parents)


_NTU25_NAMES = (
    "spine_base",
    "spine_mid",
    "neck",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "left_hand",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "right_hand",
    "left_hip",
    "left_knee",
    "left_ankle",
    "left_foot",
    "right_hip",
    "right_knee",
    "right_ankle",
    "right_foot",
    "spine_shoulder",
    "left_hand_tip",
    "left_thumb",
    "right_hand_tip",
    "right_thumb",
)
_NTU25_EDGES = {
    "spine_mid": "spine_base",
    "spine_shoulder": "spine_mid",
    "neck": "spine_shoulder",
    "head": "neck",
    "left_shoulder": "spine_shoulder",
    "left_elbow": "left_shoulder",
    "left_wrist": "left_elbow",
    "left_hand": "left_wrist",
    "left_hand_tip": "left_hand",
    "left_thumb": "left_hand",
    "right_shoulder": "spine_shoulder",
    "right_elbow": "right_shoulder",
    "right_wrist": "right_elbow",
    "right_hand": "right_wrist",
    "right_hand_tip": "right_hand",
    "right_thumb": "right_hand",
    "left_hip": "spine_base",
    "left_knee": "left_hip",
    "left_ankle": "left_knee",
    "left_foot": "left_ankle",
    "right_hip": "spine_base",
    "right_knee": "right_hip",
    "right_ankle": "right_knee",
    "right_foot": "right_ankle",
}

# Kinect v1 SDK order (UTKinect-Action3D's file order; MSR Action3D is permuted to it).
_KINECT20_NAMES = (
    "hip_center",
    "spine",
    "shoulder_center",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "left_hand",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "right_hand",
    "left_hip",
    "left_knee",
    "left_ankle",
    "left_foot",
    "right_hip",
    "right_knee",
    "right_ankle",
    "right_foot",
)
_KINECT20_EDGES = {
    "spine": "hip_center",
    "shoulder_center": "spine",
    "head": "shoulder_center",
    "left_shoulder": "shoulder_center",
    "left_elbow": "left_shoulder",
    "left_wrist": "left_elbow",
    "left_hand": "left_wrist",
    "right_shoulder": "shoulder_center",
    "right_elbow": "right_shoulder",
    "right_wrist": "right_elbow",
    "right_hand": "right_wrist",
    "left_hip": "hip_center",
    "left_knee": "left_hip",
    "left_ankle": "left_knee",
    "left_foot": "left_ankle",
    "right_hip": "hip_center",
    "right_knee": "right_hip",
    "right_ankle": "right_knee",
    "right_foot": "right_ankle",
}

# OpenPose COCO-18, the ST-GCN Kinetics-skeleton release.
_OPENPOSE18_NAMES = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
_OPENPOSE18_EDGES = {
    "nose": "neck",
    "right_shoulder": "neck",
    "right_elbow": "right_shoulder",
    "right_wrist": "right_elbow",
    "left_shoulder": "neck",
    "left_elbow": "left_shoulder",
    "left_wrist": "left_elbow",
    "right_hip": "neck",
    "right_knee": "right_hip",
    "right_ankle": "right_knee",
    "left_hip": "neck",
    "left_knee": "left_hip",
    "left_ankle": "left_knee",
    "right_eye": "nose",
    "left_eye": "nose",
    "right_ear": "right_eye",
    "left_ear": "left_eye",
}

# SBU Kinect Interaction (OpenNI 15-joint skeleton), in the files' order per person.
_SBU15_NAMES = (
    "head",
    "neck",
    "torso",
    "left_shoulder",
    "left_elbow",
    "left_hand",
    "right_shoulder",
    "right_elbow",
    "right_hand",
    "left_hip",
    "left_knee",
    "left_foot",
    "right_hip",
    "right_knee",
    "right_foot",
)
_SBU15_EDGES = {
    "neck": "torso",
    "head": "neck",
    "left_shoulder": "neck",
    "left_elbow": "left_shoulder",
    "left_hand": "left_elbow",
    "right_shoulder": "neck",
    "right_elbow": "right_shoulder",
    "right_hand": "right_elbow",
    "left_hip": "torso",
    "left_knee": "left_hip",
    "left_foot": "left_knee",
    "right_hip": "torso",
    "right_knee": "right_hip",
    "right_foot": "right_knee",
}

NTU25 = JointLayout(
    name="ntu25",
    joint_names=_NTU25_NAMES,
    parents=_parents(_NTU25_NAMES, _NTU25_EDGES, "spine_base"),
    center=_NTU25_NAMES.index("spine_mid"),
    spine_bottom=_NTU25_NAMES.index("spine_base"),
    spine_top=_NTU25_NAMES.index("spine_mid"),
    right_shoulder=_NTU25_NAMES.index("right_shoulder"),
    left_shoulder=_NTU25_NAMES.index("left_shoulder"),
)
KINECT20 = JointLayout(
    name="kinect20",
    joint_names=_KINECT20_NAMES,
    parents=_parents(_KINECT20_NAMES, _KINECT20_EDGES, "hip_center"),
    center=_KINECT20_NAMES.index("spine"),
    spine_bottom=_KINECT20_NAMES.index("hip_center"),
    spine_top=_KINECT20_NAMES.index("spine"),
    right_shoulder=_KINECT20_NAMES.index("right_shoulder"),
    left_shoulder=_KINECT20_NAMES.index("left_shoulder"),
)
OPENPOSE18 = JointLayout(
    name="openpose18",
    joint_names=_OPENPOSE18_NAMES,
    parents=_parents(_OPENPOSE18_NAMES, _OPENPOSE18_EDGES, "neck"),
    center=_OPENPOSE18_NAMES.index("neck"),
    spine_bottom=_OPENPOSE18_NAMES.index("neck"),
    spine_top=_OPENPOSE18_NAMES.index("nose"),
    right_shoulder=_OPENPOSE18_NAMES.index("right_shoulder"),
    left_shoulder=_OPENPOSE18_NAMES.index("left_shoulder"),
    spatial_dims=2,
)
# no pelvis joint: the spine axis is torso (mid-trunk) -> neck, the only trunk segment there is
SBU15 = JointLayout(
    name="sbu15",
    joint_names=_SBU15_NAMES,
    parents=_parents(_SBU15_NAMES, _SBU15_EDGES, "torso"),
    center=_SBU15_NAMES.index("torso"),
    spine_bottom=_SBU15_NAMES.index("torso"),
    spine_top=_SBU15_NAMES.index("neck"),
    right_shoulder=_SBU15_NAMES.index("right_shoulder"),
    left_shoulder=_SBU15_NAMES.index("left_shoulder"),
)

# COCO-17 keypoints (the 2-D PYSKL / MMAction2 pose pickles: HRNet on COCO's keypoint order). There
# is no neck or pelvis joint; the tree is rooted at the nose like PYSKL's ``coco`` graph. The spine
# joints only matter to the 3-D normalization, never applied to this 2-D layout.
_COCO17_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
_COCO17_EDGES = {
    "left_eye": "nose",
    "right_eye": "nose",
    "left_ear": "left_eye",
    "right_ear": "right_eye",
    "left_shoulder": "nose",
    "right_shoulder": "nose",
    "left_elbow": "left_shoulder",
    "right_elbow": "right_shoulder",
    "left_wrist": "left_elbow",
    "right_wrist": "right_elbow",
    "left_hip": "left_shoulder",
    "right_hip": "right_shoulder",
    "left_knee": "left_hip",
    "right_knee": "right_hip",
    "left_ankle": "left_knee",
    "right_ankle": "right_knee",
}
COCO17 = JointLayout(
    name="coco17",
    joint_names=_COCO17_NAMES,
    parents=_parents(_COCO17_NAMES, _COCO17_EDGES, "nose"),
    center=_COCO17_NAMES.index("nose"),
    spine_bottom=_COCO17_NAMES.index("left_hip"),
    spine_top=_COCO17_NAMES.index("left_shoulder"),
    right_shoulder=_COCO17_NAMES.index("right_shoulder"),
    left_shoulder=_COCO17_NAMES.index("left_shoulder"),
    spatial_dims=2,
)

BUILTIN_LAYOUTS: tuple[str, ...] = tuple(layout.name for layout in (NTU25, KINECT20, OPENPOSE18, SBU15, COCO17))
LAYOUTS: dict[str, JointLayout] = {layout.name: layout for layout in (NTU25, KINECT20, OPENPOSE18, SBU15, COCO17)}


def get_layout(name: str) -> JointLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise KeyError(
            f"unknown joint layout {name!r}; known: {sorted(LAYOUTS)} (a data set's own layout is "
            "registered when its prepared bundle is loaded: load the bundle, or call register_layout)"
        ) from None


# --- layouts defined at run time (user data sets) --------------------------------------------------


def check_layout(layout: JointLayout) -> None:
    """Raise ``ValueError`` unless ``layout`` is a well-formed tree with valid reference joints."""
    v = layout.num_joints
    problems = []
    if v == 0:
        problems.append("no joints")
    if len(set(layout.joint_names)) != v:
        dupes = sorted({n for n in layout.joint_names if layout.joint_names.count(n) > 1})
        problems.append(f"duplicate joint names {dupes}")
    if len(layout.parents) != v:
        problems.append(f"{len(layout.parents)} parents for {v} joints")
    elif any(not 0 <= p < v for p in layout.parents):
        problems.append(f"parent indices outside 0..{v - 1}")
    else:
        roots = [j for j, p in enumerate(layout.parents) if j == p]
        if len(roots) != 1:
            problems.append(f"{len(roots)} root joints (a joint that is its own parent); need exactly 1")
        for joint in range(v):
            seen, node = set(), joint
            while layout.parents[node] != node and node not in seen:
                seen.add(node)
                node = layout.parents[node]
            if node in seen:
                problems.append(f"joint {layout.joint_names[joint]!r} is on a parent cycle")
                break
    for role in ("center", "spine_bottom", "spine_top", "right_shoulder", "left_shoulder"):
        if not 0 <= getattr(layout, role) < max(v, 1):
            problems.append(f"{role} index {getattr(layout, role)} outside 0..{v - 1}")
    if layout.spatial_dims not in (2, 3):
        problems.append(f"spatial_dims must be 2 or 3, not {layout.spatial_dims}")
    if problems:
        raise ValueError(f"joint layout {layout.name!r}: " + "; ".join(problems))


def register_layout(layout: JointLayout) -> JointLayout:
    """Make ``layout`` known to :func:`get_layout` (normalization, streams, reports) in this process.

    Registering the same definition again is a no-op; a different definition under a name already
    known (a built-in one, or another data set's) raises, so a table's ``layout`` column never means
    two things. Prepared bundles carry their runtime layouts in ``summary.json`` and register them on
    load (:class:`~skeleton_attention.skeletons.bundle.PreparedBundle`).
    """
    check_layout(layout)
    known = LAYOUTS.get(layout.name)
    if known is not None and known != layout:
        origin = "a built-in layout" if layout.name in BUILTIN_LAYOUTS else "registered with another definition"
        raise ValueError(f"joint layout {layout.name!r} is {origin}; give the data set's layout another name")
    LAYOUTS[layout.name] = layout
    return layout


def layout_to_dict(layout: JointLayout) -> dict[str, object]:
    """A JSON-able definition, the inverse of :func:`layout_from_dict`."""
    return {
        "name": layout.name,
        "joint_names": list(layout.joint_names),
        "parents": list(layout.parents),
        "center": layout.center,
        "spine_bottom": layout.spine_bottom,
        "spine_top": layout.spine_top,
        "right_shoulder": layout.right_shoulder,
        "left_shoulder": layout.left_shoulder,
        "spatial_dims": layout.spatial_dims,
    }


def layout_from_dict(data: dict[str, object]) -> JointLayout:
    """Rebuild a layout stored by :func:`layout_to_dict` (indices, not names)."""
    layout = JointLayout(
        name=str(data["name"]),
        joint_names=tuple(str(n) for n in data["joint_names"]),  # type: ignore[union-attr]
        parents=tuple(int(p) for p in data["parents"]),  # type: ignore[union-attr]
        center=int(data["center"]),  # type: ignore[arg-type]
        spine_bottom=int(data["spine_bottom"]),  # type: ignore[arg-type]
        spine_top=int(data["spine_top"]),  # type: ignore[arg-type]
        right_shoulder=int(data["right_shoulder"]),  # type: ignore[arg-type]
        left_shoulder=int(data["left_shoulder"]),  # type: ignore[arg-type]
        spatial_dims=int(data.get("spatial_dims", 3)),  # type: ignore[arg-type]
    )
    check_layout(layout)
    return layout


def register_layouts(definitions: dict[str, dict[str, object]] | None) -> None:
    """Register every layout of a bundle summary's ``layouts`` mapping (name -> definition)."""
    for definition in (definitions or {}).values():
        register_layout(layout_from_dict(definition))
