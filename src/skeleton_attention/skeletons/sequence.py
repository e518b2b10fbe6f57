"""The in-memory sample every reader produces and every transform consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class SkeletonSequence:
    """One action sample in a common shape.

    ``coords`` is float32 ``(M, T, V, C)``: bodies, frames, joints, channels, in the joint
    order of ``layout`` (see :mod:`skeleton_attention.skeletons.layouts`). Missing bodies or
    frames are zeros. ``meta`` holds the dataset's identity fields (setup, camera, performer,
    replication, action, subject, ...); ``label`` is the 0-based class index.
    """

    sample_id: str
    dataset: str
    layout: str
    coords: np.ndarray
    label: int
    label_name: str = ""
    source_file: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def num_bodies(self) -> int:
        return int(self.coords.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.coords.shape[1])

    @property
    def num_joints(self) -> int:
        return int(self.coords.shape[2])

    @property
    def num_channels(self) -> int:
        return int(self.coords.shape[3])

    def with_coords(self, coords: np.ndarray) -> SkeletonSequence:
        return replace(self, coords=np.ascontiguousarray(coords, dtype=np.float32))
