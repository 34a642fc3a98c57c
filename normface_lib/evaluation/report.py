"""Metrics as written: every figure of an evaluation rounded and without its private (``_``) entries, as one JSON file
with its provenance; and the figures of a training run's ``summary.json`` a reader compares."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core import resources
from ..core.errors import InputError
from ..core.provenance import provenance

METRICS_NAME = "metrics.json"


def round_floats(obj, nd: int = 4):
    """``obj`` with every float rounded to ``nd`` digits (dicts, lists and tuples walked)."""
    if isinstance(obj, float):
        return round(obj, nd)
    if isinstance(obj, dict):
        return {k: round_floats(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, nd) for v in obj]
    return obj


def as_written(metrics: Mapping[str, Any], nd: int = 4) -> dict:
    """``metrics`` as ``metrics.json`` holds them: keys starting with ``_`` dropped (at every depth), NumPy scalars
    made Python numbers, floats rounded to ``nd`` digits. Raises :class:`InputError` if any number is not finite."""
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if not str(k).startswith("_")}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, np.integer)):
            o = o.item()
        if isinstance(o, float) and not math.isfinite(o):
            raise InputError("metrics contain a NaN or inf value; fix the evaluation before writing metrics.json.")
        return o
    return round_floats(clean(metrics), nd)


def to_json(metrics: Mapping[str, Any], path: str | Path, nd: int = 4) -> Path:
    """Write :func:`as_written` ``(metrics, nd)`` as indented JSON, atomically. Returns ``path``."""
    return resources.write_json(as_written(metrics, nd), path)


def write_metrics(metrics: Mapping[str, Any], profile: str, **settings: Any) -> Path:
    """Write a notebook run's figures to :func:`normface_lib.core.resources.results_dir` ``/metrics.json`` with their
    provenance (floats rounded to 4 decimals, see :func:`to_json`)."""
    return to_json({**metrics, "provenance": provenance(profile=profile, **settings)},
                   resources.results_dir(profile) / METRICS_NAME)


def training_block(run_dir: str | Path) -> dict:
    """The figures of a training run's ``summary.json`` that a reader compares: steps done, the mean of the last
    logged losses, and the final losses on the training inputs and each held-out split (``eval``)."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    return {"steps_done": summary["steps_done"], "last_losses": summary["last_losses"],
            "eval": {split: {k: v for k, v in e.items() if isinstance(v, float)}
                     for split, e in summary.get("eval", {}).items()}}
