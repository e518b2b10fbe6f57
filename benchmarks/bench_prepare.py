"""Data-preparation speed: NTU ``.skeleton`` parsing, the per-file preparation path, and the
full multi-process preparation.

Part 1 compares, in one run and on the same real files (one core each):

* ``baseline_plain``  a plain line-by-line reader (readline, split, ``float`` per value) that
  keeps every field and builds the same arrays as ``read_ntu_skeleton``;
* ``baseline_dict``   the same loop in the style of the public NTU scripts (a dict per body and
  per joint, then a numpy array filled joint by joint);
* ``read_ntu_skeleton_pure``  this project's reader, pure-Python/pyarrow path;
* ``read_ntu_skeleton_fast``  this project's reader with the compiled parser (``_ntu_fast``);
* ``end_to_end`` / ``end_to_end_pure``  :func:`end_to_end`, the per-file preparation path
  (read + denoise + normalize + streams + table write) with either reader.

Each method runs in its own fresh interpreter so its peak RSS is its own. A pass reads
``--files`` files (the real files cycled); each method gets ``--rounds`` passes, the methods taking
turns, and the best pass counts. Rates use CPU time of the process (one core), which other load
on the machine disturbs much less than wall time.

Part 2 runs the full preparation as the ``prepare_ntu`` pipeline does it (:func:`full_preparation`:
``ingest`` over a process pool of ``--workers`` + ``write_bundle``, then ``featurize`` +
``write_bundle``) on N = ``--full-sizes`` synthetic files written by ``write_synthetic_ntu`` into a
temporary folder, each N in a fresh process, and records files/s, CPU time of the process tree
and its peak RSS, to show that memory stays flat as N grows. Usage::

    python benchmarks/bench_prepare.py                      # both parts, about 2 minutes
    python benchmarks/bench_prepare.py --files 600 --rounds 5 --skip-full
    python benchmarks/bench_prepare.py --synthetic-dir data/01_raw/synthetic/ntu
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import skeleton_attention  # noqa: F401
except ImportError:  # running from a checkout without an editable install
    sys.path.insert(0, str(REPO_ROOT / "src"))

# Only the reader at module level: the preparation modules (pandas, Parquet) are imported where
# they are used, so the reader rows' memory is the reader's own.
from skeleton_attention.skeletons import ntu  # noqa: E402
from skeleton_attention.skeletons.ntu import read_ntu_skeleton  # noqa: E402

SHARED_DATA = Path(os.environ.get("SKELETON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
PARAMETERS_FILE = REPO_ROOT / "conf" / "base" / "parameters_prepare.yml"


def load_prepare_params(path: Path = PARAMETERS_FILE) -> dict[str, Any]:
    """The ``prepare_ntu`` block of the project's preparation parameters."""
    return dict(yaml.safe_load(path.read_text())["prepare_ntu"])

# ---------------------------------------------------------------------------------------------
# Baselines (written here, in the way the public NTU preprocessing scripts read the files)
# ---------------------------------------------------------------------------------------------

_BODY_KEYS = ("body_id", "clipped_edges", "hand_left_confidence", "hand_left_state",
              "hand_right_confidence", "hand_right_state", "is_restricted", "lean_x", "lean_y",
              "tracking_state")
_JOINT_KEYS = ("x", "y", "z", "depth_x", "depth_y", "color_x", "color_y", "orientation_w",
               "orientation_x", "orientation_y", "orientation_z", "tracking_state")


def baseline_plain(path: Path) -> dict[str, np.ndarray]:
    """readline / split / float per value into lists, then arrays; every field, exact IDs."""
    with open(path) as f:
        num_frames = int(f.readline())
        bodies_per_frame, ids, info, joints = [], [], [], []
        for _ in range(num_frames):
            num_bodies = int(f.readline())
            bodies_per_frame.append(num_bodies)
            for _ in range(num_bodies):
                fields = f.readline().split()
                ids.append(int(fields[0]))
                info.append([float(v) for v in fields[1:]])
                for _ in range(int(f.readline())):
                    joints.append([float(v) for v in f.readline().split()])
    values = np.asarray(joints, dtype=np.float64).reshape(len(ids), 25, 12)
    return {
        "bodies_per_frame": np.asarray(bodies_per_frame, dtype=np.int16),
        "body_ids": np.asarray(ids, dtype=np.uint64),
        "body_info": np.asarray(info, dtype=np.float32),
        "joints": values[:, :, :11].astype(np.float32),
        "joint_tracking": values[:, :, 11].astype(np.int8),
    }


