"""The comparison report on a small results tree written in the training pipelines' format.

The tree is built with the project's own metric functions (``classification_summary`` as
``evaluate_model`` writes ``test_metrics.json``, ``aggregate_folds`` as the cross-validation driver
writes ``cv/summary.json``) for two model families: a plain run, two seeds of one configuration, a
5-fold cross-validation, an unfinished one (two folds) and a run in the embedded environment. The
report's numbers are compared with those files; the papers' figures must appear marked as such.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from skeleton_attention.experiments.cross_validation import aggregate_folds
from skeleton_attention.mlflow_hooks import experiment_name
from skeleton_attention.reporting.leaderboard import paper_figures
from skeleton_attention.reporting.report import build_report
from skeleton_attention.reporting.results import ResultsTree, collect_results
from skeleton_attention.training.metrics import classification_summary

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["approach", "depart", "kick", "punch", "push", "hug", "shake", "exchange"]


def _settings(**extra) -> dict:
    settings = yaml.safe_load((REPO / "conf/base/parameters_report.yml").read_text())["report"]
    return {**settings, **extra}


def _png(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=50)
    plt.close(fig)


def _write_run(directory: Path, protocol: str, seed: int, accuracy: float, extra: dict | None = None) -> dict:
    """test_metrics.json (as evaluate_model writes it), history.csv and the two plots of a run."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), 6)
    scores = rng.normal(size=(len(labels), len(CLASSES)))
    right = rng.random(len(labels)) < accuracy
    scores[right, labels[right]] += 10  # these samples are predicted correctly
    metrics = classification_summary(scores, labels, CLASSES)
    metrics.update({"loss": 1.0, "ce": 1.0, "protocol": protocol})
    metrics.update(extra or {})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test_metrics.json").write_text(json.dumps(metrics))
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_time_s": [2.0, 3.0, 5.0],
            "val_time_s": [0.5, 0.5, 1.0],
            "train_samples_per_s": [100.0, 120.0, 110.0],
        }
    )
    history.to_csv(directory / "history.csv", index=False)
    _png(directory / "confusion_matrix.png")
    _png(directory / "curves.png")
    return metrics


def _identity(model: str, variant: str, seed: int, replicate: str) -> dict:
    return {
        "model": model,
        "variant": variant,
        "streams": ["joint"],
        "seed": seed,
        "num_parameters": 1234,
        "replicate_fingerprint": replicate,
    }


