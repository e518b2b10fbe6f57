"""The embedded default data set: deterministic synthetic recordings written in the REAL raw formats.

A fresh clone has no NTU or Kinetics download, so the default pipeline starts from files produced
here. They are not a simplified format: ``write_synthetic_ntu`` writes NTU RGB+D ``.skeleton`` text
files (frame count; per frame a body count; per body a 10-field info line, ``25`` and 25 lines of 12
values, numbers printed like the real files with 7 significant digits) and ``write_synthetic_kinetics``
writes ST-GCN Kinetics-skeleton JSON clips plus the two label maps. The readers under test therefore
see exactly what they would see on real data, quirks included:

* anatomy: a 25-joint Kinect v2 skeleton driven by forward kinematics from per-performer bone lengths
  (heights 1.5-1.9 m), so bone lengths are constant over time up to sensor noise;
* motion: each class is a distinct movement (waving, kicking, squatting, two-person handshake, ...)
  with randomised speed, amplitude, phase, start position and facing;
* three cameras at -45, 0 and +45 degrees around the vertical axis see the same recording, each in
  its own Kinect coordinates, with its own body IDs, noise and 0-3 frame start/end offsets;
* sensor quirks: Gaussian joint noise, inferred joints, occasional spurious ("ghost") bodies that
  are short-lived, flat (fail the x-spread > 0.8 y-spread rule) or static, and dropped frames with
  no body at all.

Everything is drawn from ``numpy.random.default_rng`` seeded by (seed, identity of the file), so a
file's bytes depend only on the seed and its own name: the same seed gives byte-identical files and
changing ``num_classes`` or the performer list leaves the other files unchanged. The geometry is
documented in ``docs/synthetic-data.md`` and recorded per file in ``synthetic_manifest.json`` so
view-alignment code can be checked against known ground truth.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from skeleton_attention.skeletons.layouts import NTU25, OPENPOSE18

# --------------------------------------------------------------------------------------------------
# Public constants
# --------------------------------------------------------------------------------------------------

#: horizontal angle (degrees, about the vertical y axis) of each synthetic camera. The world frame
#: is the frame of camera 2 (0 degrees); see :func:`camera_rotation` for the convention.
SYNTHETIC_CAMERA_ANGLES: Mapping[int, float] = MappingProxyType({1: -45.0, 2: 0.0, 3: 45.0})

#: frames per second of the synthetic recordings (Kinect v2 and Kinetics both run at 30 fps)
FPS = 30.0

#: Kinect v2 depth camera model used to fill depthX/depthY (512x424 image): fx, fy, cx, cy.
#: A plausible pinhole fitted to the real files' values, not a real calibration.
DEPTH_INTRINSICS = (365.5, 365.5, 256.0, 208.0)
#: colour camera model (1920x1080): fx, fy, cx, cy, and its x offset from the depth camera (m).
COLOR_INTRINSICS = (1060.0, 1060.0, 960.0, 540.0)
COLOR_BASELINE_X = 0.052

#: NTU body IDs are 64-bit Kinect tracking IDs just above 2**56 (e.g. 72057594037931101)
BODY_ID_BASE = 72057594037927936

#: name of the ground-truth file written beside the NTU files (readers glob ``*.skeleton``)
MANIFEST_NAME = "synthetic_manifest.json"
#: the Kinetics clip list; deliberately not ``*.json``, which a clip glob would pick up
KINETICS_MANIFEST_NAME = "synthetic_clips.tsv"


@dataclass(frozen=True)
class SyntheticAction:
    """One synthetic class. ``people`` is 2 for interactions (two bodies per frame)."""

    name: str
    people: int
    description: str
    #: the real NTU class whose motion is closest (orientation only: the ids are our own)
    ntu_similar: str


#: the classes, in label order: class ``k`` is written as NTU action ``A{k+1:03d}``, label = action-1.
#: Two interactions sit inside the first 10 so the default ``num_classes=10`` includes them.
SYNTHETIC_ACTIONS: tuple[SyntheticAction, ...] = (
    SyntheticAction("wave right hand", 1, "right arm raised sideways, forearm swings side to side", "A023 hand waving"),
    SyntheticAction("wave left hand", 1, "mirror image of class 0 with the left arm", "A023 hand waving"),
    SyntheticAction("raise both arms", 1, "both arms swing forward and up overhead, once or twice", "A039 cheer up"),
    SyntheticAction(
        "squat", 1, "hips drop with knee and hip flexion, trunk leans forward, arms forward", "A008 sit down"
    ),
    SyntheticAction("kick right", 1, "right thigh swings forward with the knee extending", "A024 kicking"),
    SyntheticAction("punch right", 1, "fists in guard, right arm extends forward 2-3 times", "A050 punch"),
    SyntheticAction("bow", 1, "trunk flexes forward about 55 degrees and back", "A035 nod head/bow"),
    SyntheticAction("jump", 1, "crouch, take off 12-25 cm, land; once or twice", "A027 jump up"),
    SyntheticAction("handshake", 2, "two people step towards each other and shake right hands", "A058 shaking hands"),
    SyntheticAction(
        "push", 2, "person 1 pushes with both arms, person 2 is displaced backwards", "A052 pushing other person"
    ),
    SyntheticAction("kick left", 1, "mirror image of class 4 with the left leg", "A024 kicking"),
    SyntheticAction("turn around", 1, "a 180 degree turn on the spot with stepping legs", "none"),
    SyntheticAction("clap", 1, "arms forward, hands repeatedly meet in front of the chest", "A010 clapping"),
    SyntheticAction(
        "high five", 2, "two people raise right arms and slap hands overhead", "A055 hugging (closest two-person)"
    ),
)

# Joint indices (NTU25 order). A local rotation stored at joint j rotates the bone parent(j) -> j and
# everything below it, about the parent joint.
_J = {name: i for i, name in enumerate(NTU25.joint_names)}
_PARENTS = NTU25.parent_index()
_TRUNK = _J["spine_mid"]
_NECK = _J["neck"]
_HEAD = _J["head"]
_UPPER_ARM = {"R": _J["right_elbow"], "L": _J["left_elbow"]}
_FOREARM = {"R": _J["right_wrist"], "L": _J["left_wrist"]}
_HAND = {"R": _J["right_hand"], "L": _J["left_hand"]}
_THIGH = {"R": _J["right_knee"], "L": _J["left_knee"]}
_SHANK = {"R": _J["right_ankle"], "L": _J["left_ankle"]}
_FOOT = {"R": _J["right_foot"], "L": _J["left_foot"]}

# Kinect reports no orientation for the end joints (head, feet, hand tips, thumbs): all four
# quaternion values are 0 in the real files. Others point along the bone to this "primary" child.
_PRIMARY_CHILD = {
    "spine_base": "spine_mid",
    "spine_mid": "spine_shoulder",
    "spine_shoulder": "neck",
    "neck": "head",
    "left_shoulder": "left_elbow",
    "left_elbow": "left_wrist",
    "left_wrist": "left_hand",
    "left_hand": "left_hand_tip",
    "right_shoulder": "right_elbow",
    "right_elbow": "right_wrist",
    "right_wrist": "right_hand",
    "right_hand": "right_hand_tip",
    "left_hip": "left_knee",
    "left_knee": "left_ankle",
    "left_ankle": "left_foot",
    "right_hip": "right_knee",
    "right_knee": "right_ankle",
    "right_ankle": "right_foot",
}
_ORIENTED = np.array([_J[n] for n in _PRIMARY_CHILD], dtype=np.intp)
_ORIENT_CHILD = np.array([_J[c] for c in _PRIMARY_CHILD.values()], dtype=np.intp)
_HAND_JOINTS = np.array(
    [_J[n] for n in ("left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb", "left_hand", "right_hand")],
    dtype=np.intp,
)


def _topological_order(parents: np.ndarray) -> list[int]:
    order: list[int] = []
    placed = set()
    while len(order) < len(parents):
        for j, p in enumerate(parents):
            if j not in placed and (p == j or p in placed):
                order.append(j)
                placed.add(j)
    return order


_FK_ORDER = _topological_order(_PARENTS)

# Rest pose of a 1.70 m person (metres; body frame: x = the person's right, y = up, z = backwards,
# i.e. the person looks towards -z). Left joints mirror the right ones. Kinect's "spine_base" is the
# hip centre, the root of the tree.
_REST_RIGHT_AND_CENTRE = {
    "spine_base": (0.0, 0.0, 0.0),
    "spine_mid": (0.0, 0.26, 0.01),
    "spine_shoulder": (0.0, 0.50, 0.0),
    "neck": (0.0, 0.57, 0.0),
    "head": (0.0, 0.70, -0.01),
    "right_shoulder": (0.17, 0.47, 0.0),
    "right_elbow": (0.20, 0.19, 0.01),
    "right_wrist": (0.21, -0.06, -0.01),
    "right_hand": (0.21, -0.13, -0.01),
    "right_hand_tip": (0.21, -0.20, -0.01),
    "right_thumb": (0.18, -0.15, -0.04),
    "right_hip": (0.08, -0.03, 0.0),
    "right_knee": (0.09, -0.45, -0.01),
    "right_ankle": (0.09, -0.85, 0.01),
    "right_foot": (0.10, -0.90, -0.09),
}
_REF_HEIGHT = 1.70
#: height of the ankle joint above the floor for the reference person
_ANKLE_HEIGHT = 0.07

# Face keypoints for the OpenPose-18 projection, in the head joint's frame (reference person).
_FACE_OFFSETS = np.array(
    [
        (0.0, -0.01, -0.10),  # nose
        (0.035, 0.025, -0.085),  # right eye
        (-0.035, 0.025, -0.085),  # left eye
        (0.075, 0.0, -0.01),  # right ear
        (-0.075, 0.0, -0.01),  # left ear
    ]
)


def _rest_pose() -> np.ndarray:
    pos = np.zeros((NTU25.num_joints, 3))
    for name, xyz in _REST_RIGHT_AND_CENTRE.items():
        pos[_J[name]] = xyz
        if name.startswith("right_"):
            pos[_J["left_" + name[len("right_") :]]] = (-xyz[0], xyz[1], xyz[2])
    return pos


_REST = _rest_pose()


# --------------------------------------------------------------------------------------------------
# Camera geometry
# --------------------------------------------------------------------------------------------------


def _ry_matrix(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def camera_rotation(camera: int) -> np.ndarray:
    """Rotation taking world coordinates (camera 2's frame) to camera ``camera``'s frame.

    Camera ``c`` sits on a horizontal circle of radius ``D`` around the pivot ``p = (0, 0, D)``
    (a point ``D`` metres straight ahead of camera 2, at camera height), rotated by
    ``SYNTHETIC_CAMERA_ANGLES[c]`` degrees about the vertical axis, and looks at the pivot. With
    ``R_c = camera_rotation(c)`` a world point ``X`` has camera coordinates ``R_c @ (X - p) + p``
    (the pivot has the same coordinates in every camera). Camera 1 (-45 degrees) stands on the +x
    side of camera 2, camera 3 (+45) on the -x side.
    """
    if camera not in SYNTHETIC_CAMERA_ANGLES:
        raise ValueError(f"unknown synthetic camera {camera}; known: {sorted(SYNTHETIC_CAMERA_ANGLES)}")
    # the camera's axes in world coordinates are the columns of Ry(angle); world->camera is its transpose
    return _ry_matrix(np.deg2rad(SYNTHETIC_CAMERA_ANGLES[camera])).T


def camera_center(camera: int, distance: float) -> np.ndarray:
    """Optical centre of camera ``camera`` in world (camera 2) coordinates, for pivot distance D."""
    pivot = np.array([0.0, 0.0, distance])
    return pivot - camera_rotation(camera).T @ pivot


def view_transform(src_camera: int, dst_camera: int, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """``(R, t)`` with ``X_dst = R @ X_src + t`` between two synthetic cameras of one setup."""
    pivot = np.array([0.0, 0.0, distance])
    R = camera_rotation(dst_camera) @ camera_rotation(src_camera).T
    return R, pivot - R @ pivot


# --------------------------------------------------------------------------------------------------
# Rotations, envelopes, forward kinematics (vectorised over frames)
# --------------------------------------------------------------------------------------------------


def _rx(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _plateau(u: np.ndarray, a: float, b: float, ramp: float = 0.12) -> np.ndarray:
    """0 before ``a``, smoothly 1 between ``a + ramp`` and ``b - ramp``, 0 after ``b``."""
    return _smoothstep((u - a) / ramp) * _smoothstep((b - u) / ramp)


def _bump(u: np.ndarray, a: float, b: float) -> np.ndarray:
    """Raised cosine on ``[a, b]``: 0 outside, 1 at the centre, smooth at both ends."""
    x = (u - a) / max(b - a, 1e-6)
    return np.where((x > 0.0) & (x < 1.0), 0.5 - 0.5 * np.cos(2.0 * np.pi * x), 0.0)


def _bumps(u: np.ndarray, a: float, b: float, n: int) -> np.ndarray:
    edges = np.linspace(a, b, n + 1)
    return sum(_bump(u, edges[i], edges[i + 1]) for i in range(n))


def _forward_kinematics(
    offsets: np.ndarray, local: Mapping[int, np.ndarray], root: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions (T, V, 3) and global rotations (T, V, 3, 3) from bone offsets and rotations."""
    T = root.shape[0]
    V = offsets.shape[0]
    G = np.empty((T, V, 3, 3))
    pos = np.zeros((T, V, 3))
    for j in _FK_ORDER:
        p = int(_PARENTS[j])
        if p == j:
            G[:, j] = root @ local[j] if j in local else root
            continue
        G[:, j] = G[:, p] @ local[j] if j in local else G[:, p]
        pos[:, j] = pos[:, p] + G[:, j] @ offsets[j]
    return pos, G


# --------------------------------------------------------------------------------------------------
# Performers and motions
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    """A performer's skeleton: height and bone offsets (body frame, metres)."""

    height: float
    offsets: np.ndarray  # (V, 3): rest position of j minus rest position of parent(j)
    hip_height: float  # spine_base above the floor in the rest pose
    thigh: float
    shank: float


def _performer_body(seed: int, performer: int) -> _Body:
    """A performer's size is fixed by (seed, performer) so cross-subject splits see stable people."""
    rng = np.random.default_rng([seed, 0x5EED, performer])
    height = float(rng.uniform(1.5, 1.9))
    scale = height / _REF_HEIGHT
    arm, leg, width = rng.uniform(0.96, 1.04), rng.uniform(0.96, 1.04), rng.uniform(0.92, 1.08)
    rest = _REST * scale
    offsets = rest - rest[_PARENTS]
    for name in ("shoulder", "hip"):
        for side in ("left_", "right_"):
            offsets[_J[side + name], 0] *= width
    arm_bones = [_J[s + n] for s in ("left_", "right_") for n in ("elbow", "wrist", "hand", "hand_tip", "thumb")]
    leg_bones = [_J[s + n] for s in ("left_", "right_") for n in ("knee", "ankle", "foot")]
    offsets[arm_bones] *= arm
    offsets[leg_bones] *= leg
    thigh = float(np.linalg.norm(offsets[_J["right_knee"]]))
    shank = float(np.linalg.norm(offsets[_J["right_ankle"]]))
    hip_height = float(
        -(offsets[_J["right_hip"], 1] + offsets[_J["right_knee"], 1] + offsets[_J["right_ankle"], 1])
        + _ANKLE_HEIGHT * scale
    )
    return _Body(height, offsets, hip_height, thigh, shank)


@dataclass
class _Timing:
    """Per-recording timing shared by both people of an interaction."""

    speed: float
    amp: float
    phase: float
    a: float  # start of the action (normalised clip time)
    b: float  # end of the action
    reps: int
    sign: float  # e.g. turning direction


@dataclass
class _Motion:
    local: dict[int, np.ndarray] = field(default_factory=dict)
    yaw: np.ndarray | None = None  # extra yaw about the vertical axis (T,)
    offset: np.ndarray | None = None  # root translation in the body frame (T, 3)
    fists: bool = False

    def rot(self, joint: int, R: np.ndarray) -> None:
        self.local[joint] = self.local[joint] @ R if joint in self.local else R


def _draw_timing(rng: np.random.Generator) -> _Timing:
    speed = float(rng.uniform(0.75, 1.35))
    amp = float(rng.uniform(0.8, 1.15))
    phase = float(rng.uniform(0.0, 2.0 * np.pi))
    width = float(np.clip(0.65 / speed, 0.4, 0.85))
    centre = float(rng.uniform(0.45, 0.55))
    a, b = max(0.03, centre - width / 2), min(0.97, centre + width / 2)
    reps = int(rng.integers(1, 3))
    sign = float(rng.choice([-1.0, 1.0]))
    return _Timing(speed, amp, phase, a, b, reps, sign)


def _legs_flex(m: _Motion, k: np.ndarray, body: _Body) -> np.ndarray:
    """Bend both legs by hip angle k (knee 2k, ankle k): feet stay flat, returns the hip drop (T,)."""
    for s in ("R", "L"):
        m.rot(_THIGH[s], _rx(k))
        m.rot(_SHANK[s], _rx(-2.0 * k))
        m.rot(_FOOT[s], _rx(k))
    return (body.thigh + body.shank) * (1.0 - np.cos(k))


def _act_wave(side: str) -> Callable[..., _Motion]:
    sign = 1.0 if side == "R" else -1.0

    def act(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
        m = _Motion()
        env = _plateau(u, tm.a - 0.1, tm.b + 0.1, 0.15)
        osc = np.sin(2.0 * np.pi * 1.8 * tm.speed * t + tm.phase)
        m.rot(_UPPER_ARM[side], _rz(sign * np.deg2rad(100.0) * tm.amp * env))
        m.rot(_FOREARM[side], _rz(sign * env * (np.deg2rad(70.0) + np.deg2rad(28.0) * tm.amp * osc)))
        m.rot(_HAND[side], _rz(sign * np.deg2rad(12.0) * env * osc))
        return m

    return act


def _act_raise(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion()
    env = _bumps(u, tm.a, tm.b, tm.reps)
    angle = np.deg2rad(165.0) * min(tm.amp, 1.05) * env
    m.rot(_UPPER_ARM["R"], _rx(angle) @ _rz(np.deg2rad(10.0) * env))
    m.rot(_UPPER_ARM["L"], _rx(angle) @ _rz(-np.deg2rad(10.0) * env))
    return m


def _act_squat(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion()
    k = np.deg2rad(75.0) * min(tm.amp, 1.1) * _bumps(u, tm.a, tm.b, tm.reps)
    drop = _legs_flex(m, k, body)
    m.rot(_TRUNK, _rx(-0.5 * k))
    for s in ("R", "L"):  # arms reach forward for balance (on top of undoing the trunk lean)
        m.rot(_UPPER_ARM[s], _rx(1.5 * k))
    m.offset = np.stack([np.zeros_like(u), -drop, np.zeros_like(u)], -1)
    return m


def _act_kick(side: str) -> Callable[..., _Motion]:
    def act(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
        m = _Motion()
        env = _bump(u, tm.a, tm.b)
        wind_up = _bump(u, tm.a, tm.a + 0.55 * (tm.b - tm.a))
        m.rot(_THIGH[side], _rx(np.deg2rad(80.0) * tm.amp * env))
        m.rot(_SHANK[side], _rx(-np.deg2rad(70.0) * wind_up))
        m.rot(_TRUNK, _rx(np.deg2rad(10.0) * env))
        other = "L" if side == "R" else "R"
        m.rot(_UPPER_ARM[other], _rx(np.deg2rad(25.0) * env))
        return m

    return act


def _act_punch(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion(fists=True)
    guard = _plateau(u, tm.a - 0.15, tm.b + 0.15, 0.12)
    punches = _bumps(u, tm.a, tm.b, tm.reps + 1)
    m.rot(_UPPER_ARM["R"], _rx(guard * np.deg2rad(30.0) + np.deg2rad(55.0) * tm.amp * punches))
    m.rot(_FOREARM["R"], _rx(guard * np.deg2rad(100.0) * (1.0 - punches)))
    m.rot(_UPPER_ARM["L"], _rx(guard * np.deg2rad(30.0)))
    m.rot(_FOREARM["L"], _rx(guard * np.deg2rad(100.0)))
    m.rot(_TRUNK, _ry(np.deg2rad(15.0) * punches))
    return m


def _act_bow(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion()
    env = _bump(u, tm.a, tm.b)
    angle = np.deg2rad(55.0) * tm.amp * env
    m.rot(_TRUNK, _rx(-angle))
    m.rot(_HEAD, _rx(-0.3 * angle))
    for s in ("R", "L"):  # the arms keep hanging down while the trunk bends
        m.rot(_UPPER_ARM[s], _rx(angle))
    m.offset = np.stack([np.zeros_like(u), np.zeros_like(u), 0.06 * tm.amp * env], -1)
    return m


def _act_jump(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion()
    edges = np.linspace(tm.a, tm.b, tm.reps + 1)
    crouch = np.zeros_like(u)
    flight = np.zeros_like(u)
    for i in range(tm.reps):
        a, b = edges[i], edges[i + 1]
        c, w = (a + b) / 2.0, b - a
        crouch += _bump(u, a, c - w / 8.0) + _bump(u, c + w / 8.0, b)
        flight += _bump(u, c - w / 6.0, c + w / 6.0)
    drop = _legs_flex(m, np.deg2rad(45.0) * crouch, body)
    lift = (0.12 + 0.13 * (tm.amp - 0.8) / 0.35) * flight
    for s in ("R", "L"):
        m.rot(_UPPER_ARM[s], _rx(np.deg2rad(120.0) * flight + np.deg2rad(-25.0) * crouch))
    m.offset = np.stack([np.zeros_like(u), lift - drop, np.zeros_like(u)], -1)
    return m


def _act_turn(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion()
    m.yaw = tm.sign * np.pi * _smoothstep((u - tm.a) / (tm.b - tm.a))
    window = _plateau(u, tm.a, tm.b, 0.08)
    step = 2.0 * np.pi * 1.5 * tm.speed * t
    for s, shift in (("R", 0.0), ("L", np.pi)):
        lift = np.maximum(0.0, np.sin(step + shift)) * window
        m.rot(_THIGH[s], _rx(np.deg2rad(25.0) * lift))
        m.rot(_SHANK[s], _rx(-np.deg2rad(40.0) * lift))
    return m


def _act_clap(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion()
    env = _plateau(u, tm.a - 0.1, tm.b + 0.1, 0.12)
    gamma = env * (np.deg2rad(22.0) + np.deg2rad(18.0) * tm.amp * np.sin(2.0 * np.pi * 2.0 * tm.speed * t + tm.phase))
    for s, sign in (("R", 1.0), ("L", -1.0)):
        m.rot(_UPPER_ARM[s], _ry(sign * gamma) @ _rx(np.deg2rad(55.0) * env))
        m.rot(_FOREARM[s], _rx(np.deg2rad(60.0) * env))
    return m


def _act_handshake(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion()
    env = _plateau(u, tm.a - 0.05, tm.b + 0.05, 0.15)
    shake = np.sin(2.0 * np.pi * 2.5 * tm.speed * t + tm.phase)
    m.rot(_UPPER_ARM["R"], _ry(np.deg2rad(22.0) * env) @ _rx(np.deg2rad(45.0) * env))
    m.rot(_FOREARM["R"], _rx(env * (np.deg2rad(40.0) + np.deg2rad(8.0) * tm.amp * shake)))
    approach = 0.12 * _smoothstep(u / max(tm.a, 0.05))
    m.offset = np.stack([np.zeros_like(u), np.zeros_like(u), -approach], -1)
    return m


def _act_push(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion()
    mid = (tm.a + tm.b) / 2.0
    pulse = _bump(u, tm.a, tm.b)
    z = np.zeros_like(u)
    if role == 0:  # the pusher steps in and extends both arms
        for s in ("R", "L"):
            m.rot(_UPPER_ARM[s], _rx(np.deg2rad(80.0) * pulse))
            m.rot(_FOREARM[s], _rx(np.deg2rad(50.0) * _bump(u, tm.a - 0.1, mid)))
        m.rot(_TRUNK, _rx(-np.deg2rad(15.0) * pulse))
        m.offset = np.stack([z, z, -0.25 * _smoothstep((u - tm.a) / (mid - tm.a))], -1)
    else:  # the pushed person is displaced backwards and leans back
        back = _smoothstep((u - mid) / max(tm.b - mid, 1e-3))
        m.rot(_TRUNK, _rx(np.deg2rad(18.0) * _bump(u, mid, min(tm.b + 0.1, 1.0))))
        for s in ("R", "L"):
            m.rot(_UPPER_ARM[s], _rx(np.deg2rad(30.0) * _bump(u, mid, tm.b)))
        m.offset = np.stack([z, z, 0.35 * tm.amp * back], -1)
    return m


def _act_high_five(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    m = _Motion()
    env = _bump(u, tm.a, tm.b)
    m.rot(_UPPER_ARM["R"], _ry(np.deg2rad(20.0) * env) @ _rx(np.deg2rad(150.0) * min(tm.amp, 1.1) * env))
    m.rot(_FOREARM["R"], _rx(np.deg2rad(20.0) * env))
    approach = 0.15 * _smoothstep(u / max(tm.a, 0.05))
    m.offset = np.stack([np.zeros_like(u), np.zeros_like(u), -approach], -1)
    return m


def _act_idle(t: np.ndarray, u: np.ndarray, tm: _Timing, body: _Body, role: int) -> _Motion:
    return _Motion()


_ACTION_FUNCS: dict[str, Callable[..., _Motion]] = {
    "wave right hand": _act_wave("R"),
    "wave left hand": _act_wave("L"),
    "raise both arms": _act_raise,
    "squat": _act_squat,
    "kick right": _act_kick("R"),
    "punch right": _act_punch,
    "bow": _act_bow,
    "jump": _act_jump,
    "handshake": _act_handshake,
    "push": _act_push,
    "kick left": _act_kick("L"),
    "turn around": _act_turn,
    "clap": _act_clap,
    "high five": _act_high_five,
    "idle": _act_idle,
}
#: distance between the two people of an interaction at the start (m), before they approach
_PAIR_DISTANCE = {"handshake": (1.2, 1.35), "push": (0.95, 1.1), "high five": (1.0, 1.2)}


def _idle_sway(m: _Motion, t: np.ndarray, rng: np.random.Generator) -> None:
    """Small low-frequency movements every standing person makes (trunk sway, head, arms)."""
    ph = rng.uniform(0.0, 2.0 * np.pi, size=8)
    fr = rng.uniform(0.15, 0.45, size=8)
    w = 2.0 * np.pi * t
    m.rot(_TRUNK, _rz(np.deg2rad(2.0) * np.sin(w * fr[0] + ph[0])) @ _rx(np.deg2rad(2.0) * np.sin(w * fr[1] + ph[1])))
    m.rot(_HEAD, _ry(np.deg2rad(5.0) * np.sin(w * fr[2] + ph[2])))
    for i, s in enumerate(("R", "L")):
        m.rot(_UPPER_ARM[s], _rx(np.deg2rad(4.0) * np.sin(w * fr[3 + i] + ph[3 + i])))
        m.rot(_FOREARM[s], _rx(np.deg2rad(8.0) + np.deg2rad(4.0) * np.sin(w * fr[5 + i] + ph[5 + i])))


@dataclass
class _PersonTrack:
    """A person's motion over the master timeline, in world (or camera) coordinates."""

    pos: np.ndarray  # (T, 25, 3)
    yaw: np.ndarray  # (T,) body facing angle about the vertical axis (0 = facing -z)
    face: np.ndarray  # (T, 5, 3) nose, eyes, ears (for the 2-D projection)
    fists: bool


def _simulate_person(
    action: str, role: int, body: _Body, T: int, tm: _Timing, rng: np.random.Generator, facing: float, base: np.ndarray
) -> _PersonTrack:
    """Motion of one person: body-frame forward kinematics, then facing rotation and placement.

    ``facing`` (rad) is the yaw of the person's forward direction (0 = looking towards -z, i.e. at
    a camera at the origin); ``base`` is the floor-level point under the hips at rest.
    """
    t = np.arange(T) / FPS
    u = np.arange(T) / max(T - 1, 1)
    m = _ACTION_FUNCS[action](t, u, tm, body, role)
    _idle_sway(m, t, rng)
    yaw = facing + (m.yaw if m.yaw is not None else np.zeros(T))
    root = _ry(yaw)
    pos, G = _forward_kinematics(body.offsets, m.local, root)
    offset = np.zeros((T, 3)) if m.offset is None else m.offset
    # the body-frame root translation turns with the (static) facing only, not with a turn in progress
    shift = offset @ _ry_matrix(facing).T
    origin = base + np.array([0.0, body.hip_height, 0.0])
    pos = pos + (origin + shift)[:, None, :]
    face = pos[:, _HEAD][:, None, :] + np.einsum("tij,fj->tfi", G[:, _HEAD], _FACE_OFFSETS * body.height / _REF_HEIGHT)
    return _PersonTrack(pos, yaw, face, m.fists)


def _simulate_scene(
    action: str, T: int, rng: np.random.Generator, bodies: Sequence[_Body], facing: float, centre: np.ndarray
) -> list[_PersonTrack]:
    """All people of one recording. Interactions put two people facing each other across ``centre``."""
    tm = _draw_timing(rng)
    people = next(a.people for a in SYNTHETIC_ACTIONS if a.name == action) if action != "idle" else 1
    if people == 1:
        return [_simulate_person(action, 0, bodies[0], T, tm, rng, facing, centre)]
    lo, hi = _PAIR_DISTANCE.get(action, (1.0, 1.2))
    d = float(rng.uniform(lo, hi))
    axis = _ry_matrix(facing) @ np.array([1.0, 0.0, 0.0])  # perpendicular to the facing direction
    tracks = []
    for role, (side, turn) in enumerate(((-1.0, -np.pi / 2.0), (1.0, np.pi / 2.0))):
        base = centre + side * d / 2.0 * axis
        tracks.append(_simulate_person(action, role, bodies[role], T, tm, rng, facing + turn, base))
    return tracks


# --------------------------------------------------------------------------------------------------
# NTU .skeleton writer
# --------------------------------------------------------------------------------------------------

_JOINT_LINE = "%.7G " * 11 + "%d\n"
_JOINT_BLOCK = "25\n" + _JOINT_LINE * 25


def _body_format(body_id: int) -> str:
    # bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence handRightState
    # isRestricted leanX leanY trackingState, then the joint count and 25 joint lines
    return f"{body_id} %d %d %d %d %d %d %.7G %.7G %d\n" + _JOINT_BLOCK


def _quaternions(xyz: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z) per joint: the bone direction to the primary child, plus the
    body's yaw as twist; zeros for the end joints, as Kinect writes them. xyz (T, V, 3), yaw (T,)."""
    T, V, _ = xyz.shape
    q = np.zeros((T, V, 4))
    d = xyz[:, _ORIENT_CHILD] - xyz[:, _ORIENTED]
    d /= np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
    # shortest arc from +y to d: (1 + d_y, d_z, 0, -d_x), normalised; antiparallel -> 180 deg about x
    arc = np.stack([1.0 + d[..., 1], d[..., 2], np.zeros_like(d[..., 0]), -d[..., 0]], -1)
    n = np.linalg.norm(arc, axis=-1, keepdims=True)
    arc = np.where(n > 1e-9, arc / np.maximum(n, 1e-12), np.array([0.0, 1.0, 0.0, 0.0]))
    half = (yaw / 2.0)[:, None]
    tw, ty = np.cos(half), np.sin(half)  # twist quaternion (cos, 0, sin, 0)
    w1, x1, y1, z1 = np.moveaxis(arc, -1, 0)
    q[:, _ORIENTED] = np.stack([w1 * tw - y1 * ty, x1 * tw - z1 * ty, w1 * ty + y1 * tw, z1 * tw + x1 * ty], -1)
    return q


def _project(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth (512x424) and colour (1920x1080) pixel coordinates of camera-frame points (..., 3)."""
    z = np.maximum(xyz[..., 2], 0.05)
    fx, fy, cx, cy = DEPTH_INTRINSICS
    depth = np.stack([cx + fx * xyz[..., 0] / z, cy - fy * xyz[..., 1] / z], -1)
    fx, fy, cx, cy = COLOR_INTRINSICS
    color = np.stack([cx + fx * (xyz[..., 0] + COLOR_BASELINE_X) / z, cy - fy * xyz[..., 1] / z], -1)
    return depth, color


def _runs(rng: np.random.Generator, shape: tuple[int, ...], rate: float | np.ndarray, length: int = 4) -> np.ndarray:
    """Boolean mask along axis 0 made of runs of ``length`` frames covering about ``rate`` of it."""
    starts = rng.random(shape) < np.asarray(rate) / length
    out = starts.copy()
    for k in range(1, length):
        out[k:] |= starts[:-k]
    return out


def _jitter_factors() -> np.ndarray:
    """Frame-to-frame jitter per joint, relative to ``noise_std``: the real files show about 1 mm
    per frame on the torso, ~1 cm at the feet and several cm at hand tips and thumbs."""
    f = np.full(NTU25.num_joints, 0.1)
    f[[_J[n] for n in ("left_wrist", "right_wrist", "head", "left_ankle", "right_ankle")]] = 0.2
    f[[_J[n] for n in ("left_hand", "right_hand", "left_foot", "right_foot")]] = 0.3
    f[[_J[n] for n in ("left_hand_tip", "right_hand_tip", "left_thumb", "right_thumb")]] = 1.5
    return f


_JITTER = _jitter_factors()
_SMOOTH_KERNEL = np.exp(-0.5 * (np.arange(-12, 13) / 4.0) ** 2)
_SMOOTH_KERNEL /= np.sqrt((_SMOOTH_KERNEL**2).sum())  # unit gain on the noise's standard deviation


def _sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float, inferred: np.ndarray) -> np.ndarray:
    """Kinect-like position error for (T, V, 3) joints: a slowly drifting offset of std ``sigma``
    (1.5x along depth; smoothed over ~4 frames, so it barely shows frame to frame) plus white jitter
    scaled per joint, doubled on inferred joints (trackingState 1) plus ``sigma / 2`` there."""
    T = shape[0]
    pad = len(_SMOOTH_KERNEL) - 1
    white = rng.normal(0.0, 1.0, size=(T + pad, *shape[1:]))
    smooth = np.zeros(shape)
    for i, k in enumerate(_SMOOTH_KERNEL):
        smooth += k * white[i : i + T]
    depth_scale = np.array([1.0, 1.0, 1.5])
    jitter = _JITTER[None, :, None] * np.where(inferred, 2.0, 1.0)[..., None]
    jitter = jitter + np.where(inferred, 0.5, 0.0)[..., None]
    return sigma * depth_scale * (smooth + jitter * rng.normal(0.0, 1.0, size=shape))


def _hand_states(rng: np.random.Generator, T: int, fists: bool) -> np.ndarray:
    """(T, 4): handLeftConfidence, handLeftState, handRightConfidence, handRightState, piecewise
    constant like Kinect's (states 0 unknown, 1 not tracked, 2 open, 3 closed, 4 lasso)."""
    out = np.empty((T, 4))
    for h in range(2):
        change = rng.random(T) < 0.05
        change[0] = True
        seg = np.cumsum(change) - 1
        n = int(seg[-1]) + 1
        states = rng.choice([0, 1, 2, 3, 4], size=n, p=[0.05, 0.6, 0.17, 0.13, 0.05])
        if fists:
            states = np.where(rng.random(n) < 0.8, 3, states)
        conf = (rng.random(n) < 0.9).astype(float)
        out[:, 2 * h] = conf[seg]
        out[:, 2 * h + 1] = states[seg]
    return out


def _body_rows(
    xyz: np.ndarray, yaw: np.ndarray, rng: np.random.Generator, fists: bool, inferred: np.ndarray
) -> np.ndarray:
    """(T, 309) numbers of one body: 9 info fields after the body ID, then 25 x 12 joint values."""
    T = xyz.shape[0]
    depth, color = _project(xyz)
    quat = _quaternions(xyz, yaw)
    state = np.where(inferred, 1.0, 2.0)
    joints = np.concatenate([xyz, depth, color, quat, state[..., None]], -1)  # (T, 25, 12)
    info = np.zeros((T, 9))
    du, dv = depth[..., 0], depth[..., 1]
    info[:, 0] = (du >= 512).any(1) * 1 + (du < 0).any(1) * 2 + (dv < 0).any(1) * 4 + (dv >= 424).any(1) * 8
    info[:, 1:5] = _hand_states(rng, T, fists)
    trunk = xyz[:, _J["spine_shoulder"]] - xyz[:, _J["spine_base"]]
    trunk /= np.maximum(np.linalg.norm(trunk, axis=-1, keepdims=True), 1e-9)
    right = np.stack([np.cos(yaw), np.zeros_like(yaw), -np.sin(yaw)], -1)
    forward = np.stack([-np.sin(yaw), np.zeros_like(yaw), -np.cos(yaw)], -1)
    info[:, 6] = np.clip((trunk * right).sum(-1), -1.0, 1.0)  # leanX
    info[:, 7] = np.clip((trunk * forward).sum(-1), -1.0, 1.0)  # leanY
    info[:, 8] = 2.0  # body trackingState: tracked
    return np.concatenate([info, joints.reshape(T, -1)], -1)


def _ghost_xyz(kind: str, T: int, rng: np.random.Generator, body: _Body) -> np.ndarray:
    """Camera-frame joints of a spurious body over T frames (the caller picks the frames it shows)."""
    if kind == "flat":
        # a wide, low slab (furniture, a wall edge): x-spread far above 0.8 * y-spread
        centre = np.array([rng.uniform(-1.2, 1.2), rng.uniform(-0.6, 0.2), rng.uniform(2.0, 4.5)])
        half = np.array([rng.uniform(0.45, 0.8), rng.uniform(0.05, 0.18), rng.uniform(0.02, 0.12)])
        shape = centre + rng.uniform(-1.0, 1.0, size=(NTU25.num_joints, 3)) * half
        return shape[None] + rng.normal(0.0, 0.02, size=(T, NTU25.num_joints, 3))
    # an upright, body-shaped detection that does not move like a person
    rest = body.offsets.copy()
    pos = np.zeros_like(rest)
    for j in _FK_ORDER:
        if _PARENTS[j] != j:
            pos[j] = pos[_PARENTS[j]] + rest[j]
    yaw = rng.uniform(-np.pi, np.pi)
    centre = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-0.3, 0.3), rng.uniform(2.0, 4.5)])
    shape = pos @ _ry_matrix(yaw).T + centre + rng.normal(0.0, 0.05, size=pos.shape)
    jitter = 0.05 if kind == "short" else 0.015
    return shape[None] + rng.normal(0.0, jitter, size=(T, NTU25.num_joints, 3))


def _ntu_name(setup: int, camera: int, performer: int, replication: int, action: int) -> str:
    return f"S{setup:03d}C{camera:03d}P{performer:03d}R{replication:03d}A{action:03d}"


@dataclass(frozen=True)
class _Setup:
    distance: float  # pivot distance from every camera (m)
    height: float  # camera height above the floor (m)


def _setup_geometry(seed: int, setup: int) -> _Setup:
    rng = np.random.default_rng([seed, 0x5E7, setup])
    return _Setup(float(rng.uniform(2.6, 3.4)), float(rng.uniform(0.65, 1.0)))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the data set is ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _old_ntu_files(out_dir: Path) -> list[str]:
    try:
        return list(json.loads((out_dir / MANIFEST_NAME).read_text()).get("files", {}))
    except (OSError, ValueError, AttributeError):
        return []


def _old_kinetics_files(out_dir: Path) -> list[str]:
    try:
        rows = (out_dir / KINETICS_MANIFEST_NAME).read_text().splitlines()[1:]
    except OSError:
        return []
    return [row.split("\t", 1)[0] for row in rows if row]


def _remove_stale(out_dir: Path, old: Sequence[str], keep: set[str], subdirs: Sequence[str] = ("",)) -> int:
    """Delete files a previous run listed in its manifest (``old``) that this run does not write.

    Only names our own manifest lists are touched (directly in ``out_dir`` or in one of
    ``subdirs``), so pointing the generator at a folder of real data can never delete it.
    """
    removed = 0
    for rel in old:
        parts = rel.split("/")
        inside = (len(parts) == 1 and "" in subdirs) or (len(parts) == 2 and parts[0] in subdirs)
        if rel not in keep and inside and ".." not in parts and (out_dir / rel).is_file():
            (out_dir / rel).unlink()
            removed += 1
    return removed


def _check_common(num_classes: int, frame_range: tuple[int, int], rates: Mapping[str, float]) -> int:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    lo, hi = frame_range
    if not 16 <= lo <= hi:
        raise ValueError(f"frame_range must satisfy 16 <= low <= high, got {frame_range}")
    for name, value in rates.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    return min(num_classes, len(SYNTHETIC_ACTIONS))


def write_synthetic_ntu(
    out_dir: str | os.PathLike[str],
    *,
    num_classes: int = 10,
    performers: Sequence[int] = (1, 2, 3, 4, 5, 8),
    replications: Sequence[int] = (1, 2),
    cameras: Sequence[int] = (1, 2, 3),
    setups: Sequence[int] = (1,),
    seed: int = 0,
    frame_range: tuple[int, int] = (40, 90),
    spurious_body_rate: float = 0.1,
    dropped_frame_rate: float = 0.02,
    noise_std: float = 0.01,
    inferred_joint_rate: float = 0.05,
    max_view_offset: int = 3,
    crlf_rate: float = 0.0,
    write_manifest: bool = True,
) -> list[Path]:
    """Write NTU RGB+D ``.skeleton`` files for every (setup, camera, performer, replication, class).

    Each (setup, performer, replication, class) is one recording over a master timeline of
    ``frame_range`` frames (inclusive bounds); camera ``c`` writes frames ``[s_c, T - e_c)`` of it
    with ``s_c, e_c`` drawn from ``0..max_view_offset``. Rates: ``spurious_body_rate`` is the
    probability that a file holds one spurious body, ``dropped_frame_rate`` the probability that a
    frame has no body, ``inferred_joint_rate`` the share of joints with trackingState 1 (they get 3x
    position error), ``crlf_rate`` the share of files written with CRLF line endings. ``noise_std`` (metres)
    is the std of the slowly drifting per-coordinate position error (see ``_sensor_noise``), scaled
    per camera by 0.8-1.25 and by 1.5 along depth; frame-to-frame jitter is a joint-dependent
    fraction of it.
    Returns the written paths in a stable order.
    """
    rates = {
        "spurious_body_rate": spurious_body_rate,
        "dropped_frame_rate": dropped_frame_rate,
        "inferred_joint_rate": inferred_joint_rate,
        "crlf_rate": crlf_rate,
    }
    n_cls = _check_common(num_classes, frame_range, rates)
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if not 0 <= max_view_offset <= (frame_range[0] - 10) // 2:
        raise ValueError(f"max_view_offset must be in [0, (frame_range[0] - 10) // 2], got {max_view_offset}")
    unknown = sorted(set(cameras) - set(SYNTHETIC_CAMERA_ANGLES))
    if unknown:
        raise ValueError(f"unknown synthetic cameras {unknown}; known: {sorted(SYNTHETIC_CAMERA_ANGLES)}")
    for name, ids in (("performers", performers), ("replications", replications), ("setups", setups)):
        if not ids or any(not 1 <= int(i) <= 999 for i in ids) or len(set(ids)) != len(ids):
            raise ValueError(f"{name} must be distinct integers in 1..999, got {list(ids)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    files_meta: dict[str, Any] = {}
    setups_meta: dict[str, Any] = {}
    for setup in setups:
        geo = _setup_geometry(seed, setup)
        setups_meta[str(setup)] = {"distance": geo.distance, "camera_height": geo.height}
        for performer in performers:
            for replication in replications:
                for k in range(n_cls):
                    for path, meta in _write_ntu_recording(
                        out,
                        seed=seed,
                        setup=setup,
                        geo=geo,
                        performer=performer,
                        performers=performers,
                        replication=replication,
                        k=k,
                        cameras=cameras,
                        frame_range=frame_range,
                        spurious_body_rate=spurious_body_rate,
                        dropped_frame_rate=dropped_frame_rate,
                        noise_std=noise_std,
                        inferred_joint_rate=inferred_joint_rate,
                        max_view_offset=max_view_offset,
                        crlf_rate=crlf_rate,
                    ):
                        written.append(path)
                        files_meta[path.name] = meta
    _remove_stale(out, _old_ntu_files(out), set(files_meta))
    if not write_manifest:
        (out / MANIFEST_NAME).unlink(missing_ok=True)  # it would describe files no longer there
    else:
        manifest = {
            "generator": "skeleton_attention.skeletons.synthetic.write_synthetic_ntu",
            "params": {
                "num_classes": n_cls,
                "performers": list(performers),
                "replications": list(replications),
                "cameras": list(cameras),
                "setups": list(setups),
                "seed": seed,
                "frame_range": list(frame_range),
                "spurious_body_rate": spurious_body_rate,
                "dropped_frame_rate": dropped_frame_rate,
                "noise_std": noise_std,
                "inferred_joint_rate": inferred_joint_rate,
                "max_view_offset": max_view_offset,
                "crlf_rate": crlf_rate,
            },
            "fps": FPS,
            "camera_angles_deg": {str(c): a for c, a in SYNTHETIC_CAMERA_ANGLES.items()},
            "world_frame": "camera 2; camera c coordinates = R_c (X - p) + p, p = (0, 0, distance)",
            "classes": [
                {"label": i, "action": i + 1, "name": a.name, "people": a.people}
                for i, a in enumerate(SYNTHETIC_ACTIONS[:n_cls])
            ],
            "setups": setups_meta,
            "files": files_meta,
        }
        _atomic_write_bytes(out / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())
    return written


def _write_ntu_recording(
    out: Path,
    *,
    seed: int,
    setup: int,
    geo: _Setup,
    performer: int,
    performers: Sequence[int],
    replication: int,
    k: int,
    cameras: Sequence[int],
    frame_range: tuple[int, int],
    spurious_body_rate: float,
    dropped_frame_rate: float,
    noise_std: float,
    inferred_joint_rate: float,
    max_view_offset: int,
    crlf_rate: float,
) -> list[tuple[Path, dict[str, Any]]]:
    action = SYNTHETIC_ACTIONS[k]
    rng = np.random.default_rng([seed, 0xAC7, setup, performer, replication, k])
    T = int(rng.integers(frame_range[0], frame_range[1] + 1))
    # NTU: each action is done twice, once facing the left and once the right camera; we alternate
    # between facing camera 1 and camera 3, with +-15 degrees of jitter
    facing_cam = 1 if replication % 2 == 1 else 3
    facing = np.deg2rad(SYNTHETIC_CAMERA_ANGLES[facing_cam] + rng.uniform(-15.0, 15.0))
    centre = np.array([rng.uniform(-0.3, 0.3), -geo.height, geo.distance + rng.uniform(-0.3, 0.3)])
    people_ids = [performer]
    if action.people == 2:
        others = [p for p in performers if p != performer]
        people_ids.append(int(others[rng.integers(len(others))]) if others else performer + 100)
    bodies = [_performer_body(seed, p) for p in people_ids]
    tracks = _simulate_scene(action.name, T, rng, bodies, float(facing), centre)
    pivot = np.array([0.0, 0.0, geo.distance])

    results = []
    for cam in cameras:
        crng = np.random.default_rng([seed, 0xCA3, setup, performer, replication, k, cam])
        start = int(crng.integers(0, max_view_offset + 1))
        end = T - int(crng.integers(0, max_view_offset + 1))
        n = end - start
        R = camera_rotation(cam)
        cam_yaw = np.deg2rad(SYNTHETIC_CAMERA_ANGLES[cam])
        sigma = noise_std * crng.uniform(0.8, 1.25)
        # Kinect tracking IDs come from each sensor's own counter; disjoint per-camera ranges make
        # sure the views of one recording never share an ID (at most 1760 above the range start)
        first_id = BODY_ID_BASE + 1000 + 2000 * (cam - 1) + int(crng.integers(0, 1500))
        ids: list[int] = []
        rows: list[np.ndarray] = []
        for track in tracks:
            xyz = (track.pos[start:end] - pivot) @ R.T + pivot
            inferred = _runs(crng, (n, NTU25.num_joints), inferred_joint_rate)
            inferred[:, _HAND_JOINTS] |= _runs(crng, (n, len(_HAND_JOINTS)), 2 * inferred_joint_rate)
            xyz = xyz + _sensor_noise(crng, xyz.shape, sigma, inferred)
            ids.append(first_id + len(ids) * int(crng.integers(1, 60)))
            rows.append(_body_rows(xyz, track.yaw[start:end] - cam_yaw, crng, track.fists, inferred))
        actor_ids = list(ids)
        present = np.ones((len(tracks), n), dtype=bool)
        ghosts: list[dict[str, Any]] = []
        if crng.random() < spurious_body_rate:
            kind = str(crng.choice(["short", "flat", "static"], p=[0.5, 0.3, 0.2]))
            length = int(crng.integers(1, 9)) if kind == "short" else int(crng.integers(int(0.4 * n), n + 1))
            g0 = int(crng.integers(0, n - length + 1))
            gxyz = _ghost_xyz(kind, n, crng, bodies[0])
            g_inferred = crng.random((n, NTU25.num_joints)) < 0.3
            slot = int(crng.integers(0, len(tracks) + 1))
            gid = max(ids) + int(crng.integers(1, 200))
            ids.insert(slot, gid)
            rows.insert(slot, _body_rows(gxyz, np.full(n, crng.uniform(-np.pi, np.pi)), crng, False, g_inferred))
            mask = np.zeros(n, dtype=bool)
            mask[g0 : g0 + length] = True
            present = np.insert(present, slot, mask, axis=0)
            ghosts.append({"id": str(gid), "kind": kind, "first_frame": g0, "last_frame": g0 + length - 1})
        dropped = crng.random(n) < dropped_frame_rate
        if ghosts and not (present[slot] & ~dropped).any():
            dropped[g0] = False  # keep the manifest truthful: a listed ghost shows in some frame
        present &= ~dropped[None, :]
        crlf = bool(crng.random() < crlf_rate)
        text = _format_ntu(ids, np.stack(rows), present)
        if crlf:
            text = text.replace("\n", "\r\n")
        name = _ntu_name(setup, cam, performer, replication, k + 1) + ".skeleton"
        path = out / name
        _atomic_write_bytes(path, text.encode("ascii"))
        results.append(
            (
                path,
                {
                    "label": k,
                    "class": action.name,
                    "camera": cam,
                    "frames": n,
                    "master_frames": T,
                    "master_offset": start,
                    "people": people_ids,
                    "heights": [round(b.height, 4) for b in bodies],
                    "actor_ids": [str(i) for i in actor_ids],
                    "ghosts": ghosts,
                    "dropped_frames": np.flatnonzero(dropped).tolist(),
                    "facing_deg": round(float(np.rad2deg(facing)), 4),
                    "crlf": crlf,
                },
            )
        )
    return results


def _format_ntu(ids: Sequence[int], rows: np.ndarray, present: np.ndarray) -> str:
    """The whole file as one string: a format template per body, filled in a single % operation."""
    body_fmt = [_body_format(i) for i in ids]
    n = present.shape[1]
    parts = [f"{n}\n"]
    for t in range(n):
        who = np.flatnonzero(present[:, t])
        parts.append(f"{len(who)}\n")
        parts.extend(body_fmt[b] for b in who)
    # frame-major, body-minor order, matching the template; +0.0 turns -0.0 into 0 (printed "0")
    values = rows.transpose(1, 0, 2)[present.T] + 0.0
    return "".join(parts) % tuple(values.ravel().tolist())


# --------------------------------------------------------------------------------------------------
# Kinetics-skeleton (ST-GCN JSON) writer
# --------------------------------------------------------------------------------------------------

#: ST-GCN resized Kinetics videos to 340x256 before OpenPose; poses are pixel / size, 3 decimals
_KINETICS_SIZE = (340.0, 256.0)
_OP_FROM_NTU = {  # OpenPose-18 joint -> NTU25 joint (the face points come from the head frame)
    "neck": "spine_shoulder",
    "right_shoulder": "right_shoulder",
    "right_elbow": "right_elbow",
    "right_wrist": "right_wrist",
    "left_shoulder": "left_shoulder",
    "left_elbow": "left_elbow",
    "left_wrist": "left_wrist",
    "right_hip": "right_hip",
    "right_knee": "right_knee",
    "right_ankle": "right_ankle",
    "left_hip": "left_hip",
    "left_knee": "left_knee",
    "left_ankle": "left_ankle",
}
_OP_ORDER = OPENPOSE18.joint_names  # the ST-GCN Kinetics-skeleton joint order
_FACE_INDEX = {"nose": 0, "right_eye": 1, "left_eye": 2, "right_ear": 3, "left_ear": 4}
_PERSON_FMT = '{"pose": [' + ", ".join(["%.3f"] * 36) + '], "score": [' + ", ".join(["%.3f"] * 18) + "]}"
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def _openpose_points(track: _PersonTrack) -> np.ndarray:
    """(T, 18, 3) camera-frame OpenPose-18 keypoints of a person track."""
    cols = []
    for name in _OP_ORDER:
        if name in _FACE_INDEX:
            cols.append(track.face[:, _FACE_INDEX[name]])
        else:
            cols.append(track.pos[:, _J[_OP_FROM_NTU[name]]])
    return np.stack(cols, 1)


def _person_2d(track: _PersonTrack, rng: np.random.Generator, quality: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates (T, 18, 2) and scores (T, 18); undetected joints are 0 and 0."""
    pts = _openpose_points(track)
    z = np.maximum(pts[..., 2], 0.3)
    W, H = _KINETICS_SIZE
    f = W * 1.1
    # an ordinary (unmirrored) video: a person facing the camera shows their right side on the left
    x = (W / 2.0 - f * pts[..., 0] / z) / W
    y = (H / 2.0 - f * pts[..., 1] / z) / H
    xy = np.stack([x, y], -1) + rng.normal(0.0, 0.004, size=(*pts.shape[:-1], 2))
    T = pts.shape[0]
    score = np.clip(quality + rng.normal(0.0, 0.12, size=(T, 18)), 0.05, 0.99)
    visible = rng.random((T, 18)) > 0.06
    visible &= (xy >= 0.0005).all(-1) & (xy < 1.035).all(-1)
    # face points need the face turned towards the camera; each ear needs its side visible
    to_cam = -track.pos[:, _HEAD] / np.linalg.norm(track.pos[:, _HEAD], axis=-1, keepdims=True)
    fwd = np.stack([-np.sin(track.yaw), np.zeros(T), -np.cos(track.yaw)], -1)
    right = np.stack([np.cos(track.yaw), np.zeros(T), -np.sin(track.yaw)], -1)
    facing = (fwd * to_cam).sum(-1)
    side = (right * to_cam).sum(-1)
    for name in ("nose", "right_eye", "left_eye"):
        visible[:, _OP_ORDER.index(name)] &= facing > -0.1
    visible[:, _OP_ORDER.index("right_ear")] &= side > -0.3
    visible[:, _OP_ORDER.index("left_ear")] &= side < 0.3
    xy = np.where(visible[..., None], xy, 0.0)
    score = np.where(visible, score, 0.0)
    return xy, score


def _clip_id(seed: int, index: int) -> str:
    rng = np.random.default_rng([seed, 0x1D, index])
    return "".join(_ID_ALPHABET[rng.integers(0, len(_ID_ALPHABET), size=11)])


def _format_kinetics(
    label: str, label_index: int, people: list[tuple[np.ndarray, np.ndarray, np.ndarray]], order: np.ndarray
) -> str:
    """people: (xy (T,18,2), score (T,18), present (T,)); order (T, P) per-frame listing order."""
    T = order.shape[0]
    frames = []
    values = []
    for t in range(T):
        listed = [p for p in order[t] if people[p][2][t]]
        frames.append(f'{{"frame_index": {t + 1}, "skeleton": [' + ", ".join([_PERSON_FMT] * len(listed)) + "]}")
        for p in listed:
            values.append(people[p][0][t].ravel())
            values.append(people[p][1][t])
    text = '{"data": [' + ", ".join(frames) + "]"
    if values:
        # +0.0 turns -0.0 into 0.0; rounding first keeps "%.3f" away from half-way ties
        text = text % tuple((np.round(np.concatenate(values), 3) + 0.0).tolist())
    return text + ', "label": ' + json.dumps(label) + f', "label_index": {label_index}}}'


def write_synthetic_kinetics(
    out_dir: str | os.PathLike[str],
    *,
    num_clips: int = 200,
    num_classes: int = 10,
    seed: int = 0,
    frame_range: tuple[int, int] = (100, 300),
    val_fraction: float = 0.2,
    extra_people_rate: float = 0.3,
    empty_stretch_rate: float = 0.15,
    dropped_frame_rate: float = 0.02,
    no_skeleton_rate: float = 0.01,
    write_manifest: bool = True,
) -> tuple[list[Path], Path, Path]:
    """Write ST-GCN Kinetics-skeleton clips and their label maps, laid out like the release.

    ``out_dir/kinetics_train/<id>.json`` and ``out_dir/kinetics_val/<id>.json`` hold the clips
    (``{"data": [{"frame_index": 1.., "skeleton": [{"pose": 36, "score": 18}]}], "label", "label_index"}``,
    3 decimals, one line, no trailing newline, as in the real files); ``kinetics_train_label.json``
    and ``kinetics_val_label.json`` map clip id -> ``{"has_skeleton", "label", "label_index"}``.
    Classes are assigned round-robin. ``extra_people_rate``: share of clips with 1-3 bystanders;
    ``empty_stretch_rate``: share of clips where nobody is detected at the start or end;
    ``dropped_frame_rate``: per-frame chance that nobody is detected; ``no_skeleton_rate``: share of
    clips with no detection at all (``has_skeleton: false``). ``write_manifest`` writes
    ``synthetic_clips.tsv`` (path, split, label, frames, most people in a frame, has_skeleton).
    Returns (clip paths, train label map path, val label map path).
    """
    rates = {
        "val_fraction": val_fraction,
        "extra_people_rate": extra_people_rate,
        "empty_stretch_rate": empty_stretch_rate,
        "dropped_frame_rate": dropped_frame_rate,
        "no_skeleton_rate": no_skeleton_rate,
    }
    n_cls = _check_common(num_classes, frame_range, rates)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    out = Path(out_dir)
    splits = {"train": out / "kinetics_train", "val": out / "kinetics_val"}
    for d in splits.values():
        d.mkdir(parents=True, exist_ok=True)
    maps: dict[str, dict[str, dict[str, Any]]] = {"train": {}, "val": {}}
    paths: list[Path] = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i in range(num_clips):
        k = i % n_cls
        clip, retry = _clip_id(seed, i), 0
        while clip in seen:  # 64**11 ids: a clash is astronomically rare, but keep ids unique
            retry += 1
            clip = _clip_id(seed, i + 1_000_003 * retry)
        seen.add(clip)
        rng = np.random.default_rng([seed, 0x4B1, i])
        split = "val" if rng.random() < val_fraction else "train"
        text, has_skeleton, frames, max_people = _kinetics_clip(
            rng,
            seed,
            SYNTHETIC_ACTIONS[k].name,
            k,
            frame_range,
            extra_people_rate,
            empty_stretch_rate,
            dropped_frame_rate,
            no_skeleton_rate,
        )
        path = splits[split] / f"{clip}.json"
        _atomic_write_bytes(path, text.encode("utf-8"))
        paths.append(path)
        maps[split][clip] = {"has_skeleton": has_skeleton, "label": SYNTHETIC_ACTIONS[k].name, "label_index": k}
        rows.append({**maps[split][clip], "frames": frames, "max_people": max_people})
    map_paths = {}
    for split in ("train", "val"):
        map_paths[split] = out / f"kinetics_{split}_label.json"
        entries = dict(sorted(maps[split].items()))
        _atomic_write_bytes(map_paths[split], json.dumps(entries, indent=4).encode("utf-8"))
    rels = [p.relative_to(out).as_posix() for p in paths]
    _remove_stale(out, _old_kinetics_files(out), set(rels), ("kinetics_train", "kinetics_val"))
    if not write_manifest:
        (out / KINETICS_MANIFEST_NAME).unlink(missing_ok=True)
    else:
        lines = ["path\tsplit\tlabel_index\tlabel\tframes\tmax_people\thas_skeleton"]
        lines += [
            f"{rel}\t{rel.split('/')[0][len('kinetics_') :]}\t{r['label_index']}\t{r['label']}\t"
            f"{r['frames']}\t{r['max_people']}\t{str(r['has_skeleton']).lower()}"
            for rel, r in zip(rels, rows, strict=True)
        ]
        _atomic_write_bytes(out / KINETICS_MANIFEST_NAME, ("\n".join(lines) + "\n").encode())
    return paths, map_paths["train"], map_paths["val"]


def _kinetics_clip(
    rng: np.random.Generator,
    seed: int,
    action: str,
    k: int,
    frame_range: tuple[int, int],
    extra_people_rate: float,
    empty_stretch_rate: float,
    dropped_frame_rate: float,
    no_skeleton_rate: float,
) -> tuple[str, bool, int, int]:
    """One clip's JSON text, whether anybody is detected, its frame count and most people in a frame."""
    T = int(rng.integers(frame_range[0], frame_range[1] + 1))
    cam_height = float(rng.uniform(0.9, 1.4))  # roughly chest height, level: people fill the frame
    dist = float(rng.uniform(2.5, 5.0))
    centre = np.array([rng.uniform(-0.8, 0.8), -cam_height, dist])
    facing = float(np.deg2rad(rng.uniform(-70.0, 70.0)))
    # performers of Kinetics clips are anonymous: draw sizes from a pool of ids outside NTU's 1..999
    n_people = SYNTHETIC_ACTIONS[k].people
    bodies = [_performer_body(seed, 1000 + int(rng.integers(0, 10_000))) for _ in range(n_people)]
    tracks = _simulate_scene(action, T, rng, bodies, facing, centre)
    present = [np.ones(T, dtype=bool) for _ in tracks]
    qualities = [float(rng.uniform(0.45, 0.85)) for _ in tracks]
    if rng.random() < extra_people_rate:
        for _ in range(int(rng.integers(1, 4))):
            c = np.array([rng.uniform(-2.5, 2.5), -cam_height, rng.uniform(3.5, 9.0)])
            body = _performer_body(seed, 1000 + int(rng.integers(0, 10_000)))
            tracks += _simulate_scene("idle", T, rng, [body], float(rng.uniform(-np.pi, np.pi)), c)
            a = int(rng.integers(0, T // 2))
            b = int(rng.integers(a + 10, T + 1))
            mask = np.zeros(T, dtype=bool)
            mask[a:b] = True
            present.append(mask)
            qualities.append(float(rng.uniform(0.2, 0.55)))
    everyone = np.ones(T, dtype=bool)
    if rng.random() < empty_stretch_rate:
        n = int(T * rng.uniform(0.1, 0.4))
        if rng.random() < 0.5:
            everyone[:n] = False
        else:
            everyone[T - n :] = False
    everyone &= rng.random(T) >= dropped_frame_rate
    has_skeleton = bool(rng.random() >= no_skeleton_rate)
    if not has_skeleton:
        everyone[:] = False
    people = []
    for track, mask, q in zip(tracks, present, qualities, strict=True):
        xy, score = _person_2d(track, rng, q)
        # a person none of whose joints is inside the frame is not detected in that frame
        people.append((xy, score, mask & everyone & (score > 0).any(1)))
    order = np.argsort(rng.random((T, len(people))), axis=1)  # OpenPose lists people in no set order
    text = _format_kinetics(action, k, people, order)
    per_frame = np.sum([p[2] for p in people], axis=0)
    return text, has_skeleton and bool(per_frame.any()), T, int(per_frame.max())


# --------------------------------------------------------------------------------------------------
# Top level (called by the Kedro node)
# --------------------------------------------------------------------------------------------------


def generate_default_dataset(root: str | os.PathLike[str], params: Mapping[str, Any]) -> dict[str, Any]:
    """Write the embedded data set under ``root`` and return counts.

    ``params``: ``seed`` (default 0, used unless a section sets its own), ``ntu`` (keyword arguments
    of :func:`write_synthetic_ntu`, or ``false`` to skip), ``kinetics`` (keyword arguments of
    :func:`write_synthetic_kinetics`, or ``false`` to skip), ``ntu_dir`` / ``kinetics_dir`` (folder
    names under ``root``, default ``ntu_raw`` / ``kinetics_raw``).
    """
    allowed = {"seed", "ntu", "kinetics", "ntu_dir", "kinetics_dir"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown synthetic data parameters {unknown}; known: {sorted(allowed)}")
    root = Path(root)
    seed = int(params.get("seed", 0))
    result: dict[str, Any] = {"seed": seed}
    ntu = params.get("ntu", {})
    if ntu is not False and ntu is not None:
        kwargs = {"seed": seed, **dict(ntu)}
        for key in ("performers", "replications", "cameras", "setups", "frame_range"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        ntu_dir = root / params.get("ntu_dir", "ntu_raw")
        files = write_synthetic_ntu(ntu_dir, **kwargs)
        result.update(
            {
                "ntu_dir": str(ntu_dir),
                "ntu_files": len(files),
                "ntu_classes": min(int(kwargs.get("num_classes", 10)), len(SYNTHETIC_ACTIONS)),
            }
        )
    kin = params.get("kinetics", {})
    if kin is not False and kin is not None:
        kwargs = {"seed": seed, **dict(kin)}
        if "frame_range" in kwargs:
            kwargs["frame_range"] = tuple(kwargs["frame_range"])
        kin_dir = root / params.get("kinetics_dir", "kinetics_raw")
        clips, train_map, val_map = write_synthetic_kinetics(kin_dir, **kwargs)
        result.update(
            {
                "kinetics_dir": str(kin_dir),
                "kinetics_clips": len(clips),
                "kinetics_train_clips": sum(p.parent.name == "kinetics_train" for p in clips),
                "kinetics_val_clips": sum(p.parent.name == "kinetics_val" for p in clips),
                "kinetics_train_label_map": str(train_map),
                "kinetics_val_label_map": str(val_map),
            }
        )
    return result
