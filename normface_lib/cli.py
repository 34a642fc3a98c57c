"""The ``normface`` command.

    normface normalize PHOTO... -o OUTDIR [--checkpoint DIR] [--force]
    normface train --profile quick --out DIR [--steps N] [--seed S] [--set KEY=VALUE ...] [--resume|--force]
    normface correct-colour PHOTO... -o OUTDIR [--checkpoint DIR] [--force]
    normface avatar PHOTO... -o OUTDIR [--checkpoint DIR] [--force]

Every photo gets one line on stdout (or an error line on stderr); the exit code is 1 when any photo failed, 2 for
a usage error. Nothing in OUTDIR is overwritten without ``--force``. ``torchrun --nproc_per_node N -m normface_lib.cli
train ...`` trains with DDP (one line of output, from the first process).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from . import __version__
from .apps.avatar import export_obj, fit_mesh
from .apps.colour import correct_photo
from .core.errors import InputError, NormFaceError, OverwriteError
from .faces import load_image, to_uint8_hwc
from .pipeline import NormFace
from .training import PROFILES, profile_config, train


def _save_png(image, path: Path, force: bool) -> None:
    """Write ``[3,H,W]`` float in ``[0,1]`` as PNG, refusing to overwrite unless ``force``."""
    if path.exists() and not force:
        raise OverwriteError(f"{path} exists; pass --force to overwrite it or choose another -o folder.")
    Image.fromarray(to_uint8_hwc(image)).save(path)


def _for_each_photo(photos: Sequence[str], work: Callable[[str], str]) -> int:
    """Run ``work`` on every photo, printing its line or its error; return the number of failures."""
    failures = 0
    for photo in photos:
        try:
            print(work(photo), flush=True)
        except (NormFaceError, OSError, ValueError) as e:
            failures += 1
            print(f"{photo}: error: {e}", file=sys.stderr, flush=True)
    return failures


def _load_model(args):
    return NormFace.from_pretrained(args.checkpoint, device=args.device)


def cmd_normalize(args) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    model = _load_model(args)

    def work(photo: str) -> str:
        faces = model.normalize_all(photo, name=photo)
        stem = Path(photo).stem
        targets = [out / (f"{stem}.png" if len(faces) == 1 else f"{stem}_face{i}.png") for i in range(len(faces))]
        _refuse_existing(targets, args.force)  # a photo is written whole or not at all
        for f, t in zip(faces, targets):
            _save_png(f.image, t, force=True)
        parts = [f"{t} (identity distance {f.identity_distance:.3f}, {'same' if f.same_person else 'not same'} "
                 f"person at threshold {f.threshold:.3f})" for f, t in zip(faces, targets)]
        return f"{photo}: {len(faces)} face{'s' if len(faces) > 1 else ''} -> " + "; ".join(parts)

    return 1 if _for_each_photo(args.photos, work) else 0


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs of ``--set`` as a dict; VALUE is read as JSON when it parses (numbers, true/false, null,
    lists), else kept as a string."""
    over: dict[str, Any] = {}
    for kv in pairs:
        if "=" not in kv:
            raise InputError(f"--set expects KEY=VALUE (e.g. --set width=0.5), got {kv!r}.")
        k, v = kv.split("=", 1)
        try:
            over[k] = json.loads(v)
        except json.JSONDecodeError:
            over[k] = v
    return over


def cmd_train(args) -> int:
    out = Path(args.out)
    overrides = _overrides(args.set)
    overrides.update({k: v for k, v in dict(steps=args.steps, seed=args.seed, device=args.device).items()
                      if v is not None})
    config = profile_config(args.profile, **overrides)
    summary = train(config, out, progress=not args.quiet, resume=args.resume, force=args.force)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained profile={config.profile} steps={config.steps} -> {out}")
        for k, v in summary.items():
            if isinstance(v, (int, float, str)):
                print(f"  {k}: {v}")
        for split, ev in summary.get("eval", {}).items():
            print(f"  eval {split}: " + ", ".join(f"{m} {ev[m]:.4f}" for m in ("texture_l1", "image_l1",
                                                                                  "landmark_rmse_px")))
    return 0


