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
from ..encoders import load_encoder
from ..evaluation import (as_written, evaluate_run, exposure_benchmark, independent_judge, make_judge,
                          photo_and_normalized_attributes, round_floats)
from ..pipeline import NormFace
from ..training import profile_config, train
from .ablations import ABLATION_STEPS, ablation_rows
from .comparisons import MEASURES, N_BOOT, attribute_stability, compare_seeds, comparison, to_numpy
from .scaling import curve_fit, fig12, kfold, learning_curve

#: Training seeds of the study (the book's model is seed 0).
SEEDS = (0, 1, 2)
STUDY_NAME = "seeds.json"


def metrics_contract(study: Mapping[str, Any]) -> dict:
    """The seed study's figures that ``metrics.json`` carries for other tools (notebook 03 merges them in): the
    paired-training ablation (``ablations.paired``: seeds, per judge and measure the reference-minus-paired
    difference with its interval and verdict), the learning curve (a list of points), Figure 12 (``units:
    "squared_l2"``) and the k-fold unseen-people figures. All copied from ``seeds.json`` (a rerun of the notebook
    cannot change them; :mod:`.bands` leaves them out of the rerun check)."""
    paired = {"seeds": list(study["seeds"]), "steps": study["provenance"]["settings"]["ablation_steps"],
              "compared_with": "reference (frontal_neutral, same steps)", "verdicts": {}}
    for j in study["fig12"]["judges"]:
        for cond in ("clean", "hard"):
            for k in MEASURES:
                try:
                    c = comparison(study, f"ablations/paired/{j}/{cond}/{k}")
                except KeyError:
                    continue
                paired["verdicts"][f"{j}/{cond}/{k}"] = {"difference": c["difference"], "ci": c["ci"],
                                                        "per_seed": c["per_seed"], "verdict": c["verdict"]}
    indep = study["judge"]
    paired["verdict"] = paired["verdicts"].get(f"{indep}/clean/rank1", {}).get("verdict")
    curve = [{"n_identities": c["n_identities"], "morphs": c["morphs"], "n_train_photos": c["n_train_photos"],
              "metrics": c["metrics"], "pixel_identity_contrast": c["pixel_identity_contrast"]}
             for c in study["learning_curve"]["points"]]
    kf = study["kfold"]
    return {"ablations": {"paired": paired}, "learning_curve": curve,
            "fig12": {k: v for k, v in study["fig12"].items()},
            "kfold": {"n_folds": kf["n_folds"], "n_people": kf["n_people"], "chance_rank1": kf["chance_rank1"],
                      "pooled": kf["pooled"], "pixel_identity_contrast": kf["pixel_identity_contrast"]}}


def load_study(profile: str = "quick", path: str | os.PathLike | None = None) -> dict:
    """The committed seed study of ``profile`` (``results/<profile>/seeds.json``).

    Raises:
        FileNotFoundError: not there; run ``make results``.
    """
    p = Path(path) if path else resources.results_dir(profile, committed=True) / STUDY_NAME
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing; run `make results` (the seed study, about an hour on 2 cores).")
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


def _seed_rows(model, run: Path, tables, lfw, judges, profile: str, n_boot: int) -> tuple[dict, dict]:
    """(metrics as in metrics.json, per-photo rows used by the comparisons) of one trained model."""
    m = evaluate_run(model, run, tables, profile=profile, seed=0, n_boot=n_boot, lfw=lfw, judges=judges,
                        details=True)
    det = m["_details"]
    rows: dict[str, Any] = {"unseen_people": det["unseen_people"], "unseen_photos": det.get("unseen_photos"),
                            "lfw": det.get("lfw"), "robustness": m["robustness"]["curves"]}
    up = tables["unseen_people"]
    raw, norm = photo_and_normalized_attributes(model, up)
    rows["attributes"] = {"raw": {k: to_numpy(v) for k, v in raw.items()},
                          "normalized": {k: to_numpy(v) for k, v in norm.items()}, "person": to_numpy(up.person)}
    photos, lms, _, _ = data.orl_landmarks()
    held_out = data.orl_splits()["unseen_people"]
    sel = data.orl_rows(held_out, (1, 6))
    bench = exposure_benchmark(model, [photos[r] for r in sel], lms[sel], kind="auto" if
                                      model.renders_colour else "exposure")
    person_of_photo = np.repeat(np.arange(len(held_out)), 2)
    rows["colour"] = {"delta_e": bench["delta_e"], "consistency": bench["consistency"],
                      "stops": np.array([s for _, s in bench["cases"]]),
                      "person": person_of_photo[[i for i, _ in bench["cases"]]]}
    return as_written(m), rows