def baseline_dict(path: Path) -> dict[str, np.ndarray]:
    """A dict per body and per joint (``float`` on every field, the body ID included, as the
    public scripts do), then arrays filled joint by joint."""
    with open(path) as f:
        frames = []
        for _ in range(int(f.readline())):
            bodies = []
            for _ in range(int(f.readline())):
                body = dict(zip(_BODY_KEYS, (float(v) for v in f.readline().split()), strict=True))
                body["joints"] = [
                    dict(zip(_JOINT_KEYS, (float(v) for v in f.readline().split()), strict=True))
                    for _ in range(int(f.readline()))
                ]
                bodies.append(body)
            frames.append(bodies)
    num_records = sum(len(b) for b in frames)
    joints = np.zeros((num_records, 25, 11), dtype=np.float32)
    tracking = np.zeros((num_records, 25), dtype=np.int8)
    r = 0
    for bodies in frames:
        for body in bodies:
            for j, joint in enumerate(body["joints"]):
                joints[r, j] = [joint[k] for k in _JOINT_KEYS[:11]]
                tracking[r, j] = joint["tracking_state"]
            r += 1
    return {"joints": joints, "joint_tracking": tracking}


# ---------------------------------------------------------------------------------------------
# The methods under test
# ---------------------------------------------------------------------------------------------


def end_to_end(paths: Sequence[Path], params: Mapping[str, Any] | None = None,
               workdir: Path | None = None) -> int:
    """The per-file preparation path, in one process: for each file ``process_ntu_file`` (read,
    missing-list check, denoise), then per sample ``normalize_sequence`` + ``compute_streams``
    (as ``prepare.featurize`` chains them) and a row in a Parquet sample table written to a
    temporary folder. ``params`` is the ``prepare_ntu`` block (default: conf/base).

    Returns the number of samples written.
    """
    from skeleton_attention.skeletons.layouts import get_layout
    from skeleton_attention.skeletons.normalize import normalize_sequence
    from skeleton_attention.skeletons.prepare import NTU_PROTOCOLS, process_ntu_file
    from skeleton_attention.skeletons.streams import compute_streams
    from skeleton_attention.skeletons.table import SampleTableWriter, sequence_to_row

    params = load_prepare_params() if params is None else params
    streams = tuple(params["streams"])
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        table = Path(tmp) / "samples.parquet"
        with SampleTableWriter(table, NTU_PROTOCOLS, streams, int(params["row_group_size"])) as writer:
            for path in paths:
                outcome = process_ntu_file(path, denoise=params["denoise"])
                for seq, splits in outcome.samples:
                    seq = normalize_sequence(seq, params["normalize"])
                    arrays = compute_streams(seq.coords, get_layout(seq.layout), names=streams)
                    writer.write(sequence_to_row(seq, arrays, splits))
        return writer.rows_written


def _each(reader: Callable[[Path], object]) -> Callable[[Sequence[Path]], int]:
    def run(paths: Sequence[Path]) -> int:
        for path in paths:
            reader(path)
        return len(paths)
    return run


METHODS: dict[str, Callable[[Sequence[Path]], int]] = {
    "baseline_plain": _each(baseline_plain),
    "baseline_dict": _each(baseline_dict),
    "read_ntu_skeleton_pure": _each(partial(read_ntu_skeleton, pure=True)),
    "read_ntu_skeleton_fast": _each(partial(read_ntu_skeleton, pure=False)),
    "end_to_end": end_to_end,
    "end_to_end_pure": end_to_end,
}
#: environment of a method's process: ``end_to_end_pure`` reads through ``process_ntu_file``, so
#: the pure reader is chosen with the environment variable
METHOD_ENV: dict[str, dict[str, str]] = {"end_to_end_pure": {ntu.PURE_PARSER_ENV: "1"}}
FAST_METHODS = ("read_ntu_skeleton_fast", "end_to_end")


