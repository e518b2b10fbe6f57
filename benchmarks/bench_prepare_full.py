"""Part 2 of ``bench_prepare.py``: the full multi-process preparation on N synthetic NTU files.

``prepare_ntu`` without Kedro (:func:`full_preparation`): ``ingest`` over a process pool of
``--workers`` + ``write_bundle``, then ``featurize`` + ``write_bundle``, on N files that
``write_synthetic_ntu`` writes in the real ``.skeleton`` format. Each (code, N) runs in a fresh
process; the new code and the baseline (``--baseline-ref``) take turns at each N. Per run: wall and
CPU time (main process + its workers), the parser alone on the same files (one core), peak RSS,
raw text and Parquet bytes, and a digest of the feature table's values (sorted by sample), so the
table says whether the two codes prepared the same data. From the two largest N the script
extrapolates time and memory linearly to NTU 120's 113,945 files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench_common import code_env, peak_rss_mib

#: files in NTU RGB+D 120 (56,880 of NTU 60 + 57,065 new ones; 535 of them on the missing list)
NTU120_FILES = 113_945
#: 14 classes x 8 performers x 2 replications x 3 cameras = 672 files per setup
SYNTHETIC_LAYOUT: dict[str, Any] = {
    "num_classes": 14,
    "performers": (1, 2, 3, 4, 5, 8, 9, 13),
    "replications": (1, 2),
    "cameras": (1, 2, 3),
}


def write_synthetic_files(folder: Path, n_files: int, seed: int = 0) -> list[Path]:
    """At least ``n_files`` synthetic NTU files in ``folder``, in order: whole setups of 672, or
    for fewer files the first classes of one setup (48 files per class)."""
    from skeleton_attention.skeletons.synthetic import write_synthetic_ntu

    per_class = (
        len(SYNTHETIC_LAYOUT["performers"]) * len(SYNTHETIC_LAYOUT["replications"]) * len(SYNTHETIC_LAYOUT["cameras"])
    )
    per_setup = SYNTHETIC_LAYOUT["num_classes"] * per_class
    layout = dict(SYNTHETIC_LAYOUT)
    if n_files < per_setup:
        layout["num_classes"] = -(-n_files // per_class)
    setups = tuple(range(1, -(-n_files // per_setup) + 1))
    return write_synthetic_ntu(folder, setups=setups, seed=seed, **layout)


class TreeMemorySampler:
    """Samples the RSS of this process and all its children every ``interval`` seconds.

    The sum over the tree counts pages that forked workers share with the parent once per
    process, so it is an upper bound of the memory the tree really holds.
    """

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self.root = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_tree_mib = 0.0
        self.peak_worker_mib = 0.0

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = self.root.memory_info().rss
            for child in self.root.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                except psutil.Error:  # the child exited between listing and reading
                    continue
                total += rss
                self.peak_worker_mib = max(self.peak_worker_mib, rss / 2**20)
            self.peak_tree_mib = max(self.peak_tree_mib, total / 2**20)
            self._stop.wait(self._interval)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (the peaks keep their values)."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def full_preparation(paths: Sequence[Path], out_dir: Path, params: Mapping[str, Any], workers: int) -> dict[str, Any]:
    """``prepare_ntu`` without Kedro: ingest (``process_ntu_file`` over a pool of ``workers``
    processes) into the intermediate bundle, then ``featurize`` into the feature bundle, both
    written with ``write_bundle`` (as ``pipelines/preparation.py`` wires them). Returns the
    timings and both summaries."""
    from skeleton_attention.skeletons.bundle import BundleSource, BundleSpec, PreparedBundle, write_bundle
    from skeleton_attention.skeletons.ingest import IngestCounter, ingest
    from skeleton_attention.skeletons.prepare import NTU_PROTOCOLS, featurize, process_ntu_file

    counter = IngestCounter()
    # the Parquet settings (code that predates them writes zstd with BYTE_STREAM_SPLIT, their default)
    supported = "parquet" in getattr(BundleSpec, "__dataclass_fields__", {})
    parquet = {"parquet": params["parquet"]} if supported and params.get("parquet") is not None else {}
    spec = BundleSpec(
        protocols=NTU_PROTOCOLS,
        streams=("joint",),
        row_group_size=int(params["row_group_size"]),
        info={"stage": "intermediate", "coordinates": "camera", "dataset": "ntu"},
        **parquet,
    )
    source = BundleSource(spec=spec, records=())

    def records() -> Iterator[object]:
        yield from ingest(
            paths,
            partial(process_ntu_file, denoise=params["denoise"]),
            workers=workers,
            chunksize=int(params["chunksize"]),
            counter=counter,
            description="bench ingest",
        )
        source.inputs_seen = counter.inputs_seen

    source.records = records()
    start = time.perf_counter()
    intermediate = write_bundle(out_dir / "intermediate", source)
    ingest_s = time.perf_counter() - start

    streams = tuple(params["streams"])
    table = PreparedBundle(out_dir / "intermediate").table
    feature_spec = BundleSpec(
        protocols=table.protocols,
        streams=streams,
        row_group_size=int(params["row_group_size"]),
        info={"stage": "feature", "normalize": dict(params["normalize"])},
        **parquet,
    )
    start = time.perf_counter()
    records_in = featurize(table, params["normalize"], streams, row_order=params.get("row_order"))
    features = write_bundle(
        out_dir / "features", BundleSource(spec=feature_spec, records=records_in, inputs_seen=len(table))
    )
    features_s = time.perf_counter() - start
    return {"ingest_s": ingest_s, "features_s": features_s, "intermediate": intermediate, "features": features}


def table_digest(path: Path) -> str:
    """SHA-256 of a sample table's values in row order, one row group at a time (bounded memory;
    independent of the Parquet encoding). Both codes write rows in the same seeded order."""
    import pyarrow.parquet as pq

    digest = hashlib.sha256()
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        batch = parquet.read_row_group(group)
        for name in batch.column_names:
            column = batch.column(name).combine_chunks()
            digest.update(name.encode())
            if hasattr(column, "flatten") and str(column.type).startswith("list"):
                digest.update(column.offsets.to_numpy().tobytes())
                digest.update(column.flatten().to_numpy().tobytes())
            else:
                digest.update(json.dumps(column.to_pylist(), default=str).encode())
    return digest.hexdigest()[:12]


def parser_cpu_s(paths: Sequence[Path]) -> float:
    """CPU seconds of ``read_ntu_skeleton`` alone over ``paths`` (one core)."""
    from skeleton_attention.skeletons.ntu import read_ntu_skeleton

    start = time.process_time()
    for path in paths:
        read_ntu_skeleton(path)
    return time.process_time() - start


def full_worker(paths_file: Path, n_files: int, workers: int, params: Mapping[str, Any]) -> None:
    """One full preparation of the first ``n_files`` paths in this (fresh) process; one JSON line."""
    paths = [Path(p) for p in paths_file.read_text().splitlines()[:n_files]]
    parse_s = parser_cpu_s(paths)
    with tempfile.TemporaryDirectory() as tmp, TreeMemorySampler() as memory:
        rss_start = memory.root.memory_info().rss / 2**20
        cpu_start, children_start = time.process_time(), os.times()
        result = full_preparation(paths, Path(tmp), params, workers)
        children = os.times()
        cpu_children = (
            children.children_user
            - children_start.children_user
            + children.children_system
            - children_start.children_system
        )
        cpu_main = time.process_time() - cpu_start
        peak_main = peak_rss_mib()  # before the digest reads the table back
        features = Path(tmp) / "features" / "samples.parquet"
        parquet_bytes = features.stat().st_size
        intermediate_bytes = (Path(tmp) / "intermediate" / "samples.parquet").stat().st_size
        memory.stop()
        digest = table_digest(features)
    print(
        json.dumps(
            {
                "files": len(paths),
                "raw_mib": sum(p.stat().st_size for p in paths) / 2**20,
                "workers": workers,
                "samples": result["features"]["samples"],
                "quarantined": result["intermediate"]["quarantined"],
                "ingest_s": result["ingest_s"],
                "features_s": result["features_s"],
                "parser_cpu_s": parse_s,
                "cpu_main_s": cpu_main,
                "cpu_workers_s": cpu_children,
                "parquet_mib": parquet_bytes / 2**20,
                "intermediate_mib": intermediate_bytes / 2**20,
                "rss_start_mib": rss_start,
                "peak_main_mib": peak_main,
                "peak_worker_mib": memory.peak_worker_mib,
                "peak_tree_mib": memory.peak_tree_mib,
                "digest": digest,
                "load": os.getloadavg()[0],
            }
        )
    )


def run_full(
    script: Path,
    sizes: Sequence[int],
    workers: int,
    folder: Path | None,
    codes: Mapping[str, Path | None],
    extra_args: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[dict], float]:
    """Write the synthetic files (unless ``folder`` holds enough) and run each size with each code
    (label -> ``src`` folder, None = this tree; ``extra_args``: label -> more worker arguments) in a
    fresh process, the codes taking turns. Returns the results and the seconds spent writing the
    files."""
    with tempfile.TemporaryDirectory() as tmp:
        write_s = 0.0
        if folder is None:
            start = time.perf_counter()
            files = write_synthetic_files(Path(tmp) / "ntu", max(sizes))
            write_s = time.perf_counter() - start
        else:
            files = sorted(folder.glob("*.skeleton"))
        if len(files) < max(sizes):
            raise SystemExit(f"{len(files)} synthetic files, {max(sizes)} needed")
        paths_file = Path(tmp) / "paths.txt"
        paths_file.write_text("\n".join(str(p) for p in files))
        results = []
        for n_files in sizes:
            for label, src in codes.items():
                command = [
                    sys.executable,
                    str(script),
                    "--_full",
                    str(n_files),
                    "--_paths-file",
                    str(paths_file),
                    "--workers",
                    str(workers),
                    *(extra_args or {}).get(label, ()),
                ]
                out = subprocess.run(command, check=True, capture_output=True, text=True, env=code_env(src))
                results.append({"code": label, **json.loads(out.stdout.strip().splitlines()[-1])})
    return results, write_s


FULL_COLUMNS = (
    "code",
    "files",
    "raw MiB",
    "samples",
    "ingest s",
    "features s",
    "total s (wall)",
    "files/s (wall)",
    "CPU s (tree)",
    "files/s per core",
    "parser files/s per core",
    "end-to-end / parser",
    "Parquet MiB",
    "Parquet / raw",
    "peak RSS tree MiB",
    "peak RSS main MiB",
    "peak RSS worker MiB",
    "values digest",
    "load (1 min)",
)


def format_full_table(title: str, results: list[dict]) -> str:
    head = "| " + " | ".join(FULL_COLUMNS) + " |"
    lines = [f"### {title}", "", head, "|" + "---|" * len(FULL_COLUMNS)]
    for r in results:
        wall = r["ingest_s"] + r["features_s"]
        cpu = r["cpu_main_s"] + r["cpu_workers_s"]
        e2e, parser = r["files"] / cpu, r["files"] / r["parser_cpu_s"]
        lines.append(
            f"| {r['code']} | {r['files']} | {r['raw_mib']:.0f} | {r['samples']} | {r['ingest_s']:.1f} | "
            f"{r['features_s']:.1f} | {wall:.1f} | {r['files'] / wall:.0f} | {cpu:.1f} | {e2e:.0f} | {parser:.0f} | "
            f"{e2e / parser:.2f} | {r['parquet_mib']:.1f} | {r['parquet_mib'] / r['raw_mib']:.2f} | "
            f"{r['peak_tree_mib']:.0f} | {r['peak_main_mib']:.0f} | {r['peak_worker_mib']:.0f} | {r['digest']} | "
            f"{r['load']:.1f} |"
        )
    return "\n".join(lines)


def extrapolate(results: list[dict], target: int = NTU120_FILES) -> list[str]:
    """Per code, the line through its two largest runs, evaluated at ``target`` files."""
    lines = []
    for code in dict.fromkeys(r["code"] for r in results):
        runs = sorted((r for r in results if r["code"] == code), key=lambda r: r["files"])
        if len(runs) < 2 or runs[-1]["files"] == runs[-2]["files"]:
            continue
        a, b = runs[-2], runs[-1]
        span = b["files"] - a["files"]

        def at(key, a=a, b=b, span=span):
            slope = (key(b) - key(a)) / span
            return key(b) + slope * (target - b["files"]), slope

        wall, wall_slope = at(lambda r: r["ingest_s"] + r["features_s"])
        cpu, cpu_slope = at(lambda r: r["cpu_main_s"] + r["cpu_workers_s"])
        tree, tree_slope = at(lambda r: r["peak_tree_mib"])
        main, main_slope = at(lambda r: r["peak_main_mib"])
        parquet, _ = at(lambda r: r["parquet_mib"])
        lines.append(
            f"- {code}: measured slopes between {a['files']} and {b['files']} files: {1000 * cpu_slope:.2f} CPU-s and "
            f"{1000 * wall_slope:.2f} s wall per 1000 files -> {target:,} files: {cpu / 60:.1f} CPU-min "
            f"({wall / 60:.1f} min wall at this run's load), Parquet {parquet / 1024:.1f} GiB; peak RSS slope "
            f"{1000 * tree_slope:+.1f} MiB (tree) and {1000 * main_slope:+.1f} MiB (main) per 1000 files -> "
            f"{tree:.0f} MiB tree, {main:.0f} MiB main (a linear extrapolation of two sizes, not a measurement)"
        )
    return lines
