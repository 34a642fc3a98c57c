"""The `normface` command end to end: a small checkpoint trained here, a public-domain portrait, and bad inputs."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from normface_lib import cli
from normface_lib import NormFace  # the public entry point
from normface_lib.training import PROFILES

S = PROFILES["quick"]["size"]  # the crop side of the tiny checkpoint (the quick profile's)


def test_normalize_writes_one_png_per_face(tiny_checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["normalize", str(photos / "astronaut.jpg"), str(photos / "hopper.jpg"), "-o", str(out),
                   "--checkpoint", str(tiny_checkpoint)])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("1 face" in l for l in lines)
    for name in ("astronaut.png", "hopper.png"):
        img = np.asarray(Image.open(out / name))
        assert img.shape == (S, S, 3) and img.std() > 1  # a picture, not a flat fill


@pytest.mark.parametrize("verb, done", [("normalize", "hopper.jpg: 1 face"), ("correct-colour", "hopper.jpg: ->")])
def test_bad_files_reported_per_file_and_nothing_overwritten(verb, done, tiny_checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "astronaut.png").write_bytes(b"user's file")
    rc = cli.main([verb, str(photos / "astronaut.jpg"), str(photos / "notes.txt"), str(photos / "blank.png"),
                   str(photos / "missing.jpg"), str(photos / "hopper.jpg"), "-o", str(out),
                   "--checkpoint", str(tiny_checkpoint)])
    assert rc == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "astronaut.jpg: error:" in err and "--force" in err
    assert "notes.txt: error:" in err and "not a readable image" in err
    assert "blank.png: error:" in err and "no face found" in err
    assert "missing.jpg: error:" in err and "no such file" in err
    assert done in captured.out  # the good photo still went through
    assert (out / "astronaut.png").read_bytes() == b"user's file"
    assert not (out / "notes.png").exists() and not (out / "blank.png").exists()
    rc = cli.main([verb, str(photos / "astronaut.jpg"), "-o", str(out), "--checkpoint", str(tiny_checkpoint),
                   "--force"])
    assert rc == 0 and (out / "astronaut.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_checkpoint_says_how_to_make_one(tmp_path, photos, capsys):
    rc = cli.main(["normalize", str(photos / "astronaut.jpg"), "-o", str(tmp_path), "--checkpoint",
                   str(tmp_path / "nothing")])
    assert rc == 1 and "normface train" in capsys.readouterr().err


def test_model_api_round_trip(tiny_checkpoint, photos):
    model = NormFace.from_pretrained(tiny_checkpoint)
    r = model.normalize(photos / "hopper.jpg")
    assert r.image.shape == (3, S, S) and r.landmarks.shape == (68, 2)
    assert 0 <= float(r.image.min()) and float(r.image.max()) <= 1
    assert np.isfinite(r.identity_distance) and r.identity_distance > 0
    again = model.normalize(photos / "hopper.jpg")
    assert torch.equal(r.image, again.image)  # deterministic


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("normface")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "normalize" in r.stdout and "train" in r.stdout
