"""MANs: Memory Attention Networks (TARM + STCM).

Xie, Li, Zhang, Chen, Han, Zou, Liu, "Memory Attention Networks for Skeleton-based Action
Recognition", IJCAI 2018 (text in ``shared/papers/mans_memory_attention.txt``).

A sample is the ``T x N x 3`` image ``O = {X, Y, Z}`` (T frames, N = bodies x joints columns, one
channel per coordinate). Each coordinate matrix goes through its own Temporal Attention
Recalibration Module (TARM, Sec. 2.1):

* ``X <- FC(X)`` (N -> K per frame, Fig. 2 top);
* memory ``F_M``: a bidirectional GRU of K units whose two directions are summed,
  ``m(t) = GRU_fwd(x(t)) + GRU_bwd(x(t))`` (eq. 4-5);
* attention ``F_A``: the frame means ``X_p`` (eq. 6), copied K times (eq. 7), then
  ``sigmoid(W2 ReLU(W1 X))`` with ``W1`` (T/alpha x T) and ``W2`` (T x T/alpha) acting across frames
  (eq. 8, alpha = 16). The K copies are identical, so ``F_A`` is one weight per frame broadcast
  over the K units; it is computed once (exactly eq. 8's result);
* ``F(X) = FC(F_M * F_A)`` (eq. 2, then K -> N) and the residual ``X~ = X + F(X)`` (eq. 1).

The Spatio-Temporal Convolution Module (STCM, Sec. 2.2) is a CNN on the recalibrated image
``O~`` resized to the chosen scale (Sec. 3.1: 50 x 50 with K = 64 for MANs-9/-33/-61, 224 x 224 with
K = 128 for ResNet-18 / DenseNet-161, :mod:`skeleton_attention.models.backbones`). The resize is a
bilinear interpolation inside the model, so the loss reaches the TARMs through it (end-to-end
training). ``tarm_on="image"`` instead resizes the input to the image size first and runs the TARMs
at that size (how the paper's Table 5 counts parameters); the default runs them on the sampled
frames and the real columns.

The batch is the standard ``(N, M, T, V, C)`` one with a fixed T (``InputSpec(fixed_length=True)``):
the image is built in :meth:`MANs.forward`, so no special collate is needed and the data side
(sampling, augmentation, masks) stays the shared one. Ablations (Table 4) are the ``variant``:
``stcm_only`` (A), ``no_attention`` (B), ``sta_lstm_attention`` (C: STA-LSTM's temporal attention
in place of ``F_A``), ``mans`` (the full model). Choices the paper leaves open are listed in
``docs/models/mans.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skeleton_attention.models.backbones import STCM_SCALES, build_stcm
from skeleton_attention.models.base import (
    DataDescription,
    InputSpec,
    ModelOutput,
    SkeletonModel,
    check_sequence_batch,
    check_variant,
    reject_dimension_kwargs,
)
from skeleton_attention.models.registry import register_model
from skeleton_attention.models.sta_lstm import TemporalAttention

AttentionKind = Literal["tarm", "none", "sta_lstm"]
ATTENTION_KINDS = ("tarm", "none", "sta_lstm")

#: Table 4 settings as constructor arguments
VARIANTS: dict[str, dict[str, Any]] = {
    "mans": {"use_tarm": True, "attention": "tarm"},
    "stcm_only": {"use_tarm": False, "attention": "none"},  # (A) the CNN on the original image
    "no_attention": {"use_tarm": True, "attention": "none"},  # (B) F(X) = F_M, no F_A
    "sta_lstm_attention": {"use_tarm": True, "attention": "sta_lstm"},  # (C) Song et al.'s temporal attention
}

#: Sec. 3.1: the two input scales, image side and BiGRU units K
SCALES: dict[str, dict[str, int]] = {
    "small": {"image_size": 50, "hidden_size": 64},
    "large": {"image_size": 224, "hidden_size": 128},
}


class FrameAttention(nn.Module):
    """The attention branch of TARM (eq. 6-8): frame means -> FC(T -> T/alpha) -> ReLU ->
    FC(T/alpha -> T) -> sigmoid; one weight in (0, 1) per frame."""

    def __init__(self, num_frames: int, alpha: int = 16) -> None:
        super().__init__()
        reduced = max(1, num_frames // alpha)
        self.w1 = nn.Linear(num_frames, reduced)  # W1 (with its bias)
        self.w2 = nn.Linear(reduced, num_frames)  # W2 (with its bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, T, K) -> ``F_A`` (B, T)."""
        pooled = x.mean(dim=-1)  # eq. 6: X_p, one mean per frame; eq. 7's K copies give equal columns
        return torch.sigmoid(self.w2(torch.relu(self.w1(pooled))))  # eq. 8


