"""Measure how the quick profile's figures move: rerun on the same machine, rerun on an emulated other machine.

    python tools/reproducibility.py --same-machine A/metrics.json --other-machine B/metrics.json \
        --other-settings "ATEN_CPU_CAPABILITY=default ..." --out results/quick/reproducibility.json

Each rerun is a ``metrics.json`` written by notebook 03 in a fresh clone (``make test`` leaves it in
``_build/rerun/quick``). Both are compared with the committed ``results/quick/metrics.json``
(:func:`normface_lib.study.spread_summary`: how many figures are bit-identical, the largest difference, the
largest difference as a fraction of its band); the seed study adds the seed-to-seed spread. The reproducing chapter
renders the file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from normface_lib import study  # noqa: E402
from normface_lib.core import resources  # noqa: E402
from normface_lib.core.provenance import provenance  # noqa: E402
from normface_lib.evaluation import METRICS_NAME  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--same-machine", required=True)
    ap.add_argument("--other-machine", required=True)
    ap.add_argument("--other-settings", required=True, help="the environment that emulated the other machine")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    committed = json.loads((resources.results_dir(args.profile, committed=True) / METRICS_NAME).read_text())
    seeds = study.load_study(args.profile)
    out = {"profile": args.profile, "band_k": study.BAND_K}
    for key, path, settings in (("same_machine", args.same_machine, "the committed run's machine and settings"),
                                ("other_machine", args.other_machine, args.other_settings)):
        rerun = json.loads(Path(path).read_text())
        out[key] = {"settings": settings, "machine": rerun.get("provenance", {}).get("machine"),
                    **study.spread_summary(rerun, committed, seeds),
                    "violations": study.band_violations(rerun, committed, seeds)}
    out["provenance"] = provenance(tool="reproducibility", **vars(args))
    resources.write_json(out, Path(args.out))
    for key in ("same_machine", "other_machine"):
        s = out[key]
        print(f"{key}: {s['identical']}/{s['figures']} figures bit-identical, trained figures "
              f"{s['trained_identical']}/{s['trained_figures']}, max |difference| {s['max_abs_difference']:.4f}, "
              f"largest fraction of its band {s['max_fraction_of_band']:.2f} ({s['worst_figure']}), "
              f"{len(s['violations'])} outside their bands")
    return 0


if __name__ == "__main__":
    sys.exit(main())
