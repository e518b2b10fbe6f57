"""The batch contract between the data side and every model family.

Single and multi-view batches chosen by the model's InputSpec, the DataDescription models are built
from, explicit body/view truncation, composable temporal sampling, motion streams computed after
sampling, and Trainer.predict on multi-view batches.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from skeleton_attention.models import registry
from skeleton_attention.models.base import (
    DataDescription,
    InputSpec,
    ModelOutput,
    SkeletonModel,
    check_multiview_batch,
)
from skeleton_attention.models.sta_lstm import build_sta_lstm
from skeleton_attention.skeletons.layouts import NTU25
from skeleton_attention.skeletons.sequence import SkeletonSequence
from skeleton_attention.skeletons.streams import motion_fast
from skeleton_attention.skeletons.table import SampleTable, SampleTableWriter, sequence_to_row
from skeleton_attention.training.batches import SkeletonDataset, collate_samples, make_loader
from skeleton_attention.training.data import DataSettings, SplitRows, build_training_data
from skeleton_attention.training.sampling import (
    Crop,
    Resample,
    SamplingPipeline,
    Segments,
    TemporalSampling,
    sampling_from_config,
)
from skeleton_attention.training.trainer import Trainer, TrainerConfig

PROTOCOL = "toy_xsub"
MULTI = InputSpec(views="multi")


def _write(path: Path, samples: list[dict]) -> SampleTable:
    """A table from dicts: id, coords (M, T, V, C), label, split, meta, optional motion_fast."""
    with SampleTableWriter(path, (PROTOCOL,), ("joint", "motion_fast"), row_group_size=4) as writer:
        for s in samples:
            coords = np.asarray(s["coords"], dtype=np.float32)
            seq = SkeletonSequence(
                sample_id=s["id"],
                dataset="toy",
                layout=s.get("layout", "toy"),
                coords=coords,
                label=s["label"],
                label_name=f"class_{s['label']}",
                meta=dict(s.get("meta", {})),
            )
            motion = s.get("motion_fast", motion_fast(coords))
            writer.write(sequence_to_row(seq, {"joint": coords, "motion_fast": motion}, {PROTOCOL: s["split"]}))
    return SampleTable(path)


def _views(present: str, *, bodies: int = 1, frames: int = 5, joints: int = 2, offset: float = 0.0) -> np.ndarray:
    """(3 * bodies, T, V, 3): camera c's views hold c * 100 + frame; absent cameras are zeros."""
    out = np.zeros((3, bodies, frames, joints, 3), dtype=np.float32)
    for c in present:
        out[int(c) - 1] = int(c) * 100 + offset + np.arange(frames, dtype=np.float32)[None, :, None, None]
    return out.reshape(3 * bodies, frames, joints, 3)


@pytest.fixture
def multiview_table(tmp_path) -> SampleTable:
    samples = [
        {
            "id": "g0",
            "coords": _views("123"),
            "label": 0,
            "split": "train",
            "meta": {"num_views": 3, "cameras_present": "123"},
        },
        {
            "id": "g1",
            "coords": _views("12", frames=4),
            "label": 1,
            "split": "train",
            "meta": {"num_views": 3, "cameras_present": "12"},
        },  # camera 3 missing
        {
            "id": "g2",
            "coords": _views("13", bodies=2, frames=3),
            "label": 0,
            "split": "test",
            "meta": {"num_views": 3, "cameras_present": "13"},
        },
        {
            "id": "g3",
            "coords": _views("123", frames=6),
            "label": 1,
            "split": "test",
            "meta": {"num_views": 3, "cameras_present": "123"},
        },
    ]
    return _write(tmp_path / "multi.parquet", samples)


@pytest.fixture
def single_table(tmp_path) -> SampleTable:
    rng = np.random.default_rng(0)
    samples = [
        {
            "id": f"s{i}",
            "coords": rng.normal(size=(1 + i % 3, 8 + i, 2, 3)) + 5,
            "label": i % 2,
            "split": "train" if i < 6 else "test",
        }
        for i in range(8)
    ]
    return _write(tmp_path / "single.parquet", samples)


