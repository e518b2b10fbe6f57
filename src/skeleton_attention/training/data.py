"""From a prepared sample table to torch batches: splits, settings, and the data side of a run.

The Dataset, collate, sampler and loader factory live in :mod:`skeleton_attention.training.batches`
(re-exported here).

* :func:`protocol_splits` picks a protocol's ``train`` / ``test`` rows and carves the validation
  set out of the *training* rows only (stratified by class, fixed seed, deterministic: the same
  table and settings always give the same rows). Test rows never take part in model selection.
* :func:`build_training_data` builds the three datasets in the form the model consumes (its
  :class:`~skeleton_attention.models.base.InputSpec`: single or multi-view, streams, fixed length)
  and the :class:`~skeleton_attention.models.base.DataDescription` the model is built from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from skeleton_attention.models.base import DataDescription, InputSpec
from skeleton_attention.skeletons.table import SampleTable
from skeleton_attention.training.augment import Augmentation
from skeleton_attention.training.batches import MOTION_SOURCES, SHUFFLE_MODES, SkeletonDataset, make_loader
from skeleton_attention.training.batches import SeededSampler as SeededSampler  # re-exported
from skeleton_attention.training.batches import collate_samples as collate_samples  # re-exported
from skeleton_attention.training.batches import row_groups_of as row_groups_of  # re-exported
from skeleton_attention.training.batches import seed_worker as seed_worker  # re-exported
from skeleton_attention.training.labels import LabelMap
from skeleton_attention.training.sampling import TRUNCATION_POLICIES, Sampling, TemporalSampling, sampling_from_config

logger = logging.getLogger(__name__)


def as_sample_table(source: Any) -> SampleTable:
    """A :class:`SampleTable` from a table, a prepared bundle (``.table``) or a path."""
    if isinstance(source, SampleTable):
        return source
    table = getattr(source, "table", None)
    if isinstance(table, SampleTable):
        return table
    if isinstance(source, str) or hasattr(source, "__fspath__"):
        return SampleTable(source)
    raise TypeError(f"expected a SampleTable, a PreparedBundle or a path, got {type(source).__name__}")


# --- splits ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitRows:
    """Table row indices of the three sets (sorted). ``val`` is a subset of the protocol's train rows."""

    protocol: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    #: the held-out fold of a cross-validated protocol, else None
    fold: int | None = None

    def as_frame(self, metadata: pd.DataFrame) -> pd.DataFrame:
        """One line per used row: ``row, sample_id, label, subset`` (``subset`` in train/val/test)."""
        parts = []
        for subset in ("train", "val", "test"):
            rows = getattr(self, subset)
            part = metadata.iloc[rows][["row", "sample_id", "label"]].copy()
            part["subset"] = subset
            parts.append(part)
        frame = pd.concat(parts, ignore_index=True)
        frame["subset"] = frame["subset"].astype("string")
        return frame

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, metadata: pd.DataFrame, protocol: str, fold: int | None = None
    ) -> SplitRows:
        """Inverse of :meth:`as_frame`, checked against the table: every row must still hold the
        same sample, and no test row may appear in train or val (a stale or edited split file fails)."""
        rows = frame["row"].to_numpy(dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(metadata)):
            raise ValueError("the split file refers to rows the table does not have; rerun split_samples")
        expected = metadata["sample_id"].to_numpy()[rows].astype(str)
        if not np.array_equal(expected, frame["sample_id"].astype(str).to_numpy()):
            raise ValueError("the split file does not match the sample table (rows moved); rerun split_samples")
        parts = {s: np.sort(rows[(frame["subset"] == s).to_numpy()]) for s in ("train", "val", "test")}
        test = set(parts["test"].tolist())
        if test & (set(parts["train"].tolist()) | set(parts["val"].tolist())):
            raise ValueError("test rows appear in train/val of the split file")
        train_mask, test_mask = protocol_masks(metadata, protocol, fold)
        for name, members, mask in (
            ("test", parts["test"], test_mask),
            ("train", np.union1d(parts["train"], parts["val"]), train_mask),
        ):
            expected_rows = metadata["row"].to_numpy()[mask]
            if not np.array_equal(np.sort(expected_rows), members):
                raise ValueError(f"the split file's {name} rows are not protocol {protocol!r}'s {name} rows")
        return cls(protocol=protocol, train=parts["train"], val=parts["val"], test=parts["test"], fold=fold)


