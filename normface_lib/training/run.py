"""``train``: a whole run, driven through the stages of :class:`~normface_lib.training.trainer.Trainer` (setup →
resume → steps → summary), with a progress bar, the log written line by line and a checkpoint every
``checkpoint_every`` steps."""
from __future__ import annotations

import json
import os
from typing import Any

from tqdm.auto import tqdm

from ..core.checks import skip_value_checks
from ..core.errors import InputError
from .config import TrainConfig
from .trainer import Trainer


def train(config: TrainConfig, out_dir: str | os.PathLike, progress: bool = True, resume: bool = False,
          force: bool = False, until_step: int | None = None, tables: dict | None = None,
          return_model: bool = False) -> dict[str, Any]:
    """Train a decoder; write ``losses.jsonl``, ``checkpoint/`` and ``summary.json`` into ``out_dir``.

    Args:
        config: a :class:`TrainConfig` (e.g. ``profile_config("quick")``).
        out_dir: run folder. A folder that already holds a run is refused (:class:`OverwriteError`) unless
            ``resume`` (continue it) or ``force`` (start over).
        progress: show a tqdm bar (main process only).
        resume: continue from ``out_dir/checkpoint`` (model, optimizer, scheduler, RNG states, step); the result is
            the same as an uninterrupted run.
        until_step: stop after this many steps (≤ ``config.steps``), saving a checkpoint, as if interrupted; the
            learning-rate schedule still spans ``config.steps``.
        tables: ``{"train": FaceTable, <split>: FaceTable}`` to use instead of loading ``config.dataset``
            (evaluation uses the non-train entries).
        return_model: add the trained decoder (``"model"``, an ``nn.Module``) to the returned dict.

    Returns:
        The run summary (also in ``summary.json``): steps done, mean step time, parameter counts, the mean of the
        last logged losses, ``eval`` = :func:`evaluate_losses` on the training inputs and each held-out table,
        ``param_checksum`` (a list over processes under DDP), paths.
    """
    if not isinstance(config, TrainConfig):
        raise InputError(f"config must be a TrainConfig (use profile_config('quick')), got {type(config).__name__}.")
    until = config.steps if until_step is None else int(until_step)
    if not 1 <= until <= config.steps:
        raise InputError(f"until_step must be in [1, {config.steps}], got {until_step}.")
    trainer = Trainer(config, out_dir, tables, resume, force)
    procs = trainer.procs
    start = trainer.resume() if resume else 0
    trainer.start_log(start)
    trainer.decoder.train()
    bar = tqdm(total=until, initial=start, disable=not (progress and procs.main), desc=f"train[{config.profile}]",
               dynamic_ncols=True)
    times: list[float] = []
    recent: list[dict[str, Any]] = []
    log_f = open(trainer.log_path, "a") if procs.main else None
    try:
        with skip_value_checks():
            for step, rows in zip(range(start, until), trainer.loader(start, until)):
                rec = trainer.step(step, rows)
                times.append(rec["seconds"])
                recent = (recent + [rec])[-50:]
                if log_f:
                    log_f.write(json.dumps(rec) + "\n")
                    log_f.flush()
                bar.update(1)
                bar.set_postfix(tex=f"{rec['texture']:.4f}", lm=f"{rec['landmark']:.2e}", refresh=False)
                if (step + 1) % config.checkpoint_every == 0 or step + 1 == until:
                    trainer.save(step + 1)
    finally:
        bar.close()
        if log_f:
            log_f.close()
    summary = trainer.summary(max(until, start), times, recent)
    procs.close()
    if return_model:
        summary["model"] = trainer.decoder
    return summary
