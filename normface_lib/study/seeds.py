"""The seed study behind every verdict in the book (``make results``).

Float32 training is not bit-identical across CPUs, and a single training run is one draw among many. So the book
states no comparison from one run. :func:`run_study` trains the ``quick`` profile's model and its ablations for several
seeds (:data:`SEEDS`), evaluates each exactly as notebook 03 does (:func:`normface_lib.evaluation.evaluate_run`), and
writes ``results/<profile>/seeds.json``:

- ``provenance``: commit, machine, date, seeds, settings and :func:`normface_lib.core.resources.library_sha256` of the
  code that ran (a test fails when the library changes and the study was not rerun);
- ``per_seed``: every seed's full metrics (the figures of ``metrics.json``), ablation rows, attribute stability
  and colour-correction figures;
- ``comparisons``: every comparison the book states (:mod:`.comparisons`), each paired by seed and photo with a
  two-level bootstrap over seeds and people, its verdict and the sentence the book glues.

:mod:`.bands` turns the seed-to-seed spread into a tolerance for each figure of ``metrics.json``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import data, faces
from ..core import resources
from ..core.errors import InputError
from ..core.provenance import provenance
from ..evaluation import as_written, evaluate_run, photo_and_normalized_attributes, round_floats
from ..pipeline import NormFace
from ..training import profile_config, train
from .ablations import ABLATION_STEPS, ablation_rows
from .comparisons import N_BOOT, attribute_stability, compare_seeds, comparison, to_numpy
from .scaling import curve_fit, fig12, learning_curve
from .sets import StudySets, study_sets

#: Training seeds of the study (the book's model is seed 0).
SEEDS = (0, 1, 2)
STUDY_NAME = "seeds.json"


def metrics_contract(study: Mapping[str, Any]) -> dict:
    """The seed study's figures that ``metrics.json`` carries for other tools (notebook 03 merges them in with
    :func:`merge_contract`): every ablation row (``ablations.<row>``: seeds, per judge, condition and measure the
    reference-minus-row difference with its interval and verdict; the expression-ratio and skin-colour verdicts),
    the learning curve (a list of points), Figure 12 (``units: "squared_l2"``) and the study's verdicts on colour
    correction and on expression removal. All copied from ``seeds.json`` (a rerun of the notebook cannot change them;
    :mod:`.bands` leaves them out of the rerun check)."""
    indep = study["judge"]
    ablations = {}
    for c in study["comparisons"]:
        if c["group"] != "ablations":
            continue
        row = ablations.setdefault(c["ablation"], {"seeds": list(study["seeds"]), "steps":
                                                   study["provenance"]["settings"]["ablation_steps"],
                                                   "compared_with": "reference (the profile, same steps)",
                                                   "verdicts": {}})
        key = c["id"].split("/", 2)[2]
        row["verdicts"][key] = {"difference": c["difference"], "ci": c["ci"], "per_seed": c["per_seed"],
                                "verdict": c["verdict"]}
    for name, row in ablations.items():
        row["verdict"] = row["verdicts"].get(f"{indep}/clean/rank1", {}).get("verdict")
    curve = [{k: c[k] for k in ("n_identities", "morphs", "source", "dataset", "seeds", "n_train_photos", "metrics",
                                "colour_difference", "expression_ratio") if k in c}
             for c in study["learning_curve"]["points"]]
    verdicts = {}
    for cid, key in (("colour/face/none", "colour_correction_vs_none"),
                     ("colour/face/grey_world", "colour_correction_vs_grey_world"),
                     ("expression/ratio/input", "expression_removed"),
                     (f"expression/{indep}/mean_distance/input", "expression_closer_to_portrait")):
        try:
            c = comparison(study, cid)
        except KeyError:
            continue
        verdicts[key] = {"difference": c["difference"], "ci": c["ci"], "verdict": c["verdict"],
                         "sentence": c["sentence"]}
    return {"ablations": ablations, "learning_curve": curve, "fig12": dict(study["fig12"]),
            "study_verdicts": verdicts}


def merge_contract(metrics: dict, study: Mapping[str, Any]) -> dict:
    """``metrics`` (one run's :func:`~normface_lib.evaluation.evaluate_run` figures) with the study's
    :func:`metrics_contract` merged in, and the study's verdicts placed where the results contract wants them:
    ``colour_correction.verdict`` (normface against no correction, face pixels) and ``expression.verdict`` (the
    expression ratio against 1). Returns ``metrics`` (changed in place)."""
    contract = metrics_contract(study)
    metrics.update(contract)
    v = contract["study_verdicts"]
    if "colour_correction" in metrics and "colour_correction_vs_none" in v:
        metrics["colour_correction"]["verdict"] = v["colour_correction_vs_none"]["verdict"]
        metrics["colour_correction"]["verdict_grey_world"] = v.get("colour_correction_vs_grey_world", {}).get("verdict")
    if "expression" in metrics and "expression_removed" in v:
        metrics["expression"]["verdict"] = v["expression_removed"]["verdict"]
    return metrics


def load_study(profile: str = "quick", path: str | os.PathLike | None = None) -> dict:
    """The committed seed study of ``profile`` (``results/<profile>/seeds.json``).

    Raises:
        FileNotFoundError: not there; run ``make results``.
    """
    p = Path(path) if path else resources.results_dir(profile, committed=True) / STUDY_NAME
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing; run `make results` (the seed study, about 80 minutes on 2 cores).")
    return json.loads(p.read_text())


def study_is_current(study: Mapping[str, Any]) -> bool:
    """Whether the study was made by the library code installed now (same :func:`library_sha256`)."""
    return study.get("provenance", {}).get("library_sha256") == resources.library_sha256()


def _train(config, run: Path, tables: Mapping[str, Any], lib: str) -> Path:
    """Train ``config`` into ``run`` unless it holds a finished run of this config made by this training code
    (``lib``: :func:`~normface_lib.core.resources.library_sha256` of the training packages)."""
    marker = run / "study.json"
    want = {"config": json.loads(json.dumps(config.to_dict())), "library_sha256": lib}
    try:
        done = json.loads((run / "summary.json").read_text()).get("steps_done") == config.steps
        if done and json.loads(marker.read_text()) == want:
            return run
    except (OSError, ValueError):
        pass
    train(config, run, progress=False, force=True, tables=dict(tables))
    resources.write_json(want, marker)
    return run


def _seed_rows(model, run: Path, sets: StudySets, profile: str, n_boot: int) -> tuple[dict, dict]:
    """(metrics as in metrics.json, per-photo rows used by the comparisons) of one trained model."""
    m = evaluate_run(model, run, sets.tables, profile=profile, seed=0, n_boot=n_boot, lfw=sets.lfw,
                     judges=sets.judges, held_out=sets.held_out, colour_photos=sets.colour_photos, details=True)
    det = m["_details"]
    rows: dict[str, Any] = {k: det.get(k) for k in ("unseen_people", "unseen_photos", "orl", "expression", "lfw")}
    rows["robustness"] = m["robustness"]["curves"]
    rows["robustness_clean"] = m["robustness"]["clean"]["_rows"]
    rows["robustness_person"] = to_numpy(m["robustness"]["_person"])
    t = sets.held_out.get("orl", sets.tables["unseen_people"])
    raw, norm = photo_and_normalized_attributes(model, t)
    rows["attributes"] = {"raw": {k: to_numpy(v) for k, v in raw.items()},
                          "normalized": {k: to_numpy(v) for k, v in norm.items()}, "person": to_numpy(t.person)}
    if "_colour" in m:
        bench = m["_colour"]
        rows["colour"] = {"delta_e": bench["delta_e"], "photo": np.array([i for i, _ in bench["cases"]])}
    return as_written(m), rows


def run_study(profile: str = "quick", seeds: Sequence[int] = SEEDS, ablation_steps: int = ABLATION_STEPS,
              n_boot: int = N_BOOT, out: str | os.PathLike | None = None, log=None,
              **overrides: Any) -> Path:
    """Train and evaluate every seed, compute every comparison, write ``results/<profile>/seeds.json``.

    Runs are cached under ``resources.cache_dir("study", profile)`` and reused only when made by the same config
    and training code; the preprocessed photos and features are cached by their inputs alone. On 2 CPU cores,
    ``quick``: about 80 minutes in all. ``overrides`` change the main runs'
    :class:`~normface_lib.training.TrainConfig` (e.g. ``steps=10`` for a smoke test; recorded in the provenance).
    """
    log = log or (lambda line: print(line, flush=True))
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise InputError(f"the study needs at least two distinct seeds, got {seeds}.")
    t_all = time.perf_counter()
    lib = resources.library_sha256(resources.TRAINING_PACKAGES)
    sets = study_sets(profile)
    base = profile_config(profile)
    root = resources.cache_dir("study", profile)
    train_run = lambda cfg, run, tabs: _train(cfg, run, tabs, lib)  # noqa: E731
    per_seed, rows, abl = [], [], []
    for s in seeds:
        t0 = time.perf_counter()
        run = _train(profile_config(profile, **{**overrides, "seed": s}), root / f"seed{s}" / "main",
                     sets.tables, lib)
        model = NormFace.from_pretrained(run, device="cpu")
        metrics, r = _seed_rows(model, run, sets, profile, n_boot)
        a = ablation_rows(profile, s, ablation_steps, sets, root / f"seed{s}", train_run, n_boot)
        per_seed.append({"seed": s, "metrics": metrics, "ablations": {
            k: {kk: vv for kk, vv in v.items() if kk in ("status", "encoder", "layer", "dataset", "fit", "metrics",
                                                          "colour_mean")} for k, v in a.items()}})
        for k, v in a.items():
            if "expression" in v:
                per_seed[-1]["ablations"][k]["expression_ratio"] = v["expression"]["expression_ratio"]
            if "orl" in v:
                per_seed[-1]["ablations"][k]["orl_metrics"] = v["orl"]["metrics"]
        rows.append(r)
        abl.append(a)
        log(f"seed {s}: {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    curve = learning_curve(profile, ablation_steps, train_run, root, sets, n_boot, seed=seeds[0],
                           orl_run=abl[0].get("orl"), log=log)
    fits = [curve_fit(curve, j, k, mo) for j in sets.judges for k in ("rank1", "frac_below_threshold")
            for mo in (True, False)]
    curve_seconds = time.perf_counter() - t0
    comparisons = compare_seeds(rows, abl, sets.judges)
    attrs = attribute_stability([r["attributes"] for r in rows])
    train_t = sets.tables["train"]
    selection = {"limits": {k: list(v) for k, v in faces.FRONTAL_NEUTRAL_LIMITS.items()},
                 "train_rows": int(train_t.photo_mask.sum()),
                 "unseen_people_rows": int(sets.tables["unseen_people"].photo_mask.sum())}
    if sets.dataset == "colour":
        selection.update(data.colour_summary(sets.size))
    study = {"provenance": provenance(profile=profile, seeds=seeds, ablation_steps=ablation_steps, n_boot=n_boot,
                                      overrides=overrides, evaluation_seed=0,
                                      judges={k: v.threshold for k, v in sets.judges.items()}),
             "profile": profile, "seeds": seeds, "judge": sets.indep, "trained_encoder": list(sets.judges)[0],
             "dataset": sets.dataset, "per_seed": per_seed, "comparisons": comparisons, "attributes": attrs,
             "training_inputs": {"default": base.training_inputs, **selection},
             "fig12": fig12(abl, sets.judges, seeds),
             "learning_curve": {"points": curve, "fits": fits, "steps": ablation_steps, "seed": seeds[0],
                                "seconds": curve_seconds},
             "seconds": time.perf_counter() - t_all}
    path = Path(out) if out else resources.results_dir(profile, committed=True) / STUDY_NAME
    resources.write_json(round_floats(study, 5), path)
    log(f"wrote {path} ({time.perf_counter() - t_all:.0f} s)")
    return path
