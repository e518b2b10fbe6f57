"""Model registry: names -> builders.

A model family registers a builder with ``@register_model("name")`` in its own module under
``skeleton_attention.models``. Every module of that package is imported the first time a name is
looked up, so a new family only needs its file; nothing else has to import it.

A builder is any callable ``builder(data: DataDescription, **kwargs)`` returning a
:class:`~skeleton_attention.models.base.SkeletonModel` (a model class itself qualifies). What the
family consumes is its :class:`~skeleton_attention.models.base.InputSpec`: given to
``register_model(name, input_spec=...)``, else the builder's ``input_spec`` attribute (a model
class inherits ``SkeletonModel.input_spec``). :func:`build_model` checks the description against it.

``build_model(name, num_classes=, num_joints=, num_bodies=, in_channels=)`` still works: the four
integers become a single-view, single-stream description (artifacts written before descriptions).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from skeleton_attention.models.base import DataDescription, InputSpec, SkeletonModel

Builder = Callable[..., SkeletonModel]
B = TypeVar("B", bound=Builder)

_REGISTRY: dict[str, Builder] = {}
_SPECS: dict[str, InputSpec] = {}
_NOT_FAMILIES = frozenset({"backbones", "base", "blocks", "registry"})
_discovered = False


def register_model(name: str, *, input_spec: InputSpec | None = None) -> Callable[[B], B]:
    """Decorator registering ``builder`` under ``name``; a name can be registered only once.
    ``input_spec`` declares the batches the family consumes (default: the builder's own)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorate(builder: B) -> B:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not builder:
            raise ValueError(f"model name {name!r} is already registered to {existing!r}")
        _REGISTRY[name] = builder
        if input_spec is not None:
            _SPECS[name] = input_spec
        return builder

    return decorate


def _discover() -> None:
    """Import every module of the models package once so that their decorators run."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module("skeleton_attention.models")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _NOT_FAMILIES or info.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"{package.__name__}.{info.name}")
        except ImportError as exc:
            raise ImportError(f"cannot import model family module {package.__name__}.{info.name}: {exc}") from exc
    _discovered = True


def available_models() -> list[str]:
    """Registered model names, sorted."""
    _discover()
    return sorted(_REGISTRY)


def _builder(name: str) -> Builder:
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY)) or '(none)'}")
    return _REGISTRY[name]


def model_input_spec(name: str) -> InputSpec:
    """What the model registered as ``name`` consumes (see :class:`InputSpec`)."""
    builder = _builder(name)
    if name in _SPECS:
        return _SPECS[name]
    spec = getattr(builder, "input_spec", None)
    return spec if isinstance(spec, InputSpec) else InputSpec()


_DIMENSIONS = ("num_classes", "num_joints", "num_bodies", "in_channels")


def build_model(
    name: str,
    data: DataDescription | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> SkeletonModel:
    """Build the model registered as ``name`` for ``data`` (a description, or its dict from a model
    artifact); ``kwargs`` are family options (e.g. ``variant``).

    Without ``data`` the four integers ``num_classes, num_joints, num_bodies, in_channels`` must be
    given (older artifacts); they describe single-view, single-stream data.
    """
    builder = _builder(name)
    dims = {k: kwargs.pop(k) for k in _DIMENSIONS if k in kwargs}
    if data is None:
        missing = [k for k in _DIMENSIONS if k not in dims]
        if missing:
            raise ValueError(f"build_model({name!r}) needs a DataDescription (data=) or all of {list(_DIMENSIONS)}")
        description = DataDescription.from_dimensions(**dims)
    elif dims:
        raise ValueError(f"give build_model({name!r}) either data= or the integers {sorted(dims)}, not both")
    else:
        description = data if isinstance(data, DataDescription) else DataDescription.from_dict(data)
    spec = model_input_spec(name)
    if spec.multi_view != description.multi_view:
        raise ValueError(
            f"model {name!r} consumes {spec.views}-view batches but the data are "
            f"{'multi' if description.multi_view else 'single'}-view"
        )
    spec.check(streams=description.streams, fixed_length=description.num_frames, model=f"model {name!r}")
    model = builder(data=description, **kwargs)
    if not isinstance(model, SkeletonModel):
        raise TypeError(f"builder for {name!r} returned {type(model).__name__}, not a SkeletonModel")
    return model
