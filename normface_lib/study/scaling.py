"""Beyond one split: every ORL person unseen once (k-fold over identities), the learning curve (how identity
preservation grows with the number of training identities, morphs on and off), and the paper's Figure 12 (input →
output distances with and without the identity loss, in squared L2, pooled over seeds).

Each function takes the study's trained-or-cached runs through ``train_run(config, run_dir, tables)`` and measures them
with :func:`normface_lib.evaluation.evaluate_split` on clean photos of unseen people; the units of every interval are
people (95 % percentile bootstrap, seeded).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .. import data
from ..encoders import cached_encode, load_encoder
from ..evaluation import (METHODS, Baselines, bootstrap_ci, evaluate_split, independent_judge, make_judge,
                          pixel_identity_contrast)
from ..pipeline import NormFace
from ..training import profile_config
from .ablations import ablation_configs
from .comparisons import MEASURES, to_numpy

#: Folds of the k-fold over ORL's 40 people (fold 0 holds out the default split's 8 people).
N_FOLDS = 5
#: Training identities of the learning curve, and its morph settings.
CURVE_PEOPLE = (4, 8, 16, 24, 32)
CURVE_MORPHS = ("bank", "off")


def _pooled_summary(rows: Mapping[str, np.ndarray], person: np.ndarray, n_boot: int) -> dict:
    groups = torch.from_numpy(np.asarray(person, dtype=np.int64))
    return {k: {"mean": float(v.mean()), "ci": list(bootstrap_ci(torch.from_numpy(v), groups, n_boot=n_boot, seed=0))}
            for k, v in rows.items()}


def _measure(model, train_table, up_table, judges: Mapping[str, Any], n_boot: int,
             methods: Sequence[str] = METHODS) -> dict:
    """Clean photos of ``up_table``'s people: per judge and method the per-photo rows of every identity measure,
    the inputs and each method's outputs (for the pixel identity contrast)."""
    r = up_table.photo_mask
    x, lm, person = up_table.images[r], up_table.landmarks[r], up_table.person[r]
    base = None
    if set(methods) - {"normface"}:
        base = Baselines(train_table, cached_encode(model.encoder, train_table.images)["features"], seed=0)
    res = evaluate_split(model, base, x, lm, person, judges, None, person, torch.arange(len(x)),
                         conditions=("clean",), seed=0, n_boot=n_boot, methods=methods, details=True)
    det = res["_details"]["clean"]
    return {"rows": {j: {m: {k: to_numpy(det[j][m][k]) for k in MEASURES} for m in methods} for j in judges},
            "inputs": x, "outputs": det["outputs"], "person": to_numpy(person).astype(np.int64),
            "contrast": res["clean"]["pixel_identity_contrast"]}


def kfold(profile: str, size: int, train_run: Callable, root: Path, main: Mapping[str, Any], n_boot: int,
          n_folds: int = N_FOLDS, seed: int = 0, log=print, **overrides: Any) -> dict:
    """Every person unseen once: for each fold, the profile's model (training seed ``seed``) trained without that
    fold's people and measured on them (judges calibrated on that fold's training people), pooled over the folds.

    ``main``: ``{"run": run dir, "tables": tables}`` of the study's seed-``seed`` main run, reused as fold 0 (the same
    split); ``overrides``: the main runs' config overrides (the same here). Returns ``{"n_folds", "n_people",
    "seed", "judges", "pooled": {judge: {method: {measure: {"mean", "ci"}}}}, "per_fold": [...],
    "pixel_identity_contrast": {method: {...}}}``: rank-1 is among each fold's own
    unseen people (chance ``n_folds / 40``), intervals over all the people; the pixel identity contrast compares
    people within a fold (strata), so that one fold's model differing from another's does not count.
    """
    rows: dict = {}
    per_fold, inputs, outputs, people = [], [], {m: [] for m in METHODS}, []
    for f in range(n_folds):
        if f == 0:
            tables, run = main["tables"], main["run"]
        else:
            tables = data.load_tables("orl", size, splits=("unseen_people",), mirror=True, fold=f, n_folds=n_folds)
            cfg = profile_config(profile, **{**overrides, "seed": seed, "eval_splits": (),
                                             "data_options": {"fold": f, "n_folds": n_folds}})
            run = train_run(cfg, root / f"fold{f}", {"train": tables["train"]})
        model = NormFace.from_pretrained(run, device="cpu")
        enc = model.encoder
        judges = {enc.name: make_judge(enc, tables["train"]),
                  independent_judge(enc.name): make_judge(load_encoder(independent_judge(enc.name)), tables["train"])}
        m = _measure(model, tables["train"], tables["unseen_people"], judges, n_boot)
        offset = f * 1000
        people.append(m["person"] + offset)
        inputs.append(m["inputs"])
        for k in METHODS:
            outputs[k].append(m["outputs"][k])
        for j, per_m in m["rows"].items():
            for meth, per_k in per_m.items():
                for k, v in per_k.items():
                    rows.setdefault(j, {}).setdefault(meth, {}).setdefault(k, []).append(v)
        per_fold.append({"fold": f, "unseen_people": list(tables["unseen_people"].people),
                         "normface": {j: {k: float(v.mean()) for k, v in m["rows"][j]["normface"].items()}
                                      for j in judges},
                         "thresholds": {j: judge.threshold for j, judge in judges.items()}})
        log(f"k-fold: fold {f} done")
    person = np.concatenate(people)
    pooled = {j: {meth: _pooled_summary({k: np.concatenate(v) for k, v in per_k.items()}, person, n_boot)
                  for meth, per_k in per_m.items()} for j, per_m in rows.items()}
    x = torch.cat(inputs)
    pt = torch.from_numpy(person).long()
    fold = pt // 1000  # each fold's model and baselines differ: between-person spread is measured within a fold
    contrast = {meth: pixel_identity_contrast(torch.cat(outputs[meth]), x, pt, n_boot=n_boot, seed=0, strata=fold)
                for meth in METHODS}
    return {"n_folds": n_folds, "n_people": int(len(np.unique(person))), "n_photos": int(len(person)), "seed": seed,
            "chance_rank1": 1.0 / (len(np.unique(person)) / n_folds), "judges": list(rows), "pooled": pooled,
            "per_fold": per_fold, "pixel_identity_contrast": contrast,
            "_rows": {"person": person, "rows": rows}}


