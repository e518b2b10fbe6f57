"""DSTA-Net: decoupled spatial-temporal attention network.

Shi, Zhang, Cheng, Lu, "Decoupled Spatial-Temporal Attention Network for Skeleton-Based Action
Recognition", ACCV 2020 (text in ``shared/papers/dsta_net.txt``).

Every layer (Fig. 3) is a spatial attention module followed by a temporal one (Sec. 3.5): the
spatial module regards the input (C, T, V) as V elements with T*C channels, the temporal module as
T elements with V*C channels. One module (Fig. 2, Sec. 3.4), for S heads:

* position encoding (Sec. 3.2, eq. 5) added to the input: ``decoupled`` (spatial module: joint
  index, the same for every frame; temporal module: frame index, the same for every joint),
  ``unified`` (one index p = t * V + v in both modules) or ``none``;
* two embeddings sigma, phi (1x1 linear maps, C_in -> C_e per head) and the attention map by one of
  the three decoupling strategies of Fig. 1: (a) one map per frame (eq. 2), (b) all frame pairs
  (eq. 3), (c) per-frame products averaged over frames and shared (eq. 4, the default);
  ``tanh`` instead of the softmax of eq. 1-4 (Sec. 3.4: "Tanh is better than SoftMax");
* spatial global regularization (Sec. 3.3): a learned N x N map shared by all samples added to the
  map, A = alpha * tanh(.) + G (``spatial``); ``spatial_temporal`` adds one to the temporal
  module too (the STGR row of Table 1); ``none`` leaves it out;
* the map multiplies the original input (the value), the S heads are concatenated and mapped to
  C_out (linear + BN), first residual connection, LeakyReLU; a point-wise feed-forward layer
  (linear + BN), second residual connection, LeakyReLU.

Eight layers with 64, 64, 128, 128, 256, 256, 256, 256 channels and 3 heads (Sec. 4.2), global
average pooling and one FC layer. Several bodies are folded into the batch, pooled per body, and
averaged over the bodies present before the FC layer (the official code's reading). Choices the
paper leaves open (input embedding, C_e, temporal strides, the alpha, BN) follow the official code
and are listed in ``docs/models/dsta-net.md``; every Table 1 configuration is a constructor
argument.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from skeleton_attention.models.base import (
    DataDescription,
    InputSpec,
    ModelOutput,
    SkeletonModel,
    all_true_without_sync,
    check_sequence_batch,
    check_variant,
    reject_dimension_kwargs,
)
from skeleton_attention.models.registry import register_model

Strategy = Literal["a", "b", "c"]
STRATEGIES = ("a", "b", "c")
POSITION_ENCODINGS = ("decoupled", "unified", "none")
GLOBAL_REGULARIZATIONS = ("spatial", "spatial_temporal", "none")
TEMPORAL_MODULES = ("attention", "conv")

#: Table 1 rows as constructor arguments (``model.variant``); "dsta" is the paper's final model.
VARIANTS: dict[str, dict[str, str]] = {
    "st_att_c_no_pe": {"strategy": "c", "position_encoding": "none", "global_regularization": "none"},
    "st_att_c_upe": {"strategy": "c", "position_encoding": "unified", "global_regularization": "none"},
    "st_att_c_dpe": {"strategy": "c", "position_encoding": "decoupled", "global_regularization": "none"},
    "dsta": {"strategy": "c", "position_encoding": "decoupled", "global_regularization": "spatial"},
    "st_att_c_dpe_stgr": {
        "strategy": "c",
        "position_encoding": "decoupled",
        "global_regularization": "spatial_temporal",
    },
    "st_att_a": {"strategy": "a", "position_encoding": "decoupled", "global_regularization": "spatial"},
    "st_att_b": {"strategy": "b", "position_encoding": "decoupled", "global_regularization": "spatial"},
}

#: Sec. 4.2: output channels of the 8 layers, 3 heads
PAPER_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256)
#: temporal strides of the official configuration (the paper does not give any)
OFFICIAL_STRIDES = (1, 1, 2, 1, 2, 1, 1, 1)
LEAKY_SLOPE = 0.1


def sinusoid_encoding(num_positions: int, channels: int, positions: Tensor | None = None) -> Tensor:
    """Eq. 5: ``PE(p, 2i) = sin(p / 10000^(2i/C))``, ``PE(p, 2i+1) = cos(...)``; (C, num_positions)."""
    p = torch.arange(num_positions, dtype=torch.float32) if positions is None else positions.float()
    i = torch.arange(0, channels, 2, dtype=torch.float32)
    angle = p[None, :] / torch.pow(10000.0, i / channels)[:, None]  # (ceil(C/2), P)
    pe = torch.empty(2 * angle.shape[0], p.numel())
    pe[0::2], pe[1::2] = torch.sin(angle), torch.cos(angle)
    return pe[:channels]


class Pointwise(nn.Module):
    """A 1x1 linear map over the channels of (N, C, T, V), as ``nn.Conv2d(C_in, C_out, 1)`` but
    computed as a matrix product on the channel axis (about 1.5x faster on CPUs)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default initialization
        bound = 1.0 / math.sqrt(in_channels)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        y = nn.functional.linear(x.movedim(1, -1), self.weight, self.bias)
        return y.movedim(-1, 1)


