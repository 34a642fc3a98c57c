"""How far a rerun of the seed study on another machine moves it: compare two ``seeds.json`` files (for example the
committed one and one from an earlier commit made on another CPU, ``git show COMMIT:results/quick/seeds.json``).

    python tools/compare_studies.py OLD_seeds.json NEW_seeds.json --out results/measured/study_across_machines.json

Writes: both files' provenance (commit, machine), how many of the study's numeric figures differ, how many comparison and attribute
verdicts differ, each changed comparison with both intervals, and, over the changed comparisons, the largest
"closeness" (the nearer interval bound's distance from zero as a fraction of the interval's width, the smaller of
the two runs'): a small value means the verdict sat on the boundary. The reproducing chapter renders the file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normface_lib.core.resources import write_json  # noqa: E402
from normface_lib.study import figures  # noqa: E402


def closeness(ci) -> float:
    """Distance of the interval bound nearer to zero from zero, as a fraction of the interval's width (0 when the
    interval touches or straddles zero at a bound)."""
    lo, hi = ci
    return min(abs(lo), abs(hi)) / (hi - lo) if hi > lo else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    old, new = (json.loads(Path(p).read_text()) for p in (args.old, args.new))
    a, b = figures(old), figures(new)  # every numeric figure of the study, provenance and timings left out
    if set(a) != set(b):
        raise SystemExit("the two studies have different contents (another profile or study layout); compare runs "
                         "of the same study code")
    changed = [{"id": x["id"], "old": {"verdict": x["verdict"], "ci": x["ci"]},
                "new": {"verdict": y["verdict"], "ci": y["ci"]},
                "closeness": min(closeness(x["ci"]), closeness(y["ci"]))}
               for x, y in zip(old["comparisons"], new["comparisons"]) if x["verdict"] != y["verdict"]]
    attrs = sum(x.get("verdict") != y.get("verdict") for x, y in zip(old["attributes"], new["attributes"]))
    prov = {k: {"commit": s["provenance"]["commit"], "date": s["provenance"]["date"],
                "machine": s["provenance"]["machine"]} for k, s in (("old", old), ("new", new))}
    doc = {"figures": len(a), "figures_changed": sum(a[k] != b[k] for k in a),
           "comparisons": len(new["comparisons"]), "comparisons_changed": len(changed),
           "attributes": len(new["attributes"]), "attributes_changed": attrs,
           "max_closeness_of_changed": max((c["closeness"] for c in changed), default=None),
           "changed": changed, "studies": prov}
    write_json(doc, Path(args.out))
    print(f"{doc['figures_changed']} of {doc['figures']} figures, {len(changed)} of {doc['comparisons']} comparison "
          f"verdicts and {attrs} of {doc['attributes']} attribute verdicts differ; changed verdicts sat within "
          f"{doc['max_closeness_of_changed']} of an interval's width from zero")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
