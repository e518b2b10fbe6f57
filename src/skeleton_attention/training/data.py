"""From a prepared sample table to torch batches: splits, the Dataset, collate, sampler, loaders.

* :func:`protocol_splits` picks a protocol's ``train`` / ``test`` rows and carves the validation
  set out of the *training* rows only (stratified by class, fixed seed, deterministic: the same
  table and settings always give the same rows). Test rows never take part in model selection.
* :class:`SkeletonDataset` reads one sample at a time from the lazy
  :class:`~skeleton_attention.skeletons.table.SampleTable` (only the chosen stream columns, one
  row group at a time, a few row groups cached), applies temporal sampling, training-time
  augmentation and body padding. It is worker-safe: the Parquet file is reopened lazily in each
  DataLoader worker.
* :class:`SeededSampler` draws the epoch order *and a random seed per sample* from its own
  ``torch.Generator``; the dataset derives all of a sample's randomness from that seed. A batch is
  therefore a pure function of the generator state, whatever the number of workers, and restoring
  the generator state (the trainer checkpoints it) resumes the exact sample stream. With
  ``shuffle="block"`` the order is shuffled row-group-wise (a window of row groups at a time, then
  within the window) so that a worker's row-group cache keeps hitting on large tables.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from skeleton_attention.skeletons.table import SampleTable
from skeleton_attention.training.augment import Augmentation
from skeleton_attention.training.labels import LabelMap
from skeleton_attention.training.sampling import TemporalSampling, pad_bodies

logger = logging.getLogger(__name__)

SHUFFLE_MODES = ("full", "block", "none")


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
                f"protocol {protocol!r} is cross-validated (folds {folds}): choose one with data.fold, "
                "or run every fold with the cross-validation command"
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


# --- dataset --------------------------------------------------------------------------------------


def row_groups_of(table: SampleTable, rows: Sequence[int]) -> np.ndarray:
    """Parquet row group index of each row (from the file footer only)."""
    meta = pq.ParquetFile(table.path).metadata
    starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    return (np.searchsorted(starts, np.asarray(rows, dtype=np.int64), side="right") - 1).astype(np.int64)


def _private_table(table: SampleTable, cache_row_groups: int) -> SampleTable:
    """A reader of the same file with its own row-group cache and file handle (opened lazily), sharing
    the already-read metadata, so each dataset (and each worker's copy) caches independently."""
    private = SampleTable.__new__(SampleTable)
    private.__dict__.update(table.__getstate__())
    private.cache_row_groups = int(cache_row_groups)
    return private


class SkeletonDataset(Dataset):
    """Samples ``rows`` of a sample table as dicts of numpy arrays (see :func:`collate_samples`).

    Item keys are a dataset index, or ``(index, seed)`` from :class:`SeededSampler`. With
    ``train=True`` the seed drives the random crop/segment choice and the augmentation; evaluation
    is deterministic. One stream gives ``x`` (M, T, V, C); several give ``x_<stream>`` each.
    """

    def __init__(
        self,
        table: SampleTable,
        rows: Sequence[int],
        *,
        streams: Sequence[str],
        sampling: TemporalSampling,
        num_bodies: int,
        train: bool,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        cache_row_groups: int = 4,
        label_map: LabelMap | None = None,
    ) -> None:
        """``label_map`` turns the table's labels into model class indices (none: the labels as they are)."""
        if not streams:
            raise ValueError("choose at least one stream")
        missing = [s for s in streams if s not in table.stream_names]
        if missing:
            raise KeyError(f"{table.path}: no stream column {missing}; available: {table.stream_names}")
        self.table = _private_table(table, cache_row_groups)
        self.rows = np.asarray(rows, dtype=np.int64)
        meta = table.metadata()
        picked = meta.iloc[self.rows]
        self.labels = picked["label"].to_numpy(dtype=np.int64)
        if label_map is not None:
            self.labels = label_map.to_model(self.labels)
        self.sample_ids = picked["sample_id"].astype(str).tolist()
        self.num_frames = picked["num_frames"].to_numpy(dtype=np.int64)
        self.streams = tuple(streams)
        self.sampling = sampling
        self.augmentation = augmentation if (train and augmentation is not None and augmentation.enabled) else None
        self.num_bodies = int(num_bodies)
        self.train = bool(train)
        self.seed = int(seed)
        self.groups = row_groups_of(table, self.rows)
        if (self.num_frames < 1).any():
            bad = [self.sample_ids[i] for i in np.flatnonzero(self.num_frames < 1)[:5]]
            raise ValueError(f"samples with no frames cannot be trained on: {bad}")

    def __len__(self) -> int:
        return len(self.rows)

    def key_name(self, stream: str) -> str:
        return "x" if len(self.streams) == 1 else f"x_{stream}"

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple | list):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        if not 0 <= index < len(self.rows):
            raise IndexError(f"index {index} out of range for {len(self.rows)} samples")
        arrays = self.table.read([int(self.rows[index])], self.streams)[0]
        rng = None
        if self.train:
            # without a sampler seed (plain int keys) the randomness is still reproducible per index
            rng = np.random.default_rng(seed if seed is not None else [self.seed, index])
        arrays = self.sampling.apply(arrays, rng, self.train)
        if self.augmentation is not None:
            assert rng is not None
            arrays = self.augmentation.apply(arrays, rng)
        item: dict[str, Any] = {self.key_name(s): pad_bodies(a, self.num_bodies) for s, a in arrays.items()}
        item["length"] = next(iter(arrays.values())).shape[1]
        item["label"] = int(self.labels[index])
        item["index"] = index
        return item


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch: ``x*`` float (N, M, T, V, C) zero-padded to the longest sample,
    ``mask`` bool (N, T) valid frames, ``label`` long (N,), ``index`` long (N,), ``length`` long (N,)."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    lengths = np.array([int(s["length"]) for s in samples], dtype=np.int64)
    t_max = int(lengths.max())
    batch: dict[str, torch.Tensor] = {}
    for key in samples[0]:
        if not key.startswith("x"):
            continue
        first = samples[0][key]
        m, _, v, c = first.shape
        out = np.zeros((len(samples), m, t_max, v, c), dtype=np.float32)
        for i, sample in enumerate(samples):
            a = sample[key]
            if a.shape[0] != m or a.shape[2:] != (v, c):
                raise ValueError(
                    f"sample {sample['index']} {key} has shape {a.shape}, batch expects (M, V, C)={(m, v, c)}"
                )
            out[i, :, : a.shape[1]] = a
        batch[key] = torch.from_numpy(out)
    batch["mask"] = torch.from_numpy(np.arange(t_max)[None, :] < lengths[:, None])
    batch["label"] = torch.tensor([int(s["label"]) for s in samples], dtype=torch.long)
    batch["index"] = torch.tensor([int(s["index"]) for s in samples], dtype=torch.long)
    batch["length"] = torch.from_numpy(lengths)
    return batch


