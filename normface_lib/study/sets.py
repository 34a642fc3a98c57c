"""What every run of the seed study is measured on, built once: the training data set's tables, the other data sets'
held-out people, the LFW subset, the held-out colour photos of the colour-correction benchmark, and the two judges
calibrated on the training people."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import data
from ..encoders import load_encoder
from ..evaluation import independent_judge, make_judge
from ..training import profile_config


@dataclass
class StudySets:
    """The sets of one profile's study (see the module docstring).

    Attributes:
        profile: the profile's name. size: its crop side. dataset: its training data set.
        tables: ``{"train", "unseen_people"[, "unseen_photos"]}`` of ``dataset`` (default split).
        held_out: other data sets' people, never trained on: ``{"orl": all 40 ORL people, "expressions": ...}``
            (``"orl"`` only when the profile does not train on ORL), registered on the training mean shape.
        lfw: the 100 LFW faces of scikit-image. colour_photos: the held-out people's whole colour photos (colour
            data set only, else None). judges: name → calibrated :class:`~normface_lib.evaluation.Judge` (the
            trained-against encoder first, then the independent one).
    """

    profile: str
    size: int
    dataset: str
    tables: dict
    held_out: dict
    lfw: Any
    colour_photos: list | None
    judges: dict = field(default_factory=dict)

    @property
    def indep(self) -> str:
        """The independent judge's name."""
        return list(self.judges)[1]


def study_sets(profile: str = "quick", **overrides: Any) -> StudySets:
    """The :class:`StudySets` of ``profile`` (with ``overrides`` of its config, e.g. ``data_options``)."""
    cfg = profile_config(profile, **overrides)
    tables = data.load_tables(cfg.dataset, cfg.size, None, mirror=cfg.mirror, data_root=cfg.data_root,
                              inputs=cfg.training_inputs, **cfg.data_options)
    ms = tables["train"].mean_shape
    held = {name: data.held_out_table(name, cfg.size, ms) for name in ("orl", "expressions") if name != cfg.dataset}
    photos = data.colour_held_out_photos(cfg.size, **{k: v for k, v in cfg.data_options.items()
                                                      if k in ("seed", "n_unseen_people", "sources")}) \
        if cfg.dataset == "colour" else None
    enc = load_encoder(cfg.encoder, layer=cfg.encoder_layer)
    indep = independent_judge(enc.name)
    judges = {enc.name: make_judge(enc, tables["train"]), indep: make_judge(load_encoder(indep), tables["train"])}
    return StudySets(profile, cfg.size, cfg.dataset, tables, held, data.load_lfw(cfg.size), photos, judges)
