"""The held-out measurements of a real (tiny) trained model: expression in → neutral out, colour correction against
ground truth, ORL's 40 people as other people. Checked for what must hold whatever the model's quality."""
from __future__ import annotations

import pytest

from normface_lib import data
from normface_lib import evaluation as ev
from normface_lib.encoders import cached_encode, load_encoder
from normface_lib.pipeline import NormFace


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return NormFace.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def sets(model):
    tables = data.load_tables(model.config["dataset"], model.size, mirror=False)  # judges calibrate on photos only
    judges = {n: ev.make_judge(load_encoder(n), tables["train"]) for n in ("facenet-casia", "dlib-resnet")}
    base = ev.Baselines(tables["train"], cached_encode(model.encoder, tables["train"].images)["features"])
    return tables, judges, base


@pytest.mark.slow
def test_expression_measures(model, sets):
    tables, judges, base = sets
    t = data.expression_table(model.size, tables["train"].mean_shape)
    r = ev.evaluate_expressions(model, base, t, judges, "dlib-resnet", n_boot=100, details=True,
                                methods=("normface", "mean_face"))  # the baselines' own tests are elsewhere
    assert r["n_people"] == 10 and r["n_photos"] == 160 and list(r["per_expression"]) == list(data.EXPRESSIONS)
    assert r["methods"]["mean_face"]["expression_ratio"]["value"] == 0  # one face for everyone: nothing moves
    for m, b in r["methods"].items():
        lo, hi = b["expression_ratio"]["ci"]
        assert lo - 1e-9 <= b["expression_ratio"]["value"] <= hi + 1e-9, m
        for j in judges:
            assert 0 <= b[j]["rank1"]["mean"] <= 1
    assert r["per_expression"]["neutral"]["pixel_change_ratio"] is None
    assert all(r["per_expression"][e]["pixel_change_ratio"]["value"] >= 0 for e in data.EXPRESSIONS[1:])
    rows = r["_rows"]
    assert rows["methods"]["normface"]["ratio"].shape == (10,) and rows["input"]["dlib-resnet"]["rank1"].shape == (160,)
    assert ev.as_written({k: v for k, v in r.items()})  # JSON-able once the private rows are dropped


@pytest.mark.slow
def test_colour_correction_against_ground_truth(model, sets):
    photos = data.colour_held_out_photos(model.size)[:2]
    casts = {"none at all": (0.0, (1.0, 1.0, 1.0)), "warm": (0.0, (1.3, 1.0, 0.75))}
    b = ev.colour_correction_benchmark(model, photos, casts=casts, keep_images=1)
    assert b["cases"] == [(0, "none at all"), (0, "warm"), (1, "none at all"), (1, "warm")]
    de = b["delta_e"]
    # no cast: the float32 round trip through linear light moves pixels by ~1e-7 of the range, far below ΔE 0.001
    assert (de["face"]["none"][[0, 2]] < 1e-3).all() and (de["photo"]["none"][[0, 2]] < 1e-3).all()
    assert (de["face"]["none"][[1, 3]] > 3).all()  # a strong warm cast is far from the original
    block = ev.colour_correction_block(b, n_boot=100)
    assert set(block["delta_e"]) == set(ev.COLOUR_METHODS) and block["n_photos"] == 2
    assert len(b["images"]) == 2 and b["images"][0]["original"].shape[0] == 3


@pytest.mark.slow
def test_orl_people_are_other_peoples_photos(model, sets):
    tables, judges, base = sets
    orl = data.held_out_table("orl", model.size, tables["train"].mean_shape)
    block, det = ev.evaluate_people(model, base, orl, judges, n_boot=50, methods=("normface", "mean_face"),
                                    conditions=("clean",), details=True)
    assert block["info"]["n_people"] == 40 and block["info"]["gallery"] == "the same people's other photos"
    assert block["invariance"] is not None and set(block["pixel_identity_contrast"]) == {"normface", "mean_face"}
    assert block["pixel_identity_contrast"]["mean_face"]["value"] == 0
    single, _ = ev.evaluate_people(model, base, tables["unseen_people"], judges, n_boot=50, methods=("normface",),
                                   conditions=("clean",), landmarks=False)
    assert single["invariance"] is None and single["info"]["gallery"] == "the held-out photos themselves"
