"""Benchmark the differentiable warp (normface_lib.warp) against kornia and bare grid_sample, on real faces.

Run ``python benchmarks/warp.py``. Setting: batch 32, 224×224, 3 channels; control points are the 68 dlib landmarks
of 32 real ORL faces (``s1..s32/1.pgm``) after similarity alignment to the canonical 224 px frame; the mean-shape
texture (mean of the 32 crops registered onto the mean shape) is warped onto each face
(``warp_image(texture, mean_shape, landmarks)``). Every timed call is forward + backward of ``output.sum()`` with
``requires_grad`` on the image and the destination landmarks (both must receive gradients).

* ``peer``: kornia 0.9 ``get_tps_transform`` + ``warp_image_tps`` on the same inputs (normalised coordinates, as its
  documentation prescribes). Its linear system has no regularisation, so where this face set has coincident landmarks
  it is singular; we then nudge the coincident destination points by 1e-3 px for kornia only (printed).
* ``floor``: bare ``torch.nn.functional.grid_sample`` forward + backward on the same sizes (``requires_grad`` on the
  image and the grid; the grid is the exact warp's, so memory access is realistic).
* ``fast`` / ``exact``: our two modes. Errors are the fast mode's sampling positions against the exact solution
  (float64), Euclidean distance in pixels (input and output are both 224 px), over all pixels of all 32 faces.

Each round times floor, fast and kornia back to back; times are medians over ``--repeats`` rounds, and
``ratio_to_grid_sample`` is the median over rounds of fast / floor within the round (pairing cancels slow drifts of
the machine; the ratio of the medians is printed too). The OpenMP environment is left as it is and printed: with
``OMP_WAIT_POLICY=PASSIVE`` (sleeping worker threads, what a loaded machine behaves like) every one of the warp's
parallel operations pays a thread wake-up, and the ratio rises (measured in ``book/reproducing.md``).
``--device cuda`` runs every timed call on the GPU (synchronised before each clock reading). ``--faces generated``
replaces the ORL faces by generated ones (``benchmarks/_faces.py``: the library's mean shape, randomly moved, on
smooth random images), for machines without the ORL faces or dlib; the output says which was used.

The last line is exactly::

    speedup_vs_kornia=<float> ratio_to_grid_sample=<float> mean_err_px=<float> p99_err_px=<float> max_err_px=<float>
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _faces import generated_faces  # noqa: E402

from normface_lib import warp  # noqa: E402
from normface_lib.core import resources  # noqa: E402
from normface_lib.core.runtime import seed_everything  # noqa: E402


def orl_landmarks(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` aligned ORL crops ``[n,3,S,S]`` and their landmarks ``[n,68,2]`` (crop pixels), and how they were made."""
    paths = [resources.orl_dir() / f"s{i}" / "1.pgm" for i in range(1, n + 1)]
    try:
        from normface_lib import faces as P
        images = [P.load_image(p) for p in paths]
        lms = torch.stack([P.detect_landmarks(im, name=str(p)) for im, p in zip(images, paths)])
        out = P.align_faces(images, lms, size)
        return out[0], out[1], "normface_lib.faces (MTCNN + dlib 68, similarity alignment)"
    except ImportError:
        pass
    # fallback while preprocessing is unavailable: dlib on the whole photo + a similarity from the eye/mouth centres
    import dlib
    import numpy as np
    from PIL import Image
    pred = dlib.shape_predictor(str(resources.dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    crops, out_lm = [], []
    for p in paths:
        arr = np.asarray(Image.open(p).convert("L"))
        h, w = arr.shape
        shape = pred(arr, dlib.rectangle(0, 0, w - 1, h - 1))
        lm = torch.tensor([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=torch.float32)
        src = torch.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48:68].mean(0)])
        dst = torch.tensor([[0.36, 0.40], [0.64, 0.40], [0.50, 0.70]]) * size - 0.5
        sc, dc = src - src.mean(0), dst - dst.mean(0)
        den = (sc ** 2).sum()
        a = (sc * dc).sum() / den
        b = (sc[:, 0] * dc[:, 1] - sc[:, 1] * dc[:, 0]).sum() / den
        R = torch.stack([torch.stack([a, -b]), torch.stack([b, a])])
        t = dst.mean(0) - R @ src.mean(0)
        out_lm.append(lm @ R.T + t)
        img = torch.from_numpy(arr).float().div(255)[None, None].expand(1, 3, h, w)
        Rinv = torch.linalg.inv(R)
        ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                                indexing="ij")
        q = (torch.stack([xs, ys], -1) - t) @ Rinv.T
        crops.append(F.grid_sample(img, warp.pixels_to_normalized(q, (h, w))[None], padding_mode="border",
                                   align_corners=False))
    return torch.cat(crops), torch.stack(out_lm), "dlib 68 on the whole photo + own similarity alignment (fallback)"


