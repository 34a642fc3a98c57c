"""Results stream: each photo's line is printed when the photo is done, before the next one is even read, so a run
stopped midway has named every file it finished (and keeps no results: memory stays flat, see
benchmarks/normalize_memory.py)."""
import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from normface_lib import cli

GUARD_S = 300  # a hang guard, not a timing: the line comes long before, or never


def _unread(fd: int) -> int:
    """Bytes written to a pipe and not read yet."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.parametrize("verb", ["normalize", "correct-colour"])
def test_a_line_is_printed_before_the_next_photo_is_read(verb, tiny_checkpoint, photos, tmp_path):
    """The second photo is a named pipe the test holds open without writing: the run can read it only once the test
    writes the photo, which the test does only after it has read the first photo's line."""
    pipe = tmp_path / "second.jpg"
    os.mkfifo(pipe)
    holder = os.open(pipe, os.O_RDWR)  # a writer with nothing written yet: reading the second photo waits
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "normface_lib.cli", verb, str(photos / "hopper.jpg"), str(pipe), "-o", str(out),
           "--checkpoint", str(tiny_checkpoint), *(["--batch", "1", "--json"] if verb == "normalize" else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])})
    try:
        ready, _, _ = select.select([proc.stdout], [], [], GUARD_S)
        assert ready, "no line while the second photo is pending: results are held back"
        first = proc.stdout.readline()
        assert "hopper.jpg" in first and (out / "hopper.png").exists()
        assert proc.poll() is None  # still running, waiting for the second photo
        data = memoryview((photos / "astronaut.jpg").read_bytes())
        while data:
            data = data[os.write(holder, data):]
        deadline = time.monotonic() + GUARD_S
        while _unread(holder) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the run reads the photo (closing the pipe before would discard what it holds)
    finally:
        os.close(holder)  # end of the photo
    rest, err = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 0, err[-2000:]
    assert "second.jpg" in rest and (out / "second.png").exists()
