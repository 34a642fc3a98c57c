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
from normface_lib.core.errors import InputError, NoFaceError, OverwriteError, UnreadableImageError
from normface_lib.evaluation import make_judge
from normface_lib.faces import face_from_photo
from normface_lib.pipeline import NormFace
from normface_lib.training import PROFILES, profile_config, train

S = PROFILES["quick"]["size"]  # the crop side of the tiny checkpoint (the quick profile's)

TINY = dict(steps=6, batch_size=8, morph_bank_size=8, identity_every=0, checkpoint_every=3, eval_splits=())


def test_the_threshold_is_the_one_calibrated_at_training_and_the_book_uses(tiny_checkpoint):
    model = NormFace.from_pretrained(tiny_checkpoint)
    train_table = data.load_tables(model.config["dataset"], model.size, splits=())["train"]
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
    assert NormFace.from_pretrained(run, allow_partial=True).size == S
    model = NormFace.from_profile("quick", checkpoint=run, **TINY)
    assert "resuming" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["steps_done"] == 6 and model.size == S
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
    assert r.stdout.split() == [str(S), str(round(a.identity_distance, 6))]
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
    crop = face_from_photo(photos / "hopper.jpg", S, cache=False).crop
    from PIL import Image
    Image.fromarray((crop.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(tmp_path / "crop.png")
    (aligned,) = model.normalize_many([tmp_path / "crop.png"], aligned=True)
    assert aligned[0].input_landmarks is None and aligned[0].image.shape == (3, S, S)
    Image.new("RGB", (40, 30)).save(tmp_path / "wide.png")
    (err,) = model.normalize_many([tmp_path / "wide.png"], aligned=True)
    assert isinstance(err, InputError) and "square" in str(err)
    assert isinstance(model.normalize_many([photos / "blank.png"])[0], NoFaceError)
    assert isinstance(model.normalize_many([photos / "notes.txt"])[0], UnreadableImageError)


def test_save_pretrained_never_empties_the_working_folder(tiny_checkpoint, tmp_path, monkeypatch):
    model = NormFace.from_pretrained(tiny_checkpoint)
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "f1.png").write_bytes(b"png")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OverwriteError, match="not a model folder"):
        model.save_pretrained(os.getcwd())
    model.save_pretrained(os.getcwd(), force=True)  # the model's files beside the user's, nothing else touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "figures", "model.safetensors", "thesis.tex"]
    assert (tmp_path / "thesis.tex").read_text() == "years of work" and (tmp_path / "figures" / "f1.png").exists()
    assert NormFace.from_pretrained(tmp_path).threshold == model.threshold


def test_normalize_many_takes_lists_and_iterables_and_refuses_one_photo(tiny_checkpoint, photos):
    model = NormFace.from_pretrained(tiny_checkpoint)
    for one in (str(photos / "hopper.jpg"), photos / "hopper.jpg", torch.rand(3, 64, 64)):
        with pytest.raises(InputError, match=r"pass \[photo\]"):
            model.normalize_many(one)
    gen = (photos / n for n in ("hopper.jpg", "notes.txt", "astronaut.jpg"))  # a generator: read batch by batch
    res = model.normalize_many(gen, batch=2, names=["a", "b", "c"])
    assert [len(r) if isinstance(r, list) else type(r).__name__ for r in res] == [1, "UnreadableImageError", 1]
    assert str(res[1]).startswith("b:")  # the name given is the one in the message
    with pytest.raises(InputError, match="names has 1 entries for 2 photos"):
        model.normalize_many([photos / "hopper.jpg", photos / "astronaut.jpg"], names=["only one"])
    with pytest.raises(InputError, match="names has 1 entries but photos has more"):
        model.normalize_many(iter([photos / "hopper.jpg", photos / "astronaut.jpg"]), batch=1, names=["only one"])
    for bad in (0, 1.5, True):
        with pytest.raises(InputError, match="batch"):
            model.normalize_many([photos / "hopper.jpg"], batch=bad)
    with pytest.raises(InputError, match="iterable"):
        model.normalize_many(42)


def test_a_profile_that_needs_data_says_so_and_leaves_no_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="needs the 'celeba' data set: pass data_root=DIR"):
        NormFace.from_profile("paper", checkpoint=tmp_path / "runs" / "paper")
    assert list(tmp_path.iterdir()) == []
