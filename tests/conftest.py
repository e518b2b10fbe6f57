"""Shared fixtures. The real data lives in ../shared/data beside the repository (never copied in)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SKELETON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"real test data not found at {SHARED_DATA}; set SKELETON_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ntu_raw(shared_data: Path) -> Path:
    return shared_data / "ntu_raw"
