"""The ablations: the quick model's variants (paired training instead of the paper's frontal, neutral inputs, other
encoder, no identity loss, no warp, and the paper's optional encoders when their weights are present), each trained
with one small, equal budget and measured on the unseen people by every judge."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..core.errors import InputError, MissingWeightsError
from ..encoders import load_encoder
from ..evaluation import evaluate_split
from ..pipeline import NormFace
from ..training import PROFILES, profile_config

#: Training steps of every ablation run (one equal, small budget).
ABLATION_STEPS = 400
#: Other encoders named in the paper's feature ablation; used only if their weights are present.
OPTIONAL_ENCODERS = ("vggface", "facenet-vggface2")


def ablation_configs(profile: str = "quick", steps: int = 150, seed: int = 0) -> dict[str, Any]:
    """The ablation runs at one small, equal training budget (``steps``), all from ``profile``'s settings.

    Rows: ``"reference"`` (the profile: the paper's frontal, neutral training inputs, FaceNet-CASIA features, identity
    loss, warp), ``"paired"`` (every photo of a training person mapped to its frontal target), ``"dlib-resnet"`` (dlib
    features; its identity loss uses dlib), ``"no-identity-loss"``, ``"no-warp"`` (the CNN paints the image), and
    the optional encoders ``"vggface"`` / ``"facenet-vggface2"`` (used only when their weights are present).

    Returns:
        name → :class:`~normface_lib.training.TrainConfig` (or, for an unavailable encoder, the string saying why).
    """
    if steps < 1:
        raise InputError(f"steps must be ≥ 1, got {steps}.")
    p = PROFILES[profile] if profile in PROFILES else None
    if p is None:
        raise InputError(f"unknown profile {profile!r}.")
    warm = max(1, int(round(p.get("warmup_steps", 50) * steps / p.get("steps", steps))))
    base = dict(steps=steps, warmup_steps=min(warm, steps - 1) if steps > 1 else 0, seed=seed,
                checkpoint_every=steps, eval_splits=())
    cfgs: dict[str, Any] = {
        "reference": profile_config(profile, **base),
        "paired": profile_config(profile, **base, training_inputs="paired"),
        "dlib-resnet": profile_config(profile, **base, encoder="dlib-resnet"),
        "no-identity-loss": profile_config(profile, **base, identity_weight=0.0, identity_every=0),
        "no-warp": profile_config(profile, **base, warp=False),
    }
    for name in OPTIONAL_ENCODERS:
        try:
            load_encoder(name)
            cfgs[name] = profile_config(profile, **base, encoder=name)
        except (MissingWeightsError, FileNotFoundError, InputError, KeyError, ValueError) as e:
            cfgs[name] = f"not available offline ({type(e).__name__})"
    return cfgs


def ablation_rows(profile: str, seed: int, steps: int, tables: Mapping[str, Any], judges: Mapping[str, Any],
                  root: Path, train_run: Callable, n_boot: int) -> dict:
    """Train (or reuse, through ``train_run(config, run_dir, tables)``) every ablation of one training seed under
    ``root/<name>`` and measure it on the unseen people, clean and hard, by every judge (``tables["train_paired"]``:
    the paired training table, for the ``"paired"`` row): ``{name: {"status",
    "encoder", "rows": {judge: {condition: per-photo metric rows}}, "metrics": {judge: {condition: metrics}}}}``."""
    up = tables["unseen_people"]
    r = up.photo_mask
    x, lm, person = up.images[r], up.landmarks[r], up.person[r]
    out = {}
    for name, cfg in ablation_configs(profile, steps=steps, seed=seed).items():
        if isinstance(cfg, str):
            out[name] = {"status": cfg}
            continue
        train = tables["train_paired"] if cfg.training_inputs == "paired" else tables["train"]
        run = train_run(cfg, root / name, {"train": train})
        model = NormFace.from_pretrained(run, device="cpu")
        res = evaluate_split(model, None, x, lm, person, judges, None, person, torch.arange(len(x)), seed=0,
                             n_boot=n_boot, methods=("normface",), details=True)
        out[name] = {"status": "trained", "encoder": cfg.encoder, "rows": {
            j: {cond: res["_details"][cond][j]["normface"] for cond in ("clean", "hard")} for j in judges},
            "metrics": {j: {cond: res[cond][j]["metrics"]["normface"] for cond in ("clean", "hard")} for j in judges}}
    return out
