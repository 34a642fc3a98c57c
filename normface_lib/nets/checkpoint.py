"""Checkpoints: a folder of safetensors files (tensors) and JSON (everything else); no pickle anywhere.

Layout of ``path_dir``::

    config.json              {"format": 2, "model_class": "Decoder", "model": <Decoder.get_config()>,
                              "config": <training config dict>, "optimizer": <optimizer state minus tensors>,
                              "extra": <extra minus tensors>, "files": {<file name>: <sha256>}}
    model.safetensors        the model's state_dict (weights and buffers)
    optimizer.safetensors    the optimizer's per-parameter tensors (if an optimizer was given)
    extra.safetensors        tensors found in ``extra`` (e.g. RNG states, if any)

Nested dicts/lists in ``optimizer``/``extra`` are stored as JSON with each tensor replaced by a reference
``{"__tensor__": key}`` into the matching safetensors file; tuples come back as lists.

**One unit.** A checkpoint is written whole into a hidden sibling folder and then swapped in by renaming, so a kill at
any moment leaves the previous checkpoint or the new one, never a mix (:func:`save_checkpoint`). A save never deletes
a file it did not write: a folder that holds other files is refused, or, with ``force``, gets only the checkpoint's
own files replaced (the description last). ``config.json``
records the sha256 of every other file; :func:`load_checkpoint` checks them (a truncated, tampered or half-replaced
file is refused with a message), checks that every weight is finite, and, if the folder itself is gone because a
save was interrupted between the two renames, uses the complete sibling it finds instead.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..core.errors import ChecksumError, InputError, NormFaceError, OverwriteError
from ..core.resources import WriteError, atomic_write, sha256_file, usual_mode, write_json
from .decoder import Decoder

FORMAT = 2
_FILES = ("config.json", "model.safetensors", "optimizer.safetensors", "extra.safetensors")
_NEW, _OLD = ".new-", ".old-"  # hidden siblings of a checkpoint folder while it is being replaced


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns (unpacks as ``model, config, optimizer_state, extra, meta``)."""
    model: torch.nn.Module
    config: dict
    optimizer_state: dict | None
    extra: dict
    meta: dict


