"""`normface correct-colour` and `normface avatar` end to end: a tiny checkpoint trained here, public-domain
portraits (bad inputs for correct-colour are tested with normalize in test_cli.py, by the same parametrised test)."""
from __future__ import annotations

import pytest
import torch

from normface_lib import cli
from normface_lib.apps.avatar import load_obj
from normface_lib.apps.colour import colour_error
from normface_lib.faces import load_image
from normface_lib.training import PROFILES


def test_correct_colour_grey_model_corrects_exposure_only(tiny_grey_checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["correct-colour", str(photos / "hopper.jpg"), str(photos / "dark.png"), "-o", str(out),
                   "--checkpoint", str(tiny_grey_checkpoint)])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("exposure only" in l and "grey" in l for l in lines)
    original, dark = load_image(photos / "hopper.jpg"), load_image(photos / "dark.png")
    fixed_orig, fixed_dark = load_image(out / "hopper.png"), load_image(out / "dark.png")
    assert fixed_orig.shape == original.shape and fixed_dark.shape == dark.shape  # the whole photo, same size
    # the same photo at two exposures is corrected to (nearly) the same exposure: exposure is undone
    assert colour_error(fixed_dark, fixed_orig)["mae"] < 0.3 * colour_error(dark, original)["mae"]
    # exposure only: the ratio between channels (in linear light) is what it was
    lin = lambda x: torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)  # noqa: E731
    m = (original > 0.1).all(0) & (original < 0.8).all(0) & (fixed_dark < 0.99).all(0) & (fixed_dark > 0.1).all(0)
    ratio_in = (lin(original[0]) / lin(original[2]))[m].median()
    ratio_out = (lin(fixed_dark[0]) / lin(fixed_dark[2]))[m].median()
    assert float(ratio_out) == pytest.approx(float(ratio_in), rel=0.05)


def test_correct_colour_colour_model_fits_white_balance(tiny_checkpoint, photos, tmp_path, capsys):
    rc = cli.main(["correct-colour", str(photos / "hopper.jpg"), "-o", str(tmp_path / "out"), "--checkpoint",
                   str(tiny_checkpoint)])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert "exposure and white balance" in line and "RGB gains" in line
    assert (tmp_path / "out" / "hopper.png").exists()


def test_avatar_writes_obj_mtl_png(tiny_checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "avatars"
    rc = cli.main(["avatar", str(photos / "hopper.jpg"), "-o", str(out), "--checkpoint", str(tiny_checkpoint)])
    assert rc == 0
    line = capsys.readouterr().out
    assert "hopper.obj" in line and "Apache-2.0" in line
    mesh = load_obj(out / "hopper.obj")
    assert mesh.vertices.shape == (468, 3) and mesh.faces.shape == (898, 3)
    size = PROFILES["quick"]["size"]
    assert mesh.texture is not None and mesh.texture.shape == (3, size, size)  # the normalized face is the texture
    assert torch.isfinite(mesh.vertices).all() and float(mesh.uvs.min()) >= 0 and float(mesh.uvs.max()) <= 1
    # again without --force: refused, files untouched; bad inputs reported per file
    before = (out / "hopper.obj").read_bytes()
    rc = cli.main(["avatar", str(photos / "hopper.jpg"), str(photos / "notes.txt"), "-o", str(out),
                   "--checkpoint", str(tiny_checkpoint)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "hopper.jpg: error:" in err and "--force" in err and "notes.txt: error:" in err
    assert (out / "hopper.obj").read_bytes() == before
    rc = cli.main(["avatar", str(photos / "hopper.jpg"), "-o", str(out), "--checkpoint", str(tiny_checkpoint),
                   "--force"])
    assert rc == 0


def test_app_verbs_need_a_checkpoint_and_arguments(tmp_path, photos, capsys):
    rc = cli.main(["avatar", str(photos / "hopper.jpg"), "-o", str(tmp_path), "--checkpoint", str(tmp_path / "none")])
    assert rc == 1 and "normface train" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["correct-colour", str(photos / "hopper.jpg")])  # no -o
    assert e.value.code == 2
