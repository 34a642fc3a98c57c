"""What users of face tools expect from the command: --version, folders and globs, --json, --compare, --aligned,
--quiet, a model without --checkpoint, and a message for every bad option."""
import glob
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from normface_lib import __version__, cli
from normface_lib.faces import face_from_photo
from normface_lib.training import PROFILES

S = PROFILES["quick"]["size"]  # the crop side of the tiny checkpoint (the quick profile's)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"normface {__version__}"


def test_folders_globs_and_recursion(tiny_checkpoint, photos, tmp_path, capsys):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    shutil.copy(photos / "hopper.jpg", src / "a.jpg")
    shutil.copy(photos / "astronaut.jpg", src / "sub" / "b.jpg")
    (src / "readme.txt").write_text("not a photo")
    assert cli.expand_inputs([str(src)]) == [str(src / "a.jpg")]
    assert cli.expand_inputs([str(src)], recursive=True) == [str(src / "a.jpg"), str(src / "sub" / "b.jpg")]
    assert cli.expand_inputs([str(src / "**" / "*.jpg")], recursive=True) == \
        sorted(glob.glob(str(src / "**" / "*.jpg"), recursive=True))
    rc = cli.main(["normalize", str(src), "-r", "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_checkpoint),
                   "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0 and captured.err == "" and len(captured.out.splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_json_and_compare(tiny_checkpoint, photos, tmp_path, capsys):
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), str(photos / "blank.png"), "-o", str(tmp_path / "out"),
                   "--checkpoint", str(tiny_checkpoint), "--json", "--compare"])
    assert rc == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ok, bad = rows
    assert ok["photo"].endswith("hopper.jpg") and len(ok["faces"]) == 1
    face = ok["faces"][0]
    assert set(face) == {"output", "box", "identity_distance", "same_person", "threshold"}
    assert len(face["box"]) == 4 and face["same_person"] == (face["identity_distance"] < face["threshold"])
    assert bad["photo"].endswith("blank.png") and "no face" in bad["error"]
    side = np.asarray(Image.open(tmp_path / "out" / "hopper_compare.png"))
    assert side.shape[0] == S and side.shape[1] > 2 * S  # input | output


def test_aligned_crops(tiny_checkpoint, photos, tmp_path, capsys):
    crop = face_from_photo(photos / "astronaut.jpg", 112, cache=False).crop
    Image.fromarray((crop.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "crop.png")
    rc = cli.main(["normalize", str(tmp_path / "crop.png"), "--aligned", "-o", str(tmp_path / "out"),
                   "--checkpoint", str(tiny_checkpoint)])
    assert rc == 0 and np.asarray(Image.open(tmp_path / "out" / "crop.png")).shape == (S, S, 3)


def test_the_default_model_needs_no_checkpoint_option(tiny_checkpoint, photos, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(tiny_checkpoint, cache / "checkpoints" / "quick")
    monkeypatch.setenv("NORMFACE_CACHE", str(cache))
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", str(tmp_path / "out")])
    assert rc == 0 and (tmp_path / "out" / "hopper.png").exists()


@pytest.mark.parametrize("device, words", [
    ("gpu0", "unknown device"),
    pytest.param("cuda", "no usable CUDA GPU", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU"))])
def test_bad_device_is_a_message(device, words, tiny_checkpoint, photos, tmp_path, capsys):
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", str(tmp_path / "out"), "--checkpoint",
                   str(tiny_checkpoint), "--device", device])
    err = capsys.readouterr().err
    assert rc == 1 and words in err and "Traceback" not in err


def test_train_messages_name_the_command_line_options(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["train", "--out", str(tmp_path / "file"), "--steps", "2"]) == 1
    assert "is a file" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tiny_checkpoint), "--steps", "6"]) == 1
    err = capsys.readouterr().err
    assert "--resume" in err and "--force" in err
