"""Training the decoder: :class:`TrainConfig` and the named profiles (:mod:`.config`), the run itself
(:mod:`.trainer`: its stages; :mod:`.run`: :func:`train`; :mod:`.rows`: what a step is made of), its schedule, precision and random state (:mod:`.state`), and several processes
(:mod:`.distributed`). Training uses ``data``, ``encoders`` and ``nets``; nothing below it imports it."""
from .config import PROFILES, TrainConfig, profile_config, run_banner
from .state import param_checksum
from .rows import evaluate_losses, morph_rows
from .run import train
from .trainer import CHECKPOINT_NAME, LOG_NAME, SUMMARY_NAME, Trainer

__all__ = ["PROFILES", "TrainConfig", "profile_config", "run_banner", "param_checksum", "CHECKPOINT_NAME", "LOG_NAME",
           "SUMMARY_NAME", "Trainer", "evaluate_losses", "morph_rows", "train"]
