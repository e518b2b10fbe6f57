"""Cost of the provenance and row-order features of data preparation (docs/data-format.md).

    python benchmarks/bench_provenance.py --raw data/01_raw/synthetic/ntu --pattern '*.skeleton' \\
        --intermediate data/02_intermediate/ntu --rounds 3

* fingerprinting the raw inputs: one ``stat`` per file (what preparation does) against a SHA-256 of
  every file's bytes (the alternative; run it twice to see the warm page cache);
* ``build_streams`` + ``write_bundle`` of an intermediate bundle in file order and shuffled
  (``row_order``), each ``--rounds`` times in this process, written under a temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import yaml

from skeleton_attention.skeletons.fingerprint import file_stats

REPO = Path(__file__).resolve().parents[1]


def fingerprint_costs(raw: Path, pattern: str) -> None:
    files = sorted(p for p in raw.rglob(pattern) if p.is_file())
    if not files:
        raise SystemExit(f"no {pattern} files under {raw}")
    size = sum(f.stat().st_size for f in files)
    started = time.perf_counter()
    file_stats(files, raw)
    stat_s = time.perf_counter() - started
    started = time.perf_counter()
    for path in files:
        hashlib.sha256(path.read_bytes()).digest()
    hash_s = time.perf_counter() - started
    print(
        f"| fingerprint | {len(files)} files, {size / 1e6:.1f} MB | stat {stat_s * 1e3:.1f} ms "
        f"({stat_s / len(files) * 1e6:.1f} us/file) | sha256 {hash_s * 1e3:.0f} ms "
        f"({size / 1e6 / hash_s:.0f} MB/s) |"
    )


def row_order_costs(intermediate: Path, dataset: str, rounds: int) -> None:
    from skeleton_attention.pipelines.preparation import build_streams
    from skeleton_attention.skeletons.bundle import PreparedBundle, write_bundle

    params = yaml.safe_load((REPO / "conf/base/parameters_prepare.yml").read_text())[f"prepare_{dataset}"]
    bundle = PreparedBundle(intermediate)
    with tempfile.TemporaryDirectory() as out:
        for _ in range(rounds):
            for shuffle in (False, True):
                order = {**params.get("row_order", {}), "shuffle": shuffle}
                started = time.perf_counter()
                write_bundle(Path(out) / f"features_{shuffle}", build_streams(bundle, {**params, "row_order": order}))
                print(
                    f"| build_streams | {len(bundle.table)} samples | shuffle={shuffle} | "
                    f"{time.perf_counter() - started:.2f} s |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--intermediate", type=Path)
    parser.add_argument("--dataset", default="ntu", help="which prepare_<dataset> parameters to use")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fingerprint_costs(args.raw, args.pattern)
    if args.intermediate is not None:
        row_order_costs(args.intermediate, args.dataset, args.rounds)


if __name__ == "__main__":
    main()
