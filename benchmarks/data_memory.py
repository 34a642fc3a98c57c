"""Is training's memory flat in the data set's size? Build two person-folder data sets (about 2k and 20k photos by
default) and run, on each, exactly

    normface train --profile paper --dataset folder --data-root DIR --steps 5 --out RUN

(the paper profile: 224-px crops, the full-width decoder, FaceNet loss every step, online morphs). Printed for each:
the peak resident memory of the whole process tree (the training process, its preprocessing workers and its
DataLoader workers, summed as PSS so that pages they share are counted once, sampled every 0.2 s with psutil) and
the peak RSS of the largest single process, with the time spent;
then the ratio of the two data sets' peaks.

Photos: :func:`normface_lib.data.resampled.write_person_folder`: real ORL photos, resampled and jittered, 20 per
"person" (ORL's 40 people reused: plumbing and memory only, never quality). The on-disk store and the runs go under
``--work`` (deleted afterwards unless ``--keep``); the store takes about 150 kB a photo at 224 px.

The last line is exactly::

    small_photos=<n> small_peak_gib=<g> large_photos=<n> large_peak_gib=<g> ratio=<large/small>
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normface_lib.core import resources  # noqa: E402
from normface_lib.core.provenance import provenance  # noqa: E402
from normface_lib.data.resampled import write_person_folder  # noqa: E402


def peak_rss(cmd: list[str], env: dict, interval: float = 0.2) -> dict:
    """Run ``cmd``; sample the resident memory of it and all its descendants. Returns the peak of the tree's summed
    PSS (resident memory with pages shared between the processes counted once: forked workers share their parent's)
    and the peak RSS of the largest single process (GiB), seconds and the exit code."""
    t0 = time.perf_counter()
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would stall the run being measured
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    top = psutil.Process(proc.pid)
    tree_peak = single_peak = 0
    while proc.poll() is None:
        try:
            procs = [top] + top.children(recursive=True)
            pss, rss = [], []
            for p in procs:
                try:
                    m = p.memory_full_info()
                    pss.append(m.pss)
                    rss.append(m.rss)
                except psutil.Error:
                    pass
            tree_peak, single_peak = max(tree_peak, sum(pss)), max(single_peak, max(rss, default=0))
        except psutil.Error:
            pass
        time.sleep(interval)
    log.seek(0)
    out = log.read()
    log.close()
    return {"tree_peak_gib": tree_peak / 2 ** 30, "single_peak_gib": single_peak / 2 ** 30,
            "seconds": time.perf_counter() - t0, "returncode": proc.returncode, "output_tail": out[-1500:]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=2000, help="photos in the small data set (default 2000)")
    ap.add_argument("--large", type=int, default=20000, help="photos in the large data set (default 20000)")
    ap.add_argument("--per-person", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2, help="preprocessing processes (default 2)")
    ap.add_argument("--work", default=None, help="folder for the photos, stores and runs (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep --work afterwards")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="normface-data-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NORMFACE_CACHE": str(work / "cache")}
    # the FaceNet weights and the MTCNN/dlib models are read from the packages; nothing else is cached yet
    results = {}
    try:
        for label, n in (("small", args.small), ("large", args.large)):
            people = max(2, n // args.per_person)
            root = work / f"photos-{n}"
            if not root.exists():
                t0 = time.perf_counter()
                write_person_folder(root, people, args.per_person, seed=n)
                print(f"{label}: wrote {people * args.per_person} photos in {time.perf_counter() - t0:.0f} s", flush=True)
            cmd = [sys.executable, "-m", "normface_lib.cli", "train", "--profile", "paper", "--dataset", "folder",
                   "--data-root", str(root), "--steps", str(args.steps), "--out", str(work / f"run-{n}"), "--force",
                   "--quiet", "--set", "data_options=" + json.dumps({"workers": args.workers})]
            r = peak_rss(cmd, env)
            if r["returncode"] != 0:
                raise SystemExit(f"{label} run failed:\n{r['output_tail']}")
            summary = json.loads((work / f"run-{n}" / "summary.json").read_text())
            r.update(photos=people * args.per_person, mean_step_seconds=summary["mean_step_seconds"])
            r.pop("output_tail")
            results[label] = r
            print(f"{label}: {r['photos']} photos: peak memory {r['tree_peak_gib']:.2f} GiB (process tree, "
                  f"PSS), {r['single_peak_gib']:.2f} GiB RSS (largest process); {r['seconds']:.0f} s in all, "
                  f"{r['mean_step_seconds']:.1f} s a step", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ratio = results["large"]["tree_peak_gib"] / results["small"]["tree_peak_gib"]
    out = {"command": "normface train --profile paper --dataset folder --data-root DIR --steps "
                      f"{args.steps}", "results": results, "ratio_large_over_small": ratio,
           "cpu_threads": os.environ.get("OMP_NUM_THREADS"), "note": "person-folder data sets of resampled, "
           "jittered ORL photos (benchmarks/data_memory.py)"}
    if args.json:
        resources.write_json({**out, "provenance": provenance(benchmark="data_memory", **vars(args))}, args.json)
    print(f"small_photos={results['small']['photos']} small_peak_gib={results['small']['tree_peak_gib']:.3f} "
          f"large_photos={results['large']['photos']} large_peak_gib={results['large']['tree_peak_gib']:.3f} "
          f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