def _settings(**extra) -> DataSettings:
    return DataSettings.from_config({"protocol": PROTOCOL, "val_fraction": 0.0, "batch_size": 2, **extra})


# --- multi-view batches ---------------------------------------------------------------------------


def test_multiview_batch_unstacks_views_and_masks_a_missing_view(multiview_table):
    data = build_training_data(multiview_table, _settings(num_bodies=2), input_spec=MULTI)
    items = [data.train[i] for i in range(len(data.train))]
    assert items[0]["x"].shape == (3, 2, 5, 2, 3)
    batch = collate_samples(items)
    assert batch["x"].shape == (2, 3, 2, 5, 2, 3)  # (N, views, M, T, V, C), T = longest sample
    assert batch["view_mask"].dtype == torch.bool
    assert batch["view_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert batch["mask"].tolist() == [[True] * 5, [True] * 4 + [False]]
    # view c of the recording is camera c's data (unstacked in camera order), body 2 is padding
    for c in (1, 2):
        np.testing.assert_array_equal(batch["x"][1, c - 1, 0, :4, 0, 0].numpy(), c * 100 + np.arange(4))
    assert torch.all(batch["x"][1, 2] == 0) and torch.all(batch["x"][:, :, 1] == 0)
    test = collate_samples([data.test[i] for i in range(len(data.test))])
    assert test["view_mask"].tolist() == [[True, False, True], [True, True, True]]
    np.testing.assert_array_equal(test["x"][0, 2, 1, :3, 0, 0].numpy(), 300 + np.arange(3))  # 2nd body of camera 3
    assert data.description.multi_view and data.description.num_views == 3
    x, mask, _ = check_multiview_batch(test, num_views=3, num_bodies=2, num_joints=2, in_channels=3)
    assert x.shape[3] == mask.shape[1] == 6


def test_multiview_sampling_and_augmentation_keep_views_aligned_and_absent_views_zero(multiview_table):
    settings = _settings(
        num_bodies=2, sampling=[{"resample": {"length": 8}}], augmentation={"rotation_deg": 20, "noise_std": 0.01}
    )
    data = build_training_data(multiview_table, settings, seed=3, input_spec=MULTI)
    item = data.train[(1, 7)]
    assert item["x"].shape == (3, 2, 8, 2, 3) and item["length"] == 8
    assert item["view_mask"].tolist() == [True, True, False]
    assert np.all(item["x"][2] == 0)  # the missing camera stays missing under noise and rotation


def test_view_mask_must_agree_with_cameras_present(tmp_path):
    table = _write(
        tmp_path / "t.parquet",
        [
            {
                "id": "bad",
                "coords": _views("12"),
                "label": 0,
                "split": "train",
                "meta": {"num_views": 3, "cameras_present": "123"},
            },
            {"id": "unlisted", "coords": _views("23"), "label": 0, "split": "train", "meta": {"num_views": 3}},
        ],
    )
    ds = SkeletonDataset(
        table, [0, 1], streams=("joint",), sampling=TemporalSampling(), num_bodies=1, train=False, views="multi"
    )
    with pytest.raises(ValueError, match=r"bad lists cameras '123' as present but 2 of its 3 views hold data"):
        ds[0]
    assert ds[1]["view_mask"].tolist() == [False, True, True]  # no cameras_present: the data decide
    with pytest.raises(ValueError, match="num_views must be a positive integer"):
        _settings(num_views=0)


def test_single_and_multi_view_mismatches_fail_clearly(multiview_table, single_table):
    with pytest.raises(ValueError, match=r"is a multi-view table .* a single-view model cannot read it"):
        build_training_data(multiview_table, _settings(num_bodies=2))
    with pytest.raises(ValueError, match=r"is not a multi-view table .* a multi-view model needs"):
        build_training_data(single_table, _settings(num_bodies=3), input_spec=MULTI)
    single = DataDescription(num_classes=2, num_joints=2, num_bodies=1)
    with pytest.raises(ValueError, match="consumes multi-view batches but the data are single-view"):
        _with_multiview_model(lambda: registry.build_model("multi_test", data=single))
    multi = DataDescription(num_classes=2, num_joints=2, num_bodies=1, num_views=3, multi_view=True)
    with pytest.raises(ValueError, match="consumes single-view batches but the data are multi-view"):
        registry.build_model("sta_lstm", data=multi)


def test_input_spec_checks_streams_and_fixed_length(single_table):
    sta = registry.model_input_spec("sta_lstm")
    assert sta == InputSpec(views="single", max_streams=1)
    with pytest.raises(ValueError, match="at most 1 stream"):
        build_training_data(single_table, _settings(num_bodies=3, streams=["joint", "motion_fast"]), input_spec=sta)
    fixed = InputSpec(fixed_length=True)
    with pytest.raises(ValueError, match="needs a fixed number of frames"):
        build_training_data(single_table, _settings(num_bodies=3), input_spec=fixed)
    data = build_training_data(
        single_table, _settings(num_bodies=3, sampling={"mode": "resample", "length": 7}), input_spec=fixed
    )
    assert data.description.num_frames == 7
    with pytest.raises(ValueError, match=r"consumes the streams \['joint', 'bone'\]"):
        InputSpec(streams=("joint", "bone")).check(streams=["joint"], fixed_length=None)


# --- the data description -------------------------------------------------------------------------


def test_description_from_a_table_round_trips_through_an_artifact(single_table, tmp_path):
    data = build_training_data(single_table, _settings(num_bodies=3, streams=["joint", "motion_fast"]))
    d = data.description
    assert (d.num_classes, d.num_joints, d.num_bodies, d.num_views, d.multi_view) == (2, 2, 3, 1, False)
    assert d.streams == ("joint", "motion_fast") and d.channels == (3, 3) and d.num_frames is None
    assert d.class_names == ("class_0", "class_1") and d.layout == "toy" and d.joint_layout() is None
    assert d.batch_keys() == ("x_joint", "x_motion_fast")
    path = tmp_path / "artifact.pt"
    torch.save({"model_kwargs": {"data": d.to_dict()}}, path)
    loaded = torch.load(path, weights_only=True)["model_kwargs"]["data"]
    assert DataDescription.from_dict(loaded) == d
    with pytest.raises(ValueError, match="unknown data description fields"):
        DataDescription.from_dict({**loaded, "frames": 3})


def test_sta_lstm_is_built_from_a_description_and_from_the_old_four_integers():
    d = DataDescription(num_classes=4, num_joints=25, num_bodies=2, layout="ntu25")
    assert d.joint_layout() is NTU25  # joint names and parents for the model
    model = registry.build_model("sta_lstm", data=d.to_dict(), hidden_size=8, attention_hidden_size=8)
    old = registry.build_model(
        "sta_lstm", num_classes=4, num_joints=25, num_bodies=2, in_channels=3, hidden_size=8, attention_hidden_size=8
    )
    assert [p.shape for p in model.parameters()] == [p.shape for p in old.parameters()]
    assert model.num_points == 50 and model.in_channels == 3
    with pytest.raises(ValueError, match="either data= or the integers"):
        registry.build_model("sta_lstm", data=d, num_classes=4)
    two = DataDescription(num_classes=4, num_joints=25, num_bodies=2, streams=("joint", "bone"), channels=(3, 3))
    with pytest.raises(ValueError, match="takes at most 1 stream"):
        registry.build_model("sta_lstm", data=two)  # the registry checks the declared input
    with pytest.raises(ValueError, match="one single-view stream"):
        build_sta_lstm(two)  # and the builder itself


@pytest.mark.slow
def test_description_and_multiview_batch_from_the_real_prepared_multiview_table(shared_data, tmp_path):
    from skeleton_attention.skeletons.bundle import PreparedBundle
    from tests.kedro_helpers import run_pipeline

    raw = tmp_path / "raw"
    shutil.copytree(shared_data / "ntu_multiview", raw, ignore=shutil.ignore_patterns("*.md"))
    missing = shared_data / "ntu_meta" / "NTU_RGBD_samples_with_missing_skeletons.txt"
    run_pipeline("prepare_ntu", tmp_path, {"ntu_raw_dir": str(raw), "ntu_missing_list": str(missing)})
    table = PreparedBundle(tmp_path / "data/04_feature/ntu_multiview").table
    meta = table.metadata()
    a050 = int(np.flatnonzero(meta["sample_id"].str.endswith("A050"))[0])
    splits = SplitRows(
        protocol="ntu60_xsub", train=np.array([1 - a050]), val=np.array([], dtype=np.int64), test=np.array([a050])
    )
    settings = DataSettings.from_config(
        {
            "protocol": "ntu60_xsub",
            "num_bodies": 2,
            "batch_size": 1,
            "sampling": [{"resample": {"length": 20}}, {"crop": {"length": 16}}],
        }
    )
    data = build_training_data(table, settings, splits=splits, input_spec=MULTI)
    d = data.description
    assert (d.num_views, d.num_bodies, d.num_joints, d.num_frames, d.layout) == (3, 2, 25, 16, "ntu25")
    assert d.joint_layout() is NTU25
    batch = collate_samples([data.test[0]])
    assert batch["x"].shape == (1, 3, 2, 16, 25, 3) and batch["view_mask"].all()
    # A050 (punching) has two actors in every view; A001 one, the second body is padding
    assert torch.any(batch["x"][0, :, 1] != 0)
    assert torch.all(collate_samples([data.train[0]])["x"][0, :, 1] == 0)
    with pytest.raises(ValueError, match="1 sample\\(s\\) have more bodies than the batch holds"):
        build_training_data(
            table,
            DataSettings.from_config({"protocol": "ntu60_xsub", "num_bodies": 1}),
            splits=splits,
            input_spec=MULTI,
        )


# --- truncation policies --------------------------------------------------------------------------


def test_more_bodies_than_the_batch_holds_is_an_error_or_a_logged_counted_cut(single_table, caplog):
    with pytest.raises(ValueError, match=r"have more bodies than the batch holds \(2; up to 3\).*bodies_policy"):
        build_training_data(single_table, _settings(num_bodies=2))
    with caplog.at_level(logging.WARNING, logger="skeleton_attention.training.batches"):
        data = build_training_data(single_table, _settings(num_bodies=2, bodies_policy="keep_first"))
    assert data.train.truncated_bodies == 2 and data.test.truncated_bodies == 0  # s2, s5 have 3 bodies
    assert "keeping the first 2 (bodies_policy: keep_first)" in caplog.text
    assert data.train[2]["x"].shape[0] == 2
    with pytest.raises(ValueError, match="bodies_policy must be one of"):
        _settings(bodies_policy="drop")


def test_more_views_than_the_batch_holds_is_an_error_or_a_logged_counted_cut(multiview_table, caplog):
    with pytest.raises(ValueError, match="more views than the batch holds"):
        build_training_data(multiview_table, _settings(num_bodies=2, num_views=2), input_spec=MULTI)
    with caplog.at_level(logging.WARNING):
        data = build_training_data(
            multiview_table, _settings(num_bodies=2, num_views=2, views_policy="keep_first"), input_spec=MULTI
        )
    assert data.train.truncated_views == 2 and "views_policy: keep_first" in caplog.text
    assert data.train[1]["x"].shape[0] == 2 and data.description.num_views == 2
    # more views than the table has: padded and masked out
    wide = build_training_data(multiview_table, _settings(num_bodies=2, num_views=4), input_spec=MULTI)
    assert wide.train[0]["view_mask"].tolist() == [True, True, True, False]


# --- composable sampling --------------------------------------------------------------------------


def _ramp(frames: int) -> dict[str, np.ndarray]:
    x = np.zeros((1, frames, 2, 3), dtype=np.float32)
    x[..., 0] = np.arange(frames, dtype=np.float32)[None, :, None]
    return {"joint": x, "bone": -x}


def test_step_list_is_deterministic_in_eval_and_seeded_in_training():
    pipe = sampling_from_config([{"resample": {"length": 150}}, {"crop": {"length": 128}}])
    assert isinstance(pipe, SamplingPipeline) and pipe.steps == (Resample(150), Crop(length=128))
    assert pipe.fixed_length == 128 and pipe.output_length(40) == 128
    x = _ramp(60)
    a, b = pipe.apply(x, None, train=False), pipe.apply(x, None, train=False)
    np.testing.assert_array_equal(a["joint"], b["joint"])
    assert a["joint"].shape[1] == 128
    np.testing.assert_array_equal(a["bone"], -a["joint"])  # streams share their frames
    # eval: the centred 128 of the 150 resampled frames
    full = Resample(150).positions(60, None, False)
    np.testing.assert_allclose(a["joint"][0, :, 0, 0], full[11:139], atol=1e-5)
    draws = [pipe.apply(x, np.random.default_rng(seed), train=True)["joint"][0, :, 0, 0] for seed in (1, 1, 2)]
    np.testing.assert_array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])
    with pytest.raises(ValueError, match="needs a random generator"):
        pipe.apply(x, None, train=True)