def _split_tensors(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """Replace tensors in a nested structure by references; collect them in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {str(k): _split_tensors(v, tensors, f"{prefix}.{k}" if prefix else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, tensors, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _split_tensors(dataclasses.asdict(obj), tensors, prefix)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    raise InputError(f"cannot store a {type(obj).__name__} in a checkpoint at '{prefix}'; use tensors, numbers, "
                     "strings, lists and dicts.")


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def _optimizer_to_tree(state: dict) -> dict:
    # per-parameter state is keyed by int ids: JSON keys become strings, restored on load
    return {"state": {str(k): v for k, v in state["state"].items()}, "param_groups": state["param_groups"]}


def _tree_to_optimizer(tree: dict) -> dict:
    groups = []
    for g in tree["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": {int(k): v for k, v in tree["state"].items()}, "param_groups": groups}


def save_checkpoint(path_dir: str | os.PathLike, model: torch.nn.Module, config: Any = None,
                    optimizer: torch.optim.Optimizer | dict | None = None, extra: dict | None = None,
                    force: bool = False, meta: dict | None = None) -> Path:
    """Write a checkpoint folder as one unit (see the module docstring); return its path. Never deletes or changes a
    file it did not write.

    Args:
        path_dir: folder to write (its parent is created). A new folder, or one that holds only a checkpoint's
            files (:data:`CHECKPOINT_FILES`), is replaced as one unit (a kill leaves the old checkpoint or the new).
            An empty folder is written into. A folder that holds other files is refused unless ``force``; with
            ``force`` only the checkpoint's own files are replaced (the description last, so a kill midway leaves no
            loadable mix) and everything else is left as it is.
        model: the model (a DDP wrapper is unwrapped); its ``get_config()`` is stored when it has one, so that
            :func:`load_checkpoint` can rebuild it.
        config: training configuration (a dataclass or JSON-serialisable dict) stored under ``"config"``.
        optimizer: an optimizer or its ``state_dict()``.
        extra: anything else (tensors, numbers, strings, nested lists/dicts), e.g. step, scheduler state, RNG states.
        force: replace an existing checkpoint in ``path_dir``; without it :class:`OverwriteError` is raised.
        meta: more JSON entries for ``config.json`` (e.g. the calibrated identity threshold).

    Raises:
        OverwriteError: a checkpoint is there and not ``force``; the folder holds other files and not ``force``; a
        file is in the way. WriteError (an ``OSError``): the folder cannot be written (the message names it).
    """
    path = Path(path_dir)
    if os.path.lexists(path) and not path.is_dir():
        raise OverwriteError(f"{path} exists and is not a folder; choose another checkpoint path.")
    entries = sorted(os.listdir(path)) if path.is_dir() else []
    ours = [e for e in entries if e in CHECKPOINT_FILES]
    others = [e for e in entries if e not in CHECKPOINT_FILES and not _is_our_temp(e)]
    if ours and not force:
        raise OverwriteError(f"{path} already holds a checkpoint; pass force=True to replace it or choose a new "
                             "folder.")
    if others and not force:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise OverwriteError(f"{path} is not empty and is not a model folder (it holds {shown}); nothing was written. "
                             "Choose a new or empty folder, or pass force=True to write the model's files "
                             f"({', '.join(_FILES[:2])}) beside them (nothing else there is touched).")
    module = getattr(model, "module", model)
    doc: dict[str, Any] = {"format": FORMAT, "model_class": type(module).__name__,
                           "model": module.get_config() if hasattr(module, "get_config") else None,
                           "config": _split_tensors(config, {}, "config") if config is not None else None,
                           **(meta or {})}
    tensors = {"model.safetensors": {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}}
    if optimizer is not None:
        opt: dict[str, torch.Tensor] = {}
        sd = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
        doc["optimizer"] = _split_tensors(_optimizer_to_tree(sd), opt, "")
        tensors["optimizer.safetensors"] = opt
    ext: dict[str, torch.Tensor] = {}
    doc["extra"] = _split_tensors(extra or {}, ext, "")
    if ext:
        tensors["extra.safetensors"] = ext
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if others or path.is_symlink() or (path.is_dir() and not entries):
            _write_in_place(path, tensors, doc)  # the folder is the user's: only the checkpoint's files change
            return path
        new = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}{_NEW}"))
    except OSError as e:
        if isinstance(e, NormFaceError):
            raise
        raise WriteError(f"cannot write the checkpoint {path} ({e.strerror or e}); choose a folder you may write "
                         "in, with free space.", e.errno) from None
    try:
        doc["files"] = {}
        for name, t in tensors.items():
            save_file(t, str(new / name))
            doc["files"][name] = sha256_file(new / name)
        (new / "config.json").write_text(json.dumps(doc, indent=1))
        for f in new.iterdir():
            with open(f, "rb") as h:
                os.fsync(h.fileno())
        new.chmod(usual_mode(folder=True))
        _swap_in(new, path)
    except BaseException as e:
        shutil.rmtree(new, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, NormFaceError):
            raise WriteError(f"cannot write the checkpoint {path} ({e.strerror or e}); nothing was changed there. "
                             "Choose a folder you may write in, with free space.", e.errno) from e
        raise
    return path


#: The files a checkpoint folder may hold: all that :func:`save_checkpoint` ever replaces.
CHECKPOINT_FILES = frozenset(_FILES)


def _is_our_temp(name: str) -> bool:
    """A temporary file an interrupted :func:`atomic_write` of a checkpoint file left (``.model.safetensors.*.part``)."""
    return name.endswith(".part") and any(name.startswith(f".{f}.") for f in _FILES)


def _write_in_place(path: Path, tensors: dict[str, dict[str, torch.Tensor]], doc: dict) -> None:
    """Write a checkpoint into a folder that holds other files too: the old description goes first (from then on no
    mix of old and new files can be loaded), each file atomically, the new description last; checkpoint files the
    new one lacks are removed; nothing else is touched."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path / "config.json")
    doc["files"] = {}
    for name in _FILES[1:]:
        if name in tensors:
            atomic_write(path / name, lambda tmp, t=tensors[name]: save_file(t, tmp))
            doc["files"][name] = sha256_file(path / name)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / name)
    for e in os.listdir(path):
        if _is_our_temp(e):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / e)
    write_json(doc, path / "config.json")


def _swap_in(new: Path, path: Path) -> None:
    """Put the complete folder ``new`` at ``path`` (absent, or holding only a checkpoint's files): two renames, the
    old folder removed last."""
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}{_OLD}"))
        os.rmdir(old)
        os.rename(path, old)
    os.rename(new, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for stale in _siblings(path):
        shutil.rmtree(stale, ignore_errors=True)  # what an earlier save left when it was killed


def _siblings(path: Path) -> list[Path]:
    """The hidden sibling folders saves of ``path`` make (``.<name>.new-*`` first, then ``.<name>.old-*``)."""
    name = glob.escape(path.name)
    return sorted(path.parent.glob(f".{name}{_NEW}*")) + sorted(path.parent.glob(f".{name}{_OLD}*"))


def _read_doc(path: Path) -> dict:
    try:
        doc = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path / 'config.json'} is not readable JSON ({e}); the checkpoint is damaged: train it "
                         "again (normface train) or restore it from a copy.") from e
    if not isinstance(doc, dict):
        raise InputError(f"{path / 'config.json'} holds a {type(doc).__name__}, not a normface checkpoint "
                         "description; train the checkpoint again or restore it from a copy.")
    return doc