# --- sampler and loaders --------------------------------------------------------------------------


class SeededSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)``; order and seeds come from ``self.generator`` (checkpointed).

    ``shuffle``: ``full`` (uniform permutation), ``block`` (row groups in random windows of
    ``window`` groups, samples shuffled within each window; needs ``groups``) or ``none``.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        shuffle: str = "full",
        seed: int = 0,
        groups: Sequence[int] | None = None,
        window: int = 8,
    ) -> None:
        if shuffle not in SHUFFLE_MODES:
            raise ValueError(f"shuffle must be one of {SHUFFLE_MODES}, got {shuffle!r}")
        if shuffle == "block" and groups is None:
            raise ValueError("block shuffling needs the row group of every sample")
        self.num_samples = int(num_samples)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.window = max(1, int(window))
        self.generator = torch.Generator()
        self.generator.manual_seed(self.seed)
        self._members: list[np.ndarray] = []
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (self.num_samples,):
                raise ValueError(f"groups has shape {groups.shape}, expected ({self.num_samples},)")
            self._members = [np.flatnonzero(groups == g) for g in np.unique(groups)]

    def __len__(self) -> int:
        return self.num_samples

    def order(self) -> np.ndarray:
        g = self.generator
        if self.shuffle == "none":
            return np.arange(self.num_samples)
        if self.shuffle == "full":
            return torch.randperm(self.num_samples, generator=g).numpy()
        group_order = torch.randperm(len(self._members), generator=g).numpy()
        parts = []
        for start in range(0, len(group_order), self.window):
            members = np.concatenate([self._members[i] for i in group_order[start : start + self.window]])
            parts.append(members[torch.randperm(len(members), generator=g).numpy()])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def __iter__(self):
        order = self.order()
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=self.generator, dtype=torch.int64)
        return iter([(int(i), int(s)) for i, s in zip(order, seeds.tolist(), strict=True)])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python and NumPy from the worker's torch seed."""
    del worker_id
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: SkeletonDataset,
    *,
    batch_size: int,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    shuffle: str = "full",
    shuffle_window: int = 8,
    pin_memory: bool | None = None,
    persistent_workers: bool = True,
    prefetch_factor: int | None = 2,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with the seeded sampler (training) or in table order (evaluation).

    ``pin_memory=None`` pins when CUDA is available; workers are persistent between epochs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sampler = None
    if train:
        sampler = SeededSampler(
            len(dataset),
            shuffle=shuffle,
            seed=seed,
            groups=dataset.groups if shuffle == "block" else None,
            window=shuffle_window,
        )
    workers = int(num_workers)
    # Each new loader iterator draws a worker base seed from ``generator``; with the default (None)
    # that draw comes from the global torch RNG, which also drives dropout. How often it happens
    # depends on num_workers and persistent_workers, so the model's random stream, and exact
    # resume, would depend on I/O settings. A private generator keeps the global RNG untouched.
    loader_generator = torch.Generator()
    loader_generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_samples,
        pin_memory=torch.cuda.is_available() if pin_memory is None else bool(pin_memory),
        drop_last=bool(drop_last) and train,
        persistent_workers=bool(persistent_workers) and workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=loader_generator,
    )


