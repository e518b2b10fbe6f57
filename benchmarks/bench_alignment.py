"""Multi-view alignment speed per recording: the search settings against the previous ones, in one run.

Recordings (each set is loaded as the pipelines load it):

* ``ntu synthetic``: ``--ntu-groups`` recordings of three cameras written by ``write_synthetic_ntu``
  in the raw ``.skeleton`` format; views loaded with ``load_ntu_view`` (read + denoise on the full
  timeline), aligned with ``multiview_frame`` and the ``prepare_ntu.multiview`` parameters;
* ``ntu real``: the two recordings of ``ntu_multiview`` (C001-C003), same path;
* ``nucla``: the first ``--nucla-recordings`` recordings of the real N-UCLA release (``nucla_raw``),
  copied views masked, ``multiview_frame`` + ``naive_alignment`` with the ``prepare_nucla.multiview``
  parameters, as ``process_nucla_recording`` does.

Codes, each in a fresh process, taking turns over ``--rounds`` rounds (the best round counts):
``conf`` (this tree with the settings of ``conf/base/parameters_prepare.yml``), ``numpy`` (the same
with the candidate fits in numpy instead of the optional C extension ``_rigid_fast``; its
differences are against ``conf``, so they show what the compiled fits change), ``previous`` (this
tree with the settings before the search settings: those left at ``align_views``' defaults,
``search_iterations`` 8, ``search_frame_step`` 1, ``final_tol`` 1e-7 and, for NTU, ``coarse_step``
1: the exhaustive search), ``unbatched`` (previous settings, one candidate at a time, the
straightforward implementation) and, with ``--baseline-ref REV``, the code of git revision REV
(previous settings). Per set and code: CPU ms per recording for the alignment, for loading the
views, and for the rest of preparation of the same files (parse + denoise + normalize + streams +
Parquet row, as ``end_to_end`` in ``bench_prepare.py``), and how far the results are from ``previous`` (``conf`` for
``previous`` itself): the recordings whose offset, rate or body order differ; the mean and the
largest change of a recording's mean residual (its views' mean per-joint distance to the
reference, mm; positive = worse); over the recordings with the same choices, the largest
difference of rotations and output coordinates. On the synthetic NTU recordings the true offsets
are known (the generator's manifest): the mean and largest error of the offsets found. Usage::

    python benchmarks/bench_alignment.py                           # about 2 minutes
    python benchmarks/bench_alignment.py --rounds 3 --split        # also the CPU time of every stage
    python benchmarks/bench_alignment.py --ntu-groups 42 --nucla-recordings 1000 --rounds 1 --no-unbatched
    python benchmarks/bench_alignment.py --tiny                    # toy sizes (the test suite)

``--split`` aligns every recording a second time with each stage timed (integer search, sub-frame
refinement, final refit, the rest of ``align_views``, ``multiview_frame``'s second resample and
pre-normalisation, N-UCLA's naive baseline). The third line is the validation of the search
settings: every N-UCLA recording, both real NTU groups and 42 synthetic ones (docs/performance.md §3).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench_common import REPO_ROOT, baseline_tree, code_env, machine_line

SHARED_DATA = Path(os.environ.get("SKELETON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
PARAMETERS_FILE = REPO_ROOT / "conf" / "base" / "parameters_prepare.yml"
#: the settings that ``previous`` leaves at ``align_views``' defaults: the search settings, and
#: NTU's coarse_step (N-UCLA's was set before)
BUDGET_KEYS = ("search_iterations", "search_frame_step", "shortlist", "shortlist_iterations", "final_tol")
PREVIOUS_DEFAULTS = {"prepare_ntu": (*BUDGET_KEYS, "coarse_step"), "prepare_nucla": BUDGET_KEYS}
REFERENCE = "previous"
COLUMNS = (
    "set",
    "code",
    "recordings",
    "views",
    "align ms/rec",
    "load views ms/rec",
    "rest of preparation ms/rec",
    "align / rest",
    "align speed-up",
    "choices differing",
    "mean change residual mm",
    "max change residual mm",
    "max diff rotation",
    "max diff coords",
    "offset error mean / max (truth)",
)


# ---------------------------------------------------------------------------------------------
# recordings (in the worker: with the code under test)
# ---------------------------------------------------------------------------------------------


def ntu_synthetic_files(folder: Path, groups: int) -> tuple[list[list[Path]], list[dict[str, float]]]:
    """``groups`` synthetic recordings of cameras 1-3 (replication 1; the generator's 14 classes, then
    further performers) and each one's true offsets: reference (camera 1) frame t is frame
    ``t + offset`` of camera c, as ``align_views`` reports it (keys: the camera as text)."""
    from skeleton_attention.skeletons.synthetic import MANIFEST_NAME, SYNTHETIC_ACTIONS, write_synthetic_ntu

    classes = min(groups, len(SYNTHETIC_ACTIONS))
    performers = tuple(range(1, -(-groups // classes) + 1))
    files = write_synthetic_ntu(
        folder,
        num_classes=classes,
        performers=performers,
        replications=(1,),
        cameras=(1, 2, 3),
        seed=0,
    )
    recordings = _by_recording(files, lambda p: p.stem[:4] + p.stem[8:])[:groups]
    # each view starts master_offset frames into the recording
    meta = json.loads((folder / MANIFEST_NAME).read_text())["files"]
    starts = [{int(p.stem[5:8]): meta[p.name]["master_offset"] for p in g} for g in recordings]
    return recordings, [{str(c): float(s[1] - s[c]) for c in s if c != 1} for s in starts]


def _by_recording(files: Sequence[Path], key: Callable[[Path], str]) -> list[list[Path]]:
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(files):
        groups[key(path)].append(path)
    return [groups[k] for k in sorted(groups)]


def ntu_real_files() -> list[list[Path]]:
    return _by_recording(sorted((SHARED_DATA / "ntu_multiview").glob("*.skeleton")), lambda p: p.stem[:4] + p.stem[8:])


def nucla_files(folder: Path, recordings: int) -> list[list[Path]]:
    return _by_recording(sorted(folder.rglob("a*_s*_e*_v*.json")), lambda p: p.stem.rsplit("_", 1)[0])[:recordings]


def _ntu_aligner(params: Mapping[str, Any]):
    # the alignment functions are looked up on the module at each call, so --split can time them
    from skeleton_attention.skeletons import alignment
    from skeleton_attention.skeletons.ntu import parse_ntu_name
    from skeleton_attention.skeletons.views import load_ntu_view

    multiview = dict(params["multiview"])
    frame = str(multiview.pop("frame", "body"))
    cameras = tuple(multiview.pop("cameras", (1, 2, 3)))

    def load(paths):
        loaded = {parse_ntu_name(p).camera: load_ntu_view(p, denoise_params=params["denoise"]) for p in paths}
        return {c: v for c, (v, _) in loaded.items()}, {c: t for c, (_, t) in loaded.items()}

    def align(loaded):
        views, tracked = loaded
        return alignment.multiview_frame(views, frame, cameras=cameras, tracked=tracked, **multiview), None

    return load, align


def _nucla_aligner(params: Mapping[str, Any]):
    from skeleton_attention.skeletons import alignment, nucla
    from skeleton_attention.skeletons.layouts import KINECT20

    multiview = dict(params["multiview"])
    frame, cameras = str(multiview.pop("frame", "body")), tuple(multiview.pop("cameras", (1, 2, 3)))
    normalize, share = multiview.pop("normalize", None), float(multiview.pop("copy_min_share", 0.2))
    masked = multiview.pop("copied_views", "mask") == "mask"
    reference = int(multiview.pop("reference_camera", cameras[0]))

    def load(paths):
        sequences = [nucla.read_nucla_file(p) for p in paths]
        views = {int(seq.meta["camera"]): seq.coords for seq in sequences}
        copies = nucla.copied_views(views, share) if masked else {}
        return {c: v for c, v in views.items() if c not in copies}

    def align(views):
        aligned = alignment.multiview_frame(
            views,
            frame,
            reference_camera=reference,
            cameras=cameras,
            layout=KINECT20,
            normalize_params=normalize,
            **multiview,
        )
        naive = alignment.naive_alignment(views, reference_camera=reference, cameras=cameras, layout=KINECT20)
        return aligned, naive

    return load, align


def _rest_of_preparation(paths: Sequence[Path], params: Mapping[str, Any], kind: str, tmp: Path) -> None:
    """Per file: the per-file preparation (process_*_file), normalize, streams, a Parquet row."""
    from functools import partial

    from skeleton_attention.skeletons.layouts import get_layout
    from skeleton_attention.skeletons.normalize import normalize_sequence
    from skeleton_attention.skeletons.prepare import (
        NTU_PROTOCOLS,
        NUCLA_PROTOCOLS,
        process_ntu_file,
        process_nucla_file,
    )
    from skeleton_attention.skeletons.streams import compute_streams
    from skeleton_attention.skeletons.table import SampleTableWriter, sequence_to_row

    streams = tuple(params["streams"])
    if kind == "nucla":
        processor, protocols = process_nucla_file, NUCLA_PROTOCOLS
    else:
        processor, protocols = partial(process_ntu_file, denoise=params["denoise"]), NTU_PROTOCOLS
    with SampleTableWriter(tmp / "rest.parquet", protocols, streams, int(params["row_group_size"])) as writer:
        for path in paths:
            for seq, splits in processor(path).samples:
                seq = normalize_sequence(seq, params["normalize"])
                writer.write(
                    sequence_to_row(seq, compute_streams(seq.coords, get_layout(seq.layout), names=streams), splits)
                )


def _use_unbatched_scorer() -> None:
    """Score one candidate at a time with ``robust_rigid_fit`` (the plain implementation)."""
    from skeleton_attention.skeletons import alignment

    def score_many(self, frames, candidates, iterations=None):
        return [self._score_one(frames, o, r, perm, iterations) for o, r, perm in candidates]

    alignment._Scorer.score_many = score_many


def _summary(aligned) -> dict[str, Any]:
    return {
        "reference": aligned.reference_camera,
        "offsets": dict(aligned.offsets),
        "rates": dict(aligned.rates),
        "order": dict(aligned.body_order),
        "residuals": dict(aligned.residuals),
        "rotations": {c: np.asarray(r) for c, r in aligned.rotations.items()},
        "coords": aligned.coords,
    }


SPLIT_STAGES = (
    "integer search",
    "sub-frame refinement",
    "final refit",
    "rest of align_views",
    "second resample + pre-normalise",
    "naive baseline",
)


def time_split(align: Callable, loaded: Sequence[Any]) -> dict[str, float]:
    """CPU seconds per stage of aligning ``loaded`` (a second pass, with every stage wrapped in a timer).

    The integer search is :func:`alignment_search.search` minus its last scoring call (the
    sub-frame refinement); *rest of align_views* is the resampling, transform and residuals of the
    chosen candidate; *second resample + pre-normalise* is what ``multiview_frame`` adds for the
    ``body``/``camera`` frames; the naive baseline runs for N-UCLA's report only.
    """
    from skeleton_attention.skeletons import alignment, alignment_search

    acc: dict[str, float] = defaultdict(float)

    def timed(owner: Any, name: str, label: str, last: str | None = None) -> Callable[[], None]:
        """Wrap ``owner.name`` in a timer adding to ``acc[label]`` (and setting ``acc[last]``); returns the undo."""
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.process_time()
            out = original(*args, **kwargs)
            spent = time.process_time() - start
            acc[label] += spent
            if last:
                acc[last] = spent
            if name == "search":  # its last scoring call was the sub-frame refinement
                acc["sub-frame refinement"] += acc.pop("last score", 0.0)
            return out

        setattr(owner, name, wrapper)
        return lambda: setattr(owner, name, original)

    undo = [
        timed(alignment_search.Scorer, "score_many", "scoring", last="last score"),
        timed(alignment, "search", "search"),
        timed(alignment, "final_fit", "final refit"),
        timed(alignment, "align_views", "align_views"),
        timed(alignment, "multiview_frame", "multiview_frame"),
        timed(alignment, "naive_alignment", "naive baseline"),
    ]
    try:
        for views in loaded:
            align(views)
    finally:
        for restore in reversed(undo):
            restore()
    return {
        "integer search": acc["search"] - acc["sub-frame refinement"],
        "sub-frame refinement": acc["sub-frame refinement"],
        "final refit": acc["final refit"],
        "rest of align_views": acc["align_views"] - acc["search"] - acc["final refit"],
        "second resample + pre-normalise": acc["multiview_frame"] - acc["align_views"],
        "naive baseline": acc["naive baseline"],
    }


def format_split(best: Mapping[str, dict]) -> str:
    """Per set and code: CPU ms per recording of every stage of the alignment."""
    head = ("set", "code", *SPLIT_STAGES)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in best[next(iter(best))]:
        for label, result in best.items():
            split, n = result[name].get("split"), result[name]["recordings"]
            if split:
                lines.append(
                    f"| {name} | {label} | " + " | ".join(f"{1e3 * split[s] / n:.1f}" for s in SPLIT_STAGES) + " |"
                )
    return "\n".join(lines)


def previous_settings(params: dict[str, Any]) -> None:
    """The multiview settings as they were before the search settings (in place): the exhaustive search."""
    for kind, keys in PREVIOUS_DEFAULTS.items():
        params[kind]["multiview"] = {k: v for k, v in params[kind]["multiview"].items() if k not in keys}


def worker(code: str, spec_file: Path, out_file: Path) -> None:
    """Time one code on every set (this process imports that code); results pickled to ``out_file``."""
    if code == "unbatched":
        _use_unbatched_scorer()
    if code == "numpy":
        from skeleton_attention.skeletons import rigid_batch

        rigid_batch.USE_COMPILED_FITS = False
    spec = json.loads(spec_file.read_text())
    params = yaml.safe_load(PARAMETERS_FILE.read_text())
    if code not in ("conf", "numpy"):
        previous_settings(params)
    out: dict[str, Any] = {}
    for name, groups in spec["sets"].items():
        kind = "nucla" if name.startswith("nucla") else "ntu"
        load, align = (_nucla_aligner if kind == "nucla" else _ntu_aligner)(params[f"prepare_{kind}"])
        paths = [[Path(p) for p in g] for g in groups]
        align(load(paths[0]))  # warm-up: imports, allocator
        start = time.process_time()
        loaded = [load(g) for g in paths]
        load_s = time.process_time() - start
        start = time.process_time()
        results = [align(views) for views in loaded]
        align_s = time.process_time() - start
        with tempfile.TemporaryDirectory() as tmp:
            _rest_of_preparation(paths[0], params[f"prepare_{kind}"], kind, Path(tmp))  # warm-up
            start = time.process_time()
            _rest_of_preparation([p for g in paths for p in g], params[f"prepare_{kind}"], kind, Path(tmp))
            rest_s = time.process_time() - start
        out[name] = {
            "recordings": len(paths),
            "views": sum(len(g) for g in paths),
            "align_s": align_s,
            "load_s": load_s,
            "rest_s": rest_s,
            "results": [[_summary(a) for a in pair if a is not None] for pair in results],
        }
        if spec.get("split") and code != "baseline":
            out[name]["split"] = time_split(align, loaded)
    out_file.write_bytes(pickle.dumps(out))


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def _mean_residual(summary: Mapping[str, Any], reference: int) -> float:
    """A recording's mean residual over its non-reference views (NaN with one view)."""
    values = [r for c, r in summary["residuals"].items() if c != reference and np.isfinite(r)]
    return float(np.mean(values)) if values else float("nan")