def is_fold_column(values: pd.Series) -> bool:
    """A cross-validated protocol's column holds fold numbers (ints), a train/test one strings."""
    present = values.dropna()
    return bool(len(present)) and all(isinstance(v, int | np.integer) for v in present.head(64))


def protocol_folds(metadata: pd.DataFrame, protocol: str) -> list[int]:
    """The fold numbers of a cross-validated protocol, sorted ([] for a train/test protocol)."""
    column = _protocol_column(metadata, protocol)
    values = metadata[column]
    if not is_fold_column(values):
        return []
    return sorted(int(v) for v in values.dropna().unique())


def _protocol_column(metadata: pd.DataFrame, protocol: str) -> str:
    column = f"split_{protocol}"
    if column not in metadata.columns:
        available = sorted(c[len("split_") :] for c in metadata.columns if c.startswith("split_"))
        raise KeyError(f"the table has no protocol {protocol!r}; available: {available}")
    return column


def protocol_masks(metadata: pd.DataFrame, protocol: str, fold: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, test) masks over the table rows for a protocol (and fold, if cross-validated).

    For a cross-validated protocol the test rows are those of ``fold`` and the training rows every
    other fold's; rows with a null fold belong to neither. A train/test protocol takes no fold.
    """
    column = _protocol_column(metadata, protocol)
    values = metadata[column]
    if is_fold_column(values):
        folds = sorted(int(v) for v in values.dropna().unique())
        if fold is None:
            raise ValueError(
                f"protocol {protocol!r} is cross-validated (folds {folds}): choose one with run.fold=k, or "
                "run `kedro run --pipelines=train_<family>` without run.fold to train and aggregate every fold"
            )
        if int(fold) not in folds:
            raise ValueError(f"protocol {protocol!r} has no fold {fold}; folds: {folds}")
        present = values.notna().to_numpy(dtype=bool)
        test = present & (values.to_numpy(dtype=object) == int(fold))
        return present & ~test, test
    if fold is not None:
        raise ValueError(f"protocol {protocol!r} is a train/test protocol, not cross-validated: data.fold must be null")
    return (
        (values == "train").to_numpy(dtype=bool, na_value=False),
        (values == "test").to_numpy(dtype=bool, na_value=False),
    )


def protocol_splits(
    metadata: pd.DataFrame,
    protocol: str,
    val_fraction: float,
    seed: int,
    val_group: str | None = None,
    fold: int | None = None,
) -> SplitRows:
    """Train / validation / test rows of ``protocol`` (``split_<protocol>`` column of the table).

    Per class, ``round(val_fraction * n)`` of the class's training samples (at least one when the
    class has two or more and ``val_fraction > 0``; never all of them) go to validation. Samples are
    ordered by ``sample_id`` before the seeded shuffle, so the split does not depend on the order
    the table was written in. Where the table has a ``view_group`` column (NTU), the unit of that
    draw is the recording: all camera views of one performance go to the same side, so validation
    never sees another view of a training sample.

    With ``val_group`` (a metadata column such as ``performer`` or ``subject``), whole groups of the
    training split are held out instead: ``round(val_fraction * groups)`` of them (at least one,
    never all), so validation measures what a cross-subject test measures, generalisation to
    unseen people, rather than to unseen repetitions of seen people.

    ``fold`` chooses the held-out fold of a cross-validated protocol (see :func:`protocol_masks`).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train_mask, test_mask = protocol_masks(metadata, protocol, fold)
    rows = metadata["row"].to_numpy(dtype=np.int64)
    if not train_mask.any():
        raise ValueError(f"protocol {protocol!r} has no training rows in this table")
    train_frame = metadata.loc[train_mask, ["row", "sample_id", "label"]].sort_values("sample_id", kind="stable")
    rng = np.random.default_rng(seed)
    val_rows: list[int] = []
    if val_fraction > 0 and val_group is not None:
        val_rows = _held_out_groups(metadata, train_mask, val_group, val_fraction, rng)
    elif val_fraction > 0:
        val_rows = _stratified_recordings(metadata, train_frame, val_fraction, rng)
    val = np.array(sorted(val_rows), dtype=np.int64)
    train = np.setdiff1d(rows[train_mask], val)
    test = np.sort(rows[test_mask])
    return SplitRows(protocol=protocol, train=train, val=val, test=test, fold=None if fold is None else int(fold))


