"""training/metrics.py against hand computations; plots render."""

from __future__ import annotations

import numpy as np
import pytest

from skeleton_attention.training.metrics import (
    classification_summary,
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    predictions,
    scores_frame,
    topk_accuracy,
)
from skeleton_attention.training.plots import plot_attention, plot_confusion_matrix, plot_training_curves

# 6 samples, 4 classes. Rankings (best first):
#   s0 label 0: [0, 1, 2, 3]  -> top1 hit
#   s1 label 1: [0, 1, 3, 2]  -> top1 miss, top2 hit
#   s2 label 2: [3, 0, 1, 2]  -> top3 miss, top4 hit
#   s3 label 2: [2, 3, 0, 1]  -> top1 hit
#   s4 label 3: [1, 2, 3, 0]  -> top3 hit
#   s5 label 0: ties everywhere -> stable order [0, 1, 2, 3] -> top1 hit
SCORES = np.array(
    [
        [4.0, 3.0, 2.0, 1.0],
        [4.0, 3.0, 1.0, 2.0],
        [3.0, 2.0, 1.0, 4.0],
        [2.0, 1.0, 4.0, 3.0],
        [1.0, 4.0, 3.0, 2.0],
        [0.5, 0.5, 0.5, 0.5],
    ]
)
LABELS = np.array([0, 1, 2, 2, 3, 0])


def test_topk_by_hand():
    assert topk_accuracy(SCORES, LABELS, 1) == pytest.approx(3 / 6)
    assert topk_accuracy(SCORES, LABELS, 2) == pytest.approx(4 / 6)
    assert topk_accuracy(SCORES, LABELS, 3) == pytest.approx(5 / 6)
    assert topk_accuracy(SCORES, LABELS, 5) == pytest.approx(1.0)  # k clipped to C
    np.testing.assert_array_equal(predictions(SCORES), [0, 0, 3, 2, 1, 0])


def test_confusion_and_class_accuracies_by_hand():
    cm = confusion_matrix(LABELS, predictions(SCORES), 4)
    expected = np.zeros((4, 4), dtype=np.int64)
    for true, pred in [(0, 0), (1, 0), (2, 3), (2, 2), (3, 1), (0, 0)]:
        expected[true, pred] += 1
    np.testing.assert_array_equal(cm, expected)
    np.testing.assert_allclose(per_class_accuracy(cm), [1.0, 0.0, 0.5, 0.0])
    assert mean_class_accuracy(cm) == pytest.approx(0.375)
    # a class without samples is excluded from the mean, not counted as 0
    cm5 = confusion_matrix(LABELS, predictions(SCORES), 5)
    assert np.isnan(per_class_accuracy(cm5)[4])
    assert mean_class_accuracy(cm5) == pytest.approx(0.375)


def test_summary_and_scores_frame():
    names = ["a", "b", "c", "d"]
    summary = classification_summary(SCORES, LABELS, names)
    assert summary["top1"] == pytest.approx(0.5) and summary["top5"] == pytest.approx(1.0)
    assert summary["per_class"] == {"a": 1.0, "b": 0.0, "c": 0.5, "d": 0.0}
    assert summary["num_samples"] == 6
    frame = scores_frame([f"id{i}" for i in range(6)], LABELS, SCORES)
    assert list(frame.columns) == ["sample_id", "label", "pred", "score_0", "score_1", "score_2", "score_3"]
    np.testing.assert_array_equal(frame["pred"], predictions(SCORES))
    np.testing.assert_allclose(frame[[f"score_{i}" for i in range(4)]].to_numpy(), SCORES)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="labels must lie"):
        topk_accuracy(SCORES, np.array([0, 1, 2, 3, 4, 0]))
    with pytest.raises(ValueError, match="NaN"):
        topk_accuracy(np.full((1, 2), np.nan), np.array([0]))
    with pytest.raises(ValueError, match="class names"):
        classification_summary(SCORES, LABELS, ["a"])
    with pytest.raises(ValueError, match="sample ids"):
        scores_frame(["x"], LABELS, SCORES)


def test_plots_render(tmp_path):
    history = [
        {
            "epoch": e,
            "phase_index": int(e > 2),
            "lr": 0.1 / e,
            "train_loss": 1.0 / e,
            "val_loss": 1.1 / e,
            "train_acc": 0.2 * e,
            "val_acc": [0.3, 0.5, 0.4, 0.45][e - 1],
            "val_top5": 0.9,
        }
        for e in range(1, 5)
    ]
    figures = [
        plot_training_curves(history),
        plot_confusion_matrix(confusion_matrix(LABELS, predictions(SCORES), 4), ["a", "b", "c", "d"]),
        plot_attention(
            [
                {
                    "title": "s0",
                    "length": 5,
                    "attention": {"spatial": np.random.rand(8, 6), "temporal": np.random.rand(8)},
                }
            ],
            joint_names=["j0", "j1", "j2"],
        ),
    ]
    for i, fig in enumerate(figures):
        fig.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").stat().st_size > 1000
    # the spatial map is cut at the valid length and labelled per body
    ax = figures[2].axes[0]
    assert ax.images[0].get_array().shape == (6, 5)
    assert [t.get_text() for t in ax.get_yticklabels()][:4] == ["b1:j0", "b1:j1", "b1:j2", "b2:j0"]