def run_study(profile: str = "quick", seeds: Sequence[int] = SEEDS, ablation_steps: int = ABLATION_STEPS,
              n_boot: int = N_BOOT, out: str | os.PathLike | None = None, log=None,
              **overrides: Any) -> Path:
    """Train and evaluate every seed, compute every comparison, write ``results/<profile>/seeds.json``.

    Runs are cached under ``resources.cache_dir("study", profile)`` and reused only when made by the same config
    and training code. On 2 CPU cores, ``quick``: about an hour in all. ``overrides`` change the main runs'
    :class:`~normface_lib.training.TrainConfig` (e.g. ``steps=10`` for a smoke test; recorded in the provenance).
    """
    log = log or (lambda line: print(line, flush=True))
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise InputError(f"the study needs at least two distinct seeds, got {seeds}.")
    t_all = time.perf_counter()
    lib = resources.library_sha256(resources.TRAINING_PACKAGES)
    size = profile_config(profile).size
    tables = data.load_tables("orl", size, mirror=True)
    abl_tables = {**tables, "train_paired": data.load_tables("orl", size, splits=(), mirror=True,
                                                             inputs="paired")["train"]}
    lfw = data.load_lfw(size)
    base = profile_config(profile)
    enc = load_encoder(base.encoder, layer=base.encoder_layer)
    indep = independent_judge(enc.name)
    judges = {enc.name: make_judge(enc, tables["train"]), indep: make_judge(load_encoder(indep), tables["train"])}
    root = resources.cache_dir("study", profile)
    train_run = lambda cfg, run, tabs: _train(cfg, run, tabs, lib)  # noqa: E731
    t0 = time.perf_counter()
    main0 = _train(profile_config(profile, **{**overrides, "seed": seeds[0]}), root / f"seed{seeds[0]}" / "main", tables,
                   lib)
    kf = kfold(profile, size, train_run, root, {"run": main0, "tables": tables}, n_boot,
               seed=seeds[0], log=log, **overrides)
    kf.pop("_rows")
    kf["seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    curve = learning_curve(profile, size, ablation_steps, train_run, root, judges, n_boot, seed=seeds[0], log=log)
    fits = [curve_fit(curve, j, k, mo) for j in judges for k in ("rank1", "frac_below_threshold")
            for mo in (True, False)]
    curve_seconds = time.perf_counter() - t0
    per_seed, rows, abl = [], [], []
    for s in seeds:
        t0 = time.perf_counter()
        run = _train(profile_config(profile, **{**overrides, "seed": s}), root / f"seed{s}" / "main", tables, lib)
        model = NormFace.from_pretrained(run, device="cpu")
        metrics, r = _seed_rows(model, run, tables, lfw, judges, profile, n_boot)
        a = ablation_rows(profile, s, ablation_steps, abl_tables, judges, root / f"seed{s}",
                          lambda cfg, run, tabs: _train(cfg, run, tabs, lib), n_boot)
        per_seed.append({"seed": s, "metrics": metrics,
                         "ablations": {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in a.items()}})
        rows.append(r)
        abl.append(a)
        log(f"seed {s}: {time.perf_counter() - t0:.0f} s")
    comparisons = compare_seeds(rows, abl, judges, tables)
    attrs = attribute_stability([r["attributes"] for r in rows])
    fn = data.orl_frontal()
    frontal = {"limits": {k: list(v) for k, v in faces.FRONTAL_NEUTRAL_LIMITS.items()},
               "n_photos": 400, "n_passed": int(fn["passed"].sum()), "per_person": fn["per_person"],
               "fallback": fn["fallback"], "train_rows": int(tables["train"].photo_mask.sum()),
               "unseen_photos_rows": int(tables["unseen_photos"].photo_mask.sum()),
               "paired_train_rows": int(abl_tables["train_paired"].photo_mask.sum())}
    study = {"provenance": provenance(profile=profile, seeds=seeds, ablation_steps=ablation_steps, n_boot=n_boot,
                                      overrides=overrides,
                                      evaluation_seed=0, judges={k: v.threshold for k, v in judges.items()}),
             "profile": profile, "seeds": seeds, "judge": indep, "trained_encoder": enc.name,
             "per_seed": per_seed, "comparisons": comparisons, "attributes": attrs,
             "training_inputs": {"default": base.training_inputs, **frontal},
             "fig12": fig12(abl, judges, seeds), "kfold": kf,
             "learning_curve": {"points": curve, "fits": fits, "steps": ablation_steps, "seed": seeds[0],
                                "seconds": curve_seconds},
             "seconds": time.perf_counter() - t_all}
    path = Path(out) if out else resources.results_dir(profile, committed=True) / STUDY_NAME
    resources.write_json(round_floats(study, 5), path)
    log(f"wrote {path} ({time.perf_counter() - t_all:.0f} s)")
    return path