def _masked_mean(x: Tensor, mask: Tensor | None, dim: int) -> Tensor:
    """Mean of ``x`` over ``dim`` counting only positions where ``mask`` (broadcastable) is True."""
    if mask is None:
        return x.mean(dim=dim)
    m = mask.to(x.dtype)
    return (x * m).sum(dim=dim) / m.sum(dim=dim).clamp_min(1.0)


class AttentionModule(nn.Module):
    """One spatial or temporal attention module (Fig. 2) on ``x`` (N, C_in, T, V).

    ``axis="spatial"``: the V joints are the elements, frames the "others" the strategy combines;
    ``axis="temporal"``: the T frames are the elements, joints the others. ``num_elements`` is the
    element count when a global regularization map is learned (V, or the layer's T).
    """

    def __init__(
        self,
        axis: Literal["spatial", "temporal"],
        in_channels: int,
        out_channels: int,
        embed_channels: int,
        num_heads: int,
        strategy: str,
        position_encoding: str,
        global_map: bool,
        num_elements: int | None,
    ) -> None:
        super().__init__()
        self.axis, self.strategy, self.position_encoding = axis, strategy, position_encoding
        self.num_heads, self.embed_channels = num_heads, embed_channels
        self.query = Pointwise(in_channels, num_heads * embed_channels)  # sigma of eq. 2-4
        self.key = Pointwise(in_channels, num_heads * embed_channels)  # phi
        self.alpha = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        if global_map:
            if not num_elements:
                raise ValueError(f"a {axis} global regularization map needs the number of elements")
            # Sec. 3.3: a map shared by all samples, learned with the model; starts as the uniform mean
            self.global_map: nn.Parameter | None = nn.Parameter(
                torch.full((num_heads, num_elements, num_elements), 1.0 / num_elements)
            )
        else:
            self.global_map = None
        self.out = nn.Sequential(Pointwise(num_heads * in_channels, out_channels), nn.BatchNorm2d(out_channels))
        self.residual = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(Pointwise(in_channels, out_channels), nn.BatchNorm2d(out_channels))
        )
        self.feed_forward = nn.Sequential(Pointwise(out_channels, out_channels), nn.BatchNorm2d(out_channels))
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def _encoding(self, x: Tensor) -> Tensor | None:
        """(C, T, V) position features for this module (Sec. 3.2)."""
        c, t, v = x.shape[1:]
        if self.position_encoding == "none":
            return None
        if self.position_encoding == "unified":  # p = t * V + v: the same markers in both modules
            return sinusoid_encoding(t * v, c).reshape(c, t, v).to(x)
        if self.axis == "spatial":  # joint index, equal for every frame
            return sinusoid_encoding(v, c)[:, None, :].expand(c, t, v).to(x)
        return sinusoid_encoding(t, c)[:, :, None].expand(c, t, v).to(x)  # frame index, equal per joint

    def attention_map(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """The map of every head: (N, S, E, E) for strategies b and c, (N, S, O, E, E) for a, where
        E is the element axis and O the other one; entry (e, f) weighs element f for element e."""
        pe = self._encoding(x)
        h = x if pe is None else x + pe
        n, s, ce = x.shape[0], self.num_heads, self.embed_channels
        q = self.query(h).view(n, s, ce, *x.shape[2:])
        k = self.key(h).view(n, s, ce, *x.shape[2:])
        if self.axis == "temporal":  # elements last: (N, S, Ce, O=V, E=T)
            q, k = q.transpose(-1, -2), k.transpose(-1, -2)
        # frames are the "others" of the spatial module, the elements of the temporal one
        other_mask = mask[:, None, None, :, None] if (mask is not None and self.axis == "spatial") else None
        key_mask = mask if (mask is not None and self.axis == "temporal") else None
        if self.strategy == "a":  # eq. 2: one map per frame (per joint for the temporal module)
            logits = torch.einsum("nscoe,nscof->nsoef", q, k) / ce
        elif self.strategy == "c":  # eq. 4: per-frame products, averaged over the (valid) frames
            if other_mask is not None:
                q = q * other_mask.to(q.dtype)
                count = other_mask.to(q.dtype).sum(dim=3).clamp_min(1.0)[:, :, :, 0, None]  # (N,1,1,1)
            else:
                count = q.new_full((1, 1, 1, 1), float(q.shape[3]))
            logits = torch.einsum("nscoe,nscof->nsef", q, k) / (ce * count)
        else:  # eq. 3: all pairs (t, tau); the double sum factorizes into (sum_t q_t)(sum_tau k_tau)'
            qm, km = _masked_mean(q, other_mask, 3), _masked_mean(k, other_mask, 3)
            logits = torch.einsum("nsce,nscf->nsef", qm, km) / ce
        att = self.alpha * torch.tanh(logits) if self.strategy != "a" else self.alpha[..., None] * torch.tanh(logits)
        if self.global_map is not None:
            g = self.global_map[None] if self.strategy != "a" else self.global_map[None, :, None]
            att = att + g
        if key_mask is not None:  # padded frames are never attended to
            km = key_mask[:, None, None, :] if self.strategy != "a" else key_mask[:, None, None, None, :]
            att = att * km.to(att.dtype)
        return att

    def forward(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """``x`` (N, C_in, T, V), ``mask`` (N, T) valid frames or None -> (N, C_out, T, V) and the
        map (head-averaged: (N, E, E), for strategy a also averaged over the other axis)."""
        att = self.attention_map(x, mask)
        v = x if self.axis == "spatial" else x.transpose(-1, -2)  # (N, C, O, E)
        if self.strategy == "a":
            y = torch.einsum("ncof,nsoef->nscoe", v, att)
        else:
            y = torch.einsum("ncof,nsef->nscoe", v, att)
        if self.axis == "temporal":
            y = y.transpose(-1, -2)
        y = y.reshape(x.shape[0], -1, *x.shape[2:])  # concatenated heads
        z = self.act(self.residual(x) + self.out(y))  # first residual connection
        z = self.act(z + self.feed_forward(z))  # point-wise feed-forward, second residual connection
        shown = att.mean(dim=1)
        if self.strategy == "a":
            shown = (
                _masked_mean(shown, mask[:, :, None, None], 1)
                if (mask is not None and self.axis == "spatial")
                else shown.mean(1)
            )
        return z, shown


class TemporalConv(nn.Module):
    """The released configuration's replacement of temporal attention (not the paper's): a
    ``kernel x 1`` convolution over frames with BN, a residual connection and LeakyReLU."""

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, channels, (kernel_size, 1), padding=(kernel_size // 2, 0)), nn.BatchNorm2d(channels)
        )
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, None]:
        if mask is not None:
            x = x * mask[:, None, :, None].to(x.dtype)
        return self.act(x + self.conv(x)), None


class DSTALayer(nn.Module):
    """One spatial-temporal attention layer (the red box of Fig. 3), then an optional temporal
    stride (masked average over windows of ``stride`` frames)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_heads: int,
        embed_channels: int,
        strategy: str,
        position_encoding: str,
        global_regularization: str,
        temporal: str,
        num_joints: int,
        num_frames: int | None,
        stride: int,
    ) -> None:
        super().__init__()
        common = {"num_heads": num_heads, "embed_channels": embed_channels, "strategy": strategy}
        self.spatial = AttentionModule(
            "spatial",
            in_channels,
            out_channels,
            position_encoding=position_encoding,
            global_map=global_regularization != "none",
            num_elements=num_joints,
            **common,
        )
        if temporal == "attention":
            self.temporal: nn.Module = AttentionModule(
                "temporal",
                out_channels,
                out_channels,
                position_encoding=position_encoding,
                global_map=global_regularization == "spatial_temporal",
                num_elements=num_frames,
                **common,
            )
        else:
            self.temporal = TemporalConv(out_channels)
        self.stride = int(stride)

    def forward(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        x, spatial_map = self.spatial(x, mask)
        x, temporal_map = self.temporal(x, mask)
        maps = {"spatial": spatial_map}
        if temporal_map is not None:
            maps["temporal"] = temporal_map
        if self.stride > 1:
            x, mask = _stride_frames(x, mask, self.stride)
        return x, mask, maps


def _stride_frames(x: Tensor, mask: Tensor | None, stride: int) -> tuple[Tensor, Tensor | None]:
    """Average windows of ``stride`` frames over their valid frames; a window is valid when any of
    its frames is (``ceil(T / stride)`` frames out)."""
    n, c, t, v = x.shape
    pad = (-t) % stride
    m = torch.ones(n, t, dtype=x.dtype, device=x.device) if mask is None else mask.to(x.dtype)
    if pad:
        x = nn.functional.pad(x, (0, 0, 0, pad))
        m = nn.functional.pad(m, (0, pad))
    xs = (x * m[:, None, :, None]).view(n, c, -1, stride, v).sum(3)
    ms = m.view(n, -1, stride).sum(2)
    x = xs / ms.clamp_min(1.0)[:, None, :, None]
    return x, (ms > 0) if mask is not None else None


class DSTANet(SkeletonModel):
    """DSTA-Net (Fig. 3) on one input stream.

    Args:
        num_classes, num_joints, num_bodies, in_channels: data dimensions.
        num_frames: the fixed T of the sampled clips (needed by the temporal global map only).
        channels: output channels of the layers (paper: 64, 64, 128, 128, 256, 256, 256, 256).
        num_heads: S (paper: 3).
        embed_ratio: C_e = C_out // embed_ratio per head (paper: "C_e smaller than C_out"; the
            official code uses C_out / 4).
        strategy: "a", "b" or "c" (Fig. 1; paper: c).
        position_encoding: "decoupled" (DPE, paper), "unified" (UPE) or "none" (Table 1).
        global_regularization: "spatial" (SGR, paper), "spatial_temporal" (STGR) or "none".
        temporal: "attention" (paper) or "conv" (the released NTU configuration's 7x1 convolution).
        strides: temporal stride after each layer (paper: none given; official: 1,1,2,1,2,1,1,1).
        input_channels: width of the input embedding (1x1 linear + BN + LeakyReLU, official code);
            None = channels[0].
        dropout: dropout before the FC layer (paper: none).
    """

    #: one single-view stream (``x``); any length (valid frames masked), fixed T for the STGR map
    input_spec = InputSpec(views="single", max_streams=1)

    def __init__(
        self,
        *,
        num_classes: int,
        num_joints: int,
        num_bodies: int,
        in_channels: int,
        num_frames: int | None = None,
        channels: Sequence[int] = PAPER_CHANNELS,
        num_heads: int = 3,
        embed_ratio: int = 4,
        strategy: str = "c",
        position_encoding: str = "decoupled",
        global_regularization: str = "spatial",
        temporal: str = "attention",
        strides: Sequence[int] | None = OFFICIAL_STRIDES,
        input_channels: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value, allowed in (
            ("strategy", strategy, STRATEGIES),
            ("position_encoding", position_encoding, POSITION_ENCODINGS),
            ("global_regularization", global_regularization, GLOBAL_REGULARIZATIONS),
            ("temporal", temporal, TEMPORAL_MODULES),
        ):
            if value not in allowed:
                raise ValueError(f"DSTA-Net {name} must be one of {allowed}, got {value!r}")
        channels = [int(c) for c in channels]
        strides = [1] * len(channels) if strides is None else [int(s) for s in strides]
        if not channels or len(strides) != len(channels) or min(channels) < 1 or min(strides) < 1:
            raise ValueError(f"channels {channels} and strides {strides} must be non-empty, positive and parallel")
        if embed_ratio < 1 or min(channels) // embed_ratio < 1:
            raise ValueError(f"embed_ratio {embed_ratio} leaves no embedding channel for {min(channels)} channels")
        if global_regularization == "spatial_temporal" and temporal == "attention" and not num_frames:
            raise ValueError("the spatial-temporal global regularization needs a fixed number of frames (sampling)")
        self.num_classes, self.num_joints = int(num_classes), int(num_joints)
        self.num_bodies, self.in_channels = int(num_bodies), int(in_channels)
        self.strategy, self.position_encoding = strategy, position_encoding
        self.global_regularization, self.temporal = global_regularization, temporal
        width = int(input_channels or channels[0])
        self.input_map = nn.Sequential(
            Pointwise(self.in_channels, width), nn.BatchNorm2d(width), nn.LeakyReLU(LEAKY_SLOPE)
        )
        layers, frames = [], num_frames
        for out, stride in zip(channels, strides, strict=True):
            layers.append(
                DSTALayer(
                    width,
                    out,
                    num_heads=num_heads,
                    embed_channels=out // embed_ratio,
                    strategy=strategy,
                    position_encoding=position_encoding,
                    global_regularization=global_regularization,
                    temporal=temporal,
                    num_joints=self.num_joints,
                    num_frames=frames,
                    stride=stride,
                )
            )
            width = out
            frames = None if frames is None else math.ceil(frames / stride)
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, self.num_classes)

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        x, mask = check_sequence_batch(
            batch, num_bodies=self.num_bodies, num_joints=self.num_joints, in_channels=self.in_channels
        )
        n, m, t, v, c = x.shape
        present = x.flatten(2).abs().sum(-1) > 0  # (N, M): absent bodies are all zero
        present = present | ~present.any(dim=1, keepdim=True)  # an all-zero sample keeps its bodies
        frame = mask.repeat_interleave(m, dim=0)  # (N*M, T)
        h = x.reshape(n * m, t, v, c).permute(0, 3, 1, 2)  # bodies folded into the batch: (N*M, C, T, V)
        h = h * frame[:, None, :, None].to(h.dtype)
        h = self.input_map(h)
        fmask: Tensor | None = None if all_true_without_sync(mask) else frame
        maps: dict[str, Tensor] = {}
        last = len(self.layers)
        for index, layer in enumerate(self.layers, start=1):
            h, fmask, layer_maps = layer(h, fmask)
            if index in (1, last):  # the paper shows layers 1 and 8 (Fig. 5)
                for kind, value in layer_maps.items():
                    axes = "joints x joints" if kind == "spatial" else "frames x frames"
                    per_sample = value.view(n, m, *value.shape[1:])
                    maps[f"layer {index} {kind} [{axes}]"] = _body_mean(per_sample, present).detach()
        # global average pooling over the valid frames and the joints of each body
        pooled = _masked_mean(h.mean(dim=3), None if fmask is None else fmask[:, None, :], 2)  # (N*M, C)
        pooled = _body_mean(pooled.view(n, m, -1), present)  # mean over the bodies present
        logits = self.fc(self.dropout(pooled))
        return ModelOutput(logits=logits, attention=maps)


def _body_mean(x: Tensor, present: Tensor) -> Tensor:
    """Mean over the body axis 1 of ``x`` (N, M, ...) counting only the bodies present."""
    w = present.to(x.dtype).view(*present.shape, *([1] * (x.dim() - 2)))
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


@register_model("dsta_net", input_spec=DSTANet.input_spec)
def build_dsta_net(data: DataDescription | None = None, *, variant: str = "dsta", **kwargs: Any) -> DSTANet:
    """Build one of the :data:`VARIANTS` (Table 1) for ``data``; other keyword arguments go to
    :class:`DSTANet`. Without ``data`` the dimensions are passed directly."""
    check_variant(VARIANTS, variant, kwargs, family="DSTA-Net")
    if data is not None:
        reject_dimension_kwargs(
            kwargs, ("num_classes", "num_joints", "num_bodies", "in_channels", "num_frames"), family="DSTA-Net"
        )
        if data.multi_view or len(data.streams) != 1:
            raise ValueError(
                f"DSTA-Net reads one single-view stream per model (one model per stream, scores fused); "
                f"got streams {list(data.streams)}, multi_view={data.multi_view}"
            )
        kwargs = {
            "num_classes": data.num_classes,
            "num_joints": data.num_joints,
            "num_bodies": data.num_bodies,
            "in_channels": data.in_channels,
            "num_frames": data.num_frames,
            **kwargs,
        }
    return DSTANet(**{**kwargs, **VARIANTS[variant]})
