"""File names users have: every output of a run gets its own name (inputs and suffixes together), a name that is not
UTF-8 prints, a long legal name works, and an avatar's files name each other even with blanks in the name."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from normface_lib import cli
from normface_lib.apps.avatar import load_obj
from normface_lib.core.errors import InputError


def _rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64)


def test_a_suffix_never_lands_on_another_photos_output(tiny_checkpoint, photos, tmp_path, capsys):
    """``p.jpg`` with --compare writes p_compare.png: the photo ``p_compare.jpg`` of the same run gets another name,
    in either order, with or without --force, and every printed path holds its own photo's face."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(photos / "hopper.jpg", src / "p.jpg")
    shutil.copy(photos / "astronaut.jpg", src / "p_compare.jpg")
    alone = {}
    for name in ("p.jpg", "p_compare.jpg"):  # each photo's comparison (its input crop | its face), made on its own
        assert cli.main(["normalize", str(src / name), "-o", str(tmp_path / "alone" / name), "--compare",
                         "--checkpoint", str(tiny_checkpoint)]) == 0
        alone[str(src / name)] = _pixels(next((tmp_path / "alone" / name).glob("*_compare.png")))
    capsys.readouterr()
    for k, order in enumerate((["p.jpg", "p_compare.jpg"], ["p_compare.jpg", "p.jpg"])):
        out = tmp_path / f"out{k}"
        for force in ([], ["--force"]):  # the second run overwrites the first: still no name shared within it
            rc = cli.main(["normalize", *(str(src / n) for n in order), "-o", str(out), "--compare", "--json",
                           "--checkpoint", str(tiny_checkpoint), *force])
            rows = _rows(capsys.readouterr().out)
            assert rc == 0 and all("faces" in r for r in rows), rows
            outputs = [r["faces"][0]["output"] for r in rows]
            assert len(list(out.iterdir())) == 4 and len(set(outputs)) == 2  # two faces, two comparisons
            for r in rows:  # each printed output is its own photo's (batching may move a pixel by a level)
                own, other = (alone[p] for p in sorted(alone, key=lambda p: p != r["photo"]))
                got = _pixels(r["faces"][0]["output"][:-len(".png")] + "_compare.png")
                assert np.abs(got - own).mean() < 1 < np.abs(got - other).mean()


def test_a_second_face_never_lands_on_another_photos_output(tiny_checkpoint, photos, two_faces, tmp_path, capsys):
    shutil.copy(two_faces, tmp_path / "two.jpg")
    shutil.copy(photos / "hopper.jpg", tmp_path / "two_face1.jpg")
    out = tmp_path / "out"
    rc = cli.main(["normalize", str(tmp_path / "two.jpg"), str(tmp_path / "two_face1.jpg"), "-o", str(out), "--json",
                   "--checkpoint", str(tiny_checkpoint)])
    rows = _rows(capsys.readouterr().out)
    assert rc == 0 and [len(r["faces"]) for r in rows] == [2, 1]
    outputs = [f["output"] for r in rows for f in r["faces"]]
    assert len(set(outputs)) == 3 and sorted(p.name for p in out.iterdir()) == sorted(os.path.basename(o)
                                                                                       for o in outputs)


def test_a_name_that_is_not_utf8_is_printed(tiny_checkpoint, photos, tmp_path, normface):
    """``caf\\xe9.jpg`` (Latin-1 bytes) under a UTF-8 stdout, as a real en_US.UTF-8 locale gives: every photo's line
    is printed (the name's odd byte as ``\\xe9``), its output keeps the name's bytes, and --json stays valid."""
    odd = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    shutil.copy(photos / "hopper.jpg", odd)
    for as_json in ([], ["--json"]):
        out = tmp_path / f"out{len(as_json)}"
        r = normface(["normalize", odd, str(photos / "astronaut.jpg"), "-o", str(out), "--checkpoint",
                      str(tiny_checkpoint), *as_json], env={"PYTHONIOENCODING": "utf-8"})
        assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")[-2000:]
        lines = r.stdout.decode("utf-8").splitlines()  # valid UTF-8
        if as_json:
            lines = [json.loads(line)["photo"] for line in lines]
        assert len(lines) == 2 and "caf\\xe9.jpg" in lines[0] and "astronaut" in lines[1]
        assert sorted(os.listdir(os.fsencode(out))) == [b"astronaut.png", b"caf\xe9.png"]


def test_a_long_legal_name_works(tiny_checkpoint, photos, tmp_path, capsys):
    """243 characters + .jpg is a legal name; its outputs (up to 255 bytes) are written, and a suffix that would pass
    the file system's limit shortens the name instead of failing."""
    stem = "x" * 243
    shutil.copy(photos / "hopper.jpg", tmp_path / f"{stem}.jpg")
    shutil.copy(photos / "astronaut.jpg", tmp_path / f"{'y' * 250}.jpg")
    out = tmp_path / "out"
    rc = cli.main(["normalize", str(tmp_path / f"{stem}.jpg"), str(tmp_path / f"{'y' * 250}.jpg"), "-o", str(out),
                   "--compare", "--checkpoint", str(tiny_checkpoint)])
    assert rc == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert f"{stem}.png" in names and f"{stem}_compare.png" in names and len(f"{stem}_compare.png") == 255
    assert len(names) == 4 and all(len(n.encode()) <= 255 for n in names)
    assert any(n.startswith("y" * 200) and n.endswith("~_compare.png") for n in names)


def test_avatar_files_name_each_other_with_blanks_in_the_name(tiny_checkpoint, photos, tmp_path, capsys):
    shutil.copy(photos / "hopper.jpg", tmp_path / "john smith #2.jpg")
    out = tmp_path / "out"
    rc = cli.main(["avatar", str(tmp_path / "john smith #2.jpg"), "-o", str(out), "--checkpoint",
                   str(tiny_checkpoint)])
    assert rc == 0
    line = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["john_smith__2.mtl", "john_smith__2.obj", "john_smith__2.png"]
    assert "john_smith__2.obj" in line
    obj = (out / "john_smith__2.obj").read_text().splitlines()
    assert "mtllib john_smith__2.mtl" in obj and "map_Kd john_smith__2.png" in (out / "john_smith__2.mtl").read_text()
    assert load_obj(out / "john_smith__2.obj").texture is not None  # the OBJ finds its texture


def test_export_obj_names_its_companions_without_blanks(tmp_path):
    import torch

    from normface_lib.apps.avatar import export_obj

    V = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    paths = export_obj(tmp_path / "ann marie.obj", V, torch.tensor([[0, 1, 2]]), torch.rand(3, 2),
                       torch.rand(3, 8, 8))
    assert [paths[k].name for k in ("obj", "mtl", "png")] == ["ann marie.obj", "ann_marie.mtl", "ann_marie.png"]
    mesh = load_obj(paths["obj"])
    assert mesh.texture is not None and mesh.texture.shape == (3, 8, 8)
    for bad in (V.to(torch.complex64), V > 0):  # complex and bool vertices are refused, not cast
        with pytest.raises(InputError, match="real numbers"):
            export_obj(tmp_path / "bad.obj", bad, torch.tensor([[0, 1, 2]]), torch.rand(3, 2), torch.rand(3, 8, 8))
