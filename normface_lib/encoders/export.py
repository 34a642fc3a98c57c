"""A frozen encoder's weights as one portable safetensors file (for machines without the packages the weights ship
in: a GPU node with torch only), in float32, float16, or int8 with one scale per output channel.

int8: every weight tensor with two or more dimensions (convolutions, fully connected layers) is stored as
``round(w / s)`` with ``s = max |w| / 127`` over each output channel (row), the scales beside it as float32
(``<name>.__scale``); one-dimensional tensors (biases, batch-norm statistics) as float16. Loading multiplies back.
:func:`exported_difference` measures what that costs in embeddings.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..core import resources
from ..core.errors import InputError

#: Formats of :func:`export_weights`.
EXPORT_DTYPES = ("fp32", "fp16", "int8")
_SCALE = ".__scale"


def export_weights(module: torch.nn.Module, path: str | os.PathLike, dtype: str = "int8",
                   metadata: dict | None = None) -> Path:
    """Write ``module``'s state dict to ``path`` (safetensors, atomically) in ``dtype`` (:data:`EXPORT_DTYPES`).
    ``metadata``: strings recorded in the file (e.g. the encoder's name and layer). Returns ``path``."""
    from safetensors.torch import save_file

    if dtype not in EXPORT_DTYPES:
        raise InputError(f"dtype must be one of {EXPORT_DTYPES}, got {dtype!r}.")
    out: dict[str, torch.Tensor] = {}
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        if not t.is_floating_point() or dtype == "fp32":
            out[name] = t
        elif dtype == "fp16" or t.dim() < 2:
            out[name] = t.half()
        else:
            w = t.float().reshape(t.shape[0], -1)
            scale = (w.abs().amax(1) / 127.0).clamp_min(1e-12)
            out[name] = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).reshape(t.shape)
            out[name + _SCALE] = scale
    meta = {"format": dtype, "normface": "encoders.export", **{k: str(v) for k, v in (metadata or {}).items()}}
    return resources.atomic_write(Path(path), lambda tmp: save_file(out, tmp, metadata=meta))


def load_exported(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state dict in float32, metadata)`` of a file :func:`export_weights` wrote. Raises
    :class:`FileNotFoundError` or :class:`InputError` (not such a file) saying what to do."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no exported encoder weights there; write them with normface pack.")
    state, scales = {}, {}
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata() or {})
        if meta.get("normface") != "encoders.export":
            raise InputError(f"{path} was not written by normface_lib.encoders.export_weights; export the encoder "
                             "again (normface pack).")
        for k in f.keys():
            (scales if k.endswith(_SCALE) else state)[k] = f.get_tensor(k)
    for k, t in state.items():
        if t.dtype == torch.int8:
            s = scales.get(k + _SCALE)
            if s is None:
                raise InputError(f"{path}: {k} is int8 but its scales are missing; export the encoder again.")
            state[k] = (t.float().reshape(t.shape[0], -1) * s[:, None]).reshape(t.shape)
        elif t.is_floating_point():
            state[k] = t.float()
    return state, meta


def exported_difference(reference, exported, images: torch.Tensor) -> dict[str, float]:
    """How far an exported encoder's outputs lie from the original's on ``images`` (``[N,3,S,S]`` canonical crops
    in ``[0,1]``): ``{"embedding_max", "embedding_mean"}`` (L2 distance between the unit embeddings; a same-person
    threshold is about 1) and ``{"feature_max_rel"}`` (largest feature difference over the largest feature)."""
    from .features import encode

    a, b = encode(reference, images), encode(exported, images)
    d = (a["embeddings"] - b["embeddings"]).norm(dim=1)
    rel = float((a["features"] - b["features"]).abs().max() / a["features"].abs().max().clamp_min(1e-12))
    return {"embedding_max": float(d.max()), "embedding_mean": float(d.mean()), "feature_max_rel": rel,
            "n_images": int(images.shape[0])}


def describe(path: str | os.PathLike) -> str:
    """One line about an exported file: format and size."""
    _, meta = load_exported(path)
    return f"{Path(path).name}: {meta.get('format')} ({Path(path).stat().st_size / 2 ** 20:.1f} MiB), " + \
        json.dumps({k: v for k, v in meta.items() if k not in ("format", "normface")})
