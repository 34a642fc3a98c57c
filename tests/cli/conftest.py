"""Helpers of the command-line tests: the command run as a real process (as the user runs it, optionally as a user
without root's rights, so that permissions bite even when the tests run as root), and a two-face photo."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _normface(args, env=None, cwd=None, user=False, timeout=600) -> subprocess.CompletedProcess:
    """``python -m normface_lib.cli ARGS`` in a fresh process; stdout and stderr as bytes (file names in them may not
    be UTF-8). ``args`` may hold bytes (file names as the file system has them). ``user``: run as a user without
    root's rights (``nobody``, through ``setpriv``) when the tests run as root."""
    cmd = [sys.executable, "-m", "normface_lib.cli", *args]
    if user and os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(cmd, capture_output=True, env=full, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="session")
def normface():
    """``normface(args, env=None, cwd=None, user=False)``: the command in a fresh process (see :func:`_normface`)."""
    return _normface


@pytest.fixture
def unprivileged(tiny_checkpoint):
    """A world-accessible work folder for runs as a user without root's rights (``normface(..., user=True)``), with
    a copy of the tiny checkpoint (``<dir>/model``) and a cache that user may write (``env``). Skipped, saying why,
    when the tests run as root and ``setpriv`` (util-linux) is missing."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to bite")
    work = Path(tempfile.mkdtemp(prefix="normface-user-"))
    os.chmod(work, 0o777)
    shutil.copytree(tiny_checkpoint, work / "model")
    (work / "cache").mkdir()
    for d, _, files in os.walk(work):
        os.chmod(d, 0o777)
        for f in files:
            os.chmod(Path(d) / f, 0o666)
    env = {"NORMFACE_CACHE": str(work / "cache"), "HOME": str(work), "MPLCONFIGDIR": str(work / "cache")}
    try:
        yield work, env
    finally:
        for d, dirs, _ in os.walk(work):  # what the test locked, opened again so it can be removed
            for x in dirs:
                os.chmod(Path(d) / x, 0o777)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def two_faces(photos, tmp_path_factory):
    """One photo with two faces side by side (Hopper and Collins, public domain), at the same height."""
    from PIL import Image

    a, b = (Image.open(photos / n).convert("RGB") for n in ("hopper.jpg", "astronaut.jpg"))
    h = 400
    a, b = (im.resize((round(im.width * h / im.height), h)) for im in (a, b))
    both = Image.new("RGB", (a.width + b.width, h))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    path = tmp_path_factory.mktemp("two") / "two.jpg"
    both.save(path)
    return path
