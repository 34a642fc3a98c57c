"""Paths a careful or a hostile user gives: one bad path never stops the others, what is left out is said, nothing
found is said by every verb, and a failed start leaves nothing behind. Runs that need permissions to bite run as a
user without root's rights (``unprivileged``)."""
import json
import os
import shutil

import pytest

from normface_lib import cli


def test_a_name_too_long_never_stops_the_others(tiny_checkpoint, photos, tmp_path, capsys):
    too_long = str(tmp_path / ("n" * 300 + ".jpg"))
    rc = cli.main(["normalize", too_long, str(photos / "hopper.jpg"), "-o", str(tmp_path / "out"), "--checkpoint",
                   str(tiny_checkpoint)])
    captured = capsys.readouterr()
    assert rc == 1 and "hopper.jpg: 1 face" in captured.out
    assert f"{too_long}: error:" in captured.err and "longer than the file system allows" in captured.err
    assert "Traceback" not in captured.err and (tmp_path / "out" / "hopper.png").exists()


def test_a_folder_that_cannot_be_entered_never_stops_the_others(unprivileged, photos, normface):
    """As a user who may not enter ``locked/``: its photo (named directly) and its sub-folder (under -r) are one line
    each, naming the path and the permission; the good photos beside them go through."""
    work, env = unprivileged
    for d in ("locked", "tree/open", "tree/shut"):
        (work / d).mkdir(parents=True)
    shutil.copy(photos / "astronaut.jpg", work / "astronaut.jpg")
    shutil.copy(photos / "hopper.jpg", work / "locked" / "photo.jpg")
    shutil.copy(photos / "hopper.jpg", work / "tree" / "open" / "a.jpg")
    shutil.copy(photos / "astronaut.jpg", work / "tree" / "shut" / "b.jpg")
    for d in ("locked", "tree/shut"):
        os.chmod(work / d, 0o000)
    os.chmod(work / "tree", 0o777)
    os.chmod(work / "tree" / "open", 0o777)
    r = normface(["normalize", str(work / "locked" / "photo.jpg"), str(work / "astronaut.jpg"),
                  str(work / "tree"), "-r", "-o", str(work / "out"), "--checkpoint", str(work / "model"), "--json"],
                 env=env, user=True)
    err = r.stderr.decode()
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert r.returncode == 1 and "Traceback" not in err, err[-2000:]
    assert sorted(os.path.basename(x["photo"]) for x in rows if "faces" in x) == ["a.jpg", "astronaut.jpg"]
    failed = {x["photo"]: x["error"] for x in rows if "error" in x}
    assert set(failed) == {str(work / "locked" / "photo.jpg"), str(work / "tree" / "shut")}
    assert "permission denied" in failed[str(work / "locked" / "photo.jpg")]
    assert "skipped" in failed[str(work / "tree" / "shut")] and "Permission denied" in failed[str(work / "tree" / "shut")]
    assert "JPEG" not in err  # a permission problem is not called a format problem


@pytest.mark.parametrize("verb", ["normalize", "correct-colour", "avatar"])
@pytest.mark.parametrize("what", ["empty folder", "glob", "heic only"])
def test_nothing_found_is_said_by_every_verb(verb, what, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    if what == "heic only":
        (src / "phone.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    arg = str(src / "*.jpg") if what == "glob" else str(src)
    rc = cli.main([verb, arg, "-o", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert rc == 1 and "no photos found" in err and "Traceback" not in err
    if what == "heic only":
        assert "phone.HEIC: error: HEIC photos need a plugin" in err and "pillow-heif" in err
    else:
        assert f"{arg}: error:" in err
    assert not (tmp_path / "out").exists()


def test_a_fifo_is_refused_and_never_hangs_the_run(tiny_checkpoint, photos, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.jpg")
    rc = cli.main(["normalize", str(tmp_path / "pipe.jpg"), str(photos / "hopper.jpg"), "-o", str(tmp_path / "out"),
                   "--checkpoint", str(tiny_checkpoint)])
    captured = capsys.readouterr()
    assert rc == 1 and "hopper.jpg: 1 face" in captured.out
    assert "pipe.jpg is a named pipe (FIFO) that nothing writes to" in captured.err


def test_an_empty_output_name_is_refused(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", "", "--checkpoint", str(tmp_path / "none")])
    assert rc == 1 and '-o "" names no folder' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("verb", ["normalize", "avatar"])
def test_a_failed_model_load_leaves_no_output_folder(verb, photos, tmp_path, capsys):
    rc = cli.main([verb, str(photos / "hopper.jpg"), "-o", str(tmp_path / "new" / "out"), "--checkpoint",
                   str(tmp_path / "no-model"), *(["--json"] if verb == "normalize" else [])])
    captured = capsys.readouterr()
    assert rc == 1 and "normface train" in captured.err and not (tmp_path / "new").exists()
    if verb == "normalize":  # --json: stdout is JSON whatever happens
        (row,) = [json.loads(line) for line in captured.out.splitlines()]
        assert "normface train" in row["error"]
