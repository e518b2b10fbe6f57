"""From table rows to torch batches: the Dataset, collate, the seeded sampler and loaders.

* :class:`SkeletonDataset` reads one sample at a time from the lazy
  :class:`~skeleton_attention.skeletons.table.SampleTable` (only the needed stream columns, one
  row group at a time, a few row groups cached), applies temporal sampling, derives motion streams
  from the sampled joints where asked (``motion_from="sampled"``), applies training-time
  augmentation, and pads bodies (and views). It is worker-safe: the Parquet file is reopened
  lazily in each DataLoader worker.
* Single-view items hold ``x`` (M, T, V, C) (``x_<stream>`` per stream when several); multi-view
  items (``views="multi"``, read from a multi-view table whose rows stack ``num_views`` views in
  the body axis) hold ``x`` (views, M, T, V, C) and ``view_mask`` (views,) bool.
* More bodies (or views) than the batch holds is decided up front, from the table's metadata:
  an error naming the samples (``bodies_policy`` / ``views_policy`` ``"error"``, the default) or
  an explicit, logged and counted cut (``"keep_first"``), never a silent one.
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from skeleton_attention.skeletons.layouts import LAYOUTS
from skeleton_attention.skeletons.streams import motion_fast, motion_slow
from skeleton_attention.skeletons.table import SampleTable
from skeleton_attention.training.augment import Augmentation
from skeleton_attention.training.labels import LabelMap
from skeleton_attention.training.sampling import TRUNCATION_POLICIES, Sampling, pad_bodies

logger = logging.getLogger(__name__)

SHUFFLE_MODES = ("full", "block", "none")
VIEW_MODES = ("single", "multi")
#: where motion streams come from: the table's precomputed columns, or the sampled joint sequence
MOTION_SOURCES = ("table", "sampled")
#: streams that can be recomputed from the sampled joints (skeletons/streams.py definitions)
MOTION_STREAMS: dict[str, Callable[..., np.ndarray]] = {"motion_fast": motion_fast, "motion_slow": motion_slow}


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


def _examples(ids: Sequence[str], where: np.ndarray, limit: int = 5) -> list[str]:
    return [ids[i] for i in np.flatnonzero(where)[:limit]]


def enforce_limit(
    what: str, counts: np.ndarray, limit: int, policy: str, sample_ids: Sequence[str], source: str
) -> int:
    """Check ``counts`` (bodies or views per sample) against ``limit`` under ``policy``.

    Returns how many samples will be cut (``keep_first``, logged as a warning); raises naming the
    samples with ``error``.
    """
    if policy not in TRUNCATION_POLICIES:
        raise ValueError(f"{what}_policy must be one of {TRUNCATION_POLICIES}, got {policy!r}")
    over = counts > limit
    count = int(over.sum())
    if not count:
        return 0
    examples = _examples(sample_ids, over)
    if policy == "error":
        raise ValueError(
            f"{source}: {count} sample(s) have more {what} than the batch holds ({limit}; up to "
            f"{int(counts.max())}), e.g. {examples}. Raise data.num_{what} or set "
            f"data.{what}_policy: keep_first to keep the first {limit} explicitly"
        )
    logger.warning(
        "%s: %d sample(s) have more %s than %d (up to %d); keeping the first %d (%s_policy: keep_first), e.g. %s",
        source,
        count,
        what,
        limit,
        int(counts.max()),
        limit,
        what,
        examples,
    )
    return count


class SkeletonDataset(Dataset):
    """Samples ``rows`` of a sample table as dicts of numpy arrays (see :func:`collate_samples`).

    Item keys are a dataset index, or ``(index, seed)`` from :class:`SeededSampler`. With
    ``train=True`` the seed drives the random crop/segment choice and the augmentation; evaluation
    is deterministic. One stream gives ``x``; several give ``x_<stream>`` each. ``views="single"``
    gives (M, T, V, C) arrays; ``views="multi"`` (views, M, T, V, C) plus ``view_mask``.
    ``motion_from="sampled"`` computes the ``motion_fast`` / ``motion_slow`` streams from the
    sampled joint sequence (``skeletons/streams.py`` definitions) instead of reading the table's
    columns, which were differenced before any resampling.
    """

    def __init__(
        self,
        table: SampleTable,
        rows: Sequence[int],
        *,
        streams: Sequence[str],
        sampling: Sampling,
        num_bodies: int,
        train: bool,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        cache_row_groups: int = 4,
        views: str = "single",
        num_views: int | None = None,
        bodies_policy: str = "error",
        views_policy: str = "error",
        motion_from: str = "table",
        label_map: LabelMap | None = None,
    ) -> None:
        if not streams:
            raise ValueError("choose at least one stream")
        if views not in VIEW_MODES:
            raise ValueError(f"views must be one of {VIEW_MODES}, got {views!r}")
        if motion_from not in MOTION_SOURCES:
            raise ValueError(f"motion_from must be one of {MOTION_SOURCES}, got {motion_from!r}")
        self.streams = tuple(streams)
        self.derived = tuple(s for s in self.streams if motion_from == "sampled" and s in MOTION_STREAMS)
        needed = [s for s in self.streams if s not in self.derived]
        if self.derived and "joint" not in needed:
            needed.append("joint")
        self.read_streams = tuple(needed)
        missing = [s for s in self.read_streams if s not in table.stream_names]
        if missing:
            raise KeyError(f"{table.path}: no stream column {missing}; available: {table.stream_names}")
        self.table = _private_table(table, cache_row_groups)
        self.rows = np.asarray(rows, dtype=np.int64)
        meta = table.metadata()
        picked = meta.iloc[self.rows]
        self.labels = picked["label"].to_numpy(dtype=np.int64)
        if label_map is not None:  # the table's labels -> model class indices (a protocol's label subset)
            self.labels = label_map.to_model(self.labels)
        self.sample_ids = picked["sample_id"].astype(str).tolist()
        self.num_frames = picked["num_frames"].to_numpy(dtype=np.int64)
        self.sampling = sampling
        self.augmentation = augmentation if (train and augmentation is not None and augmentation.enabled) else None
        self.num_bodies = int(num_bodies)
        self.train = bool(train)
        self.seed = int(seed)
        self.views = views
        self.bodies_policy = bodies_policy
        self.views_policy = views_policy
        self.motion_from = motion_from
        self.groups = row_groups_of(table, self.rows)
        if (self.num_frames < 1).any():
            bad = [self.sample_ids[i] for i in np.flatnonzero(self.num_frames < 1)[:5]]
            raise ValueError(f"samples with no frames cannot be trained on: {bad}")
        layouts = sorted(set(picked["layout"].astype(str))) if len(picked) else []
        # None: streams.py treats every channel as geometric, presence per frame (unknown layouts)
        self.layout = LAYOUTS.get(layouts[0]) if len(layouts) == 1 else None
        if self.derived and len(layouts) > 1:
            raise ValueError(f"motion from sampled joints needs one layout per dataset, got {layouts}")
        self._plan_views_and_bodies(picked, num_views)

    def _plan_views_and_bodies(self, picked: Any, num_views: int | None) -> None:
        """Check views and bodies against the batch size up front (metadata only)."""
        source = str(self.table.path)
        bodies = picked["num_bodies"].to_numpy(dtype=np.int64)
        has_views = (
            picked["num_views"].notna().to_numpy(dtype=bool)
            if "num_views" in picked.columns
            else np.zeros(len(picked), dtype=bool)
        )
        self.cameras_present: list[str | None] = [None] * len(picked)
        if self.views == "single":
            if has_views.any():
                raise ValueError(
                    f"{source} is a multi-view table ({int(has_views.sum())} rows stack num_views views in the "
                    f"body axis, e.g. {_examples(self.sample_ids, has_views)}); a single-view model cannot read "
                    "it: train a multi-view model on it, or a single-view model on the per-camera table"
                )
            self.row_views = np.ones(len(picked), dtype=np.int64)
            self.num_views = 1
            self.bodies_per_view = bodies
        else:
            if not has_views.all():
                raise ValueError(
                    f"{source} is not a multi-view table (no num_views for e.g. "
                    f"{_examples(self.sample_ids, ~has_views)}); a multi-view model needs the table written by "
                    "the multi-view preparation (e.g. ntu_multiview)"
                )
            self.row_views = picked["num_views"].to_numpy(dtype=np.int64)
            if (self.row_views < 1).any() or (bodies % self.row_views).any():
                bad = (self.row_views < 1) | (bodies % np.maximum(self.row_views, 1) != 0)
                raise ValueError(
                    f"{source}: num_bodies is not a multiple of num_views for {_examples(self.sample_ids, bad)}"
                )
            self.bodies_per_view = bodies // self.row_views
            self.num_views = int(num_views) if num_views else int(self.row_views.max(initial=1))
            if self.num_views < 1:
                raise ValueError(f"num_views must be >= 1, got {self.num_views}")
            self.truncated_views = enforce_limit(
                "views", self.row_views, self.num_views, self.views_policy, self.sample_ids, source
            )
            if "cameras_present" in picked.columns:
                self.cameras_present = [None if pd.isna(v) else str(v) for v in picked["cameras_present"]]
        if self.views == "single":
            self.truncated_views = 0
        self.truncated_bodies = enforce_limit(
            "bodies", self.bodies_per_view, self.num_bodies, self.bodies_policy, self.sample_ids, source
        )

    def __len__(self) -> int:
        return len(self.rows)

    def key_name(self, stream: str) -> str:
        return "x" if len(self.streams) == 1 else f"x_{stream}"

    def _view_mask(self, index: int, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """(views,) bool: a view is present when any of its values is non-zero (absent views are
        written as zeros), cross-checked against ``cameras_present``."""
        w = int(self.row_views[index])
        first = arrays["joint"] if "joint" in arrays else next(iter(arrays.values()))
        present = np.any(first.reshape(w, -1) != 0, axis=1)
        listed = self.cameras_present[index]
        if listed is not None and len(listed) != int(present.sum()):
            raise ValueError(
                f"{self.table.path}: sample {self.sample_ids[index]} lists cameras {listed!r} as present "
                f"but {int(present.sum())} of its {w} views hold data"
            )
        return present

    def _to_views(self, x: np.ndarray, index: int) -> np.ndarray:
        """(views * M, T, V, C) stacked -> (num_views, num_bodies, T, V, C), padded / cut per policy."""
        w = int(self.row_views[index])
        m = x.shape[0] // w
        # the policies were checked for the whole dataset up front; this cut is the counted one
        views = [pad_bodies(x[i * m : (i + 1) * m], self.num_bodies, self.bodies_policy) for i in range(w)]
        views = views[: self.num_views]
        while len(views) < self.num_views:
            views.append(np.zeros((self.num_bodies, *x.shape[1:]), dtype=x.dtype))
        return np.stack(views)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple | list):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        if not 0 <= index < len(self.rows):
            raise IndexError(f"index {index} out of range for {len(self.rows)} samples")
        arrays = self.table.read([int(self.rows[index])], self.read_streams)[0]
        present = self._view_mask(index, arrays) if self.views == "multi" else None
        rng = None
        if self.train:
            # without a sampler seed (plain int keys) the randomness is still reproducible per index
            rng = np.random.default_rng(seed if seed is not None else [self.seed, index])
        arrays = self.sampling.apply(arrays, rng, self.train)
        for name in self.derived:
            # x[t+1] - x[t] (or t+2) of the frames the model sees, not of the original recording
            arrays[name] = MOTION_STREAMS[name](arrays["joint"], self.layout)
        arrays = {s: arrays[s] for s in self.streams}
        if self.augmentation is not None:
            assert rng is not None
            arrays = self.augmentation.apply(arrays, rng)
        item: dict[str, Any] = {}
        for stream, a in arrays.items():
            if present is None:
                item[self.key_name(stream)] = pad_bodies(a, self.num_bodies, self.bodies_policy)
            else:
                item[self.key_name(stream)] = self._to_views(a, index)
        if present is not None:
            mask = np.zeros(self.num_views, dtype=bool)
            kept = present[: self.num_views]
            mask[: len(kept)] = kept
            item["view_mask"] = mask
        item["length"] = next(iter(arrays.values())).shape[1]
        item["label"] = int(self.labels[index])
        item["index"] = index
        return item

    def positions(self, index: int) -> np.ndarray:
        """The joint positions of sample ``index`` at the frames the model sees in evaluation (the
        same sampling, no augmentation): (M, T, V, C), or (views, M, T, V, C) for multi-view data.
        For drawing attention on the skeleton, whichever streams the model reads."""
        if "joint" not in self.table.stream_names:
            raise KeyError(f"{self.table.path}: no 'joint' stream to draw the skeleton from")
        arrays = self.table.read([int(self.rows[index])], ("joint",))[0]
        # evaluation sampling is deterministic: the frames match the attention maps of predict()
        joint = self.sampling.apply(arrays, None, False)["joint"]
        if self.views == "multi":
            return self._to_views(joint, index)
        return pad_bodies(joint, self.num_bodies, self.bodies_policy)


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch: ``x*`` float (N, M, T, V, C), or (N, views, M, T, V, C) for
    multi-view items, zero-padded to the longest sample; ``view_mask`` bool (N, views) when the
    items have one; ``mask`` bool (N, T) valid frames (shared by all views); ``label`` long (N,),
    ``index`` long (N,), ``length`` long (N,)."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    lengths = np.array([int(s["length"]) for s in samples], dtype=np.int64)
    t_max = int(lengths.max())
    batch: dict[str, torch.Tensor] = {}
    for key in samples[0]:
        if not key.startswith("x"):
            continue
        first = samples[0][key]
        lead, tail = first.shape[:-3], first.shape[-2:]  # (M,) or (views, M); (V, C)
        out = np.zeros((len(samples), *lead, t_max, *tail), dtype=np.float32)
        for i, sample in enumerate(samples):
            a = sample[key]
            if a.shape[:-3] != lead or a.shape[-2:] != tail:
                raise ValueError(
                    f"sample {sample['index']} {key} has shape {a.shape}, batch expects {(*lead, 'T', *tail)}"
                )
            out[i, ..., : a.shape[-3], :, :] = a
        batch[key] = torch.from_numpy(out)
    if "view_mask" in samples[0]:
        batch["view_mask"] = torch.from_numpy(np.stack([np.asarray(s["view_mask"], dtype=bool) for s in samples]))
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

    Sharded (``num_replicas`` > 1, one replica per DDP rank): every rank draws the same global
    order and the same per-sample seeds as a single process would (the generators stay in step),
    pads the order by wrapping round to a multiple of ``num_replicas``, and keeps positions
    ``rank, rank + num_replicas, ...``. The shards are disjoint and cover the data; step ``s`` of
    the ranks together (per-rank batch B) is exactly the single-process batch ``s`` of size
    ``num_replicas * B``, with the same item seeds, whenever the sample count divides evenly.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        shuffle: str = "full",
        seed: int = 0,
        groups: Sequence[int] | None = None,
        window: int = 8,
        num_replicas: int = 1,
        rank: int = 0,
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
        self.num_replicas, self.rank = 1, 0
        self.shard(rank, num_replicas)

    def shard(self, rank: int, num_replicas: int) -> None:
        """Make this sampler rank ``rank``'s shard of ``num_replicas`` (the trainer calls it under DDP)."""
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not one of {num_replicas} replica(s)")
        self.num_replicas, self.rank = int(num_replicas), int(rank)

    def __len__(self) -> int:
        return -(-self.num_samples // self.num_replicas)  # ceil: the padded shard

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
        # the full order and every seed are drawn on every rank, so the generator advances exactly
        # as in a single process (and as on the other ranks): the checkpointed state is shared
        order = self.order()
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=self.generator, dtype=torch.int64).numpy()
        if self.num_replicas > 1 and self.num_samples:
            padded = len(self) * self.num_replicas
            wrap = np.arange(padded) % self.num_samples  # repeats the first few positions
            order, seeds = order[wrap][self.rank :: self.num_replicas], seeds[wrap][self.rank :: self.num_replicas]
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
    collate_fn: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]] = collate_samples,
) -> DataLoader:
    """A DataLoader with the seeded sampler (training) or in table order (evaluation).

    ``pin_memory=None`` pins when CUDA is available; workers are persistent between epochs.
    ``collate_fn`` turns a list of items into a batch (a family with its own batch layout, e.g. an
    image per sample, passes its own).
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
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available() if pin_memory is None else bool(pin_memory),
        drop_last=bool(drop_last) and train,
        persistent_workers=bool(persistent_workers) and workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=loader_generator,
    )
