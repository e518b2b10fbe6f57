"""The benchmark scripts stay runnable: each runs once at toy sizes and prints its comparison table.

Only that they run and compare against their baseline is checked here; the speed numbers themselves
come from full runs recorded in docs/results.md and docs/performance.md (timing assertions do not belong
in unit tests).
"""

from __future__ import annotations

import json
import math
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
    for line in lines[start + 2 :]:  # after the |---| line
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return header, rows


@pytest.mark.slow
def test_prepare_benchmark_tiny_prints_both_tables_and_the_extrapolation(shared_data):
    out = _run(
        "benchmarks/bench_prepare.py",
        "--tiny",
        "--ntu-dir",
        str(shared_data / "ntu_raw"),
        "--methods",
        "baseline_plain",
        "read_ntu_skeleton_fast",
        "end_to_end",
    )
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
    split_header, split_rows = _table(out[out.index("CPU ms per recording and stage") :], "set")
    assert tuple(split_header) == ("set", "code", *SPLIT_STAGES)
    assert [(r[0], r[1]) for r in split_rows] == [(r[0], r[1]) for r in rows]
    assert all(float(r[2]) > 0 and min(float(v) for v in r[2:]) >= -0.05 for r in split_rows)

    assert tuple(header) == COLUMNS
    assert [(r[0], r[1]) for r in rows] == [
        (s, code) for s in ("ntu synthetic", "nucla") for code in ("conf", "previous", "numpy", "unbatched")
    ]
    col = {name: [r[header.index(name)] for r in rows] for name in header}
    # the one-at-a-time scorer picks what the batched search picks (against previous), and the
    # numpy fits what the compiled ones pick (against conf), to 1e-6
    for k in (2, 3, 6, 7):
        assert col["choices differing"][k] == "0"
        assert abs(float(col["mean change residual mm"][k])) < 1e-3 and float(col["max diff coords"][k]) < 1e-6
    assert all(float(v) > 0 for v in col["align ms/rec"])
    # the synthetic recordings' true offsets are known: the error is reported for every code
    assert all(float(v.split(" / ")[1]) <= 0.5 for v in col["offset error mean / max (truth)"][:4])
    assert col["offset error mean / max (truth)"][4:] == ["-"] * 4


def test_provenance_benchmark_measures_both_fingerprints(shared_data):
    out = _run("benchmarks/bench_provenance.py", "--raw", str(shared_data / "ntu_raw"), "--pattern", "*.skeleton")
    assert "stat" in out and "sha256" in out and "files" in out


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


# --- benchmarks/bench_train.py: every family, eager / amp / compile / plain, the correctness column ---


def _bench_train(*args: str) -> tuple[list[str], list[dict[str, str]]]:
    out = _run(
        "benchmarks/bench_train.py",
        "--devices",
        "cpu",
        "--tiny",
        "--samples",
        "8",
        "--batch",
        "4",
        "--frames",
        "12",
        "--epochs",
        "1",
        "--warmup",
        "1",
        *args,
    )
    assert "CPU only (no CUDA device here)" in out and "load average" in out
    header, rows = _table(out, "model")
    return header, [dict(zip(header, row, strict=True)) for row in rows]


def _check_row(row: dict[str, str]) -> None:
    if row["train samples/s"].startswith("unsupported:"):
        # bf16 autocast of an LSTM on a CPU without native bf16 (oneDNN has no kernel there)
        import torch

        assert row["path"] == "amp" and row["device"] == "cpu", row
        assert not torch.ops.mkldnn._is_mkldnn_bf16_supported(), row
        return
    for column in ("train samples/s", "inference samples/s", "peak MB", "loss"):
        value = float(row[column])
        assert math.isfinite(value) and value > 0, (column, row)
    assert 0.0 < float(row["loader %"]) < 100.0, row  # the loader's next() is timed on every path
    assert float(row["warm-up s"]) >= 0.0
    if row["path"] == "eager":
        assert row["correct"] == "reference" and row["vs eager"] == ""
    else:  # within the stated tolerance of eager's first-epoch loss
        tolerance = 3e-2 if row["path"] == "amp" else 1e-3
        assert row["correct"] == f"yes (tol {tolerance:g})", row
        assert float(row["vs eager"]) <= tolerance


