"""The Parquet hand-off: schema, round trip, lazy reads, atomic writes."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from skeleton_attention.skeletons.sequence import SkeletonSequence
from skeleton_attention.skeletons.table import SampleTable, SampleTableWriter, sequence_to_row, write_table

PROTOCOLS = ("ntu60_xsub", "ntu60_xview")


def _sample(i: int, rng: np.random.Generator) -> tuple[SkeletonSequence, dict, dict]:
    shape = (1 + i % 2, 5 + i, 25, 3)
    coords = rng.normal(size=shape).astype(np.float32)
    seq = SkeletonSequence(
        sample_id=f"S001C001P{i:03d}R001A001",
        dataset="ntu60",
        layout="ntu25",
        coords=coords,
        label=i % 3,
        label_name=f"class{i % 3}",
        source_file=f"f{i}.skeleton",
        meta={"setup": 1, "camera": 1, "performer": i, "replication": 1, "action": 1},
    )
    streams = {"joint": coords, "bone": coords * 2, "motion_fast": coords * 3, "motion_slow": coords * 4}
    splits = {"ntu60_xsub": "train" if i % 2 else "test", "ntu60_xview": None}
    return seq, streams, splits


def test_round_trip_across_row_groups(tmp_path):
    rng = np.random.default_rng(0)
    samples = [_sample(i, rng) for i in range(11)]
    path = tmp_path / "t.parquet"
    n = write_table(path, (sequence_to_row(*s) for s in samples), PROTOCOLS, row_group_size=4)
    assert n == 11
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    table = SampleTable(path, cache_row_groups=1)
    meta = table.metadata()
    assert list(meta["sample_id"]) == [s[0].sample_id for s in samples]
    assert list(meta["split_ntu60_xsub"]) == ["test", "train"] * 5 + ["test"]
    assert all(v is None for v in meta["split_ntu60_xview"])
    assert meta["subject"].isna().all()
    assert table.protocols == PROTOCOLS
    # out of order, across groups, two streams
    for row in (10, 0, 5, 4):
        got = table.read_one(row, ("joint", "motion_slow"))
        np.testing.assert_array_equal(got["joint"], samples[row][0].coords)
        np.testing.assert_array_equal(got["motion_slow"], samples[row][0].coords * 4)
        assert got["joint"].dtype == np.float32


def test_wrong_stream_shape_and_split_value_are_rejected():
    rng = np.random.default_rng(1)
    seq, streams, splits = _sample(0, rng)
    with pytest.raises(ValueError, match="stream bone has shape"):
        sequence_to_row(seq, {**streams, "bone": streams["bone"][:, :2]}, splits)
    with pytest.raises(ValueError, match="is not train/test/None"):
        sequence_to_row(seq, streams, {"ntu60_xsub": "val"})


def test_interrupted_write_leaves_no_file(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError), SampleTableWriter(path, PROTOCOLS, row_group_size=2) as writer:
        for i in range(5):
            writer.write(sequence_to_row(*_sample(i, rng)))
        raise RuntimeError("killed")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_unknown_stream_and_row_are_clear_errors(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "t.parquet"
    write_table(path, [sequence_to_row(*_sample(0, rng))], PROTOCOLS)
    table = SampleTable(path)
    with pytest.raises(KeyError, match="no stream column"):
        table.read([0], ["nope"])
    with pytest.raises(IndexError):
        table.read([3], ["joint"])


def test_fold_protocol_column_holds_fold_numbers(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(7):
        seq, streams, splits = _sample(i, rng)
        rows.append(sequence_to_row(seq, streams, {**splits, "toy_fold": None if i == 6 else 1 + i % 3}))
    path = tmp_path / "folds.parquet"
    write_table(path, rows, PROTOCOLS, row_group_size=3, fold_protocols=("toy_fold",))
    table = SampleTable(path)
    assert table.protocols == (*PROTOCOLS, "toy_fold")
    assert table.fold_protocols == ("toy_fold",)
    assert table.split_protocols == PROTOCOLS
    folds = list(table.metadata()["split_toy_fold"])
    assert folds == [1, 2, 3, 1, 2, 3, None]
    assert all(isinstance(v, int) for v in folds[:-1])


def test_fold_values_are_checked():
    rng = np.random.default_rng(4)
    seq, streams, _ = _sample(0, rng)
    for bad in (0, -2, True, 1.5, "1"):
        with pytest.raises(ValueError, match="fold number"):
            sequence_to_row(seq, streams, {"toy_fold": bad})


def test_a_string_in_a_fold_column_names_the_rows(tmp_path):
    rng = np.random.default_rng(5)
    seq, streams, _ = _sample(0, rng)
    row = sequence_to_row(seq, streams, {"toy_fold": "train"})
    with pytest.raises(ValueError, match=r"column split_toy_fold of rows \['S001C001P000R001A001'\]"):
        write_table(tmp_path / "bad.parquet", [row], (), fold_protocols=("toy_fold",))
    assert not list(tmp_path.iterdir())
