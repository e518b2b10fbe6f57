"""training/data.py, sampling.py and augment.py: splits, lazy dataset reads, collate, sampler, loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skeleton_attention.skeletons.sequence import SkeletonSequence
from skeleton_attention.skeletons.table import SampleTable, SampleTableWriter, sequence_to_row
from skeleton_attention.training.augment import Augmentation, rotation_about_axis
from skeleton_attention.training.data import (
    DataSettings,
    SeededSampler,
    SkeletonDataset,
    build_loaders,
    build_training_data,
    collate_samples,
    make_loader,
    protocol_splits,
)
from skeleton_attention.training.sampling import (
    TemporalSampling,
    interpolate_frames,
    pad_bodies,
    resize_positions,
)

PROTOCOL = "toy_xsub"


def make_table(
    path: Path,
    *,
    num_classes: int = 3,
    per_class: int = 12,
    num_joints: int = 4,
    max_bodies: int = 2,
    row_group_size: int = 5,
    poison: str | None = None,
    order_seed: int | None = None,
    signal: float = 0.0,
) -> Path:
    """A small sample table in the project's layout.

    Sample ``i`` has label ``i % num_classes``; odd "subjects" train, even test, every 7th sample
    is outside the protocol (split null). The joint stream's channel 0 holds the row's sample
    number + 1 everywhere (so a read can be traced to its row), channel 1 the frame index, and
    channel 2 ``signal * label`` (a learnable class signal when ``signal`` > 0). ``poison`` names a
    stream column written with a wrong length: reading it would fail.
    """
    n = num_classes * per_class
    order = np.arange(n) if order_seed is None else np.random.default_rng(order_seed).permutation(n)
    streams = ("joint", "bone")
    with SampleTableWriter(path, (PROTOCOL, "other"), streams, row_group_size=row_group_size) as writer:
        for i in order:
            label = int(i % num_classes)
            frames = 6 + int(i % 5) * 3
            bodies = 1 + int(i % max_bodies)
            coords = np.zeros((bodies, frames, num_joints, 3), dtype=np.float32)
            coords[..., 0] = i + 1
            coords[..., 1] = np.arange(frames, dtype=np.float32)[None, :, None]
            coords[..., 2] = signal * label
            seq = SkeletonSequence(
                sample_id=f"s{i:04d}",
                dataset="toy",
                layout="toy",
                coords=coords,
                label=label,
                label_name=f"class_{label}",
                meta={"subject": int(i // num_classes)},
            )
            subject = i // num_classes
            split = None if i % 7 == 6 else ("train" if subject % 2 else "test")
            row = sequence_to_row(seq, {"joint": coords, "bone": -coords}, {PROTOCOL: split, "other": "train"})
            if poison is not None:
                row[poison] = np.zeros(3, dtype=np.float32)
            writer.write(row)
    return path


@pytest.fixture
def table(tmp_path) -> SampleTable:
    return SampleTable(make_table(tmp_path / "samples.parquet"))


# --- splits -----------------------------------------------------------------------------------------


def test_validation_is_carved_from_train_only_stratified_and_deterministic(table):
    meta = table.metadata()
    splits = protocol_splits(meta, PROTOCOL, val_fraction=0.25, seed=3)
    split = meta[f"split_{PROTOCOL}"]
    train_rows = set(meta.loc[split == "train", "row"])
    test_rows = set(meta.loc[split == "test", "row"])
    assert set(splits.val) <= train_rows
    assert set(splits.train) | set(splits.val) == train_rows
    assert not set(splits.train) & set(splits.val)
    assert set(splits.test) == test_rows
    assert not (set(splits.val) | set(splits.train)) & test_rows
    # null-split rows are in no set
    outside = set(meta.loc[split.isna(), "row"])
    assert outside and not outside & (set(splits.train) | set(splits.val) | set(splits.test))
    # stratified: round(0.25 * n_c) per class
    for label, group in meta.loc[split == "train"].groupby("label"):
        expected = int(np.floor(0.25 * len(group) + 0.5))
        assert int(np.sum(meta.loc[splits.val, "label"] == label)) == expected
    again = protocol_splits(meta, PROTOCOL, val_fraction=0.25, seed=3)
    np.testing.assert_array_equal(again.val, splits.val)
    other = protocol_splits(meta, PROTOCOL, val_fraction=0.25, seed=4)
    assert not np.array_equal(other.val, splits.val)


def test_validation_does_not_depend_on_table_row_order(tmp_path):
    a = SampleTable(make_table(tmp_path / "a.parquet"))
    b = SampleTable(make_table(tmp_path / "b.parquet", order_seed=11))
    ids = []
    for t in (a, b):
        meta = t.metadata()
        val = protocol_splits(meta, PROTOCOL, 0.3, seed=0).val
        ids.append(sorted(meta.loc[val, "sample_id"]))
    assert ids[0] == ids[1]


def test_small_classes_keep_a_training_sample_and_bad_settings_raise(table):
    meta = table.metadata()
    tiny = meta[meta["row"] < 12].copy()  # a few train samples per class
    splits = protocol_splits(tiny, PROTOCOL, 0.9, seed=0)
    for label in tiny["label"].unique():
        assert np.sum(tiny.set_index("row").loc[splits.train, "label"] == label) >= 1
    assert len(protocol_splits(meta, PROTOCOL, 0.0, seed=0).val) == 0
    with pytest.raises(KeyError, match="no protocol 'nope'"):
        protocol_splits(meta, "nope", 0.1, 0)
    with pytest.raises(ValueError, match="val_fraction"):
        protocol_splits(meta, PROTOCOL, 1.0, 0)


# --- dataset --------------------------------------------------------------------------------------


def test_dataset_reads_only_its_rows_and_streams(tmp_path):
    path = make_table(tmp_path / "poisoned.parquet", poison="bone")
    table = SampleTable(path)
    meta = table.metadata()
    splits = protocol_splits(meta, PROTOCOL, 0.2, seed=0)
    ds = SkeletonDataset(table, splits.train, streams=("joint",), sampling=TemporalSampling(), num_bodies=2, train=True)
    read_rows: list[int] = []
    streams_read: set[str] = set()
    original = ds.table.read

    def spy(rows, streams):
        read_rows.extend(int(r) for r in rows)
        streams_read.update(streams)
        return original(rows, streams)

    ds.table.read = spy
    for i in range(len(ds)):
        item = ds[i]
        row = int(splits.train[i])
        # channel 0 encodes the sample number: the data really is that row's
        sample_number = int(meta.loc[row, "sample_id"][1:])
        present = item["x"][..., 0] != 0
        assert np.all(item["x"][..., 0][present] == sample_number + 1)
        assert item["x"].shape[0] == 2 and item["length"] == meta.loc[row, "num_frames"]
    assert set(read_rows) == set(splits.train.tolist())
    assert streams_read == {"joint"}
    # the poisoned stream would have failed to reshape had it been read
    with pytest.raises(ValueError):
        SkeletonDataset(table, splits.train, streams=("bone",), sampling=TemporalSampling(), num_bodies=2, train=False)[
            0
        ]
    with pytest.raises(KeyError, match="no stream column"):
        SkeletonDataset(
            table, splits.train, streams=("velocity",), sampling=TemporalSampling(), num_bodies=2, train=False
        )


def test_multi_stream_items_pad_bodies_and_collate_masks(table):
    meta = table.metadata()
    rows = meta["row"].to_numpy()[:6]
    ds = SkeletonDataset(table, rows, streams=("joint", "bone"), sampling=TemporalSampling(), num_bodies=3, train=False)
    items = [ds[i] for i in range(len(ds))]
    assert set(items[0]) == {"x_joint", "x_bone", "length", "label", "index"}
    for item in items:
        np.testing.assert_array_equal(item["x_bone"], -item["x_joint"])
        assert item["x_joint"].shape[0] == 3
    batch = collate_samples(items)
    lengths = meta["num_frames"].to_numpy()[:6]
    assert batch["x_joint"].shape == (6, 3, lengths.max(), 4, 3)
    assert batch["mask"].dtype == torch.bool
    np.testing.assert_array_equal(batch["mask"].sum(1).numpy(), lengths)
    # padded frames are zero, valid frames carry the frame index in channel 1
    for i, n in enumerate(lengths):
        assert torch.all(batch["x_joint"][i, :, n:] == 0)
        np.testing.assert_array_equal(batch["x_joint"][i, 0, :n, 0, 1].numpy(), np.arange(n))
    assert batch["label"].dtype == torch.long
    np.testing.assert_array_equal(batch["label"].numpy(), meta["label"].to_numpy()[:6])


def test_loader_batches_do_not_depend_on_workers_and_resume_from_generator_state(table):
    settings = DataSettings.from_config(
        {
            "protocol": PROTOCOL,
            "val_fraction": 0.2,
            "batch_size": 4,
            "sampling": {"mode": "crop_resize", "length": 5, "crop_ratio": [0.5, 1.0]},
            "augmentation": {"noise_std": 0.01, "rotation_deg": 10},
        }
    )
    data = build_training_data(table, settings, seed=1)

    def epoch(loader) -> list[torch.Tensor]:
        return [b["x"] for b in loader]

    serial = make_loader(data.train, batch_size=4, train=True, seed=5, num_workers=0)
    parallel = make_loader(data.train, batch_size=4, train=True, seed=5, num_workers=2, pin_memory=False)
    a, b = epoch(serial), epoch(parallel)
    assert len(a) == len(b) == int(np.ceil(len(data.train) / 4))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    # the generator state alone reproduces the next epoch
    state = serial.sampler.generator.get_state()
    second = epoch(serial)
    serial.sampler.generator.set_state(state)
    again = epoch(serial)
    for x, y in zip(second, again, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not torch.equal(torch.cat(a), torch.cat(second))  # a new epoch is a new draw


def test_iterating_a_loader_leaves_the_global_torch_rng_alone(table):
    """Dropout draws from the global torch RNG; if loader iteration also drew from it (worker base
    seeds, once per iterator, i.e. once per run with persistent workers), the model's random stream
    would depend on num_workers and a resumed run would diverge from an uninterrupted one."""
    settings = DataSettings.from_config({"protocol": PROTOCOL, "val_fraction": 0.2, "batch_size": 4})
    data = build_training_data(table, settings, seed=1)
    for workers in (0, 1):
        loader = make_loader(data.train, batch_size=4, train=True, seed=5, num_workers=workers, pin_memory=False)
        before = torch.get_rng_state()
        for _ in range(2):
            for _ in loader:
                pass
        assert torch.equal(before, torch.get_rng_state())


def test_build_training_data_reports_model_dimensions(table):
    settings = DataSettings.from_config({"protocol": PROTOCOL, "val_fraction": 0.2, "num_bodies": 2})
    data = build_training_data(table, settings)
    assert (data.num_classes, data.num_joints, data.num_channels) == (3, 4, 3)
    assert data.class_names == ["class_0", "class_1", "class_2"]
    assert data.val is not None and len(data.val) == len(data.splits.val)
    loaders = build_loaders(data, settings)
    assert loaders["test"].sampler.__class__.__name__ == "SequentialSampler"
    with pytest.raises(ValueError, match="unknown data settings"):
        DataSettings.from_config({"protocol": PROTOCOL, "val_frac": 0.1})


def test_block_shuffle_keeps_row_groups_together(table):
    meta = table.metadata()
    ds = SkeletonDataset(
        table, meta["row"].to_numpy(), streams=("joint",), sampling=TemporalSampling(), num_bodies=2, train=True
    )
    sampler = SeededSampler(len(ds), shuffle="block", seed=0, groups=ds.groups, window=2)
    order = [i for i, _ in sampler]
    assert sorted(order) == list(range(len(ds)))
    groups = ds.groups[order]
    # consecutive windows of the order hold at most `window` distinct row groups each
    sizes = np.bincount(ds.groups)
    position = 0
    while position < len(order):
        first_two = list(dict.fromkeys(groups[position:]))[:2]
        span = int(sum(sizes[g] for g in first_two))
        assert set(groups[position : position + span]) == set(first_two)
        position += span
    with pytest.raises(ValueError, match="needs the row group"):
        SeededSampler(5, shuffle="block")


# --- sampling ---------------------------------------------------------------------------------------


def _ramp(frames: int, bodies: int = 1) -> np.ndarray:
    x = np.zeros((bodies, frames, 2, 3), dtype=np.float32)
    x[..., 0] = np.arange(frames, dtype=np.float32)[None, :, None]
    return x


def test_resize_to_own_length_is_identity_and_linear_interpolation_is_exact():
    x = _ramp(10)
    np.testing.assert_array_equal(interpolate_frames(x, resize_positions(0, 10, 10)), x)
    out = interpolate_frames(x, resize_positions(0, 10, 4))
    # frame centres of 4 outputs over 10 inputs: (i + 0.5) * 2.5 - 0.5
    np.testing.assert_allclose(out[0, :, 0, 0], [0.75, 3.25, 5.75, 8.25])
    up = interpolate_frames(x[:, :2], resize_positions(0, 2, 4))
    np.testing.assert_allclose(up[0, :, 0, 0], [0.0, 0.25, 0.75, 1.0])


def test_sampling_modes():
    x = {"joint": _ramp(40), "bone": -_ramp(40)}
    rng = np.random.default_rng(0)
    full = TemporalSampling(mode="full")
    assert full.apply(x, None, train=True)["joint"].shape[1] == 40
    capped = TemporalSampling(mode="full", max_frames=16).apply(x, None, train=False)
    assert capped["joint"].shape[1] == 16
    resampled = TemporalSampling(mode="resample", length=8).apply(x, None, train=False)
    np.testing.assert_allclose(resampled["joint"][0, :, 0, 0], (np.arange(8) + 0.5) * 5 - 0.5)
    np.testing.assert_array_equal(resampled["bone"], -resampled["joint"])

    crop = TemporalSampling(mode="crop_resize", length=10, crop_ratio=(0.5, 0.6), test_crop_ratio=0.5)
    for _ in range(20):
        frames = crop.apply(x, rng, train=True)["joint"][0, :, 0, 0]
        span = frames.max() - frames.min()
        assert frames.shape == (10,)
        assert 0.5 * 40 - 1 - 4 <= span <= 0.6 * 40  # the window covers 50-60 % of the frames
        assert frames.min() >= 0 and frames.max() <= 39
    centre = crop.apply(x, None, train=False)["joint"][0, :, 0, 0]
    assert centre.min() >= 10 and centre.max() <= 29  # the central 20 frames
    np.testing.assert_allclose(centre.mean(), 19.5, atol=1e-5)

    seg = TemporalSampling(mode="segments", num_segments=4)
    test_frames = seg.apply(x, None, train=False)["joint"][0, :, 0, 0]
    np.testing.assert_array_equal(test_frames, [5, 15, 25, 35])
    for _ in range(20):
        train_frames = seg.apply(x, rng, train=True)["joint"][0, :, 0, 0]
        assert np.all(train_frames // 10 == np.arange(4))  # one frame in each segment
        assert np.all(train_frames == np.round(train_frames))
    clips = TemporalSampling(mode="segments", num_segments=2, frames_per_segment=5)
    out = clips.apply(x, None, train=False)["joint"][0, :, 0, 0]
    assert out.shape == (10,) and np.all(out[:5] < 20) and np.all(out[5:] >= 20)
    with pytest.raises(ValueError, match="needs a random generator"):
        crop.apply(x, None, train=True)
    with pytest.raises(ValueError, match="unknown sampling settings"):
        TemporalSampling.from_config({"mode": "full", "lenght": 3})
    with pytest.raises(ValueError, match="crop_ratio"):
        TemporalSampling(mode="crop_resize", crop_ratio=(0.8, 0.5))


def test_pad_bodies():
    x = _ramp(3, bodies=1)
    padded = pad_bodies(x, 2)
    assert padded.shape == (2, 3, 2, 3) and np.all(padded[1] == 0)
    np.testing.assert_array_equal(pad_bodies(_ramp(3, bodies=3), 2, "keep_first"), _ramp(3, bodies=3)[:2])
    with pytest.raises(ValueError, match="3 bodies but the batch holds 2"):
        pad_bodies(_ramp(3, bodies=3), 2)  # never a silent cut


# --- augmentation -------------------------------------------------------------------------------------


def test_augmentation_rotation_scale_noise_keep_missing_data_missing():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    x[1, 3:] = 0.0  # body 2 missing in the last frames
    x[0, :, 1] = 0.0  # a joint exactly at the origin (e.g. the centre joint) in a present body
    rot = Augmentation(rotation_deg=45, vertical_axis=2).apply({"joint": x}, np.random.default_rng(1))["joint"]
    np.testing.assert_allclose(np.linalg.norm(rot, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(rot[..., 2], x[..., 2], rtol=1e-6)  # heights unchanged
    assert np.all(rot[1, 3:] == 0)
    scaled = Augmentation(scale=0.2).apply({"joint": x}, np.random.default_rng(2))["joint"]
    factor = scaled[0, 0, 0] / x[0, 0, 0]
    assert 0.8 <= factor[0] <= 1.2 and np.allclose(factor, factor[0])
    noisy = Augmentation(noise_std=0.1).apply({"joint": x}, np.random.default_rng(3))["joint"]
    assert np.all(noisy[1, 3:] == 0)
    assert np.any(noisy[0, :, 1] != 0)  # present body: the origin joint is noised too
    diff = (noisy - x)[0]
    assert 0.07 < diff.std() < 0.13
    off = Augmentation()
    assert not off.enabled and off.apply({"joint": x}, rng)["joint"] is x
    np.testing.assert_allclose(rotation_about_axis(np.pi / 2, 2) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    with pytest.raises(ValueError, match="needs 3-D"):
        Augmentation(rotation_deg=5, spatial_dims=2)
    two_d = Augmentation(noise_std=0.5, spatial_dims=2).apply({"joint": x}, rng)["joint"]
    np.testing.assert_array_equal(two_d[..., 2], x[..., 2])  # e.g. an OpenPose score channel


def test_validation_can_hold_out_whole_training_subjects(table):
    meta = table.metadata()
    split = meta[f"split_{PROTOCOL}"]
    splits = protocol_splits(meta, PROTOCOL, val_fraction=0.3, seed=1, val_group="subject")
    train_subjects = set(meta.loc[meta["row"].isin(splits.train), "subject"])
    val_subjects = set(meta.loc[meta["row"].isin(splits.val), "subject"])
    all_train_subjects = set(meta.loc[split == "train", "subject"])
    assert val_subjects and not train_subjects & val_subjects  # no person on both sides
    assert train_subjects | val_subjects == all_train_subjects
    assert len(val_subjects) == round(0.3 * len(all_train_subjects))
    assert set(splits.train) | set(splits.val) == set(meta.loc[split == "train", "row"])
    assert not set(splits.val) & set(meta.loc[split == "test", "row"])
    again = protocol_splits(meta, PROTOCOL, val_fraction=0.3, seed=1, val_group="subject")
    np.testing.assert_array_equal(again.val, splits.val)
    with pytest.raises(KeyError, match="not a metadata column"):
        protocol_splits(meta, PROTOCOL, val_fraction=0.3, seed=1, val_group="nope")


# --- cross-validated protocols ------------------------------------------------------------------------


def _fold_table(path: Path) -> SampleTable:
    with SampleTableWriter(path, (), ("joint",), row_group_size=4, fold_protocols=("toy_fold",)) as writer:
        for i in range(30):
            coords = np.full((1, 5, 4, 3), i, dtype=np.float32)
            seq = SkeletonSequence(
                sample_id=f"s{i:03d}",
                dataset="toy",
                layout="toy",
                coords=coords,
                label=i % 3,
                label_name=f"c{i % 3}",
                meta={"subject": i // 3},
            )
            fold = None if i == 29 else 1 + (i // 3) % 5  # subject-wise folds; one sample outside
            writer.write(sequence_to_row(seq, {"joint": coords}, {"toy_fold": fold}))
    return SampleTable(path)


def test_fold_protocol_tests_one_fold_and_trains_on_the_others(tmp_path):
    from skeleton_attention.training.data import SplitRows, protocol_folds

    meta = _fold_table(tmp_path / "f.parquet").metadata()
    assert protocol_folds(meta, "toy_fold") == [1, 2, 3, 4, 5]
    seen_test = []
    for fold in range(1, 6):
        splits = protocol_splits(meta, "toy_fold", 0.2, seed=0, val_group="subject", fold=fold)
        fold_of = meta["split_toy_fold"]
        assert set(fold_of.iloc[splits.test]) == {fold}
        assert fold not in set(fold_of.iloc[np.concatenate([splits.train, splits.val])])
        assert 29 not in set(splits.train) | set(splits.val) | set(splits.test)  # null fold: in no set
        # whole subjects are held out for validation, never a test subject
        val_subjects = set(meta["subject"].iloc[splits.val])
        assert val_subjects and not val_subjects & set(meta["subject"].iloc[splits.train])
        assert not val_subjects & set(meta["subject"].iloc[splits.test])
        assert splits.fold == fold
        again = SplitRows.from_frame(splits.as_frame(meta), meta, "toy_fold", fold)
        np.testing.assert_array_equal(again.test, splits.test)
        with pytest.raises(ValueError, match="not protocol 'toy_fold'"):
            SplitRows.from_frame(splits.as_frame(meta), meta, "toy_fold", 1 + fold % 5)
        seen_test.extend(splits.test.tolist())
    assert sorted(seen_test) == list(range(29))  # every sample in a fold is tested exactly once


def test_fold_choice_is_required_and_checked(tmp_path, table):
    meta = _fold_table(tmp_path / "f.parquet").metadata()
    with pytest.raises(ValueError, match="cross-validated"):
        protocol_splits(meta, "toy_fold", 0.2, seed=0)
    with pytest.raises(ValueError, match="no fold 9"):
        protocol_splits(meta, "toy_fold", 0.2, seed=0, fold=9)
    with pytest.raises(ValueError, match="not cross-validated"):
        protocol_splits(table.metadata(), PROTOCOL, 0.2, seed=0, fold=1)


def test_swap_bodies_reverses_the_persons_of_every_stream_alike():
    rng_values = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3) + 1
    streams = {"joint": rng_values, "bone": -rng_values}
    always = Augmentation(swap_bodies=1.0)
    out = always.apply(streams, np.random.default_rng(0))
    np.testing.assert_array_equal(out["joint"], rng_values[::-1])
    np.testing.assert_array_equal(out["bone"], -rng_values[::-1])
    single = {"joint": rng_values[:1]}
    np.testing.assert_array_equal(always.apply(single, np.random.default_rng(0))["joint"], rng_values[:1])
    half = Augmentation(swap_bodies=0.5)
    swapped = sum(
        bool(np.array_equal(half.apply(streams, np.random.default_rng(s))["joint"], rng_values[::-1]))
        for s in range(200)
    )
    assert 70 < swapped < 130  # about half of the draws
    assert not Augmentation().enabled and half.enabled
    with pytest.raises(ValueError, match="probability"):
        Augmentation(swap_bodies=1.5)
