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
  (read + denoise + normalize + streams + table write) with either reader;
* ``end_to_end_uncompressed``  the same with ``parquet.compression: none`` (this tree only).

Each method runs in its own fresh interpreter so its peak RSS is its own. A pass reads
``--files`` files (the real files cycled); each method gets ``--rounds`` passes, the methods taking
turns, and the best pass counts. Rates use CPU time of the process (one core), which other load
on the machine disturbs much less than wall time.

Part 2 (``bench_prepare_full.py``) runs the full preparation as the ``prepare_ntu`` pipeline does it
(``ingest`` over a process pool of ``--workers`` + ``write_bundle``, then ``featurize`` +
``write_bundle``) on N = ``--full-sizes`` synthetic files (or ``--fraction`` of NTU 120's 113,945 files
and half of it) written by ``write_synthetic_ntu`` into a temporary folder, each N in a fresh
process. It records files/s per core, total time, peak RSS (flat in N), Parquet vs raw text bytes,
the parser-only rate on the same files, a digest of the prepared values, and extrapolates to
113,945 files with the measured slope.

``--baseline-ref REV`` runs the code of git revision REV beside this tree's in the same run
(``end_to_end@baseline`` in part 1, a ``baseline`` row per N in part 2). Usage::

    python benchmarks/bench_prepare.py                      # both parts, about 2 minutes
    python benchmarks/bench_prepare.py --fraction 0.02 --baseline-ref ce986b1 --skip-readers
    python benchmarks/bench_prepare.py --files 600 --rounds 5 --skip-full
    python benchmarks/bench_prepare.py --tiny               # toy sizes (the test suite)
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import skeleton_attention  # noqa: F401
except ImportError:  # running from a checkout without an editable install
    sys.path.insert(0, str(REPO_ROOT / "src"))

from bench_common import baseline_tree, code_env, machine_line, peak_rss_mib  # noqa: E402
from bench_prepare_full import (  # noqa: E402, F401  (re-exported: the full preparation lives there)
    NTU120_FILES,
    extrapolate,
    format_full_table,
    full_preparation,
    full_worker,
    run_full,
    write_synthetic_files,
)

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

_BODY_KEYS = (
    "body_id",
    "clipped_edges",
    "hand_left_confidence",
    "hand_left_state",
    "hand_right_confidence",
    "hand_right_state",
    "is_restricted",
    "lean_x",
    "lean_y",
    "tracking_state",
)
_JOINT_KEYS = (
    "x",
    "y",
    "z",
    "depth_x",
    "depth_y",
    "color_x",
    "color_y",
    "orientation_w",
    "orientation_x",
    "orientation_y",
    "orientation_z",
    "tracking_state",
)


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


def end_to_end(
    paths: Sequence[Path], params: Mapping[str, Any] | None = None, workdir: Path | None = None, batch: int = 64
) -> int:
    """The per-file preparation path, in one process: for each file ``process_ntu_file`` (read,
    missing-list check, denoise), then per sample ``normalize_sequence``, the streams of ``batch``
    samples at a time (``compute_streams_many``, as ``prepare.featurize`` computes them; one sample
    at a time with code that predates it) and a row in a Parquet sample table written to a
    temporary folder. ``params`` is the ``prepare_ntu`` block (default: conf/base).

    Returns the number of samples written.
    """
    from skeleton_attention.skeletons import streams as streams_module
    from skeleton_attention.skeletons.layouts import get_layout
    from skeleton_attention.skeletons.normalize import normalize_sequence
    from skeleton_attention.skeletons.prepare import NTU_PROTOCOLS, process_ntu_file
    from skeleton_attention.skeletons.table import SampleTableWriter, sequence_to_row

    params = _conf_params() if params is None else params
    streams = tuple(params["streams"])
    many = getattr(streams_module, "compute_streams_many", None)
    if many is None:  # a baseline without it: one sample at a time

        def many(coords, layout, names):
            return [streams_module.compute_streams(x, layout, names=names) for x in coords]

    layout = get_layout("ntu25")
    supported = "parquet" in inspect.signature(SampleTableWriter).parameters  # not in code before it
    extra = {"parquet": params["parquet"]} if supported and params.get("parquet") is not None else {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        table = Path(tmp) / "samples.parquet"
        with SampleTableWriter(table, NTU_PROTOCOLS, streams, int(params["row_group_size"]), **extra) as writer:
            pending = []
            for index, path in enumerate(paths):
                outcome = process_ntu_file(path, denoise=params["denoise"])
                pending += [(normalize_sequence(seq, params["normalize"]), splits) for seq, splits in outcome.samples]
                if len(pending) >= batch or index == len(paths) - 1:
                    arrays = many([seq.coords for seq, _ in pending], layout, streams)
                    for (seq, splits), sample in zip(pending, arrays, strict=True):
                        writer.write(sequence_to_row(seq, sample, splits))
                    pending = []
        return writer.rows_written


@cache
def _conf_params() -> dict[str, Any]:
    """conf/base's ``prepare_ntu`` block, read once per process (not inside the timed passes)."""
    return load_prepare_params()


def _uncompressed(paths: Sequence[Path]) -> int:
    """:func:`end_to_end` with ``parquet.compression: none`` (docs/performance.md weighs it)."""
    params = _conf_params()
    return end_to_end(paths, {**params, "parquet": {**dict(params.get("parquet") or {}), "compression": "none"}})


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
    "end_to_end_uncompressed": _uncompressed,
}
#: environment of a method's process: ``end_to_end_pure`` reads through ``process_ntu_file``, so
#: the pure reader is chosen with the environment variable
METHOD_ENV: dict[str, dict[str, str]] = {"end_to_end_pure": {ntu.PURE_PARSER_ENV: "1"}}
FAST_METHODS = ("read_ntu_skeleton_fast", "end_to_end")


