"""One trained run, everything notebook 03 reports (``results/<profile>/metrics.json``): :func:`evaluate_run` runs
:func:`~normface_lib.evaluation.protocol.evaluate_model` on the training data set's unseen people and the other data
sets' held-out people, the robustness sweep (:func:`robustness`), colour correction against ground truth
(:func:`~normface_lib.evaluation.applications.colour_correction_benchmark`) and the training block. The seed study
calls the same function for every training seed, so that the bands a rerun is checked against are measured on exactly
these figures."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..faces import DEFAULT_STRENGTH, perturb
from ..nets import decode
from .applications import COLOUR_METHODS, colour_correction_benchmark
from .judges import Judge
from .metrics import bootstrap_ci, rank1
from .protocol import _features, evaluate_model
from .report import training_block


def robustness(model, images: torch.Tensor, person: torch.Tensor, judge: Judge, gallery: torch.Tensor,
               gallery_person: torch.Tensor, exclude: torch.Tensor | None,
               kinds: Sequence[str] = ("occluder", "light", "blur", "grey", "rotation"),
               strengths: Mapping[str, Sequence[float]] | None = None, seed: int = 0,
               n_boot: int = 1000, details: bool = False) -> dict:
    """Identity preservation of normface vs align-only as each perturbation grows.

    Args:
        model: NormFace. images ``[N,3,S,S]`` clean crops in [0,1] (their landmarks are not needed: align-only is not
            part of this sweep); person ``[N]``; judge; gallery ``[G,E]`` clean gallery embeddings and its labels;
            exclude as in :func:`rank1`.
        kinds: perturbation kinds; strengths: kind → list of strengths (default: 0, ½ and 1× the default).

    Returns:
        ``{kind: [{"strength", "mean_distance", "mean_distance_ci", "rank1", "rank1_ci", "input_rank1"}, ...]}``,
        where distances are between the output and the *clean* input and ``input_rank1`` identifies the perturbed
        input itself (how much the perturbation hurts the judge before any normalization). With ``details``, each
        row also holds ``"_rows"``: ``{"distance", "rank1", "input_rank1"}`` ``[N]`` float64 per-photo values (keys
        starting with ``_`` are left out of ``metrics.json``).
    """
    strengths = strengths or {k: [0.0, DEFAULT_STRENGTH[k] / 2, DEFAULT_STRENGTH[k]] for k in kinds}
    ref = judge.embed(images)
    res = {}
    for kind in kinds:
        rows = []
        for s in strengths[kind]:
            x = perturb(images, kind, s, seed=seed)
            out = decode(model.decoder, _features(model, x))["image"]
            e_out, e_in = judge.embed(out), judge.embed(x)
            d = (e_out.double() - ref.double()).norm(dim=1)
            c = rank1(e_out, person, gallery, gallery_person, exclude).double()
            ci_in = rank1(e_in, person, gallery, gallery_person, exclude).double()
            row = {"strength": float(s), "mean_distance": float(d.mean()),
                   "mean_distance_ci": list(bootstrap_ci(d, person, n_boot, seed=seed)),
                   "rank1": float(c.mean()), "rank1_ci": list(bootstrap_ci(c, person, n_boot, seed=seed)),
                   "input_rank1": float(ci_in.mean())}
            if details:
                row["_rows"] = {"distance": d, "rank1": c, "input_rank1": ci_in}
            rows.append(row)
        res[kind] = rows
    return res


#: The robustness sweep of a run: each perturbation at half and at its full default strength.
ROBUSTNESS_KINDS = ("occluder", "light", "blur", "rotation")
ROBUSTNESS_STRENGTHS = {k: (DEFAULT_STRENGTH[k] / 2, DEFAULT_STRENGTH[k]) for k in ROBUSTNESS_KINDS}


#: Photos of each person in the robustness sweep (the first ones of each person: the sweep multiplies the cost of
#: an evaluation by its eight settings).
ROBUSTNESS_PHOTOS_PER_PERSON = 2


def sweep_rows(table, per_person: int) -> torch.Tensor:
    """``[k]`` long: the first ``per_person`` real photos (``photo_mask``) of each person of ``table``, in row order."""
    seen: dict[int, int] = {}
    keep = []
    for i in torch.nonzero(table.photo_mask).flatten().tolist():
        p = int(table.person[i])
        if seen.get(p, 0) < per_person:
            keep.append(i)
            seen[p] = seen.get(p, 0) + 1
    return torch.tensor(keep, dtype=torch.long)


#: Held-out colour portraits of the colour-correction benchmark (a seeded sample: 6 casts each).
COLOUR_PHOTOS = 32


def colour_correction_block(bench: Mapping[str, Any], n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`~normface_lib.evaluation.applications.colour_correction_benchmark`'s ΔE as written to
    ``metrics.json``: ``{"delta_e": {method: {"value", "ci"}}`` (face pixels), ``"delta_e_photo"`` (whole photo),
    ``"per_cast": {cast: {method: ΔE}}``, ``"n_photos", "casts"}``; intervals over photos (one per person)."""
    photo = torch.tensor([i for i, _ in bench["cases"]])
    out: dict[str, Any] = {"n_photos": len(bench["photos"]), "casts": list(bench["casts"])}
    for region, key in (("face", "delta_e"), ("photo", "delta_e_photo")):
        out[key] = {m: {"value": float(np.mean(v)), "ci": list(bootstrap_ci(torch.from_numpy(v), photo, n_boot,
                                                                            seed=seed))}
                    for m, v in bench["delta_e"][region].items()}
    cast = np.array([c for _, c in bench["cases"]])
    out["per_cast"] = {c: {m: float(np.mean(bench["delta_e"]["face"][m][cast == c])) for m in COLOUR_METHODS}
                       for c in bench["casts"]}
    return out


