"""Thin nodes writing the synthetic raw data sets through RawFilesDataset (atomic directory swap)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from skeleton_attention.skeletons.synthetic import SYNTHETIC_ACTIONS, write_synthetic_kinetics, write_synthetic_ntu

MISSING_LIST_HEADER = (
    "0 of the captured samples in the synthetic data set have missing or incomplete skeleton data.\n"
    "This file mirrors the layout of the official NTU lists (3 header lines, then sample names).\n\n"
)


def synthetic_ntu_writer(params: Mapping[str, Any]) -> Callable[[Path], Any]:
    """A writer that generates the NTU-format set (and an empty official-style missing list)."""

    def write(directory: Path) -> None:
        write_synthetic_ntu(directory, **dict(params))
        (directory / "missing_skeletons.txt").write_text(MISSING_LIST_HEADER)
        # the synthetic classes reuse NTU's file format, not NTU's class names
        names = {str(i + 1): action.name for i, action in enumerate(SYNTHETIC_ACTIONS)}
        (directory / "action_names.json").write_text(json.dumps(names, indent=1))

    return write


def synthetic_kinetics_writer(params: Mapping[str, Any]) -> Callable[[Path], Any]:
    def write(directory: Path) -> None:
        write_synthetic_kinetics(directory, **dict(params))

    return write
