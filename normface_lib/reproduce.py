"""One command from data to results at any scale (``normface reproduce``): train a profile on a data set, evaluate the
trained model on the data set's held-out people and photos and on people from elsewhere (LFW when present, else
ORL), and (from the command line) run the applications on a few photos.

Everything goes into one run folder, ``<runs>/reproduce-<profile>-<key>/`` (:func:`reproduce_folder`), keyed by the
profile and every setting that changes what is computed: a rerun with the same settings continues or reuses it,
other settings get another folder, and nothing is ever written over the quick results, the committed ``results/``
or a profile's default checkpoint. Inside: ``train/`` (the training run, resumed when interrupted), ``report.json``
(the figures, their sources and sample sizes), ``apps/`` (command line only).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from . import data
from .core import resources
from .core.provenance import provenance
from .evaluation import evaluate_model, to_json
from .nets.checkpoint import find_checkpoint, steps_left
from .pipeline import NormFace, run_key
from .training import CHECKPOINT_NAME, profile_config, train

REPORT_NAME = "report.json"


def reproduce_folder(profile: str = "quick", runs: str | os.PathLike | None = None, **overrides) -> Path:
    """``<runs>/reproduce-<profile>-<key>`` (``runs`` default: ``cache_dir("runs")``), the key as in
    :func:`normface_lib.pipeline.run_key`."""
    base = Path(runs) if runs is not None else resources.cache_dir("runs")
    return base / f"reproduce-{run_key(profile, **overrides)}"


def _identity_summary(metrics: dict) -> dict:
    """The headline figures of :func:`~normface_lib.evaluation.evaluate_model`: per condition and method, the
    identity metrics with their 95 % intervals, and what they were measured on."""
    return {"judge": metrics["judge"], "trained_encoder": metrics["trained_encoder"], "info": metrics.get("info"),
            **{cond: {m: {"value": metrics[cond][m], "ci": metrics["ci"][cond][m]} for m in metrics[cond]}
               for cond in ("clean", "hard")}}


def reproduce(profile: str = "quick", runs: str | os.PathLike | None = None, lfw: str | os.PathLike | None = None,
              online: bool = True, progress: bool = True, n_boot: int = 1000, external_people: int = 40,
              photos_per_person: int = 4, eval_sample: dict | None = None, **overrides: Any) -> dict:
    """Train (or resume, or reuse) ``profile`` with ``overrides`` and evaluate it; write ``report.json``.

    Args:
        profile: ``"quick"`` or ``"paper"``.
        runs: the folder that holds reproduce runs (default ``cache_dir("runs")``).
        lfw: an LFW folder (one sub-folder per person) for the evaluation beyond the data set.
        online: may fetch LFW with scikit-learn when ``lfw`` is not given (else ORL is used).
        progress: progress bars.
        n_boot: bootstrap replicates of the intervals.
        external_people, photos_per_person: the seeded sample of the evaluation beyond the data set.
        eval_sample: input rows per table sampled from a streamed data set (default
            :data:`normface_lib.data.EVAL_SAMPLE`).
        **overrides: :class:`~normface_lib.training.TrainConfig` fields (``dataset``, ``data_root``, ``steps``,
            ``data_options``, ``device``...).

    Returns:
        The report (also ``report.json``): ``run`` (folder), ``config``, ``training`` (steps, seconds a step,
        last losses, the trainer's held-out losses), ``dataset`` (identity metrics on the data set's held-out people,
        sampled for a streamed data set: :func:`normface_lib.data.evaluation_tables`), ``external`` (the same on
        :func:`normface_lib.data.external_people`), ``seconds``, ``provenance``.
    """
    t0 = time.perf_counter()
    config = profile_config(profile, **overrides)
    out = reproduce_folder(profile, runs, **overrides)
    out.mkdir(parents=True, exist_ok=True)
    run = out / "train"
    found = find_checkpoint(run / CHECKPOINT_NAME)
    if found is None:
        summary = train(config, run, progress=progress, force=True)
    elif steps_left(found):
        summary = train(config, run, progress=progress, resume=True)
    else:
        print(f"normface: {run} holds a finished run of these settings: evaluating it")
        summary = None
    model = NormFace.from_pretrained(run, device=config.device)
    tables = data.evaluation_tables(config.dataset, config.size, config.eval_splits, data_root=config.data_root,
                                    seed=config.seed, sample=eval_sample, inputs=config.training_inputs,
                                    **config.data_options)
    on_data = evaluate_model(model, tables, profile=profile, seed=config.seed, n_boot=n_boot)
    external = data.external_people(config.size, tables["train"].mean_shape, lfw=lfw, online=online,
                                    max_people=external_people, photos_per_person=photos_per_person, seed=config.seed)
    on_external = evaluate_model(model, {"train": tables["train"], "unseen_people": external}, profile=profile,
                                 seed=config.seed, n_boot=n_boot)
    trained = json.loads((run / "summary.json").read_text()) if summary is None else summary
    report = {
        "run": str(out), "config": config.to_dict(),
        "training": {k: trained.get(k) for k in ("steps_done", "steps_total", "device", "amp", "mean_step_seconds",
                                                 "last_losses", "eval", "parameters")},
        "dataset": {"source": {k: t.source for k, t in tables.items()}, **_identity_summary(on_data)},
        "external": {"source": external.source, "people": len(external.people), "photos": len(external),
                     **_identity_summary(on_external)},
        "seconds": time.perf_counter() - t0,
        "provenance": provenance(profile=profile, reproduce=str(out)),
    }
    to_json(report, out / REPORT_NAME)
    return report
