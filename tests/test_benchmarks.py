"""The benchmark scripts stay runnable: each runs once at toy sizes and prints its comparison table.

Only that they run and compare against their baseline is checked here; the speed numbers themselves
come from full runs recorded in docs/results.md and docs/performance.md (timing assertions do not belong
in unit tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.kedro_helpers import REPO_ROOT


def _run(*args: str) -> str:
    # this tree's package, not whichever checkout the environment installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True, env=env
    )
    return result.stdout


def _table(out: str, first_column: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the printed Markdown table whose first column is ``first_column``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:  # after the |---| line
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return header, rows


@pytest.mark.slow
def test_prepare_benchmark_tiny_prints_both_tables_and_the_extrapolation(shared_data):
    out = _run("benchmarks/bench_prepare.py", "--tiny", "--ntu-dir", str(shared_data / "ntu_raw"),
               "--methods", "baseline_plain", "read_ntu_skeleton_fast", "end_to_end")
    header, rows = _table(out, "method")
    assert header[-3:] == ["rate / parser", "peak RSS MiB", "RSS after imports MiB"] and "x vs baseline_plain" in header
    assert [r[0] for r in rows] == ["baseline_plain", "read_ntu_skeleton_fast", "end_to_end"]
    assert all(len(r) == len(header) for r in rows)
    header, rows = _table(out, "code")
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_prepare_full import FULL_COLUMNS

    assert tuple(header) == FULL_COLUMNS
    assert [(r[0], r[1]) for r in rows] == [("new", "12"), ("new", "24")]
    assert all(float(r[header.index("files/s per core")]) > 0 for r in rows)
    assert "113,945 files:" in out and "measured slope" in out


def test_alignment_benchmark_tiny_compares_settings_and_plain_scoring(shared_data):
    out = _run("benchmarks/bench_alignment.py", "--tiny", "--split", "--nucla-dir", str(shared_data / "nucla_raw"))
    header, rows = _table(out, "set")
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_alignment import COLUMNS, SPLIT_STAGES

    # the time per stage: every code, every set; the search stages cost something, no stage is negative
    split_header, split_rows = _table(out[out.index("CPU ms per recording and stage"):], "set")
    assert tuple(split_header) == ("set", "code", *SPLIT_STAGES)
    assert [(r[0], r[1]) for r in split_rows] == [(r[0], r[1]) for r in rows]
    assert all(float(r[2]) > 0 and min(float(v) for v in r[2:]) >= -0.05 for r in split_rows)

    assert tuple(header) == COLUMNS
    assert [(r[0], r[1]) for r in rows] == [
        (s, code) for s in ("ntu synthetic", "nucla") for code in ("conf", "previous", "unbatched")
    ]
    col = {name: [r[header.index(name)] for r in rows] for name in header}
    for k in (2, 5):  # the one-at-a-time scorer picks what the batched search picks, to 1e-6
        assert col["choices differing"][k] == "0"
        assert abs(float(col["mean change residual mm"][k])) < 1e-3 and float(col["max diff coords"][k]) < 1e-6
    assert all(float(v) > 0 for v in col["align ms/rec"])
    # the synthetic recordings' true offsets are known: the error is reported for every code
    assert all(float(v.split(" / ")[1]) <= 0.5 for v in col["offset error mean / max (truth)"][:3])
    assert col["offset error mean / max (truth)"][3:] == ["-"] * 3


@pytest.mark.slow
def test_train_benchmark_runs_both_paths():
    out = _run("benchmarks/bench_train.py", "--devices", "cpu", "--samples", "16", "--frames", "20",
               "--batch", "8", "--epochs", "1", "--warmup", "0")
    rows = [line.split() for line in out.splitlines() if line.startswith("cpu ")]
    assert [row[1] for row in rows] == ["plain", "trainer"]
    assert "loader %" in out and 0.0 < float(rows[0][-1]) < 100.0  # the plain loop times its loader


def test_provenance_benchmark_measures_both_fingerprints(shared_data):
    out = _run("benchmarks/bench_provenance.py", "--raw", str(shared_data / "ntu_raw"), "--pattern", "*.skeleton")
    assert "stat" in out and "sha256" in out and "files" in out


@pytest.mark.slow
def test_train_benchmark_takes_any_family_including_multi_view():
    sizes = {"hidden_size": 16, "attention_hidden_size": 8, "spatial_fc_size": 8, "bilstm_size": 8, "view_fc_size": 8}
    kwargs = json.dumps(sizes)
    out = _run("benchmarks/bench_train.py", "--devices", "cpu", "--samples", "8", "--frames", "12",
               "--batch", "4", "--epochs", "1", "--warmup", "0", "--model", "view_attention",
               "--model-kwargs", kwargs, "--views", "3", "--optimizer", "sgd", "--lr", "0.01")
    assert out.splitlines()[0].startswith("view_attention {")
    paths = [line.split()[1] for line in out.splitlines() if line.startswith("cpu ")]
    assert paths == ["plain", "trainer"]


def test_bench_parquet_compares_every_setting_on_real_files(shared_data):
    out = _run(
        "benchmarks/bench_parquet.py", "--ntu-dir", str(shared_data / "ntu_raw"), "--files", "2", "--rounds", "1"
    )
    for first in ("intermediate table", "feature table"):
        assert f"### {first}: 2 samples" in out
    header, rows = _table(out, "settings")
    assert header[1:4] == ["write ms/sample", "read ms/sample", "KB/sample"]
    assert [r[0] for r in rows][:2] == ["default (zstd, BYTE_STREAM_SPLIT)", "byte_stream_split=False"]
    sizes = {r[0]: float(r[3]) for r in rows}
    # BYTE_STREAM_SPLIT makes zstd smaller; uncompressed holds every float byte
    assert sizes["default (zstd, BYTE_STREAM_SPLIT)"] < sizes["byte_stream_split=False"] < sizes["compression=none"]
