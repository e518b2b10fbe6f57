"""The Parquet settings of a sample table (``parquet`` in conf/base/parameters_prepare.yml) on real data.

Prepares the real NTU files as ``prepare_ntu`` does (read, denoise, normalize, four streams) into an
intermediate (``joint`` only) and a feature table in memory, then writes each table with each
setting of ``table.parquet_write_options`` and reads it back: CPU ms per sample to write and to read
(best of ``--rounds``, one core) and KB per sample on disk. Every setting stores the same values
(checked here on each file written). Usage::

    python benchmarks/bench_parquet.py                # the 60 files of ../shared/data/ntu_raw
    python benchmarks/bench_parquet.py --files 3 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import skeleton_attention  # noqa: F401
except ImportError:  # running from a checkout without an editable install
    sys.path.insert(0, str(REPO_ROOT / "src"))

from bench_common import machine_line  # noqa: E402
from bench_prepare import SHARED_DATA, load_prepare_params  # noqa: E402

#: the settings compared (each over the defaults of table.PARQUET_DEFAULTS)
SETTINGS: tuple[dict[str, Any], ...] = (
    {},
    {"byte_stream_split": False},
    {"level": -1},
    {"level": 3},
    {"compression": "lz4"},
    {"compression": "lz4", "byte_stream_split": False},
    {"compression": "snappy"},
    {"compression": "snappy", "byte_stream_split": False},
    {"compression": "none"},
)


def prepared_tables(files: Sequence[Path], params: Mapping[str, Any]):
    """(intermediate, feature) Arrow tables of ``files``, as ``prepare_ntu`` fills them."""
    import pyarrow.parquet as pq

    from skeleton_attention.skeletons.layouts import get_layout
    from skeleton_attention.skeletons.normalize import normalize_sequence
    from skeleton_attention.skeletons.prepare import NTU_PROTOCOLS, process_ntu_file
    from skeleton_attention.skeletons.streams import compute_streams
    from skeleton_attention.skeletons.table import sequence_to_row, write_table

    inter, features = [], []
    for path in files:
        for seq, splits in process_ntu_file(path, denoise=params["denoise"]).samples:
            inter.append(sequence_to_row(seq, {"joint": seq.coords}, splits))
            seq = normalize_sequence(seq, params["normalize"])
            features.append(sequence_to_row(seq, compute_streams(seq.coords, get_layout(seq.layout)), splits))
    with tempfile.TemporaryDirectory() as tmp:
        write_table(Path(tmp) / "i.parquet", inter, NTU_PROTOCOLS, ("joint",))
        write_table(Path(tmp) / "f.parquet", features, NTU_PROTOCOLS, tuple(params["streams"]))
        return pq.read_table(Path(tmp) / "i.parquet"), pq.read_table(Path(tmp) / "f.parquet")


def measure(table, settings: Mapping[str, Any], rounds: int, row_group_size: int) -> dict[str, Any]:
    """Write and read ``table`` with ``settings``: CPU ms per sample (best of ``rounds``), KB per sample."""
    import pyarrow.parquet as pq

    from skeleton_attention.skeletons.table import parquet_write_options

    options = parquet_write_options(table.schema, settings)
    write_s = read_s = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.parquet"
        for _ in range(rounds):
            start = time.process_time()
            with pq.ParquetWriter(path, table.schema, **options) as writer:
                writer.write_table(table, row_group_size=row_group_size)
            write_s = min(write_s, time.process_time() - start)
            start = time.process_time()
            back = pq.read_table(path)
            read_s = min(read_s, time.process_time() - start)
        if not back.equals(table):
            raise AssertionError(f"settings {settings} changed the values")
        size = path.stat().st_size
    n = table.num_rows
    return {
        "settings": dict(settings),
        "write_ms": 1e3 * write_s / n,
        "read_ms": 1e3 * read_s / n,
        "kb": size / n / 1024,
    }


def format_table(title: str, results: Sequence[Mapping[str, Any]], raw_kb: float) -> str:
    lines = [
        f"### {title}",
        "",
        "| settings | write ms/sample | read ms/sample | KB/sample | size / float bytes |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        name = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "default (zstd, BYTE_STREAM_SPLIT)"
        lines.append(f"| {name} | {r['write_ms']:.3f} | {r['read_ms']:.3f} | {r['kb']:.1f} | {r['kb'] / raw_kb:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ntu-dir", type=Path, default=SHARED_DATA / "ntu_raw")
    parser.add_argument("--files", type=int, default=None, help="only the first N files")
    parser.add_argument("--rounds", type=int, default=5, help="writes and reads per setting; the best counts")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = parser.parse_args(argv)
    import pyarrow as pa

    params = load_prepare_params()
    files = sorted(args.ntu_dir.glob("*.skeleton"))[: args.files]
    if not files:
        raise SystemExit(f"no .skeleton files in {args.ntu_dir}")
    print(f"{machine_line()}; {len(files)} files; best of {args.rounds}")
    out = {}
    for name, table in zip(("intermediate", "feature"), prepared_tables(files, params), strict=True):
        floats = [f.name for f in table.schema if pa.types.is_list(f.type)]
        raw_kb = sum(table.column(c).combine_chunks().values.nbytes for c in floats) / table.num_rows / 1024
        results = [measure(table, s, args.rounds, int(params["row_group_size"])) for s in SETTINGS]
        out[name] = results
        print()
        print(
            format_table(
                f"{name} table: {table.num_rows} samples, {raw_kb:.1f} KB of float32 per sample", results, raw_kb
            )
        )
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
