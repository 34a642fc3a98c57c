"""Every comparison the book states, from the seed study's per-seed rows: normface against each baseline (the
training data set's unseen people and ORL's 40 people), invariance, landmarks, LFW, robustness, expression in →
neutral out, the ablations, colour correction and attribute stability. Each is a paired difference over seeds and
photos (:mod:`.verdicts`) with the sentence the book glues."""
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
ABLATION_LABELS = {"no-selection": "the run trained on every photo, frontal or not",
                   "paired": "the run trained paired (every photo to its person's frontal target)",
                   "embedding": "the run on FaceNet's 512-D embedding", "avgpool": "the run on FaceNet's avgpool layer",
                   "dlib-resnet": "the run on dlib-ResNet features", "no-identity-loss": "the run without the identity "
                   "loss", "no-warp": "the run without the warp", "orl": "the run on 32 grey ORL identities"}
#: Held-out sets of the baseline comparisons: the training data set's unseen people, and ORL's 40 people.
PEOPLE_SETS = ("unseen_people", "orl", "unseen_photos")
COLOUR_LABELS = {"none": "no correction", "grey_world": "grey world"}


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


def _baselines(out: list, rows, judges) -> None:
    for split in PEOPLE_SETS:
        if rows[0].get(split) is None:
            continue
        person = to_numpy(rows[0][split]["person"])
        for cond in [c for c in ("clean", "hard") if c in rows[0][split]]:
            for j in judges:
                for metric, (label, higher) in MEASURES.items():
                    a = _stack(rows, lambda r: r[split][cond][j]["normface"][metric])
                    for m, other in BASELINE_LABELS.items():
                        if m not in rows[0][split][cond][j]:  # other data sets' people: fewer baselines
                            continue
                        b = to_numpy(rows[0][split][cond][j][m][metric])
                        _add(out, f"{split}/{cond}/{j}/{metric}/{m}", "baselines", a, b, person, higher, "normface",
                             other, label, split=split, condition=cond, judge=j, metric=metric, baseline=m)


def _invariance(out: list, rows, judges, split: str) -> None:
    P = len(np.unique(to_numpy(rows[0][split]["person"])))
    for cond in [c for c in ("clean", "hard") if c in rows[0][split]]:
        for j in judges:
            a = _stack(rows, lambda r: r[split][cond][j]["spread"]["normface"])
            b = to_numpy(rows[0][split][cond][j]["spread"]["input"])
            _add(out, f"invariance/{cond}/{j}", "invariance", a, b, np.arange(P), False, "normface's outputs",
                 "the input photos", f"spread of a person's embeddings ({j})", condition=cond, judge=j, split=split)
        a = _stack(rows, lambda r: r[split][cond]["pixel_spread"]["normface"])
        b = to_numpy(rows[0][split][cond]["pixel_spread"]["input"])
        _add(out, f"invariance/{cond}/pixels", "invariance", a, b, np.arange(P), False, "normface's outputs",
             "the input photos", "pixel standard deviation across a person's photos", condition=cond, judge="pixels",
             split=split)
    person = to_numpy(rows[0][split]["person"])
    a = _stack(rows, lambda r: r[split]["landmarks"]["normface"])
    for m in [m for m in ("mean_face", "nearest_identity", "linear") if m in rows[0][split]["landmarks"]]:
        _add(out, f"landmarks/{m}", "landmarks", a, to_numpy(rows[0][split]["landmarks"][m]), person, False,
             "normface", BASELINE_LABELS[m], "landmark error (inter-ocular units)", baseline=m, split=split)


def _robustness(out: list, rows, indep: str, split: str) -> None:
    person = to_numpy(rows[0]["robustness_person"])
    clean_r1 = _stack(rows, lambda r: r["robustness_clean"]["rank1"])
    clean_d = _stack(rows, lambda r: r["robustness_clean"]["distance"])
    for kind, curve in rows[0]["robustness"].items():
        for i, point in enumerate(curve):
            s = point["strength"]
            where = dict(kind=kind, strength=s, judge=indep, split=split)
            r1 = _stack(rows, lambda r: r["robustness"][kind][i]["_rows"]["rank1"])
            dist = _stack(rows, lambda r: r["robustness"][kind][i]["_rows"]["distance"])
            r1_in = _stack(rows, lambda r: r["robustness"][kind][i]["_rows"]["input_rank1"])
            _add(out, f"robustness/{kind}/{s:g}/rank1-vs-clean", "robustness", r1, clean_r1, person, True,
                 f"normface under {kind} {s:g}", "normface on clean photos", "rank-1", **where)
            _add(out, f"robustness/{kind}/{s:g}/distance-vs-clean", "robustness", dist, clean_d, person, False,
                 f"normface under {kind} {s:g}", "normface on clean photos", "distance to the clean input", **where)
            _add(out, f"robustness/{kind}/{s:g}/rank1-vs-input", "robustness", r1, r1_in, person, True,
                 f"normface's output under {kind} {s:g}", "the perturbed photo itself", "rank-1", **where)