def _recording_keys(metadata: pd.DataFrame, train_frame: pd.DataFrame) -> pd.Series:
    """The recording of each training row: its ``view_group`` where the table has one (NTU: the
    camera views of one performance share it), else the sample itself."""
    keys = "s:" + train_frame["sample_id"].astype(str)
    if "view_group" in metadata.columns:
        groups = metadata.loc[train_frame.index, "view_group"]
        keys = keys.where(groups.isna(), "g:" + groups.astype(str))
    return keys


def _stratified_recordings(
    metadata: pd.DataFrame, train_frame: pd.DataFrame, fraction: float, rng: np.random.Generator
) -> list[int]:
    """Per class, ``round(fraction * n)`` of the class's training *recordings* (at least one when
    the class has two or more, never all) go to validation with all their rows, so another camera
    view of a training recording can never validate it. A recording is labelled by its first row in
    ``sample_id`` order. Without view groups every sample is its own recording and the draw is the
    per-sample stratified carve."""
    frame = train_frame.assign(_key=_recording_keys(metadata, train_frame).to_numpy())
    recording_label = frame.groupby("_key", sort=False)["label"].first()
    val_keys: list[str] = []
    for _, keys in recording_label.groupby(recording_label, sort=True):
        groups = np.array(sorted(keys.index))
        n = len(groups)
        k = int(np.floor(fraction * n + 0.5))
        k = min(max(k, 1), n - 1) if n >= 2 else 0
        if k:
            val_keys.extend(groups[rng.permutation(n)[:k]].tolist())
    picked = frame["_key"].isin(set(val_keys)).to_numpy()
    return [int(r) for r in frame["row"].to_numpy()[picked]]


def _held_out_groups(
    metadata: pd.DataFrame, train_mask: np.ndarray, column: str, fraction: float, rng: np.random.Generator
) -> list[int]:
    if column not in metadata.columns:
        raise KeyError(f"val_group {column!r} is not a metadata column of the table")
    values = metadata.loc[train_mask, column]
    if values.isna().any():
        raise ValueError(f"val_group {column!r} is missing for some training samples")
    groups = np.array(sorted(values.unique()))
    if len(groups) < 2:
        raise ValueError(f"val_group {column!r} has {len(groups)} group(s) in the training split; need 2+")
    k = min(max(int(np.floor(fraction * len(groups) + 0.5)), 1), len(groups) - 1)
    held_out = groups[rng.permutation(len(groups))[:k]]
    rows = metadata.loc[train_mask, "row"].to_numpy()
    return [int(r) for r in rows[np.isin(values.to_numpy(), held_out)]]


# --- settings and the whole data side of an experiment --------------------------------------------


