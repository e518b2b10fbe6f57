"""The speed-ups of preparation and alignment change no result (docs/performance.md).

Each fast path is compared with the straightforward implementation it replaced, written out here:
the prepared NTU table bit for bit (values; the Parquet encoding may differ), the denoising report
exactly, and the batched alignment search within 1e-6 of scoring one candidate at a time.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from skeleton_attention.skeletons import alignment, denoise, normalize, streams, table
from skeleton_attention.skeletons.layouts import KINECT20, get_layout
from skeleton_attention.skeletons.prepare import NTU_PROTOCOLS, process_ntu_file
from skeleton_attention.skeletons.rigid_batch import batched_robust_fit
from skeleton_attention.skeletons.synthetic import write_synthetic_ntu
from tests.kedro_helpers import REPO_ROOT

PARAMS = yaml.safe_load((REPO_ROOT / "conf" / "base" / "parameters_prepare.yml").read_text())


# --- the straightforward implementations ------------------------------------------------------------


def _joint_valid_mask(coords, spatial_dims=3, score_channel=None):
    if score_channel is not None:
        return coords[..., score_channel] > 0
    return np.any(coords[..., :spatial_dims] != 0, axis=-1)


def _fill_null_frames(coords, valid=None):
    x = np.array(coords, copy=True)
    valid = _joint_valid_mask(x).any(axis=-1) if valid is None else valid
    for m in range(x.shape[0]):
        present = np.flatnonzero(valid[m])
        if present.size:
            block = x[m, present[0] : present[-1] + 1].copy()
            x[m] = np.concatenate([block] * int(np.ceil(x.shape[1] / len(block))), axis=0)[: x.shape[1]]
    return x


def _rotation_to_z(v):
    flip = np.eye(3)
    if v[2] < 0:
        flip = np.diag([1.0, -1.0, -1.0])
        v = flip @ v
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(v, z)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return (np.eye(3) + k + k @ k / (1.0 + float(v @ z))) @ flip


def _pre_normalize(
    coords,
    layout,
    *,
    fill_null_frames=True,
    center="per_frame",
    align_spine=True,
    align_shoulders=True,
    scale="none",
    eps=1e-6,
):
    x = np.asarray(coords).astype(np.float64)
    length = normalize.reference_length(x, layout, _joint_valid_mask(x), eps) if scale == "spine" else None
    if fill_null_frames:
        x = _fill_null_frames(x)
    valid = _joint_valid_mask(x)
    origin = normalize.centre_origin(x, layout.center, valid, center)
    xyz = x[..., :3] - origin[None, :, None, :]
    rot = normalize.body_frame_rotation(
        xyz, layout, valid, align_spine=align_spine, align_shoulders=align_shoulders, eps=eps
    )
    xyz = xyz @ rot.T
    if length is not None:
        xyz = xyz / length
    x[..., :3] = np.where(valid[..., None], xyz, 0.0)
    return x.astype(np.float32)


def _combine(a, b, ok, dims):
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.float32)
    out[..., :dims] = a[..., :dims] - b[..., :dims]
    out[..., dims:] = np.minimum(a[..., dims:], b[..., dims:])
    out[~ok] = 0.0
    return out


def _plain_implementations(monkeypatch) -> None:
    for module in (normalize, streams):
        monkeypatch.setattr(module, "joint_valid_mask", _joint_valid_mask)
    monkeypatch.setattr(normalize, "_rotation_to_z", _rotation_to_z)
    monkeypatch.setattr(normalize, "pre_normalize", _pre_normalize)
    monkeypatch.setattr(streams, "_combine", _combine)
    monkeypatch.setitem(
        streams._STREAMS, "joint", lambda x, layout, ok: np.array(np.where(ok[..., None], x, 0.0), dtype=np.float32)
    )
    monkeypatch.setattr(denoise, "_column_variance", lambda points: np.var(points, axis=0))
    monkeypatch.setattr(denoise, "_repeated_ids", lambda frames, ids: True)  # the per-record loop
    monkeypatch.setattr(table, "parquet_write_options", lambda schema, settings=None: {"compression": "zstd"})


# --- preparation ---------------------------------------------------------------------------------------


def _prepare(files: list[Path], out: Path) -> list[dict]:
    params = PARAMS["prepare_ntu"]
    names = tuple(params["streams"])
    reports = []
    with table.SampleTableWriter(out, NTU_PROTOCOLS, names, row_group_size=16) as writer:
        for path in files:
            outcome = process_ntu_file(path, denoise=params["denoise"])
            reports.append(outcome.report)
            for seq, splits in outcome.samples:
                seq = normalize.normalize_sequence(seq, params["normalize"])
                arrays = streams.compute_streams(seq.coords, get_layout(seq.layout), names=names)
                writer.write(table.sequence_to_row(seq, arrays, splits))
    return reports


def _assert_same_values(a: pa.Table, b: pa.Table) -> None:
    assert a.schema.equals(b.schema, check_metadata=True)
    for name in a.column_names:
        x, y = a.column(name).combine_chunks(), b.column(name).combine_chunks()
        if pa.types.is_list(x.type):
            assert np.array_equal(x.offsets.to_numpy(), y.offsets.to_numpy()), name
            # bit for bit, signs of zeros included
            assert np.array_equal(x.flatten().to_numpy().view(np.uint32), y.flatten().to_numpy().view(np.uint32)), name
        else:
            assert x.equals(y), name


def test_prepared_table_is_the_one_the_plain_implementation_writes(tmp_path, ntu_raw, monkeypatch):
    # spurious bodies (several tracks, the spread rule), dropped frames (filling), two-person classes
    synthetic = write_synthetic_ntu(
        tmp_path / "raw",
        num_classes=3,
        performers=(1, 2),
        replications=(1,),
        cameras=(1, 2),
        spurious_body_rate=0.5,
        dropped_frame_rate=0.05,
        write_manifest=False,
    )
    files = synthetic + sorted(ntu_raw.glob("*A02[4-9].skeleton")) + sorted(ntu_raw.glob("*A05[0-3].skeleton"))
    fast_reports = _prepare(files, tmp_path / "fast.parquet")
    with monkeypatch.context() as patch:
        _plain_implementations(patch)
        plain_reports = _prepare(files, tmp_path / "plain.parquet")
    assert fast_reports == plain_reports
    fast, plain = pq.read_table(tmp_path / "fast.parquet"), pq.read_table(tmp_path / "plain.parquet")
    assert len(fast) == len(files)
    _assert_same_values(fast, plain)
    # the stream columns are written without dictionary pages or statistics, and smaller
    column = pq.ParquetFile(tmp_path / "fast.parquet").metadata.row_group(0).column(len(fast.schema) - 1)
    assert not column.has_dictionary_page and not column.is_stats_set
    assert "BYTE_STREAM_SPLIT" in column.encodings
    assert (tmp_path / "fast.parquet").stat().st_size < (tmp_path / "plain.parquet").stat().st_size


def test_fast_helpers_are_bit_exact():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 100, 2501):
        points = rng.normal(1.5, 0.7, size=(n, 3))
        assert np.array_equal(denoise._column_variance(points), np.var(points, axis=0))
    coords = rng.normal(size=(2, 30, 25, 3)).astype(np.float32)
    coords[0, 3] = 0.0
    coords[1, :, 4, 1:] = 0.0
    coords[1, 5, 6] = [-0.0, 0.0, np.nan]
    for dims in (1, 2, 3):
        assert np.array_equal(normalize.joint_valid_mask(coords, dims), _joint_valid_mask(coords, dims))
    for v in rng.normal(size=(20, 3)):
        v = v / np.linalg.norm(v)
        assert np.array_equal(normalize._rotation_to_z(v), _rotation_to_z(v))


# --- alignment -------------------------------------------------------------------------------------------


def test_batched_fit_equals_one_fit_at_a_time():
    rng = np.random.default_rng(0)
    fits = []
    for k in range(5):
        p = rng.normal(size=(200, 3)) + np.array([0.0, 0.0, 3.0])
        angle = 0.3 * k
        rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
        q = p @ rot.T + np.array([0.5, -0.1, 0.2]) + rng.normal(scale=0.01, size=p.shape)
        q[rng.choice(200, 20, replace=False)] += rng.normal(scale=0.5, size=(20, 3))  # tracking failures
        fits.append((p, q))
    mask = np.ones((5, 200), dtype=bool)
    mask[2, :150] = False  # fewer points for one candidate
    p = np.stack([np.where(m[:, None], a, 0.0).T for (a, _), m in zip(fits, mask, strict=True)])
    q = np.stack([b.T for _, b in fits])
    rots, trans, res = batched_robust_fit(p, q, mask, iterations=8)
    for k, ((a, b), m) in enumerate(zip(fits, mask, strict=True)):
        rot, t, r = alignment.robust_rigid_fit(a[m], b[m], iterations=8)
        assert np.abs(rots[k] - rot).max() < 1e-9 and np.abs(trans[k] - t).max() < 1e-9
        assert np.abs(res[k][m] - r).max() < 1e-9


def _unbatched(monkeypatch) -> None:
    def score_many(self, frames, candidates, iterations=None):
        return [self._score_one(frames, o, r, perm, iterations) for o, r, perm in candidates]

    monkeypatch.setattr(alignment._Scorer, "score_many", score_many)


def _nucla_recordings(root: Path, count: int) -> list[dict[int, np.ndarray]]:
    from skeleton_attention.skeletons import nucla

    groups: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    for path in sorted(root.rglob("a0[12]_s0[12]_e0[01]_v*.json")):
        seq = nucla.read_nucla_file(path)
        groups[path.stem.rsplit("_", 1)[0]][int(seq.meta["camera"])] = seq.coords
    return [groups[k] for k in sorted(groups)][:count]


def _assert_close(a: alignment.AlignedViews, b: alignment.AlignedViews) -> None:
    assert a.offsets == b.offsets and a.rates == b.rates and a.body_order == b.body_order
    for c in a.residuals:
        assert abs(a.residuals[c] - b.residuals[c]) < 1e-6
        assert np.abs(a.rotations[c] - b.rotations[c]).max() < 1e-6
        assert np.abs(a.translations[c] - b.translations[c]).max() < 1e-6
    assert np.abs(a.coords - b.coords).max() < 1e-6


@pytest.mark.parametrize("frame", ["aligned", "body"])
def test_batched_alignment_search_equals_the_plain_search(shared_data, monkeypatch, frame):
    from skeleton_attention.skeletons.views import load_ntu_view

    ntu = defaultdict(dict)
    for path in sorted((shared_data / "ntu_multiview").glob("*.skeleton")):
        ntu[path.stem[16:]][int(path.stem[5:8])] = load_ntu_view(path, denoise_params=PARAMS["prepare_ntu"]["denoise"])
    nucla_params = {
        k: v
        for k, v in PARAMS["prepare_nucla"]["multiview"].items()
        if k not in ("frame", "cameras", "normalize", "copied_views", "copy_min_share")
    }
    max_offset = PARAMS["prepare_ntu"]["multiview"]["max_offset"]
    cases = [
        dict(views={c: v for c, (v, _) in g.items()}, tracked={c: t for c, (_, t) in g.items()}, max_offset=max_offset)
        for g in ntu.values()
    ]
    cases += [
        dict(views=views, layout=KINECT20, **nucla_params) for views in _nucla_recordings(shared_data / "nucla_raw", 4)
    ]
    cases.append({**cases[0], "estimate_rate": True, "rate_steps": 3, "max_offset": 4})  # a rate grid too
    fast = [alignment.multiview_frame(frame=frame, **case) for case in cases]
    with monkeypatch.context() as patch:
        _unbatched(patch)
        plain = [alignment.multiview_frame(frame=frame, **case) for case in cases]
    for a, b in zip(fast, plain, strict=True):
        _assert_close(a, b)


# --- streams of many samples at once, featurize, Parquet settings ------------------------------------------


def _ragged_samples(rng, layout, channels: int) -> list[np.ndarray]:
    """Samples with 1-2 bodies and 1-40 frames (shorter than both motion steps included), missing
    frames, missing joints, negative zeros and, for a score channel, zero scores."""
    samples = []
    for bodies, frames in [(2, 40), (1, 1), (2, 2), (1, 3), (2, 17), (1, 40), (2, 1), (1, 25)]:
        x = rng.normal(size=(bodies, frames, layout.num_joints, channels)).astype(np.float32)
        x[:, rng.random(frames) < 0.2] = 0.0  # dropped frames
        x[-1, :, 3] = 0.0  # a joint never seen
        x[0, 0, 5] = -0.0
        if channels > layout.spatial_dims:
            x[..., -1] = np.where(rng.random(x.shape[:3]) < 0.3, 0.0, np.abs(x[..., -1]))
        samples.append(x)
    return samples


@pytest.mark.parametrize("layout_name, channels", [("ntu25", 3), ("openpose18", 3), ("kinect20", 3)])
def test_streams_of_many_samples_equal_one_sample_at_a_time(layout_name, channels):
    layout = get_layout(layout_name)
    samples = _ragged_samples(np.random.default_rng(7), layout, channels)
    many = streams.compute_streams_many(samples, layout)
    assert len(many) == len(samples)
    for x, got in zip(samples, many, strict=True):
        want = streams.compute_streams(x, layout)
        assert list(got) == list(want)
        for name in want:
            assert got[name].shape == x.shape and got[name].dtype == np.float32
            assert np.array_equal(got[name].view(np.uint32), want[name].view(np.uint32)), name
    assert streams.compute_streams_many([], layout) == []
    with pytest.raises(ValueError, match="joints and channels"):
        streams.compute_streams_many([samples[0], samples[0][:, :, :5]], layout)
    with pytest.raises(ValueError, match="unknown stream"):
        streams.compute_streams_many(samples, layout, names=("joint", "speed"))


def _intermediate(tmp_path: Path, files: list[Path]) -> table.SampleTable:
    path = tmp_path / "intermediate.parquet"
    rows = []
    for file in files:
        for seq, splits in process_ntu_file(file, denoise=PARAMS["prepare_ntu"]["denoise"]).samples:
            rows.append(table.sequence_to_row(seq, {"joint": seq.coords}, splits))
    table.write_table(path, rows, NTU_PROTOCOLS, ("joint",), row_group_size=4)
    return table.SampleTable(path)


def test_featurize_in_batches_writes_the_per_sample_values(tmp_path, ntu_raw, monkeypatch):
    from skeleton_attention.skeletons import prepare

    synthetic = write_synthetic_ntu(
        tmp_path / "raw",
        num_classes=2,
        performers=(1, 2),
        replications=(1,),
        cameras=(1, 2),
        spurious_body_rate=0.5,
        dropped_frame_rate=0.05,
        write_manifest=False,
    )
    intermediate = _intermediate(tmp_path, synthetic + sorted(ntu_raw.glob("*A05[0-1].skeleton")))
    params = PARAMS["prepare_ntu"]
    names = tuple(params["streams"])

    def featurized(name: str, batch: int) -> pa.Table:
        rows = prepare.featurize(intermediate, params["normalize"], names, row_order=params["row_order"], batch=batch)
        table.write_table(tmp_path / name, rows, NTU_PROTOCOLS, names, row_group_size=4)
        return pq.read_table(tmp_path / name)

    batched = featurized("batched.parquet", 5)  # batches that cut across row groups, and a short last one
    with monkeypatch.context() as patch:  # the per-sample streams of the plain implementation
        _plain_implementations(patch)
        patch.setattr(
            prepare,
            "compute_streams_many",
            lambda xs, layout, names: [streams.compute_streams(x, layout, names=names) for x in xs],
        )
        plain = featurized("plain.parquet", 1)
    assert len(batched) == len(intermediate) > 8
    _assert_same_values(batched, plain)
    # a stream error still names the sample it happened on
    with pytest.raises(ValueError, match="unknown stream") as error:
        list(prepare.featurize(intermediate, params["normalize"], ("joint", "speed"), batch=4))
    first = intermediate.metadata()["sample_id"].iloc[0]
    assert any(f"while building the streams of {first}" in note for note in error.value.__notes__)


@pytest.mark.parametrize(
    "settings", [{"compression": "none"}, {"compression": "lz4", "byte_stream_split": False}, {"level": 3}]
)
def test_parquet_settings_change_the_file_not_the_values(tmp_path, settings):
    layout = get_layout("ntu25")
    rows = []
    for i, x in enumerate(_ragged_samples(np.random.default_rng(1), layout, 3)):
        seq = normalize.SkeletonSequence(sample_id=f"s{i}", dataset="toy", layout="ntu25", coords=x, label=i % 2)
        rows.append(table.sequence_to_row(seq, streams.compute_streams(x, layout), {"toy": "train"}))
    table.write_table(tmp_path / "default.parquet", rows, ("toy",), row_group_size=3)
    table.write_table(tmp_path / "other.parquet", rows, ("toy",), row_group_size=3, parquet=settings)
    _assert_same_values(pq.read_table(tmp_path / "default.parquet"), pq.read_table(tmp_path / "other.parquet"))
    default, other = (_last_column_chunk(tmp_path / f) for f in ("default.parquet", "other.parquet"))
    assert default.compression == "ZSTD" and "BYTE_STREAM_SPLIT" in default.encodings
    assert other.compression == str(settings.get("compression", "zstd")).upper().replace("NONE", "UNCOMPRESSED")
    assert ("BYTE_STREAM_SPLIT" in other.encodings) == settings.get("byte_stream_split", True)


def _last_column_chunk(path: Path):
    metadata = pq.ParquetFile(path).metadata
    return metadata.row_group(0).column(metadata.num_columns - 1)


def test_bad_parquet_settings_fail_before_writing(tmp_path):
    for settings, message in [
        ({"compression": "zip"}, "compression must be"),
        ({"codec": "zstd"}, "unknown parquet"),
        ({"compression": "snappy", "level": 2}, "takes no level"),
    ]:
        with pytest.raises(ValueError, match=message):
            table.SampleTableWriter(tmp_path / "t.parquet", ("toy",), parquet=settings)
    assert not list(tmp_path.iterdir())
