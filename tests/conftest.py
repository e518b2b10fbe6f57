"""Shared fixtures. The real data lives in ../shared/data beside the repository (never copied in)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.kedro_helpers import MLFLOW_ENV_LEFTOVERS

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SKELETON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Each pytest-xdist worker (and every process it starts: kedro runs, ranks, notebooks) gets its
    share of the cores as OpenMP/BLAS threads. With torch's default of one thread per core in each
    of two workers, OpenMP threads spin on busy cores instead of working: a MANs test took 393 s
    instead of 7 s (docs/performance.md, "Test-suite time"). The controller sets the counts before it
    starts the workers, which inherit them; a user's own ``OMP_NUM_THREADS`` wins."""
    from skeleton_attention.experiments.processes import worker_env

    workers = config.getoption("numprocesses", default=None) if config.pluginmanager.hasplugin("xdist") else None
    os.environ.update(worker_env(int(workers or 1), os.environ))
    import torch  # torch may have read its thread count before this hook

    torch.set_num_threads(int(os.environ["MKL_NUM_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules with long tests (a ``slow`` test, or an ``xdist_group`` that keeps a costly
    module fixture on one worker) run first, each module's tests in their order: under
    ``-n 2`` a long test left for the end keeps one worker busy while the other idles."""

    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    heavy = {module(i) for i in items if i.get_closest_marker("slow") or i.get_closest_marker("xdist_group")}
    items.sort(key=lambda item: module(item) not in heavy)  # a stable sort keeps the order within


@pytest.fixture(autouse=True)
def _no_mlflow_environment_leftovers():
    """An in-process MLflow test must not hand its tracking store or experiment to the processes a
    later test starts (a child would look for experiment 2 in its own, empty store)."""
    before = {name: os.environ.get(name) for name in MLFLOW_ENV_LEFTOVERS}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"real test data not found at {SHARED_DATA}; set SKELETON_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ntu_raw(shared_data: Path) -> Path:
    return shared_data / "ntu_raw"
