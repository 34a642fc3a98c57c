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
from typing import Any, Mapping, Sequence

import torch

from ..core.errors import InputError
from ..encoders import cached_encode, encode, load_encoder
from ..data import get_dataset
from ..faces import HARD_PARTS, perturb
from ..nets import decode
from .baselines import Baselines
from .expressions import evaluate_expressions
from .judges import FACENET_PAPER_THRESHOLD, Judge, independent_judge, make_judge
from .metrics import (bootstrap_ci, embedding_spread, landmark_error, pixel_identity_contrast, pixel_spread, rank1,
                      summarize)

#: Methods compared in ``clean`` / ``hard`` (in table order).
METHODS = ("normface", "mean_face", "nearest_identity", "linear", "align_only")
#: Methods measured on other data sets' held-out people (ORL's 40): normface against the mean face (the baselines'
#: full comparison is on the training data set's own unseen people; each method costs an encoder pass per photo).
HELD_OUT_METHODS = ("normface", "mean_face")
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


def evaluate_people(model, baselines: Baselines | None, table, judges: Mapping[str, Judge], seed: int = 0,
                    n_boot: int = 1000, methods: Sequence[str] = METHODS, landmarks: bool = True,
                    conditions: Sequence[str] = ("clean", "hard"), details: bool = False) -> tuple[dict, dict | None]:
    """Identity preservation on held-out people (:func:`evaluate_split` on a table's real photos), as written to
    ``metrics.json``.

    The rank-1 gallery: when every person has at least two photos, the same people's *other* photos (each photo left
    out of its own search: chance = 1 / #people); when people have one photo each (the colour portraits), the
    held-out photos themselves (the output must find its own photo among everyone's: chance = 1 / #people too).

    Args:
        model, baselines, judges, seed, n_boot, methods: as in :func:`evaluate_split` (the first judge is the
            encoder the decoder was trained against, the other the independent one, see :func:`independent_judge`).
        table: a held-out :class:`~normface_lib.data.FaceTable` (its ``photo_mask`` rows are evaluated).
        landmarks: measure the landmark error against each person's target (frontal, neutral) landmarks.
        conditions: subset of ``("clean", "hard")``.

    Returns:
        ``(block, details)``: ``block`` = ``{"clean", "hard"`` (those measured; independent judge: method → metric), ``"ci",
        "trained_judge", "invariance"`` and ``"pixel_identity_contrast"`` (None when people have one photo each),
        ``"invariance_detail", "pixel_spread", "landmarks", "info"}``; ``details`` the per-row values of
        :func:`evaluate_split` (None unless ``details``).
    """
    trained = model.encoder.name
    indep = independent_judge(trained)
    rows = table.photo_mask
    x, lm, person = table.images[rows], table.landmarks[rows], table.person[rows]
    counts = torch.bincount(person)
    multi = bool((counts[counts > 0] >= 2).all())
    exclude = torch.arange(x.shape[0]) if multi else None
    target = table.target_landmarks[table.target_index[rows]] if landmarks else None
    conditions = tuple(conditions)
    ev = evaluate_split(model, baselines, x, lm, person, judges, None, person, exclude, conditions=conditions,
                        seed=seed, n_boot=n_boot, target_landmarks=target, methods=methods, details=details)
    block: dict[str, Any] = {cond: ev[cond][indep]["metrics"] for cond in conditions}
    block["ci"] = {cond: ev[cond][indep]["ci"] for cond in conditions}
    block["trained_judge"] = {cond: {"metrics": ev[cond][trained]["metrics"], "ci": ev[cond][trained]["ci"]}
                              for cond in conditions}
    block["invariance"] = {k: ev["clean"][indep]["invariance"][k] for k in ("spread_in", "spread_out")} \
        if multi else None
    block["invariance_detail"] = {cond: {j: ev[cond][j]["invariance"] for j in judges}
                                  for cond in conditions} if multi else None
    block["pixel_spread"] = {cond: ev[cond]["pixel_spread"] for cond in conditions} if multi else None
    block["pixel_identity_contrast"] = ev["clean"]["pixel_identity_contrast"] if multi else None
    block["landmarks"] = ev.get("landmarks") if landmarks else None
    n_people = int(person.unique().numel())
    block["info"] = {"n_people": n_people, "n_photos": int(x.shape[0]), "chance_rank1": 1.0 / n_people,
                     "gallery": "the same people's other photos" if multi else "the held-out photos themselves",
                     "source": table.source}
    return block, ev.get("_details")


