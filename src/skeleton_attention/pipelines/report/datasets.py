"""A read-only Kedro dataset for the training pipelines' results tree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from skeleton_attention.reporting.results import ResultsTree


class ResultsTreeDataset(AbstractDataset[None, ResultsTree]):
    """``load()`` returns where the results are (``results_dir``: the reporting root holding
    ``train_<family>/``; ``models_dir``: the models root, for parameter counts of older runs); the
    files are read by :func:`skeleton_attention.reporting.results.collect_results`. A missing
    results directory loads fine (the report then says that nothing has been trained)."""

    def __init__(self, results_dir: str, models_dir: str | None = None, metadata: dict[str, Any] | None = None):
        self._results_dir = Path(results_dir)
        self._models_dir = Path(models_dir) if models_dir else None
        self.metadata = metadata

    def load(self) -> ResultsTree:
        return ResultsTree(results_dir=self._results_dir, models_dir=self._models_dir)

    def save(self, data: None) -> None:
        raise DatasetError("the results tree is written by the training pipelines, not saved through this dataset")

    def _exists(self) -> bool:
        return self._results_dir.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"results_dir": os.fspath(self._results_dir), "models_dir": str(self._models_dir)}