def test_resample_then_segments_and_legacy_modes_equal_their_steps():
    pipe = sampling_from_config([{"resample": {"length": 30}}, {"segments": {"num": 3}}])
    assert pipe.fixed_length == 3
    frames = pipe.apply(_ramp(60), None, train=False)["joint"][0, :, 0, 0]
    expected = Resample(30).positions(60, None, False)[[5, 15, 25]]
    np.testing.assert_allclose(frames, expected, atol=1e-5)
    x = _ramp(37)
    # each `mode:` form is one step (docs/training.md): same frames, same random draws
    for legacy, steps in (
        ({"mode": "full", "max_frames": 16}, [{"cap": {"max_frames": 16}}]),
        ({"mode": "resample", "length": 9}, [{"resample": {"length": 9}}]),
        (
            {"mode": "crop_resize", "length": 10, "crop_ratio": [0.5, 0.8], "test_crop_ratio": 0.7},
            [{"crop": {"ratio": [0.5, 0.8], "test_ratio": 0.7, "resize": 10}}],
        ),
        (
            {"mode": "segments", "num_segments": 4, "frames_per_segment": 2},
            [{"segments": {"num": 4, "frames_per_segment": 2}}],
        ),
    ):
        legacy, step = sampling_from_config(legacy), sampling_from_config(steps)
        assert isinstance(legacy, TemporalSampling) and legacy.steps == step.steps
        for train, seed in ((False, None), (True, 5)):
            rng_a = None if seed is None else np.random.default_rng(seed)
            rng_b = None if seed is None else np.random.default_rng(seed)
            np.testing.assert_array_equal(legacy.apply(x, rng_a, train)["joint"], step.apply(x, rng_b, train)["joint"])
    assert TemporalSampling().fixed_length is None and TemporalSampling(mode="resample", length=9).fixed_length == 9
    assert Segments(4, 2).fixed_output(None) == 8 and Crop(ratio=(0.5, 1.0)).fixed_output(50) is None


