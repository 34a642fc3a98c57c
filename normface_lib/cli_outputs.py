"""What the ``normface`` command reads and writes: the photos named on the command line (:func:`expand_inputs`), the
files each photo gets (:class:`Outputs`: one name per file across the whole run, checked before writing), and the
lines it prints (:class:`Report`: one per photo, printed as soon as the photo is done, safe for any file name).

Split from :mod:`normface_lib.cli` (the verbs and the parser) to keep both short.
"""
from __future__ import annotations

import ctypes
import glob
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from .core.errors import InputError, NormFaceError, OverwriteError
from .core.resources import atomic_write, check_writable, missing_folders, name_max, remove_empty
from .faces import to_uint8_hwc
from .faces.images import unsupported_photo

#: Suffixes taken as photos inside a folder given as input (what PIL reads).
IMAGE_SUFFIXES = frozenset(e.lower() for e in Image.registered_extensions())

#: Errors that fail one photo, not the run.
PHOTO_FAILURES = (NormFaceError, OSError, ValueError)


# ---------------------------------------------------------------------------------------------- inputs
def expand_inputs(inputs: Sequence[str], recursive: bool = False,
                  problems: list[tuple[str, str]] | None = None) -> list[str]:
    """Photos named on the command line: files as given, folders as the image files in them (``recursive``: in
    their sub-folders too; hidden files left out), quoted globs expanded. Missing or unreadable files stay in the
    list (they are reported per photo); a path that cannot even be looked at (a name too long, a folder that cannot
    be entered) is kept the same way, never stopping the others.

    ``problems``, when given, receives ``(path, message)`` for what the list leaves out: a folder that cannot be
    read (its photos skipped), a photo in a format this installation cannot read (HEIC...), an empty folder, a
    pattern that matches nothing.
    """
    out: list[str] = []

    def problem(path: str, message: str) -> None:
        if problems is not None:
            problems.append((path, message))

    for x in inputs:
        try:
            is_dir = stat.S_ISDIR(os.stat(x).st_mode)
        except (OSError, ValueError):  # missing, a name too long, a folder that cannot be entered: per photo
            is_dir = False
        if is_dir:
            before = len(problems) if problems is not None else 0
            found = _photos_in(x, recursive, problem)
            if not found and (problems is None or len(problems) == before):  # an unreadable folder is said once
                problem(x, "no photos in this folder" + ("" if recursive else " (-r looks in its sub-folders too)")
                        + "; normface reads JPEG, PNG, TIFF, BMP, WebP, PGM... files.")
            out += found
        elif not os.path.lexists(x) and glob.has_magic(x) and not _URL.match(x):
            matched = sorted(glob.glob(x, recursive=recursive))
            if not matched:
                problem(x, "no file matches this pattern; check it (quote it to let normface expand it, and use -r "
                        "for '**').")
            out += matched
        else:
            out.append(x)
    return out


_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")  # a URL is kept whole (reported per photo), never globbed


