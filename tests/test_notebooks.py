"""Every notebook runs top to bottom (at the small sizes of LAMA_NOTEBOOK_FAST=1) and is committed without outputs."""

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_receptive_field.ipynb", "03_masks.ipynb", "04_results.ipynb"]


def test_the_four_notebooks_are_there():
    assert sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    for i, cell in enumerate(code):
        assert cell.outputs == [] and cell.execution_count is None, f"code cell {i} has outputs: strip them"
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and "minute" in first.source  # what it shows and how long it takes
    assert last.cell_type == "markdown" and "try next" in last.source.lower()


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, monkeypatch, tmp_path):
    monkeypatch.setenv("LAMA_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("LAMA_NOTEBOOK_WORK", str(tmp_path))
    monkeypatch.delenv("LAMA_MODEL", raising=False)  # the offline path, whatever the developer's shell says
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    t = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    print(f"{name}: {time.perf_counter() - t:.1f} s")  # raises CellExecutionError (the cell and traceback) on failure
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