def test_step_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown sampling step 'resize'"):
        sampling_from_config([{"resize": {"length": 3}}])
    with pytest.raises(ValueError, match="unknown settings \\['lenght'\\] for sampling step 'crop'"):
        sampling_from_config([{"crop": {"lenght": 3}}])
    with pytest.raises(ValueError, match="exactly one of length"):
        sampling_from_config([{"crop": {}}])
    with pytest.raises(ValueError, match="one-key mapping"):
        sampling_from_config([{"resample": {"length": 3}, "crop": {"length": 2}}])
    ratio = sampling_from_config([{"crop": {"ratio": [0.5, 1.0], "test_ratio": 0.9, "resize": 12}}])
    assert ratio.steps == (Crop(ratio=(0.5, 1.0), test_ratio=0.9, resize=12),)


# --- motion after sampling ------------------------------------------------------------------------


def test_motion_after_sampling_is_the_difference_of_the_sampled_joints(tmp_path):
    """x[t] = t^2 + 1 on channel 0 (T = 5), resampled to 3 frames at positions 1/3, 2, 11/3.

    Sampled joints: 4/3, 5, 10/3 + 34/3 = 44/3. Motion of the sampled sequence (streams.py:
    x[t+1] - x[t], last frame zero): 11/3, 29/3, 0. The table's motion (2t + 1 = 1, 3, 5, 7, then
    0 on the last frame) resampled instead: 1 * 2/3 + 3 * 1/3 = 5/3, 5, 7 * 1/3 + 0 = 7/3.
    """
    coords = np.zeros((1, 5, 1, 3), dtype=np.float32)
    coords[0, :, 0, 0] = np.arange(5) ** 2 + 1
    coords[0, :, 0, 1] = 1.0
    table = _write(tmp_path / "m.parquet", [{"id": "m", "coords": coords, "label": 0, "split": "train"}])
    np.testing.assert_allclose(table.read_one(0, ("motion_fast",))["motion_fast"][0, :, 0, 0], [1, 3, 5, 7, 0])

    def item(motion_from: str) -> dict:
        ds = SkeletonDataset(
            table,
            [0],
            streams=("joint", "motion_fast"),
            num_bodies=1,
            train=False,
            sampling=sampling_from_config([{"resample": {"length": 3}}]),
            motion_from=motion_from,
        )
        return ds[0]

    sampled, precomputed = item("sampled"), item("table")
    np.testing.assert_allclose(sampled["x_joint"][0, :, 0, 0], [4 / 3, 5, 44 / 3], rtol=1e-6)
    np.testing.assert_allclose(sampled["x_motion_fast"][0, :, 0, 0], [11 / 3, 29 / 3, 0], rtol=1e-6)
    np.testing.assert_array_equal(sampled["x_motion_fast"][0, :, 0, 1], 0)  # constant channel: no motion
    np.testing.assert_array_equal(sampled["x_motion_fast"], motion_fast(sampled["x_joint"]))  # streams.py's definition
    np.testing.assert_allclose(precomputed["x_motion_fast"][0, :, 0, 0], [5 / 3, 5, 7 / 3], rtol=1e-6)
    assert not np.allclose(precomputed["x_motion_fast"], sampled["x_motion_fast"])
    # only the motion stream requested: the joints are read to derive it, but not returned
    only = SkeletonDataset(
        table,
        [0],
        streams=("motion_fast",),
        num_bodies=1,
        train=False,
        sampling=sampling_from_config([{"resample": {"length": 3}}]),
        motion_from="sampled",
    )
    assert set(only[0]) == {"x", "length", "label", "index"}
    np.testing.assert_allclose(only[0]["x"][0, :, 0, 0], [11 / 3, 29 / 3, 0], rtol=1e-6)


