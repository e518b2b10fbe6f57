"""What every model family shares: the output record, the base class and batch checks.

The trainer (``skeleton_attention.training``) only talks to models through this module:

* ``model(batch) -> ModelOutput``; the loss is ``cross_entropy(logits) + sum of the cross-entropies
  of head_logits + sum(regularization.values())``.
* ``model.configure_phase(phase)`` is called at the start of each training phase (a dict from the
  model's schedule, e.g. STA-LSTM's Algorithm 1); the trainer then rebuilds its optimizer over the
  parameters whose ``requires_grad`` is True.

And the data side talks to a model family through two records:

* :class:`InputSpec` (``SkeletonModel.input_spec``, or ``register_model(..., input_spec=)``): what
  batches the family consumes (single or multi-view, which streams, fixed length or not). The data
  side picks the dataset and collate from it and fails early on a mismatch.
* :class:`DataDescription`: what the prepared data look like (streams and channels, views, bodies,
  frames, joints and layout, classes). Builders receive it instead of loose integers; the model
  artifact stores it as a plain dict (:meth:`DataDescription.to_dict`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from skeleton_attention.skeletons.layouts import LAYOUTS, JointLayout


@dataclass
class ModelOutput:
    """What a model returns for one batch.

    ``logits`` (N, classes) is the prediction. ``head_logits`` are extra classifier heads whose
    cross-entropies the trainer adds to the loss. ``regularization`` holds named scalar loss
    terms that are already multiplied by their weights (the trainer adds them as they are).
    ``attention`` holds named attention maps for plots (may be detached).
    """

    logits: Tensor
    head_logits: dict[str, Tensor] = field(default_factory=dict)
    regularization: dict[str, Tensor] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)


VIEW_MODES = ("single", "multi")


@dataclass(frozen=True)
class InputSpec:
    """The batches a model family consumes.

    ``views``: ``"single"`` gives ``x`` (N, M, T, V, C); ``"multi"`` gives ``x`` (N, views, M, T, V, C)
    plus ``view_mask`` (N, views) bool, read from a multi-view table. ``streams``: the stream names
    the model needs, in order (None = any the data settings choose); ``max_streams``: how many it
    can take (1 = it reads ``x`` only). ``fixed_length``: every sample must have the same T (the
    sampling must fix it, e.g. ``resample``), as for models with a fixed temporal size.
    ``collate``: a module-level function turning a list of dataset items into a batch, for a family
    with its own batch layout (e.g. MANs' image per sample); None = the standard
    ``training.batches.collate_samples``.
    """

    views: Literal["single", "multi"] = "single"
    streams: tuple[str, ...] | None = None
    max_streams: int | None = None
    fixed_length: bool = False
    collate: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.views not in VIEW_MODES:
            raise ValueError(f"InputSpec.views must be one of {VIEW_MODES}, got {self.views!r}")
        if self.max_streams is not None and self.max_streams < 1:
            raise ValueError(f"InputSpec.max_streams must be >= 1 or None, got {self.max_streams}")

    @property
    def multi_view(self) -> bool:
        return self.views == "multi"

    def check(self, *, streams: Sequence[str], fixed_length: int | None, model: str = "the model") -> None:
        """Fail clearly when the data settings cannot feed this model (the view check needs the
        table and happens in the dataset)."""
        streams = tuple(streams)
        if self.streams is not None and streams != self.streams:
            raise ValueError(f"{model} consumes the streams {list(self.streams)}; data.streams is {list(streams)}")
        if self.max_streams is not None and len(streams) > self.max_streams:
            raise ValueError(
                f"{model} takes at most {self.max_streams} stream(s) (batch key 'x'); data.streams is {list(streams)}"
            )
        if self.fixed_length and fixed_length is None:
            raise ValueError(
                f"{model} needs a fixed number of frames: use a data.sampling that fixes T "
                "(e.g. mode: resample, or a step list ending in resample / crop with resize / segments)"
            )


@dataclass(frozen=True)
class DataDescription:
    """What a model is built for, from the prepared table and the data settings.

    ``streams`` and ``channels`` are parallel (channels per stream); ``num_views`` is 1 and
    ``multi_view`` False for single-view data; ``num_bodies`` is per view; ``num_frames`` is the
    fixed T when the sampling fixes it, else None (batches are padded and masked); ``layout`` names
    a :mod:`skeleton_attention.skeletons.layouts` layout (joint names and parents) or a dataset's
    own name when the project has no such layout.
    """

    num_classes: int
    num_joints: int
    num_bodies: int
    streams: tuple[str, ...] = ("joint",)
    channels: tuple[int, ...] = (3,)
    num_views: int = 1
    multi_view: bool = False
    num_frames: int | None = None
    layout: str = "unknown"
    class_names: tuple[str, ...] = ()
    dataset: str = ""

    def __post_init__(self) -> None:
        for name in ("num_classes", "num_joints", "num_bodies", "num_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"DataDescription.{name} must be a positive integer, got {value!r}")
        if not self.streams or len(self.streams) != len(self.channels):
            raise ValueError(f"streams {self.streams} and channels {self.channels} must be non-empty and parallel")
        if not self.multi_view and self.num_views != 1:
            raise ValueError(f"single-view data have num_views 1, got {self.num_views}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1 or None, got {self.num_frames}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    @classmethod
    def from_dimensions(
        cls, *, num_classes: int, num_joints: int, num_bodies: int, in_channels: int, **extra: Any
    ) -> DataDescription:
        """A single-view, single-stream description from the four integers older artifacts store."""
        return cls(
            num_classes=int(num_classes),
            num_joints=int(num_joints),
            num_bodies=int(num_bodies),
            channels=(int(in_channels),),
            **extra,
        )

    @property
    def in_channels(self) -> int:
        """The channels of every stream (an error when streams differ)."""
        if len(set(self.channels)) != 1:
            raise ValueError(f"streams have different channel counts {self.stream_channels()}")
        return self.channels[0]

    def stream_channels(self) -> dict[str, int]:
        return dict(zip(self.streams, self.channels, strict=True))

    def batch_keys(self) -> tuple[str, ...]:
        """The input keys of a batch: ``x`` for one stream, ``x_<stream>`` for several."""
        return ("x",) if len(self.streams) == 1 else tuple(f"x_{s}" for s in self.streams)

    def joint_layout(self) -> JointLayout | None:
        """Joint names and parents, when ``layout`` is one of the project's layouts."""
        return LAYOUTS.get(self.layout)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), for the model artifact (``torch.load(weights_only)``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataDescription:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown data description fields {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        for name in ("streams", "channels", "class_names"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


#: How the report draws an attention map (``SkeletonModel.attention_kinds``), per sample, time first:
#: ``joints``: (T, K) or (T, M, V), a joints x frames heat map; ``frames``: (T,) a curve with its
#: increments, or (T, S) one curve per series (e.g. per view); ``views``: (views,) one weight per
#: view slot (NaN = absent view), a bar chart per sample, and the evaluation also collects it for
#: every test sample to draw its distribution per view.
ATTENTION_KINDS = ("joints", "frames", "views")
#: What a drawing hint may say besides ``kind``: ``labels`` (one per series of a (T, S) ``frames``
#: map, e.g. MANs' x / y / z frame weights), ``ylabel``, and ``view`` (the view slot, 0-based, whose
#: skeleton a ``joints`` map belongs to, for multi-view models).
ATTENTION_HINT_KEYS = ("kind", "labels", "ylabel", "view")


def attention_hints(kinds: Mapping[str, str | Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Each declared map's drawing hint as a dict with at least ``kind`` (a bare string is the kind).

    The one place a model says how its maps are drawn (``SkeletonModel.attention_kinds``); an
    unknown kind or hint key is an error naming the map.
    """
    hints: dict[str, dict[str, Any]] = {}
    for name, value in (kinds or {}).items():
        hint = {"kind": value} if isinstance(value, str) else dict(value)
        if hint.get("kind") not in ATTENTION_KINDS:
            raise ValueError(f"attention map {name!r}: kind {hint.get('kind')!r} is not one of {ATTENTION_KINDS}")
        unknown = sorted(set(hint) - set(ATTENTION_HINT_KEYS))
        if unknown:
            raise ValueError(f"attention map {name!r}: unknown hint keys {unknown}; known: {ATTENTION_HINT_KEYS}")
        hints[name] = hint
    return hints


class SkeletonModel(nn.Module):
    """Base class of all model families.

    ``input_spec`` declares what the data side must deliver (see :class:`InputSpec`).
    ``attention_kinds`` maps the names of ``ModelOutput.attention`` to one of
    :data:`ATTENTION_KINDS`, or to a hint dict ``{"kind": ..., "labels": [...], "ylabel": ...,
    "view": j}`` (:func:`attention_hints`; a model may set it per instance, e.g. by variant); maps
    it does not name are drawn by their shape (1-D: frames, else joints), as for STA-LSTM.
    """

    input_spec: ClassVar[InputSpec] = InputSpec()
    attention_kinds: Mapping[str, str | Mapping[str, Any]] = MappingProxyType({})

    def forward(self, batch: Mapping[str, Tensor]) -> ModelOutput:  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} does not implement forward(batch)")

    def configure_phase(self, phase: Mapping[str, Any]) -> None:
        """Switch the model into a training phase; models without phases ignore it."""
        del phase


def require_on_device(condition: Tensor, message: str) -> None:
    """Fail with ``message`` unless the 0-d bool tensor ``condition`` is True, without a host sync.

    On the CPU in eager mode reading the value costs nothing, so a ``ValueError`` is raised at once.
    On an accelerator, ``bool(condition)`` would stall the host until the device drained its queue,
    once per forward pass; under ``torch.compile`` it would break the graph. There the check is
    queued on the device (``torch._assert_async``) and a failing batch aborts the step with
    ``message`` when the device reaches it.
    """
    if condition.device.type == "cpu" and not torch.compiler.is_compiling():
        if not bool(condition):
            raise ValueError(message)
        return
    torch._assert_async(condition, message)


def all_true_without_sync(mask: Tensor) -> bool:
    """True when every element of ``mask`` is True and finding that out costs no host sync (CPU,
    eager). On an accelerator or under ``torch.compile`` it answers False, so the caller takes its
    general (masked) path, which gives the same result up to float rounding."""
    return mask.device.type == "cpu" and not torch.compiler.is_compiling() and bool(mask.all())


def check_sequence_batch(
    batch: Mapping[str, Tensor],
    *,
    num_bodies: int,
    num_joints: int,
    in_channels: int,
) -> tuple[Tensor, Tensor]:
    """Validate a ``"sequence"`` batch and return ``(x, mask)``.

    Raises ``ValueError`` naming the problem when a key is missing, a shape or dtype is wrong, or a
    sample has no valid frame (its temporal average would be a division by zero).
    """
    for key in ("x", "mask"):
        if key not in batch:
            raise ValueError(f"batch has no {key!r} entry (keys: {sorted(batch)})")
    x, mask = batch["x"], batch["mask"]
    if x.dim() != 5 or not torch.is_floating_point(x):
        raise ValueError(f"batch['x'] must be a float tensor (N, M, T, V, C); got {x.dtype} {tuple(x.shape)}")
    n, m, t, v, c = x.shape
    if (m, v, c) != (num_bodies, num_joints, in_channels):
        raise ValueError(
            f"batch['x'] has (M, V, C) = {(m, v, c)} but the model was built for "
            f"{(num_bodies, num_joints, in_channels)}"
        )
    if mask.dtype != torch.bool or tuple(mask.shape) != (n, t):
        raise ValueError(f"batch['mask'] must be bool (N, T) = {(n, t)}; got {mask.dtype} {tuple(mask.shape)}")
    if t == 0:
        raise ValueError("every sample needs at least one valid frame (batch['mask'] has no frames)")
    require_on_device(
        mask.any(dim=1).all(), "every sample needs at least one valid frame (a row of batch['mask'] is all False)"
    )
    return x, mask


def check_multiview_batch(
    batch: Mapping[str, Tensor],
    *,
    num_views: int,
    num_bodies: int,
    num_joints: int,
    in_channels: int,
    key: str = "x",
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate a multi-view batch and return ``(x, mask, view_mask)``: ``x`` float
    (N, views, M, T, V, C), ``mask`` bool (N, T) shared by the views, ``view_mask`` bool (N, views)
    with at least one present view per sample."""
    for name in (key, "mask", "view_mask"):
        if name not in batch:
            raise ValueError(f"batch has no {name!r} entry (keys: {sorted(batch)}); is the data multi-view?")
    x, mask, view_mask = batch[key], batch["mask"], batch["view_mask"]
    if x.dim() != 6 or not torch.is_floating_point(x):
        raise ValueError(
            f"batch[{key!r}] must be a float tensor (N, views, M, T, V, C); got {x.dtype} {tuple(x.shape)}"
        )
    n, w, m, t, v, c = x.shape
    if (w, m, v, c) != (num_views, num_bodies, num_joints, in_channels):
        raise ValueError(
            f"batch[{key!r}] has (views, M, V, C) = {(w, m, v, c)} but the model was built for "
            f"{(num_views, num_bodies, num_joints, in_channels)}"
        )
    if mask.dtype != torch.bool or tuple(mask.shape) != (n, t):
        raise ValueError(f"batch['mask'] must be bool (N, T) = {(n, t)}; got {mask.dtype} {tuple(mask.shape)}")
    if view_mask.dtype != torch.bool or tuple(view_mask.shape) != (n, w):
        raise ValueError(
            f"batch['view_mask'] must be bool (N, views) = {(n, w)}; got {view_mask.dtype} {tuple(view_mask.shape)}"
        )
    if t == 0:
        raise ValueError("every sample needs at least one valid frame (batch['mask'] has no frames)")
    require_on_device(
        mask.any(dim=1).all() & view_mask.any(dim=1).all(),
        "every sample needs at least one valid frame and one present view",
    )
    return x, mask, view_mask


def check_variant(
    variants: Mapping[str, Mapping[str, Any]], variant: str, kwargs: Mapping[str, Any], *, family: str
) -> Mapping[str, Any]:
    """The settings of ``variant`` (a paper ablation); an unknown variant or a keyword argument that
    contradicts one of its settings is an error. Builders merge the result over ``kwargs``."""
    if variant not in variants:
        raise ValueError(f"unknown {family} variant {variant!r}; known: {sorted(variants)}")
    for key, value in variants[variant].items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"variant {variant!r} sets {key}={value!r}, which conflicts with {key}={kwargs[key]!r}")
    return variants[variant]


def reject_dimension_kwargs(kwargs: Mapping[str, Any], dimensions: Sequence[str], *, family: str) -> None:
    """A builder given a :class:`DataDescription` takes its dimensions from it, never also from kwargs."""
    given = sorted(set(dimensions) & set(kwargs))
    if given:
        raise ValueError(f"{family} takes its dimensions from data=, not from {given}")
