"""NormFace for people normalizing photos: a model out of the box (trained on first use, finished when interrupted),
a model folder or a Hugging Face hub id, one calibrated same-person threshold, batched and aligned inputs."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from normface_lib import data
from normface_lib.core.errors import InputError, NoFaceError, UnreadableImageError
from normface_lib.evaluation import make_judge
from normface_lib.faces import face_from_photo
from normface_lib.pipeline import NormFace
from normface_lib.training import profile_config, train

TINY = dict(steps=6, batch_size=8, morph_bank_size=8, identity_every=0, checkpoint_every=3, eval_splits=())


def test_the_threshold_is_the_one_calibrated_at_training_and_the_book_uses(tiny_checkpoint):
    model = NormFace.from_pretrained(tiny_checkpoint)
    train_table = data.load_tables("orl", 64, splits=())["train"]
    judge = make_judge(model.encoder, train_table)  # what notebook 03 calibrates for the trained encoder
    assert model.threshold == pytest.approx(judge.threshold, abs=1e-12)
    assert model.threshold != model.encoder.threshold and "calibrated" in model.threshold_source


def test_first_use_trains_and_an_interrupted_model_is_finished(tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="normface train"):
        NormFace.from_profile("quick", checkpoint=run, train_if_missing=False)
    train(profile_config("quick", **TINY), run, progress=False, until_step=3)  # as if killed after step 3
    with pytest.raises(InputError, match="unfinished"):
        NormFace.from_pretrained(run)
    assert NormFace.from_pretrained(run, allow_partial=True).size == 64
    model = NormFace.from_profile("quick", checkpoint=run, **TINY)
    assert "resuming" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["steps_done"] == 6 and model.size == 64
    fresh = NormFace.from_profile("quick", checkpoint=tmp_path / "new", **TINY)  # nothing there: trained now
    assert "training one" in capsys.readouterr().out and fresh.config["steps"] == 6


def test_save_pretrained_and_a_hub_id_offline(tiny_checkpoint, photos, tmp_path):
    model = NormFace.from_pretrained(tiny_checkpoint)
    folder = model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(Exception, match="already holds"):
        model.save_pretrained(tmp_path / "model")
    again = NormFace.from_pretrained(folder)
    a, b = model.normalize(photos / "hopper.jpg"), again.normalize(photos / "hopper.jpg")
    assert torch.equal(a.image, b.image) and again.threshold == model.threshold
    # a Hugging Face hub cache holding the model, read with the network off
    snap = tmp_path / "hf" / "hub" / "models--normface--tiny" / "snapshots" / "0123abc"
    shutil.copytree(folder, snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0123abc")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    code = ("from normface_lib.pipeline import NormFace\n"
            "m = NormFace.from_pretrained('normface/tiny')\n"
            f"print(m.size, round(m.normalize({str(photos / 'hopper.jpg')!r}).identity_distance, 6))")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["64", str(round(a.identity_distance, 6))]
    code = "from normface_lib.pipeline import NormFace\nNormFace.from_pretrained('normface/absent')"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "MissingWeightsError" in r.stderr and "HF_HUB_OFFLINE" in r.stderr


def test_normalize_many_keeps_order_and_errors(tiny_checkpoint, photos, tmp_path):
    model = NormFace.from_pretrained(tiny_checkpoint)
    inputs = [photos / "hopper.jpg", photos / "notes.txt", photos / "blank.png", photos / "astronaut.jpg",
              photos / "missing.jpg"]
    res = model.normalize_many(inputs, batch=2)
    assert [type(r).__name__ if isinstance(r, Exception) else len(r) for r in res] == \
        [1, "UnreadableImageError", "NoFaceError", 1, "FileNotFoundError"]
    one = model.normalize_all(photos / "hopper.jpg")[0]
    assert (res[0][0].image - one.image).abs().max() < 1e-3  # batched detection may move a box by a rounding
    assert res[0][0].box is not None and res[0][0].same_person == (res[0][0].identity_distance < model.threshold)
    # aligned crops: no detection
    crop = face_from_photo(photos / "hopper.jpg", 64, cache=False).crop
    from PIL import Image
    Image.fromarray((crop.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(tmp_path / "crop.png")
    (aligned,) = model.normalize_many([tmp_path / "crop.png"], aligned=True)
    assert aligned[0].input_landmarks is None and aligned[0].image.shape == (3, 64, 64)
    Image.new("RGB", (40, 30)).save(tmp_path / "wide.png")
    (err,) = model.normalize_many([tmp_path / "wide.png"], aligned=True)
    assert isinstance(err, InputError) and "square" in str(err)
    assert isinstance(model.normalize_many([photos / "blank.png"])[0], NoFaceError)
    assert isinstance(model.normalize_many([photos / "notes.txt"])[0], UnreadableImageError)
