"""The ``skeleton-attention`` command line: help, one-line errors, the run summary, and the
Makefile line that prints it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from skeleton_attention.commands import main, summary_line
from tests.kedro_helpers import REPO_ROOT

METRICS = {
    "best_epoch": 51,
    "best_val_loss": 0.94,
    "epochs_run": 53,
    "num_test_samples": 120,
    "test_loss": 0.89,
    "test_mean_class_acc": 0.9083,
    "test_top1": 0.9083333333333333,
    "test_top5": 1.0,
}


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The command as a user runs it, with this checkout's package first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "skeleton_attention.commands", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO_ROOT,
    )


@pytest.mark.parametrize("command", ["check-views", "summary"])
def test_help_of_every_subcommand(command):
    result = _cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: skeleton-attention {command}")
    expected = {"check-views": ["ntu_dir", "--reference", "--max-offset"], "summary": ["metrics", "--details"]}
    assert all(word in result.stdout for word in expected[command])
    top = _cli("--help")
    assert top.returncode == 0 and "check-views" in top.stdout and "summary" in top.stdout


def test_check_views_on_a_missing_path_is_one_line_not_a_traceback(tmp_path):
    missing = tmp_path / "nturgb+d_skeletons"
    result = _cli("check-views", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip() == f"skeleton-attention check-views: error: not a directory: {missing}"
    assert result.stdout == ""


def test_check_views_on_a_file_or_a_malformed_recording_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "list.txt"
    a_file.write_text("S001C001P001R001A001\n")
    assert main(["check-views", str(a_file)]) == 2
    assert capsys.readouterr().err == f"skeleton-attention check-views: error: not a directory: {a_file}\n"
    for camera in (1, 2, 3):  # one complete view group whose files are not NTU files
        (tmp_path / f"S001C00{camera}P001R001A001.skeleton").write_text("garbage\n")
    assert main(["check-views", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "S001C001P001R001A001.skeleton, line 1: non_numeric" in err


def test_summary_line_of_a_metrics_file(tmp_path, capsys):
    path = tmp_path / "train_sta_lstm.json"
    path.write_text(json.dumps(METRICS))
    assert main(["summary", str(path), "--details", "data/08_reporting/train_sta_lstm/"]) == 0
    assert capsys.readouterr().out == (
        f"test top-1 0.9083 (top-5 1.0000) on 120 samples, best epoch 51/53: {path}, "
        "plots in data/08_reporting/train_sta_lstm/\n"
    )
    assert summary_line({"test_top1": 1, "test_top5": 1, "num_test_samples": 3}, "m.json") == (
        "test top-1 1.0000 (top-5 1.0000) on 3 samples: m.json"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no metrics file at"),
        ("{not json", "cannot read"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"test_top1": 0.5}), "needs test_top1, test_top5, num_test_samples"),
        (json.dumps({**METRICS, "test_top1": "NaN"}), "non-finite accuracy"),
    ],
)
def test_summary_of_a_missing_or_bad_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "metrics.json"
    if content is not None:
        path.write_text(content)
    assert main(["summary", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("skeleton-attention summary: error: ") and captured.err.count("\n") == 1
    assert message in captured.err


def test_make_run_ends_with_the_summary_of_the_metrics_file_the_pipeline_writes():
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\nrun: install\n")[1].split("\n\n")[0].splitlines()
    assert recipe[0].strip() == "$(BIN)/kedro run --env=embedded"
    assert recipe[-1].strip() == "@$(BIN)/skeleton-attention summary $(RUN_METRICS) --details $(RUN_REPORTS)"
    metrics = re.search(r"^RUN_METRICS \?= (\S+)$", makefile, re.M).group(1)
    reports = re.search(r"^RUN_REPORTS \?= (\S+)$", makefile, re.M).group(1)
    # the files `kedro run --env=embedded` writes (the catalog resolved as Kedro resolves it)
    from kedro.io import DataCatalog

    from tests.kedro_helpers import load_config

    catalog = DataCatalog.from_config(load_config(env="embedded")[0])
    assert metrics == str(catalog.get("train_sta_lstm.dvc_metrics")._describe()["filepath"])
    plots = catalog.get("train_sta_lstm.curves_plot")._describe()["filepath"]
    assert Path(plots).parent == Path(reports)
