"""SAN and TS-SAN: self-attention networks over frames.

Cho, Maqbool, Liu, Foroosh, "Self-Attention Network for Skeleton-based Human Action Recognition",
WACV 2020, arXiv 1912.08435 (text in ``shared/papers/san_self_attention.txt``). No official code
exists; the choices the text leaves open (its extraction lost the filter sizes, the feature width,
the learning rate and the weight decay) are listed in ``docs/models/san.md``.

Inputs (Sec. 4.1): the joint positions ``P`` and their velocity ``V`` (the first difference of the
positions, computed on the frames the network sees: ``data.streams: [joint, motion_fast]`` with
``data.motion_from: sampled``), each ``(N, M, T, J, C)``.

* Encoders (Sec. 4.2): :class:`FFEncoder` (a non-linear projection of each frame, FC + ReLU) or
  :class:`CNNEncoder` (four HCN-like convolutions: 1x1, 3x1 over frames, then joints become
  channels for two 3x3 convolutions with max pooling; dropout after the last one).
* :class:`SANBlock` (Sec. 4.3, Fig. 3a): a learned position embedding added to the encoded sequence,
  ``L`` self-attention layers (eq. 1, ``softmax(Q K^T / sqrt(d_k)) V`` with ``H`` heads, residual +
  layer norm, feed-forward + residual + layer norm), the outputs of every layer concatenated
  (``Z = [Z_1, ..., Z_L]``), a global average over frames and FC + ReLU back to the width ``d``.
* Variants (Fig. 3b-d, ``fusion``): ``early`` (SAN-V1: positions and velocities of all bodies
  concatenated per frame, one encoder, one SAN block); ``person`` (SAN-V2: one encoder + SAN block
  per body, weights shared, element-wise max over the present bodies); ``modality`` (SAN-V3: an
  encoder per modality shared by the bodies, element-wise max over the present bodies, a SAN block
  per modality; a classifier on each block and one on their concatenation, the three
  cross-entropies summed: the two modality heads are ``ModelOutput.head_logits``).
* TS-SAN (Sec. 4.4, eq. 3): the sampled sequence holds ``K`` segments one after another (the
  ``segments`` temporal sampling); the same network classifies each segment and the class scores
  are aggregated by the consensus ``avg`` or ``max``.
* Classifier: ReLU, dropout 0.5, linear (softmax in the trainer's cross-entropy).

Attention maps (``ModelOutput.attention``, evaluation mode only): the last self-attention layer's
probabilities per head, ``(N, H, T', T')`` (query frame x key frame); for TS-SAN the segments'
maps sit on the block diagonal of the whole sampled sequence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from skeleton_attention.models.base import (
    DataDescription,
    InputSpec,
    ModelOutput,
    SkeletonModel,
    require_on_device,
)
from skeleton_attention.models.registry import register_model

#: the paper's Fig. 3 designs (``variant``) -> how position and motion are fused
VARIANTS: dict[str, str] = {"san_v1": "early", "san_v2": "person", "san_v3": "modality"}
ENCODERS = ("cnn", "ff")
CONSENSUS = ("avg", "max")
#: the batch streams: position (the joints) and velocity (first difference of the sampled joints)
STREAMS = ("joint", "motion_fast")


class FFEncoder(nn.Module):
    """Non-linear encoder (Sec. 4.2): each frame's vector projected to ``out_dim``, then ReLU.
    ``(B, T, J, C) -> (B, T, out_dim)``."""

    def __init__(self, num_joints: int, in_channels: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(num_joints * in_channels, out_dim)
        self.out_dim = out_dim
        self.time_stride = 1

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc(x.flatten(2)))


class CNNEncoder(nn.Module):
    """CNN encoder (Sec. 4.2, Fig. 4), HCN-like. ``(B, T, J, C) -> (B, T / p^2, out_dim)``.

    conv1 1x1 (``c1`` filters: extended coordinates) -> conv2 3x1 over frames (``c2``) -> transpose
    joints and features, so the joints are the channels -> conv3 3x3 (``c3``) + max pool ->
    conv4 3x3 (``c4``) + max pool -> dropout; ReLU after every convolution. The pools halve the
    feature axis and divide the frames by ``time_pool`` (1 keeps one feature per sampled frame);
    each frame's feature is the ``c4 x c2/4`` map flattened.
    """

    def __init__(
        self,
        num_joints: int,
        in_channels: int,
        channels: Sequence[int] = (64, 32, 32, 64),
        time_pool: int = 1,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(channels) != 4 or any(int(c) < 1 for c in channels):
            raise ValueError(f"cnn_channels must be four positive filter counts, got {list(channels)}")
        c1, c2, c3, c4 = (int(c) for c in channels)
        if c2 < 4:
            raise ValueError(f"the second CNN layer needs at least 4 filters (pooled twice by 2), got {c2}")
        if time_pool < 1:
            raise ValueError(f"cnn_time_pool must be >= 1, got {time_pool}")
        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=(3, 1), padding=(1, 0))
        self.conv3 = nn.Conv2d(num_joints, c3, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(c3, c4, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d((time_pool, 2))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = c4 * (c2 // 4)
        self.time_stride = time_pool * time_pool

    def forward(self, x: Tensor) -> Tensor:
        h = x.permute(0, 3, 1, 2)  # (B, C, T, J)
        h = torch.relu(self.conv1(h))
        h = torch.relu(self.conv2(h))  # (B, c2, T, J)
        h = h.permute(0, 3, 2, 1)  # joints become channels: (B, J, T, c2)
        h = self.pool(torch.relu(self.conv3(h)))
        h = self.pool(torch.relu(self.conv4(h)))  # (B, c4, T', c2 / 4)
        h = self.dropout(h)
        return h.permute(0, 2, 1, 3).flatten(2)  # (B, T', c4 * c2 / 4)


class SelfAttentionLayer(nn.Module):
    """One self-attention layer (Sec. 3): multi-head scaled dot-product attention (eq. 1), residual
    + layer norm, feed-forward (ReLU) + residual + layer norm; dropout inside."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, padding: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """``h`` (B, T, d), ``padding`` (B, T) True at padded frames -> (B, T, d), attention
        probabilities (B, H, T, T) when ``need_weights``."""
        out, weights = self.attention(
            h, h, h, key_padding_mask=padding, need_weights=need_weights, average_attn_weights=False
        )
        h = self.norm1(h + self.dropout(out))
        h = self.norm2(h + self.dropout(self.ffn(h)))
        return h, weights


class SANBlock(nn.Module):
    """The SAN block of Fig. 3a: position embedding, ``num_layers`` self-attention layers, the
    layers' outputs concatenated (eq. 2), global average over the valid frames, FC + ReLU.
    ``(B, T, d) -> (B, d)`` and the last layer's attention (B, H, T, T) when asked.

    ``input_norm`` layer-normalises the encoded sequence before the position embedding is added:
    the encoders' outputs are small for skeleton coordinates (mean |value| 0.02 on N-UCLA), and
    without it the position embedding outweighs the skeleton (docs/models/san.md).
    """

    def __init__(
        self,
        dim: int,
        max_len: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"the feature width {dim} must be divisible by num_heads={num_heads}")
        self.input_norm = nn.LayerNorm(dim) if input_norm else nn.Identity()
        self.position = nn.Parameter(torch.empty(1, max_len, dim))
        nn.init.normal_(self.position, std=0.02)
        self.layers = nn.ModuleList(SelfAttentionLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.fc = nn.Linear(num_layers * dim, dim)

    def forward(self, h: Tensor, mask: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        t = h.shape[1]
        if t > self.position.shape[1]:
            raise ValueError(f"{t} frames but the position embedding was built for {self.position.shape[1]}")
        h = self.input_norm(h) + self.position[:, :t]
        padding = ~mask
        outputs, weights = [], None
        for i, layer in enumerate(self.layers):
            h, w = layer(h, padding, need_weights and i == len(self.layers) - 1)
            outputs.append(h)
            weights = w if w is not None else weights
        z = torch.cat(outputs, dim=-1)  # (B, T, L * d)
        valid = mask.unsqueeze(-1).to(z.dtype)
        pooled = (z * valid).sum(1) / valid.sum(1).clamp_min(1.0)  # global average over frames
        return torch.relu(self.fc(pooled)), weights


class Classifier(nn.Module):
    """ReLU, dropout, linear (Sec. 4.3, SAN-V1: the softmax is the trainer's cross-entropy)."""

    def __init__(self, dim: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc(self.dropout(torch.relu(h)))


def consensus(scores: Tensor, how: str) -> Tensor:
    """TS-SAN's segmental consensus (eq. 3): ``(N, K, classes) -> (N, classes)``, element-wise
    average or maximum over the K segments."""
    if how == "avg":
        return scores.mean(dim=1)
    if how == "max":
        return scores.amax(dim=1)
    raise ValueError(f"consensus must be one of {CONSENSUS}, got {how!r}")


def masked_max(features: Tensor, present: Tensor) -> Tensor:
    """Element-wise max over the bodies that are present: ``(B, M, ...)``, ``present`` (B, M) bool
    with at least one True per row -> ``(B, ...)``. Absent (zero-padded) bodies never win."""
    shape = present.shape + (1,) * (features.dim() - 2)
    return features.masked_fill(~present.view(shape), float("-inf")).amax(dim=1)


def body_presence(x: Tensor) -> Tensor:
    """``(N, M, T, J, C) -> (N, M)`` bool: a body is present when any of its values is non-zero.
    A sample without any (all zero) counts its first body as present, so every row has one."""
    present = x.flatten(2).ne(0).any(dim=2)
    first = torch.zeros_like(present)
    first[:, 0] = True
    return torch.where(present.any(dim=1, keepdim=True), present, first)


def _segment_attention(weights: Tensor, n: int, k: int) -> Tensor:
    """``(N * K, H, L, L)`` per-segment maps -> ``(N, H, K L, K L)`` with the segments on the block
    diagonal (attention never crosses segments)."""
    _, h, length, _ = weights.shape
    w = weights.view(n, k, h, length, length)
    out = weights.new_zeros(n, h, k * length, k * length)
    for s in range(k):
        out[:, :, s * length : (s + 1) * length, s * length : (s + 1) * length] = w[:, s]
    return out


class SAN(SkeletonModel):
    """SAN-V1/V2/V3 and TS-SAN (see the module docstring).

    Args:
        num_classes, num_joints, num_bodies: data dimensions (J joints, M bodies per frame).
        position_channels, motion_channels: channels of the position and velocity streams.
        num_frames: the fixed number of sampled frames T (``K * L`` for TS-SAN).
        fusion: ``early`` (SAN-V1), ``person`` (SAN-V2) or ``modality`` (SAN-V3).
        encoder: ``cnn`` (Sec. 4.2 CNN encoder) or ``ff`` (non-linear encoder).
        num_segments: K; 1 is SAN, more is TS-SAN (T must be a multiple of K).
        consensus: ``avg`` or ``max`` over the segments' class scores.
        num_layers, num_heads: self-attention layers and heads (paper: 4 x 8 NTU, 8 x 8 Kinetics).
        ffn_dim: width of each layer's feed-forward network (None: 4 d, as in the Transformer).
        san_dropout: dropout inside the SAN block (paper: 0.2).
        dropout: dropout after the last convolution and before the classifier (paper: 0.5).
        cnn_channels: filters of the four CNN layers (HCN's 64, 32, 32, 64 by default).
        cnn_time_pool: frames pooled by each CNN max pool (1: the SAN sees every sampled frame).
        ff_dim: output width of the non-linear encoder.
        input_norm: layer norm on the encoded sequence before the position embedding (not in the
            paper's text; see :class:`SANBlock`).
    """

    input_spec = InputSpec(views="single", streams=STREAMS, fixed_length=True)

    def __init__(
        self,
        *,
        num_classes: int,
        num_joints: int,
        num_bodies: int,
        position_channels: int,
        motion_channels: int,
        num_frames: int,
        fusion: Literal["early", "person", "modality"] = "person",
        encoder: Literal["cnn", "ff"] = "cnn",
        num_segments: int = 1,
        consensus: Literal["avg", "max"] = "avg",
        num_layers: int = 4,
        num_heads: int = 8,
        ffn_dim: int | None = None,
        san_dropout: float = 0.2,
        dropout: float = 0.5,
        cnn_channels: Sequence[int] = (64, 32, 32, 64),
        cnn_time_pool: int = 1,
        ff_dim: int = 512,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("num_joints", num_joints),
            ("num_bodies", num_bodies),
            ("position_channels", position_channels),
            ("motion_channels", motion_channels),
            ("num_frames", num_frames),
            ("num_segments", num_segments),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("ff_dim", ff_dim),
        ):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if fusion not in VARIANTS.values():
            raise ValueError(f"fusion must be one of {sorted(VARIANTS.values())}, got {fusion!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if consensus not in CONSENSUS:
            raise ValueError(f"consensus must be one of {CONSENSUS}, got {consensus!r}")
        for name, value in (("san_dropout", san_dropout), ("dropout", dropout)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if num_frames % num_segments:
            raise ValueError(f"{num_frames} sampled frames do not split into {num_segments} equal segments")
        segment = num_frames // num_segments
        stride = cnn_time_pool * cnn_time_pool if encoder == "cnn" else 1
        if segment % stride:
            raise ValueError(f"segments of {segment} frames cannot be pooled by {stride} (cnn_time_pool^2)")
        if fusion == "early" and position_channels != motion_channels:
            raise ValueError("SAN-V1 concatenates position and velocity channels: they must match")
        self.num_classes, self.num_joints, self.num_bodies = num_classes, num_joints, num_bodies
        self.num_frames, self.num_segments, self.segment_length = num_frames, num_segments, segment
        self.fusion, self.encoder_kind, self.consensus = fusion, encoder, consensus
        self.channels = (position_channels, motion_channels)

        def make_encoder(joints: int, channels: int) -> nn.Module:
            if encoder == "ff":
                return FFEncoder(joints, channels, ff_dim)
            return CNNEncoder(joints, channels, cnn_channels, cnn_time_pool, dropout)

        def make_block(dim: int) -> SANBlock:
            return SANBlock(dim, segment // stride, num_layers, num_heads, ffn_dim or 4 * dim, san_dropout, input_norm)

        if fusion == "early":  # SAN-V1: every body's positions and velocities in one frame vector
            self.encoder = make_encoder(num_bodies * num_joints, 2 * position_channels)
        elif fusion == "person":  # SAN-V2: one body at a time, shared weights
            self.encoder = make_encoder(num_joints, position_channels + motion_channels)
        else:  # SAN-V3: an encoder per modality, shared by the bodies
            self.encoder = make_encoder(num_joints, position_channels)
            self.motion_encoder = make_encoder(num_joints, motion_channels)
        dim = self.encoder.out_dim
        self.feature_dim = dim
        self.block = make_block(dim)
        self.classifier = Classifier(dim, num_classes, dropout)
        if fusion == "modality":
            self.motion_block = make_block(dim)
            self.motion_classifier = Classifier(dim, num_classes, dropout)
            self.joint_classifier = Classifier(2 * dim, num_classes, dropout)

    # --- input checks --------------------------------------------------------------------------------

    def _inputs(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        for key in ("x_joint", "x_motion_fast", "mask"):
            if key not in batch:
                raise ValueError(f"batch has no {key!r} entry (keys: {sorted(batch)}); SAN reads {list(STREAMS)}")
        pos, mot, mask = batch["x_joint"], batch["x_motion_fast"], batch["mask"]
        for key, x, channels in (("x_joint", pos, self.channels[0]), ("x_motion_fast", mot, self.channels[1])):
            expected = (self.num_bodies, self.num_frames, self.num_joints, channels)
            if x.dim() != 5 or not torch.is_floating_point(x) or tuple(x.shape[1:]) != expected:
                raise ValueError(
                    f"batch[{key!r}] must be float (N, M, T, J, C) with (M, T, J, C) = {expected}; "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
        n = pos.shape[0]
        if mot.shape[0] != n or mask.dtype != torch.bool or tuple(mask.shape) != (n, self.num_frames):
            raise ValueError(f"batch['mask'] must be bool (N, T) = {(n, self.num_frames)}; got {tuple(mask.shape)}")
        return pos, mot, mask

    # --- one clip (a segment, or the whole sequence) -----------------------------------------------

    def _pool_mask(self, mask: Tensor) -> Tensor:
        """The frames' mask at the encoder's output rate: a pooled frame is valid if any is."""
        stride = self.encoder.time_stride
        if stride == 1:
            return mask
        return mask.view(mask.shape[0], -1, stride).any(dim=2)

    def _encode_bodies(self, encoder: nn.Module, x: Tensor) -> Tensor:
        """``(B, M, L, J, C) -> (B, M, L', d)``: each body through the shared encoder."""
        b, m = x.shape[:2]
        return encoder(x.flatten(0, 1)).view(b, m, -1, encoder.out_dim)

    def _clip(
        self, pos: Tensor, mot: Tensor, mask: Tensor, present: Tensor, need_weights: bool
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Logits, head logits and attention of clips ``(B, M, L, J, C)``."""
        b, m, length = pos.shape[:3]
        fmask = self._pool_mask(mask)
        if self.fusion == "early":
            x = torch.cat([pos, mot], dim=-1).permute(0, 2, 1, 3, 4).reshape(b, length, m * self.num_joints, -1)
            feature, w = self.block(self.encoder(x), fmask, need_weights)
            maps = {"self_attention": w} if w is not None else {}
            return self.classifier(feature), {}, maps
        if self.fusion == "person":
            encoded = self._encode_bodies(self.encoder, torch.cat([pos, mot], dim=-1))
            feature, w = self.block(encoded.flatten(0, 1), fmask.repeat_interleave(m, dim=0), need_weights)
            feature = masked_max(feature.view(b, m, -1), present)
            maps = {"self_attention": w.view(b, m, *w.shape[1:])[:, 0]} if w is not None else {}
            return self.classifier(feature), {}, maps
        # modality: max over the present bodies per modality, then one SAN block per modality
        p = masked_max(self._encode_bodies(self.encoder, pos), present)
        v = masked_max(self._encode_bodies(self.motion_encoder, mot), present)
        fp, wp = self.block(p, fmask, need_weights)
        fv, wv = self.motion_block(v, fmask, need_weights)
        heads = {"position": self.classifier(fp), "motion": self.motion_classifier(fv)}
        maps = {"self_attention_position": wp, "self_attention_motion": wv} if wp is not None else {}
        return self.joint_classifier(torch.cat([fp, fv], dim=-1)), heads, maps

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        pos, mot, mask = self._inputs(batch)
        n, k, length = pos.shape[0], self.num_segments, self.segment_length
        present = body_presence(pos)

        def segments(x: Tensor) -> Tensor:  # (N, M, K L, J, C) -> (N K, M, L, J, C)
            shape = x.shape
            x = x.view(n, shape[1], k, length, *shape[3:]).transpose(1, 2)
            return x.reshape(n * k, shape[1], length, *shape[3:])

        seg_mask = mask.view(n * k, length)
        require_on_device(
            seg_mask.any(dim=1).all(),
            "every segment needs at least one valid frame (a row of batch['mask'] is empty there)",
        )
        need_weights = not self.training
        logits, heads, maps = self._clip(
            segments(pos), segments(mot), seg_mask, present.repeat_interleave(k, dim=0), need_weights
        )
        logits = consensus(logits.view(n, k, -1), self.consensus)
        heads = {name: consensus(h.view(n, k, -1), self.consensus) for name, h in heads.items()}
        attention = {name: _segment_attention(w.detach(), n, k) for name, w in maps.items()}
        return ModelOutput(logits=logits, head_logits=heads, attention=attention)


@register_model("san", input_spec=SAN.input_spec)
def build_san(data: DataDescription | None = None, *, variant: str = "san_v2", **kwargs: Any) -> SAN:
    """Build SAN variant ``variant`` (``san_v1 | san_v2 | san_v3``: Fig. 3b-d) for ``data``; TS-SAN
    is ``num_segments > 1``. Other keyword arguments go to :class:`SAN`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown SAN variant {variant!r}; known: {sorted(VARIANTS)}")
    if "fusion" in kwargs and kwargs["fusion"] != VARIANTS[variant]:
        raise ValueError(f"variant {variant!r} sets fusion={VARIANTS[variant]!r}, not {kwargs['fusion']!r}")
    if data is not None:
        given = sorted({"num_classes", "num_joints", "num_bodies", "num_frames"} & set(kwargs))
        if given:
            raise ValueError(f"SAN takes its dimensions from data=, not from {given}")
        if data.multi_view or tuple(data.streams) != STREAMS:
            raise ValueError(
                f"SAN reads the single-view streams {list(STREAMS)}; got {list(data.streams)}, "
                f"multi_view={data.multi_view}"
            )
        if data.num_frames is None:
            raise ValueError("SAN needs a fixed number of sampled frames (data.sampling must fix T)")
        channels = data.stream_channels()
        kwargs = {
            "num_classes": data.num_classes,
            "num_joints": data.num_joints,
            "num_bodies": data.num_bodies,
            "num_frames": data.num_frames,
            "position_channels": channels["joint"],
            "motion_channels": channels["motion_fast"],
            **kwargs,
        }
    return SAN(fusion=VARIANTS[variant], **{k: v for k, v in kwargs.items() if k != "fusion"})
