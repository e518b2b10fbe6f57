"""Model registry: names -> builders.

A model family registers a builder with ``@register_model("name")`` in its own module under
``skeleton_attention.models``. Every module of that package is imported the first time a name is
looked up, so a new family only needs its file; nothing else has to import it.

A builder is any callable ``builder(*, num_classes, num_joints, num_bodies, in_channels, **kwargs)``
returning a :class:`~skeleton_attention.models.base.SkeletonModel` (a model class itself qualifies).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from skeleton_attention.models.base import SkeletonModel

Builder = Callable[..., SkeletonModel]
B = TypeVar("B", bound=Builder)

_REGISTRY: dict[str, Builder] = {}
_NOT_FAMILIES = frozenset({"base", "registry"})
_discovered = False


def register_model(name: str) -> Callable[[B], B]:
    """Decorator registering ``builder`` under ``name``; a name can be registered only once."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorate(builder: B) -> B:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not builder:
            raise ValueError(f"model name {name!r} is already registered to {existing!r}")
        _REGISTRY[name] = builder
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


def build_model(
    name: str,
    *,
    num_classes: int,
    num_joints: int,
    num_bodies: int,
    in_channels: int,
    **kwargs: Any,
) -> SkeletonModel:
    """Build the model registered as ``name``; ``kwargs`` are family options (e.g. ``variant``)."""
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY)) or '(none)'}")
    model = _REGISTRY[name](
        num_classes=num_classes,
        num_joints=num_joints,
        num_bodies=num_bodies,
        in_channels=in_channels,
        **kwargs,
    )
    if not isinstance(model, SkeletonModel):
        raise TypeError(f"builder for {name!r} returned {type(model).__name__}, not a SkeletonModel")
    return model
