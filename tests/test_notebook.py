"""notebooks/dime_walkthrough.ipynb runs top to bottom without an error."""

from __future__ import annotations

import time

import pytest
from clihelp import ROOT

NOTEBOOK = ROOT / "notebooks" / "dime_walkthrough.ipynb"

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


@pytest.mark.slow
def test_walkthrough_runs(tmp_path, monkeypatch):
    if not (ROOT / "profiles" / "alexnet-xeon-2core.csv").exists():
        pytest.skip("profiles/alexnet-xeon-2core.csv is not in this checkout")
    # The kernel inherits the environment: outputs go to tmp_path, not into results/.
    monkeypatch.setenv("DIME_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # kernel "python3" is started with this interpreter (jupyter_client swaps the spec's
    # bare "python" for sys.executable), i.e. the venv that runs the tests.
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, f"the walkthrough took {elapsed:.0f} s"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert (tmp_path / "alexnet-sweep.csv").exists() and (tmp_path / "alexnet-sweep.png").exists()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the figure was not displayed"
