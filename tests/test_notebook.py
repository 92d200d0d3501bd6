"""The example notebook (``examples/notebook.ipynb``) runs from top to bottom: a PyTorch ensemble
and a Kipoi model directory analysed, shown, reanalysed and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


@pytest.mark.timeout(1800)
def test_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("torch")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    summaries = [h for h in html if "Deep MR:" in h and "ordered pairs" in h]
    assert len(summaries) == 2  # the two analyses displayed as their notebook summary
    warned = [o for o in outputs if o.output_type == "stream" and "DeepMRWarning" in o.text]
    assert warned  # the runs' caveats reach the notebook as Python warnings


def test_notebook_page_is_generated_from_the_notebook():
    import importlib.util

    hook = Path(__file__).resolve().parents[1] / "docs" / "hooks" / "notebook.py"
    spec = importlib.util.spec_from_file_location("notebook_hook", hook)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.notebook_markdown(NOTEBOOK)
    assert "deepmr_kipoi.analyze(" in page and "kipoi.get_model(" in page
    assert page.count("```python") >= 8
