"""The notebooks in notebooks/: saved without outputs, and they run top to bottom (nbclient) on the
embedded data prepared once per test session (tests/test_cli_runs.py ``embedded_project``), in a
project copy of their own with no trained run, so the attention notebook trains its tiny models."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from tests.conftest import SHARED_DATA
from tests.test_cli_runs import _new_project, embedded_project  # noqa: F401 (fixture)

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
FAMILIES = ("sta_lstm", "view_attention", "san", "dsta_net", "mans")


def test_there_are_notebooks():
    assert {path.name for path in NOTEBOOKS} >= {"01_prepared_data.ipynb", "02_attention.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebooks_are_saved_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} holds outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"
    assert "widgets" not in notebook.metadata


def _images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


@pytest.fixture(scope="module")
def notebook_project(embedded_project, tmp_path_factory, monkeypatch_module) -> Path:  # noqa: F811
    """A project copy with the prepared embedded tables and no trained model."""
    project = _new_project(tmp_path_factory.mktemp("notebooks") / "project")
    for layer in ("02_intermediate", "04_feature"):
        shutil.copytree(embedded_project / "data" / layer, project / "data" / layer)
    shutil.copytree(REPO_ROOT / "notebooks", project / "notebooks")
    # the kernel is a child process: it finds this checkout's package through PYTHONPATH
    monkeypatch_module.setenv("PYTHONPATH", str(REPO_ROOT / "src"))
    monkeypatch_module.setenv("OMP_NUM_THREADS", "1")
    monkeypatch_module.setenv("SKELETON_SHARED_DATA", str(SHARED_DATA))
    return project


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _execute(project: Path, name: str) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    notebook = nbformat.read(project / "notebooks" / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(project / "notebooks")}}
    )
    client.execute()  # a failing cell raises CellExecutionError with its traceback
    return notebook


@pytest.mark.slow
def test_the_data_notebook_runs_and_draws_the_sequences(notebook_project):
    notebook = _execute(notebook_project, "01_prepared_data.ipynb")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    ntu_sample, all_cameras, nucla = (
        next(c for c in code if marker in c.source)
        for marker in ("row = 0", "views_of(multiview, row)", "read_nucla_file(raw_dir")
    )
    assert _images(ntu_sample) == 1 and _images(all_cameras) == 1
    assert "(3, " in _stdout(all_cameras)  # three cameras of one recording
    # real N-UCLA files drawn when at hand (SKELETON_SHARED_DATA), else the cell says it skipped
    assert _images(nucla) == 1 or "N-UCLA skipped" in _stdout(nucla)
    assert (notebook_project / "data" / "04_feature" / "ntu").is_dir()


@pytest.mark.slow
def test_the_attention_notebook_draws_every_family(notebook_project):
    notebook = _execute(notebook_project, "02_attention.ipynb")
    for family in FAMILIES:
        cell = next(c for c in notebook.cells if c.cell_type == "code" and c.source == f'show("{family}")')
        assert f"{family}: a tiny model trained here" in _stdout(cell)
        assert _images(cell) == 2, f"{family}: the attention maps and the skeleton figure"
    # the tiny models' checkpoints went to a temporary directory, not into the project
    assert not (notebook_project / "data" / "06_models").exists()
