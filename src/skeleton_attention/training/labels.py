"""The model's class indices versus the table's label ids.

A protocol may use only some of a table's labels: MSR Action3D's ``msr_as1_xsub`` keeps 8 of the 20
actions (labels 1, 2, 4, 5, 9, 12, 17, 19). A model trained on it must have 8 outputs, not 20, or
its softmax spreads mass over 12 classes that never occur and its top-5 counts classes that cannot
be right. :class:`LabelMap` maps the labels present in a protocol's rows (train + val + test) onto
the contiguous model range ``0..K-1`` in increasing label order, keeps each class's name, and maps
back, so per-sample scores are written in the table's label ids (their columns then line up across
runs for score fusion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LabelMap:
    """``original[i]`` is the table label of model class ``i``; ``names[i]`` its class name."""

    original: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.original) != len(self.names):
            raise ValueError(f"{len(self.original)} label ids for {len(self.names)} class names")
        if len(set(self.original)) != len(self.original) or list(self.original) != sorted(self.original):
            raise ValueError(f"label ids must be distinct and increasing, got {list(self.original)[:10]}")
        if self.original and self.original[0] < 0:
            raise ValueError(f"label ids must be >= 0, got {self.original[0]}")

    @property
    def num_classes(self) -> int:
        return len(self.original)

    @property
    def is_identity(self) -> bool:
        """True when model class ``i`` is table label ``i`` for every class (no remapping)."""
        return self.original == tuple(range(len(self.original)))

    @classmethod
    def identity(cls, num_classes: int, names: Sequence[str] | None = None) -> LabelMap:
        names = list(names) if names is not None else [str(i) for i in range(num_classes)]
        return cls(tuple(range(int(num_classes))), tuple(str(n) for n in names))

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[int] | np.ndarray,
        names: Mapping[int, str] | None = None,
        num_classes: int | None = None,
    ) -> LabelMap:
        """The map of the labels that occur in ``labels``; with ``num_classes`` no remapping happens
        (model class = table label, ``num_classes`` outputs, every label must be below it)."""
        present = sorted({int(v) for v in np.asarray(labels).ravel()})
        if not present:
            raise ValueError("no labels: the protocol's rows are empty")
        if present[0] < 0:
            raise ValueError(f"labels must be >= 0, got {present[0]}")
        names = dict(names or {})
        if num_classes is not None:
            if present[-1] >= int(num_classes):
                raise ValueError(f"labels span [{present[0]}, {present[-1]}] but num_classes={num_classes}")
            return cls.identity(int(num_classes), [names.get(i, str(i)) for i in range(int(num_classes))])
        return cls(tuple(present), tuple(names.get(i, str(i)) for i in present))

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> LabelMap:
        """The map stored in a model artifact's info (identity for artifacts written before it existed)."""
        names = list(info["class_names"])
        original = info.get("label_ids")
        if original is None:
            return cls.identity(len(names), names)
        return cls(tuple(int(v) for v in original), tuple(str(n) for n in names))

    def to_model(self, labels: Sequence[int] | np.ndarray) -> np.ndarray:
        """Table labels -> model class indices; a label outside the map raises."""
        labels = np.asarray(labels, dtype=np.int64)
        original = np.asarray(self.original, dtype=np.int64)
        index = np.searchsorted(original, labels)
        inside = (index < len(original)) & (original[np.minimum(index, len(original) - 1)] == labels)
        if not inside.all():
            missing = sorted({int(v) for v in labels[~inside]})
            raise ValueError(f"labels {missing[:10]} are not among the model's classes {list(self.original)[:20]}")
        return index.astype(np.int64)

    def to_original(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Model class indices -> table labels."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_classes):
            raise ValueError(f"class indices must lie in [0, {self.num_classes})")
        return np.asarray(self.original, dtype=np.int64)[indices]

    def as_info(self) -> dict[str, Any]:
        """The entries a model artifact's info carries: ``label_ids`` (table label of each output)
        and ``class_names``."""
        return {"label_ids": list(self.original), "class_names": list(self.names)}
