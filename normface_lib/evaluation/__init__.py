"""Measuring a trained model: what the book's tables and ``results/<profile>/metrics.json`` report.

- :mod:`.metrics`: distances, thresholds, rank-1, bootstrap intervals, spreads, landmark error (pure functions);
- :mod:`.baselines`: mean face, nearest training identity, linear map, align-only;
- :mod:`.judges`: frozen encoders with calibrated same-person thresholds;
- :mod:`.protocol`: the evaluation of notebook 03 (held-out people and photos, clean and hard, LFW, robustness);
- :mod:`.applications`: the colour-correction benchmark and the attributes of the stability test;
- :mod:`.report`: metrics as written to ``metrics.json``.

Evaluation uses a trained :class:`~normface_lib.pipeline.NormFace`, the data, encoders and the applications; it never
imports training (the seed study, :mod:`normface_lib.study`, sits above both).
"""
from .applications import EXPOSURE_METHODS, exposure_benchmark, photo_and_normalized_attributes
from .baselines import Baselines, LinearMap, NearestIdentity, align_only, mean_face
from .judges import FACENET_PAPER_THRESHOLD, Judge, independent_judge, make_judge
from .metrics import (bootstrap_ci, calibrate_threshold, embedding_spread, landmark_error, pairwise_distances,
                      pixel_identity_contrast, pixel_identity_ratio, pixel_spread, rank1, summarize,
                      verification_rates)
from .protocol import (IDENTITY_METRICS, METHODS, ROBUSTNESS_KINDS, ROBUSTNESS_STRENGTHS, evaluate_model,
                       evaluate_run, evaluate_split, evaluate_wild, robustness)
from .report import METRICS_NAME, as_written, round_floats, to_json, training_block, write_metrics

__all__ = ["EXPOSURE_METHODS", "exposure_benchmark", "photo_and_normalized_attributes", "Baselines", "LinearMap",
           "NearestIdentity", "align_only", "mean_face", "FACENET_PAPER_THRESHOLD", "Judge", "independent_judge",
           "make_judge", "bootstrap_ci", "calibrate_threshold", "embedding_spread", "landmark_error",
           "pairwise_distances", "pixel_identity_contrast", "pixel_identity_ratio", "pixel_spread", "rank1", "summarize", "verification_rates", "IDENTITY_METRICS",
           "METHODS", "ROBUSTNESS_KINDS", "ROBUSTNESS_STRENGTHS", "evaluate_model", "evaluate_run", "evaluate_split",
           "evaluate_wild", "robustness", "METRICS_NAME", "as_written", "round_floats", "to_json", "training_block",
           "write_metrics"]
