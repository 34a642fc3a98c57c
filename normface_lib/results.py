"""Precomputed results with provenance: the seed study behind every verdict, and the bands a rerun must stay in.

Float32 training is not bit-identical across CPUs, and a single training run is one draw among many. So the book
states no comparison from one run. ``make results`` (``python -m normface_lib.results run``) trains the ``quick``
profile's model and its ablations for several seeds (:data:`SEEDS`), evaluates each exactly as notebook 03 does
(:func:`normface_lib.evaluate.evaluate_run`), and writes ``results/<profile>/seeds.json``:

- ``provenance``: commit, machine, date, seeds, settings and :func:`normface_lib.resources.library_sha256` of the
  code that ran (a test fails when the library changes and the study was not rerun);
- ``per_seed``: every seed's full metrics (the figures of ``metrics.json``), ablation rows, attribute stability
  and colour-correction figures;
- ``comparisons``: every comparison the book states, each a :func:`normface_lib.verdicts.paired_difference` (paired
  by seed and photo, two-level bootstrap over seeds and people) with its verdict and the sentence the book glues.

:func:`bands` turns the seed-to-seed spread into a tolerance for each figure of ``metrics.json``, and
:func:`band_violations` checks a rerun against the committed figures with them (``python -m normface_lib.results
check RERUN.json``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from . import resources
from .errors import InputError
from .verdicts import bootstrap_statistic, describe, paired_difference, relabel

#: Training seeds of the study (the book's model is seed 0).
SEEDS = (0, 1, 2)
#: Training steps of every ablation run (one equal, small budget).
ABLATION_STEPS = 400
#: Bootstrap replicates of the evaluation's intervals and of the comparisons.
N_BOOT = 1000
STUDY_NAME = "seeds.json"
METRICS_NAME = "metrics.json"

#: Bands: a trained figure may move by ``BAND_K`` seed-to-seed standard deviations (see :func:`bands`).
BAND_K = 5.0
#: Smallest band of a rate over photos: one photo's decision (1/64, the smallest held-out set) may flip when a
#: distance lies within float error of a threshold.
RATE_FLOOR = 1.0 / 64
#: Smallest band of any other figure: ``metrics.json`` rounds to 4 decimals, and two roundings differ by ≤ 1e-4.
VALUE_FLOOR = 2e-4
RATE_NAMES = ("rank1", "frac_below_threshold", "input_rank1", "tar_train", "far")
#: Keys that are not results: timings, provenance, and the ``info`` blocks (sizes, seeds, settings, chance levels),
#: and the strengths of the robustness sweep (settings). Never compared.
SKIP_KEYS = ("seconds", "provenance", "info", "strength")

MEASURES = {"rank1": ("rank-1", True), "frac_below_threshold": ("fraction below threshold", True),
            "mean_distance": ("mean distance", False)}
BASELINE_LABELS = {"mean_face": "the mean face", "nearest_identity": "the nearest training identity",
                   "linear": "the linear map", "align_only": "align-only"}
ABLATION_LABELS = {"dlib-resnet": "the run on dlib-ResNet features", "no-identity-loss": "the run without the "
                   "identity loss", "no-warp": "the run without the warp"}


# ============================================================================================== provenance
def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    """The machine facts that change float32 results: CPU model, the kernels torch picked, threads, emulation
    variables (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``, ``OMP_NUM_THREADS``)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                                      "OMP_NUM_THREADS") if k in os.environ}
    return {"cpu": cpu, "cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "env": env}


def provenance(**settings: Any) -> dict[str, Any]:
    """Where a result came from: commit (and whether the library had uncommitted changes), machine, UTC date,
    the settings given, and the sha256 of the library code."""
    dirty = _git("status", "--porcelain", "--", "normface_lib")
    return {"commit": _git("rev-parse", "HEAD"), "library_uncommitted_changes": bool(dirty),
            "library_sha256": resources.library_sha256(), "machine": machine(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "settings": settings}


def _write_json(obj: Any, path: Path) -> Path:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def write_metrics(metrics: Mapping[str, Any], profile: str, **settings: Any) -> Path:
    """Write a notebook run's figures to :func:`normface_lib.resources.results_dir` ``/metrics.json`` with their
    provenance (floats rounded to 4 decimals, see :func:`normface_lib.evaluate.to_json`)."""
    from .evaluate import to_json
    return to_json({**metrics, "provenance": provenance(profile=profile, **settings)},
                   resources.results_dir(profile) / METRICS_NAME)


def load_study(profile: str = "quick", path: str | os.PathLike | None = None) -> dict:
    """The committed seed study of ``profile`` (``results/<profile>/seeds.json``).

    Raises:
        FileNotFoundError: not there; run ``make results``.
    """
    p = Path(path) if path else resources.results_dir(profile, committed=True) / STUDY_NAME
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing; run `make results` (the seed study, about 20 minutes on 2 cores).")
    return json.loads(p.read_text())


def study_is_current(study: Mapping[str, Any]) -> bool:
    """Whether the study was made by the library code installed now (same :func:`library_sha256`)."""
    return study.get("provenance", {}).get("library_sha256") == resources.library_sha256()


# ============================================================================================== the study
def _train(config, run: Path, tables: Mapping[str, Any], lib: str) -> Path:
    """Train ``config`` into ``run`` unless it holds a finished run of this config made by this library code."""
    from .train import train

    marker = run / "study.json"
    want = {"config": json.loads(json.dumps(config.to_dict())), "library_sha256": lib}
    try:
        done = json.loads((run / "summary.json").read_text()).get("steps_done") == config.steps
        if done and json.loads(marker.read_text()) == want:
            return run
    except (OSError, ValueError):
        pass
    train(config, run, progress=False, force=True, tables=dict(tables))
    _write_json(want, marker)
    return run


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def _seed_rows(model, run: Path, tables, lfw, judges, profile: str, n_boot: int) -> tuple[dict, dict]:
    """(metrics as in metrics.json, per-photo rows used by the comparisons) of one trained model."""
    from . import data
    from . import evaluate as ev
    from .apps import attributes, colour

    m = ev.evaluate_run(model, run, tables, profile=profile, seed=0, n_boot=n_boot, lfw=lfw, judges=judges,
                        details=True)
    det = m["_details"]
    rows: dict[str, Any] = {"unseen_people": det["unseen_people"], "unseen_photos": det.get("unseen_photos"),
                            "lfw": det.get("lfw"), "robustness": m["robustness"]["curves"]}
    up = tables["unseen_people"]
    raw, norm = attributes.photo_and_normalized_attributes(model, up)
    rows["attributes"] = {"raw": {k: _to_numpy(v) for k, v in raw.items()},
                          "normalized": {k: _to_numpy(v) for k, v in norm.items()}, "person": _to_numpy(up.person)}
    photos, lms, _, _ = data.orl_landmarks()
    held_out = data.orl_splits()["unseen_people"]
    sel = data.orl_rows(held_out, (1, 6))
    bench = colour.exposure_benchmark(model, [photos[r] for r in sel], lms[sel], kind="auto" if
                                      model.renders_colour else "exposure")
    person_of_photo = np.repeat(np.arange(len(held_out)), 2)
    rows["colour"] = {"delta_e": bench["delta_e"], "consistency": bench["consistency"],
                      "stops": np.array([s for _, s in bench["cases"]]),
                      "person": person_of_photo[[i for i, _ in bench["cases"]]]}
    clean = json.loads(json.dumps(ev._round({k: v for k, v in m.items() if not k.startswith("_")}),
                                  default=lambda o: None))
    _drop_private(clean)
    return clean, rows


def _drop_private(obj) -> None:
    if isinstance(obj, dict):
        for k in [k for k in obj if str(k).startswith("_")]:
            del obj[k]
        for v in obj.values():
            _drop_private(v)
    elif isinstance(obj, list):
        for v in obj:
            _drop_private(v)


def _ablation_rows(profile: str, s: int, steps: int, tables, judges, root: Path, lib: str, n_boot: int) -> dict:
    from . import evaluate as ev
    from .model import NormFace

    up = tables["unseen_people"]
    r = ev.real_rows(up)
    x, lm, person = up.images[r], up.landmarks[r], up.person[r]
    out = {}
    for name, cfg in ev.ablation_configs(profile, steps=steps, seed=s).items():
        if isinstance(cfg, str):
            out[name] = {"status": cfg}
            continue
        run = _train(cfg, root / name, {"train": tables["train"]}, lib)
        model = NormFace.from_pretrained(run, device="cpu")
        res = ev.evaluate_split(model, None, x, lm, person, judges, None, person, torch.arange(len(x)), seed=0,
                                n_boot=n_boot, methods=("normface",), details=True)
        out[name] = {"status": "trained", "encoder": cfg.encoder, "rows": {
            j: {cond: res["_details"][cond][j]["normface"] for cond in ("clean", "hard")} for j in judges},
            "metrics": {j: {cond: res[cond][j]["metrics"]["normface"] for cond in ("clean", "hard")} for j in judges}}
    return out


def run_study(profile: str = "quick", seeds: Sequence[int] = SEEDS, ablation_steps: int = ABLATION_STEPS,
              n_boot: int = N_BOOT, out: str | os.PathLike | None = None, log=None,
              **overrides: Any) -> Path:
    """Train and evaluate every seed, compute every comparison, write ``results/<profile>/seeds.json``.

    Runs are cached under ``resources.cache_dir("study", profile)`` and reused only when made by the same config
    and library code. On 2 CPU cores, ``quick``: about 7 minutes a seed. ``overrides`` change the main runs'
    :class:`~normface_lib.train.TrainConfig` (e.g. ``steps=10`` for a smoke test; recorded in the provenance).
    """
    from . import data
    from . import evaluate as ev
    from .encoders import load_encoder
    from .model import NormFace
    from .train import profile_config

    log = log or (lambda line: print(line, flush=True))
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise InputError(f"the study needs at least two distinct seeds, got {seeds}.")
    t_all = time.perf_counter()
    lib = resources.library_sha256()
    size = profile_config(profile).size
    tables = ev.load_eval_tables(size)
    lfw = data.load_lfw(size)
    base = profile_config(profile)
    enc = load_encoder(base.encoder, layer=base.encoder_layer)
    indep = ev.independent_judge(enc.name)
    judges = {enc.name: ev.make_judge(enc, tables["train"]), indep: ev.make_judge(load_encoder(indep), tables["train"])}
    root = resources.cache_dir("study", profile)
    per_seed, rows, abl = [], [], []
    for s in seeds:
        t0 = time.perf_counter()
        run = _train(profile_config(profile, **{**overrides, "seed": s}), root / f"seed{s}" / "main", tables, lib)
        model = NormFace.from_pretrained(run, device="cpu")
        metrics, r = _seed_rows(model, run, tables, lfw, judges, profile, n_boot)
        a = _ablation_rows(profile, s, ablation_steps, tables, judges, root / f"seed{s}", lib, n_boot)
        per_seed.append({"seed": s, "metrics": metrics,
                         "ablations": {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in a.items()}})
        rows.append(r)
        abl.append(a)
        log(f"seed {s}: {time.perf_counter() - t0:.0f} s")
    comparisons = compare_seeds(rows, abl, judges, tables)
    attrs = attribute_stability([r["attributes"] for r in rows])
    study = {"provenance": provenance(profile=profile, seeds=seeds, ablation_steps=ablation_steps, n_boot=n_boot,
                                      overrides=overrides,
                                      evaluation_seed=0, judges={k: v.threshold for k, v in judges.items()}),
             "profile": profile, "seeds": seeds, "judge": indep, "trained_encoder": enc.name,
             "per_seed": per_seed, "comparisons": comparisons, "attributes": attrs,
             "seconds": time.perf_counter() - t_all}
    path = Path(out) if out else resources.results_dir(profile, committed=True) / STUDY_NAME
    _write_json(ev._round(study, 5), path)
    log(f"wrote {path} ({time.perf_counter() - t_all:.0f} s)")
    return path


# ============================================================================================== comparisons
def _stack(rows: Sequence[Mapping], get) -> np.ndarray:
    return np.stack([_to_numpy(get(r)) for r in rows])


def _add(out: list, cid: str, group: str, a, b, person, higher: bool, subject: str, other: str, measure: str,
         unit: str = "people", **where: Any) -> None:
    c = paired_difference(a, b, person, higher_is_better=higher, n_boot=2000, seed=0)
    verb = "are" if subject.endswith("outputs") else "is"
    out.append({"id": cid, "group": group, "subject": subject, "other": other, "measure": measure, "unit": unit,
                **where, **c, "sentence": describe(c, subject, other, measure, verb=verb, unit=unit)})


def compare_seeds(rows: Sequence[Mapping], abl: Sequence[Mapping], judges: Mapping[str, Any], tables) -> list[dict]:
    """Every comparison the book states, from the per-seed rows of :func:`run_study` (a list of dicts, see the
    module docstring). Baselines do not depend on the training seed: they enter as seed 0's rows."""
    from . import evaluate as ev

    out: list[dict] = []
    person_up = _to_numpy(rows[0]["unseen_people"]["person"])
    # normface against each baseline: unseen people (both judges) and unseen photos (both judges)
    for split in ("unseen_people", "unseen_photos"):
        if rows[0].get(split) is None:
            continue
        person = _to_numpy(rows[0][split]["person"])
        for cond in ("clean", "hard"):
            for j in judges:
                for metric, (label, higher) in MEASURES.items():
                    a = _stack(rows, lambda r: r[split][cond][j]["normface"][metric])
                    for m, other in BASELINE_LABELS.items():
                        b = _to_numpy(rows[0][split][cond][j][m][metric])
                        _add(out, f"{split}/{cond}/{j}/{metric}/{m}", "baselines", a, b, person, higher, "normface",
                             other, label, split=split, condition=cond, judge=j, metric=metric, baseline=m)
    # invariance: a person's outputs vs its input photos (embedding spread per judge, pixel spread)
    P = len(np.unique(person_up))
    for cond in ("clean", "hard"):
        for j in judges:
            a = _stack(rows, lambda r: r["unseen_people"][cond][j]["spread"]["normface"])
            b = _to_numpy(rows[0]["unseen_people"][cond][j]["spread"]["input"])
            _add(out, f"invariance/{cond}/{j}", "invariance", a, b, np.arange(P), False, "normface's outputs",
                 "the input photos", f"spread of a person's embeddings ({j})", condition=cond, judge=j)
        a = _stack(rows, lambda r: r["unseen_people"][cond]["pixel_spread"]["normface"])
        b = _to_numpy(rows[0]["unseen_people"][cond]["pixel_spread"]["input"])
        _add(out, f"invariance/{cond}/pixels", "invariance", a, b, np.arange(P), False, "normface's outputs",
             "the input photos", "pixel standard deviation across a person's photos", condition=cond, judge="pixels")
    # landmarks (clean)
    a = _stack(rows, lambda r: r["unseen_people"]["landmarks"]["normface"])
    for m in ("mean_face", "nearest_identity", "linear"):
        _add(out, f"landmarks/{m}", "landmarks", a, _to_numpy(rows[0]["unseen_people"]["landmarks"][m]), person_up,
             False, "normface", BASELINE_LABELS[m], "landmark error (inter-ocular units)", baseline=m)
    # LFW subset: distances to the input (identity unknown: photos are the units)
    if rows[0].get("lfw") is not None:
        for j, judge in judges.items():
            d = _stack(rows, lambda r: r["lfw"][j]["normface"])
            ids = np.arange(d.shape[1])
            for m in ("mean_face", "align_only"):
                db = _to_numpy(rows[0]["lfw"][j][m])
                _add(out, f"lfw/{j}/frac_below_threshold/{m}", "lfw", (d < judge.threshold).astype(float),
                     (db < judge.threshold).astype(float), ids, True, "normface", BASELINE_LABELS[m],
                     "fraction below threshold", unit="photos", judge=j, metric="frac_below_threshold", baseline=m)
                _add(out, f"lfw/{j}/mean_distance/{m}", "lfw", d, db, ids, False, "normface", BASELINE_LABELS[m],
                     "mean distance", unit="photos", judge=j, metric="mean_distance", baseline=m)
    # robustness sweep: output under a perturbation vs output on clean photos, and vs the perturbed photo itself
    indep = ev.independent_judge(next(iter(judges)))
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
    from .apps.attributes import within_person_spread

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


# ============================================================================================== bands
def figures(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every result figure of a ``metrics.json`` as ``{path: value}`` (``"clean.normface.rank1"``,
    ``"ci.clean.normface.rank1[0]"``); timings, provenance and settings (:data:`SKIP_KEYS`) are left out."""
    out: dict[str, float] = {}
    if isinstance(metrics, Mapping):
        for k, v in metrics.items():
            if str(k) in SKIP_KEYS or str(k).startswith("_") or "seconds" in str(k):
                continue
            out.update(figures(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(metrics, (list, tuple)):
        for i, v in enumerate(metrics):
            out.update(figures(v, f"{prefix}[{i}]"))
    elif isinstance(metrics, (int, float)) and not isinstance(metrics, bool):
        out[prefix] = float(metrics)
    return out


def _category(path: str) -> str:
    last = re.sub(r"\[\d+\]", "", path.rsplit(".", 1)[-1])
    return last.removesuffix("_ci")


def is_trained(path: str) -> bool:
    """Whether a figure depends on the trained decoder (baselines, thresholds and inputs do not)."""
    if path.endswith("input_rank1") or ".spread_in" in path or path.endswith(".input"):
        return False
    return any(t in path for t in ("normface", "spread_out", "training.", "robustness.")) or \
        path.startswith("invariance.spread_out")


def bands(study: Mapping[str, Any], k: float = BAND_K) -> dict[str, float]:
    """How far each figure of ``metrics.json`` may move on a rerun: ``{path: band}``.

    A figure that depends on training gets ``k`` times its seed-to-seed standard deviation (over the study's seeds,
    ``ddof=1``), but at least ``k`` times the median standard deviation of figures of the same kind (the last key:
    ``rank1``, ``mean_distance``, ``texture_l1``…), so that a discrete figure whose few seeds happened to agree is not
    held to zero. Any figure also gets the arithmetic floor: :data:`RATE_FLOOR` for rates, :data:`VALUE_FLOOR`
    otherwise. A figure that does not depend on training gets only the floor.
    """
    per = [figures(s["metrics"]) for s in study["per_seed"]]
    paths = set.intersection(*(set(p) for p in per))
    sd = {p: float(np.std([q[p] for q in per], ddof=1)) for p in paths}
    pooled: dict[str, list[float]] = {}
    for p, v in sd.items():
        if is_trained(p):
            pooled.setdefault(_category(p), []).append(v)
    med = {c: float(np.median(v)) for c, v in pooled.items()}
    out = {}
    for p in paths:
        floor = RATE_FLOOR if _category(p) in RATE_NAMES else VALUE_FLOOR
        out[p] = max(floor, k * max(sd[p], med.get(_category(p), 0.0))) if is_trained(p) else floor
    return out


def band_violations(rerun: Mapping[str, Any], committed: Mapping[str, Any], study: Mapping[str, Any],
                    k: float = BAND_K) -> list[str]:
    """Figures of ``rerun`` outside their band around ``committed`` (see :func:`bands`), and figures missing from
    either; an empty list means the rerun reproduces the committed results. Each entry says path, both values and
    the band."""
    b = bands(study, k)
    new, old = figures(rerun), figures(committed)
    bad = [f"{p}: missing from the rerun" for p in sorted(set(old) - set(new))]
    bad += [f"{p}: not in the committed results" for p in sorted(set(new) - set(old))]
    for p in sorted(set(new) & set(old)):
        band = b.get(p)
        if band is None:
            bad.append(f"{p}: no band (the seed study lacks this figure; rerun `make results`)")
        elif abs(new[p] - old[p]) > band + 1e-9:
            bad.append(f"{p}: rerun {new[p]:.4f} vs committed {old[p]:.4f}, band ±{band:.4f}")
    return bad


def spread_summary(a: Mapping[str, Any], b: Mapping[str, Any], study: Mapping[str, Any] | None = None) -> dict:
    """How two ``metrics.json`` differ: number of figures, how many are bit-identical, the largest absolute
    difference among trained figures, and (with a study) the largest difference as a fraction of its band."""
    fa, fb = figures(a), figures(b)
    common = sorted(set(fa) & set(fb))
    diffs = {p: abs(fa[p] - fb[p]) for p in common}
    trained = [p for p in common if is_trained(p)]
    out = {"figures": len(common), "identical": sum(d == 0 for d in diffs.values()),
           "trained_figures": len(trained), "trained_identical": sum(diffs[p] == 0 for p in trained),
           "max_abs_difference": max((diffs[p] for p in trained), default=0.0)}
    if study is not None:
        b_ = bands(study)
        frac = {p: diffs[p] / b_[p] for p in common if p in b_}
        worst = max(frac, key=frac.get) if frac else None
        out.update({"max_fraction_of_band": frac[worst] if worst else 0.0, "worst_figure": worst})
    return out


def headline_spread(study: Mapping[str, Any], paths: Iterable[str]) -> dict[str, dict]:
    """Seed-to-seed mean, standard deviation, min and max of chosen figures (``{path: {...}}``)."""
    per = [figures(s["metrics"]) for s in study["per_seed"]]
    out = {}
    for p in paths:
        v = np.array([q[p] for q in per])
        out[p] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "min": float(v.min()), "max": float(v.max()),
                  "values": [float(x) for x in v]}
    return out


# ============================================================================================== command line
def main(argv: list[str] | None = None) -> int:
    """``python -m normface_lib.results run|check|compare`` (see ``--help``)."""
    ap = argparse.ArgumentParser(prog="python -m normface_lib.results", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and evaluate every seed, write results/<profile>/seeds.json")
    r.add_argument("--profile", default="quick")
    r.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    r.add_argument("--ablation-steps", type=int, default=ABLATION_STEPS)
    r.add_argument("--out", default=None)
    c = sub.add_parser("check", help="check a rerun's metrics.json against the committed one with the study's bands")
    c.add_argument("rerun")
    c.add_argument("--profile", default="quick")
    c.add_argument("--committed", default=None)
    d = sub.add_parser("compare", help="how two metrics.json differ (bit-identical figures, largest difference)")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--profile", default="quick")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run_study(args.profile, args.seeds, args.ablation_steps, out=args.out)
        return 0
    study = load_study(args.profile)
    if args.cmd == "check":
        committed = Path(args.committed) if args.committed else \
            resources.results_dir(args.profile, committed=True) / METRICS_NAME
        bad = band_violations(json.loads(Path(args.rerun).read_text()), json.loads(committed.read_text()), study)
        for line in bad:
            print(line)
        print(f"{len(bad)} figures outside their bands" if bad else "every figure inside its band")
        return 1 if bad else 0
    s = spread_summary(json.loads(Path(args.a).read_text()), json.loads(Path(args.b).read_text()), study)
    print(json.dumps(s, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
