"""The seed study: every comparison the book states, trained and measured over several training seeds, with the
bands a rerun on another machine must stay in. It sits above training and evaluation (it trains runs and evaluates
them); nothing else in the library imports it.

- :mod:`.seeds`: :func:`run_study` (``make results``) and reading the committed study;
- :mod:`.sets`: what every run is measured on (the training data set's unseen people, ORL's 40 people, the
  expression set, LFW, the held-out colour photos) and the judges;
- :mod:`.ablations`: the ablation runs at one equal budget;
- :mod:`.scaling`: the learning curve, the paper's Figure 12;
- :mod:`.comparisons`: every comparison, as paired differences over seeds and photos;
- :mod:`.verdicts`: the statistics and the words a difference supports;
- :mod:`.headlines`: the results the introduction states, sorted into what works and what does not by their verdicts;
- :mod:`.bands`: the tolerance of each figure of ``metrics.json`` and the check of a rerun.
"""
from .ablations import ABLATION_STEPS, OPTIONAL_ENCODERS, ablation_configs, ablation_rows, measure_run
from .bands import (BAND_K, RATE_FLOOR, VALUE_FLOOR, band_violations, bands, figures, headline_spread, is_trained,
                    spread_summary)
from .comparisons import (ABLATION_LABELS, BASELINE_LABELS, MEASURES, N_BOOT, attribute_stability, compare_seeds,
                          comparison, comparisons_frame)
from .headlines import HEADLINE_COMPARISONS, best_baseline, headlines
from .scaling import CURVE_MORPHS, CURVE_PEOPLE, curve_fit, fig12, learning_curve
from .seeds import SEEDS, STUDY_NAME, load_study, merge_contract, metrics_contract, run_study, study_is_current
from .sets import StudySets, study_sets
from .verdicts import VERDICTS, bootstrap_statistic, describe, paired_difference, relabel, verdict

__all__ = ["ABLATION_STEPS", "OPTIONAL_ENCODERS", "ablation_configs", "ablation_rows", "measure_run", "StudySets",
           "study_sets", "merge_contract", "HEADLINE_COMPARISONS", "best_baseline", "headlines", "BAND_K", "RATE_FLOOR",
           "VALUE_FLOOR", "band_violations", "bands", "figures", "headline_spread", "is_trained", "spread_summary",
           "ABLATION_LABELS", "BASELINE_LABELS", "MEASURES", "CURVE_MORPHS", "CURVE_PEOPLE", "curve_fit", "fig12",
           "learning_curve", "metrics_contract", "N_BOOT", "attribute_stability", "compare_seeds", "SEEDS",
           "STUDY_NAME", "comparison", "comparisons_frame", "load_study", "run_study", "study_is_current", "VERDICTS",
           "bootstrap_statistic", "describe", "paired_difference", "relabel", "verdict"]
