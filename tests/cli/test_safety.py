"""Nothing a user has is lost: the command never writes onto an input photo, never writes through a link, gives two
photos of the same name distinct outputs, and writes every file whole (real files, a real checkpoint)."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from normface_lib import cli
from normface_lib.core.errors import OverwriteError
from normface_lib.core.resources import atomic_write, usual_mode


def test_force_never_replaces_the_input_photo(tiny_checkpoint, photos, tmp_path, capsys):
    w = tmp_path / "w"
    w.mkdir()
    shutil.copy(photos / "hopper.jpg", w / "me.png")  # a JPEG named .png, as users do
    before = (w / "me.png").read_bytes()
    rc = cli.main(["normalize", str(w / "me.png"), "-o", str(w), "--checkpoint", str(tiny_checkpoint), "--force"])
    assert rc == 1 and "one of the input photos" in capsys.readouterr().err
    assert (w / "me.png").read_bytes() == before
    # the same through another spelling of the folder
    rc = cli.main(["normalize", str(w / "me.png"), "-o", str(w / "." / ".." / "w"), "--checkpoint",
                   str(tiny_checkpoint), "--force"])
    assert rc == 1 and (w / "me.png").read_bytes() == before


def test_same_name_from_two_folders_gets_two_outputs(tiny_checkpoint, photos, tmp_path, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    shutil.copy(photos / "hopper.jpg", tmp_path / "a" / "photo.png")
    shutil.copy(photos / "astronaut.jpg", tmp_path / "b" / "photo.jpg")
    out = tmp_path / "out"
    rc = cli.main(["normalize", str(tmp_path / "a" / "photo.png"), str(tmp_path / "b" / "photo.jpg"), "-o", str(out),
                   "--checkpoint", str(tiny_checkpoint)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["photo-2.png", "photo.png"]
    assert not np.array_equal(np.asarray(Image.open(out / "photo.png")), np.asarray(Image.open(out / "photo-2.png")))


def test_avatar_keeps_dots_in_names(tiny_checkpoint, photos, tmp_path, capsys):
    shutil.copy(photos / "hopper.jpg", tmp_path / "john.smith.png")
    shutil.copy(photos / "hopper.jpg", tmp_path / "john.doe.jpg")
    out = tmp_path / "out"
    rc = cli.main(["avatar", str(tmp_path / "john.smith.png"), str(tmp_path / "john.doe.jpg"), "-o", str(out),
                   "--checkpoint", str(tiny_checkpoint)])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"john.{w}.{s}" for w in ("smith", "doe") for s in ("obj", "mtl", "png"))


def test_a_link_in_the_output_folder_is_never_written_through(tiny_checkpoint, photos, tmp_path, capsys):
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    (out / "hopper.png").symlink_to(outside / "victim.png")  # dangling: the target does not exist yet
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", str(out), "--checkpoint", str(tiny_checkpoint)])
    assert rc == 1 and "exists" in capsys.readouterr().err
    assert not (outside / "victim.png").exists()
    (outside / "victim.png").write_bytes(b"precious")
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", str(out), "--checkpoint", str(tiny_checkpoint),
                   "--force"])
    assert rc == 0
    assert not (out / "hopper.png").is_symlink() and (out / "hopper.png").read_bytes()[:4] == b"\x89PNG"
    assert (outside / "victim.png").read_bytes() == b"precious"  # the link was replaced, its target untouched


def test_atomic_write_checks_and_writes_in_one_step(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write(target, lambda t: open(t, "w").write("one"), overwrite=False)
    with pytest.raises(OverwriteError):
        atomic_write(target, lambda t: open(t, "w").write("two"), overwrite=False)
    assert target.read_text() == "one"
    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    with pytest.raises(OverwriteError):  # a dangling link counts as something in the way
        atomic_write(tmp_path / "link", lambda t: open(t, "w").write("x"), overwrite=False)

    def broken(t):
        open(t, "w").write("half")
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "one"  # the old file is whole, and no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "link"]


@pytest.mark.parametrize("where", ["file", "under-file", "unwritable"])
def test_unusable_output_folder_is_a_message(where, tiny_checkpoint, photos, tmp_path, capsys):
    (tmp_path / "plain").write_text("a file")
    out = {"file": tmp_path / "plain", "under-file": tmp_path / "plain" / "sub",
           "unwritable": "/sys/normface-test-out/sub"}[where]
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", str(out), "--checkpoint", str(tiny_checkpoint)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: -o") and "Traceback" not in err


def test_written_files_get_the_usual_permissions(tmp_path):
    """Temporary files are private (0o600); what is put in place gets the bits a plain ``open`` would give."""
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f.txt", lambda t: open(t, "w").write("x"))
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == usual_mode() == 0o666 & ~old
