"""Training the decoder (paper Section 3): landmark + texture + identity losses, morph augmentation, one trainer for
CPU, one GPU and several GPUs (DDP).

A run (:class:`Trainer`, driven by :func:`train`) goes through four stages:

1. **Setup.** Tables (:func:`normface_lib.data.load_tables`). The paper's setup (``training_inputs=
   "frontal_neutral"``): the inputs are the training people's frontal, neutral photos (optionally mirrored), each
   mapped to its own landmarks and registered texture; the ablation ``"paired"``: every photo of a training person
   but its unseen ones is an input, mapped to that person's frontal-neutral landmarks and texture. The encoder
   is frozen, so the features (and embeddings, for the identity loss) of the training inputs are computed once and
   cached on disk (:func:`normface_lib.encoders.cached_encode`). Morph augmentation (paper): two training targets are
   blended with a random weight, rendered with the warp and encoded; ``morphs="bank"`` (quick profile) precomputes K
   seeded morphs once and caches them, ``morphs="online"`` (paper profile) draws fresh ones every step, rendered on
   the training device from the targets moved there once (:class:`MorphSource`). A streamed data set
   (:class:`~normface_lib.data.StreamTable`: CelebA, person folders) has no feature cache: each step's rows are read
   from disk by a :class:`~torch.utils.data.DataLoader` (:meth:`Trainer.loader`, ``config.data_workers`` processes) and
   encoded on the training device; the feature statistics and the identity threshold come from a seeded sample of
   :data:`STATS_ROWS` rows, so memory does not grow with the data set. Then the
   decoder, AdamW, the schedule, mixed precision (CUDA only) and the loss.
2. **Resume** (optional): model, optimizer, scheduler, scaler, RNG states and step from ``checkpoint/``; the result is
   the same as an uninterrupted run.
3. **Steps.** Batches are a deterministic function of ``(seed, step, rank)``: a fraction ``morph_fraction`` of each
   batch is morphs, the rest real inputs drawn by :class:`~normface_lib.training.distributed.IndexStream`. The
   identity loss runs every ``identity_every`` steps on the first ``identity_batch`` items. A checkpoint is written
   every ``checkpoint_every`` steps and at the end.
4. **Summary.** ``summary.json``: steps, timings, parameter counts, the last logged losses and, for a finished run,
   :func:`evaluate_losses` on the training inputs and each held-out table.

Output folder: ``losses.jsonl`` (one JSON object per step: step, lr, landmark, texture, identity, total, seconds),
``checkpoint/`` (:mod:`normface_lib.nets.checkpoint`), ``summary.json``. Under ``torchrun --nproc_per_node N -m
normface_lib.cli train ...`` every process trains a :class:`~torch.nn.parallel.DistributedDataParallel` replica on
``batch_size / N`` rows of each global batch.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .. import data
from ..core import resources
from ..core.errors import InputError, OverwriteError
from ..core.runtime import default_device
from ..encoders import FaceEncoder, cached_encode, calibrate_on_table, encode, encoder_key, load_encoder
from ..nets import Decoder, NormFaceLoss, load_checkpoint, save_checkpoint
from ..nets.checkpoint import find_checkpoint
from .config import RUNTIME_FIELDS, TrainConfig
from .distributed import IndexStream, setup_processes
from .rows import ENCODE_BATCH, EVAL_ROWS, STATS_ROWS, MorphSource, StepRows, evaluate_losses, morph_rows, table_eval_set
from .state import autocast_dtype, make_scheduler, param_checksum, rng_state, set_rng_state

LOG_NAME = "losses.jsonl"
CHECKPOINT_NAME = "checkpoint"
SUMMARY_NAME = "summary.json"


class Trainer:
    """One training run (see the module docstring): ``Trainer(config, out_dir, ...)`` sets it up; :meth:`resume`,
    :meth:`step`, :meth:`save` and :meth:`summary` are the other stages; :func:`train` drives them.

    ``tables`` replaces loading ``config.dataset`` (as in :func:`train`); ``encoder`` (a :class:`FaceEncoder`, moved
    to the training device) replaces loading ``config.encoder``, e.g. a network of your own or a randomly initialised
    one for timing. The feature and morph caches are keyed by the encoder's ``name`` and ``layer``: give another
    network a name of its own.

    Attributes:
        config, out, device, procs: the run's settings and where it runs.
        encoder: the frozen encoder; tables: ``{"train": FaceTable, <held-out split>: FaceTable}``.
        features: ``{"features", "embeddings"}`` of the training table's rows (cached).
        bank: the morph bank's rows (``morphs="bank"``), else None.
        morph_source: the targets online morphs are made of, on the training device (``morphs="online"``), else None.
        decoder: the :class:`Decoder` being trained (``net`` is what the steps call: the decoder, its DDP wrapper
            under several processes, compiled with ``torch.compile`` when ``config.compile``).
    """

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike, tables: dict | None = None,
                 resume: bool = False, force: bool = False, encoder: FaceEncoder | None = None):
        if not isinstance(config, TrainConfig):
            raise InputError(f"config must be a TrainConfig (use profile_config('quick')), got "
                             f"{type(config).__name__}.")
        self.config = config
        self.out = Path(out_dir)
        self.ckpt_dir, self.log_path = self.out / CHECKPOINT_NAME, self.out / LOG_NAME
        device = default_device(config.device)
        self.procs = procs = setup_processes(device.type)
        if device.type == "cuda" and procs.active:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", procs.rank % max(torch.cuda.device_count(),
                                                                                          1))))
            torch.cuda.set_device(device)
        if device.type == "cpu":
            torch.set_num_threads(max(1, config.num_threads))
        self.device = device
        if procs.main:
            self._claim_folder(resume, force)
        procs.barrier()
        self._setup_data(tables, encoder)
        self._setup_model()

    def _claim_folder(self, resume: bool, force: bool) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"{self.out} is a file; training writes a folder (losses.jsonl, checkpoint/, "
                             "summary.json): choose another --out.")
        ckpt = find_checkpoint(self.ckpt_dir)
        has_run = self.log_path.exists() or ckpt is not None or (self.out / SUMMARY_NAME).exists()
        if resume and ckpt is None:
            raise FileNotFoundError(f"nothing to resume: {self.ckpt_dir} holds no checkpoint; start without "
                                    "--resume (resume=False).")
        if has_run and not resume and not force:
            raise OverwriteError(f"{self.out} already holds a training run; continue it with --resume "
                                 "(resume=True) or start over with --force (force=True).")
        if force and not resume:  # starting over: nothing of the old run may pass for this one
            for f in (self.out / SUMMARY_NAME, self.log_path):
                f.unlink(missing_ok=True)
            if self.ckpt_dir.is_dir():
                shutil.rmtree(self.ckpt_dir)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create the run folder {self.out} ({e.strerror}); choose another --out.") from e

    # ---------------------------------------------------------------------------------------------- setup
    def _setup_data(self, tables: dict | None, encoder: FaceEncoder | None) -> None:
        cfg, procs = self.config, self.procs
        if encoder is None:  # a pack carries its encoder's weights (for machines without the weights' package)
            encoder = load_encoder(cfg.encoder, layer=cfg.encoder_layer, device=self.device,
                                   **data.encoder_options(cfg.dataset, cfg.data_root))
        elif not isinstance(encoder, FaceEncoder):
            raise InputError(f"encoder must be a FaceEncoder (see normface_lib.encoders.load_encoder), got "
                             f"{type(encoder).__name__}.")
        self.encoder = encoder.to(self.device)
        if tables is not None:
            if "train" not in tables:
                raise InputError("tables must contain a 'train' FaceTable.")
            self.tables = dict(tables)
        else:  # the main process prepares (a streamed data set's store is built once), the others then read it
            load = lambda: data.load_tables(cfg.dataset, cfg.size, cfg.eval_splits, mirror=cfg.mirror,  # noqa: E731
                                            data_root=cfg.data_root, inputs=cfg.training_inputs,
                                            **cfg.data_options)
            self.tables = load() if procs.main else None
            procs.barrier()
            if not procs.main:
                self.tables = load()
        table = self.tables["train"]
        if table.training_inputs != cfg.training_inputs:
            raise InputError(f"the training table holds {table.training_inputs!r} inputs but config.training_inputs "
                             f"is {cfg.training_inputs!r}; load the tables with inputs={cfg.training_inputs!r} "
                             "(normface_lib.data.load_tables) or change the config.")
        if table.images.shape[-1] != cfg.size:
            raise InputError(f"the training table has {table.images.shape[-1]}-px crops but config.size is "
                             f"{cfg.size}.")
        self.streamed = bool(getattr(table, "streamed", False))
        self.input_rows = table.input_rows
        if self.streamed:  # rows are read and encoded each step; statistics come from a fixed seeded sample
            self.features = None
            calib = table.materialize(table.sample_rows(STATS_ROWS, cfg.seed))
            enc = encode(self.encoder, calib.images, ENCODE_BATCH)
            self.feature_sample = enc["features"][calib.input_mask]
        else:
            if cfg.dataset == "pack" and procs.main:  # the pack's features of these very crops, when it has them
                data.install_features(cfg.data_root, table, self.encoder, ENCODE_BATCH)
            self.features = cached_encode(self.encoder, table.images, ENCODE_BATCH, procs.main, procs.barrier)
            calib, enc = table, self.features
            self.feature_sample = self.features["features"][self.input_rows]
        # the same-person threshold the trained model's users will be judged by, stored with every checkpoint
        people = int(calib.base_person[calib.photo_mask].unique().numel())
        self.identity_threshold = calibrate_on_table(self.encoder, calib, embeddings=enc["embeddings"]) \
            if people >= 2 else None
        self.bank = None
        if cfg.morphs == "bank" and cfg.morph_fraction > 0:
            texture_key = table.source if self.streamed else table.target_textures  # a store's folder is keyed
            key = resources.digest(texture_key, table.target_landmarks, table.mean_shape)
            path = resources.cache_dir("morphs") / (f"{encoder_key(self.encoder)}-s{cfg.size}-{key}"
                                                    f"-k{cfg.morph_bank_size}-seed{cfg.seed}.safetensors")
            self.bank = resources.cached_tensors(
                path, lambda: morph_rows(table, cfg.morph_bank_size, torch.Generator().manual_seed(cfg.seed + 7919),
                                         self.encoder), procs.main, procs.barrier)

    def _setup_model(self) -> None:
        cfg, procs, table = self.config, self.procs, self.tables["train"]
        torch.manual_seed(cfg.seed)
        self.decoder = Decoder(feature_dim=int(self.feature_sample.shape[1]), mean_shape=table.mean_shape,
                               out_size=cfg.size, width=cfg.width, input_dropout=cfg.input_dropout,
                               input_noise=cfg.input_noise, warp=cfg.warp, warp_mode=cfg.warp_mode)
        self.decoder.set_feature_stats(self.feature_sample)
        self.decoder.to(self.device)
        self.net = DistributedDataParallel(self.decoder, device_ids=[self.device] if self.device.type == "cuda"
                                           else None) if procs.active else self.decoder
        self.eager_net = self.net
        if cfg.compile:  # the same parameters; checkpoints keep saving self.decoder
            self.net = torch.compile(self.net)
        self._compile_pending = cfg.compile
        self.opt = torch.optim.AdamW(self.decoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = make_scheduler(self.opt, cfg)
        self.amp_dtype = autocast_dtype(cfg, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        identity = cfg.identity_weight > 0 and cfg.identity_every > 0
        self.loss_fn = NormFaceLoss(self.encoder if identity else None, cfg.landmark_weight, cfg.texture_weight,
                                    cfg.identity_weight if cfg.identity_every > 0 else 0.0, cfg.identity_kind,
                                    cfg.identity_batch)
        # every process draws its own dropout / noise / online morphs; the decoder's initialisation above is shared
        torch.manual_seed(cfg.seed * 1000 + 17 + procs.rank)
        random.seed(cfg.seed + procs.rank)
        np.random.seed((cfg.seed + procs.rank) % 2 ** 32)
        local_b = cfg.batch_size // procs.world
        if local_b * procs.world != cfg.batch_size:
            raise InputError(f"batch_size {cfg.batch_size} must be divisible by the number of processes "
                             f"{procs.world}.")
        self.n_morph = int(round(local_b * cfg.morph_fraction)) if cfg.morphs != "off" else 0
        if cfg.morphs == "bank" and self.bank is None:
            self.n_morph = 0
        # online morphs are rendered where the model trains (a GPU renders them far faster than the CPU)
        self.morph_source = MorphSource.of(table, self.device) if cfg.morphs == "online" and self.n_morph else None
        self.real_stream = IndexStream(int(self.input_rows.numel()), local_b - self.n_morph, procs, cfg.seed)
        self.bank_stream = IndexStream(self.bank["features"].shape[0], self.n_morph, procs, cfg.seed + 1) \
            if self.bank is not None and self.n_morph else None

    # ---------------------------------------------------------------------------------------------- resume
    def resume(self) -> int:
        """Load ``checkpoint/`` into the decoder, optimizer, schedule, scaler and RNGs; return the step to go on from.
        Raises :class:`InputError` when the checkpoint was made by another config (runtime fields,
        :data:`~normface_lib.training.config.RUNTIME_FIELDS`, may differ) or process count."""
        ck = load_checkpoint(self.ckpt_dir, model=self.decoder, map_location=self.device)
        saved = TrainConfig.from_dict(ck.config)
        diff = {k: (v, getattr(self.config, k)) for k, v in dataclasses.asdict(saved).items()
                if k not in RUNTIME_FIELDS and getattr(self.config, k) != v}
        if diff:
            raise InputError(f"resume with a different config than the checkpoint's: {diff}; use the same config "
                             f"(only {', '.join(RUNTIME_FIELDS)} may differ).")
        self.decoder.train()
        self.opt.load_state_dict(ck.optimizer_state)
        self.sched.load_state_dict(ck.extra["scheduler"])
        if ck.extra.get("scaler"):
            self.scaler.load_state_dict(ck.extra["scaler"])
        rng = ck.extra["rng"]
        if len(rng) != self.procs.world:
            raise InputError(f"the checkpoint was written by {len(rng)} process(es); resume with the same number, "
                             f"not {self.procs.world}.")
        set_rng_state(rng[self.procs.rank])
        return int(ck.extra["step"])

    def start_log(self, start: int) -> None:
        """Keep the log lines of steps before ``start`` (all of them are dropped when starting over)."""
        if not self.procs.main:
            return
        keep = []
        if start and self.log_path.exists():  # drop log lines written after the checkpoint
            keep = [line for line in self.log_path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] < start]
        resources.atomic_write(self.log_path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in keep)))

    # ---------------------------------------------------------------------------------------------- steps
    def step_rows(self, step: int) -> torch.Tensor:
        """``[b]`` long: the training table's rows of the real inputs of step ``step`` on this process."""
        return self.input_rows[self.real_stream.indices(step)]

    def loader(self, start: int, until: int):
        """The real rows of steps ``start .. until-1``, one batch a step: for streamed data a
        :class:`torch.utils.data.DataLoader` over the table (``config.data_workers`` processes read ahead while the
        model trains; the rows are those of :meth:`step_rows`, which a :class:`DistributedSampler` draws), otherwise
        the in-memory rows. Each item is ``None`` (in memory: :meth:`batch` gathers them) or a dict of CPU tensors
        (``image``, ``target_landmarks``, ``target_texture``, ``target_image``...)."""
        if not self.streamed:
            return (None for _ in range(start, until))
        from torch.utils.data import DataLoader

        workers = max(0, int(self.config.data_workers))
        return iter(DataLoader(self.tables["train"], batch_sampler=StepRows(self, start, until), num_workers=workers,
                               pin_memory=self.device.type == "cuda", prefetch_factor=4 if workers else None,
                               generator=torch.Generator().manual_seed(self.config.seed)))

    @torch.no_grad()
    def _encode_rows(self, rows: dict) -> dict[str, torch.Tensor]:
        """Streamed rows (a DataLoader batch) → the training rows: the inputs encoded on the training device."""
        f, e = self.encoder.features_and_embed(rows["image"].to(self.device, non_blocking=True))
        return {"features": f.float(), "embedding": e.float(), "target_landmarks": rows["target_landmarks"],
                "target_texture": rows["target_texture"], "target_image": rows["target_image"]}

    def batch(self, step: int, rows: dict | None = None) -> dict[str, torch.Tensor]:
        """The rows of training step ``step`` on this process, on the training device: ``features [b,D]``,
        ``embedding [b,E]``, ``target_landmarks [b,68,2]``, ``target_texture`` and ``target_image`` ``[b,3,S,S]``.
        ``rows``: this step's item of :meth:`loader` (streamed data: read here when not given)."""
        cfg, table = self.config, self.tables["train"]
        i = self.step_rows(step)
        if self.streamed:
            if rows is None:
                from torch.utils.data import default_collate
                rows = default_collate([table[int(k)] for k in i])
            parts = [self._encode_rows(rows)]
        else:
            p = table.target_index[i]
            parts = [{"features": self.features["features"][i], "embedding": self.features["embeddings"][i],
                      "target_landmarks": table.target_landmarks[p], "target_texture": table.target_textures[p],
                      "target_image": table.images[table.target_row[p]]}]
        if self.bank_stream is not None:
            j = self.bank_stream.indices(step)
            parts.append({k: v[j] for k, v in self.bank.items()})
        elif cfg.morphs == "online" and self.n_morph:
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 1009 + self.procs.rank)
            parts.append(morph_rows(self.morph_source, self.n_morph, g, self.encoder))
        return {k: torch.cat([q[k].to(self.device, non_blocking=True) for q in parts]) for k in parts[0]}

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The decoder's outputs for ``features`` ``[b,D]`` (:meth:`Decoder.forward`) through :attr:`net`. When the
        compiled decoder (``config.compile``) fails on its first call (no C++ compiler, a back-end ``torch.compile``
        does not support), a warning says why and the run goes on in eager mode: the same model, only slower."""
        if not self._compile_pending:
            return self.net(features)
        self._compile_pending = False
        try:
            return self.net(features)
        except Exception as e:  # noqa: BLE001 - any compiler failure; a real error fails again just below
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            why = (lines[-1] if lines else "no message")[:200]  # compilers put the cause last
            warnings.warn(f"torch.compile failed ({type(e).__name__}: {why}); "
                          "training goes on without it (set compile=false to skip trying).", RuntimeWarning)
            self.net = self.eager_net
            return self.net(features)

    def step(self, step: int, rows: dict | None = None) -> dict[str, Any]:
        """One optimisation step (``rows``: this step's item of :meth:`loader`); returns its log record (step, lr, the
        losses averaged over processes, seconds, whether the identity loss ran)."""
        cfg = self.config
        t0 = time.perf_counter()
        batch = self.batch(step, rows)
        use_id = cfg.identity_every > 0 and step % cfg.identity_every == 0
        with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = self.forward(batch["features"])
            total, parts = self.loss_fn(outputs, batch, use_identity=use_id)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.decoder.parameters(), cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        lr = self.opt.param_groups[0]["lr"]
        self.sched.step()
        parts = self.procs.mean(parts)
        dt = time.perf_counter() - t0
        return {"step": step, "lr": lr, **{k: round(v, 7) for k, v in parts.items()}, "seconds": round(dt, 4),
                "identity_step": use_id}

    def save(self, step: int) -> None:
        """Write ``checkpoint/`` after ``step`` steps (every process's RNG states included)."""
        rng = self.procs.gather(rng_state())
        if self.procs.main:
            save_checkpoint(self.ckpt_dir, self.decoder, self.config.to_dict(), optimizer=self.opt,
                            extra={"step": step, "scheduler": self.sched.state_dict(),
                                   "scaler": self.scaler.state_dict(), "rng": rng, "world_size": self.procs.world},
                            force=True, meta={"identity_threshold": self.identity_threshold})
        self.procs.barrier()

    # ---------------------------------------------------------------------------------------------- summary
    def evaluate(self) -> dict[str, dict]:
        """:func:`evaluate_losses` on the training inputs and on the inputs of each held-out table."""
        ev = {}
        for split, t in self.tables.items():
            streamed = getattr(t, "streamed", False)
            if streamed:  # a seeded sample of EVAL_ROWS input rows, read into memory
                sample = t.materialize(t.sample_rows(EVAL_ROWS, self.config.seed + 1))
                f = encode(self.encoder, sample.images, ENCODE_BATCH)["features"]
            else:
                sample = t
                f = self.features["features"] if split == "train" else \
                    cached_encode(self.encoder, t.images, ENCODE_BATCH)["features"]
            ev[split] = evaluate_losses(self.decoder, *table_eval_set(sample, f), batch=self.config.eval_batch)
            if streamed:
                ev[split]["sampled_from"] = int(t.input_mask.sum())
        return ev

    def summary(self, done: int, times: list[float], recent: list[dict]) -> dict[str, Any]:
        """The run summary (see :func:`train`); written to ``summary.json`` by the main process."""
        cfg = self.config
        checks = self.procs.gather(param_checksum(self.decoder))
        id_steps = [r["seconds"] for r in recent if r["identity_step"]]
        summary: dict[str, Any] = {
            "profile": cfg.profile, "steps_done": done, "steps_total": cfg.steps, "world_size": self.procs.world,
            "device": str(self.device), "amp": str(self.amp_dtype) if self.amp_dtype else "off",
            "parameters": self.decoder.parameter_counts(),
            "mean_step_seconds": float(np.mean(times)) if times else None,
            "mean_step_seconds_identity": float(np.mean(id_steps)) if id_steps else None,
            "last_losses": {k: float(np.mean([r[k] for r in recent if k in r]))
                            for k in ("landmark", "texture", "identity", "total") if any(k in r for r in recent)},
            "param_checksum": checks if self.procs.active else checks[0], "out_dir": str(self.out),
            "log": str(self.log_path), "checkpoint": str(self.ckpt_dir), "config": cfg.to_dict(),
            "identity_threshold": self.identity_threshold,
        }
        if done == cfg.steps and self.procs.main:
            summary["eval"] = self.evaluate()
        if self.procs.main:
            resources.write_json(summary, self.out / SUMMARY_NAME)
        self.procs.barrier()
        return summary
