"""results/quick/metrics.json (written by notebooks/03_evaluation_and_ablations.ipynb): schema and finite numbers.

The figures themselves are checked against a rerun in tests/test_rerun.py, within bands from the seed study."""
import json
import math
from pathlib import Path

import pytest

from normface_lib.study import VERDICTS
from normface_lib.training import PROFILES

ROOT = Path(__file__).resolve().parents[2]
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
    for key in ("clean", "hard", "orl", "expression", "colour_correction", "robustness", "training", "provenance"):
        assert key in metrics, key
    assert metrics["provenance"]["library_sha256"] and metrics["provenance"]["machine"]["cpu"]
    assert metrics["training"]["steps_done"] == PROFILES["quick"]["steps"]


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


def test_invariance_on_the_people_with_several_photos(metrics):
    assert metrics["invariance"] is None  # one photo per held-out colour person: nothing to be invariant across
    inv = metrics["orl"]["invariance"]
    assert set(inv) >= {"spread_in", "spread_out"}
    assert inv["spread_in"] > 0 and inv["spread_out"] >= 0
    assert metrics["robustness"]["set"] == "orl"


def test_robustness_sweep(metrics):
    curves = metrics["robustness"]["curves"]
    assert set(curves) == {"occluder", "light", "blur", "rotation"}
    for rows in curves.values():
        assert [r["strength"] for r in rows] == sorted(r["strength"] for r in rows) and len(rows) == 2
        for r in rows:
            assert 0 <= r["rank1"] <= 1 and 0 <= r["input_rank1"] <= 1
            assert r["rank1_ci"][0] - 1e-4 <= r["rank1"] <= r["rank1_ci"][1] + 1e-4


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


def test_results_contract(metrics):
    """What other tools may read (the colour-at-scale issue's contract): the data trained on, expression in → neutral
    out with intervals, colour correction against ground truth with its verdict, the learning curve up to every
    training identity, the ablations over seeds, and Figure 12 in squared L2."""
    d = metrics["data"]
    assert d["dataset"] == "colour" and d["channels"] == 3 and d["size"] == PROFILES["quick"]["size"]
    assert d["n_train_identities"] > 400
    ex = metrics["expression"]
    assert ex["n_people"] == 10 and set(ex["per_expression"]) >= {"neutral", "happy", "surprised"}
    for k in ("expression_ratio", "contrast_gain"):
        assert ex[k]["ci"][0] - 1e-4 <= ex[k]["value"] <= ex[k]["ci"][1] + 1e-4, k
    assert ex["verdict"] in VERDICTS
    cc = metrics["colour_correction"]
    assert set(cc["delta_e"]) == {"normface", "none", "grey_world"} and cc["verdict"] in VERDICTS
    for m, v in cc["delta_e"].items():
        assert v["ci"][0] - 1e-4 <= v["value"] <= v["ci"][1] + 1e-4, m
    curve = metrics["learning_curve"]
    largest = max(c["n_identities"] for c in curve if c["dataset"] == "colour")
    assert largest == d["n_train_identities"] and any(c["dataset"] == "orl" for c in curve)
    for c in curve:
        assert isinstance(c["morphs"], bool) and c["source"] == "real" and c["seeds"]
        for per_k in c["metrics"].values():
            for v in per_k.values():
                assert v["ci"][0] - 1e-4 <= v["mean"] <= v["ci"][1] + 1e-4
    ablations = metrics["ablations"]
    assert {"no-selection", "embedding", "no-identity-loss", "no-warp", "dlib-resnet", "orl"} <= set(ablations)
    for name, row in ablations.items():
        assert len(row["seeds"]) >= 3 and row["verdict"] in VERDICTS, name
        for v in row["verdicts"].values():
            assert v["ci"][0] <= v["ci"][1] and len(v["per_seed"]) == len(row["seeds"])
    assert metrics["fig12"]["units"] == "squared_l2"
    contrast = metrics["orl"]["pixel_identity_contrast"]
    assert contrast["mean_face"]["value"] == 0  # one output for everyone: no contrast at all