# --- Trainer.predict on multi-view batches --------------------------------------------------------


class _ViewPool(SkeletonModel):
    """A minimal multi-view model: masked mean over views and frames, then a linear layer."""

    input_spec = InputSpec(views="multi", max_streams=1)

    def __init__(self, data: DataDescription) -> None:
        super().__init__()
        self.data = data
        self.fc = torch.nn.Linear(data.num_bodies * data.num_joints * data.in_channels, data.num_classes)

    def forward(self, batch):
        d = self.data
        x, mask, view_mask = check_multiview_batch(
            batch, num_views=d.num_views, num_bodies=d.num_bodies, num_joints=d.num_joints, in_channels=d.in_channels
        )
        weight = (view_mask[:, :, None] & mask[:, None, :]).to(x.dtype)  # (N, views, T)
        pooled = torch.einsum("nwmtvc,nwt->nmvc", x, weight) / weight.sum((1, 2))[:, None, None, None]
        return ModelOutput(logits=self.fc(pooled.flatten(1)), attention={"views": view_mask.float()})


def _with_multiview_model(call):
    registry.available_models()
    saved = dict(registry._REGISTRY)
    try:
        registry.register_model("multi_test")(_ViewPool)
        return call()
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)


def test_predict_reads_lengths_and_keeps_attention_on_multiview_batches(multiview_table):
    data = build_training_data(multiview_table, _settings(num_bodies=2), input_spec=MULTI)
    assert _with_multiview_model(lambda: registry.model_input_spec("multi_test")) is _ViewPool.input_spec
    model = _with_multiview_model(lambda: registry.build_model("multi_test", data=data.description))
    loader = make_loader(data.test, batch_size=2, train=False)
    preds = Trainer(model, TrainerConfig(device="cpu", progress=False)).predict(loader, keep_attention=2)
    assert preds.lengths.tolist() == [3, 6] and preds.logits.shape == (2, 2)
    np.testing.assert_array_equal(preds.attention[0]["views"], [1, 0, 1])
    # a batch without `length` falls back to the mask, also a (N, views, T) one
    from skeleton_attention.training.trainer import _valid_lengths

    mask = torch.zeros(2, 3, 5, dtype=torch.bool)
    mask[0, 1, :4] = True
    mask[1, :, :2] = True
    assert _valid_lengths({"mask": mask}, 2).tolist() == [4, 2]