@dataclass(frozen=True)
class DataSettings:
    """The ``data:`` block of a training pipeline's parameters (see docs/training.md)."""

    protocol: str
    fold: int | None = None
    dataset: str | None = None
    streams: tuple[str, ...] = ("joint",)
    num_bodies: int = 2
    #: multi-view models: views per batch item (None = the most any chosen row has)
    num_views: int | None = None
    #: a sample with more bodies / views than the batch holds: "error" or "keep_first" (logged, counted)
    bodies_policy: str = "error"
    views_policy: str = "error"
    #: motion streams from the table's columns, or recomputed from the sampled joint sequence
    motion_from: str = "table"
    val_fraction: float = 0.05
    val_seed: int = 10000
    val_group: str | None = None
    num_classes: int | None = None
    sampling: Sampling = field(default_factory=TemporalSampling)
    augmentation: Augmentation = field(default_factory=Augmentation)
    batch_size: int = 64
    eval_batch_size: int | None = None
    num_workers: int = 0
    shuffle: str = "full"
    shuffle_window: int = 8
    cache_row_groups: int = 8
    pin_memory: bool | None = None
    persistent_workers: bool = True
    prefetch_factor: int | None = 2
    drop_last: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DataSettings:
        config = dict(config)
        known = set(cls.__dataclass_fields__)
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown data settings {sorted(unknown)}; known: {sorted(known)}")
        if "protocol" not in config:
            raise ValueError("data.protocol is required (e.g. ntu60_xsub)")
        streams = config.get("streams", ("joint",))
        config["streams"] = (streams,) if isinstance(streams, str) else tuple(streams)
        config["sampling"] = sampling_from_config(config.get("sampling"))
        config["augmentation"] = Augmentation.from_config(config.get("augmentation"))
        if config.get("shuffle", "full") not in SHUFFLE_MODES:
            raise ValueError(f"data.shuffle must be one of {SHUFFLE_MODES}")
        for key in ("bodies_policy", "views_policy"):
            if config.get(key, "error") not in TRUNCATION_POLICIES:
                raise ValueError(f"data.{key} must be one of {TRUNCATION_POLICIES}, got {config[key]!r}")
        num_views = config.get("num_views")
        if num_views is not None and (isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1):
            raise ValueError(f"data.num_views must be a positive integer or null, got {num_views!r}")
        if config.get("motion_from", "table") not in MOTION_SOURCES:
            raise ValueError(f"data.motion_from must be one of {MOTION_SOURCES}, got {config['motion_from']!r}")
        return cls(**config)


@dataclass
class TrainingData:
    """The three datasets of one experiment plus what a model needs to be built."""

    table: SampleTable
    splits: SplitRows
    train: SkeletonDataset
    val: SkeletonDataset | None
    test: SkeletonDataset
    num_classes: int
    class_names: list[str]
    num_joints: int
    num_channels: int
    layout: str
    dataset_name: str
    #: what the model is built from (streams, views, bodies, frames, joints, layout, classes)
    description: DataDescription | None = None
    #: the model's declared input the datasets were built for
    input_spec: InputSpec = field(default_factory=InputSpec)
    #: model class index <-> table label (identity unless the protocol uses a subset of the labels)
    label_map: LabelMap | None = None


def _uniform(meta: pd.DataFrame, column: str) -> Any:
    values = meta[column].unique()
    if len(values) != 1:
        raise ValueError(f"the chosen rows mix several {column} values {sorted(map(str, values))[:5]}")
    return values[0]


