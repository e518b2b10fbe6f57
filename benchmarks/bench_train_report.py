"""The table of benchmarks/bench_train.py: one row per (model, device, path), with the correctness check.

Correctness: each path's mean training loss over the first epoch (the same steps from the same initial
weights, on the same batches, with the same dropout draws) against the ``eager`` row of the same model
and device, as a relative difference, within :data:`TOLERANCE`.
"""

from __future__ import annotations

import math

#: relative difference of the first epoch's mean training loss to eager's that still counts as the
#: same training: float32 paths differ only by kernel choice and summation order; bf16 keeps 8 bits
#: of mantissa (about 0.4 % per rounding), which the loss inherits
TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2}
COLUMNS = (
    "model",
    "parameters",
    "device",
    "path",
    "train samples/s",
    "inference samples/s",
    "loader %",
    "peak MB",
    "warm-up s",
    "loss",
    "vs eager",
    "correct",
)


def check_correctness(rows: list[dict]) -> None:
    """Each row's first-epoch loss against the eager row of the same model and device (in place):
    ``rel_diff`` and ``correct`` (True / False; None for eager itself or without an eager row)."""
    eager = {(r["family"], r["device"]): r["loss"] for r in rows if r["path"] == "eager" and "loss" in r}
    for row in rows:
        reference = eager.get((row["family"], row["device"]))
        row["tolerance"] = TOLERANCE["bf16" if row["path"] == "amp" else "fp32"]
        if "loss" not in row or reference is None or row["path"] == "eager":
            row["rel_diff"], row["correct"] = None, None
            continue
        row["rel_diff"] = abs(row["loss"] - reference) / max(abs(reference), 1e-12)
        row["correct"] = bool(math.isfinite(row["loss"]) and row["rel_diff"] <= row["tolerance"])


def _cells(row: dict, labels: dict[str, str]) -> list[str]:
    label = labels.get(row["family"], row["family"])
    if "error" in row:
        return [label, "", row["device"], row["path"], f"failed: {row['error']}", *[""] * (len(COLUMNS) - 5)]
    if "unsupported" in row:
        return [label, "", row["device"], row["path"], f"unsupported: {row['unsupported']}", *[""] * (len(COLUMNS) - 5)]
    if row["path"] == "eager":
        verdict, diff = "reference", ""
    elif row["correct"] is None:
        verdict, diff = "n/a (no eager row)", ""
    else:
        verdict = f"{'yes' if row['correct'] else 'NO'} (tol {row['tolerance']:g})"
        diff = f"{row['rel_diff']:.1e}"
    return [
        label,
        f"{row['parameters']:,}",
        row["device"],
        row["path"],
        f"{row['train_samples_per_s']:.1f}",
        f"{row['infer_samples_per_s']:.1f}",
        f"{100 * row['loader_share']:.1f}",
        f"{row['peak_memory_mb']:.0f}",
        f"{row['warmup_s']:.1f}",
        f"{row['loss']:.4f}",
        diff,
        verdict,
    ]


def print_table(rows: list[dict], labels: dict[str, str]) -> None:
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("---" for _ in COLUMNS) + "|")
    for row in rows:
        print("| " + " | ".join(_cells(row, labels)) + " |")