_SYNC = [lambda: None]  # torch.cuda.synchronize when timing on a GPU


def timed(fn, *args) -> float:
    _SYNC[0]()
    t0 = time.perf_counter()
    fn(*args)
    _SYNC[0]()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--exact-repeats", type=int, default=3)
    ap.add_argument("--grid", type=float, default=None,
                    help=f"fast-mode lattice spacing in px (default: size/{warp.DEFAULT_GRID_CELLS})")
    ap.add_argument("--reg", type=float, default=warp.DEFAULT_REG)
    ap.add_argument("--no-kornia", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 ...")
    ap.add_argument("--faces", choices=("orl", "generated"), default="orl",
                    help="ORL faces with dlib landmarks (default), or generated faces where those are not installed")
    ap.add_argument("--json", default=None, help="also write the figures, with provenance, to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_everything(0)
    B, S = args.batch, args.size

    device = torch.device(args.device)
    if device.type == "cuda":
        _SYNC[0] = lambda: torch.cuda.synchronize(device)
    if args.faces == "orl":
        crops, lm, how = orl_landmarks(B, S)
        what = f"{B} ORL faces s1..s{B}/1.pgm via {how}"
    else:
        crops, lm = generated_faces(B, S)
        what = f"{B} GENERATED faces (benchmarks/_faces.py: mean shape randomly moved, smooth random images)"
    crops, lm = crops.to(device), lm.to(device)
    mean_shape = lm.mean(0)
    with torch.no_grad():  # mean-shape texture: every crop registered onto the mean shape, averaged
        texture = warp.warp_image(crops, lm, mean_shape, mode="exact", reg=args.reg).mean(0, keepdim=True)
    image = texture.expand(B, -1, -1, -1).contiguous()
    d2 = torch.cdist(lm, lm) + torch.eye(68, device=device) * 1e9
    n_coinc = int((d2 < 1e-6).sum()) // 2
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({args.threads} threads)"
    print(f"device: {dev_name}; torch {torch.__version__}")
    print(f"data: {what}; {S}x{S}; {n_coinc} coincident landmark pairs; "
          f"threads={args.threads}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (library default)')}; "
          f"reg={args.reg:g} grid={args.grid if args.grid else args.size / warp.DEFAULT_GRID_CELLS:.3g}px")

    # ---------------------------------------------------------------- accuracy of the fast mode
    exact64 = warp.dense_flow(mean_shape.double(), lm.double(), S, mode="exact", reg=args.reg)
    errs = warp.fast_mode_error(mean_shape, lm, S, reg=args.reg, grid=args.grid)
    mean_err, p99_err, max_err = errs["mean"], errs["p99"], errs["max"]
    exact32 = warp.dense_flow(mean_shape, lm, S, mode="exact", reg=args.reg)
    print(f"exact mode float32 vs float64: max {float((exact32.double() - exact64).norm(dim=-1).max()):.2e} px")

    # ---------------------------------------------------------------- timed closures (forward + backward)
    grid_exact = warp.pixels_to_normalized(exact32, S).contiguous()

    def run_floor():
        im = image.detach().requires_grad_()
        g = grid_exact.detach().requires_grad_()
        F.grid_sample(im, g, mode="bilinear", padding_mode="border", align_corners=False).sum().backward()
        assert im.grad is not None and g.grad is not None

    def run_ours(mode):
        im = image.detach().requires_grad_()
        dst = lm.detach().requires_grad_()
        warp.warp_image(im, mean_shape, dst, mode=mode, reg=args.reg, grid=args.grid).sum().backward()
        assert im.grad is not None and dst.grad is not None and bool(dst.grad.abs().sum() > 0)

    runs = {"floor": run_floor, "fast": lambda: run_ours("fast")}
    kornia_note = ""
    if not args.no_kornia:
        from kornia.geometry.transform import get_tps_transform, warp_image_tps
        src_n = warp.pixels_to_normalized(mean_shape, S).expand(B, -1, -1).contiguous()
        dst_k = lm.clone()
        if n_coinc:  # kornia's unregularised system is singular on exactly coincident points: nudge them
            dup = (d2 < 1e-6).triu().any(1)  # [B, 68]: points that repeat an earlier one
            dst_k[dup] += 1e-3
            kornia_note = " (coincident destination points nudged by 1e-3 px for kornia)"

        def run_kornia():
            im = image.detach().requires_grad_()
            dst = dst_k.detach().requires_grad_()
            dn = warp.pixels_to_normalized(dst, S)
            kw, aw = get_tps_transform(dn, src_n)
            warp_image_tps(im, src_n, kw, aw, align_corners=False).sum().backward()
            assert im.grad is not None and dst.grad is not None

        runs["kornia"] = run_kornia
    for fn in runs.values():  # warm-up
        fn()
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            if k == "kornia" and len(times[k]) >= args.exact_repeats:
                continue
            times[k].append(timed(fn))
    times["exact"] = [timed(run_ours, "exact") for _ in range(args.exact_repeats)]
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"grid_sample fwd+bwd (floor): {med['floor']:.4f} s  (median of {len(times['floor'])})")
    print(f"normface fast fwd+bwd:       {med['fast']:.4f} s  (median of {len(times['fast'])})")
    print(f"normface exact fwd+bwd:      {med['exact']:.4f} s  (median of {len(times['exact'])})")
    if "kornia" in med:
        print(f"kornia warp_image_tps fwd+bwd: {med['kornia']:.4f} s  (median of {len(times['kornia'])}){kornia_note}")
        print(f"exact mode speedup vs kornia: {med['kornia'] / med['exact']:.2f}")
    speedup = med["kornia"] / med["fast"] if "kornia" in med else float("nan")
    paired = statistics.median(f / g for f, g in zip(times["fast"], times["floor"]))
    print(f"fast / floor: median of per-round ratios {paired:.3f}, ratio of medians {med['fast'] / med['floor']:.3f}")
    print(f"speedup_vs_kornia={speedup:.3f} ratio_to_grid_sample={paired:.3f} "
          f"mean_err_px={mean_err:.5f} p99_err_px={p99_err:.5f} max_err_px={max_err:.4f}")
    if args.json:
        from normface_lib.core.provenance import provenance
        resources.write_json({"speedup_vs_kornia": speedup, "ratio_to_grid_sample": paired,
                     "ratio_of_medians": med["fast"] / med["floor"],
                     "exact_speedup_vs_kornia": med["kornia"] / med["exact"] if "kornia" in med else None,
                     "median_seconds": med, "mean_err_px": mean_err, "p99_err_px": p99_err, "max_err_px": max_err,
                     "device": dev_name, "faces": what,
                     "provenance": provenance(benchmark="warp", **vars(args))}, Path(args.json))


if __name__ == "__main__":
    main()