def build_training_data(
    source: Any,
    settings: DataSettings,
    seed: int = 0,
    splits: SplitRows | None = None,
    input_spec: InputSpec | None = None,
) -> TrainingData:
    """Split the table (or use ``splits``) and build the train / validation / test datasets in the
    form ``input_spec`` (the model's declared input; default single-view) asks for."""
    spec = input_spec or InputSpec()
    spec.check(streams=settings.streams, fixed_length=settings.sampling.fixed_length)
    table = as_sample_table(source)
    meta = table.metadata()
    if splits is None:
        splits = protocol_splits(
            meta, settings.protocol, settings.val_fraction, settings.val_seed, settings.val_group, settings.fold
        )
    if len(splits.test) == 0:
        raise ValueError(f"protocol {settings.protocol!r} has no test rows in {table.path}")
    used = meta.iloc[np.concatenate([splits.train, splits.val, splits.test])]
    num_joints = int(_uniform(used, "num_joints"))
    num_channels = int(_uniform(used, "num_channels"))
    layout = str(_uniform(used, "layout"))
    dataset_name = settings.dataset or "+".join(sorted(str(d) for d in used["dataset"].unique()))
    pairs = used[["label", "label_name"]].drop_duplicates()
    names = {
        int(label): str(name)
        for label, name in zip(pairs["label"], pairs["label_name"], strict=True)
        if pd.notna(name) and str(name) != ""
    }
    # the model gets one output per label the protocol uses (train + val + test rows), in label order;
    # an explicit data.num_classes keeps the table's label ids as the model's classes instead
    label_map = LabelMap.from_labels(used["label"].to_numpy(), names, settings.num_classes or None)
    if not label_map.is_identity:
        logger.info(
            "protocol %s uses %d of the table's labels: model classes 0..%d are labels %s",
            settings.protocol,
            label_map.num_classes,
            label_map.num_classes - 1,
            list(label_map.original),
        )

    # one view count for every split: data.num_views, else the most any chosen row has
    num_views = settings.num_views
    if spec.multi_view and num_views is None and "num_views" in used.columns and used["num_views"].notna().any():
        num_views = int(used["num_views"].max())

    def dataset(rows: np.ndarray, train: bool) -> SkeletonDataset:
        return SkeletonDataset(
            table,
            rows,
            streams=settings.streams,
            sampling=settings.sampling,
            num_bodies=settings.num_bodies,
            train=train,
            augmentation=settings.augmentation,
            seed=seed,
            cache_row_groups=settings.cache_row_groups,
            views=spec.views,
            num_views=num_views,
            bodies_policy=settings.bodies_policy,
            views_policy=settings.views_policy,
            motion_from=settings.motion_from,
            label_map=label_map,
        )

    logger.info(
        "protocol %s: %s samples (validation carved from train, seed %d)",
        settings.protocol,
        splits.counts(),
        settings.val_seed,
    )
    train, test = dataset(splits.train, True), dataset(splits.test, False)
    val = dataset(splits.val, False) if len(splits.val) else None
    description = DataDescription(
        num_classes=label_map.num_classes,
        num_joints=num_joints,
        num_bodies=settings.num_bodies,
        streams=tuple(settings.streams),
        channels=tuple(num_channels for _ in settings.streams),
        num_views=train.num_views,
        multi_view=spec.multi_view,
        num_frames=settings.sampling.fixed_length,
        layout=layout,
        class_names=tuple(label_map.names),
        dataset=dataset_name,
    )
    return TrainingData(
        table=table,
        splits=splits,
        train=train,
        val=val,
        test=test,
        description=description,
        input_spec=spec,
        num_classes=label_map.num_classes,
        class_names=list(label_map.names),
        num_joints=num_joints,
        num_channels=num_channels,
        layout=layout,
        dataset_name=dataset_name,
        label_map=label_map,
    )


def build_loaders(data: TrainingData, settings: DataSettings, seed: int = 0) -> dict[str, DataLoader | None]:
    """``train`` (seeded sampler), ``val`` and ``test`` (table order) loaders, collated the way the
    model declared (``InputSpec.collate``, default :func:`collate_samples`)."""
    common = {
        "collate_fn": data.input_spec.collate or collate_samples,
        "num_workers": settings.num_workers,
        "pin_memory": settings.pin_memory,
        "persistent_workers": settings.persistent_workers,
        "prefetch_factor": settings.prefetch_factor,
    }
    eval_batch = settings.eval_batch_size or settings.batch_size
    return {
        "train": make_loader(
            data.train,
            batch_size=settings.batch_size,
            train=True,
            seed=seed,
            shuffle=settings.shuffle,
            shuffle_window=settings.shuffle_window,
            drop_last=settings.drop_last,
            **common,
        ),
        "val": make_loader(data.val, batch_size=eval_batch, train=False, **common) if data.val else None,
        "test": make_loader(data.test, batch_size=eval_batch, train=False, **common),
    }