def _verify(path: Path, doc: dict) -> None:
    """Every file ``config.json`` lists has the recorded sha256 (format 2; format 1 recorded none)."""
    for name, want in (doc.get("files") or {}).items():
        f = path / name
        if not f.is_file():
            raise ChecksumError(f"{f} is missing from the checkpoint; train it again or restore it from a copy.")
        if sha256_file(f) != want:
            raise ChecksumError(f"{f} does not have the sha256 its config.json records: the file was changed, "
                                "truncated or replaced. Train the checkpoint again or restore it from a copy.")


def find_checkpoint(path_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint folder at ``path_dir``, or, when a save was interrupted between its two renames (the
    folder itself gone), the complete hidden sibling it left; ``None`` when there is none."""
    path = Path(path_dir)
    if (path / "config.json").exists():
        return path
    if path.parent.is_dir():
        for cand in _siblings(path):
            try:
                doc = _read_doc(cand)
                _verify(cand, doc)
            except (InputError, ChecksumError, OSError):
                continue
            if doc.get("files"):
                return cand
    return None


def steps_left(path_dir: str | os.PathLike) -> int:
    """Training steps the checkpoint folder ``path_dir`` (:func:`find_checkpoint`'s answer) still lacks: its
    config's ``steps`` minus the ``step`` it stopped at; 0 for a finished run, for a saved model without training
    state, and for a description too damaged to tell (:func:`load_checkpoint` then says what is wrong)."""
    try:
        doc = _read_doc(Path(path_dir))
        step, steps = (doc.get("extra") or {}).get("step"), (doc.get("config") or {}).get("steps")
        return max(0, int(steps) - int(step)) if step is not None and steps is not None else 0
    except (InputError, ValueError, TypeError, AttributeError):
        return 0


def load_checkpoint(path_dir: str | os.PathLike, model: torch.nn.Module | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Args:
        path_dir: the checkpoint folder.
        model: a module to load the weights into; None rebuilds a :class:`normface_lib.nets.decoder.Decoder` from the
            stored config (other model classes must be passed in).
        map_location: device for the tensors.

    Returns:
        :class:`Checkpoint` ``(model, config, optimizer_state, extra, meta)``: the model in eval mode with the weights
        loaded, the training config dict (or None), the optimizer ``state_dict`` ready for
        ``optimizer.load_state_dict`` (or None), the ``extra`` dict with its tensors restored, and the other
        entries of ``config.json`` (``meta``).

    Raises:
        FileNotFoundError: no checkpoint there. InputError: a damaged description, a model of another class or shape,
        non-finite weights. ChecksumError: a file differs from the one that was saved.
    """
    requested = Path(path_dir)
    path = find_checkpoint(requested)
    if path is None or not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"No checkpoint in {requested} (config.json and model.safetensors expected); train one "
                                "with `normface train` (normface_lib.training.train) or check the path.")
    doc = _read_doc(path)
    if doc.get("format") not in (1, FORMAT):
        raise InputError(f"{path}: checkpoint format {doc.get('format')!r} is not supported (expected {FORMAT}).")
    _verify(path, doc)
    device = str(map_location)
    if model is None:
        if doc.get("model_class") != "Decoder" or not isinstance(doc.get("model"), dict):
            raise InputError(f"{path} holds a {doc.get('model_class')}; pass model= an instance of it to load it.")
        try:
            model = Decoder.from_config(doc["model"])
        except (TypeError, KeyError, ValueError) as e:
            raise InputError(f"{path / 'config.json'}: the model description does not fit this version of "
                             f"normface ({e}); train the checkpoint again.") from e
    state = _load_tensors(path / "model.safetensors", device)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(f"{path / 'model.safetensors'} holds NaN or inf values in {bad[:3]}: training diverged or "
                         "the file is damaged; train again with a lower learning rate.")
    module = getattr(model, "module", model)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(f"{path}: the weights do not fit the given model ({e}); build the model from the "
                         "checkpoint's config or pass model=None.") from e
    module.to(map_location).eval()
    opt_state = None
    if doc.get("optimizer") is not None:
        t = _load_tensors(path / "optimizer.safetensors", device) if (path / "optimizer.safetensors").exists() else {}
        opt_state = _tree_to_optimizer(_join_tensors(doc["optimizer"], t))
    t = _load_tensors(path / "extra.safetensors", "cpu") if (path / "extra.safetensors").exists() else {}
    extra = _join_tensors(doc.get("extra") or {}, t)
    meta = {k: v for k, v in doc.items() if k not in ("model", "config", "optimizer", "extra")}
    return Checkpoint(model, doc.get("config"), opt_state, extra, meta)


def _load_tensors(f: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(f), device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{f} is not a readable safetensors file ({e}); the checkpoint is damaged: train it again "
                         "or restore it from a copy.") from e
