"""Training-time augmentation of one sample (numpy): random rotation, scale, Gaussian noise, and
swapping the bodies of a two-person sample.

All transforms are off unless configured. They run after temporal sampling on every stream of the
sample: the rotation and scale are linear, so the same matrix is applied to joint, bone and motion
streams alike (a rotated skeleton's bones are the rotated bones). Noise is drawn independently per
stream. Missing data stays missing: frames where a body is absent (all its joints zero) stay
exactly zero (presence is decided per body and frame, since a centred skeleton has its centre
joint at the origin), so the frame mask and the prepare pipeline's zero-padding conventions hold.

Coordinates after the project's pre-normalization have the spine along +z (see
``skeletons/normalize.py``), hence ``vertical_axis=2`` by default; raw Kinect camera coordinates
have y up (``vertical_axis=1``). Only the first ``spatial_dims`` channels are transformed, so a
2-D OpenPose layout's score channel is never rotated or noised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """Augmentation settings; every transform is disabled at its default value.

    ``rotation_deg``: maximum absolute angle (degrees) of a random rotation about ``vertical_axis``
    (uniform in ``[-rotation_deg, rotation_deg]``). ``scale``: maximum relative scale change, the
    factor is uniform in ``[1 - scale, 1 + scale]`` (one factor per sample, or per axis with
    ``scale_per_axis``). ``noise_std``: standard deviation of additive Gaussian noise in coordinate
    units (the VA-RNN code uses 0.075 on metre-scale NTU coordinates). ``swap_bodies``: probability
    of reversing the order of the bodies (the M axis) of a sample with two or more, for every stream
    alike: in an interaction data set (SBU, NTU's two-person classes) which person is listed first
    says nothing about who acts, so a model should not learn it.
    """

    rotation_deg: float = 0.0
    vertical_axis: int = 2
    scale: float = 0.0
    scale_per_axis: bool = False
    noise_std: float = 0.0
    spatial_dims: int = 3
    swap_bodies: float = 0.0

    def __post_init__(self) -> None:
        if self.rotation_deg < 0 or self.scale < 0 or self.noise_std < 0:
            raise ValueError("rotation_deg, scale and noise_std must be >= 0")
        if not 0 <= self.scale < 1:
            raise ValueError(f"scale must be in [0, 1), got {self.scale}")
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if not 0 <= self.vertical_axis < 3:
            raise ValueError(f"vertical_axis must be 0, 1 or 2, got {self.vertical_axis}")
        if not 0.0 <= self.swap_bodies <= 1.0:
            raise ValueError(f"swap_bodies is a probability in [0, 1], got {self.swap_bodies}")
        if self.rotation_deg > 0 and self.spatial_dims != 3:
            raise ValueError("a rotation about the vertical axis needs 3-D coordinates (spatial_dims=3)")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Augmentation:
        config = dict(config or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown augmentation settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**config)

    @property
    def enabled(self) -> bool:
        return self.rotation_deg > 0 or self.scale > 0 or self.noise_std > 0 or self.swap_bodies > 0

    def apply(self, streams: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Augment every stream of one sample; returns new arrays (inputs are not modified)."""
        if not self.enabled:
            return dict(streams)
        d = self.spatial_dims
        matrix = np.eye(d, dtype=np.float64)
        if self.rotation_deg > 0:
            angle = np.deg2rad(rng.uniform(-self.rotation_deg, self.rotation_deg))
            matrix = rotation_about_axis(angle, self.vertical_axis) @ matrix
        if self.scale > 0:
            if self.scale_per_axis:
                factors = rng.uniform(1.0 - self.scale, 1.0 + self.scale, size=d)
            else:
                factors = np.full(d, rng.uniform(1.0 - self.scale, 1.0 + self.scale))
            matrix = np.diag(factors) @ matrix
        out = {}
        for name, x in streams.items():
            out[name] = self._apply_one(x, matrix.astype(np.float32), rng)
        # drawn last, and only when enabled, so configurations without it keep their random stream
        if self.swap_bodies > 0 and rng.uniform() < self.swap_bodies:
            out = {name: x[::-1].copy() if x.shape[0] > 1 else x for name, x in out.items()}
        return out

    def _apply_one(self, x: np.ndarray, matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        d = self.spatial_dims
        if x.shape[-1] < d:
            raise ValueError(f"stream has {x.shape[-1]} channels, augmentation needs {d} spatial ones")
        # (M, T, 1, 1): the body is present in the frame. Per body-frame, not per joint, because a
        # centred skeleton has its centre joint exactly at the origin in every frame.
        present = np.any(x != 0, axis=(-2, -1), keepdims=True)
        y = np.array(x, dtype=np.float32, copy=True)
        spatial = y[..., :d] @ matrix.T
        if self.noise_std > 0:
            spatial = spatial + rng.normal(0.0, self.noise_std, size=spatial.shape).astype(np.float32)
        y[..., :d] = np.where(present, spatial, 0.0)
        return y


def rotation_about_axis(angle: float, axis: int) -> np.ndarray:
    """3x3 right-handed rotation matrix by ``angle`` radians about coordinate ``axis`` (0=x, 1=y, 2=z)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m