# --- settings and the whole data side of an experiment --------------------------------------------


@dataclass(frozen=True)
class DataSettings:
    """The ``data:`` block of a training pipeline's parameters (see docs/training.md)."""

    protocol: str
    fold: int | None = None
    dataset: str | None = None
    table: str | None = None
    streams: tuple[str, ...] = ("joint",)
    num_bodies: int = 2
    val_fraction: float = 0.05
    val_seed: int = 10000
    val_group: str | None = None
    num_classes: int | None = None
    sampling: TemporalSampling = field(default_factory=TemporalSampling)
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
        config["sampling"] = TemporalSampling.from_config(config.get("sampling"))
        config["augmentation"] = Augmentation.from_config(config.get("augmentation"))
        if config.get("shuffle", "full") not in SHUFFLE_MODES:
            raise ValueError(f"data.shuffle must be one of {SHUFFLE_MODES}")
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
    #: model class index <-> table label (identity unless the protocol uses a subset of the labels)
    label_map: LabelMap | None = None


def _uniform(meta: pd.DataFrame, column: str) -> Any:
    values = meta[column].unique()
    if len(values) != 1:
        raise ValueError(f"the chosen rows mix several {column} values {sorted(map(str, values))[:5]}")
    return values[0]


def build_training_data(
    source: Any, settings: DataSettings, seed: int = 0, splits: SplitRows | None = None
) -> TrainingData:
    """Split the table (or use ``splits``) and build the train / validation / test datasets."""
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
            settings.protocol, label_map.num_classes, label_map.num_classes - 1, list(label_map.original),
        )

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
            label_map=label_map,
        )

    logger.info(
        "protocol %s: %s samples (validation carved from train, seed %d)",
        settings.protocol,
        splits.counts(),
        settings.val_seed,
    )
    return TrainingData(
        table=table,
        splits=splits,
        train=dataset(splits.train, True),
        val=dataset(splits.val, False) if len(splits.val) else None,
        test=dataset(splits.test, False),
        num_classes=label_map.num_classes,
        class_names=list(label_map.names),
        num_joints=num_joints,
        num_channels=num_channels,
        layout=layout,
        dataset_name=dataset_name,
        label_map=label_map,
    )


def build_loaders(data: TrainingData, settings: DataSettings, seed: int = 0) -> dict[str, DataLoader | None]:
    """``train`` (seeded sampler), ``val`` and ``test`` (table order) loaders."""
    common = {
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