def compare(a: list, b: list) -> tuple[int, float, float, float, float]:
    """``a`` against ``b``: recordings (rigid alignment only) whose offsets/rates/body order differ,
    the mean and the largest change of a recording's mean residual (``a - b``, metres), and over the
    recordings with the same choices the largest rotation and coordinate differences."""
    differing, changes, rotation, coords = 0, [], 0.0, 0.0
    for x, y in zip(a, b, strict=True):
        x, y = x[0], y[0]  # the rigid alignment (N-UCLA's second entry is the naive baseline)
        change = _mean_residual(x, x["reference"]) - _mean_residual(y, y["reference"])
        if np.isfinite(change):
            changes.append(change)
        if x["offsets"] != y["offsets"] or x["rates"] != y["rates"] or x["order"] != y["order"]:
            differing += 1
            continue
        for c in x["residuals"]:
            rotation = max(rotation, float(np.abs(x["rotations"][c] - y["rotations"][c]).max()))
        coords = max(coords, float(np.abs(x["coords"] - y["coords"]).max()))
    mean = float(np.mean(changes)) if changes else 0.0
    worst = float(np.max(changes)) if changes else 0.0
    return differing, mean, worst, rotation, coords


def offset_errors(results: list, truth: Sequence[Mapping[str, float]] | None) -> str:
    """Mean and largest |offset found - true offset| over the views with a known truth ("-" without)."""
    if not truth:
        return "-"
    errors = [abs(r[0]["offsets"][int(c)] - t) for r, true in zip(results, truth, strict=True) for c, t in true.items()]
    return f"{np.mean(errors):.3f} / {np.max(errors):.2f}"


