"""What determines a training run: :class:`TrainConfig`, and the one registry of named profiles (:data:`PROFILES`)
that the notebooks, the command line and the seed study all read."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.errors import InputError


@dataclass
class TrainConfig:
    """Everything that determines a training run (same config + same seed → same numbers on the same machine).

    Data: ``dataset`` (a trainable name of :data:`normface_lib.data.DATASETS`: "colour" or "orl", in memory; or
    "celeba" / "folder", streamed from an on-disk store, with ``data_root``), ``data_options`` (passed to
    :func:`normface_lib.data.load_tables`: ``seed``, ``n_train_people``, ``max_people``, ``workers``...),
    ``size`` (crop side),
    ``mirror`` (add mirrored photos), ``training_inputs`` (``"frontal_neutral"``, the paper's setup and both profiles':
    only frontal, neutral photos, each mapped to itself; ``"paired"``, an ablation: every photo of a training person
    mapped to that person's frontal target), ``encoder``/``encoder_layer`` (:func:`normface_lib.encoders.load_encoder`).
    Model: see :class:`normface_lib.nets.Decoder` (``width``, ``input_dropout``, ``input_noise``, ``warp``).
    Optimisation: ``steps``, global ``batch_size`` (split across DDP ranks), ``lr``, ``weight_decay``,
    ``schedule`` ("cosine" with ``warmup_steps``, "onecycle" or "constant"), ``grad_clip`` (None = off).
    Losses: weights, ``identity_every`` (0 = never), ``identity_batch`` (None = whole batch), ``identity_kind``.
    The landmark MSE is in crop units (a 1-px error at 64 px is 2.4e-4), hence ``landmark_weight=100`` by default,
    which puts it on the scale of the texture L1 (≈ 0.02–0.2); the paper does not give its weights.
    Morphs: ``morphs`` ("bank", "online" or "off"), ``morph_bank_size`` K, ``morph_fraction`` of each batch
    (blend weights α ~ U(0, 1), :func:`normface_lib.nets.random_morphs`).
    Runtime: ``seed``, ``amp`` ("auto" = bf16/fp16 on CUDA, off on CPU; "bf16", "fp16", "off"), ``device``
    (None = CUDA if available), ``num_threads`` (CPU threads per process; on a CPU :func:`train` calls
    ``torch.set_num_threads``), ``data_workers`` (processes of the DataLoader reading streamed data ahead of the
    model; 0 = the training process reads), ``compile`` (``torch.compile`` the decoder: on in the paper profile, whose
    224-px step ``benchmarks/train_step.py --compile both`` measured faster compiled on a CPU, for about a minute and a
    half of compiling at the first step; off in the quick profile, whose 64-px step it did not speed up; if compiling
    fails the run goes on in eager mode with a warning), ``checkpoint_every``, ``eval_splits`` (held-out tables evaluated at the end; None: every split the data set has),
    ``eval_batch``. The paper profile needs ``data_root`` (e.g. ``--set data_root='"/data"'``).
    """

    profile: str = "custom"
    dataset: str = "colour"
    data_root: str | None = None
    data_options: dict = field(default_factory=dict)
    size: int = 96
    mirror: bool = True
    training_inputs: str = "frontal_neutral"
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
    data_workers: int = 2
    compile: bool = False
    checkpoint_every: int = 500
    eval_splits: tuple[str, ...] | None = None
    eval_batch: int = 64

    def __post_init__(self):
        self.eval_splits = None if self.eval_splits is None else tuple(self.eval_splits)
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
            (self.data_workers >= 0, f"data_workers must be ≥ 0, got {self.data_workers}"),
            (isinstance(self.compile, bool), f"compile must be true or false, got {self.compile!r}"),
            (self.training_inputs in ("frontal_neutral", "paired"),
             f"training_inputs must be 'frontal_neutral' or 'paired', got {self.training_inputs!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(msg + "; fix the TrainConfig field.")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eval_splits"] = None if self.eval_splits is None else list(self.eval_splits)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"unknown TrainConfig fields {sorted(unknown)}; valid fields: {sorted(names)}.")
        return cls(**d)


#: Config fields that say where and how fast a run goes, not what it computes: they do not change a run's folder
#: (:func:`normface_lib.pipeline.run_folder`), and a run may be resumed with other values of them.
RUNTIME_FIELDS = ("device", "num_threads", "data_workers", "compile")


PROFILES: dict[str, dict[str, Any]] = {
    # 2 CPU cores, offline, a few minutes: the colour portraits of registry packages at 96 px (the training inputs
    # are the frontal, neutral photos of 90 % of the people, mirrored), a narrow decoder (width 0.25), a bank of 256
    # cached morphs, the FaceNet loss every 8th step on 8 outputs. How the settings were chosen: CONTRIBUTING.md,
    # "The quick profile's settings".
    "quick": dict(profile="quick", dataset="colour", size=96, mirror=True, training_inputs="frontal_neutral",
                  encoder="facenet-casia", width=0.25,
                  input_dropout=0.1, input_noise=0.5, steps=1200, batch_size=32, lr=2e-3, weight_decay=1e-2,
                  schedule="cosine", warmup_steps=30, identity_weight=0.1, identity_every=8, identity_batch=8,
                  morphs="bank", morph_bank_size=256, morph_fraction=0.25, num_threads=2, checkpoint_every=400),
    # The paper: a GPU, CelebA at 224 px, full width, the FaceNet loss on every step, fresh morphs every step; the
    # decoder compiled (its step measured faster compiled on a CPU, benchmarks/train_step.py; not yet on a GPU).
    "paper": dict(profile="paper", dataset="celeba", size=224, mirror=True, training_inputs="frontal_neutral",
                  encoder="facenet-casia", width=1.0,
                  input_dropout=0.0, input_noise=0.0, steps=100_000, batch_size=32, lr=1e-4, weight_decay=1e-4,
                  schedule="cosine", warmup_steps=1000, identity_weight=1.0, identity_every=1, identity_batch=None,
                  morphs="online", morph_fraction=0.25, amp="auto", num_threads=8, checkpoint_every=2000,
                  compile=True),
}


def profile_config(name: str, **overrides: Any) -> TrainConfig:
    """The named profile (``"quick"`` or ``"paper"``, see :data:`PROFILES`) with ``overrides`` applied."""
    if name not in PROFILES:
        raise InputError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}.")
    return TrainConfig.from_dict({**PROFILES[name], **overrides})


def run_banner(profile: str, **params) -> str:
    """One line naming the profile and parameters a notebook runs with, printed at the top of every notebook so that
    every number below it can be traced to its profile. Raises :class:`InputError` for an unknown profile."""
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
    extra = " ".join(f"{k}={v}" for k, v in params.items())
    return (f"normface profile={profile} {extra} | torch {torch.__version__}, "
            f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}, "
            f"{torch.get_num_threads()} threads").replace("  ", " ")
