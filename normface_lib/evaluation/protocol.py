"""The evaluation protocol of notebook 03 and ``results/<profile>/metrics.json``: identity preservation, baselines,
invariance, landmark error and robustness of a trained model on held-out people and photos.

Everything here computes; notebooks only narrate and plot. Evaluation uses a trained
:class:`~normface_lib.pipeline.NormFace` and never reaches into training.

Protocol (what :func:`evaluate_model` measures):

* **Judges.** Every identity metric is computed with two frozen encoders: the one the decoder was trained against
  (its identity loss saw it) and an *independent* one that never took part in training (:func:`independent_judge`:
  ``dlib-resnet`` for FaceNet-trained decoders, ``facenet-casia`` for a dlib-trained one). The headline numbers use
  the independent judge.
* **Thresholds.** Each judge's same-person threshold is calibrated at a 5 % false-accept rate on the *training
  people's real photos* (:func:`calibrate_threshold`); held-out people are never used to choose anything.
* **Identity preservation.** For every held-out input photo: the judge distance between the input and its output,
  whether it is below the threshold, and rank-1 identification of the person from the *output alone* against a gallery
  of real photos (:func:`rank1`): for unseen people, the same people's other photos (chance = 1 / #people); for unseen
  photos of training people, the training photos of the training people.
* **Conditions.** ``clean``: the photos as they are. ``hard``: the same photos with an occluder, a strong left-right
  light gradient and a heavy blur (:func:`normface_lib.faces.perturb` ``kind="hard"``); distances are measured to the *clean* input,
  and the rank-1 gallery stays clean.
* **Baselines** (same metrics): ``mean_face`` (the mean training texture on the mean shape, the same output for
  everyone), ``nearest_identity`` (the target face of the nearest training person in encoder-feature space),
  ``linear`` (ridge regression from encoder features to target pixels, ridge chosen by cross-validation over
  training people), ``align_only`` (the input itself registered onto the mean shape: the warping-based frontalization
  family of Hassner et al.; it gets the clean photo's landmarks even under ``hard``, an advantage a real frontalizer
  would not have).
* **Uncertainty.** 95 % bootstrap intervals over people (:func:`~normface_lib.evaluation.metrics.bootstrap_ci`, seeded).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..core.errors import InputError
from .report import training_block
from ..encoders import cached_encode, encode, load_encoder
from ..faces import DEFAULT_STRENGTH, HARD_PARTS, perturb
from ..nets import decode
from .baselines import Baselines
from .judges import FACENET_PAPER_THRESHOLD, Judge, independent_judge, make_judge
from .metrics import (bootstrap_ci, embedding_spread, landmark_error, pixel_identity_contrast, pixel_spread, rank1,
                      summarize)

#: Methods compared in ``clean`` / ``hard`` (in table order).
METHODS = ("normface", "mean_face", "nearest_identity", "linear", "align_only")
#: Identity metrics reported per method.
IDENTITY_METRICS = ("rank1", "frac_below_threshold", "mean_distance")


def _features(model, images: torch.Tensor) -> torch.Tensor:
    return encode(model.encoder, images, batch=64)["features"]


def _identity_block(judge: Judge, ref_emb: torch.Tensor, out_emb: torch.Tensor, person: torch.Tensor,
                    gallery_emb: torch.Tensor, gallery_person: torch.Tensor, exclude: torch.Tensor | None,
                    n_boot: int, seed: int) -> tuple[dict, dict, dict]:
    """(point metrics, CIs, per-row values) for one method under one judge."""
    dist = (out_emb.double() - ref_emb.double()).norm(dim=1)
    below = (dist < judge.threshold).double()
    correct = rank1(out_emb, person, gallery_emb, gallery_person, exclude).double()
    rows = {"rank1": correct, "frac_below_threshold": below, "mean_distance": dist}
    point = {k: float(v.mean()) for k, v in rows.items()}
    ci = {k: list(bootstrap_ci(v, person, n_boot=n_boot, seed=seed)) for k, v in rows.items()}
    return point, ci, rows


def _unique_embed(judge: Judge, images: torch.Tensor) -> torch.Tensor:
    """Embed a batch that may be one image repeated (mean face) without recomputing it B times."""
    if images.shape[0] > 1 and images.stride(0) == 0:
        return judge.embed(images[:1].contiguous()).expand(images.shape[0], -1)
    return judge.embed(images)


def evaluate_split(model, baselines: Baselines, images: torch.Tensor, landmarks: torch.Tensor, person: torch.Tensor,
                   judges: Mapping[str, Judge], gallery: Mapping[str, torch.Tensor], gallery_person: torch.Tensor,
                   exclude: torch.Tensor | None, conditions: Sequence[str] = ("clean", "hard"), seed: int = 0,
                   n_boot: int = 1000, target_landmarks: torch.Tensor | None = None,
                   methods: Sequence[str] = METHODS, details: bool = False) -> dict:
    """Identity metrics of every method on a set of held-out photos, for each condition and judge.

    Args:
        model: a :class:`~normface_lib.pipeline.NormFace` (``.decoder``, ``.encoder``).
        baselines: fitted :class:`Baselines` (None: only ``methods=("normface",)``).
        images: ``[N,3,S,S]`` float in [0,1] clean input crops; landmarks ``[N,68,2]``; person ``[N]`` long.
        judges: name → :class:`Judge`.
        gallery: judge name → ``[G,E]`` embeddings of the clean gallery photos (None: the clean inputs themselves);
            gallery_person ``[G]`` long.
        exclude: ``[N]`` long gallery row of each input photo itself (left out of its rank-1 search), or None.
        conditions: subset of ``("clean", "hard")``.
        target_landmarks: ``[N,68,2]`` the frontal targets' landmarks, for the landmark error (clean only).
        methods: subset of :data:`METHODS`.
        details: keep per-row values and output images in the result (under ``"_details"``): per condition
            ``inputs``, ``outputs`` (method → images), per judge and method the ``[N]`` rows of each metric, per
            judge ``spread`` (``input``/``normface`` ``[P]``), ``pixel_spread`` (``[P]``); ``landmarks`` (method →
            ``[N]`` errors, clean).

    Returns:
        ``{condition: {judge: {"metrics": {method: {metric: float}}, "ci": {method: {metric: [lo, hi]}}}}``, plus
        ``"invariance"`` per condition and judge, ``"pixel_spread"`` and ``"pixel_identity_contrast"`` (method →
        :func:`~normface_lib.evaluation.metrics.pixel_identity_contrast` against the clean inputs; ``None`` when the
        photos show fewer than 2 people) per condition,
        ``"landmarks"`` (clean), and ``"_details"`` when asked.
    """
    res: dict = {}
    det: dict = {}
    ref = {j: judge.embed(images) for j, judge in judges.items()}
    if gallery is None:  # the inputs are their own gallery (each left out of its own search via ``exclude``)
        gallery = ref
    for cond in conditions:
        x = images if cond == "clean" else perturb(images, "hard", seed=seed + 1000)
        feats = _features(model, x)
        outs = {"normface": decode(model.decoder, feats)}
        if baselines is not None:
            outs.update(baselines.outputs(feats, x, landmarks))
        elif set(methods) - {"normface"}:
            raise InputError("baselines=None only allows methods=('normface',).")
        res[cond] = {}
        det[cond] = {"inputs": x, "outputs": {m: outs[m]["image"] for m in methods}}
        for j, judge in judges.items():
            block = {"metrics": {}, "ci": {}}
            det[cond][j] = {}
            emb_out = {}
            for m in methods:
                emb_out[m] = _unique_embed(judge, outs[m]["image"])
                point, ci, rows = _identity_block(judge, ref[j], emb_out[m], person, gallery[j], gallery_person,
                                                  exclude, n_boot, seed)
                block["metrics"][m], block["ci"][m] = point, ci
                det[cond][j][m] = rows
            emb_in = ref[j] if cond == "clean" else judge.embed(x)
            s_in, s_out = embedding_spread(emb_in, person), embedding_spread(emb_out["normface"], person)
            det[cond][j]["spread"] = {"input": s_in, "normface": s_out}
            block["invariance"] = {"spread_in": float(s_in.mean()), "spread_out": float(s_out.mean()),
                                   "spread_in_ci": list(bootstrap_ci(s_in, torch.arange(len(s_in)), n_boot, seed=seed)),
                                   "spread_out_ci": list(bootstrap_ci(s_out, torch.arange(len(s_out)), n_boot,
                                                                      seed=seed))}
            res[cond][j] = block
        pin, pout = pixel_spread(x, person), pixel_spread(outs["normface"]["image"], person)
        res[cond]["pixel_spread"] = {"input": float(pin.mean()), "normface": float(pout.mean())}
        res[cond]["pixel_identity_contrast"] = None  # it compares people: undefined for one person
        if int(person.unique().numel()) >= 2:  # against the clean aligned inputs, whatever the condition
            res[cond]["pixel_identity_contrast"] = {
                m: pixel_identity_contrast(outs[m]["image"], images, person, n_boot=n_boot, seed=seed) for m in methods}
        det[cond]["pixel_spread"] = {"input": pin, "normface": pout}
        if cond == "clean" and target_landmarks is not None:
            lm = {}
            for m in ("normface", "mean_face", "nearest_identity", "linear"):
                if m in outs and outs[m].get("landmarks") is not None:
                    e = landmark_error(outs[m]["landmarks"], target_landmarks)
                    lm[m] = summarize(e, person, n_boot, seed)
                    det.setdefault("landmarks", {})[m] = e
            res["landmarks"] = lm
    if details:
        det["person"] = person
        res["_details"] = det
    return res


def evaluate_model(model, tables: Mapping[str, Any], profile: str = "quick", seed: int = 0, n_boot: int = 1000,
                   far: float = 0.05, lfw=None, judges: Mapping[str, Judge] | None = None,
                   details: bool = False) -> dict:
    """The full evaluation of a trained model (the ``metrics.json`` of notebook 03, minus the ablations).

    Args:
        model: :class:`~normface_lib.pipeline.NormFace` (decoder + the encoder it was trained against).
        tables: ``{"train", "unseen_people"[, "unseen_photos"]}`` FaceTables (:func:`normface_lib.data.load_tables`).
        profile: profile name recorded in the result.
        seed: seeds the perturbations, the bootstrap and the linear baseline's folds.
        n_boot: bootstrap replicates.
        far: false-accept rate of the calibrated thresholds.
        lfw: optional :class:`~normface_lib.data.FaceSet` of wild faces (identity unknown): distances only.
        judges: prebuilt judges (name → :class:`Judge`); default: the trained encoder and :func:`independent_judge`.
        details: also return per-row values and images under ``"_details"`` (not JSON; drop before saving).

    Returns:
        ``{"profile", "judge" (independent), "trained_encoder", "clean": {method: {rank1, frac_below_threshold,
        mean_distance}}, "hard": {...}, "invariance": {"spread_in", "spread_out"}, "ci": {...},
        "trained_judge": {"clean", "hard"}, "thresholds", "landmarks", "pixel_spread", "pixel_identity_contrast"
        (clean, method → ``{"value", "ci", ...}``; ``None`` with one unseen person), "training_inputs" (what the decoder was trained on), "info",
        "unseen_photos" (if given), "lfw" (if given)}``; all numbers are Python floats.
    """
    t0 = time.perf_counter()
    train_t, up = tables["train"], tables["unseen_people"]
    enc = model.encoder
    trained = enc.name
    indep = independent_judge(trained)
    if judges is None:
        judges = {trained: make_judge(enc, train_t, far),
                  indep: make_judge(load_encoder(indep, device=next(model.decoder.parameters()).device), train_t, far)}
    train_feats = cached_encode(enc, train_t.images)["features"]
    baselines = Baselines(train_t, train_feats, seed=seed)

    # ---- unseen people: gallery = the same people's other photos
    rows = up.photo_mask
    x, lm, person = up.images[rows], up.landmarks[rows], up.person[rows]
    exclude = torch.arange(x.shape[0])
    ev = evaluate_split(model, baselines, x, lm, person, judges, None, person, exclude, seed=seed, n_boot=n_boot,
                        target_landmarks=up.target_landmarks[person], details=details)
    out: dict[str, Any] = {"profile": profile, "judge": indep, "trained_encoder": trained,
                           "training_inputs": train_t.training_inputs}
    for cond in ("clean", "hard"):
        out[cond] = ev[cond][indep]["metrics"]
    out["invariance"] = {k: ev["clean"][indep]["invariance"][k] for k in ("spread_in", "spread_out")}
    out["invariance_detail"] = {cond: {j: ev[cond][j]["invariance"] for j in judges} for cond in ("clean", "hard")}
    out["ci"] = {cond: ev[cond][indep]["ci"] for cond in ("clean", "hard")}
    out["trained_judge"] = {cond: {"metrics": ev[cond][trained]["metrics"], "ci": ev[cond][trained]["ci"]}
                            for cond in ("clean", "hard")}
    out["pixel_spread"] = {cond: ev[cond]["pixel_spread"] for cond in ("clean", "hard")}
    out["pixel_identity_contrast"] = ev["clean"]["pixel_identity_contrast"]
    out["landmarks"] = ev["landmarks"]
    out["thresholds"] = {j: {"value": judge.threshold, "far": judge.far, "tar_train": judge.tar_train}
                         for j, judge in judges.items()}
    out["thresholds"]["facenet_paper_reference"] = {"value": FACENET_PAPER_THRESHOLD}
    n_people = int(person.unique().numel())
    out["info"] = {"n_people": n_people, "n_photos": int(x.shape[0]), "chance_rank1": 1.0 / n_people,
                   "n_boot": n_boot, "seed": seed, "size": int(x.shape[-1]),
                   "linear_ridge_over_D": baselines.linear.lam, "hard": dict(HARD_PARTS)}
    details_all = {"unseen_people": ev.get("_details")}

    # ---- unseen photos of training people: gallery = the training photos (real, not mirrored) of those people
    if tables.get("unseen_photos") is not None:
        uph = tables["unseen_photos"]
        r = uph.photo_mask
        tr = train_t.photo_mask
        name_of = [uph.people[int(p)] for p in uph.person[r]]
        train_names = [train_t.people[int(p)] for p in train_t.person[tr]]
        if not set(name_of) <= set(train_names):
            raise InputError("unseen_photos people must be training people (same split seed).")
        uniq = sorted(set(train_names), key=train_names.index)
        gp = torch.tensor([uniq.index(n) for n in train_names])
        qp = torch.tensor([uniq.index(n) for n in name_of])
        gal2 = {j: cached_encode(judge.encoder, train_t.images)["embeddings"][tr]
                for j, judge in judges.items()}
        ev2 = evaluate_split(model, baselines, uph.images[r], uph.landmarks[r], qp, judges, gal2, gp, None,
                             seed=seed, n_boot=n_boot, target_landmarks=uph.target_landmarks[uph.person[r]],
                             details=details)
        out["unseen_photos"] = {cond: ev2[cond][indep]["metrics"] for cond in ("clean", "hard")}
        out["unseen_photos"]["ci"] = {cond: ev2[cond][indep]["ci"] for cond in ("clean", "hard")}
        out["unseen_photos"]["trained_judge"] = {cond: ev2[cond][trained]["metrics"] for cond in ("clean", "hard")}
        out["unseen_photos"]["landmarks"] = ev2["landmarks"]
        out["unseen_photos"]["pixel_identity_contrast"] = ev2["clean"]["pixel_identity_contrast"]
        out["unseen_photos"]["info"] = {"n_people": len(uniq), "n_photos": int(r.sum()),
                                        "chance_rank1": 1.0 / len(uniq)}
        details_all["unseen_photos"] = ev2.get("_details")

    if lfw is not None and len(lfw) > 0:
        out["lfw"], details_all["lfw"] = evaluate_wild(model, baselines, lfw.images, lfw.landmarks, judges,
                                                       n_boot=n_boot, seed=seed)
        out["lfw"]["info"] = {"n": len(lfw), "n_detected": int(lfw.detected.sum())}
    out["info"]["seconds"] = time.perf_counter() - t0
    if details:
        out["_details"] = details_all
        out["_baselines"] = baselines
        out["_judges"] = judges
    return out


def evaluate_wild(model, baselines: Baselines, images: torch.Tensor, landmarks: torch.Tensor,
                  judges: Mapping[str, Judge], n_boot: int = 1000, seed: int = 0,
                  methods: Sequence[str] = ("normface", "mean_face", "align_only")) -> tuple[dict, dict]:
    """Identity preservation on photos of unknown identity (e.g. LFW): per judge and method, the fraction of
    input–output distances below the judge's threshold and the mean distance, with bootstrap CIs over photos.

    Returns ``(metrics, per_row)``: ``metrics[judge][method] = {"frac_below_threshold", "mean_distance", "ci"}``,
    ``per_row[judge][method]`` = ``[N]`` distances (float64), plus ``per_row["outputs"]`` (normface images)."""
    feats = _features(model, images)
    outs = {"normface": decode(model.decoder, feats)}
    outs.update(baselines.outputs(feats, images, landmarks))
    res, rows = {}, {"outputs": outs["normface"]["image"]}
    ids = torch.arange(images.shape[0])
    for j, judge in judges.items():
        ref = judge.embed(images)
        res[j], rows[j] = {}, {}
        for m in methods:
            d = (_unique_embed(judge, outs[m]["image"]).double() - ref.double()).norm(dim=1)
            below = (d < judge.threshold).double()
            res[j][m] = {"frac_below_threshold": float(below.mean()), "mean_distance": float(d.mean()),
                         "ci": {"frac_below_threshold": list(bootstrap_ci(below, ids, n_boot, seed=seed)),
                                "mean_distance": list(bootstrap_ci(d, ids, n_boot, seed=seed))}}
            rows[j][m] = d
    return res, rows


# ============================================================================================== robustness sweep
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


# ============================================================================================== one run, as notebook 03
#: The robustness sweep of a run: each perturbation at half and at its full default strength.
ROBUSTNESS_KINDS = ("occluder", "light", "blur", "rotation")
ROBUSTNESS_STRENGTHS = {k: (DEFAULT_STRENGTH[k] / 2, DEFAULT_STRENGTH[k]) for k in ROBUSTNESS_KINDS}


def evaluate_run(model, run_dir: str | Path, tables: Mapping[str, Any], profile: str = "quick", seed: int = 0,
                 n_boot: int = 1000, lfw=None, judges: Mapping[str, Judge] | None = None,
                 details: bool = False) -> dict:
    """Everything notebook 03 reports about one trained run (``results/<profile>/metrics.json``): the
    :func:`evaluate_model` figures, the robustness sweep (:data:`ROBUSTNESS_STRENGTHS`, unseen people, independent
    judge) under ``"robustness"``, and :func:`training_block` under ``"training"``.

    The seed study (:mod:`normface_lib.study`) calls the same function for every training seed, so that the
    bands a rerun is checked against are measured on exactly these figures.

    Args:
        model: :class:`~normface_lib.pipeline.NormFace`. run_dir: its training run folder (holds ``summary.json``).
        tables, profile, seed, n_boot, lfw, judges, details: as in :func:`evaluate_model` (``details`` also keeps
            the sweep's per-photo rows).
    """
    out = evaluate_model(model, tables, profile=profile, seed=seed, n_boot=n_boot, lfw=lfw, judges=judges,
                         details=True)
    judges = out["_judges"]
    j = judges[out["judge"]]
    up = tables["unseen_people"]
    rows = up.photo_mask
    x, p = up.images[rows], up.person[rows]
    out["robustness"] = {"judge": j.name, "curves": robustness(
        model, x, p, j, j.embed(x), p, torch.arange(len(x)), kinds=ROBUSTNESS_KINDS,
        strengths=ROBUSTNESS_STRENGTHS, seed=seed, n_boot=n_boot, details=details)}
    out["training"] = training_block(run_dir)
    if not details:
        for k in ("_details", "_baselines", "_judges"):
            out.pop(k)
    return out