def run(
    sets: Mapping[str, list[list[str]]], codes: Mapping[str, Path | None], rounds: int, split: bool = False
) -> dict[str, dict]:
    """Every code in a fresh process per round, the codes taking turns; the best round counts."""
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"sets": sets, "split": split}))
        for _ in range(rounds):
            for label, src in codes.items():
                out = Path(tmp) / "out.pkl"
                command = [
                    sys.executable,
                    __file__,
                    "--_worker",
                    label.split()[0],
                    "--_spec",
                    str(spec),
                    "--_out",
                    str(out),
                ]
                subprocess.run(command, check=True, env=code_env(src))
                result = pickle.loads(out.read_bytes())
                kept = best.setdefault(label, result)
                for name, r in result.items():
                    for key in ("align_s", "load_s", "rest_s"):
                        kept[name][key] = min(kept[name][key], r[key])
    return best


def format_table(best: Mapping[str, dict], truth: Mapping[str, list] | None = None) -> str:
    """One row per set and code; differences against ``previous`` (``conf`` for ``previous``)."""
    codes = list(best)
    head = "| " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    for name in best[codes[0]]:
        for label in codes:
            r = best[label][name]
            n = r["recordings"]
            other = (
                "conf"
                if label == "numpy"
                else REFERENCE
                if label != REFERENCE and REFERENCE in best
                else next((c for c in codes if c != label), label)
            )
            diff = compare(r["results"], best[other][name]["results"]) if other != label else (0, 0.0, 0.0, 0.0, 0.0)
            speedup = best[REFERENCE if REFERENCE in best else codes[-1]][name]["align_s"] / r["align_s"]
            lines.append(
                f"| {name} | {label} | {n} | {r['views']} | {1e3 * r['align_s'] / n:.1f} | "
                f"{1e3 * r['load_s'] / n:.1f} | {1e3 * r['rest_s'] / n:.1f} | {r['align_s'] / r['rest_s']:.2f} | "
                f"{speedup:.1f} | {diff[0]} | {1e3 * diff[1]:+.2f} | {1e3 * diff[2]:+.1f} | {diff[3]:.1e} | "
                f"{diff[4]:.1e} | {offset_errors(r['results'], (truth or {}).get(name))} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ntu-groups", type=int, default=20, help="synthetic NTU recordings (3 cameras each)")
    parser.add_argument("--nucla-dir", type=Path, default=SHARED_DATA / "nucla_raw")
    parser.add_argument("--nucla-recordings", type=int, default=60, help="first N-UCLA recordings (0: none)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per code; the best counts")
    parser.add_argument("--baseline-ref", default=None, help="a git revision run beside this tree's code")
    parser.add_argument("--no-unbatched", action="store_true", help="leave out the one-at-a-time scorer")
    parser.add_argument("--no-numpy", action="store_true", help="leave out the conf settings with numpy fits")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: 2 NTU and 3 N-UCLA recordings, 1 round")
    parser.add_argument("--split", action="store_true", help="also time every stage of the alignment (a 2nd pass)")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        worker(args._worker, args._spec, args._out)
        return
    if args.tiny:
        args.ntu_groups, args.nucla_recordings, args.rounds = 2, 3, 1
    print(f"{machine_line()}; best of {args.rounds} rounds, CPU time of one process")
    with tempfile.TemporaryDirectory() as tmp, baseline_tree(args.baseline_ref) as baseline_src:
        sets: dict[str, list[list[str]]] = {}
        truth: dict[str, list] = {}
        if args.ntu_groups > 0:
            groups, truth["ntu synthetic"] = ntu_synthetic_files(Path(tmp), args.ntu_groups)
            sets["ntu synthetic"] = [[str(p) for p in g] for g in groups]
        real = ntu_real_files()
        if real and not args.tiny:
            sets["ntu real"] = [[str(p) for p in g] for g in real]
        if args.nucla_recordings > 0 and args.nucla_dir.is_dir():
            sets["nucla"] = [[str(p) for p in g] for g in nucla_files(args.nucla_dir, args.nucla_recordings)]
        codes: dict[str, Path | None] = {"conf": None, REFERENCE: None}
        if not args.no_numpy:
            codes["numpy"] = None
        if not args.no_unbatched:
            codes["unbatched"] = None
        if baseline_src is not None:
            codes[f"baseline {args.baseline_ref}"] = baseline_src
        best = run(sets, codes, args.rounds, split=args.split)
    print()
    print(format_table(best, truth))
    print()
    if args.split:
        print("CPU ms per recording and stage (one pass, each stage timed):")
        print(format_split(best))
        print()
    print(
        f"align speed-up: {REFERENCE}'s alignment time over this code's; differences: against {REFERENCE} "
        f"(conf for {REFERENCE}); residual change: a recording's mean residual, this code minus the other"
    )


if __name__ == "__main__":
    main()
