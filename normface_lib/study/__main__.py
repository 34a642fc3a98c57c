"""``python -m normface_lib.study run|check|compare``: the seed study (``make results``), a rerun's check against the
committed figures, and how two ``metrics.json`` differ."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core import resources
from ..evaluation import METRICS_NAME
from .ablations import ABLATION_STEPS
from .bands import band_violations, spread_summary
from .seeds import SEEDS, load_study, run_study


def main(argv: list[str] | None = None) -> int:
    """``python -m normface_lib.study run|check|compare`` (see ``--help``)."""
    ap = argparse.ArgumentParser(prog="python -m normface_lib.study", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and evaluate every seed, write results/<profile>/seeds.json")
    r.add_argument("--profile", default="quick")
    r.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    r.add_argument("--ablation-steps", type=int, default=ABLATION_STEPS)
    r.add_argument("--out", default=None)
    c = sub.add_parser("check", help="check a rerun's metrics.json against the committed one with the study's bands")
    c.add_argument("rerun")
    c.add_argument("--profile", default="quick")
    c.add_argument("--committed", default=None)
    d = sub.add_parser("compare", help="how two metrics.json differ (bit-identical figures, largest difference)")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--profile", default="quick")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run_study(args.profile, args.seeds, args.ablation_steps, out=args.out)
        return 0
    study = load_study(args.profile)
    if args.cmd == "check":
        committed = Path(args.committed) if args.committed else \
            resources.results_dir(args.profile, committed=True) / METRICS_NAME
        bad = band_violations(json.loads(Path(args.rerun).read_text()), json.loads(committed.read_text()), study)
        for line in bad:
            print(line)
        print(f"{len(bad)} figures outside their bands" if bad else "every figure inside its band")
        return 1 if bad else 0
    s = spread_summary(json.loads(Path(args.a).read_text()), json.loads(Path(args.b).read_text()), study)
    print(json.dumps(s, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