@pytest.mark.slow
def test_train_benchmark_trains_every_family_through_the_trainer():
    # eager only: each worker is a fresh interpreter (~3 s CPU), so every family x every path would
    # cost ~100 s here; the paths are checked on one family below and on all in docs/training.md "Speed"
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_families import FAMILIES
    from bench_train_report import COLUMNS

    header, rows = _bench_train("--models", "all", "--paths", "eager")
    assert tuple(header) == COLUMNS
    labels = [f"{family['label']} (tiny)" for family in FAMILIES.values()]
    assert [(r["model"], r["path"]) for r in rows] == [(label, "eager") for label in labels]
    for row in rows:
        _check_row(row)


@pytest.mark.slow
def test_train_benchmark_every_path_trains_like_eager():
    _, rows = _bench_train("--models", "sta_lstm", "--paths", "trainer", "trainer_bf16", "compile", "plain")
    assert [r["path"] for r in rows] == ["eager", "amp", "compile", "plain"]  # the old path names still work
    for row in rows:
        _check_row(row)


def test_bench_families_read_the_paper_settings_from_conf():
    import yaml

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_families import FAMILIES, resolve_family

    resolved = {name: resolve_family(name) for name in FAMILIES}
    for name in FAMILIES:  # the fallback resolver (GPU machines have no OmegaConf) agrees
        assert resolve_family(name, use_omegaconf=False) == resolved[name]
    sta = yaml.safe_load((REPO_ROOT / "conf/base/parameters_train_sta_lstm.yml").read_text())["train_sta_lstm"]
    assert resolved["sta_lstm"]["model_kwargs"] == {**sta["model"]["kwargs"], "variant": sta["model"]["variant"]}
    assert resolved["sta_lstm"]["batch"] == sta["data"]["batch_size"]
    assert resolved["sta_lstm"]["optimizer"] == sta["training"]["optimizer"]
    # each family's input contract: fixed T from its sampling, streams, views, compile options
    frames = {name: spec["fixed_frames"] for name, spec in resolved.items()}
    assert frames == {
        "sta_lstm": None,
        "view_attention": None,
        "san_v2": 32,
        "ts_san": 96,
        "dsta_net": 128,
        "mans9": 50,
    }
    assert resolved["san_v2"]["streams"] == ["joint", "motion_fast"]
    assert resolved["view_attention"]["model"] == "view_attention"  # the multi-view network
    assert resolved["dsta_net"]["compile"] == {"dynamic": False}
    assert resolved["mans9"]["model_kwargs"]["stcm"] == "mans9"
    tiny = resolve_family("dsta_net", tiny=True)
    assert tiny["model_kwargs"]["channels"] == [8, 16] and tiny["fixed_frames"] == 128


def test_train_benchmark_correctness_flags_a_loss_outside_the_tolerance():
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_train_report import check_correctness

    rows = [
        {"family": "f", "device": "cpu", "path": "eager", "loss": 2.0},
        {"family": "f", "device": "cpu", "path": "amp", "loss": 2.02},  # 1 %: bf16 rounding
        {"family": "f", "device": "cpu", "path": "compile", "loss": 2.01},  # 0.5 %: not fp32 rounding
        {"family": "f", "device": "cpu", "path": "plain", "loss": float("nan")},
        {"family": "g", "device": "cpu", "path": "compile", "loss": 2.0},  # no eager row to compare with
    ]
    check_correctness(rows)
    assert [r["correct"] for r in rows] == [None, True, False, False, None]
    assert rows[2]["rel_diff"] == pytest.approx(0.005)


@pytest.mark.slow
def test_device_check_dry_run_parses_its_commands_and_runs_the_torchrun_smoke(tmp_path):
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("TORCHRUN", None)  # torchrun as `python -m torch.distributed.run`
    done = subprocess.run(
        ["bash", "benchmarks/device_check.sh", "--dry-run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "env.txt").read_text()
    assert log.count("   exit 0") == 3
    workers = [json.loads(line) for line in (tmp_path / "bench_train.md").read_text().splitlines()]
    assert {(w["family"], w["path"]) for w in workers} == {
        (f, p)
        for f in ("sta_lstm", "view_attention", "san_v2", "ts_san", "dsta_net", "mans9")
        for p in ("eager", "amp", "compile")
    }
    assert all(w["device"] == "cuda" and w["clock"] == "wall" for w in workers)
    smoke = json.loads((tmp_path / "ddp_smoke.txt").read_text().strip().splitlines()[-1])
    assert smoke["ok"] and smoke["ddp_vs_plain_max_abs_diff"] <= 1e-5