def learning_curve(profile: str, size: int, steps: int, train_run: Callable, root: Path, judges: Mapping[str, Any],
                   n_boot: int, people: Sequence[int] = CURVE_PEOPLE, morphs: Sequence[str] = CURVE_MORPHS,
                   seed: int = 0, log=print) -> list[dict]:
    """Identity preservation and pixel identity contrast on the default split's unseen people against the number of
    training identities (a nested, seeded subset of the 32 training people) with morphs on (the profile's bank) and
    off, every run at the ablation budget ``steps`` with training seed ``seed``. The 32-people run with morphs is the
    study's ``reference`` ablation run. Returns a list of ``{"n_identities", "morphs", "n_train_photos", "metrics":
    {judge: {measure: {"mean", "ci"}}}, "pixel_identity_contrast": {...}}``."""
    ref = ablation_configs(profile, steps=steps, seed=seed)["reference"]
    everyone = len(data.orl_splits()["train_people"])
    out = []
    for n in people:
        tables = data.load_tables("orl", size, splits=("unseen_people",), mirror=True,
                                  **({} if n >= everyone else {"n_train_people": n}))
        for mo in morphs:
            over = {} if mo == ref.morphs else {"morphs": mo}
            if n < everyone:
                over["data_options"] = {"n_train_people": n}
            cfg = profile_config(profile, **{**ref.to_dict(), **over})
            name = "reference" if not over else f"curve-n{n}-{mo}"
            run = train_run(cfg, root / f"seed{seed}" / name, {"train": tables["train"]})
            model = NormFace.from_pretrained(run, device="cpu")
            m = _measure(model, tables["train"], tables["unseen_people"], judges, n_boot, methods=("normface",))
            out.append({"n_identities": n, "morphs": mo != "off", "morph_setting": mo,
                        "n_train_photos": int(tables["train"].photo_mask.sum()),
                        "metrics": {j: _pooled_summary(m["rows"][j]["normface"], m["person"], n_boot) for j in judges},
                        "pixel_identity_contrast": m["contrast"]["normface"]})
            log(f"learning curve: {n} identities, morphs {mo} done")
    return out


def curve_fit(curve: Sequence[Mapping], judge: str, measure: str = "rank1", morphs: bool = True) -> dict:
    """A straight line of ``measure`` against log2(identities) over the learning curve's points (one setting of
    morphs): slope per doubling, R², and whether the points support extrapolating it (every step up in identities
    improved the measure, the slope is positive and R² ≥ 0.9). The points are single runs: a reader should take the
    slope as descriptive."""
    pts = sorted((c["n_identities"], c["metrics"][judge][measure]["mean"]) for c in curve if c["morphs"] == morphs)
    x, y = np.log2([p[0] for p in pts]), np.array([p[1] for p in pts])
    slope, intercept = np.polyfit(x, y, 1)
    monotone = bool(np.all(np.diff(y) > 0))
    resid = y - (slope * x + intercept)
    r2 = 1.0 - float((resid ** 2).sum()) / max(float(((y - y.mean()) ** 2).sum()), 1e-12)
    return {"judge": judge, "measure": measure, "morphs": morphs, "slope_per_doubling": float(slope),
            "r2": r2, "monotone": monotone, "supports_extrapolation": bool(monotone and slope > 0 and r2 >= 0.9)}


def fig12(abl: Sequence[Mapping], judges: Mapping[str, Any], seeds: Sequence[int]) -> dict:
    """The paper's Figure 12 from the ablation runs (equal budgets): squared L2 input → output distances on clean
    photos of unseen people, with the identity loss (the ``reference`` row) and without it, pooled over ``seeds``,
    per judge, with each judge's calibrated threshold squared (same units). The FaceNet paper's 1.242 is NN2's
    squared-L2 threshold for another network and is recorded only as a reference."""
    from ..evaluation import FACENET_PAPER_THRESHOLD
    out = {"units": "squared_l2", "seeds": [int(s) for s in seeds], "condition": "clean",
           "with": "reference", "without": "no-identity-loss",
           "facenet_paper_nn2_threshold": FACENET_PAPER_THRESHOLD, "judges": {}}
    for j, judge in judges.items():
        w = np.concatenate([to_numpy(a["reference"]["rows"][j]["clean"]["mean_distance"]) ** 2 for a in abl])
        wo = np.concatenate([to_numpy(a["no-identity-loss"]["rows"][j]["clean"]["mean_distance"]) ** 2 for a in abl])
        thr = float(judge.threshold) ** 2
        out["judges"][j] = {"with_identity_loss": [float(v) for v in w],
                            "without_identity_loss": [float(v) for v in wo], "threshold": thr,
                            "frac_below_with": float((w < thr).mean()), "frac_below_without": float((wo < thr).mean()),
                            "median_with": float(np.median(w)), "median_without": float(np.median(wo))}
    return out