def _peak_rss_mib() -> float:
    """Peak RSS of this process. Linux keeps ``ru_maxrss`` across ``exec`` (a child starts with
    its parent's peak), so the per-address-space high-water mark ``VmHWM`` is read instead."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _worker(method: str, paths_file: Path, rounds: int) -> None:
    """Run one method in this (fresh) process; print one JSON line."""
    import psutil

    paths = [Path(p) for p in paths_file.read_text().splitlines()]
    rss_start = psutil.Process().memory_info().rss / 2**20
    METHODS[method](paths[: min(len(paths), 20)])  # warm-up: imports, allocator, page cache
    wall, cpu = [], []
    for _ in range(rounds):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        METHODS[method](paths)
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    result = {"method": method, "wall_s": min(wall), "cpu_s": min(cpu), "rss_start_mib": rss_start,
              "peak_rss_mib": _peak_rss_mib()}
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def check_equal(files: Sequence[Path]) -> None:
    """Both reader paths and the plain baseline agree on every field of every file."""
    for path in files:
        slow = baseline_plain(path)
        for pure in (True, False):
            rec = read_ntu_skeleton(path, pure=pure)
            for key, value in slow.items():
                if not np.array_equal(getattr(rec, key), value):
                    raise AssertionError(f"{path}: {key} differs between read_ntu_skeleton(pure={pure}) "
                                         "and the baseline")


def run_methods(files: Sequence[Path], n_reads: int, rounds: int, methods: Sequence[str]) -> list[dict]:
    """Best of ``rounds`` per method; the methods take turns round by round (each round in a
    fresh process) so that load from other processes hits them alike."""
    paths = [files[i % len(files)] for i in range(n_reads)]
    total_bytes = sum(p.stat().st_size for p in paths)
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths_file = Path(tmp) / "paths.txt"
        paths_file.write_text("\n".join(str(p) for p in paths))
        for _ in range(rounds):
            for method in methods:
                command = [sys.executable, __file__, "--_worker", method, "--_paths-file", str(paths_file)]
                env = {**os.environ, "OMP_NUM_THREADS": "1", **METHOD_ENV.get(method, {})}
                out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                kept = best.setdefault(method, result)
                kept["wall_s"] = min(kept["wall_s"], result["wall_s"])
                kept["cpu_s"] = min(kept["cpu_s"], result["cpu_s"])
                kept["peak_rss_mib"] = max(kept["peak_rss_mib"], result["peak_rss_mib"])
    for result in best.values():
        result.update(files=len(paths), mib=total_bytes / 2**20)
    return [best[m] for m in methods]


def format_table(title: str, results: list[dict]) -> str:
    """Rates and speed-ups use CPU time (one core); wall time is shown for reference."""
    by_name = {r["method"]: r for r in results}
    refs = [m for m in ("baseline_plain", "baseline_dict") if m in by_name]
    head = (
        "| method | files | MiB | CPU s | wall s | files/s (CPU) | MiB/s (CPU) | "
        + " | ".join(f"x vs {m}" for m in refs)
        + " | peak RSS MiB | RSS after imports MiB |"
    )
    lines = [f"### {title}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        speedups = " | ".join(f"{by_name[m]['cpu_s'] / r['cpu_s']:.1f}" for m in refs)
        lines.append(
            f"| {r['method']} | {r['files']} | {r['mib']:.1f} | {r['cpu_s']:.3f} | {r['wall_s']:.3f} | "
            f"{r['files'] / r['cpu_s']:.0f} | {r['mib'] / r['cpu_s']:.1f} | {speedups} | "
            f"{r['peak_rss_mib']:.0f} | {r['rss_start_mib']:.0f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Part 2: the full multi-process preparation on N synthetic files
# ---------------------------------------------------------------------------------------------

#: 14 classes x 8 performers x 2 replications x 3 cameras = 672 files per setup
SYNTHETIC_LAYOUT: dict[str, Any] = {"num_classes": 14, "performers": (1, 2, 3, 4, 5, 8, 9, 13),
                                    "replications": (1, 2), "cameras": (1, 2, 3)}


def write_synthetic_files(folder: Path, n_files: int, seed: int = 0) -> list[Path]:
    """At least ``n_files`` synthetic NTU files (whole setups of 672) in ``folder``, in order."""
    from skeleton_attention.skeletons.synthetic import write_synthetic_ntu

    per_setup = SYNTHETIC_LAYOUT["num_classes"] * len(SYNTHETIC_LAYOUT["performers"]) * len(
        SYNTHETIC_LAYOUT["replications"]) * len(SYNTHETIC_LAYOUT["cameras"])
    setups = tuple(range(1, -(-n_files // per_setup) + 1))
    return write_synthetic_ntu(folder, setups=setups, seed=seed, **SYNTHETIC_LAYOUT)


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

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def full_preparation(paths: Sequence[Path], out_dir: Path, params: Mapping[str, Any], workers: int
                     ) -> dict[str, Any]:
    """``prepare_ntu`` without Kedro: ingest (``process_ntu_file`` over a pool of ``workers``
    processes) into the intermediate bundle, then ``featurize`` into the feature bundle, both
    written with ``write_bundle`` (as ``pipelines/preparation.py`` wires them). Returns the
    timings and both summaries."""
    from skeleton_attention.skeletons.bundle import BundleSource, BundleSpec, PreparedBundle, write_bundle
    from skeleton_attention.skeletons.ingest import IngestCounter, ingest
    from skeleton_attention.skeletons.prepare import NTU_PROTOCOLS, featurize, process_ntu_file

    counter = IngestCounter()
    spec = BundleSpec(protocols=NTU_PROTOCOLS, streams=("joint",), row_group_size=int(params["row_group_size"]),
                      info={"stage": "intermediate", "coordinates": "camera", "dataset": "ntu"})
    source = BundleSource(spec=spec, records=())

    def records() -> Iterator[object]:
        yield from ingest(paths, partial(process_ntu_file, denoise=params["denoise"]), workers=workers,
                          chunksize=int(params["chunksize"]), counter=counter, description="bench ingest")
        source.inputs_seen = counter.inputs_seen

    source.records = records()
    start = time.perf_counter()
    intermediate = write_bundle(out_dir / "intermediate", source)
    ingest_s = time.perf_counter() - start

    streams = tuple(params["streams"])
    table = PreparedBundle(out_dir / "intermediate").table
    feature_spec = BundleSpec(protocols=table.protocols, streams=streams,
                              row_group_size=int(params["row_group_size"]),
                              info={"stage": "feature", "normalize": dict(params["normalize"])})
    start = time.perf_counter()
    features = write_bundle(out_dir / "features", BundleSource(
        spec=feature_spec, records=featurize(table, params["normalize"], streams), inputs_seen=len(table)))
    features_s = time.perf_counter() - start
    return {"ingest_s": ingest_s, "features_s": features_s, "intermediate": intermediate, "features": features}


def _full_worker(paths_file: Path, n_files: int, workers: int) -> None:
    """One full preparation of the first ``n_files`` paths in this (fresh) process; one JSON line."""
    paths = [Path(p) for p in paths_file.read_text().splitlines()[:n_files]]
    params = load_prepare_params()
    with tempfile.TemporaryDirectory() as tmp, TreeMemorySampler() as memory:
        rss_start = memory.root.memory_info().rss / 2**20
        cpu_start, children_start = time.process_time(), os.times()
        result = full_preparation(paths, Path(tmp), params, workers)
        children = os.times()
        cpu_children = (children.children_user - children_start.children_user
                        + children.children_system - children_start.children_system)
        cpu_main = time.process_time() - cpu_start
    summary = result["features"]
    print(json.dumps({
        "files": len(paths), "mib": sum(p.stat().st_size for p in paths) / 2**20, "workers": workers,
        "samples": summary["samples"], "quarantined": result["intermediate"]["quarantined"],
        "ingest_s": result["ingest_s"], "features_s": result["features_s"],
        "cpu_main_s": cpu_main, "cpu_workers_s": cpu_children,
        "rss_start_mib": rss_start, "peak_main_mib": _peak_rss_mib(),
        "peak_worker_mib": memory.peak_worker_mib, "peak_tree_mib": memory.peak_tree_mib,
    }))


def run_full(sizes: Sequence[int], workers: int, folder: Path | None) -> tuple[list[dict], float]:
    """Write the synthetic files (unless ``folder`` holds enough) and run each size in a fresh process.
    Returns the results and the seconds spent writing the files."""
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
            command = [sys.executable, __file__, "--_full", str(n_files), "--_paths-file", str(paths_file),
                       "--workers", str(workers)]
            out = subprocess.run(command, check=True, capture_output=True, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results, write_s


def format_full_table(title: str, results: list[dict]) -> str:
    head = ("| files | MiB | samples | ingest s (wall) | features s (wall) | files/s (wall) | "
            "CPU s (tree) | files/s per core (CPU) | MiB/s (wall) | peak RSS tree MiB | peak RSS main MiB | "
            "peak RSS one worker MiB |")
    lines = [f"### {title}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        wall = r["ingest_s"] + r["features_s"]
        cpu = r["cpu_main_s"] + r["cpu_workers_s"]
        lines.append(
            f"| {r['files']} | {r['mib']:.0f} | {r['samples']} | {r['ingest_s']:.1f} | {r['features_s']:.1f} | "
            f"{r['files'] / wall:.0f} | {cpu:.1f} | {r['files'] / cpu:.0f} | {r['mib'] / wall:.1f} | "
            f"{r['peak_tree_mib']:.0f} | {r['peak_main_mib']:.0f} | {r['peak_worker_mib']:.0f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ntu-dir", type=Path, default=SHARED_DATA / "ntu_raw",
                        help="real NTU .skeleton files (default: ../shared/data/ntu_raw)")
    parser.add_argument("--synthetic-dir", type=Path, default=None,
                        help="a folder of synthetic .skeleton files: part 1 runs on it too, and part 2 "
                             "takes its files instead of writing new ones")
    parser.add_argument("--files", type=int, default=300,
                        help="file reads per pass (the files are cycled; default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="passes per method; the best counts")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--full-sizes", type=int, nargs="+", default=[500, 1000, 2016, 4032],
                        help="numbers of synthetic files for the full preparation (default 500 1000 2016 4032)")
    parser.add_argument("--workers", type=int, default=2, help="ingest processes in part 2 (default 2)")
    parser.add_argument("--skip-full", action="store_true", help="only part 1")
    parser.add_argument("--skip-readers", action="store_true", help="only part 2")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_full", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_paths-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        _worker(args._worker, args._paths_file, 1)
        return
    if args._full:
        _full_worker(args._paths_file, args._full, args.workers)
        return

    methods = list(args.methods)
    if not ntu.FAST_PARSER_AVAILABLE:
        methods = [m for m in methods if m != "read_ntu_skeleton_fast"]
        print("note: the compiled parser _ntu_fast is not built; end_to_end uses the pure reader")
    sets = [("real NTU files", args.ntu_dir)]
    if args.synthetic_dir is not None:
        sets.append(("synthetic NTU files", args.synthetic_dir))
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; compiled parser: {ntu.FAST_PARSER_AVAILABLE}; "
          f"{args.files} reads x best of {args.rounds}")
    all_results: dict[str, Any] = {}
    for title, folder in [] if args.skip_readers else sets:
        files = sorted(Path(folder).glob("*.skeleton"))
        if not files:
            raise SystemExit(f"no .skeleton files in {folder}")
        check_equal(files)
        results = run_methods(files, args.files, args.rounds, methods)
        all_results[title] = results
        print()
        print(format_table(f"{title}: {len(files)} distinct files from {folder}", results))
    if not args.skip_full:
        results, write_s = run_full(sorted(args.full_sizes), args.workers, args.synthetic_dir)
        all_results["full preparation"] = results
        print()
        print(format_full_table(
            f"full preparation (ingest with {args.workers} workers + write_bundle, then featurize + "
            f"write_bundle) on synthetic files (written in {write_s:.0f} s); load average "
            f"{os.getloadavg()[0]:.2f}", results))
    if args.json is not None:
        args.json.write_text(json.dumps(all_results, indent=2))


if __name__ == "__main__":
    main()