def test_multiview_batches_do_not_depend_on_workers(multiview_table):
    settings = _settings(
        num_bodies=2, sampling=[{"crop": {"ratio": [0.5, 1.0], "resize": 4}}], augmentation={"noise_std": 0.05}
    )
    data = build_training_data(multiview_table, settings, seed=2, input_spec=MULTI)
    serial = list(make_loader(data.train, batch_size=2, train=True, seed=4, num_workers=0))
    parallel = list(make_loader(data.train, batch_size=2, train=True, seed=4, num_workers=1, pin_memory=False))
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["view_mask"], b["view_mask"])


# --- model artifacts ------------------------------------------------------------------------------


def test_artifacts_rebuild_from_a_description_and_from_the_old_four_integers(tmp_path):
    from skeleton_attention.pipelines.training_common import rebuild_model
    from skeleton_attention.training.checkpoints import load_model_artifact, model_artifact, save_model_artifact

    family = {"variant": "ta_lstm", "hidden_size": 6, "attention_hidden_size": 6}
    d = DataDescription(num_classes=3, num_joints=4, num_bodies=2, layout="toy", class_names=("a", "b", "c"))
    model = registry.build_model("sta_lstm", data=d, **family)
    batch = {"x": torch.randn(2, 2, 5, 4, 3), "mask": torch.ones(2, 5, dtype=torch.bool)}
    model.eval()
    expected = model(batch).logits
    for kwargs in (
        {"data": d.to_dict(), **family},
        {"num_classes": 3, "num_joints": 4, "num_bodies": 2, "in_channels": 3, **family},
    ):
        path = save_model_artifact(
            model_artifact(
                model_name="sta_lstm", model_kwargs=kwargs, state_dict=model.state_dict(), phase=None, info={}
            ),
            tmp_path / "model.pt",
        )
        rebuilt = rebuild_model(load_model_artifact(path))
        torch.testing.assert_close(rebuilt(batch).logits, expected)


def _image_collate(samples):
    """A family-specific batch (MANs-like): the standard batch plus a (N, T, V*M, 3) image."""
    batch = collate_samples(samples)
    n, m, t, v, c = batch["x"].shape
    batch["image"] = batch["x"].permute(0, 2, 1, 3, 4).reshape(n, t, m * v, c)
    return batch


def test_a_declared_collate_replaces_the_standard_one(single_table):
    from skeleton_attention.training.data import build_loaders

    spec = InputSpec(fixed_length=True, collate=_image_collate)
    settings = _settings(num_bodies=3, sampling=[{"resample": {"length": 5}}])
    data = build_training_data(single_table, settings, input_spec=spec)
    loaders = build_loaders(data, settings)
    batch = next(iter(loaders["test"]))
    assert batch["image"].shape == (2, 5, 6, 3)
    assert "image" not in next(iter(build_loaders(build_training_data(single_table, settings), settings)["test"]))
