"""Every failure is one clear line naming the path it concerns and what to do: a photo that may not be read, an
output folder that may not be written (said before the model loads), a full disk, a cache that cannot be made, a
profile whose model needs training on data normface lacks, a URL; and ``--json`` stays JSON for every outcome."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from normface_lib import cli


def test_permissions_are_one_line_each_naming_the_path(unprivileged, photos, normface):
    """As a user without the rights: a photo that may not be read is that, not a format problem; an output folder
    that may not be written is one line before the model loads (the checkpoint given does not even exist)."""
    work, env = unprivileged
    shutil.copy(photos / "hopper.jpg", work / "secret.jpg")
    shutil.copy(photos / "astronaut.jpg", work / "astronaut.jpg")
    os.chmod(work / "secret.jpg", 0o000)
    r = normface(["normalize", str(work / "secret.jpg"), str(work / "astronaut.jpg"), "-o", str(work / "out"),
                  "--checkpoint", str(work / "model")], env=env, user=True)
    err = r.stderr.decode()
    assert r.returncode == 1 and "astronaut.jpg: 1 face" in r.stdout.decode()
    assert f"{work / 'secret.jpg'}: error:" in err and "permission denied" in err and "JPEG" not in err
    locked = work / "locked-out"
    locked.mkdir()
    os.chmod(locked, 0o555)
    r = normface(["normalize", str(work / "astronaut.jpg"), "-o", str(locked), "--checkpoint", str(work / "none")],
                 env=env, user=True)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.splitlines() == [f"error: -o {locked} cannot be written (permission denied: "
                                                      "choose a folder you may write in)."]
    assert list(locked.iterdir()) == []


def _can_mount_tmpfs(where) -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs '{where}'"],
                       capture_output=True)
    return r.returncode == 0


def test_a_full_disk_names_the_file_and_leaves_nothing(tiny_checkpoint, photos, tmp_path):
    """A real full disk: a 4 kB tmpfs (mounted in a private mount namespace) as the output folder."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _can_mount_tmpfs(disk):
        pytest.skip("mounting a small tmpfs (a real full disk) needs root with CAP_SYS_ADMIN and unshare")
    run = ("import os, sys\nfrom normface_lib import cli\nrc = cli.main(sys.argv[1:])\n"
           f"print('LEFT', sorted(f for _, _, fs in os.walk({str(disk)!r}) for f in fs), file=sys.stderr)\n"
           "sys.exit(rc)")
    cmd = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=4k tmpfs "$0" && shift && exec "$@"', str(disk),
           "placeholder", sys.executable, "-c", run, "normalize", str(photos / "hopper.jpg"), "--compare", "-o",
           str(disk / "out"), "--checkpoint", str(tiny_checkpoint)]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])})
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    (error,) = [line for line in lines if ": error:" in line]
    assert f"cannot write {disk / 'out'}/hopper" in error and "the disk is full" in error
    left = next(line for line in lines if line.startswith("LEFT"))
    assert ".part" not in left and "probe" not in left  # no partial file, no temporary file (the empty -o removed)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_a_cache_that_cannot_be_made_names_normface_cache(checkpoint, tiny_checkpoint, photos, tmp_path, monkeypatch,
                                                          capsys):
    (tmp_path / "file").write_text("in the way")
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path / "file" / "cache"))
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", str(tmp_path / "out"),
                   *(["--checkpoint", str(tiny_checkpoint)] if checkpoint else [])])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.splitlines()) == 1 and "Errno" not in err
    assert f"NORMFACE_CACHE={tmp_path / 'file' / 'cache'}" in err and "set NORMFACE_CACHE to a writable folder" in err


def test_a_profile_normface_cannot_train_says_what_to_pass(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path / "cache"))
    rc = cli.main(["normalize", str(photos / "hopper.jpg"), "-o", str(tmp_path / "out"), "--profile", "paper",
                   "--json"])
    captured = capsys.readouterr()
    assert rc == 1 and "--checkpoint DIR" in captured.err and "'paper'" in captured.err
    assert json.loads(captured.out)["error"].startswith("no trained 'paper' model")
    assert not (tmp_path / "cache" / "checkpoints" / "paper").exists() and not (tmp_path / "out").exists()


def test_a_url_is_named_as_given(tiny_checkpoint, photos, tmp_path, capsys):
    url = "https://example.com/face.jpg?size=2"
    rc = cli.main(["normalize", url, str(photos / "hopper.jpg"), "-o", str(tmp_path / "out"), "--checkpoint",
                   str(tiny_checkpoint), "--json"])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert rc == 1 and rows[0]["photo"] == url and "is a URL" in rows[0]["error"] and "download it" in rows[0]["error"]
    assert f"{url}: error: {url} is a URL" in captured.err and "faces" in rows[1]