def _worker(method: str, paths_file: Path, rounds: int) -> None:
    """Run one method in this (fresh) process; print one JSON line."""
    import psutil

    paths = [Path(p) for p in paths_file.read_text().splitlines()]
    rss_start = psutil.Process().memory_info().rss / 2**20
    label, method = method, method.split("@")[0]  # "end_to_end@baseline": the same method, older code
    METHODS[method](paths[: min(len(paths), 20)])  # warm-up: imports, allocator, page cache
    wall, cpu = [], []
    for _ in range(rounds):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        METHODS[method](paths)
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    result = {
        "method": label,
        "wall_s": min(wall),
        "cpu_s": min(cpu),
        "rss_start_mib": rss_start,
        "peak_rss_mib": peak_rss_mib(),
    }
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
                    raise AssertionError(
                        f"{path}: {key} differs between read_ntu_skeleton(pure={pure}) and the baseline"
                    )


def run_methods(
    files: Sequence[Path], n_reads: int, rounds: int, methods: Sequence[str], baseline_src: Path | None = None
) -> list[dict]:
    """Best of ``rounds`` per method; the methods take turns round by round (each round in a
    fresh process) so that load from other processes hits them alike. A method named
    ``<method>@baseline`` runs the code in ``baseline_src``."""
    paths = [files[i % len(files)] for i in range(n_reads)]
    total_bytes = sum(p.stat().st_size for p in paths)
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths_file = Path(tmp) / "paths.txt"
        paths_file.write_text("\n".join(str(p) for p in paths))
        for _ in range(rounds):
            for method in methods:
                command = [sys.executable, __file__, "--_worker", method, "--_paths-file", str(paths_file)]
                src = baseline_src if method.endswith("@baseline") else None
                env = {**code_env(src), **METHOD_ENV.get(method.split("@")[0], {})}
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
        + " | rate / parser | peak RSS MiB | RSS after imports MiB |"
    )
    parser = by_name.get("read_ntu_skeleton_fast") or by_name.get("read_ntu_skeleton_pure")
    lines = [f"### {title}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        speedups = " | ".join(f"{by_name[m]['cpu_s'] / r['cpu_s']:.1f}" for m in refs)
        lines.append(
            f"| {r['method']} | {r['files']} | {r['mib']:.1f} | {r['cpu_s']:.3f} | {r['wall_s']:.3f} | "
            f"{r['files'] / r['cpu_s']:.0f} | {r['mib'] / r['cpu_s']:.1f} | {speedups} | "
            f"{parser['cpu_s'] / r['cpu_s'] if parser else float('nan'):.2f} | "
            f"{r['peak_rss_mib']:.0f} | {r['rss_start_mib']:.0f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def full_sizes(args: argparse.Namespace) -> list[int]:
    """The N of part 2: ``--fraction`` of NTU 120 and half of it, else ``--full-sizes``."""
    if args.fraction is not None:
        largest = max(24, round(args.fraction * NTU120_FILES))
        return [largest // 2, largest]
    return sorted(args.full_sizes)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ntu-dir",
        type=Path,
        default=SHARED_DATA / "ntu_raw",
        help="real NTU .skeleton files (default: ../shared/data/ntu_raw)",
    )
    parser.add_argument(
        "--synthetic-dir",
        type=Path,
        default=None,
        help="a folder of synthetic .skeleton files: part 1 runs on it too, and part 2 "
        "takes its files instead of writing new ones",
    )
    parser.add_argument(
        "--files", type=int, default=300, help="file reads per pass (the files are cycled; default 300)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="passes per method; the best counts")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--full-sizes",
        type=int,
        nargs="+",
        default=[500, 1000, 2016, 4032],
        help="numbers of synthetic files for the full preparation (default 500 1000 2016 4032)",
    )
    parser.add_argument(
        "--fraction",
        type=float,
        default=None,
        help=f"part 2 on this fraction of NTU 120's {NTU120_FILES:,} files and on half of it "
        "(replaces --full-sizes), extrapolated to the whole set",
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="ingest processes in part 2 (default: every core)"
    )
    parser.add_argument(
        "--baseline-ref",
        default=None,
        help="a git revision whose code runs beside this tree's in the same run "
        "(end_to_end and part 2), e.g. the commit before a speed-up",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="toy sizes for the test suite: 6 reads, 1 round, 12 and 24 files in part 2"
    )
    parser.add_argument("--skip-full", action="store_true", help="only part 1")
    parser.add_argument("--skip-readers", action="store_true", help="only part 2")
    parser.add_argument(
        "--also-parquet",
        action="append",
        default=[],
        metavar="JSON",
        help="part 2 also runs this tree with these Parquet settings over conf/base's "
        '(table.parquet_write_options), e.g. \'{"compression": "none"}\'; repeatable',
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--_parquet", help=argparse.SUPPRESS)
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_full", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_paths-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        _worker(args._worker, args._paths_file, 1)
        return
    if args._full:
        params = load_prepare_params()
        if args._parquet:
            params["parquet"] = {**dict(params.get("parquet") or {}), **json.loads(args._parquet)}
        full_worker(args._paths_file, args._full, args.workers, params)
        return
    if args.tiny:
        args.files, args.rounds, args.full_sizes, args.fraction = 6, 1, [12, 24], None

    methods = list(args.methods)
    if not ntu.FAST_PARSER_AVAILABLE:
        methods = [m for m in methods if m != "read_ntu_skeleton_fast"]
        print("note: the compiled parser _ntu_fast is not built; end_to_end uses the pure reader")
    sets = [("real NTU files", args.ntu_dir)]
    if args.synthetic_dir is not None:
        sets.append(("synthetic NTU files", args.synthetic_dir))
    print(
        f"{machine_line()}; compiled parser: {ntu.FAST_PARSER_AVAILABLE}; "
        f"{args.files} reads x best of {args.rounds}; baseline: {args.baseline_ref or 'none'}"
    )
    all_results: dict[str, Any] = {}
    with baseline_tree(args.baseline_ref) as baseline_src:
        if baseline_src is not None:
            methods += [f"{m}@baseline" for m in methods if m in ("end_to_end", "end_to_end_pure")]
        for title, folder in [] if args.skip_readers else sets:
            files = sorted(Path(folder).glob("*.skeleton"))
            if not files:
                raise SystemExit(f"no .skeleton files in {folder}")
            check_equal(files)
            results = run_methods(files, args.files, args.rounds, methods, baseline_src)
            all_results[title] = results
            print()
            print(format_table(f"{title}: {len(files)} distinct files from {folder}", results))
        if not args.skip_full:
            codes = {"new": None, **({f"baseline {args.baseline_ref}": baseline_src} if baseline_src else {})}
            extra = {}
            for settings in args.also_parquet:
                label = "new, parquet " + ", ".join(f"{k}={v}" for k, v in json.loads(settings).items())
                codes[label], extra[label] = None, ["--_parquet", settings]
            results, write_s = run_full(
                Path(__file__), full_sizes(args), args.workers, args.synthetic_dir, codes, extra
            )
            all_results["full preparation"] = results
            print()
            print(
                format_full_table(
                    f"full preparation (ingest with {args.workers} workers + write_bundle, then featurize + "
                    f"write_bundle) on synthetic files (written in {write_s:.0f} s); {machine_line()}",
                    results,
                )
            )
            print()
            print("\n".join(extrapolate(results)))
    if args.json is not None:
        args.json.write_text(json.dumps(all_results, indent=2))


if __name__ == "__main__":
    main()