def _photos_in(folder: str, recursive: bool, problem: Callable[[str, str], None]) -> list[str]:
    """The photo files in ``folder`` (sorted; hidden ones left out; symbolic links to folders not followed), each
    folder that cannot be read and each photo of a format this installation cannot read reported to ``problem``."""
    top = Path(folder)
    found: list[str] = []

    def unreadable(e: OSError) -> None:
        where = e.filename if isinstance(e.filename, str) else folder
        problem(where, f"cannot read this folder ({e.strerror or e}); its photos were skipped. Check its permissions "
                       "(ls -ld) or leave it out.")

    for root, dirs, files in os.walk(top, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                if os.path.isfile(path):
                    found.append(str(path))
            elif (why := unsupported_photo(path)) is not None:
                problem(str(path), why)
        if not recursive:
            break
    return sorted(found)


# ---------------------------------------------------------------------------------------------- outputs
class Outputs:
    """Where each photo's files go: ``OUTDIR/<name><suffix>``, written atomically and only over an existing file
    with ``--force``, never onto an input photo.

    Every file name is unique across the whole run, inputs and suffixes together: a photo whose files would take a
    name another photo of this run already has (``photo.jpg`` from two folders; ``p.jpg`` with ``--compare`` beside
    ``p_compare.jpg``; a two-face ``two.jpg`` beside ``two_face1.jpg``) gets ``<name>-2``, ``-3``..., chosen before
    any of its files is written. A name too long for the file system is shortened (``...~``).

    The folder is created and checked writable at once (before the model loads); :meth:`close` removes what was
    created when nothing was written there.

    Args:
        folder: the ``-o`` folder.
        photos: the run's photos, in order (photo ``k`` is ``photos[k]``).
        force: overwrite existing files (never an input photo).
        plain_names: names without blanks or ``#`` (replaced by ``_``), for files that name each other (OBJ/MTL).
    """

    def __init__(self, folder: str | os.PathLike, photos: Sequence[str], force: bool, plain_names: bool = False):
        if not str(folder).strip():
            raise InputError('-o "" names no folder; give the output folder (e.g. -o out, or -o . for the current '
                             "folder).")
        self.folder = Path(folder)
        self._made = missing_folders(self.folder)
        check_writable(self.folder, "-o")
        self.force = force
        self.photos = list(photos)
        self.plain_names = plain_names
        self.inputs = {self._key(p) for p in self.photos}
        self.limit = name_max(self.folder)
        self._claims: dict[str, int] = {}  # file name (case-folded) -> the photo that has it
        self._number: dict[int, int] = {}  # photo -> its n (1: the plain stem, else <stem>-n)

    @staticmethod
    def _key(p) -> str:
        return os.path.realpath(os.path.abspath(p))

    def _base(self, k: int, n: int, suffixes: Sequence[str]) -> str:
        """Photo ``k``'s name before the suffixes: its stem (``plain_names``: blanks and ``#`` as ``_``), with
        ``-n`` from ``n = 2`` on, the stem shortened (``...~``) where the longest file name would pass the limit."""
        stem = Path(self.photos[k]).stem if k < len(self.photos) else f"photo{k}"
        if self.plain_names:
            stem = "".join("_" if c.isspace() or c == "#" else c for c in stem)
        tail = "" if n == 1 else f"-{n}"
        room = self.limit - max((len(os.fsencode(s)) for s in suffixes), default=0) - len(tail)
        raw = os.fsencode(stem)
        if len(raw) > room:  # shorten, keeping whole UTF-8 characters
            raw = raw[:max(1, room - 1)]
            while raw and raw[-1] & 0xC0 == 0x80:
                raw = raw[:-1]
            if raw and raw[-1] >= 0xC0:
                raw = raw[:-1]
            stem = os.fsdecode(raw) + "~"
        return stem + tail

    def paths(self, k: int, suffixes: Sequence[str]) -> list[Path]:
        """The files photo ``k`` will write (one per suffix), checked before any is written: none may be a name
        another photo of this run has, none an input photo, none an existing file unless ``--force``. A second call
        for the same photo (once its faces are counted) replaces the names the first one reserved."""
        n = self._number.get(k, 1)
        while True:
            base = self._base(k, n, suffixes)
            names = [base + s for s in suffixes]
            if all(self._claims.get(nm.casefold(), k) == k for nm in names):
                break
            n += 1
        targets = [self.folder / nm for nm in names]
        for t in targets:
            if self._key(t) in self.inputs:
                raise InputError(f"{t} is one of the input photos; writing there would destroy it, with or without "
                                 "--force. Choose another -o folder.")
            if os.path.lexists(t) and not self.force:
                raise OverwriteError(f"{t} exists; pass --force to overwrite it or choose another -o folder.")
        self._claims = {nm: j for nm, j in self._claims.items() if j != k}
        self._claims.update((nm.casefold(), k) for nm in names)
        self._number[k] = n
        return targets

    def save_png(self, image: torch.Tensor, path: Path) -> Path:
        """Write ``[3,H,W]`` float in ``[0,1]`` as a PNG, atomically."""
        arr = to_uint8_hwc(image)
        return atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"), overwrite=self.force)

    def close(self) -> None:
        """Remove the folders this run created for ``-o`` if nothing was written in them (a failed run leaves no
        empty folder)."""
        remove_empty(self._made)


def _libc() -> Any:
    """The C library when it is glibc (``mallopt``, ``malloc_trim``), else ``None``."""
    global _LIBC
    if _LIBC is None:
        try:
            lib = ctypes.CDLL(None)
            _LIBC = lib if hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else False
        except OSError:
            _LIBC = False
    return _LIBC or None


_LIBC: Any = None
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def steady_memory() -> None:
    """Keep a long run's memory flat in the number of photos (glibc; a no-op elsewhere). glibc serves large blocks
    from its heap once a few have been freed (it raises its mmap threshold), and the tensors of successive batches,
    of other sizes each time (a detector's candidates), fragment that heap: the peak crept up batch after batch
    although nothing is kept. A fixed threshold (1 MiB) gives every large tensor its own mapping, returned to the
    system when freed (measured: benchmarks/normalize_memory.py; no slower)."""
    if (libc := _libc()) is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def release_memory() -> None:
    """Give the small blocks freed by a finished batch back to the system (glibc's ``malloc_trim``)."""
    if (libc := _libc()) is not None:
        libc.malloc_trim(0)


# ---------------------------------------------------------------------------------------------- lines
def shown(text: str) -> str:
    """``text`` as it can be printed anywhere: bytes of a file name that are not UTF-8 (``caf\\xe9.jpg``, which
    Python carries as lone surrogates) written as ``\\xe9``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that did not come from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean(obj: Any) -> Any:
    if isinstance(obj, str):
        return shown(obj)
    if isinstance(obj, dict):
        return {shown(str(k)): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def emit(text: str, stream=None) -> None:
    """Print one line on ``stream`` (default stdout) and flush it, whatever the names in it and the stream's
    encoding."""
    stream = stream if stream is not None else sys.stdout
    enc = getattr(stream, "encoding", None) or "utf-8"
    stream.write(shown(text).encode(enc, "backslashreplace").decode(enc) + "\n")
    stream.flush()


def error_record(photo: str | None, error: BaseException | str) -> dict:
    """The JSON object of a failure: ``{"photo": ..., "error": "Type: message"}`` (no ``photo`` for the run's)."""
    what = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return ({} if photo is None else {"photo": photo}) | {"error": what}


class Report:
    """The lines of a run, each printed when its photo is done: on stdout one line (``--json``: one JSON object) per
    photo that went through, on stderr ``PHOTO: error: ...`` per failure (with ``--json`` also its object on
    stdout). Nothing is kept but the count of failures."""

    def __init__(self, as_json: bool = False):
        self.as_json = as_json
        self.failures = 0

    def done(self, line: str | dict) -> None:
        emit(json.dumps(_clean(line)) if self.as_json else line)

    def failed(self, photo: str, error: BaseException | str) -> None:
        self.failures += 1
        if self.as_json:
            emit(json.dumps(_clean(error_record(photo, error))))
        emit(f"{photo}: error: {error}", sys.stderr)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0