@pytest.fixture
def results_tree(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "data" / "08_reporting"
    expected = {}
    sbu = root / "train_sta_lstm" / "base" / "sbu" / "sbu_fold"
    folds = {k: _write_run(sbu / f"fold{k}", "sbu_fold", k, 0.5 + 0.08 * k) for k in range(1, 6)}
    summary = aggregate_folds(folds)
    summary.update(protocol="sbu_fold", num_folds_total=5)
    (sbu / "cv").mkdir()
    (sbu / "cv" / "summary.json").write_text(json.dumps(summary))
    _png(sbu / "cv" / "confusion_matrix.png")
    expected["cv"] = summary
    # an unfinished cross-validation of a named ablation: two folds, no summary
    expected["partial"] = [_write_run(sbu / "swap" / f"fold{k}", "sbu_fold", 10 + k, 0.6) for k in (1, 2)]
    ntu = root / "train_other_family" / "base" / "ntu" / "ntu60_xsub"
    expected["plain"] = _write_run(ntu, "ntu60_xsub", 3, 0.7, _identity("other", "v2", 0, "aaa"))
    expected["seeds"] = [
        _write_run(ntu / f"seed{s}", "ntu60_xsub", 20 + s, 0.8, _identity("other", "v1", s, "bbb")) for s in (0, 1, 2)
    ]
    expected["embedded"] = _write_run(root / "train_sta_lstm" / "embedded" / "ntu" / "ntu60_xsub", "ntu60_xsub", 5, 0.9)
    return root, expected


def test_report_numbers_match_the_files_they_were_read_from(results_tree, tmp_path):
    root, expected = results_tree
    report = build_report(ResultsTree(root), _settings(report_dir=str(root / "report")))
    assert not report.problems
    table = report.leaderboard
    ours = table[table["source"] == "ours"]
    cv = ours[(ours["protocol"] == "sbu_fold") & (ours["kind"] == "cv")].iloc[0]
    assert cv["top1"] == pytest.approx(expected["cv"]["top1_mean"])
    assert cv["top1_std"] == pytest.approx(expected["cv"]["top1_std"])
    assert cv["top5"] == pytest.approx(expected["cv"]["top5_mean"]) and cv["repeats"] == 5
    assert cv["train_time_s"] == pytest.approx(12.0) and cv["samples_per_s"] == pytest.approx(110.0)
    partial = ours[ours["kind"] == "folds"].iloc[0]
    assert partial["run_name"] == "swap" and partial["repeats"] == 2
    assert partial["top1"] == pytest.approx(np.mean([m["top1"] for m in expected["partial"]]))
    plain = ours[(ours["variant"] == "v2")].iloc[0]
    assert plain["top1"] == pytest.approx(expected["plain"]["top1"]) and plain["kind"] == "run"
    assert plain["family"] == "other_family" and plain["num_parameters"] == 1234
    seeds = ours[ours["kind"] == "seeds"].iloc[0]
    values = [m["top1"] for m in expected["seeds"]]
    assert seeds["repeats"] == 3 and seeds["variant"] == "v1"
    assert seeds["top1"] == pytest.approx(np.mean(values)) and seeds["top1_std"] == pytest.approx(
        np.std(values, ddof=1)
    )
    # the embedded environment (synthetic data) is its own leaderboard, without the papers' figures
    embedded = table[table["tag"] == "embedded"]
    assert list(embedded["source"]) == ["ours"]
    assert embedded.iloc[0]["top1"] == pytest.approx(expected["embedded"]["top1"])
    # the Markdown shows the same numbers, in percent
    assert f"{100 * expected['cv']['top1_mean']:.2f} ± {100 * expected['cv']['top1_std']:.2f}" in report.markdown
    assert f"{100 * expected['plain']['top1']:.2f}" in report.markdown
    # per-class heat map data: the pooled confusion matrix's diagonal over its rows
    board = next(b for b in report.boards if b.protocol == "sbu_fold")
    cv_row = next(r for r in board.runs if r.kind == "cv")
    matrix = np.asarray(expected["cv"]["confusion_matrix"])
    np.testing.assert_allclose(cv_row.per_class, np.diag(matrix) / matrix.sum(1))
    assert set(report.accuracy_figures) == set(report.per_class_figures) == {b.key for b in report.boards}


def test_papers_figures_appear_marked_with_their_source(results_tree):
    root, _ = results_tree
    report = build_report(ResultsTree(root), _settings())
    table = report.leaderboard
    papers = table[(table["source"] == "paper") & (table["protocol"] == "sbu_fold")]
    sta = papers[papers["model"] == "STA-LSTM"].iloc[0]
    assert sta["top1"] == pytest.approx(0.9151) and "Table 1" in sta["metrics_file"]
    ntu = table[(table["source"] == "paper") & (table["protocol"] == "ntu60_xsub")]
    assert {"STA-LSTM", "Deep LSTM + ST-AM + VAM", "TS-SAN", "DSTA-Net", "MANs-9"} <= set(ntu["model"])
    assert (
        "| *paper: Song et al. 2017 (STA-LSTM), Table 1* | *STA-LSTM (paper's figure)* | *91.51* |" in report.markdown
    )
    assert '<tr class="paper"><td>paper: Song et al. 2017 (STA-LSTM), Table 1</td>' in report.html
    # protocols without a run of ours still list their papers' figures, apart
    assert "## Papers' figures without a run of ours" in report.markdown
    assert "| kinetics | TS-SAN | 35.10 |" in report.markdown


def test_html_is_self_contained_with_every_figure_inline(results_tree):
    root, _ = results_tree
    report = build_report(ResultsTree(root), _settings())
    sources = re.findall(r'<img [^>]*src="([^"]+)"', report.html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in sources)
    # the report's own figures (one accuracy + one heat map per leaderboard) and the runs' plots
    assert len(sources) >= 2 * len(report.boards) + 5
    assert not re.search(r'(src|href)="(?!data:|#)', report.html)  # no link to a file or a site


def test_empty_results_tree_gives_a_clear_message(tmp_path):
    for root in (tmp_path / "missing", tmp_path):
        report = build_report(ResultsTree(root), _settings())
        assert "No finished runs were found" in report.markdown and "No finished runs were found" in report.html
        assert report.boards == [] and report.counts()["runs"] == 0
        assert list(report.leaderboard.columns)[:3] == ["tag", "dataset", "protocol"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "is not valid JSON"),
        ('{"top5": 0.5}', "lacks the key(s) ['top1']"),
        ('{"top1": 87.5}', "is not an accuracy in [0, 1]"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_a_malformed_metrics_file_is_reported_with_its_path(results_tree, content, reason):
    root, _ = results_tree
    bad = root / "train_sta_lstm" / "base" / "msr" / "msr_xsub" / "test_metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    results, problems = collect_results(ResultsTree(root))
    assert [(p.path, reason in p.reason) for p in problems] == [(bad, True)]
    assert not any(r.protocol == "msr_xsub" for r in results)  # left out, not guessed
    report = build_report(ResultsTree(root), _settings())
    assert f"`{bad}`" in report.markdown and reason.replace("'", "&#x27;") in report.html
    assert report.counts()["unreadable_files"] == 1


def test_malformed_paper_figures_are_rejected():
    with pytest.raises(ValueError, match=r"report.papers\[0\].*missing \['table'\]"):
        paper_figures([{"method": "x", "paper": "p", "protocol": "sbu_fold", "top1": 90}])
    with pytest.raises(ValueError, match="not a percentage"):
        paper_figures([{"method": "x", "paper": "p", "table": "T1", "protocol": "sbu_fold", "top1": 0.9151}])


def test_experiment_names_per_data_set_and_protocol():
    config = {"data": {"dataset": "sbu", "protocol": "sbu_fold", "fold": 2}}
    assert experiment_name("skeleton-attention", config) == "skeleton-attention/sbu/sbu_fold"
    assert experiment_name("skeleton-attention", report=True) == "skeleton-attention/report"
    assert experiment_name("skeleton-attention", {"data": {}}) == "skeleton-attention"


@pytest.mark.slow
def test_report_pipeline_writes_its_files_and_logs_to_the_report_experiment(results_tree, tmp_path, monkeypatch):
    """``kedro run --pipelines=report`` in a KedroSession: the catalog's files, one MLflow run."""
    import mlflow
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root, expected = results_tree
    project = tmp_path
    (project / "conf" / "local").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()
    shutil.copytree(REPO / "conf" / "base", project / "conf" / "base")
    shutil.copy(REPO / "conf" / "logging.yml", project / "conf" / "logging.yml")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        session.run(pipeline_names=["report"])
    # kedro-mlflow's ended run is off the active-run stack: the next run in this process starts afresh
    assert mlflow.active_run() is None
    out = root / "report"
    markdown = (out / "report.md").read_text()
    assert f"{100 * expected['plain']['top1']:.2f}" in markdown
    assert (out / "report.html").stat().st_size > 20_000
    keys = {"base_ntu_ntu60_xsub", "base_sbu_sbu_fold", "embedded_ntu_ntu60_xsub"}
    assert {p.stem for p in (out / "accuracy").glob("*.png")} == keys
    assert {p.stem for p in (out / "per_class").glob("*.png")} == keys
    # the Markdown's links to the runs' plots resolve from where it is written
    links = re.findall(r"\]\((\.\./[^)]+\.png)\)", markdown)
    assert links and all((out / link).resolve().is_file() for link in links)
    csv = pd.read_csv(out / "leaderboard.csv")
    assert len(csv[csv["source"] == "ours"]) == 5

    mlflow.set_tracking_uri(tracking)
    runs = mlflow.search_runs(experiment_names=["skeleton-attention/report"], output_format="list")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["report.runs"] == 5
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "report")}
    assert artifacts == {"report/report.md", "report/report.html", "report/leaderboard.csv"}


def test_a_malformed_cross_validation_summary_is_reported_with_its_path(results_tree):
    root, _ = results_tree
    bad = root / "train_sta_lstm" / "base" / "sbu" / "sbu_fold" / "cv" / "summary.json"
    bad.write_text(json.dumps({"folds": [1, 2, 3, 4, 5], "top1_mean": None}))
    results, problems = collect_results(ResultsTree(root))
    assert [p.path for p in problems] == [bad] and "top1_mean = None" in problems[0].reason
    assert not any(r.kind == "cv" for r in results)
