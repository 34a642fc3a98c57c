"""Checkpoints: a folder of safetensors files (tensors) and JSON (everything else); no pickle anywhere.

Layout of ``path_dir``::

    config.json              {"format": 1, "model_class": "Decoder", "model": <Decoder.get_config()>,
                              "config": <training config dict>, "optimizer": <optimizer state minus tensors>,
                              "extra": <extra minus tensors>}
    model.safetensors        the model's state_dict (weights and buffers)
    optimizer.safetensors    the optimizer's per-parameter tensors (if an optimizer was given)
    extra.safetensors        tensors found in ``extra`` (e.g. RNG states, if any)

Nested dicts/lists in ``optimizer``/``extra`` are stored as JSON with each tensor replaced by a reference
``{"__tensor__": key}`` into the matching safetensors file; tuples come back as lists.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file

from ..core.errors import InputError, OverwriteError
from ..core.resources import atomic_write
from .decoder import Decoder

FORMAT = 1
_FILES = ("config.json", "model.safetensors", "optimizer.safetensors", "extra.safetensors")


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns (unpacks as ``model, config, optimizer_state, extra``)."""
    model: torch.nn.Module
    config: dict
    optimizer_state: dict | None
    extra: dict


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
                    force: bool = False) -> Path:
    """Write a checkpoint folder (see the module docstring); return its path.

    Args:
        path_dir: folder to write (created).
        model: the model (a DDP wrapper is unwrapped); its ``get_config()`` is stored when it has one, so that
            :func:`load_checkpoint` can rebuild it.
        config: training configuration (a dataclass or JSON-serialisable dict) stored under ``"config"``.
        optimizer: an optimizer or its ``state_dict()``.
        extra: anything else (tensors, numbers, strings, nested lists/dicts), e.g. step, scheduler state, RNG states.
        force: replace an existing checkpoint in ``path_dir``; without it :class:`OverwriteError` is raised.
    """
    path = Path(path_dir)
    if path.exists() and not path.is_dir():
        raise OverwriteError(f"{path} exists and is not a folder; choose another checkpoint path.")
    if not force and path.is_dir() and any((path / f).exists() for f in _FILES):
        raise OverwriteError(f"{path} already holds a checkpoint; pass force=True to replace it or choose a new folder.")
    path.mkdir(parents=True, exist_ok=True)
    module = getattr(model, "module", model)
    meta: dict[str, Any] = {"format": FORMAT, "model_class": type(module).__name__,
                            "model": module.get_config() if hasattr(module, "get_config") else None,
                            "config": _split_tensors(config, {}, "config") if config is not None else None}
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    atomic_write(path / "model.safetensors", lambda p: save_file(state, p))
    opt_tensors: dict[str, torch.Tensor] = {}
    if optimizer is not None:
        sd = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
        meta["optimizer"] = _split_tensors(_optimizer_to_tree(sd), opt_tensors, "")
        atomic_write(path / "optimizer.safetensors", lambda p: save_file(opt_tensors, p))
    elif (path / "optimizer.safetensors").exists():
        os.unlink(path / "optimizer.safetensors")
    extra_tensors: dict[str, torch.Tensor] = {}
    meta["extra"] = _split_tensors(extra or {}, extra_tensors, "")
    if extra_tensors:
        atomic_write(path / "extra.safetensors", lambda p: save_file(extra_tensors, p))
    elif (path / "extra.safetensors").exists():
        os.unlink(path / "extra.safetensors")

    def _write_json(p):
        with open(p, "w") as f:
            json.dump(meta, f, indent=1)
    atomic_write(path / "config.json", _write_json)  # written last: its presence marks a complete checkpoint
    return path


def load_checkpoint(path_dir: str | os.PathLike, model: torch.nn.Module | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path_dir: the checkpoint folder.
        model: a module to load the weights into; None rebuilds a :class:`normface_lib.nets.decoder.Decoder` from the
            stored config (other model classes must be passed in).
        map_location: device for the tensors.

    Returns:
        :class:`Checkpoint` ``(model, config, optimizer_state, extra)``: the model in eval mode with the weights
        loaded, the training config dict (or None), the optimizer ``state_dict`` ready for
        ``optimizer.load_state_dict`` (or None), and the ``extra`` dict with its tensors restored.

    Raises:
        FileNotFoundError: no checkpoint there. InputError: a model of another class or shape.
    """
    path = Path(path_dir)
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"No checkpoint in {path} (config.json and model.safetensors expected); train one "
                                "with normface_lib.training.train (or `normface train`) or check the path.")
    meta = json.loads((path / "config.json").read_text())
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: checkpoint format {meta.get('format')} is not supported (expected {FORMAT}).")
    device = str(map_location)
    if model is None:
        if meta.get("model_class") != "Decoder" or meta.get("model") is None:
            raise InputError(f"{path} holds a {meta.get('model_class')}; pass model= an instance of it to load it.")
        model = Decoder.from_config(meta["model"])
    state = load_file(str(path / "model.safetensors"), device=device)
    module = getattr(model, "module", model)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(f"{path}: the weights do not fit the given model ({e}); build the model from the "
                         "checkpoint's config or pass model=None.") from e
    module.to(map_location).eval()
    opt_state = None
    if meta.get("optimizer") is not None:
        t = load_file(str(path / "optimizer.safetensors"), device=device) if (path / "optimizer.safetensors").exists() else {}
        opt_state = _tree_to_optimizer(_join_tensors(meta["optimizer"], t))
    t = load_file(str(path / "extra.safetensors"), device="cpu") if (path / "extra.safetensors").exists() else {}
    extra = _join_tensors(meta.get("extra") or {}, t)
    return Checkpoint(model, meta.get("config"), opt_state, extra)
