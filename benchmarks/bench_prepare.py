"""Data-preparation speed: NTU ``.skeleton`` parsing and the per-file preparation path.

Compares, in one run and on the same files:

* ``baseline_plain``  a plain line-by-line reader (readline, split, ``float`` per value) that
  keeps every field and builds the same arrays as ``read_ntu_skeleton``;
* ``baseline_dict``   the same loop in the style of the public NTU scripts (a dict per body and
  per joint, then a numpy array filled joint by joint);
* ``read_ntu_skeleton``  this project's reader;
* ``end_to_end``      :func:`end_to_end`, the per-file preparation path.

Each method runs in its own fresh interpreter so its peak RSS is its own. A pass reads
``--files`` files (the real files cycled); each method gets ``--rounds`` passes, the methods taking
turns, and the best pass counts. Rates use CPU time of the process (one core), which other load
on the machine disturbs much less than wall time. Usage::

    python benchmarks/bench_prepare.py                      # the 60 real NTU files
    python benchmarks/bench_prepare.py --files 600 --rounds 5
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
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import skeleton_attention  # noqa: F401
except ImportError:  # running from a checkout without an editable install
    sys.path.insert(0, str(REPO_ROOT / "src"))

from skeleton_attention.skeletons.denoise import denoise_ntu  # noqa: E402
from skeleton_attention.skeletons.ntu import read_ntu_skeleton  # noqa: E402

SHARED_DATA = Path(os.environ.get("SKELETON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

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


def end_to_end(paths: Sequence[Path]) -> int:
    """Per-file preparation path: read + denoise. HOOK: the lead wires normalize + streams here.

    Returns the number of samples produced.
    """
    produced = 0
    for path in paths:
        sequence, _report = denoise_ntu(read_ntu_skeleton(path))
        produced += sequence is not None
    return produced


def _each(reader: Callable[[Path], object]) -> Callable[[Sequence[Path]], int]:
    def run(paths: Sequence[Path]) -> int:
        for path in paths:
            reader(path)
        return len(paths)
    return run


METHODS: dict[str, Callable[[Sequence[Path]], int]] = {
    "baseline_plain": _each(baseline_plain),
    "baseline_dict": _each(baseline_dict),
    "read_ntu_skeleton": _each(read_ntu_skeleton),
    "end_to_end": end_to_end,
}


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
    """The fast reader and the plain baseline agree on every field of every file."""
    for path in files:
        fast, slow = read_ntu_skeleton(path), baseline_plain(path)
        for key, value in slow.items():
            if not np.array_equal(getattr(fast, key), value):
                raise AssertionError(f"{path}: {key} differs between read_ntu_skeleton and baseline")


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
                out = subprocess.run(command, check=True, capture_output=True, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ntu-dir", type=Path, default=SHARED_DATA / "ntu_raw",
                        help="real NTU .skeleton files (default: ../shared/data/ntu_raw)")
    parser.add_argument("--synthetic-dir", type=Path, default=None,
                        help="optional folder of synthetic .skeleton files, benchmarked separately")
    parser.add_argument("--files", type=int, default=300,
                        help="file reads per pass (the files are cycled; default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="passes per method; the best counts")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_paths-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        _worker(args._worker, args._paths_file, 1)
        return

    sets = [("real NTU files", args.ntu_dir)]
    if args.synthetic_dir is not None:
        sets.append(("synthetic NTU files", args.synthetic_dir))
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; {args.files} reads x best of {args.rounds}")
    all_results = {}
    for title, folder in sets:
        files = sorted(Path(folder).glob("*.skeleton"))
        if not files:
            raise SystemExit(f"no .skeleton files in {folder}")
        check_equal(files)
        results = run_methods(files, args.files, args.rounds, args.methods)
        all_results[title] = results
        print()
        print(format_table(f"{title}: {len(files)} distinct files from {folder}", results))
    if args.json is not None:
        args.json.write_text(json.dumps(all_results, indent=2))


if __name__ == "__main__":
    main()
