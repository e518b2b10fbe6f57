"""The Parquet hand-off between data preparation and training.

One row per sample: identity and metadata columns, one ``split_<protocol>`` column per evaluation
protocol (``"train"``, ``"test"`` or null when the sample is not part of that benchmark; for a
cross-validated protocol the fold number 1..K of the sample, or null), and one
``list<float32>`` column per stream holding the coordinates flattened in ``(M, T, V, C)`` order,
with the shape in ``num_bodies, num_frames, num_joints, num_channels``. The schema is documented in
``docs/data-format.md``.

Writing is batched (bounded memory: one row group in RAM) and atomic: rows go to a temporary file
beside the target, renamed into place only after the Parquet footer is written. Reading is lazy: the
metadata columns are read once, stream columns are read per row group on demand.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from skeleton_attention.skeletons.sequence import SkeletonSequence
from skeleton_attention.skeletons.streams import STREAM_NAMES  # the stream columns, in their order
from skeleton_attention.skeletons.tempfiles import file_prefix, sweep_stale

SHAPE_COLUMNS: tuple[str, ...] = ("num_bodies", "num_frames", "num_joints", "num_channels")
#: identity fields a reader may put in ``SkeletonSequence.meta``; absent ones are null
META_INT_COLUMNS: tuple[str, ...] = (
    "setup",
    "camera",
    "performer",
    "replication",
    "action",
    "subject",
    "episode",
    "start_frame",
    "end_frame",
    "num_views",
)
META_STR_COLUMNS: tuple[str, ...] = ("view_group", "clip_id", "cameras_present", "performer_pair")
SCHEMA_VERSION = "1"


def table_schema(
    protocols: Sequence[str],
    streams: Sequence[str] = STREAM_NAMES,
    fold_protocols: Sequence[str] = (),
) -> pa.Schema:
    """The Arrow schema of a sample table with the given split protocols and stream columns.

    ``protocols`` are train/test protocols (a dictionary<string> column each); ``fold_protocols``
    are cross-validated ones (an int32 column each holding the fold number, 1-based).
    """
    clash = set(protocols) & set(fold_protocols)
    if clash:
        raise ValueError(f"protocols {sorted(clash)} are declared both as train/test and as fold protocols")
    fields = [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("layout", pa.string(), nullable=False),
        pa.field("source_file", pa.string()),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("label_name", pa.string()),
    ]
    fields += [pa.field(name, pa.int32()) for name in META_INT_COLUMNS]
    fields += [pa.field(name, pa.string()) for name in META_STR_COLUMNS]
    fields += [pa.field(name, pa.int32(), nullable=False) for name in SHAPE_COLUMNS]
    fields += [pa.field(f"split_{p}", pa.dictionary(pa.int8(), pa.string())) for p in protocols]
    fields += [pa.field(f"split_{p}", pa.int32()) for p in fold_protocols]
    fields += [pa.field(s, pa.list_(pa.float32()), nullable=False) for s in streams]
    metadata = {
        b"skeleton_attention.schema_version": SCHEMA_VERSION.encode(),
        b"skeleton_attention.streams": ",".join(streams).encode(),
        b"skeleton_attention.protocols": ",".join(protocols).encode(),
        b"skeleton_attention.fold_protocols": ",".join(fold_protocols).encode(),
    }
    return pa.schema(fields, metadata=metadata)


def sequence_to_row(
    seq: SkeletonSequence,
    streams: Mapping[str, np.ndarray],
    splits: Mapping[str, str | int | None],
) -> dict[str, object]:
    """One table row from a sample, its stream arrays (each shaped like ``seq.coords``) and splits.

    A split value is ``"train"``, ``"test"`` or ``None`` for a train/test protocol, or a fold
    number (int >= 1) for a cross-validated protocol.
    """
    row: dict[str, object] = {
        "sample_id": seq.sample_id,
        "dataset": seq.dataset,
        "layout": seq.layout,
        "source_file": seq.source_file,
        "label": int(seq.label),
        "label_name": seq.label_name,
    }
    for name in META_INT_COLUMNS:
        value = seq.meta.get(name)
        row[name] = None if value is None else int(value)
    for name in META_STR_COLUMNS:
        value = seq.meta.get(name)
        row[name] = None if value is None else str(value)
    shape = seq.coords.shape
    row.update(dict(zip(SHAPE_COLUMNS, (int(n) for n in shape), strict=True)))
    for protocol, split in splits.items():
        row[f"split_{protocol}"] = check_split_value(seq.sample_id, protocol, split)
    for name, array in streams.items():
        if array.shape != shape:
            raise ValueError(f"{seq.sample_id}: stream {name} has shape {array.shape}, expected {shape}")
        row[name] = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
    return row


def check_split_value(sample_id: str, protocol: str, split: object) -> str | int | None:
    """A valid split value (train/test/None, or a fold number >= 1), else a ValueError naming the sample."""
    if split is None or split in ("train", "test"):
        return split  # type: ignore[return-value]
    if isinstance(split, int | np.integer) and not isinstance(split, bool) and int(split) >= 1:
        return int(split)
    raise ValueError(f"{sample_id}: split {protocol}={split!r} is not train/test/None or a fold number >= 1")


class SampleTableWriter:
    """Writes rows in row groups to ``path`` atomically; use as a context manager.

    On a clean exit the temporary file is renamed over ``path``; on an exception it is deleted, so an
    interrupted run never leaves a file that looks complete.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        protocols: Sequence[str],
        streams: Sequence[str] = STREAM_NAMES,
        row_group_size: int = 256,
        fold_protocols: Sequence[str] = (),
        parquet: Mapping[str, object] | None = None,
    ) -> None:
        self.path = Path(path)
        self.schema = table_schema(protocols, streams, fold_protocols)
        self.row_group_size = int(row_group_size)
        self._options = parquet_write_options(self.schema, parquet)  # a bad setting fails before any file
        self.rows_written = 0
        self._buffer: list[dict[str, object]] = []
        self._writer: pq.ParquetWriter | None = None
        self._tmp_path: Path | None = None

    def __enter__(self) -> SampleTableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(self.path.parent, self.path.name)
        fd, tmp = tempfile.mkstemp(prefix=file_prefix(self.path.name), suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp_path = Path(tmp)
        self._writer = pq.ParquetWriter(self._tmp_path, self.schema, **self._options)
        return self

    def write(self, row: Mapping[str, object]) -> None:
        self._buffer.append(dict(row))
        if len(self._buffer) >= self.row_group_size:
            self._flush()

    def write_many(self, rows: Iterable[Mapping[str, object]]) -> None:
        for row in rows:
            self.write(row)

    def _flush(self) -> None:
        if not self._buffer or self._writer is None:
            return
        columns = {}
        for field in self.schema:
            values = [row.get(field.name) for row in self._buffer]
            if pa.types.is_list(field.type):
                columns[field.name] = _float_list_array(values)
                continue
            try:
                columns[field.name] = pa.array(values, type=field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as error:
                ids = [row.get("sample_id") for row in self._buffer]
                raise ValueError(f"{self.path}: column {field.name} of rows {ids[:3]}...: {error}") from error
        self._writer.write_table(pa.table(columns, schema=self.schema))
        self.rows_written += len(self._buffer)
        self._buffer.clear()

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._writer is not None and self._tmp_path is not None
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
            if exc_type is None:
                _fsync(self._tmp_path)
                os.replace(self._tmp_path, self.path)
        finally:
            if self._tmp_path.exists():
                self._tmp_path.unlink()


#: the Parquet codecs a table may be written with (``parquet.compression``)
PARQUET_CODECS: tuple[str, ...] = ("zstd", "lz4", "snappy", "gzip", "brotli", "none")
#: the default ``parquet`` settings: zstd at its default level (1) with BYTE_STREAM_SPLIT
#: (docs/performance.md)
PARQUET_DEFAULTS: dict[str, object] = {"compression": "zstd", "level": None, "byte_stream_split": True}


def parquet_write_options(schema: pa.Schema, settings: Mapping[str, object] | None = None) -> dict[str, object]:
    """How the stream columns are encoded and compressed: the values (and the schema) are the same
    whatever the ``settings``; only the file's size and the time to write and read it change.

    ``settings`` (the ``parquet`` block of a ``prepare_*`` parameter set; missing keys take
    :data:`PARQUET_DEFAULTS`): ``compression`` (one of :data:`PARQUET_CODECS`), ``level`` (the
    codec's level; null for its default, which for zstd is 1) and ``byte_stream_split`` (encode
    the float stream columns with BYTE_STREAM_SPLIT). docs/performance.md §2a measures the choices
    on disk against time.

    Float coordinates almost never repeat, so dictionary encoding them (pyarrow's default) costs
    time and then falls back to plain pages anyway, and min/max statistics of a coordinate list are
    of no use to any reader. BYTE_STREAM_SPLIT puts the exponent bytes of the floats together, which
    a codec compresses much better.
    """
    merged = {**PARQUET_DEFAULTS, **dict(settings or {})}
    unknown = sorted(set(merged) - set(PARQUET_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown parquet setting(s) {unknown}; allowed {sorted(PARQUET_DEFAULTS)}")
    codec = str(merged["compression"]).lower()
    if codec not in PARQUET_CODECS:
        raise ValueError(f"parquet compression must be one of {PARQUET_CODECS}, got {merged['compression']!r}")
    if codec != "none" and not pa.Codec.is_available(codec):
        raise ValueError(f"parquet compression {codec!r} is not built into this pyarrow")
    lists = [f.name for f in schema if pa.types.is_list(f.type)]
    scalars = [f.name for f in schema if not pa.types.is_list(f.type)]
    options: dict[str, object] = {"compression": codec, "use_dictionary": scalars, "write_statistics": scalars}
    if merged["level"] is not None:
        if codec == "none" or not pa.Codec.supports_compression_level(codec):
            raise ValueError(f"parquet compression {codec!r} takes no level (got level {merged['level']!r})")
        options["compression_level"] = int(merged["level"])  # type: ignore[call-overload]
    if merged["byte_stream_split"]:
        options["column_encoding"] = {f"{name}.list.element": "BYTE_STREAM_SPLIT" for name in lists}
    return options


def _float_list_array(values: list[object]) -> pa.Array:
    """A list<float32> array built from flat numpy arrays without per-element Python work."""
    arrays = [np.asarray(v, dtype=np.float32).reshape(-1) for v in values]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([a.size for a in arrays], out=offsets[1:])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_table(
    path: str | os.PathLike[str],
    rows: Iterable[Mapping[str, object]],
    protocols: Sequence[str],
    streams: Sequence[str] = STREAM_NAMES,
    row_group_size: int = 256,
    fold_protocols: Sequence[str] = (),
    parquet: Mapping[str, object] | None = None,
) -> int:
    """Write all ``rows`` atomically; returns the number of rows written."""
    with SampleTableWriter(path, protocols, streams, row_group_size, fold_protocols, parquet) as writer:
        writer.write_many(rows)
    return writer.rows_written


class SampleTable:
    """Lazy reader of a sample table: metadata once, stream columns per row group on demand.

    Safe to pickle into DataLoader workers: the Parquet file is (re)opened lazily in each process.
    """

    def __init__(self, path: str | os.PathLike[str], cache_row_groups: int = 4) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"sample table {self.path} does not exist; run the prepare pipeline")
        self.cache_row_groups = int(cache_row_groups)
        self._file: pq.ParquetFile | None = None
        self._cache: OrderedDict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        meta = self._parquet().metadata
        self.num_rows = meta.num_rows
        self._group_starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        schema = self._parquet().schema_arrow
        self.stream_names = tuple(f.name for f in schema if pa.types.is_list(f.type))
        self.protocols = tuple(f.name[len("split_") :] for f in schema if f.name.startswith("split_"))
        #: the cross-validated protocols (their column holds a fold number), a subset of ``protocols``
        self.fold_protocols = tuple(
            f.name[len("split_") :] for f in schema if f.name.startswith("split_") and pa.types.is_integer(f.type)
        )
        #: the train/test protocols
        self.split_protocols = tuple(p for p in self.protocols if p not in self.fold_protocols)
        self._metadata: pd.DataFrame | None = None
        self._shapes: np.ndarray | None = None

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_file"] = None
        state["_cache"] = OrderedDict()
        return state

    def __len__(self) -> int:
        return self.num_rows

    def row_group_sizes(self) -> list[int]:
        """Rows per Parquet row group, in file order."""
        return [int(n) for n in np.diff(self._group_starts)]

    def _parquet(self) -> pq.ParquetFile:
        if self._file is None:
            self._file = pq.ParquetFile(self.path)
        return self._file

    def metadata(self) -> pd.DataFrame:
        """All non-stream columns, one row per sample, plus ``row`` (the row index)."""
        if self._metadata is None:
            columns = [f.name for f in self._parquet().schema_arrow if f.name not in self.stream_names]
            frame = self._parquet().read(columns=columns).to_pandas()
            for column in frame.columns:
                if column.startswith("split_"):
                    # plain objects with None for "not in this protocol" (fold columns: Python ints)
                    values = frame[column]
                    if column[len("split_") :] in self.fold_protocols:
                        values = values.astype("Int64")
                    frame[column] = values.astype(object).where(values.notna(), None)
            frame.insert(0, "row", np.arange(len(frame)))
            self._metadata = frame
        return self._metadata

    def _shape(self, row: int) -> tuple[int, int, int, int]:
        if self._shapes is None:
            self._shapes = self.metadata()[list(SHAPE_COLUMNS)].to_numpy(dtype=np.int64)
        return tuple(int(n) for n in self._shapes[row])  # type: ignore[return-value]

    def _row_group_values(self, group: int, stream: str) -> tuple[np.ndarray, np.ndarray]:
        key = (group, stream)
        cached = self._cache.get(key)
        if cached is None:
            column = self._parquet().read_row_group(group, columns=[stream]).column(0).combine_chunks()
            cached = (column.offsets.to_numpy(), column.values.to_numpy(zero_copy_only=False))
            self._cache[key] = cached
            while len(self._cache) > self.cache_row_groups * max(1, len(self.stream_names)):
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return cached

    def read(self, rows: Sequence[int], streams: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """Stream arrays ``(M, T, V, C)`` float32 for each requested row, in the order given."""
        unknown = [s for s in streams if s not in self.stream_names]
        if unknown:
            raise KeyError(f"{self.path}: no stream column {unknown}; available: {self.stream_names}")
        out: list[dict[str, np.ndarray]] = []
        for row in rows:
            row = int(row)
            if not 0 <= row < self.num_rows:
                raise IndexError(f"{self.path}: row {row} out of range [0, {self.num_rows})")
            group = int(np.searchsorted(self._group_starts, row, side="right") - 1)
            local = row - int(self._group_starts[group])
            shape = self._shape(row)
            sample = {}
            for stream in streams:
                offsets, values = self._row_group_values(group, stream)
                flat = values[offsets[local] : offsets[local + 1]]
                sample[stream] = np.array(flat, dtype=np.float32).reshape(shape)
            out.append(sample)
        return out

    def read_one(self, row: int, streams: Sequence[str] = ("joint",)) -> dict[str, np.ndarray]:
        return self.read([row], streams)[0]