def _refuse_existing(targets: Sequence[Path], force: bool) -> None:
    """Raise OverwriteError if any target exists and ``force`` is false (checked before any work is done)."""
    if not force:
        for t in targets:
            if t.exists():
                raise OverwriteError(f"{t} exists; pass --force to overwrite it or choose another -o folder.")


def cmd_correct_colour(args) -> int:
    """Correct each photo's exposure (and, with a colour-trained model, white balance) from its normalized face."""
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    model = _load_model(args)
    kind = "auto" if model.renders_colour else "exposure"  # a grey model knows brightness, not colour

    def work(photo: str) -> str:
        target = out / f"{Path(photo).stem}.png"
        _refuse_existing([target], args.force)
        image = load_image(photo, name=photo)
        face = model.normalize(image, name=photo)
        res = correct_photo(image, face.input_landmarks, face.image, face.landmarks, kind=kind)
        _save_png(res.corrected, target, force=True)
        gains = res.transform.matrix.diag().tolist()
        if res.transform.kind == "exposure":
            what = (f"exposure only, gain x{gains[0]:.3f} in linear light (the model renders grey faces, so it "
                    "says nothing about white balance)")
        else:
            what = "exposure and white balance, RGB gains " + " ".join(f"x{g:.3f}" for g in gains)
        return f"{photo}: -> {target} ({what}; {int(res.mask.sum())} face pixels)"

    return 1 if _for_each_photo(args.photos, work) else 0


def cmd_avatar(args) -> int:
    """Fit the face mesh to each photo's normalized face and write OBJ + MTL + PNG texture."""
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    model = _load_model(args)

    def work(photo: str) -> str:
        stem = out / Path(photo).stem
        _refuse_existing([stem.with_suffix(s) for s in (".obj", ".mtl", ".png")], args.force)
        face = model.normalize(photo, name=photo)
        mesh = fit_mesh(face.landmarks, face.image)
        paths = export_obj(stem.with_suffix(".obj"), mesh.vertices, mesh.faces, mesh.uvs, face.image, force=True)
        return (f"{photo}: -> {paths['obj']} + {paths['mtl'].name} + {paths['png'].name} ({len(mesh.vertices)} "
                f"vertices, {len(mesh.faces)} triangles, landmark fit {mesh.landmark_error:.2f} px; mesh: MediaPipe "
                "canonical face model, Apache-2.0)")

    return 1 if _for_each_photo(args.photos, work) else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="normface", description="Synthesize normalized faces from identity features "
                                "(Cole et al., CVPR 2017).")
    p.add_argument("--version", action="version", version=f"normface {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    n = sub.add_parser("normalize", help="turn photos into frontal, neutral, evenly lit faces (one PNG per face)")
    n.add_argument("photos", nargs="+", metavar="PHOTO")
    n.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the PNGs (created)")
    n.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="trained checkpoint folder (default: the quick profile's, data/cache/checkpoints/quick)")
    n.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    n.add_argument("--force", action="store_true", help="overwrite existing PNGs")
    n.set_defaults(func=cmd_normalize)

    t = sub.add_parser("train", help="train a decoder with a named profile")
    t.add_argument("--profile", default="quick", choices=list(PROFILES))
    t.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder")
    t.add_argument("--steps", type=int, default=None, help="override the profile's number of steps")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any TrainConfig field; VALUE is JSON (e.g. --set width=0.5 --set warp=false)")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--force", action="store_true", help="replace a checkpoint in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    for name, func, helptext, what in (
            ("correct-colour", cmd_correct_colour, "correct photos' exposure (and white balance, with a colour-trained "
             "model) from their normalized faces (largest face); one PNG per photo", "the corrected PNGs"),
            ("avatar", cmd_avatar, "fit a textured 3D face mesh to each photo's normalized face (largest face); "
             "OBJ + MTL + PNG per photo", "the OBJ/MTL/PNG files")):
        a = sub.add_parser(name, help=helptext)
        a.add_argument("photos", nargs="+", metavar="PHOTO")
        a.add_argument("-o", "--output", required=True, metavar="OUTDIR", help=f"folder for {what} (created)")
        a.add_argument("--checkpoint", default=None, metavar="DIR",
                       help="trained checkpoint folder (default: the quick profile's, data/cache/checkpoints/quick)")
        a.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
        a.add_argument("--force", action="store_true", help="overwrite existing files")
        a.set_defaults(func=func)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (NormFaceError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
