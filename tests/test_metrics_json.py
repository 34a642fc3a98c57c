"""results/quick/metrics.json (written by notebooks/03_evaluation_and_ablations.ipynb): schema and finite numbers."""
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATH = ROOT / "results" / "quick" / "metrics.json"
METHODS = ("normface", "mean_face", "nearest_identity", "linear", "align_only")
METRICS = ("rank1", "frac_below_threshold", "mean_distance")
ENCODERS = ("facenet-casia", "dlib-resnet")


@pytest.fixture(scope="module")
def metrics():
    assert PATH.exists(), f"{PATH} is missing; run notebooks/03_evaluation_and_ablations.ipynb with papermill"
    return json.loads(PATH.read_text())


def _numbers(obj, where="metrics"):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{where}[{i}]")


def test_top_level(metrics):
    assert metrics["profile"] == "quick"
    assert metrics["judge"] in ENCODERS
    assert metrics["trained_encoder"] in ENCODERS
    assert metrics["judge"] != metrics["trained_encoder"], "the headline judge must be the independent encoder"
    for key in ("clean", "hard", "invariance", "ablations"):
        assert key in metrics, key


@pytest.mark.parametrize("condition", ["clean", "hard"])
def test_conditions_have_every_method_and_metric(metrics, condition):
    block = metrics[condition]
    assert set(METHODS) <= set(block)
    for m in METHODS:
        assert set(METRICS) <= set(block[m]), (condition, m)
        assert 0 <= block[m]["rank1"] <= 1
        assert 0 <= block[m]["frac_below_threshold"] <= 1
        assert 0 <= block[m]["mean_distance"] <= 2  # unit embeddings


def test_mean_face_is_one_output_for_everyone(metrics):
    # the mean face cannot depend on the input: identical numbers clean and hard
    assert metrics["clean"]["mean_face"] == metrics["hard"]["mean_face"]


def test_invariance(metrics):
    inv = metrics["invariance"]
    assert set(inv) >= {"spread_in", "spread_out"}
    assert inv["spread_in"] > 0 and inv["spread_out"] >= 0


def test_ablations_rows(metrics):
    rows = metrics["ablations"]["rows"]
    for name in ("reference", "dlib-resnet", "no-identity-loss", "no-warp"):
        assert name in rows, name
        assert rows[name]["status"] in ("trained", "reused")
        for j in ENCODERS:
            for cond in ("clean", "hard"):
                assert set(METRICS) <= set(rows[name][j][cond])
    for name in ("vggface", "facenet-vggface2"):
        assert name in rows
        assert rows[name]["status"] in ("trained", "reused") or rows[name]["status"].startswith("not available")


def test_confidence_intervals_bracket_the_means(metrics):
    for cond in ("clean", "hard"):
        for m in METHODS:
            for k in METRICS:
                lo, hi = metrics["ci"][cond][m][k]
                assert lo - 1e-4 <= metrics[cond][m][k] <= hi + 1e-4, (cond, m, k)


def test_every_number_is_finite(metrics):
    found = list(_numbers(metrics))
    assert len(found) > 100
    bad = [w for w, v in found if not math.isfinite(v)]
    assert not bad, bad[:10]
