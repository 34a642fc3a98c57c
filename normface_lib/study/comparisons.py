"""Every comparison the book states, from the seed study's per-seed rows: normface against each baseline, invariance,
landmarks, LFW, robustness, the ablations, colour correction and attribute stability. Each is a paired difference
over seeds and photos (:mod:`.verdicts`) with the sentence the book glues."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..apps.attributes import within_person_spread
from ..evaluation import independent_judge
from .verdicts import bootstrap_statistic, describe, paired_difference, relabel

#: Bootstrap replicates of the evaluation's intervals and of the comparisons.
N_BOOT = 1000
MEASURES = {"rank1": ("rank-1", True), "frac_below_threshold": ("fraction below threshold", True),
            "mean_distance": ("mean distance", False)}
BASELINE_LABELS = {"mean_face": "the mean face", "nearest_identity": "the nearest training identity",
                   "linear": "the linear map", "align_only": "align-only"}
ABLATION_LABELS = {"paired": "the run trained paired (every photo to its person's frontal target)",
                   "dlib-resnet": "the run on dlib-ResNet features", "no-identity-loss": "the run without the identity "
                   "loss", "no-warp": "the run without the warp"}


def to_numpy(x) -> np.ndarray:
    """A tensor or array-like as a float64 NumPy array."""
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def _stack(rows: Sequence[Mapping], get) -> np.ndarray:
    return np.stack([to_numpy(get(r)) for r in rows])


def _add(out: list, cid: str, group: str, a, b, person, higher: bool, subject: str, other: str, measure: str,
         unit: str = "people", **where: Any) -> None:
    c = paired_difference(a, b, person, higher_is_better=higher, n_boot=2000, seed=0)
    verb = "are" if subject.endswith("outputs") else "is"
    out.append({"id": cid, "group": group, "subject": subject, "other": other, "measure": measure, "unit": unit,
                **where, **c, "sentence": describe(c, subject, other, measure, verb=verb, unit=unit)})


def compare_seeds(rows: Sequence[Mapping], abl: Sequence[Mapping], judges: Mapping[str, Any], tables) -> list[dict]:
    """Every comparison the book states, from the per-seed rows of :func:`run_study` (a list of dicts, see the
    module docstring). Baselines do not depend on the training seed: they enter as seed 0's rows."""
    out: list[dict] = []
    person_up = to_numpy(rows[0]["unseen_people"]["person"])
    # normface against each baseline: unseen people (both judges) and unseen photos (both judges)
    for split in ("unseen_people", "unseen_photos"):
        if rows[0].get(split) is None:
            continue
        person = to_numpy(rows[0][split]["person"])
        for cond in ("clean", "hard"):
            for j in judges:
                for metric, (label, higher) in MEASURES.items():
                    a = _stack(rows, lambda r: r[split][cond][j]["normface"][metric])
                    for m, other in BASELINE_LABELS.items():
                        b = to_numpy(rows[0][split][cond][j][m][metric])
                        _add(out, f"{split}/{cond}/{j}/{metric}/{m}", "baselines", a, b, person, higher, "normface",
                             other, label, split=split, condition=cond, judge=j, metric=metric, baseline=m)
    # invariance: a person's outputs vs its input photos (embedding spread per judge, pixel spread)
    P = len(np.unique(person_up))
    for cond in ("clean", "hard"):
        for j in judges:
            a = _stack(rows, lambda r: r["unseen_people"][cond][j]["spread"]["normface"])
            b = to_numpy(rows[0]["unseen_people"][cond][j]["spread"]["input"])
            _add(out, f"invariance/{cond}/{j}", "invariance", a, b, np.arange(P), False, "normface's outputs",
                 "the input photos", f"spread of a person's embeddings ({j})", condition=cond, judge=j)
        a = _stack(rows, lambda r: r["unseen_people"][cond]["pixel_spread"]["normface"])
        b = to_numpy(rows[0]["unseen_people"][cond]["pixel_spread"]["input"])
        _add(out, f"invariance/{cond}/pixels", "invariance", a, b, np.arange(P), False, "normface's outputs",
             "the input photos", "pixel standard deviation across a person's photos", condition=cond, judge="pixels")
    # landmarks (clean)
    a = _stack(rows, lambda r: r["unseen_people"]["landmarks"]["normface"])
    for m in ("mean_face", "nearest_identity", "linear"):
        _add(out, f"landmarks/{m}", "landmarks", a, to_numpy(rows[0]["unseen_people"]["landmarks"][m]), person_up,
             False, "normface", BASELINE_LABELS[m], "landmark error (inter-ocular units)", baseline=m)
    # LFW subset: distances to the input (identity unknown: photos are the units)
    if rows[0].get("lfw") is not None:
        for j, judge in judges.items():
            d = _stack(rows, lambda r: r["lfw"][j]["normface"])
            ids = np.arange(d.shape[1])
            for m in ("mean_face", "align_only"):
                db = to_numpy(rows[0]["lfw"][j][m])
                _add(out, f"lfw/{j}/frac_below_threshold/{m}", "lfw", (d < judge.threshold).astype(float),
                     (db < judge.threshold).astype(float), ids, True, "normface", BASELINE_LABELS[m],
                     "fraction below threshold", unit="photos", judge=j, metric="frac_below_threshold", baseline=m)
                _add(out, f"lfw/{j}/mean_distance/{m}", "lfw", d, db, ids, False, "normface", BASELINE_LABELS[m],
                     "mean distance", unit="photos", judge=j, metric="mean_distance", baseline=m)
    # robustness sweep: output under a perturbation vs output on clean photos, and vs the perturbed photo itself
    indep = independent_judge(next(iter(judges)))
    clean_r1 = _stack(rows, lambda r: r["unseen_people"]["clean"][indep]["normface"]["rank1"])
    clean_d = _stack(rows, lambda r: r["unseen_people"]["clean"][indep]["normface"]["mean_distance"])
    for kind, curve in rows[0]["robustness"].items():
        for i, point in enumerate(curve):
            s = point["strength"]
            where = dict(kind=kind, strength=s, judge=indep)
            r1 = _stack(rows, lambda r: r["robustness"][kind][i]["_rows"]["rank1"])
            dist = _stack(rows, lambda r: r["robustness"][kind][i]["_rows"]["distance"])
            r1_in = _stack(rows, lambda r: r["robustness"][kind][i]["_rows"]["input_rank1"])
            _add(out, f"robustness/{kind}/{s:g}/rank1-vs-clean", "robustness", r1, clean_r1, person_up, True,
                 f"normface under {kind} {s:g}", "normface on clean photos", "rank-1", **where)
            _add(out, f"robustness/{kind}/{s:g}/distance-vs-clean", "robustness", dist, clean_d, person_up, False,
                 f"normface under {kind} {s:g}", "normface on clean photos", "distance to the clean input", **where)
            _add(out, f"robustness/{kind}/{s:g}/rank1-vs-input", "robustness", r1, r1_in, person_up, True,
                 f"normface's output under {kind} {s:g}", "the perturbed photo itself", "rank-1", **where)
    # ablations: the reference run against each other row, both judges, paired by seed
    names = [n for n in abl[0] if n != "reference" and abl[0][n]["status"] == "trained"]
    for n in names:
        for j in judges:
            for cond in ("clean", "hard"):
                for metric, (label, higher) in MEASURES.items():
                    a = _stack(abl, lambda r: r["reference"]["rows"][j][cond][metric])
                    b = _stack(abl, lambda r: r[n]["rows"][j][cond][metric])
                    _add(out, f"ablations/{n}/{j}/{cond}/{metric}", "ablations", a, b, person_up, higher,
                         "the reference run", ABLATION_LABELS.get(n, n), label, ablation=n, judge=j, condition=cond,
                         metric=metric)
    # colour: exposure correction on held-out ORL photos (the change itself is the unit: photos × exposures)
    c0 = rows[0]["colour"]
    moved = c0["stops"] != 0
    for score, label in (("consistency", "ΔE to its own result on the unperturbed photo"),
                         ("delta_e", "ΔE to the unperturbed photo")):
        a = _stack(rows, lambda r: r["colour"][score]["normface exposure"][moved])
        for m in ("no correction", "grey world"):
            _add(out, f"colour/{score}/{m}", "colour", a, c0[score][m][moved], c0["person"][moved], False,
                 "the normface exposure correction", m, label, score=score, baseline=m)
    return out