class TARM(nn.Module):
    """Temporal Attention Recalibration Module for one coordinate matrix (T x N -> T x N).

    ``attention``: ``"tarm"`` (eq. 6-8), ``"none"`` (F_A = 1) or ``"sta_lstm"`` (Song et al.'s
    frame gate, eq. 6 of STA-LSTM: an LSTM of K units and a ReLU, read from the FC features).
    ``dropout`` applies to the GRU input (the authors' Keras code uses dropout 0.5 there and a
    recurrent dropout that torch's GRU does not have).
    """

    def __init__(
        self,
        num_points: int,
        num_frames: int,
        hidden_size: int,
        *,
        alpha: int = 16,
        attention: AttentionKind = "tarm",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        self.fc_in = nn.Linear(num_points, hidden_size)  # X <- FC(X), N -> K
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        for name, param in self.gru.named_parameters():  # orthogonal weights, zero biases (the authors' code)
            if "weight" in name:
                nn.init.orthogonal_(param)
            else:
                nn.init.zeros_(param)
        self.attention_kind = attention
        self.attention: nn.Module | None
        if attention == "tarm":
            self.attention = FrameAttention(num_frames, alpha)
        elif attention == "sta_lstm":
            self.attention = TemporalAttention(hidden_size, hidden_size)
        else:
            self.attention = None
        self.fc_out = nn.Linear(hidden_size, num_points)  # F(X) <- FC(F(X)), K -> N
        self.hidden_size = hidden_size

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``x`` (B, T, N) -> (``X~`` (B, T, N), ``F_A`` (B, T) or None without attention)."""
        h = self.fc_in(x)
        out, _ = self.gru(self.dropout(h))
        memory = out[..., : self.hidden_size] + out[..., self.hidden_size :]  # eq. 4: sum of the directions
        weights = None if self.attention is None else self.attention(h)
        recalibrated = memory if weights is None else memory * weights.unsqueeze(-1)  # eq. 2
        return x + self.fc_out(recalibrated), weights  # eq. 1


class MANs(SkeletonModel):
    """Memory Attention Networks: one TARM per coordinate channel, then a CNN (STCM).

    Args:
        num_classes, num_joints, num_bodies, in_channels: data dimensions; the image has
            N = num_bodies * num_joints columns and one channel per coordinate.
        num_frames: T, the fixed number of sampled frames (rows of the image).
        stcm: ``mans9`` / ``mans33`` / ``mans61`` (Table 2) or ``resnet18`` / ``densenet161``.
        scale: ``small`` (50 x 50, K = 64) or ``large`` (224 x 224, K = 128), Sec. 3.1; default
            from ``stcm`` (MANs-n small, ResNet / DenseNet large).
        image_size, hidden_size: override the scale's image side and BiGRU units K.
        alpha: the reduction ratio of eq. 8 (paper: 16).
        use_tarm: False = STCM only (ablation A).
        attention: ``tarm`` / ``none`` / ``sta_lstm`` (ablations B and C).
        tarm_on: ``sequence`` (TARM on T frames x N columns, then resize) or ``image`` (resize
            first, TARM on image_size x image_size).
        gru_dropout: dropout on the GRU input.
    """

    input_spec: ClassVar[InputSpec] = InputSpec(views="single", max_streams=1, fixed_length=True)
    #: how the attention plot draws this model's maps (base.attention_hints): a curve per coordinate TARM
    attention_kinds: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
        {"frame": {"kind": "frames", "labels": ["x", "y", "z"], "ylabel": "F_A (frame weight)"}}
    )

    def __init__(
        self,
        *,
        num_classes: int,
        num_joints: int,
        num_bodies: int,
        in_channels: int,
        num_frames: int,
        stcm: str = "mans9",
        scale: Literal["small", "large"] | None = None,
        image_size: int | None = None,
        hidden_size: int | None = None,
        alpha: int = 16,
        use_tarm: bool = True,
        attention: AttentionKind = "tarm",
        tarm_on: Literal["sequence", "image"] = "sequence",
        gru_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("num_joints", num_joints),
            ("num_bodies", num_bodies),
            ("in_channels", in_channels),
            ("num_frames", num_frames),
            ("alpha", alpha),
        ):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        scale = scale or STCM_SCALES.get(stcm, "small")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
        if tarm_on not in ("sequence", "image"):
            raise ValueError(f"tarm_on must be 'sequence' or 'image', got {tarm_on!r}")
        if not 0.0 <= gru_dropout < 1.0:
            raise ValueError(f"gru_dropout must be in [0, 1), got {gru_dropout!r}")
        self.image_size = int(image_size or SCALES[scale]["image_size"])
        self.hidden_size = int(hidden_size or SCALES[scale]["hidden_size"])
        if self.image_size < 8 or self.hidden_size < 1:
            raise ValueError(f"image_size must be >= 8 and hidden_size >= 1, got {self.image_size}, {self.hidden_size}")
        self.num_classes, self.num_joints, self.num_bodies = num_classes, num_joints, num_bodies
        self.in_channels, self.num_frames = in_channels, num_frames
        self.num_points = num_bodies * num_joints
        self.tarm_on = tarm_on
        self.scale = scale
        rows, cols = (num_frames, self.num_points) if tarm_on == "sequence" else (self.image_size, self.image_size)
        self.tarms = (
            nn.ModuleList(
                TARM(cols, rows, self.hidden_size, alpha=alpha, attention=attention, dropout=gru_dropout)
                for _ in range(in_channels)
            )
            if use_tarm
            else None
        )
        self.stcm = build_stcm(stcm, num_classes=num_classes, in_channels=in_channels)

    def _resize(self, image: Tensor) -> Tensor:
        if image.shape[-2:] == (self.image_size, self.image_size):
            return image
        return F.interpolate(image, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)

    def image(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The sample images ``O`` (B, C, T, N) from a standard batch (body-major columns), with
        padded frames zeroed so their content never reaches the model, and the frame mask."""
        x, mask = check_sequence_batch(
            batch, num_bodies=self.num_bodies, num_joints=self.num_joints, in_channels=self.in_channels
        )
        n, m, t, v, c = x.shape
        if t != self.num_frames:
            raise ValueError(f"MANs was built for T = {self.num_frames} frames, the batch has {t}")
        x = torch.where(mask[:, None, :, None, None], x, 0.0)
        return x.permute(0, 4, 2, 1, 3).reshape(n, c, t, m * v), mask

    def recalibrate(self, image: Tensor) -> tuple[Tensor, Tensor | None]:
        """``O~`` (B, C, rows, cols) and the frame weights (B, rows, C) of the TARMs (None without)."""
        if self.tarms is None:
            return image, None
        outputs, weights = [], []
        for channel, tarm in enumerate(self.tarms):
            out, w = tarm(image[:, channel])
            outputs.append(out)
            weights.append(w)
        maps = None if weights[0] is None else torch.stack(weights, dim=-1)
        return torch.stack(outputs, dim=1), maps

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        image, _ = self.image(batch)
        if self.tarm_on == "image":
            image = self._resize(image)
        recalibrated, weights = self.recalibrate(image)
        logits = self.stcm(self._resize(recalibrated))
        attention = {} if weights is None else {"frame": weights.detach()}
        return ModelOutput(logits=logits, attention=attention)


@register_model("mans", input_spec=MANs.input_spec)
def build_mans(data: DataDescription | None = None, *, variant: str = "mans", **kwargs: Any) -> MANs:
    """Build one of the :data:`VARIANTS` for ``data``; other keyword arguments go to :class:`MANs`."""
    check_variant(VARIANTS, variant, kwargs, family="MANs")
    if data is not None:
        reject_dimension_kwargs(
            kwargs, ("num_classes", "num_joints", "num_bodies", "in_channels", "num_frames"), family="MANs"
        )
        if data.multi_view or len(data.streams) != 1:
            raise ValueError(
                f"MANs reads one single-view stream; got {list(data.streams)}, multi_view={data.multi_view}"
            )
        if data.num_frames is None:
            raise ValueError("MANs needs a fixed number of frames (data.sampling mode: resample)")
        kwargs = {
            "num_classes": data.num_classes,
            "num_joints": data.num_joints,
            "num_bodies": data.num_bodies,
            "in_channels": data.in_channels,
            "num_frames": data.num_frames,
            **kwargs,
        }
    return MANs(**{**kwargs, **VARIANTS[variant]})
