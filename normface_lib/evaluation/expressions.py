"""The paper's central claim as one measurement: an expressive photo in, the person's *neutral* face out.

On the expression set (:func:`normface_lib.data.expression_table`: 10 people × 16 labelled expressions, each person's
neutral studio portrait as reference), :func:`evaluate_expressions` measures, for normface and every baseline:

* **Expression ratio**: per person, the pixel spread of the 16 outputs (:func:`~.metrics.pixel_spread`) over the
  spread of the 16 aligned inputs; pooled as the ratio of the means over people, with a bootstrap interval over people.
  Below 1: the outputs vary less across expressions than the photos (expression removed); the input itself scores 1;
  a method that gives everyone one face scores 0, so it is read together with the next figure.
* **Contrast gain** (:func:`~.metrics.pixel_identity_contrast` on this set): between-person over within-person pixel
  variance, outputs over inputs. Above 1: outputs of one person agree more, relative to how different people differ,
  than the photos do.
* **Identity against the neutral portrait**, per judge: the distance from each output to the person's portrait,
  whether it lies below the judge's threshold, and rank-1 of the output among the 10 portraits.
* **Per expression** (normface, the independent judge): the distance to the portrait of the photo and of the output,
  and the *pixel change ratio*: how far the output of an expression lies from the output of the neutral photo, over how
  far the expressive photo lies from the neutral photo (RMS pixel differences, mean over people).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..data.expressions import EXPRESSIONS, expression_of
from ..encoders import encode
from ..nets import decode
from .judges import Judge
from .metrics import pixel_identity_contrast, pixel_spread, rank1, summarize

#: normface and the baselines, as in the rest of the evaluation.
METHODS = ("normface", "mean_face", "nearest_identity", "linear", "align_only")


def ratio_of_means(num: torch.Tensor, den: torch.Tensor, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """``mean(num) / mean(den)`` over people (``[P]`` float each, paired) with a percentile bootstrap interval over
    people: ``{"value", "ci": [lo, hi]}``."""
    a, b = torch.as_tensor(num).double(), torch.as_tensor(den).double()
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, len(a), (n_boot, len(a)), generator=gen)
    boot = (a[idx].mean(1) / b[idx].mean(1).clamp_min(1e-12)).numpy()
    q = (1 - level) / 2
    return {"value": float(a.mean() / b.mean().clamp_min(1e-12)),
            "ci": [float(np.quantile(boot, q)), float(np.quantile(boot, 1 - q))]}


def _rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a.double() - b.double()) ** 2).flatten(1).mean(1).sqrt()


def evaluate_expressions(model, baselines, table, judges: Mapping[str, Judge], indep: str, n_boot: int = 1000,
                         seed: int = 0, methods: Sequence[str] = METHODS, details: bool = False) -> dict:
    """Every figure of the module docstring for one model.

    Args:
        model: a :class:`~normface_lib.pipeline.NormFace`.
        baselines: fitted :class:`~.baselines.Baselines` (None: only ``methods=("normface",)``).
        table: the expression set (:func:`normface_lib.data.expression_table`): input rows ``[N,3,S,S]`` in
            ``[0,1]`` with ids ``".../<expression>"``, each person's portrait as its target.
        judges: name → :class:`Judge`; ``indep``: the independent judge's name (the per-expression figures).
        details: also return per-person and per-photo rows (``"_rows"``) for the seed study's paired comparisons.

    Returns:
        ``{"n_people", "n_photos", "judge", "expression_ratio": {"value", "ci"}, "contrast_gain": {"value", "ci"}``
        (normface), ``"methods": {method: {"expression_ratio", "contrast_gain", judge: {"mean_distance",
        "frac_below_threshold", "rank1"} each {"mean", "ci"}}}, "input": {judge: {"mean_distance", ...}},
        "per_expression": {expression: {"distance_input", "distance_output", "pixel_change_ratio"}}}``.
    """
    r = table.input_mask
    x, lm, person = table.images[r], table.landmarks[r], table.person[r]
    ids = [table.photo_ids[i] for i in torch.nonzero(r).flatten().tolist()]
    labels = [expression_of(i) for i in ids]
    portraits = table.images[table.target_row]
    P = len(table.people)
    feats = encode(model.encoder, x, batch=64)["features"]
    outs = {"normface": decode(model.decoder, feats)["image"]}
    if baselines is not None:
        outs.update({m: o["image"] for m, o in baselines.outputs(feats, x, lm).items()})
    s_in = pixel_spread(x, person)
    res: dict = {"n_people": P, "n_photos": int(x.shape[0]), "judge": indep, "methods": {}, "input": {}}
    rows: dict = {"person": person.numpy(), "spread_in": s_in.numpy(), "methods": {}}
    emb_p = {j: judge.embed(portraits) for j, judge in judges.items()}
    emb_in = {j: judge.embed(x) for j, judge in judges.items()}
    pid = torch.arange(P)
    rows["input"] = {}
    for j, judge in judges.items():
        d = (emb_in[j].double() - emb_p[j][person].double()).norm(dim=1)
        below, c = (d < judge.threshold).double(), rank1(emb_in[j], person, emb_p[j], pid).double()
        res["input"][j] = {"mean_distance": summarize(d, person, n_boot, seed),
                           "frac_below_threshold": summarize(below, person, n_boot, seed),
                           "rank1": summarize(c, person, n_boot, seed)}
        rows["input"][j] = {"mean_distance": d.numpy(), "frac_below_threshold": below.numpy(), "rank1": c.numpy()}
    for m in methods:
        s_out = pixel_spread(outs[m], person)
        block = {"expression_ratio": ratio_of_means(s_out, s_in, n_boot, seed),
                 "contrast_gain": {k: v for k, v in pixel_identity_contrast(outs[m], x, person, n_boot, seed).items()
                                   if k in ("value", "ci")}}
        mrows = {"ratio": (s_out / s_in.clamp_min(1e-12)).numpy()}
        for j, judge in judges.items():
            e = judge.embed(outs[m][:1]).expand(len(x), -1) if m == "mean_face" else judge.embed(outs[m])
            d = (e.double() - emb_p[j][person].double()).norm(dim=1)
            below, c = (d < judge.threshold).double(), rank1(e, person, emb_p[j], pid).double()
            block[j] = {"mean_distance": summarize(d, person, n_boot, seed),
                        "frac_below_threshold": summarize(below, person, n_boot, seed),
                        "rank1": summarize(c, person, n_boot, seed)}
            mrows[j] = {"mean_distance": d.numpy(), "frac_below_threshold": below.numpy(), "rank1": c.numpy()}
        res["methods"][m] = block
        rows["methods"][m] = mrows
    res["expression_ratio"] = res["methods"]["normface"]["expression_ratio"]
    res["contrast_gain"] = res["methods"]["normface"]["contrast_gain"]
    per = {}
    lab = np.array(labels)
    out = outs["normface"]
    d_out = (judges[indep].embed(out).double() - emb_p[indep][person].double()).norm(dim=1)
    d_in = (emb_in[indep].double() - emb_p[indep][person].double()).norm(dim=1)
    neutral = {int(person[i]): i for i in range(len(x)) if labels[i] == "neutral"}
    for e in EXPRESSIONS:
        sel = torch.from_numpy(lab == e)
        entry = {"distance_input": summarize(d_in[sel], person[sel], n_boot, seed),
                 "distance_output": summarize(d_out[sel], person[sel], n_boot, seed), "pixel_change_ratio": None}
        if e != "neutral":
            k = torch.nonzero(sel).flatten()
            base = torch.tensor([neutral[int(person[i])] for i in k])
            ch_out, ch_in = _rms(out[k], out[base]), _rms(x[k], x[base])
            entry["pixel_change_ratio"] = ratio_of_means(ch_out, ch_in, n_boot, seed)
        per[e] = entry
    res["per_expression"] = per
    if details:
        rows["outputs"] = outs
        rows["inputs"] = x
        rows["labels"] = labels
        res["_rows"] = rows
    return res


__all__ = ["evaluate_expressions", "ratio_of_means"]
