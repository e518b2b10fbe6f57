"""STA-LSTM: deep LSTM with spatial and temporal attention.

Song, Lan, Xing, Zeng, Liu, "An End-to-End Spatio-Temporal Attention Model for Human Action
Recognition from Skeleton Data", AAAI 2017 (text in ``shared/papers/sta_lstm.txt``).

Three subnetworks read the same per-frame input ``x_t``, the K = M * V joints of all bodies
concatenated (body-major, K * C numbers):

* spatial attention (Sec. 4.1): one LSTM layer gives ``h^s_{t-1}``;
  ``s_t = U_s tanh(W_xs x_t + W_hs h^s_{t-1} + b_s) + b_us`` (eq. 2), ``alpha_t = softmax_k(s_t)``
  (eq. 3) and the main network sees ``x'_{t,k} = alpha_{t,k} x_{t,k}``;
* main network: stacked LSTM layers (3 x 100) with dropout and a per-frame classifier ``z_t``;
* temporal attention (Sec. 4.2): one LSTM layer gives ``h^p_{t-1}``;
  ``beta_t = ReLU(w_x x_t + w_h h^p_{t-1} + b)`` (eq. 6) and ``o = sum_t beta_t z_t`` (eq. 4) over
  the valid frames.

The loss terms of eq. 7 beyond the cross-entropy are returned in ``ModelOutput.regularization``,
already weighted. Algorithm 1 (joint training) is expressed as phases (:func:`algorithm_1_phases`)
that the trainer applies through :meth:`STALSTM.configure_phase`. Choices the paper leaves open are
listed in ``docs/models/sta-lstm.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from skeleton_attention.models.base import (
    DataDescription,
    InputSpec,
    ModelOutput,
    SkeletonModel,
    check_sequence_batch,
)

# the attention blocks live in models/blocks.py (shared with the view-attention network) and stay
# importable from here: `from skeleton_attention.models.sta_lstm import TemporalAttention` works
from skeleton_attention.models.blocks import SpatialAttention, TemporalAttention
from skeleton_attention.models.blocks import init_gaussian_ as _init_gaussian_
from skeleton_attention.models.blocks import init_pytorch_ as _init_pytorch_
from skeleton_attention.models.registry import register_model

AttentionMode = Literal["learned", "frozen", "ones"]
_ATTENTION_MODES = ("learned", "frozen", "ones")
_MAIN_MODES = ("train", "frozen")
#: Phase keys this model reads; any other key (``epochs``, ``name``, ...) belongs to the trainer.
PHASE_KEYS = frozenset({"main_layers", "spatial", "temporal", "main", "main_generation"})

#: The Fig. 7 ablations of the paper (Sec. 5.3) as constructor arguments. "w/o reg." drops the
#: 2nd and 3rd terms of eq. 7 but keeps the cross-entropy and the L1 weight term (paper: "only
#: includes 1st and 4th items in (7)").
VARIANTS: dict[str, dict[str, bool]] = {
    "lstm": {"spatial_attention": False, "temporal_attention": False},
    "sa_lstm_noreg": {
        "spatial_attention": True,
        "temporal_attention": False,
        "attention_regularization": False,
    },
    "sa_lstm": {"spatial_attention": True, "temporal_attention": False, "attention_regularization": True},
    "ta_lstm_noreg": {
        "spatial_attention": False,
        "temporal_attention": True,
        "attention_regularization": False,
    },
    "ta_lstm": {"spatial_attention": False, "temporal_attention": True, "attention_regularization": True},
    "sta_lstm": {"spatial_attention": True, "temporal_attention": True, "attention_regularization": True},
}


class STALSTM(SkeletonModel):
    """The STA-LSTM family (LSTM, SA-LSTM, TA-LSTM, with or without attention regularization).

    Args:
        num_classes, num_joints, num_bodies, in_channels: data dimensions; K = num_bodies * num_joints.
        spatial_attention, temporal_attention: build the attention subnetworks; when off the
            weights are fixed (alpha = 1 for every joint, beta = 1 for every frame).
        attention_regularization: include eq. 7's spatial (lambda1) and temporal (lambda2) terms.
        lambda_spatial, lambda_temporal, lambda_weights: lambda1-3 of eq. 7. Defaults are the paper's
            NTU values; the paper's SBU values are 0.001, 0.0001, 0.0005.
        temporal_reg_power: p in lambda2 / T * sum_t |beta_t|^p; 1 is the paper's l2 norm of the
            scalar beta_t, 2 the squared variant.
        temporal_pooling: "sum" is eq. 4, o = sum_t beta_t z_t; "mean" divides by the number of
            valid frames (o = mean_t beta_t z_t, the convention of later re-implementations).
        hidden_size, num_main_layers: main LSTM (paper: 100 units, 3 layers).
        attention_hidden_size: LSTM units of each attention subnetwork (paper: 100).
        spatial_fc_size: width of the first spatial FC layer (not given in the paper).
        dropout: dropout on the output of every main LSTM layer (value not given in the paper).
        init: "gaussian" (Algorithm 1 step 1) or "pytorch" (PyTorch's uniform defaults).
        init_std: std of the Gaussian; None scales each matrix by 1/sqrt(fan_in).
        temporal_bias_init: initial bias b of the frame gate (eq. 6). A positive value starts every
            beta_t near one (the equal-weight baseline); at 0, whole samples can start, or fall, with
            beta_t = 0 at every frame, where the ReLU passes no gradient and the sample stays at the
            uniform prediction (see docs/models/sta-lstm.md for the measurement).
        spatial_scale: "softmax" is eq. 3 (alpha sums to 1 over the K joints, so the main network
            sees inputs about K times smaller than with alpha = 1); "num_joints" multiplies alpha by
            K (mean 1 over joints), so uniform attention equals the no-attention input, and the
            spatial regularizer's target sum_t alpha_{t,k} = T is reachable. Maps and regularizer
            use the alpha actually applied.
    """

    #: one single-view stream (``x``), any length (every frame, masked)
    input_spec = InputSpec(views="single", max_streams=1)

    def __init__(
        self,
        *,
        num_classes: int,
        num_joints: int,
        num_bodies: int,
        in_channels: int,
        spatial_attention: bool = True,
        temporal_attention: bool = True,
        attention_regularization: bool = True,
        lambda_spatial: float = 0.01,
        lambda_temporal: float = 0.001,
        lambda_weights: float = 0.00005,
        temporal_reg_power: float = 1.0,
        temporal_pooling: Literal["sum", "mean"] = "sum",
        hidden_size: int = 100,
        num_main_layers: int = 3,
        attention_hidden_size: int = 100,
        spatial_fc_size: int = 100,
        dropout: float = 0.5,
        init: Literal["gaussian", "pytorch"] = "gaussian",
        init_std: float | None = None,
        temporal_bias_init: float = 1.0,
        spatial_scale: Literal["softmax", "num_joints"] = "softmax",
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("num_joints", num_joints),
            ("num_bodies", num_bodies),
            ("in_channels", in_channels),
            ("hidden_size", hidden_size),
            ("num_main_layers", num_main_layers),
            ("attention_hidden_size", attention_hidden_size),
            ("spatial_fc_size", spatial_fc_size),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (
            ("lambda_spatial", lambda_spatial),
            ("lambda_temporal", lambda_temporal),
            ("lambda_weights", lambda_weights),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if temporal_reg_power <= 0:
            raise ValueError(f"temporal_reg_power must be > 0, got {temporal_reg_power!r}")
        if temporal_pooling not in ("sum", "mean"):
            raise ValueError(f"temporal_pooling must be 'sum' or 'mean', got {temporal_pooling!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if init not in ("gaussian", "pytorch"):
            raise ValueError(f"init must be 'gaussian' or 'pytorch', got {init!r}")
        if spatial_scale not in ("softmax", "num_joints"):
            raise ValueError(f"spatial_scale must be 'softmax' or 'num_joints', got {spatial_scale!r}")
        if init_std is not None and init_std <= 0:
            raise ValueError(f"init_std must be > 0 or None, got {init_std!r}")

        self.num_classes = num_classes
        self.num_joints = num_joints
        self.num_bodies = num_bodies
        self.in_channels = in_channels
        self.num_points = num_bodies * num_joints  # K
        self.has_spatial = spatial_attention
        self.has_temporal = temporal_attention
        self.attention_regularization = attention_regularization
        self.lambda_spatial = lambda_spatial
        self.lambda_temporal = lambda_temporal
        self.lambda_weights = lambda_weights
        self.temporal_reg_power = temporal_reg_power
        self.temporal_pooling = temporal_pooling
        self.num_main_layers = num_main_layers
        self.init = init
        self.init_std = init_std

        in_features = self.num_points * in_channels
        self.spatial = (
            SpatialAttention(in_features, self.num_points, attention_hidden_size, spatial_fc_size)
            if spatial_attention
            else None
        )
        self.temporal = TemporalAttention(in_features, attention_hidden_size) if temporal_attention else None
        self.main_lstms = nn.ModuleList(
            nn.LSTM(in_features if i == 0 else hidden_size, hidden_size, batch_first=True)
            for i in range(num_main_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)  # z_t from the top main layer
        # Algorithm 1 steps 2 and 5 train the main network "with only one LSTM layer"; that
        # network needs its own per-frame classifier because the top classifier reads layer-3
        # features. It is unused (and frozen) once the network has all its layers.
        self.shallow_classifier = nn.Linear(hidden_size, num_classes) if num_main_layers > 1 else None

        self.temporal_bias_init = temporal_bias_init
        self.spatial_scale = spatial_scale
        self.register_buffer("main_generation", torch.zeros((), dtype=torch.long))
        for module in self.children():
            self._init_module(module)
        self.configure_phase({})

    # ----------------------------------------------------------------------------- phases
    def _init_module(self, module: nn.Module) -> None:
        if self.init == "gaussian":
            _init_gaussian_(module, self.init_std)
        else:
            _init_pytorch_(module)
        if module is self.temporal:
            nn.init.constant_(self.temporal.w_x.bias, self.temporal_bias_init)

    def _main_modules(self) -> Iterator[nn.Module]:
        yield from self.main_lstms
        yield self.classifier
        if self.shallow_classifier is not None:
            yield self.shallow_classifier

    def check_phase(self, phase: Mapping[str, Any]) -> tuple[str, str, str, int, int | None]:
        """Validate one phase against this model without applying it (the trainer checks every
        phase before the first epoch). Returns ``(spatial, temporal, main, main_layers,
        main_generation)`` with the defaults filled in.

        Raises ``ValueError`` naming the phase and the missing module when a phase uses an
        attention subnetwork this variant does not have (build the phases with
        ``algorithm_1_phases(variant=...)``).
        """
        label = f"phase {phase['name']!r}" if phase.get("name") is not None else "phase"
        spatial = phase.get("spatial", "learned" if self.has_spatial else "ones")
        temporal = phase.get("temporal", "learned" if self.has_temporal else "ones")
        main = phase.get("main", "train")
        depth = phase.get("main_layers", self.num_main_layers)
        generation = phase.get("main_generation")
        for key, value, built in (
            ("spatial", spatial, self.has_spatial),
            ("temporal", temporal, self.has_temporal),
        ):
            if value not in _ATTENTION_MODES:
                raise ValueError(f"{label}: {key!r} must be one of {_ATTENTION_MODES}, got {value!r}")
            if value != "ones" and not built:
                raise ValueError(
                    f"{label} sets {key}={value!r}, but this model has no {key} attention module "
                    f"(STALSTM.{key} is None: built with {key}_attention=False, e.g. by its variant); "
                    "use algorithm_1_phases(variant=...) or set that phase's "
                    f"{key!r} to 'ones'"
                )
        if main not in _MAIN_MODES:
            raise ValueError(f"{label}: 'main' must be one of {_MAIN_MODES}, got {main!r}")
        if isinstance(depth, bool) or depth not in (1, self.num_main_layers):
            raise ValueError(f"{label}: 'main_layers' must be 1 or {self.num_main_layers}, got {depth!r}")
        if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
            raise ValueError(f"{label}: 'main_generation' must be an int, got {generation!r}")
        return spatial, temporal, main, int(depth), generation

    def configure_phase(self, phase: Mapping[str, Any]) -> None:
        """Apply one training phase (Algorithm 1); keys not given take the full-model default.

        Keys (others, e.g. ``epochs``, are the trainer's and ignored here):

        * ``main_layers``: 1 or ``num_main_layers`` (default). With 1, only the first main LSTM
          layer runs and ``shallow_classifier`` gives ``z_t``; growing back keeps layer 1's weights.
        * ``spatial`` / ``temporal``: ``"learned"`` (default when the subnetwork exists),
          ``"frozen"`` (used, not trained) or ``"ones"`` (weights fixed to 1, subnetwork unused).
        * ``main``: ``"train"`` (default) or ``"frozen"`` for the main layers and classifier in use.
        * ``main_generation``: int, the initialization round of the main network. When it is larger
          than the round recorded in the model (buffer ``main_generation``, saved in the state
          dict, 0 at construction), all main LSTM layers and both classifiers are re-initialized
          and the new round is recorded. Replaying a phase (resume, loading an artifact before or
          after ``load_state_dict``) therefore never re-initializes a network twice.

        Sets ``requires_grad`` accordingly: only the parameters that take part in the forward pass
        and are meant to learn stay trainable.
        """
        spatial, temporal, main, depth, generation = self.check_phase(phase)
        if generation is not None and generation > int(self.main_generation):
            for module in self._main_modules():
                self._init_module(module)
            self.main_generation.fill_(generation)
        self.spatial_mode: AttentionMode = spatial
        self.temporal_mode: AttentionMode = temporal
        self.main_depth: int = int(depth)

        for param in self.parameters():
            param.requires_grad_(False)
        trainable: list[nn.Module] = []
        if self.spatial is not None and spatial == "learned":
            trainable.append(self.spatial)
        if self.temporal is not None and temporal == "learned":
            trainable.append(self.temporal)
        if main == "train":
            trainable.extend(self._active_main_modules())
        for module in trainable:
            for param in module.parameters():
                param.requires_grad_(True)

    def _active_classifier(self) -> nn.Linear:
        if self.main_depth == self.num_main_layers or self.shallow_classifier is None:
            return self.classifier
        return self.shallow_classifier

    def _active_main_modules(self) -> list[nn.Module]:
        return [*self.main_lstms[: self.main_depth], self._active_classifier()]

    def active_modules(self) -> list[nn.Module]:
        """The submodules the forward pass uses in the current phase (their weights enter the L1 term)."""
        modules: list[nn.Module] = []
        if self.spatial is not None and self.spatial_mode != "ones":
            modules.append(self.spatial)
        if self.temporal is not None and self.temporal_mode != "ones":
            modules.append(self.temporal)
        return modules + self._active_main_modules()

    # ----------------------------------------------------------------------------- forward
    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:
        x, mask = check_sequence_batch(
            batch, num_bodies=self.num_bodies, num_joints=self.num_joints, in_channels=self.in_channels
        )
        n, m, t, v, c = x.shape
        joints = x.permute(0, 2, 1, 3, 4).reshape(n, t, m * v, c)  # x_{t,k}, k body-major
        x_flat = joints.reshape(n, t, m * v * c)  # x_t
        valid = mask.to(x.dtype)
        num_valid = valid.sum(dim=1)  # T per sample
        frame = mask.unsqueeze(-1)  # torch.where (not a product) so padding can never leak NaN

        attention: dict[str, Tensor] = {}
        regularization: dict[str, Tensor] = {}

        if self.spatial is not None and self.spatial_mode != "ones":
            alpha = self.spatial(x_flat)  # eq. 2-3
            if self.spatial_scale == "num_joints":
                alpha = alpha * self.num_points  # mean 1 over joints: uniform attention == alpha = 1
            main_in = (alpha.unsqueeze(-1) * joints).reshape(n, t, -1)  # x'_{t,k} = alpha_{t,k} x_{t,k}
            alpha_valid = torch.where(frame, alpha, 0.0)
            attention["spatial"] = alpha_valid.detach()
            if self.attention_regularization:
                # eq. 7, 2nd term: lambda1 * sum_k (1 - sum_t alpha_{t,k} / T)^2 over valid frames
                mean_alpha = alpha_valid.sum(dim=1) / num_valid.unsqueeze(-1)
                regularization["spatial_attention"] = self.lambda_spatial * ((1.0 - mean_alpha) ** 2).sum(-1).mean()
        else:
            main_in = x_flat  # alpha = 1 for every joint

        h = main_in
        for lstm in self.main_lstms[: self.main_depth]:
            h, _ = lstm(h)
            h = self.dropout(h)
        z = self._active_classifier()(h)  # z_t, (N, T, classes)

        if self.temporal is not None and self.temporal_mode != "ones":
            beta = self.temporal(x_flat)  # eq. 6
            beta = torch.where(mask, beta, 0.0)  # padding frames contribute nothing
            attention["temporal"] = beta.detach()
            if self.attention_regularization:
                # eq. 7, 3rd term: lambda2 / T * sum_t ||beta_t||_2 (beta_t is a scalar, so |beta_t|)
                per_frame = beta.abs() ** self.temporal_reg_power
                regularization["temporal_attention"] = self.lambda_temporal * (per_frame.sum(1) / num_valid).mean()
        else:
            beta = valid  # equal weight (one) on every valid frame
        logits = torch.where(frame, beta.unsqueeze(-1) * z, 0.0).sum(dim=1)  # eq. 4
        if self.temporal_pooling == "mean":
            logits = logits / num_valid.unsqueeze(-1)

        if self.lambda_weights > 0:
            # eq. 7, 4th term: lambda3 * ||W||_1 over the weight matrices the forward pass uses
            regularization["weight_l1"] = self.lambda_weights * self.weight_l1()

        return ModelOutput(logits=logits, regularization=regularization, attention=attention)

    def weight_l1(self) -> Tensor:
        """Sum of |w| over every weight matrix (not bias) of the modules in use this phase."""
        total = self.classifier.weight.new_zeros(())
        for module in self.active_modules():
            for name, param in module.named_parameters():
                if "weight" in name:
                    total = total + param.abs().sum()
        return total


@register_model("sta_lstm", input_spec=STALSTM.input_spec)
def build_sta_lstm(
    data: DataDescription | None = None,
    *,
    variant: str = "sta_lstm",
    **kwargs: Any,
) -> STALSTM:
    """Build one of the :data:`VARIANTS` for ``data``; other keyword arguments go to :class:`STALSTM`.

    Without ``data``, ``num_classes, num_joints, num_bodies, in_channels`` are passed directly.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown STA-LSTM variant {variant!r}; known: {sorted(VARIANTS)}")
    for key, value in VARIANTS[variant].items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"variant {variant!r} sets {key}={value!r}, which conflicts with {key}={kwargs[key]!r}")
    if data is not None:
        given = sorted({"num_classes", "num_joints", "num_bodies", "in_channels"} & set(kwargs))
        if given:
            raise ValueError(f"STA-LSTM takes its dimensions from data=, not from {given}")
        if data.multi_view or len(data.streams) != 1:
            raise ValueError(
                f"STA-LSTM reads one single-view stream; got streams {list(data.streams)}, multi_view={data.multi_view}"
            )
        kwargs = {
            "num_classes": data.num_classes,
            "num_joints": data.num_joints,
            "num_bodies": data.num_bodies,
            "in_channels": data.in_channels,
            **kwargs,
        }
    return STALSTM(**{**kwargs, **VARIANTS[variant]})


def iterations_to_epochs(iterations: int, *, num_samples: int, batch_size: int) -> int:
    """Round a number of optimizer iterations up to whole epochs (at least one)."""
    if iterations < 0 or num_samples < 1 or batch_size < 1:
        raise ValueError(
            f"need iterations >= 0, num_samples >= 1, batch_size >= 1; got {iterations}, {num_samples}, {batch_size}"
        )
    steps_per_epoch = math.ceil(num_samples / batch_size)
    return max(1, math.ceil(iterations / steps_per_epoch))


def algorithm_1_phases(
    *,
    pretrain_epochs: int = 10,
    n1_epochs: int = 7,
    n2_epochs: int = 4,
    reset_main_before_spatial: bool = True,
    num_main_layers: int = 3,
    variant: str = "sta_lstm",
) -> list[dict[str, Any]]:
    """Algorithm 1 (joint training strategy), steps 2-9, as phases for the trainer.

    Step 1 (Gaussian initialization) happens in the constructor. ``n1_epochs`` / ``n2_epochs`` are
    the paper's N1 = 1000 / N2 = 500 iterations expressed in epochs (the defaults are NTU-CS at
    batch 256: 157 iterations per epoch, rounded up; see :func:`iterations_to_epochs`).
    ``pretrain_epochs`` is the length of the 1-layer pre-training steps 2 and 5, which the paper
    runs "to obtain" the attention model without a count. ``reset_main_before_spatial``
    re-initializes the main network at step 5 (``main_generation`` 1 from step 5 on) so that the
    spatial attention is pre-trained separately from the temporal one, as the temporal one was
    (step 2). ``num_main_layers`` is the depth the main network grows to in steps 3 and 6 (the
    paper's three).

    ``variant`` (one of :data:`VARIANTS`) keeps the steps that apply to a model with only some of
    the subnetworks: steps 2-4 exist to obtain the temporal attention and are kept only when the
    variant has it, steps 5-7 likewise for the spatial attention; steps 8-9 (train the main
    network with the attention fixed, then fine-tune everything jointly) are always kept, with an
    absent subnetwork fixed to ones. The step-5 reset only happens after steps 2-4 ran. So
    ``sa_lstm`` gets steps 5-9, ``ta_lstm`` steps 2-4 and 8-9, ``lstm`` steps 8-9 (plain training
    of the main network for N1 + N2 epochs).
    """
    for name, value in (
        ("pretrain_epochs", pretrain_epochs),
        ("n1_epochs", n1_epochs),
        ("n2_epochs", n2_epochs),
        ("num_main_layers", num_main_layers),
    ):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown STA-LSTM variant {variant!r}; known: {sorted(VARIANTS)}")
    has_spatial = VARIANTS[variant]["spatial_attention"]
    has_temporal = VARIANTS[variant]["temporal_attention"]
    full, pre, n1, n2 = num_main_layers, pretrain_epochs, n1_epochs, n2_epochs
    table = [
        # step, name, epochs, main layers, spatial, temporal, kept for this variant
        (2, "pretrain_temporal", pre, 1, "ones", "learned", has_temporal),
        (3, "grow_main_temporal_fixed", n1, full, "ones", "frozen", has_temporal),
        (4, "finetune_temporal", n2, full, "ones", "learned", has_temporal),
        (5, "pretrain_spatial", pre, 1, "learned", "ones", has_spatial),
        (6, "grow_main_spatial_fixed", n1, full, "frozen", "ones", has_spatial),
        (7, "finetune_spatial", n2, full, "learned", "ones", has_spatial),
        (8, "train_main", n1, full, "frozen", "frozen", True),
        (9, "joint_finetune", n2, full, "learned", "learned", True),
    ]
    # the step-5 reset separates the spatial pre-training from a main network trained in steps 2-4
    reset = int(reset_main_before_spatial and has_temporal and has_spatial)
    return [
        {
            "step": step,
            "name": name,
            "epochs": int(epochs),
            "main_layers": layers,
            "spatial": spatial if has_spatial else "ones",
            "temporal": temporal if has_temporal else "ones",
            "main": "train",
            "main_generation": reset if step >= 5 else 0,
        }
        for step, name, epochs, layers, spatial, temporal, kept in table
        if kept
    ]


#: Algorithm 1 with the default epoch counts; build other schedules with :func:`algorithm_1_phases`.
ALGORITHM_1_PHASES: list[dict[str, Any]] = algorithm_1_phases()
