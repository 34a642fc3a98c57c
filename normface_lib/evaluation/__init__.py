"""Measuring a trained model: what the book's tables and ``results/<profile>/metrics.json`` report.

- :mod:`.metrics`: distances, thresholds, rank-1, bootstrap intervals, spreads, landmark error (pure functions);
- :mod:`.baselines`: mean face, nearest training identity, linear map, align-only;
- :mod:`.judges`: frozen encoders with calibrated same-person thresholds;
- :mod:`.protocol`: identity preservation on held-out people and photos, clean and hard, LFW (:func:`evaluate_model`);
- :mod:`.expressions`: expression in → neutral face out, on the expression set (:func:`evaluate_expressions`);
- :mod:`.runs`: one trained run as notebook 03 reports it (:func:`evaluate_run`: the above, the robustness sweep,
  colour correction against ground truth, the training block);
- :mod:`.applications`: the colour-correction benchmarks and the attributes of the stability test;
- :mod:`.report`: metrics as written to ``metrics.json``.

Evaluation uses a trained :class:`~normface_lib.pipeline.NormFace`, the data, encoders and the applications; it never
imports training (the seed study, :mod:`normface_lib.study`, sits above both).
"""
from .applications import (COLOUR_CASTS, COLOUR_METHODS, EXPOSURE_METHODS, colour_correction_benchmark,
                           exposure_benchmark, photo_and_normalized_attributes)
from .expressions import evaluate_expressions, ratio_of_means
from .baselines import Baselines, LinearMap, NearestIdentity, align_only, mean_face
from .judges import FACENET_PAPER_THRESHOLD, Judge, independent_judge, make_judge
from .metrics import (bootstrap_ci, calibrate_threshold, embedding_spread, face_colour_difference, landmark_error,
                      pairwise_distances,
                      pixel_identity_contrast, pixel_identity_ratio, pixel_spread, rank1, summarize,
                      verification_rates)
from .protocol import IDENTITY_METRICS, METHODS, evaluate_model, evaluate_people, evaluate_split, evaluate_wild
from .runs import (COLOUR_PHOTOS, ROBUSTNESS_KINDS, ROBUSTNESS_STRENGTHS, colour_correction_block, evaluate_run,
                   robustness)
from .report import METRICS_NAME, as_written, round_floats, to_json, training_block, write_metrics

__all__ = ["COLOUR_CASTS", "COLOUR_METHODS", "colour_correction_benchmark", "evaluate_expressions", "ratio_of_means",
           "evaluate_people", "COLOUR_PHOTOS", "colour_correction_block", "EXPOSURE_METHODS", "exposure_benchmark", "photo_and_normalized_attributes", "Baselines", "LinearMap",
           "NearestIdentity", "align_only", "mean_face", "FACENET_PAPER_THRESHOLD", "Judge", "independent_judge",
           "make_judge", "face_colour_difference", "bootstrap_ci", "calibrate_threshold", "embedding_spread", "landmark_error",
           "pairwise_distances", "pixel_identity_contrast", "pixel_identity_ratio", "pixel_spread", "rank1", "summarize", "verification_rates", "IDENTITY_METRICS",
           "METHODS", "ROBUSTNESS_KINDS", "ROBUSTNESS_STRENGTHS", "evaluate_model", "evaluate_run", "evaluate_split",
           "evaluate_wild", "robustness", "METRICS_NAME", "as_written", "round_floats", "to_json", "training_block",
           "write_metrics"]
