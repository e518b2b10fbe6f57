"""The benchmark scripts stay runnable: each runs once at toy sizes and prints its comparison table.

Only that they run and compare against their baseline is checked here; the speed numbers themselves
come from full runs recorded in docs/results.md (timing assertions do not belong in unit tests).
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


@pytest.mark.slow
def test_prepare_benchmark_runs_and_compares_against_the_line_by_line_reader():
    out = _run(
        "benchmarks/bench_prepare.py", "--files", "6", "--rounds", "1", "--full-sizes", "12",
        "--methods", "baseline_plain", "read_ntu_skeleton_fast", "end_to_end",
    )
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"baseline_plain", "read_ntu_skeleton_fast", "end_to_end"} <= set(rows)
    assert "x vs baseline_plain" in out and "full preparation" in out


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