def evaluate_run(model, run_dir: str | Path, tables: Mapping[str, Any], profile: str = "quick", seed: int = 0,
                 n_boot: int = 1000, lfw=None, judges: Mapping[str, Judge] | None = None,
                 held_out: Mapping[str, Any] | None = None, colour_photos: Sequence[tuple] | None = None,
                 details: bool = False) -> dict:
    """Everything notebook 03 reports about one trained run.

    Args:
        model: :class:`~normface_lib.pipeline.NormFace`. run_dir: its training run folder (holds ``summary.json``).
        tables, profile, seed, n_boot, lfw, judges, held_out: as in
            :func:`~normface_lib.evaluation.protocol.evaluate_model`.
        colour_photos: whole held-out colour photos for the colour-correction benchmark
            (:func:`normface_lib.data.colour_held_out_photos`; a seeded sample of :data:`COLOUR_PHOTOS` is used).
        details: keep per-row values and images (``"_details"``, ``"_baselines"``, ``"_judges"``, the sweep's rows,
            ``"_colour"`` the benchmark itself).

    Returns:
        The :func:`~normface_lib.evaluation.protocol.evaluate_model` figures, plus ``"robustness"`` (the sweep of
        :data:`ROBUSTNESS_STRENGTHS` with the independent judge, on the first held-out set whose people have several
        photos each: the unseen people, else ORL's), ``"colour_correction"`` (:func:`colour_correction_block`, when
        ``colour_photos``) and ``"training"`` (:func:`~normface_lib.evaluation.report.training_block`).
    """
    out = evaluate_model(model, tables, profile=profile, seed=seed, n_boot=n_boot, lfw=lfw, judges=judges,
                         held_out=held_out, details=True)
    judges = out["_judges"]
    j = judges[out["judge"]]
    name, table = ("unseen_people", tables["unseen_people"]) if out.get("invariance") is not None else \
        next(((k, t) for k, t in (held_out or {}).items() if out.get(k, {}).get("invariance") is not None),
             (None, None))
    if table is not None:
        rows = sweep_rows(table, ROBUSTNESS_PHOTOS_PER_PERSON)
        x, p = table.images[rows], table.person[rows]
        gallery, ex = j.embed(x), torch.arange(len(x))
        clean = robustness(model, x, p, j, gallery, p, ex, kinds=("occluder",), strengths={"occluder": (0.0,)},
                           seed=seed, n_boot=n_boot, details=details)["occluder"][0]
        clean.pop("strength")
        out["robustness"] = {"judge": j.name, "set": name, "n_photos": len(x), "clean": clean,
                             "curves": robustness(model, x, p, j, gallery, p, ex, kinds=ROBUSTNESS_KINDS,
                                                  strengths=ROBUSTNESS_STRENGTHS, seed=seed, n_boot=n_boot,
                                                  details=details)}
        if details:
            out["robustness"]["_person"] = p
    if colour_photos:
        g = torch.Generator().manual_seed(int(seed) + 31)
        pick = sorted(torch.randperm(len(colour_photos), generator=g)[:COLOUR_PHOTOS].tolist())
        bench = colour_correction_benchmark(model, [colour_photos[i] for i in pick], keep_images=4 if details else 0)
        out["colour_correction"] = colour_correction_block(bench, n_boot, seed)
        if details:
            out["_colour"] = bench
    out["training"] = training_block(run_dir)
    if not details:
        for k in ("_details", "_baselines", "_judges"):
            out.pop(k)
    return out
