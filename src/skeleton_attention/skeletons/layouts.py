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
    "spine_base", "spine_mid", "neck", "head",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
    "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb",
)
_NTU25_EDGES = {
    "spine_mid": "spine_base", "spine_shoulder": "spine_mid", "neck": "spine_shoulder",
    "head": "neck", "left_shoulder": "spine_shoulder", "left_elbow": "left_shoulder",
    "left_wrist": "left_elbow", "left_hand": "left_wrist", "left_hand_tip": "left_hand",
    "left_thumb": "left_hand", "right_shoulder": "spine_shoulder",
    "right_elbow": "right_shoulder", "right_wrist": "right_elbow", "right_hand": "right_wrist",
    "right_hand_tip": "right_hand", "right_thumb": "right_hand", "left_hip": "spine_base",
    "left_knee": "left_hip", "left_ankle": "left_knee", "left_foot": "left_ankle",
    "right_hip": "spine_base", "right_knee": "right_hip", "right_ankle": "right_knee",
    "right_foot": "right_ankle",
}

# Kinect v1 SDK order (UTKinect-Action3D's file order; MSR Action3D is permuted to it).
_KINECT20_NAMES = (
    "hip_center", "spine", "shoulder_center", "head",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
)
_KINECT20_EDGES = {
    "spine": "hip_center", "shoulder_center": "spine", "head": "shoulder_center",
    "left_shoulder": "shoulder_center", "left_elbow": "left_shoulder",
    "left_wrist": "left_elbow", "left_hand": "left_wrist",
    "right_shoulder": "shoulder_center", "right_elbow": "right_shoulder",
    "right_wrist": "right_elbow", "right_hand": "right_wrist",
    "left_hip": "hip_center", "left_knee": "left_hip", "left_ankle": "left_knee",
    "left_foot": "left_ankle", "right_hip": "hip_center", "right_knee": "right_hip",
    "right_ankle": "right_knee", "right_foot": "right_ankle",
}

# OpenPose COCO-18, the ST-GCN Kinetics-skeleton release.
_OPENPOSE18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)
_OPENPOSE18_EDGES = {
    "nose": "neck", "right_shoulder": "neck", "right_elbow": "right_shoulder",
    "right_wrist": "right_elbow", "left_shoulder": "neck", "left_elbow": "left_shoulder",
    "left_wrist": "left_elbow", "right_hip": "neck", "right_knee": "right_hip",
    "right_ankle": "right_knee", "left_hip": "neck", "left_knee": "left_hip",
    "left_ankle": "left_knee", "right_eye": "nose", "left_eye": "nose",
    "right_ear": "right_eye", "left_ear": "left_eye",
}

# SBU Kinect Interaction (OpenNI 15-joint skeleton), in the files' order per person.
_SBU15_NAMES = (
    "head", "neck", "torso",
    "left_shoulder", "left_elbow", "left_hand",
    "right_shoulder", "right_elbow", "right_hand",
    "left_hip", "left_knee", "left_foot",
    "right_hip", "right_knee", "right_foot",
)
_SBU15_EDGES = {
    "neck": "torso", "head": "neck",
    "left_shoulder": "neck", "left_elbow": "left_shoulder", "left_hand": "left_elbow",
    "right_shoulder": "neck", "right_elbow": "right_shoulder", "right_hand": "right_elbow",
    "left_hip": "torso", "left_knee": "left_hip", "left_foot": "left_knee",
    "right_hip": "torso", "right_knee": "right_hip", "right_foot": "right_knee",
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

LAYOUTS: dict[str, JointLayout] = {layout.name: layout for layout in (NTU25, KINECT20, OPENPOSE18, SBU15)}


def get_layout(name: str) -> JointLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise KeyError(f"unknown joint layout {name!r}; known: {sorted(LAYOUTS)}") from None
