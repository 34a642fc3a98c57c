"""Beyond one model: the learning curve (how identity preservation grows with the number of training identities,
morphs on and off, up to every identity the data set has, with the 32-grey-identity ORL model as a marked point)
and the paper's Figure 12 (input → output distances with and without the identity loss, in squared L2, pooled over
seeds).

Each function takes the study's trained-or-cached runs through ``train_run(config, run_dir, tables)`` and measures them
as the ablations are (:func:`~normface_lib.study.ablations.measure_run`, on the training data set's unseen people);
the units of every interval are people (95 % percentile bootstrap, seeded).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .. import data
from ..evaluation import FACENET_PAPER_THRESHOLD, bootstrap_ci
from ..pipeline import NormFace
from ..training import profile_config
from .ablations import ablation_configs, measure_run
from .comparisons import MEASURES, to_numpy

#: Training identities of the learning curve (capped at, and always ending with, every training identity there is),
#: and its morph settings.
CURVE_PEOPLE = (8, 32, 128)
CURVE_MORPHS = ("bank", "off")


def _pooled_summary(rows: Mapping[str, np.ndarray], person: np.ndarray, n_boot: int) -> dict:
    groups = torch.from_numpy(np.asarray(person, dtype=np.int64))
    rows = {k: to_numpy(v) for k, v in rows.items()}
    return {k: {"mean": float(v.mean()), "ci": list(bootstrap_ci(torch.from_numpy(v), groups, n_boot=n_boot, seed=0))}
            for k, v in rows.items()}


def _point(m: Mapping, sets, n_boot: int) -> dict:
    person = to_numpy(sets.tables["unseen_people"].person[sets.tables["unseen_people"].photo_mask]).astype(np.int64)
    pt = {"metrics": {j: _pooled_summary({k: m["rows"][j]["clean"][k] for k in MEASURES}, person, n_boot)
                      for j in sets.judges},
          "colour_difference": _pooled_summary({"v": m["colour"]}, person, n_boot)["v"]}
    if "expression" in m:
        pt["expression_ratio"] = m["expression"]["expression_ratio"]
    return pt


def learning_curve(profile: str, steps: int, train_run: Callable, root: Path, sets, n_boot: int,
                   people: Sequence[int] = CURVE_PEOPLE, morphs: Sequence[str] = CURVE_MORPHS, seed: int = 0,
                   orl_run: Mapping[str, Any] | None = None, log=print) -> list[dict]:
    """Identity preservation on the training data set's unseen people against the number of training identities (a
    nested, seeded subset of the training people: ``people`` capped at, and ending with, all of them) with morphs on
    (the profile's bank) and off, every run at the ablation budget ``steps`` with training seed ``seed``; the run with
    every identity and morphs is the study's ``reference`` ablation run. ``orl_run``: the ``"orl"`` ablation row
    (:func:`~normface_lib.study.ablations.ablation_rows`) of the same seed, added as a marked point
    (``"dataset": "orl"``).

    Returns a list of ``{"n_identities", "morphs", "source" ("real"), "dataset", "seeds", "n_train_photos", "metrics": {judge: {measure:
    {"mean", "ci"}}}, "colour_difference", "expression_ratio"}``.
    """
    ref = ablation_configs(profile, steps=steps, seed=seed)["reference"]
    everyone = int(sets.tables["train"].base_person[sets.tables["train"].photo_mask].unique().numel())
    sizes = sorted({n for n in people if n < everyone} | {everyone})
    out = []
    for n in sizes:
        opts = {**ref.data_options, **({} if n >= everyone else {"n_train_people": n})}
        train = sets.tables["train"] if n >= everyone else \
            data.load_tables(ref.dataset, ref.size, (), mirror=ref.mirror, **opts)["train"]
        for mo in morphs:
            over = {} if mo == ref.morphs else {"morphs": mo}
            if n < everyone:
                over["data_options"] = opts
            cfg = profile_config(profile, **{**ref.to_dict(), **over})
            name = "reference" if not over else f"curve-n{n}-{mo}"
            run = train_run(cfg, root / f"seed{seed}" / name, {"train": train})
            m = measure_run(NormFace.from_pretrained(run, device="cpu"), sets, n_boot, orl=False)
            out.append({"n_identities": n, "morphs": mo != "off", "morph_setting": mo, "source": "real",
                        "dataset": ref.dataset,
                        "seeds": [seed], "n_train_photos": int(train.photo_mask.sum()), **_point(m, sets, n_boot)})
            log(f"learning curve: {n} identities, morphs {mo} done")
    if orl_run is not None and orl_run.get("status") == "trained":
        n_orl = len(data.orl_splits()["train_people"])
        out.append({"n_identities": n_orl, "morphs": True, "morph_setting": ref.morphs, "source": "real",
                    "dataset": "orl",
                    "seeds": [seed], "n_train_photos": None, **_point(orl_run, sets, n_boot)})
    return out


def curve_fit(curve: Sequence[Mapping], judge: str, measure: str = "rank1", morphs: bool = True) -> dict:
    """A straight line of ``measure`` against log2(identities) over the learning curve's points (one setting of
    morphs): slope per doubling, R², and whether the points support extrapolating it (every step up in identities
    improved the measure, the slope is positive and R² ≥ 0.9), with ``"words"`` saying which of these held. The points
    are single runs: a reader should take the slope as descriptive."""
    pts = sorted((c["n_identities"], c["metrics"][judge][measure]["mean"]) for c in curve
                 if c["morphs"] == morphs and c.get("dataset") != "orl")
    x, y = np.log2([p[0] for p in pts]), np.array([p[1] for p in pts])
    slope, intercept = np.polyfit(x, y, 1)
    monotone = bool(np.all(np.diff(y) > 0))
    resid = y - (slope * x + intercept)
    r2 = 1.0 - float((resid ** 2).sum()) / max(float(((y - y.mean()) ** 2).sum()), 1e-12)
    supports = bool(monotone and slope > 0 and r2 >= 0.9)
    why = []
    if not monotone:
        why.append("the points do not rise at every step")
    if slope <= 0:
        why.append("the line does not rise")
    if r2 < 0.9:
        why.append(f"a line in log identities explains only {r2:.0%} of their variation (R² < 0.9)")
    words = ("the points rise at every step and a line in log identities fits them closely (R² ≥ 0.9), so the "
             "trend may be extended with care" if supports else
             "; ".join(why) + ", so no extrapolation beyond the largest training set is stated")
    return {"judge": judge, "measure": measure, "morphs": morphs, "slope_per_doubling": float(slope),
            "r2": r2, "monotone": monotone, "supports_extrapolation": supports, "words": words}


def fig12(abl: Sequence[Mapping], judges: Mapping[str, Any], seeds: Sequence[int]) -> dict:
    """The paper's Figure 12 from the ablation runs (equal budgets): squared L2 input → output distances on clean
    photos of the unseen people, with the identity loss (the ``reference`` row) and without it, pooled over ``seeds``,
    per judge, with each judge's calibrated threshold squared (same units). The FaceNet paper's 1.242 is NN2's
    squared-L2 threshold for another network and is recorded only as a reference."""
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
