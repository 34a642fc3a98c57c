"""The ablations: the quick model's variants, each trained with one small, equal budget and measured on the same
held-out photos by every judge: the training data set's unseen people (clean and hard), the expression set, and ORL's
40 people (grey photos in; left out for the row trained on ORL).

Rows (:func:`ablation_configs`): the ``reference`` (the profile), ``"no-selection"`` (every training person's photo
as an input, frontal or not: the paper's frontal, neutral selection switched off), ``"embedding"`` (FaceNet's 512-D
embedding as the decoder's input instead of the 1792-D average-pool layer), ``"dlib-resnet"`` (dlib features; its
identity loss uses dlib), ``"no-identity-loss"``, ``"no-warp"`` (the CNN paints the image), ``"orl"`` (32 grey ORL
identities instead of the colour portraits), and the paper's optional encoders when their weights are present."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import data
from ..core.errors import InputError, MissingWeightsError
from ..encoders import load_encoder
from ..evaluation import evaluate_expressions, evaluate_split, face_colour_difference
from ..pipeline import NormFace
from ..training import PROFILES, profile_config

#: Training steps of every ablation run (one equal, small budget).
ABLATION_STEPS = 300
#: Other encoders named in the paper's feature ablation; used only if their weights are present.
OPTIONAL_ENCODERS = ("vggface", "facenet-vggface2")


def ablation_configs(profile: str = "quick", steps: int = ABLATION_STEPS, seed: int = 0) -> dict[str, Any]:
    """The ablation runs at one small, equal training budget (``steps``), all from ``profile``'s settings (see the
    module docstring for the rows).

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
    cfgs: dict[str, Any] = {"reference": profile_config(profile, **base),
                            "no-selection": profile_config(profile, **base, training_inputs="paired")}
    if p.get("encoder", "facenet-casia") == "facenet-casia":
        other = "embedding" if p.get("encoder_layer") in (None, "avgpool") else "avgpool"
        cfgs[other] = profile_config(profile, **base, encoder_layer=other)
    cfgs.update({"dlib-resnet": profile_config(profile, **base, encoder="dlib-resnet", encoder_layer=None),
                 "no-identity-loss": profile_config(profile, **base, identity_weight=0.0, identity_every=0),
                 "no-warp": profile_config(profile, **base, warp=False)})
    if p.get("dataset") != "orl":
        cfgs["orl"] = profile_config(profile, **base, dataset="orl", data_options={})
    for name in OPTIONAL_ENCODERS:
        try:
            load_encoder(name)
            cfgs[name] = profile_config(profile, **base, encoder=name, encoder_layer=None)
        except (MissingWeightsError, FileNotFoundError, InputError, KeyError, ValueError) as e:
            cfgs[name] = f"not available offline ({type(e).__name__})"
    return cfgs


def training_tables(cfg, sets) -> dict:
    """The training table an ablation config trains on: the study's own (``sets.tables``) when the data set and the
    training inputs are the profile's, else loaded (the ``"orl"`` and ``"no-selection"`` rows)."""
    if cfg.dataset == sets.dataset and cfg.training_inputs == sets.tables["train"].training_inputs:
        return {"train": sets.tables["train"]}
    return {"train": data.load_tables(cfg.dataset, cfg.size, (), mirror=cfg.mirror, inputs=cfg.training_inputs,
                                      **cfg.data_options)["train"]}


def measure_run(model, sets, n_boot: int, orl: bool = True) -> dict:
    """One trained model measured as every ablation row is: ``{"rows": {judge: {condition: {measure: [N]}}},
    "metrics": {judge: {condition: {measure: float}}}, "person": [N], "colour": [N] face colour difference
    (:func:`~normface_lib.evaluation.face_colour_difference`) on the clean unseen people, "expression": :func:`~normface_lib.evaluation.evaluate_expressions` rows and figures (normface only),
    "orl": {"rows", "metrics", "person"} (clean, when ``orl``)}``."""
    up = sets.tables["unseen_people"]
    r = up.photo_mask
    x, lm, person = up.images[r], up.landmarks[r], up.person[r]
    res = evaluate_split(model, None, x, lm, person, sets.judges, None, person, None, seed=0, n_boot=n_boot,
                         methods=("normface",), details=True)
    out = {"rows": {j: {c: res["_details"][c][j]["normface"] for c in ("clean", "hard")} for j in sets.judges},
           "metrics": {j: {c: res[c][j]["metrics"]["normface"] for c in ("clean", "hard")} for j in sets.judges},
           "colour": face_colour_difference(res["_details"]["clean"]["outputs"]["normface"], x),
           "person": person.numpy()}
    out["colour_mean"] = float(np.mean(out["colour"]))
    if "expressions" in sets.held_out:
        ex = evaluate_expressions(model, None, sets.held_out["expressions"], sets.judges, sets.indep, n_boot,
                                  methods=("normface",), details=True)
        rows = ex.pop("_rows")
        out["expression"] = {"ratio": rows["methods"]["normface"]["ratio"], "person": rows["person"],
                             "rows": {j: rows["methods"]["normface"][j] for j in sets.judges},
                             "expression_ratio": ex["expression_ratio"], "contrast_gain": ex["contrast_gain"]}
    if orl and "orl" in sets.held_out:
        t = sets.held_out["orl"]
        xo, lo, po = t.images, t.landmarks, t.person
        ro = evaluate_split(model, None, xo, lo, po, sets.judges, None, po, torch.arange(len(xo)),
                            conditions=("clean",), seed=0, n_boot=n_boot, methods=("normface",), details=True)
        out["orl"] = {"rows": {j: ro["_details"]["clean"][j]["normface"] for j in sets.judges}, "person": po.numpy(),
                      "metrics": {j: ro["clean"][j]["metrics"]["normface"] for j in sets.judges}}
    return out


def ablation_rows(profile: str, seed: int, steps: int, sets, root: Path, train_run: Callable, n_boot: int) -> dict:
    """Train (or reuse, through ``train_run(config, run_dir, tables)``) every ablation of one training seed under
    ``root/<name>`` and measure it (:func:`measure_run`): ``{name: {"status", "encoder", "dataset", "fit" (the
    run's texture L1 on its training inputs), **measure_run}}``."""
    out = {}
    for name, cfg in ablation_configs(profile, steps=steps, seed=seed).items():
        if isinstance(cfg, str):
            out[name] = {"status": cfg}
            continue
        run = train_run(cfg, root / name, training_tables(cfg, sets))
        model = NormFace.from_pretrained(run, device="cpu")
        fit = json.loads((Path(run) / "summary.json").read_text())["eval"]["train"]["texture_l1"]
        out[name] = {"status": "trained", "encoder": cfg.encoder, "layer": cfg.encoder_layer, "dataset": cfg.dataset,
                     "fit": fit, **measure_run(model, sets, n_boot, orl=cfg.dataset != "orl")}
    return out
