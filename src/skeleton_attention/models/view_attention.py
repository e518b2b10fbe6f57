"""Spatio-temporal and view attention deep network (multi-view LSTM with view attention).

Feng, Li, Yuan, "Spatio-Temporal and View Attention Deep Network for Skeleton based
View-invariant Human Action Recognition", MOBIMEDIA 2018 (doi 10.4108/eai.21-6-2018.2276579; text
in ``shared/papers/view_attention_lstm.txt``; no code was published).

For every camera view ``j`` of a recording a **view-specific sub-network** (Sec. 3.1, Fig. 3) reads
the per-frame input ``x^j_t`` (the K = M * V joints of all bodies, body-major, K * C numbers):

* spatial attention module (eq. 1-3): an LSTM gives ``h^{js}_{t-1}``;
  ``s^j_t = W_es tanh(W_xs x^j_t + W_hs h^{js}_{t-1} + b_s) + b_es`` (eq. 1),
  ``gamma^j_t = softmax_k(s^j_t)`` (eq. 2) and the stacked LSTMs see ``gamma^j_{t,k} x^j_{t,k}`` (eq. 3);
* stacked LSTMs (Sec. 3.1.2): ``num_layers`` LSTM layers (paper: 3 x 256) give ``z^j_t``;
* temporal attention module (eq. 4): an LSTM gives ``h^{jt}_{t-1}``;
  ``e^j_t = ReLU(W_e1 x^j_t + W_e2 h^{jt}_{t-1} + b_e)`` and the sub-network's output is
  ``alpha_j = sum_t e^j_t z^j_t`` over the valid frames.

The **view attention sub-network** (Sec. 3.2, Fig. 4) reads the sequence of view features
``z = (alpha_1, ..., alpha_v)`` (eq. 5) with a Bi-LSTM (eq. 6-8, ``h_j = [h->_j, h<-_j]``), weighs the
views with ``beta_j = softmax_j(w_v2 tanh(w_v1 h_j))`` (eq. 9) and classifies
``o = sum_j beta_j h_j`` (eq. 10) with a fully connected layer (the softmax is the trainer's
cross-entropy). A missing view is left out of the Bi-LSTM's sequence (the present views are
packed in camera order) and of the view softmax, so its content cannot change the output.

The regularized loss (eq. 11) beyond the cross-entropy is returned in
``ModelOutput.regularization``, already weighted: ``spatial_attention`` (lambda1),
``temporal_attention`` (lambda2) and ``weight_l1`` (lambda3, every weight matrix). The paper's
ablations (Tables 1-2) are constructor arguments: :data:`VARIANTS` and ``num_layers``.
``build_view_attention_single`` is the same network on single-view data (one sub-network, a
Bi-LSTM over one step, no view weights), to compare multi-view input with single-view training.
Choices the paper leaves open are listed in ``docs/models/view-attention.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from skeleton_attention.models.base import (
    DataDescription,
    InputSpec,
    ModelOutput,
    SkeletonModel,
    check_multiview_batch,
    check_sequence_batch,
    check_variant,
    reject_dimension_kwargs,
)
from skeleton_attention.models.blocks import SpatialAttention, TemporalAttention, init_gaussian_, init_pytorch_
from skeleton_attention.models.registry import register_model

#: The paper's Table 1 networks as constructor arguments: "Deep-LSTM Network" (no attention
#: module: equal weights over frames and views), "+ ST-AM" (spatio-temporal attention, no view
#: attention: equal weights over the present views) and "+ ST-AM + VAM" (the full network).
VARIANTS: dict[str, dict[str, bool]] = {
    "deep_lstm": {"spatial_attention": False, "temporal_attention": False, "view_attention": False},
    "st_am": {"spatial_attention": True, "temporal_attention": True, "view_attention": False},
    "st_am_vam": {"spatial_attention": True, "temporal_attention": True, "view_attention": True},
}

MULTI_VIEW_SPEC = InputSpec(views="multi", max_streams=1)
SINGLE_VIEW_SPEC = InputSpec(views="single", max_streams=1)


class ViewSubnetwork(nn.Module):
    """One view-specific sub-network (Fig. 3): spatial attention, stacked LSTMs, temporal attention."""

    def __init__(
        self,
        *,
        num_points: int,
        in_channels: int,
        hidden_size: int,
        num_layers: int,
        attention_hidden_size: int,
        spatial_fc_size: int,
        spatial_attention: bool,
        temporal_attention: bool,
        dropout: float,
        spatial_scale: str,
        temporal_pooling: str,
    ) -> None:
        super().__init__()
        in_features = num_points * in_channels
        self.num_points = num_points
        self.spatial_scale = spatial_scale
        self.temporal_pooling = temporal_pooling
        self.spatial = (
            SpatialAttention(in_features, num_points, attention_hidden_size, spatial_fc_size)
            if spatial_attention
            else None
        )
        self.lstms = nn.ModuleList(
            nn.LSTM(in_features if i == 0 else hidden_size, hidden_size, batch_first=True) for i in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.temporal = TemporalAttention(in_features, attention_hidden_size) if temporal_attention else None

    def forward(self, joints: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``joints`` (B, T, K, C), ``mask`` (B, T) -> ``alpha`` (B, hidden), ``gamma`` (B, T, K) or
        None, ``e`` (B, T) or None; both maps are zero on padded frames."""
        b, t, k, c = joints.shape
        x_flat = joints.reshape(b, t, k * c)  # x^j_t
        frame = mask.unsqueeze(-1)
        num_valid = mask.sum(dim=1, keepdim=True).clamp(min=1).to(joints.dtype)
        gamma = None
        if self.spatial is not None:
            gamma = self.spatial(x_flat)  # eq. 1-2
            if self.spatial_scale == "num_joints":
                gamma = gamma * self.num_points  # mean 1 over joints: uniform attention == no attention
            h = (gamma.unsqueeze(-1) * joints).reshape(b, t, k * c)  # eq. 3
            gamma = torch.where(frame, gamma, 0.0)
        else:
            h = x_flat
        for lstm in self.lstms:
            h, _ = lstm(h)
            h = self.dropout(h)  # z^j_t after the top layer
        e = None
        if self.temporal is not None:
            e = torch.where(mask, self.temporal(x_flat), 0.0)  # eq. 4, padding frames weigh nothing
            weights = e
        else:
            weights = mask.to(joints.dtype)
        alpha = torch.where(frame, weights.unsqueeze(-1) * h, 0.0).sum(dim=1)  # alpha_j = sum_t e_t z_t
        if self.temporal_pooling == "mean":
            alpha = alpha / num_valid
        return alpha, gamma, e


