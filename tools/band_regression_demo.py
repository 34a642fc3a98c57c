"""Do the rerun bands still catch a real regression? Train deliberate regressions and check them.

    python tools/band_regression_demo.py [--out results/measured/band_regressions.json]

Trains the quick model with half the training steps and, separately, without the identity loss (everything else as
the profile), evaluates each exactly as notebook 03 does (:func:`normface_lib.evaluation.evaluate_run`), and checks
the figures against the committed ``results/quick/metrics.json`` with the seed study's bands
(:func:`normface_lib.study.band_violations`). A useful band lets an honest rerun through and stops these.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from normface_lib import study  # noqa: E402
from normface_lib import evaluation as ev  # noqa: E402
from normface_lib.core import resources  # noqa: E402
from normface_lib.core.provenance import provenance  # noqa: E402
from normface_lib.pipeline import NormFace  # noqa: E402
from normface_lib.training import profile_config, train  # noqa: E402

CHANGES = {"half the training steps": dict(steps=profile_config("quick").steps // 2,
                                           warmup_steps=profile_config("quick").warmup_steps // 2),
           "identity loss off": dict(identity_weight=0.0, identity_every=0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "measured" / "band_regressions.json"))
    args = ap.parse_args(argv)
    committed = json.loads((resources.results_dir("quick", committed=True) / ev.METRICS_NAME).read_text())
    seeds = study.load_study("quick")
    sets = study.study_sets("quick")  # the held-out sets and judges of the seed study, as notebook 03 measures
    report = {}
    for name, change in CHANGES.items():
        run = resources.cache_dir("regressions", name.replace(" ", "-"))
        train(profile_config("quick", **change), run, progress=False, force=True, tables={"train": sets.tables["train"]})
        metrics = ev.evaluate_run(NormFace.from_pretrained(run, device="cpu"), run, sets.tables, lfw=sets.lfw,
                                  judges=sets.judges, held_out=sets.held_out, colour_photos=sets.colour_photos)
        rerun = json.loads(ev.to_json(metrics, run / "metrics.json").read_text())  # as notebook 03 writes it
        bad = study.band_violations(rerun, committed, seeds)
        report[name] = {"change": change, "figures_outside": len(bad), "figures": len(study.figures(committed)),
                        "examples": bad[:8]}
        print(f"{name}: {len(bad)} of {len(study.figures(committed))} figures outside their bands")
        for line in bad[:8]:
            print("   ", line)
    resources.write_json({"regressions": report, "provenance": provenance(tool="band_regression_demo")},
                         Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
