"""Benchmark the face encoders: reference agreement, ORL verification AUC, forward+backward time.

Run ``python benchmarks/encoders.py``; prints one line per encoder::

    encoder=<name> ref_max_abs_diff=<float> orl_auc=<float> ms_fwd_bwd_b8=<float>

* ``ref_max_abs_diff``: largest absolute difference between our torch network and an independent runtime on real
  ORL faces: ``facenet-casia`` vs OpenCV DNN (``cv2.dnn.readNetFromTensorflow`` on the packaged graph, batch 1,
  512-D embeddings) on 160 px network inputs; ``dlib-resnet`` vs ``dlib.face_recognition_model_v1
  .compute_face_descriptor`` on the same 150 px uint8 chips (128-D raw descriptors).
* ``orl_auc``: same-vs-different verification ROC AUC of embedding distances over all pairs of the 400 ORL photos
  (79,800 pairs), canonical crops of 160 px from ``normface_lib.faces``.
* ``ms_fwd_bwd_b8``: median milliseconds of ``embed`` + backward to the input for a batch of 8 160 px crops.

Encoders that are not available here print ``encoder=<name> skipped: <reason>``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normface_lib.core import resources  # noqa: E402
from normface_lib.core.errors import MissingWeightsError  # noqa: E402

ORL_SIZE = 160


def orl_landmarks(people: range | list[int] = range(1, 41), photos: range | list[int] = range(1, 11)):
    """ORL photos ``[N,3,112,92]`` float in ``[0,1]`` (grey repeated to 3 channels), their 68 landmarks ``[N,68,2]``
    (MTCNN box + dlib 68, detected once and cached by :func:`normface_lib.data.orl_landmarks`) and person ids ``[N]``."""
    from normface_lib import data

    images, lms, _, _ = data.orl_landmarks()
    rows = [10 * (p - 1) + (k - 1) for p in people for k in photos]
    return (torch.stack([images[r] for r in rows]), lms[rows],
            torch.tensor([p for p in people for _ in photos]))


def orl_crops(size: int = ORL_SIZE, people=range(1, 41), photos=range(1, 11)):
    """Canonical crops of ORL photos: ``[N,3,size,size]`` float in ``[0,1]`` (border-replicated) and ids ``[N]``."""
    from normface_lib import faces

    images, lms, ids = orl_landmarks(people, photos)
    crops = faces.align_faces(images, lms, size, padding_mode="border")[0]
    return crops.clamp(0, 1), ids


def pair_distances(emb: torch.Tensor, ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """L2 distances and same-person labels of all unordered pairs of rows of ``emb`` ``[N,E]``."""
    d = torch.cdist(emb.double(), emb.double())
    iu = torch.triu_indices(len(ids), len(ids), 1)
    return d[iu[0], iu[1]].numpy(), (ids[iu[0]] == ids[iu[1]]).numpy()


def verification_auc(emb: torch.Tensor, ids: torch.Tensor) -> float:
    """ROC AUC of "same person" scored by negative embedding distance over all pairs (ties count half)."""
    from scipy.stats import rankdata

    d, same = pair_distances(emb, ids)
    r = rankdata(-d)  # high score = small distance
    n_pos, n_neg = same.sum(), (~same).sum()
    return float((r[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def eer_threshold(emb: torch.Tensor, ids: torch.Tensor) -> float:
    """Distance at which the false-reject rate equals the false-accept rate over all pairs."""
    d, same = pair_distances(emb, ids)
    ts = np.sort(d)
    frr = np.searchsorted(np.sort(d[same]), ts, side="right")
    frr = 1 - frr / same.sum()
    far = np.searchsorted(np.sort(d[~same]), ts, side="right") / (~same).sum()
    return float(ts[np.argmin(np.abs(frr - far))])


@torch.no_grad()
def embed_all(enc, crops: torch.Tensor, batch: int = 50) -> torch.Tensor:
    return torch.cat([enc.embed(crops[i:i + batch]) for i in range(0, len(crops), batch)])


def reference_diff(enc, crops: torch.Tensor) -> float:
    """Largest |ours - reference| on ``crops`` (see module docstring)."""
    if enc.name == "facenet-casia":
        import cv2

        net = cv2.dnn.readNetFromTensorflow(str(resources.facenet_graph_path()))
        worst = 0.0
        with torch.no_grad():
            x = enc.preprocess(crops)
            ours = torch.nn.functional.normalize(enc.network_outputs(x)[1], dim=1).numpy()
        for i in range(len(x)):  # OpenCV's import of this graph runs batch 1 only
            net.setInput(x[i:i + 1].numpy())
            worst = max(worst, float(np.abs(net.forward().ravel() - ours[i]).max()))
        return worst
    if enc.name == "dlib-resnet":
        import dlib

        fr = dlib.face_recognition_model_v1(str(resources.dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
        from normface_lib.encoders.base import crop_resize

        with torch.no_grad():
            chips = crop_resize(crops, enc.crop_box, enc.input_size)
            chips_u8 = (chips * 255).round().clamp(0, 255).to(torch.uint8)
            ours = enc.network_outputs(enc.standardize(chips_u8.float() / 255))[1].numpy()
        refs = np.array([fr.compute_face_descriptor(np.ascontiguousarray(c.permute(1, 2, 0).numpy()))
                         for c in chips_u8])
        return float(np.abs(refs - ours).max())
    raise ValueError(f"no reference runtime for {enc.name}")


def time_fwd_bwd(enc, batch: int = 8, size: int = ORL_SIZE, repeats: int = 5) -> float:
    """Median ms of ``embed(x).sum().backward()`` w.r.t. a ``[batch,3,size,size]`` input."""
    x0 = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    times = []
    for i in range(repeats + 1):
        x = x0.clone().requires_grad_(True)
        t = time.perf_counter()
        enc.embed(x).sum().backward()
        if i:  # first run warms up
            times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--people", type=int, default=40, help="ORL people used for the AUC (all 10 photos each)")
    ap.add_argument("--thresholds", action="store_true", help="also print each encoder's ORL equal-error threshold")
    ap.add_argument("--json", default=None, help="also write the figures, with provenance, to this JSON file")
    args = ap.parse_args(argv)
    figures = {}
    torch.set_num_threads(args.threads)
    from normface_lib.encoders import ENCODER_NAMES, load_encoder

    crops, ids = orl_crops(ORL_SIZE, people=range(1, args.people + 1))
    for name in ENCODER_NAMES:
        try:
            enc = load_encoder(name, device="cpu")
        except MissingWeightsError as e:
            print(f"encoder={name} skipped: {str(e).splitlines()[0]}")
            continue
        if name in ("facenet-casia", "dlib-resnet"):
            ref = reference_diff(enc, crops[:: max(1, len(crops) // 40)])
        else:
            ref = float("nan")
        emb = embed_all(enc, crops)
        auc = verification_auc(emb, ids)
        ms = time_fwd_bwd(enc)
        print(f"encoder={name} ref_max_abs_diff={ref:.3e} orl_auc={auc:.4f} ms_fwd_bwd_b8={ms:.1f}", flush=True)
        figures[name] = {"ref_max_abs_diff": ref, "orl_auc": auc, "ms_fwd_bwd_b8": ms}
        if args.thresholds:
            figures[name]["eer_threshold"] = eer_threshold(emb, ids)
            print(f"  {name}: ORL equal-error threshold {figures[name]['eer_threshold']:.4f}")
    if args.json:
        from normface_lib.core.provenance import provenance
        resources.write_json({"encoders": figures, "provenance": provenance(benchmark="encoders", **vars(args))},
                    Path(args.json))


if __name__ == "__main__":
    main()