def attribute_stability(rows: Sequence[Mapping], n_boot: int = N_BOOT) -> list[dict]:
    """Per attribute (and ``"median"`` over attributes): the ratio of within-person spreads, normalized faces over
    raw photos (:func:`normface_lib.apps.attributes.within_person_spread`), over seeds, with a two-level bootstrap
    interval and the verdict against 1 (below 1: more stable after normalization)."""
    raw = rows[0]["raw"]
    person = rows[0]["person"]
    names = list(raw)

    def ratio(s: int, idx: np.ndarray, k: str) -> float:
        lab = relabel(idx, person)
        return (within_person_spread(rows[s]["normalized"][k][idx], lab)
                / within_person_spread(raw[k][idx], lab))

    out = []
    for k in names + ["median"]:
        if k == "median":
            def stat(s, idx):
                return float(np.median([ratio(s, idx, a) for a in names]))
        else:
            def stat(s, idx, k=k):
                return ratio(s, idx, k)
        c = bootstrap_statistic(stat, len(rows), person, reference=1.0, higher_is_better=False, n_boot=n_boot)
        subject = "the median attribute" if k == "median" else k
        c["sentence"] = describe(c, f"{subject} on normalized faces", "on the raw photos",
                                 "within-person spread, normalized / raw")
        out.append({"attribute": k, **c})
    return out


def comparison(study: Mapping[str, Any], cid: str) -> dict:
    """The comparison with id ``cid`` (e.g. ``"unseen_people/clean/dlib-resnet/rank1/mean_face"``)."""
    for c in study["comparisons"]:
        if c["id"] == cid:
            return c
    raise KeyError(f"no comparison {cid!r} in the study; ids look like "
                   f"{study['comparisons'][0]['id']!r}. Rerun `make results` if the study is older than the book.")


def comparisons_frame(study: Mapping[str, Any], group: str, columns: Sequence[str] = ()):
    """A pandas DataFrame of one group of comparisons (``"baselines"``, ``"ablations"``, ``"robustness"``, …):
    the ``columns`` that identify a row, then difference, 95 % interval, per-seed differences and the verdict."""
    import pandas as pd

    rows = []
    for c in study["comparisons"]:
        if c["group"] != group:
            continue
        row = {k: c.get(k) for k in columns}
        row.update({"difference": c["difference"], "95% CI": f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]",
                    "per seed": ", ".join(f"{v:+.3f}" for v in c["per_seed"]), "verdict": c["verdict"]})
        rows.append(row)
    return pd.DataFrame(rows)
