"""A rerun of the notebooks reproduces the committed figures, each within the band the seed study measured.

``make test`` runs this file last, after nbval re-executed the notebooks with ``NORMFACE_RESULTS`` pointing at a
scratch folder (so the rerun never overwrites ``results/``), and sets ``NORMFACE_RERUN`` to that folder. Run alone
without it, the test is skipped; with ``NORMFACE_RERUN`` set, a missing rerun is a failure.

Float32 training is not bit-identical across CPUs, so no figure is compared digit for digit: each may move by its
band (:func:`normface_lib.study.bands`: 5 seed-to-seed standard deviations for a figure that depends on training,
one photo's decision or the JSON rounding for one that does not).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from normface_lib import evaluation, study

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rerun():
    where = os.environ.get("NORMFACE_RERUN")
    if not where:
        pytest.skip("NORMFACE_RERUN is not set: `make test` sets it after re-executing the notebooks")
    path = Path(where) / "quick" / evaluation.METRICS_NAME
    assert path.exists(), f"{path} is missing: the nbval re-execution of notebook 03 did not write its figures"
    return json.loads(path.read_text())


def test_rerun_is_the_quick_profile(rerun):
    assert rerun["profile"] == "quick"
    assert rerun["provenance"]["settings"]["profile"] == "quick"


def test_every_figure_inside_its_band(rerun):
    committed = json.loads((ROOT / "results" / "quick" / evaluation.METRICS_NAME).read_text())
    seeds = study.load_study("quick")
    bad = study.band_violations(rerun, committed, seeds)
    assert not bad, f"{len(bad)} figures moved outside their bands:\n" + "\n".join(bad[:30])
