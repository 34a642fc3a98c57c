"""The committed notebooks are executed, error-free, and were run with the quick profile.

nbval (``make test``) re-executes them and compares only the cells marked ``# NBVAL_CHECK_OUTPUT``: the run banners
(profile, seed, settings), never a trained figure, since float32 training differs across CPUs; the figures are
checked within bands by tests/test_rerun.py. An unexecuted notebook would pass nbval trivially, so these checks guard
against that.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_executed_with_quick_profile(path):
    cells = _cells(path)
    code = [c for c in cells if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{path.name}: needs exactly one cell tagged 'parameters' for papermill"
    assert re.search(r'^profile\s*=\s*"quick"', "".join(params[0]["source"]), re.M), \
        f"{path.name}: the parameters cell must default to profile = \"quick\""
    injected = [c for c in code if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    for c in injected:
        m = re.search(r'^profile\s*=\s*"(\w+)"', "".join(c["source"]), re.M)
        assert m is None or m.group(1) == "quick", f"{path.name}: committed after a run with profile {m.group(1)}"
    # every code cell that is not the Colab installer ran, and none failed
    executed = [c for c in code if c.get("execution_count") is not None]
    assert len(executed) == len(code), f"{path.name}: {len(code) - len(executed)} code cells were never executed"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert outputs, f"{path.name}: committed without outputs; run `make notebooks`"
    assert not [o for o in outputs if o.get("output_type") == "error"], f"{path.name}: stored outputs contain an error"
    text = "".join("".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream")
    assert "normface profile=quick" in text, f"{path.name}: the run banner does not say profile=quick"
    checked = [c for c in code if "# NBVAL_CHECK_OUTPUT" in "".join(c["source"])]
    assert len(checked) == 1 and "run_banner(" in "".join(checked[0]["source"]), \
        f"{path.name}: exactly one cell, the banner, is compared by nbval (no trained figure is compared digit for digit)"
