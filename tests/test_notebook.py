"""The first notebook runs top to bottom against this checkout, so it cannot rot."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "1.0-explore-train-explain.ipynb"


def test_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    source = "\n".join(c.source for c in code)
    assert "run_training" in source and "score_leads" in source and "import leadml" in source


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A 'python3' kernel spec for this interpreter, first on JUPYTER_PATH (user kernels ignored)."""
    from ipykernel.kernelspec import write_kernel_spec

    path = write_kernel_spec(tmp_path / "kernels" / "python3")  # argv: this sys.executable
    assert sys.executable in (Path(path) / "kernel.json").read_text()
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the notebook's temp database goes here
    return "python3"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_notebook_runs_top_to_bottom(venv_kernel, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, kernel_name=venv_kernel, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell (its asserts included)
    elapsed = time.perf_counter() - start
    print(f"notebook ran in {elapsed:.1f}s")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # monthly plot, SHAP summary, dependence plot
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "leadml 0.1" in text and "2,000 leads" in text and "strongest numeric feature" in text
    assert not list((tmp_path / "tmp").glob("leadml-notebook-*"))  # its temp folder was removed
