"""``normface pack``: a profile's data set as a portable training pack (:mod:`normface_lib.data.pack`) for a machine
without the face tooling, and what its exported encoder costs, measured on real photos."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from . import data
from .core.errors import InputError
from .encoders import load_encoder
from .training import profile_config

#: Held-out sets a pack carries by default (ORL's 400 grey photos stay home: the 64-MiB budget of a lent GPU machine).
DEFAULT_HELD_OUT = ("expressions",)


def pack_profile(out: str | os.PathLike, profile: str = "paper", held_out: Sequence[str] = DEFAULT_HELD_OUT,
                 encoder_dtype: str = "int8", quality: int = 92, force: bool = False, **overrides: Any) -> Path:
    """Write the pack of ``profile`` (with ``overrides`` of its config: ``dataset``, ``size``, ``data_root``...) to
    ``out``: its training table and unseen people (unmirrored; mirrored on reading), the ``held_out`` sets, the
    encoder's weights in ``encoder_dtype``, its training features, and how far the exported encoder's embeddings lie
    from the original's on the 400 ORL photos. Returns ``out``."""
    config = profile_config(profile, **overrides)
    if config.dataset == "pack":
        raise InputError("a pack is written from a data set, not from another pack; choose --dataset.")
    tables = data.load_tables(config.dataset, config.size, None, mirror=False, data_root=config.data_root,
                              inputs=config.training_inputs, **config.data_options)
    tables = {k: t.materialize(t.input_rows) if getattr(t, "streamed", False) else t for k, t in tables.items()}
    ms = tables["train"].mean_shape
    held = {name: data.held_out_table(name, config.size, ms) for name in held_out}
    encoder = load_encoder(config.encoder, layer=config.encoder_layer, device="cpu")
    check = data.held_out_table("orl", config.size, ms).images
    settings = {"profile": profile, "dataset": config.dataset, "size": config.size, "mirror": config.mirror,
                "training_inputs": config.training_inputs, "encoder": config.encoder, "layer": config.encoder_layer,
                "held_out": list(held_out), "quality": quality, "data_options": config.data_options}
    return data.write_pack(out, tables, held, encoder, encoder_dtype, quality, check, settings, force)
