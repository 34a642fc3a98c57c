"""Bands: how far each figure of ``metrics.json`` may move on a rerun (float32 training is not bit-identical across
CPUs), measured from the seed study's seed-to-seed spread; and the check of a rerun against the committed figures."""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import numpy as np

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
#: Keys of ``metrics.json`` copied from the seed study (:func:`~normface_lib.study.seeds.metrics_contract`): a rerun
#: of the notebook copies the same committed figures, so they are not band-checked.
STUDY_KEYS = ("ablations", "learning_curve", "fig12", "study_verdicts")


def figures(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every result figure of a ``metrics.json`` as ``{path: value}`` (``"clean.normface.rank1"``,
    ``"ci.clean.normface.rank1[0]"``); timings, provenance and settings (:data:`SKIP_KEYS`) are left out."""
    out: dict[str, float] = {}
    if isinstance(metrics, Mapping):
        for k, v in metrics.items():
            if str(k) in SKIP_KEYS or (not prefix and str(k) in STUDY_KEYS) or str(k).startswith("_") \
                    or "seconds" in str(k):
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
    if path.endswith("input_rank1") or ".spread_in" in path or path.endswith(".input") or ".input." in path \
            or path.endswith("distance_input") or ".distance_input." in path:
        return False
    if ".methods." in path or ".delta_e" in path:  # one block per method: only normface's figures are trained
        return "normface" in path
    return any(t in path for t in ("normface", "spread_out", "training.", "robustness.", "expression_ratio",
                                   "contrast_gain", "distance_output", "pixel_change_ratio")) or \
        path.startswith("invariance.spread_out")


def bands(study: Mapping[str, Any], k: float = BAND_K) -> dict[str, float]:
    """How far each figure of ``metrics.json`` may move on a rerun: ``{path: band}``.

    A figure that depends on training gets ``k`` times its seed-to-seed standard deviation (over the study's seeds,
    ``ddof=1``), but at least ``k`` times the median standard deviation of figures of the same kind (the last key:
    ``rank1``, ``mean_distance``, ``texture_l1``…), so that a discrete figure whose few seeds happened to agree is not
    held to zero. Any figure also gets the arithmetic floor: :data:`RATE_FLOOR` for rates, :data:`VALUE_FLOOR`
    otherwise. A figure that does not depend on training gets only the floor. A confidence-interval endpoint moves
    with its estimate (a bootstrap interval of a ratio scales with it), so its band is at least the estimate's band
    times endpoint / estimate (seed means).
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
    mean = {p: float(np.mean([q[p] for q in per])) for p in paths}
    for p in paths:
        est = _estimate_of(p)
        if est in out and is_trained(p) and mean[est] != 0:
            out[p] = max(out[p], out[est] * abs(mean[p] / mean[est]))
    return out


def _estimate_of(path: str) -> str | None:
    """The point estimate a confidence-interval endpoint belongs to: ``a.ci[1]`` → ``a.value``, ``a_ci[0]`` → ``a``
    (None for any other figure)."""
    m = re.fullmatch(r"(.*)\.ci\[\d+\]", path)
    if m:
        return m.group(1) + ".value"
    m = re.fullmatch(r"(.*)_ci\[\d+\]", path)
    return m.group(1) if m else None


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