def evaluate_model(model, tables: Mapping[str, Any], profile: str = "quick", seed: int = 0, n_boot: int = 1000,
                   far: float = 0.05, lfw=None, judges: Mapping[str, Judge] | None = None,
                   held_out: Mapping[str, Any] | None = None, details: bool = False) -> dict:
    """The full evaluation of a trained model (the ``metrics.json`` of notebook 03, minus the ablations).

    Args:
        model: :class:`~normface_lib.pipeline.NormFace` (decoder + the encoder it was trained against).
        tables: ``{"train", "unseen_people"[, "unseen_photos"]}`` FaceTables of the training data set
            (:func:`normface_lib.data.load_tables`).
        profile: profile name recorded in the result.
        seed: seeds the perturbations, the bootstrap and the linear baseline's folds.
        n_boot: bootstrap replicates.
        far: false-accept rate of the calibrated thresholds.
        lfw: optional :class:`~normface_lib.data.FaceSet` of wild faces (identity unknown): distances only.
        judges: prebuilt judges (name → :class:`Judge`); default: the trained encoder and :func:`independent_judge`,
            calibrated on the training table.
        held_out: other data sets' people, none of them trained on (:func:`normface_lib.data.held_out_table`):
            ``"orl"`` (all 40 grey people, clean photos, :data:`HELD_OUT_METHODS`: :func:`evaluate_people`),
            ``"expressions"``
            (:func:`~normface_lib.evaluation.expressions.evaluate_expressions`).
        details: also return per-row values and images under ``"_details"`` (not JSON; drop before saving).

    Returns:
        ``{"profile", "judge" (independent), "trained_encoder", "training_inputs", "data" ({"dataset", "channels",
        "size", "n_train_identities"}), the unseen people's block of :func:`evaluate_people` ("clean", "hard",
        "ci", ...), "thresholds", "unseen_photos" (if given), "orl" (if given), "expression" (if given), "lfw" (if
        given)}``; all numbers are Python floats.
    """
    t0 = time.perf_counter()
    train_t = tables["train"]
    enc = model.encoder
    trained = enc.name
    indep = independent_judge(trained)
    if judges is None:
        judges = {trained: make_judge(enc, train_t, far),
                  indep: make_judge(load_encoder(indep, device=next(model.decoder.parameters()).device), train_t, far)}
    train_feats = cached_encode(enc, train_t.images)["features"]
    baselines = Baselines(train_t, train_feats, seed=seed)
    dataset = model.config.get("dataset", "orl")
    out: dict[str, Any] = {"profile": profile, "judge": indep, "trained_encoder": trained,
                           "training_inputs": train_t.training_inputs,
                           "data": {"dataset": dataset, "channels": get_dataset(dataset).channels,
                                    "size": int(train_t.size),
                                    "n_train_identities": int(train_t.base_person[train_t.photo_mask].unique().numel())}}
    # ---- the training data set's unseen people
    block, det = evaluate_people(model, baselines, tables["unseen_people"], judges, seed, n_boot, details=details,
                                 landmarks=dataset != "colour")  # a colour portrait's target is the photo itself
    out.update(block)
    out["info"].update({"n_boot": n_boot, "seed": seed, "size": int(train_t.size),
                        "linear_ridge_over_D": baselines.linear.lam, "hard": dict(HARD_PARTS)})
    out["thresholds"] = {j: {"value": judge.threshold, "far": judge.far, "tar_train": judge.tar_train}
                         for j, judge in judges.items()}
    out["thresholds"]["facenet_paper_reference"] = {"value": FACENET_PAPER_THRESHOLD}
    details_all = {"unseen_people": det}

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

    # ---- other data sets' people, never trained on
    for name, table in (held_out or {}).items():
        if name == "expressions":
            out["expression"] = evaluate_expressions(model, baselines, table, judges, indep, n_boot, seed,
                                                     details=details)
            details_all["expression"] = out["expression"].pop("_rows", None)
        else:
            out[name], details_all[name] = evaluate_people(model, baselines, table, judges, seed, n_boot,
                                                           methods=HELD_OUT_METHODS, conditions=("clean",),
                                                           details=details)

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