def _expression(out: list, rows, judges) -> None:
    e0 = rows[0]["expression"]
    P = len(e0["spread_in"])
    a = _stack(rows, lambda r: r["expression"]["methods"]["normface"]["ratio"])
    _add(out, "expression/ratio/input", "expression", a, np.ones(P), np.arange(P), False, "normface's outputs",
         "the photos themselves (ratio 1)", "expression ratio (pixel spread across expressions, outputs / photos)",
         metric="expression_ratio", other_method="input")
    person = to_numpy(e0["person"])
    for j in judges:
        for metric, (label, higher) in MEASURES.items():
            a = _stack(rows, lambda r: r["expression"]["methods"]["normface"][j][metric])
            others = {"input": ("the expressive photo itself", e0["input"][j][metric])}
            others.update({m: (BASELINE_LABELS[m], e0["methods"][m][j][metric]) for m in BASELINE_LABELS
                           if m in e0["methods"]})
            for m, (other, b) in others.items():
                _add(out, f"expression/{j}/{metric}/{m}", "expression", a, to_numpy(b), person, higher, "normface",
                     other, f"{label} to the neutral portrait", judge=j, metric=metric, other_method=m)


def _ablations(out: list, abl, judges) -> None:
    names = [n for n in abl[0] if n != "reference" and abl[0][n]["status"] == "trained"]
    person_up = to_numpy(abl[0]["reference"]["person"])
    for n in names:
        label = ABLATION_LABELS.get(n, n)
        for j in judges:
            for cond in ("clean", "hard"):
                for metric, (mlabel, higher) in MEASURES.items():
                    a = _stack(abl, lambda r: r["reference"]["rows"][j][cond][metric])
                    b = _stack(abl, lambda r: r[n]["rows"][j][cond][metric])
                    _add(out, f"ablations/{n}/{j}/{cond}/{metric}", "ablations", a, b, person_up, higher,
                         "the reference run", label, mlabel, ablation=n, judge=j, condition=cond, metric=metric,
                         split="unseen_people")
            if "orl" in abl[0]["reference"] and "orl" in abl[0][n]:
                for metric, (mlabel, higher) in MEASURES.items():
                    a = _stack(abl, lambda r: r["reference"]["orl"]["rows"][j][metric])
                    b = _stack(abl, lambda r: r[n]["orl"]["rows"][j][metric])
                    _add(out, f"ablations/{n}/orl/{j}/{metric}", "ablations", a, b,
                         to_numpy(abl[0]["reference"]["orl"]["person"]), higher,
                         "the reference run", label, f"{mlabel} on ORL's grey photos", ablation=n, judge=j,
                         condition="clean", metric=metric, split="orl")
        a = _stack(abl, lambda r: r["reference"]["colour"])
        b = _stack(abl, lambda r: r[n]["colour"])
        _add(out, f"ablations/{n}/colour_difference", "ablations", a, b, person_up, False,
             "the reference run", label, "skin-colour difference to the input (8-bit levels)", ablation=n,
             judge="pixels", condition="clean", metric="colour_difference", split="unseen_people")
        if "expression" in abl[0]["reference"] and "expression" in abl[0][n]:
            a = _stack(abl, lambda r: r["reference"]["expression"]["ratio"])
            b = _stack(abl, lambda r: r[n]["expression"]["ratio"])
            _add(out, f"ablations/{n}/expression_ratio", "ablations", a, b, np.arange(a.shape[1]), False,
                 "the reference run", label, "expression ratio", ablation=n, judge="pixels", condition="clean",
                 metric="expression_ratio", split="expressions")


def _colour(out: list, rows) -> None:
    c0 = rows[0]["colour"]
    for region in ("face", "photo"):
        a = _stack(rows, lambda r: r["colour"]["delta_e"][region]["normface"])
        for m, other in COLOUR_LABELS.items():
            _add(out, f"colour/{region}/{m}", "colour", a, c0["delta_e"][region][m], c0["photo"], False,
                 "the normface correction", other, f"CIEDE2000 ΔE to the original photo ({region})", unit="photos",
                 region=region, baseline=m)


def compare_seeds(rows: Sequence[Mapping], abl: Sequence[Mapping], judges: Mapping[str, Any]) -> list[dict]:
    """Every comparison the book states, from the per-seed rows of :func:`~normface_lib.study.seeds.run_study` (a
    list of dicts, see the module docstring) and the per-seed ablation rows. Baselines do not depend on the training
    seed: they enter as seed 0's rows."""
    out: list[dict] = []
    indep = independent_judge(next(iter(judges)))
    _baselines(out, rows, judges)
    multi = "orl" if rows[0].get("orl") is not None else "unseen_people"
    _invariance(out, rows, judges, multi)
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
    _robustness(out, rows, indep, multi)
    if rows[0].get("expression") is not None:
        _expression(out, rows, judges)
    _ablations(out, abl, judges)
    if rows[0].get("colour") is not None:
        _colour(out, rows)
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
