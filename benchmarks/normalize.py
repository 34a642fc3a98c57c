"""End-to-end speed: normalize one 512-px colour photo (detect → landmarks → align → encode → decode → warp), and
one quick-profile training step, on this CPU.

Prints, last: ``normalize_seconds=<median> train_step_seconds=<median>``. Target: normalize_seconds ≤ 0.3.
Uses the quick checkpoint (data/cache/checkpoints/quick) when present, else trains a tiny one first (not timed).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normface_lib.pipeline import NormFace, default_checkpoint  # noqa: E402
from normface_lib.training import profile_config, train  # noqa: E402


def main(repeats: int = 9) -> None:
    torch.set_num_threads(2)
    import skimage.data
    from PIL import Image

    photo = Image.fromarray(skimage.data.astronaut())  # 512×512 colour, public domain (NASA)
    ckpt = default_checkpoint("quick")
    tmp = None
    if not (ckpt / "checkpoint" / "config.json").exists() and not (ckpt / "config.json").exists():
        tmp = tempfile.TemporaryDirectory()
        ckpt = Path(tmp.name)
        train(profile_config("quick", steps=4, morph_bank_size=8, eval_splits=()), ckpt, progress=False)
        print(f"no quick checkpoint found; trained a 4-step one in {ckpt} (weights do not change the timing)")
    model = NormFace.from_pretrained(ckpt, device="cpu")
    model.normalize(photo)  # warm-up: loads MTCNN/dlib, first-call allocations
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.normalize(photo)
        times.append(time.perf_counter() - t0)
    norm = statistics.median(times)
    print(f"normalize 512x512 photo: median {norm:.3f} s over {repeats} runs (min {min(times):.3f}, max {max(times):.3f})")

    # one quick-profile training step: time `train` for N and N+k steps on the same cached data, take the difference
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
    print(f"normalize_seconds={norm:.3f} train_step_seconds={step:.3f}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
