"""normface_lib.core.resources, the paths and writes under everything: any name the file system allows is written,
and a write that fails names the file (never its temporary file), says why and leaves nothing behind."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import normface_lib
from normface_lib.core import resources
from normface_lib.core.resources import WriteError, atomic_write, cache_dir, check_writable


def test_the_longest_legal_names_are_written(tmp_path):
    for name in ("x" * 251 + ".png", "xé" + "é" * 124 + ".png"):  # 255 bytes: one more is refused by the system
        assert len(name.encode()) == 255
        atomic_write(tmp_path / name, lambda t: Path(t).write_text("ok"))
        assert (tmp_path / name).read_text() == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x" * 251 + ".png", "xé" + "é" * 124 + ".png"])
    with pytest.raises(WriteError, match="256 bytes, longer than the 255 the file system allows") as e:
        atomic_write(tmp_path / ("y" * 252 + ".png"), lambda t: Path(t).write_text("no"))
    assert str(tmp_path) in str(e.value) and len(list(tmp_path.iterdir())) == 2


def test_a_failed_write_names_the_file_and_leaves_nothing(tmp_path):
    """Real failures: a file-size limit (``ulimit -f``, set in a child process: EFBIG) and a file in the way of the
    folder (ENOTDIR, whatever the user's rights)."""
    code = ("import resource, sys\nfrom pathlib import Path\nfrom normface_lib.core.resources import atomic_write\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
            "try:\n    atomic_write(sys.argv[1], lambda t: Path(t).write_bytes(bytes(5000)))\n"
            "except OSError as e:\n    print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.bin")], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(normface_lib.__file__).parents[1])})
    assert r.stdout.startswith(f"WriteError cannot write {tmp_path / 'big.bin'} (the file is larger than"), r.stderr
    assert ".part" not in r.stdout and list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(WriteError) as e:
        atomic_write(tmp_path / "file" / "out.png", lambda t: Path(t).write_text("x"))
    assert str(e.value).startswith(f"cannot write {tmp_path / 'file' / 'out.png'} (a file is in the way")
    assert isinstance(e.value, OSError) and e.value.errno is not None  # still caught as an OSError
    with pytest.raises(WriteError, match="^-o .*: a file is in the way"):
        check_writable(tmp_path / "file", "-o")


def test_a_cache_that_cannot_be_made_names_normface_cache(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("in the way")
    monkeypatch.setenv("NORMFACE_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(WriteError) as e:
        cache_dir("weights")
    assert f"NORMFACE_CACHE={tmp_path / 'file' / 'cache'}" in str(e.value) and "[Errno" not in str(e.value)


def test_empty_folders_made_for_nothing_are_removed_and_nothing_else(tmp_path):
    made = resources.missing_folders(tmp_path / "a" / "b" / "c")
    assert made == [tmp_path / "a" / "b" / "c", tmp_path / "a" / "b", tmp_path / "a"]
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "keep.txt").write_text("mine")
    resources.remove_empty(made)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["keep.txt"]