class ViewAttentionLSTM(SkeletonModel):
    """The spatio-temporal and view attention network and its ablations.

    Args:
        num_classes, num_joints, num_bodies, in_channels: data dimensions (bodies per view);
            K = num_bodies * num_joints joints per frame and view.
        num_views: view slots of a batch (1 for single-view data).
        multi_view: read multi-view batches (``x`` (N, views, M, T, V, C) + ``view_mask``); False
            reads single-view batches (``x`` (N, M, T, V, C)) as one view.
        spatial_attention, temporal_attention, view_attention: build the modules (:data:`VARIANTS`);
            without one, its weights are equal (every joint 1, every valid frame 1, every present
            view 1 / present views).
        attention_regularization: include eq. 11's lambda1 and lambda2 terms.
        lambda_spatial, lambda_temporal, lambda_weights: lambda1-3 of eq. 11 (paper, NTU: 0.01,
            0.001, 0.0005). lambda3 multiplies the L1 norm of every weight matrix (not the biases).
        hidden_size, num_layers: the stacked LSTMs (paper: 256 units, 3 layers; Table 2: 1-4).
        attention_hidden_size: LSTM units of the spatial and temporal attention modules (paper: 128).
        spatial_fc_size: width of W_xs / W_hs (not given; default = the attention LSTM's 128).
        bilstm_size: units per direction of the view Bi-LSTM (paper: 128), so h_j has 2 x 128.
        view_fc_size: width of w_v1 in eq. 9 (not given; default 128).
        dropout: on every stacked LSTM layer's output and on ``o`` before the classifier (paper: 0.2;
            where it is applied is not given).
        share_view_weights: one sub-network for every view (False: one per view, the paper's
            "view-specific" sub-networks, Fig. 2 draws them in different colours).
        spatial_scale: "softmax" is eq. 2-3 (gamma sums to 1 over K joints); "num_joints" multiplies
            gamma by K (mean 1), as STA-LSTM's configuration does (docs/models/sta-lstm.md).
        temporal_pooling: "sum" is alpha_j = sum_t e_t z_t; "mean" divides by the valid frames.
        temporal_bias_init: initial b_e of eq. 4 (positive: every e_t starts near one, see
            docs/models/sta-lstm.md on dead ReLU gates).
        init: "pytorch" (PyTorch's uniform defaults) or "gaussian" (fan-in scaled normal).
    """

    input_spec: ClassVar[InputSpec] = MULTI_VIEW_SPEC

    def __init__(
        self,
        *,
        num_classes: int,
        num_joints: int,
        num_bodies: int,
        in_channels: int,
        num_views: int,
        multi_view: bool = True,
        spatial_attention: bool = True,
        temporal_attention: bool = True,
        view_attention: bool = True,
        attention_regularization: bool = True,
        lambda_spatial: float = 0.01,
        lambda_temporal: float = 0.001,
        lambda_weights: float = 0.0005,
        hidden_size: int = 256,
        num_layers: int = 3,
        attention_hidden_size: int = 128,
        spatial_fc_size: int = 128,
        bilstm_size: int = 128,
        view_fc_size: int = 128,
        dropout: float = 0.2,
        share_view_weights: bool = False,
        spatial_scale: Literal["softmax", "num_joints"] = "softmax",
        temporal_pooling: Literal["sum", "mean"] = "sum",
        temporal_bias_init: float = 1.0,
        init: Literal["pytorch", "gaussian"] = "pytorch",
    ) -> None:
        super().__init__()
        sizes = {
            "num_classes": num_classes,
            "num_joints": num_joints,
            "num_bodies": num_bodies,
            "in_channels": in_channels,
            "num_views": num_views,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "attention_hidden_size": attention_hidden_size,
            "spatial_fc_size": spatial_fc_size,
            "bilstm_size": bilstm_size,
            "view_fc_size": view_fc_size,
        }
        for name, value in sizes.items():
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (
            ("lambda_spatial", lambda_spatial),
            ("lambda_temporal", lambda_temporal),
            ("lambda_weights", lambda_weights),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if spatial_scale not in ("softmax", "num_joints"):
            raise ValueError(f"spatial_scale must be 'softmax' or 'num_joints', got {spatial_scale!r}")
        if temporal_pooling not in ("sum", "mean"):
            raise ValueError(f"temporal_pooling must be 'sum' or 'mean', got {temporal_pooling!r}")
        if init not in ("pytorch", "gaussian"):
            raise ValueError(f"init must be 'pytorch' or 'gaussian', got {init!r}")
        if not multi_view and num_views != 1:
            raise ValueError(f"single-view batches have one view, got num_views={num_views}")

        self.num_classes = num_classes
        self.num_joints = num_joints
        self.num_bodies = num_bodies
        self.in_channels = in_channels
        self.num_views = num_views
        self.multi_view = multi_view
        self.num_points = num_bodies * num_joints
        self.has_spatial = spatial_attention
        self.has_temporal = temporal_attention
        self.has_view = view_attention
        self.attention_regularization = attention_regularization
        self.lambda_spatial = lambda_spatial
        self.lambda_temporal = lambda_temporal
        self.lambda_weights = lambda_weights
        self.share_view_weights = share_view_weights

        def subnetwork() -> ViewSubnetwork:
            return ViewSubnetwork(
                num_points=self.num_points,
                in_channels=in_channels,
                hidden_size=hidden_size,
                num_layers=num_layers,
                attention_hidden_size=attention_hidden_size,
                spatial_fc_size=spatial_fc_size,
                spatial_attention=spatial_attention,
                temporal_attention=temporal_attention,
                dropout=dropout,
                spatial_scale=spatial_scale,
                temporal_pooling=temporal_pooling,
            )

        self.subnetworks = nn.ModuleList(subnetwork() for _ in range(1 if share_view_weights else num_views))
        self.bilstm = nn.LSTM(hidden_size, bilstm_size, batch_first=True, bidirectional=True)  # eq. 6-8
        # eq. 9; over a single view the softmax is 1 whatever the scores, so single-view data build none
        with_view = view_attention and multi_view
        self.view_w1 = nn.Linear(2 * bilstm_size, view_fc_size, bias=False) if with_view else None  # w_v1
        self.view_w2 = nn.Linear(view_fc_size, 1, bias=False) if with_view else None  # w_v2
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * bilstm_size, num_classes)

        for module in self.children():
            if init == "gaussian":
                init_gaussian_(module, None)
            else:
                init_pytorch_(module)
        for sub in self.subnetworks:
            if sub.temporal is not None:
                nn.init.constant_(sub.temporal.w_x.bias, temporal_bias_init)

        # how the report draws each attention map (SkeletonModel.attention_kinds)
        kinds: dict[str, str | dict[str, Any]] = {}
        if spatial_attention:
            # "view": whose skeleton the map is drawn on (training/skeleton_plots.py)
            kinds.update({self._spatial_name(j): {"kind": "joints", "view": j} for j in range(num_views)})
        if temporal_attention:
            kinds["temporal"] = {"kind": "frames", "labels": [f"view {j + 1}" for j in range(num_views)]}
        if view_attention and multi_view:
            kinds["view"] = "views"
        self.attention_kinds = kinds

    def _spatial_name(self, view: int) -> str:
        return f"spatial_view{view + 1}" if self.multi_view else "spatial"

    # ----------------------------------------------------------------------------- forward
    def _inputs(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        dims = {"num_bodies": self.num_bodies, "num_joints": self.num_joints, "in_channels": self.in_channels}
        if self.multi_view:
            return check_multiview_batch(batch, num_views=self.num_views, **dims)
        x, mask = check_sequence_batch(batch, **dims)
        return x.unsqueeze(1), mask, torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device)

    def _view_features(self, joints: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Every view's sub-network: ``joints`` (N, views, T, K, C) -> alpha (N, views, hidden),
        gamma (N, views, T, K) or None, e (N, views, T) or None."""
        n, w, t, k, c = joints.shape
        if self.share_view_weights:  # one network: the views are more samples of one batch
            alpha, gamma, e = self.subnetworks[0](joints.reshape(n * w, t, k, c), mask.repeat_interleave(w, dim=0))
            return (
                alpha.reshape(n, w, -1),
                None if gamma is None else gamma.reshape(n, w, t, k),
                None if e is None else e.reshape(n, w, t),
            )
        outs = [sub(joints[:, j], mask) for j, sub in enumerate(self.subnetworks)]
        alpha = torch.stack([o[0] for o in outs], dim=1)
        gamma = None if outs[0][1] is None else torch.stack([o[1] for o in outs], dim=1)
        e = None if outs[0][2] is None else torch.stack([o[2] for o in outs], dim=1)
        return alpha, gamma, e

    def _bilstm(self, z: Tensor, view_mask: Tensor) -> Tensor:
        """Eq. 5-8 over the present views only, in camera order; absent slots get zeros."""
        n, w, _ = z.shape
        # present views first (stable: camera order kept), then pack to each sample's view count
        order = torch.argsort((~view_mask).to(torch.int8), dim=1, stable=True)
        compact = z.gather(1, order.unsqueeze(-1).expand_as(z))
        lengths = view_mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(compact, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.bilstm(packed)
        h_compact, _ = pad_packed_sequence(out, batch_first=True, total_length=w)
        inverse = torch.argsort(order, dim=1)
        return h_compact.gather(1, inverse.unsqueeze(-1).expand(n, w, h_compact.shape[-1]))

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        x, mask, view_mask = self._inputs(batch)
        n, w, m, t, v, c = x.shape
        joints = x.permute(0, 1, 3, 2, 4, 5).reshape(n, w, t, m * v, c)  # x^j_{t,k}, k body-major
        alpha, gamma, e = self._view_features(joints, mask)
        present = view_mask.to(x.dtype)  # (N, views)
        num_present = present.sum(dim=1)
        h = self._bilstm(alpha, view_mask)  # H = (h_1, ..., h_v), eq. 8

        if self.view_w1 is not None and self.view_w2 is not None:
            scores = self.view_w2(torch.tanh(self.view_w1(h))).squeeze(-1)  # eq. 9
            beta = torch.softmax(scores.masked_fill(~view_mask, float("-inf")), dim=1)
        else:
            beta = present / num_present.unsqueeze(-1)  # equal weight on every present view
        o = (beta.unsqueeze(-1) * h).sum(dim=1)  # eq. 10
        logits = self.classifier(self.dropout(o))

        attention: dict[str, Tensor] = {}
        regularization: dict[str, Tensor] = {}
        absent = ~view_mask
        valid = mask.to(x.dtype)
        # frames x present views per sample: the T * v of eq. 11
        frames_views = (valid.sum(dim=1) * num_present).clamp(min=1.0)
        if gamma is not None:
            for j in range(w):
                attention[self._spatial_name(j)] = (
                    gamma[:, j].detach().masked_fill(absent[:, j, None, None], float("nan"))
                )
            if self.attention_regularization and self.lambda_spatial > 0:
                # eq. 11, 2nd term: lambda1 sum_k (1 - sum_j sum_t gamma^j_{t,k} / (v T))^2
                gamma_sum = (gamma * present[:, :, None, None]).sum(dim=(1, 2))
                mean_gamma = gamma_sum / frames_views.unsqueeze(-1)
                regularization["spatial_attention"] = self.lambda_spatial * ((1.0 - mean_gamma) ** 2).sum(-1).mean()
        if e is not None:
            attention["temporal"] = e.detach().transpose(1, 2).masked_fill(absent[:, None, :], float("nan"))
            if self.attention_regularization and self.lambda_temporal > 0:
                # eq. 11, 3rd term: lambda2 / (T v) sum_j sum_t ||e^j_t||^2 (e^j_t is a scalar)
                e_sq = (e**2 * present[:, :, None]).sum(dim=(1, 2))
                regularization["temporal_attention"] = self.lambda_temporal * (e_sq / frames_views).mean()
        if self.has_view and self.multi_view:
            attention["view"] = beta.detach().masked_fill(absent, float("nan"))
        if self.lambda_weights > 0:
            regularization["weight_l1"] = self.lambda_weights * self.weight_l1()  # eq. 11, 4th term
        return ModelOutput(logits=logits, regularization=regularization, attention=attention)

    def weight_l1(self) -> Tensor:
        """Sum of |w| over every weight matrix (not bias) of the network: ||W_sv||_1 of eq. 11."""
        total = self.classifier.weight.new_zeros(())
        for name, param in self.named_parameters():
            if "weight" in name:
                total = total + param.abs().sum()
        return total


def _build(data: DataDescription | None, variant: str, multi_view: bool, kwargs: dict[str, Any]) -> ViewAttentionLSTM:
    check_variant(VARIANTS, variant, kwargs, family="view-attention")
    if data is not None:
        reject_dimension_kwargs(
            kwargs,
            ("num_classes", "num_joints", "num_bodies", "in_channels", "num_views"),
            family="the view-attention network",
        )
        if len(data.streams) != 1:
            raise ValueError(f"the view-attention network reads one stream; got streams {list(data.streams)}")
        if data.multi_view != multi_view:
            which = "view_attention" if data.multi_view else "view_attention_single"
            raise ValueError(f"multi_view={data.multi_view} data: use model {which!r}")
        kwargs = {
            "num_classes": data.num_classes,
            "num_joints": data.num_joints,
            "num_bodies": data.num_bodies,
            "in_channels": data.in_channels,
            "num_views": data.num_views,
            **kwargs,
        }
    elif not multi_view:
        kwargs.setdefault("num_views", 1)
    return ViewAttentionLSTM(**{**kwargs, **VARIANTS[variant]}, multi_view=multi_view)


@register_model("view_attention", input_spec=MULTI_VIEW_SPEC)
def build_view_attention(
    data: DataDescription | None = None, *, variant: str = "st_am_vam", **kwargs: Any
) -> ViewAttentionLSTM:
    """The network on a multi-view table (one sub-network per view slot); other keyword arguments
    go to :class:`ViewAttentionLSTM`. Without ``data`` the dimensions (incl. ``num_views``) are given."""
    return _build(data, variant, True, dict(kwargs))


@register_model("view_attention_single", input_spec=SINGLE_VIEW_SPEC)
def build_view_attention_single(
    data: DataDescription | None = None, *, variant: str = "st_am_vam", **kwargs: Any
) -> ViewAttentionLSTM:
    """The same network on single-view data: one view-specific sub-network and the Bi-LSTM over that
    one view (the view attention of a single view is 1, so ``st_am_vam`` equals ``st_am`` here)."""
    return _build(data, variant, False, dict(kwargs))
