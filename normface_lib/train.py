"""Training the decoder (paper Section 3): landmark + texture + identity losses, morph augmentation, one trainer for
CPU, one GPU and several GPUs (DDP).

Pipeline of :func:`train`:

1. Tables (:class:`normface_lib.data.FaceTable`): every photo of every training person (optionally mirrored) is an
   input; its targets are that person's frontal-neutral landmarks and registered texture.
2. The encoder is frozen, so the features (and embeddings, for the identity loss) of the training inputs are computed
   once and cached on disk (``cache_dir("features")``, keyed by encoder, layer, data and size).
3. Morph augmentation (paper): two training targets are blended with a random weight (landmarks and mean-shape-frame
   textures blend linearly), the blend is rendered with the warp and encoded. ``morphs="bank"`` (quick profile)
   precomputes K seeded morphs with their features once and caches them; ``morphs="online"`` (paper profile) draws
   fresh morphs every step. A fraction ``morph_fraction`` of each batch is morphs.
4. Optimisation: AdamW, linear warm-up then cosine decay (or one-cycle), gradient clipping, CUDA mixed precision
   (bf16 where supported, else fp16 with a GradScaler); CPU runs in float32. The identity loss runs every
   ``identity_every`` steps on the first ``identity_batch`` items of the batch.
5. Output folder: ``losses.jsonl`` (one JSON object per step: step, lr, landmark, texture, identity, total, seconds),
   ``checkpoint/`` (safetensors model + optimizer + RNG states, JSON config; see :mod:`normface_lib.checkpoint`),
   ``summary.json``. ``resume=True`` continues from ``checkpoint/`` and gives the same numbers as an uninterrupted run.

Batches are a deterministic function of ``(seed, step, rank)``: the real rows come from a
:class:`torch.utils.data.DistributedSampler` epoch permutation, so single-process and multi-process runs share the
code path. Under ``torchrun --nproc_per_node N -m normface_lib.train ...`` every process trains a
:class:`~torch.nn.parallel.DistributedDataParallel` replica on ``batch_size / N`` rows of each global batch.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from . import resources
from .checkpoint import load_checkpoint, save_checkpoint
from .decoder import Decoder
from .errors import InputError, OverwriteError
from .losses import NormFaceLoss, landmark_loss, texture_loss

LOG_NAME = "losses.jsonl"
CHECKPOINT_NAME = "checkpoint"
SUMMARY_NAME = "summary.json"


# ----------------------------------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Everything that determines a training run (same config + same seed → same numbers on the same machine).

    Data: ``dataset`` ("orl", or "celeba" with ``data_root`` and ``data_options`` such as ``max_people``, passed to
    ``normface_lib.data.load_<dataset>_table(data_root, split, ...)``), ``size`` (crop side),
    ``mirror`` (add mirrored photos), ``encoder``/``encoder_layer`` (:func:`normface_lib.encoders.load_encoder`).
    Model: see :class:`normface_lib.decoder.Decoder` (``width``, ``input_dropout``, ``input_noise``, ``warp``).
    Optimisation: ``steps``, global ``batch_size`` (split across DDP ranks), ``lr``, ``weight_decay``,
    ``schedule`` ("cosine" with ``warmup_steps``, "onecycle" or "constant"), ``grad_clip`` (None = off).
    Losses: weights, ``identity_every`` (0 = never), ``identity_batch`` (None = whole batch), ``identity_kind``.
    The landmark MSE is in crop units (a 1-px error at 64 px is 2.4e-4), hence ``landmark_weight=100`` by default,
    which puts it on the scale of the texture L1 (≈ 0.02–0.2); the paper does not give its weights.
    Morphs: ``morphs`` ("bank", "online" or "off"), ``morph_bank_size`` K, ``morph_fraction`` of each batch
    (blend weights α ~ U(0, 1), :func:`normface_lib.morph.random_morphs`).
    Runtime: ``seed``, ``amp`` ("auto" = bf16/fp16 on CUDA, off on CPU; "bf16", "fp16", "off"), ``device``
    (None = CUDA if available), ``num_threads`` (CPU threads per process; on a CPU :func:`train` calls
    ``torch.set_num_threads``), ``checkpoint_every``, ``eval_splits`` (held-out tables evaluated at the end),
    ``eval_batch``. The paper profile needs ``data_root`` (e.g. ``--set data_root='"/data"'``).
    """

    profile: str = "custom"
    dataset: str = "orl"
    data_root: str | None = None
    data_options: dict = field(default_factory=dict)
    size: int = 64
    mirror: bool = True
    encoder: str = "facenet-casia"
    encoder_layer: str | None = None
    width: float = 0.25
    input_dropout: float = 0.0
    input_noise: float = 0.0
    warp: bool = True
    warp_mode: str = "fast"
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 50
    grad_clip: float | None = 1.0
    landmark_weight: float = 100.0
    texture_weight: float = 1.0
    identity_weight: float = 0.0
    identity_every: int = 0
    identity_batch: int | None = None
    identity_kind: str = "sq_l2"
    morphs: str = "bank"
    morph_bank_size: int = 256
    morph_fraction: float = 0.25
    seed: int = 0
    amp: str = "auto"
    device: str | None = None
    num_threads: int = 2
    checkpoint_every: int = 500
    eval_splits: tuple[str, ...] = ("unseen_people", "unseen_photos")
    eval_batch: int = 64

    def __post_init__(self):
        self.eval_splits = tuple(self.eval_splits)
        checks = [
            (self.size >= 16, f"size must be ≥ 16 pixels, got {self.size}"),
            (self.steps >= 1, f"steps must be ≥ 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.schedule in ("cosine", "onecycle", "constant"),
             f"schedule must be 'cosine', 'onecycle' or 'constant', got {self.schedule!r}"),
            (self.morphs in ("bank", "online", "off"), f"morphs must be 'bank', 'online' or 'off', got {self.morphs!r}"),
            (0 <= self.morph_fraction < 1, f"morph_fraction must be in [0, 1), got {self.morph_fraction}"),
            (self.amp in ("auto", "bf16", "fp16", "off"), f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {self.amp!r}"),
            (self.identity_every >= 0, f"identity_every must be ≥ 0 (0 = never), got {self.identity_every}"),
            (self.identity_weight >= 0, f"identity_weight must be ≥ 0, got {self.identity_weight}"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be ≥ 1, got {self.checkpoint_every}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(msg + "; fix the TrainConfig field.")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eval_splits"] = list(self.eval_splits)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"unknown TrainConfig fields {sorted(unknown)}; valid fields: {sorted(names)}.")
        return cls(**d)


PROFILES: dict[str, dict[str, Any]] = {
    # 2 CPU cores, offline, a few minutes: ORL at 64 px, a narrow decoder (width 0.25: 4.76 M parameters with
    # FaceNet's 1792-D features), a bank of 256 cached morphs, the FaceNet loss every 8th step on 8 outputs.
    # Measured on an otherwise idle 2-core machine: 0.11 s a step with 2 threads (0.20 s with 1), 0.42 s for a step
    # with the FaceNet loss; 800 steps take about 2 minutes once the encoder features are cached.
    "quick": dict(profile="quick", dataset="orl", size=64, mirror=True, encoder="facenet-casia", width=0.25,
                  input_dropout=0.1, input_noise=0.5, steps=800, batch_size=32, lr=1e-3, weight_decay=1e-2,
                  schedule="cosine", warmup_steps=20, identity_weight=0.1, identity_every=8, identity_batch=8,
                  morphs="bank", morph_bank_size=256, morph_fraction=0.25, num_threads=2, checkpoint_every=200),
    # The paper: a GPU, CelebA at 224 px, full width, the FaceNet loss on every step, fresh morphs every step.
    "paper": dict(profile="paper", dataset="celeba", size=224, mirror=True, encoder="facenet-casia", width=1.0,
                  input_dropout=0.0, input_noise=0.0, steps=100_000, batch_size=32, lr=1e-4, weight_decay=1e-4,
                  schedule="cosine", warmup_steps=1000, identity_weight=1.0, identity_every=1, identity_batch=None,
                  morphs="online", morph_fraction=0.25, amp="auto", num_threads=8, checkpoint_every=2000),
}


def profile_config(name: str, **overrides: Any) -> TrainConfig:
    """The named profile (``"quick"`` or ``"paper"``, see :data:`PROFILES`) with ``overrides`` applied."""
    if name not in PROFILES:
        raise InputError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}.")
    return TrainConfig.from_dict({**PROFILES[name], **overrides})


# ----------------------------------------------------------------------------------------------------- distributed
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.active:
            dist.barrier()


def _setup_distributed(device_type: str) -> _Dist:
    """Join the process group torchrun (or the caller) set up; single process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return _Dist(dist.get_rank(), dist.get_world_size(), True)
    return _Dist()


# ----------------------------------------------------------------------------------------------------- data
def _load_tables(config: TrainConfig, tables: dict | None) -> dict:
    """``{"train": FaceTable, <eval split>: FaceTable, ...}`` (given tables are used as they are)."""
    if tables is not None:
        if "train" not in tables:
            raise InputError("tables must contain a 'train' FaceTable.")
        return dict(tables)
    from . import data
    if config.dataset == "orl":
        train_t = data.load_orl_table("train", size=config.size, mirror=config.mirror)
        out = {"train": train_t}
        for split in config.eval_splits:
            out[split] = data.load_orl_table(split, size=config.size, mirror=False, mean_shape=train_t.mean_shape)
        return out
    loader = getattr(data, f"load_{config.dataset}_table", None)
    if loader is None:
        raise InputError(f"no loader for dataset {config.dataset!r}: normface_lib.data has no "
                         f"load_{config.dataset}_table. Use dataset='orl' or 'celeba', or pass "
                         "tables={'train': FaceTable, ...} to train().")
    if config.data_root is None:
        raise InputError(f"dataset {config.dataset!r} needs config.data_root, the folder that holds it "
                         "(CelebA: the folder containing celeba/ as torchvision.datasets.CelebA expects).")
    kw = dict(config.data_options)
    train_t = loader(config.data_root, "train", size=config.size, mirror=config.mirror, **kw)
    out = {"train": train_t}
    for split in config.eval_splits:
        out[split] = loader(config.data_root, split, size=config.size, mirror=False, mean_shape=train_t.mean_shape, **kw)
    return out


def _tensor_digest(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def table_key(table) -> str:
    """Short hex digest of a table's photo ids, images and targets (the data part of cache keys)."""
    h = hashlib.sha256()
    h.update("\n".join(table.photo_ids).encode())
    for t in (table.images, table.target_landmarks, table.target_textures, table.mean_shape):
        _tensor_digest(h, t)
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_images(encoder, images: torch.Tensor, batch: int = 32, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N,D], embeddings [N,E])`` float32 on the CPU of canonical crops ``[N,3,S,S]`` in [0, 1]."""
    feats, embs = [], []
    dev = device or next(encoder.parameters()).device
    for i in range(0, images.shape[0], batch):
        f, e = encoder.features_and_embed(images[i:i + batch].to(dev))
        feats.append(f.float().cpu())
        embs.append(e.float().cpu())
    return torch.cat(feats), torch.cat(embs)


def _cached(path: Path, make, d: _Dist) -> dict[str, torch.Tensor]:
    """Load ``path`` (safetensors) or let rank 0 build it with ``make()`` while the other ranks wait."""
    if not path.exists() and d.main:
        tensors = {k: v.contiguous() for k, v in make().items()}
        tmp = path.with_name(path.name + f".part{os.getpid()}")
        save_file(tensors, str(tmp))
        os.replace(tmp, path)
    d.barrier()
    return load_file(str(path))


def cached_features(encoder, encoder_key: str, table, d: _Dist | None = None) -> dict[str, torch.Tensor]:
    """Features and embeddings of ``table.images``, cached in ``cache_dir("features")``.

    Returns ``{"features": [N,D], "embeddings": [N,E]}`` float32 CPU tensors.
    """
    d = d or _Dist()
    path = resources.cache_dir("features") / f"{encoder_key}-s{table.images.shape[-1]}-{table_key(table)}.safetensors"
    return _cached(path, lambda: dict(zip(("features", "embeddings"), encode_images(encoder, table.images))), d)


def _morph_rows(table, n: int, generator: torch.Generator, encoder, device) -> dict[str, torch.Tensor]:
    """``n`` random morphs of training targets (:func:`normface_lib.morph.random_morphs`) with their features."""
    from .morph import random_morphs
    m = random_morphs(table, n, generator)
    f, e = encode_images(encoder, m.images, device=device)
    return {"features": f, "embedding": e, "target_landmarks": m.landmarks.float(),
            "target_texture": m.textures.float(), "target_image": m.images.float()}


class _Stream:
    """Deterministic stream of index blocks: step ``t`` → ``per_step`` indices of this rank's share of the epoch
    permutation of :class:`DistributedSampler` (``drop_last``)."""

    def __init__(self, n: int, per_step: int, d: _Dist, seed: int):
        self.sampler = DistributedSampler(range(n), num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.per_step = per_step
        self.steps_per_epoch = len(self.sampler) // per_step if per_step else 0
        if per_step and self.steps_per_epoch == 0:
            raise InputError(f"only {n} rows for {d.world} process(es) × {per_step} rows per step; lower batch_size.")
        self._epoch, self._order = -1, None

    def indices(self, step: int) -> torch.Tensor:
        if not self.per_step:
            return torch.zeros(0, dtype=torch.long)
        epoch, j = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._order, self._epoch = torch.tensor(list(self.sampler), dtype=torch.long), epoch
        return self._order[j * self.per_step:(j + 1) * self.per_step]


# ----------------------------------------------------------------------------------------------------- helpers
def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "bf16" or (config.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _make_scheduler(opt: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=min(0.3, max(config.warmup_steps, 1) / config.steps))
    warm = min(config.warmup_steps, config.steps - 1)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warm, 1)))
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.steps - warm), eta_min=config.lr * 0.01)]
    if warm > 0:
        scheds.insert(0, torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warm, total_iters=warm))
        return torch.optim.lr_scheduler.SequentialLR(opt, scheds, milestones=[warm])
    return scheds[0]


def _rng_state() -> dict[str, Any]:
    s = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": list(np.random.get_state())}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"].to(torch.uint8))
    v, st, g = s["python"]
    random.setstate((v, tuple(st), g))
    n = s["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in s["cuda"]])


def param_checksum(model: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of all parameters and buffers, in state_dict order (identical weights ⇔ same digest)."""
    h = hashlib.sha256()
    for k, v in getattr(model, "module", model).state_dict().items():
        h.update(k.encode())
        _tensor_digest(h, v)
    return h.hexdigest()[:16]


@torch.no_grad()
def evaluate_losses(model: Decoder, features: torch.Tensor, target_landmarks: torch.Tensor,
                    target_textures: torch.Tensor | None, target_images: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """Decoder errors on a set (eval mode, no regularisation noise).

    Args:
        model: the decoder. features ``[N,D]``; target_landmarks ``[N,L,2]`` (pixels); target_textures
            ``[N,3,S,S]`` (mean-shape frame; may be None for ``warp=False``); target_images ``[N,3,S,S]``.

    Returns:
        ``{"texture_l1", "image_l1", "landmark_mse", "landmark_rmse_px", "n"}``: texture L1 (NaN without textures
        or texture output), L1 of the rendered image against the target photo, landmark MSE in crop units and RMS
        landmark error in pixels.
    """
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    sums = dict(texture_l1=0.0, image_l1=0.0, landmark_mse=0.0)
    n = features.shape[0]
    for i in range(0, n, batch):
        out = model(features[i:i + batch].to(dev))
        k = out["image"].shape[0]
        sums["image_l1"] += float(texture_loss(out["image"], target_images[i:i + batch].to(dev))) * k
        sums["landmark_mse"] += float(landmark_loss(out["landmarks"], target_landmarks[i:i + batch].to(dev),
                                                    model.out_size)) * k
        if out["texture"] is not None and target_textures is not None:
            sums["texture_l1"] += float(texture_loss(out["texture"], target_textures[i:i + batch].to(dev))) * k
        else:
            sums["texture_l1"] = float("nan")
    model.train(was_training)
    res = {k: v / max(n, 1) for k, v in sums.items()}
    res["landmark_rmse_px"] = math.sqrt(2 * res["landmark_mse"]) * model.out_size
    res["n"] = n
    return res


def _table_eval_set(table, feats: torch.Tensor) -> tuple:
    """Inputs of a table (rows with ``input_mask``) and their targets, as :func:`evaluate_losses` arguments."""
    m = table.input_mask if getattr(table, "input_mask", None) is not None else torch.ones(len(feats), dtype=torch.bool)
    p = table.person[m]
    return (feats[m], table.target_landmarks[p], table.target_textures[p], table.images[table.target_row[p]])


# ----------------------------------------------------------------------------------------------------- train
def train(config: TrainConfig, out_dir: str | os.PathLike, progress: bool = True, resume: bool = False,
          force: bool = False, until_step: int | None = None, tables: dict | None = None,
          return_model: bool = False) -> dict[str, Any]:
    """Train a decoder; write ``losses.jsonl``, ``checkpoint/`` and ``summary.json`` into ``out_dir``.

    Args:
        config: a :class:`TrainConfig` (e.g. ``profile_config("quick")``).
        out_dir: run folder. A folder that already holds a run is refused (:class:`OverwriteError`) unless
            ``resume`` (continue it) or ``force`` (start over).
        progress: show a tqdm bar (rank 0 only).
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
        ``param_checksum`` (per rank under DDP), paths.
    """
    if not isinstance(config, TrainConfig):
        raise InputError(f"config must be a TrainConfig (use profile_config('quick')), got {type(config).__name__}.")
    out = Path(out_dir)
    until = config.steps if until_step is None else int(until_step)
    if not 1 <= until <= config.steps:
        raise InputError(f"until_step must be in [1, {config.steps}], got {until_step}.")
    from .utils import default_device
    device = default_device(config.device)
    d = _setup_distributed(device.type)
    if device.type == "cuda" and d.active:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", d.rank % max(torch.cuda.device_count(), 1))))
        torch.cuda.set_device(device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, config.num_threads))
    ckpt_dir = out / CHECKPOINT_NAME
    log_path = out / LOG_NAME
    if d.main:
        has_run = log_path.exists() or (ckpt_dir / "config.json").exists()
        if resume and not (ckpt_dir / "config.json").exists():
            raise FileNotFoundError(f"resume=True but {ckpt_dir} holds no checkpoint; start without resume.")
        if has_run and not resume and not force:
            raise OverwriteError(f"{out} already holds a training run; pass resume=True to continue it or "
                                 "force=True to start over.")
        out.mkdir(parents=True, exist_ok=True)
    d.barrier()

    # ---- data, encoder, cached features
    from .encoders import load_encoder
    encoder = load_encoder(config.encoder, layer=config.encoder_layer, device=device)
    enc_key = f"{encoder.name}-{encoder.layer or 'default'}".replace("/", "_")
    tabs = _load_tables(config, tables)
    table = tabs["train"]
    if table.images.shape[-1] != config.size:
        raise InputError(f"the training table has {table.images.shape[-1]}-px crops but config.size is {config.size}.")
    feats = cached_features(encoder, enc_key, table, d)
    real_rows = torch.nonzero(table.input_mask).flatten() if getattr(table, "input_mask", None) is not None \
        else torch.arange(len(table.photo_ids))
    n_real = int(real_rows.numel())
    bank = None
    if config.morphs == "bank" and config.morph_fraction > 0:
        def make_bank():
            g = torch.Generator().manual_seed(config.seed + 7919)
            return _morph_rows(table, config.morph_bank_size, g, encoder, device)
        bpath = resources.cache_dir("morphs") / (f"{enc_key}-s{config.size}-{table_key(table)}-k{config.morph_bank_size}"
                                                 f"-seed{config.seed}.safetensors")
        bank = _cached(bpath, make_bank, d)

    # ---- model, optimiser, schedule
    torch.manual_seed(config.seed)
    model = Decoder(feature_dim=int(feats["features"].shape[1]), mean_shape=table.mean_shape, out_size=config.size,
                    width=config.width, input_dropout=config.input_dropout, input_noise=config.input_noise,
                    warp=config.warp, warp_mode=config.warp_mode)
    model.set_feature_stats(feats["features"][real_rows])
    model.to(device)
    counts = model.parameter_counts()
    net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if d.active else model
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = _make_scheduler(opt, config)
    amp_dtype = _autocast_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loss_fn = NormFaceLoss(encoder if config.identity_weight > 0 and config.identity_every > 0 else None,
                           config.landmark_weight, config.texture_weight,
                           config.identity_weight if config.identity_every > 0 else 0.0,
                           config.identity_kind, config.identity_batch)
    # every rank draws its own dropout / noise / online morphs; the model init above is shared
    torch.manual_seed(config.seed * 1000 + 17 + d.rank)
    random.seed(config.seed + d.rank)
    np.random.seed((config.seed + d.rank) % 2 ** 32)

    start = 0
    if resume:
        ck = load_checkpoint(ckpt_dir, model=model, map_location=device)
        saved = TrainConfig.from_dict(ck.config)
        if saved != config:
            diff = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items() if getattr(config, k) != v}
            raise InputError(f"resume with a different config than the checkpoint's: {diff}; use the same config.")
        model.train()
        opt.load_state_dict(ck.optimizer_state)
        sched.load_state_dict(ck.extra["scheduler"])
        if ck.extra.get("scaler"):
            scaler.load_state_dict(ck.extra["scaler"])
        start = int(ck.extra["step"])
        rng = ck.extra["rng"]
        if len(rng) != d.world:
            raise InputError(f"the checkpoint was written by {len(rng)} process(es); resume with the same number, "
                             f"not {d.world}.")
        _set_rng_state(rng[d.rank])
    if d.main:
        if resume and log_path.exists():  # drop log lines written after the checkpoint
            keep = [l for l in log_path.read_text().splitlines() if l.strip() and json.loads(l)["step"] < start]
            log_path.write_text("".join(k + "\n" for k in keep))
        elif not resume:
            log_path.write_text("")

    # ---- batches
    local_b = config.batch_size // d.world
    if local_b * d.world != config.batch_size:
        raise InputError(f"batch_size {config.batch_size} must be divisible by the number of processes {d.world}.")
    n_morph = int(round(local_b * config.morph_fraction)) if config.morphs != "off" else 0
    if config.morphs == "bank" and bank is None:
        n_morph = 0
    real_stream = _Stream(n_real, local_b - n_morph, d, config.seed)
    bank_stream = _Stream(bank["features"].shape[0], n_morph, d, config.seed + 1) if bank is not None and n_morph else None
    person, target_row = table.person, table.target_row

    def get_batch(step: int) -> dict[str, torch.Tensor]:
        i = real_rows[real_stream.indices(step)]
        p = person[i]
        parts = [{"features": feats["features"][i], "embedding": feats["embeddings"][i],
                  "target_landmarks": table.target_landmarks[p], "target_texture": table.target_textures[p],
                  "target_image": table.images[target_row[p]]}]
        if bank_stream is not None:
            j = bank_stream.indices(step)
            parts.append({k: v[j] for k, v in bank.items()})
        elif config.morphs == "online" and n_morph:
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + step * 1009 + d.rank)
            parts.append(_morph_rows(table, n_morph, g, encoder, device))
        return {k: torch.cat([q[k] for q in parts]).to(device, non_blocking=True) for k in parts[0]}

    def save(step: int) -> None:
        rng = _rng_state()
        if d.active:
            gathered = [None] * d.world
            dist.all_gather_object(gathered, rng)
            rng = gathered
        else:
            rng = [rng]
        if d.main:
            save_checkpoint(ckpt_dir, model, config.to_dict(), optimizer=opt,
                            extra={"step": step, "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                                   "rng": rng, "world_size": d.world}, force=True)
        d.barrier()

    # ---- loop
    model.train()
    bar = tqdm(total=until, initial=start, disable=not (progress and d.main), desc=f"train[{config.profile}]",
               dynamic_ncols=True)
    times: list[float] = []
    recent: list[dict[str, float]] = []
    log_f = open(log_path, "a") if d.main else None
    try:
        for step in range(start, until):
            t0 = time.perf_counter()
            batch = get_batch(step)
            use_id = config.identity_every > 0 and step % config.identity_every == 0
            with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                outputs = net(batch["features"])
                total, parts = loss_fn(outputs, batch, use_identity=use_id)
            opt.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if config.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(opt)
            scaler.update()
            lr = opt.param_groups[0]["lr"]
            sched.step()
            if d.active:  # log the mean over ranks
                keys = sorted(parts)
                v = torch.tensor([parts[k] for k in keys], dtype=torch.float64)
                dist.all_reduce(v)
                parts = {k: float(x) / d.world for k, x in zip(keys, v)}
            dt = time.perf_counter() - t0
            times.append(dt)
            rec = {"step": step, "lr": lr, **{k: round(v, 7) for k, v in parts.items()}, "seconds": round(dt, 4),
                   "identity_step": use_id}
            recent = (recent + [rec])[-50:]
            if log_f:
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
            bar.update(1)
            bar.set_postfix(tex=f"{parts['texture']:.4f}", lm=f"{parts['landmark']:.2e}", refresh=False)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == until:
                save(step + 1)
    finally:
        bar.close()
        if log_f:
            log_f.close()

    # ---- summary
    done = max(until, start)
    checks = param_checksum(model)
    if d.active:
        gathered = [None] * d.world
        dist.all_gather_object(gathered, checks)
        checks = gathered
    summary: dict[str, Any] = {
        "profile": config.profile, "steps_done": done, "steps_total": config.steps, "world_size": d.world,
        "device": str(device), "amp": str(amp_dtype) if amp_dtype else "off", "parameters": counts,
        "mean_step_seconds": float(np.mean(times)) if times else None,
        "mean_step_seconds_identity": (float(np.mean([r["seconds"] for r in recent if r["identity_step"]]))
                                       if any(r["identity_step"] for r in recent) else None),
        "last_losses": {k: float(np.mean([r[k] for r in recent if k in r])) for k in ("landmark", "texture", "identity", "total")
                        if any(k in r for r in recent)},
        "param_checksum": checks, "out_dir": str(out), "log": str(log_path), "checkpoint": str(ckpt_dir),
        "config": config.to_dict(),
    }
    if done == config.steps and d.main:
        ev = {"train": evaluate_losses(model, *_table_eval_set(table, feats["features"]), batch=config.eval_batch)}
        for split, t in tabs.items():
            if split == "train":
                continue
            f = cached_features(encoder, enc_key, t)["features"]
            ev[split] = evaluate_losses(model, *_table_eval_set(t, f), batch=config.eval_batch)
        summary["eval"] = ev
    if d.main:
        (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=1))
    d.barrier()
    if d.owns_group:
        dist.destroy_process_group()
    if return_model:
        summary["model"] = model
    return summary


# ----------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """``python -m normface_lib.train --profile quick --out DIR [--steps N] [--set key=json ...] [--resume|--force]``;
    the same command under ``torchrun --nproc_per_node N`` trains with DDP."""
    ap = argparse.ArgumentParser(prog="python -m normface_lib.train", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    ap.add_argument("--out", required=True, help="run folder (losses.jsonl, checkpoint/, summary.json)")
    ap.add_argument("--steps", type=int, help="override the profile's number of steps")
    ap.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any TrainConfig field; VALUE is JSON (e.g. --set width=0.5 --set warp=false)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out")
    ap.add_argument("--force", action="store_true", help="start over in a folder that holds a run")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    over: dict[str, Any] = {}
    for kv in a.set:
        if "=" not in kv:
            ap.error(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            over[k] = json.loads(v)
        except json.JSONDecodeError:
            over[k] = v
    for k in ("steps", "device", "seed"):
        if getattr(a, k) is not None:
            over[k] = getattr(a, k)
    cfg = profile_config(a.profile, **over)
    summary = train(cfg, a.out, progress=not a.no_progress, resume=a.resume, force=a.force)
    if int(os.environ.get("RANK", "0")) == 0:
        ev = summary.get("eval", {})
        print(json.dumps({"steps_done": summary["steps_done"], "last_losses": summary["last_losses"],
                          "eval": {k: {m: round(v[m], 4) for m in ("texture_l1", "image_l1", "landmark_rmse_px")}
                                   for k, v in ev.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
