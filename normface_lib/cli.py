"""The ``normface`` command.

    normface normalize PHOTO|FOLDER|GLOB... -o OUTDIR [-r] [--aligned] [--json] [--compare] [--checkpoint DIR|HUB_ID]
    normface train --profile quick --out DIR [--dataset D --data-root DIR] [--steps N] [--seed S] [--set KEY=VALUE ...]
                   [--resume|--force]
    normface reproduce --profile paper --dataset folder|celeba --data-root DIR [--steps N] [--set KEY=VALUE ...]
                   [--runs DIR] [--lfw DIR] [--offline] [--photos PHOTO ...]
    normface correct-colour PHOTO... -o OUTDIR [--checkpoint DIR]
    normface avatar PHOTO... -o OUTDIR [--checkpoint DIR]
    normface --version

Every photo gets one line on stdout (with ``--json``, one JSON object), or an error line on stderr; the exit code is 1
when any photo failed, 2 for a usage error. Without ``--checkpoint`` the quick profile's model is used, trained on
first use (a few minutes on a CPU, with a progress bar). Nothing is overwritten without ``--force``, and nothing is
ever written onto an input photo; two photos with the same name get distinct outputs (``name.png``, ``name-2.png``).
``torchrun --nproc_per_node N -m normface_lib.cli train ...`` trains with DDP (output from the first process only).
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from tqdm import tqdm

from . import __version__
from .apps.avatar import export_obj, fit_mesh
from .apps.colour import correct_photo
from .core.errors import InputError, NormFaceError, OverwriteError
from .core.resources import atomic_write
from .data import DATASETS
from .faces import load_image, side_by_side, to_uint8_hwc
from .pipeline import NormFace
from .training import PROFILES, profile_config, train

#: Suffixes taken as photos inside a folder given as input (what PIL reads).
IMAGE_SUFFIXES = frozenset(e.lower() for e in Image.registered_extensions())


# ---------------------------------------------------------------------------------------------- inputs and outputs
def expand_inputs(inputs: Sequence[str], recursive: bool = False) -> list[str]:
    """Photos named on the command line: files as given, folders as the image files in them (``recursive``: in
    their sub-folders too; hidden files left out), quoted globs expanded. Missing files stay in the list (they are
    reported per photo)."""
    out: list[str] = []
    for x in inputs:
        p = Path(x)
        if p.is_dir():
            found = p.rglob("*") if recursive else p.glob("*")
            out += sorted(str(f) for f in found if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                          and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif not p.exists() and glob.has_magic(x):
            out += sorted(glob.glob(x, recursive=recursive))
        else:
            out.append(x)
    return out


class Outputs:
    """Where each photo's files go: ``OUTDIR/<name><suffix>``, one distinct name per photo (a second ``photo.jpg``
    from another folder becomes ``photo-2``), never a path that is one of the input photos, written atomically and
    only over an existing file with ``--force``."""

    def __init__(self, folder: str | os.PathLike, photos: Sequence[str], force: bool):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise InputError(f"-o {self.folder}: a file is in the way; the output must be a folder.") from None
        except OSError as e:
            raise InputError(f"-o {self.folder}: cannot create the output folder ({e.strerror}); choose another "
                             "-o.") from None
        self.force = force
        self.inputs = {self._key(p) for p in photos}
        self.names: dict[int, str] = {}
        taken: set[str] = set()
        for k, photo in enumerate(photos):
            stem, n = Path(photo).stem, 1
            name = stem
            while name in taken:
                n += 1
                name = f"{stem}-{n}"
            taken.add(name)
            self.names[k] = name

    @staticmethod
    def _key(p) -> str:
        return os.path.realpath(os.path.abspath(p))

    def paths(self, k: int, suffixes: Sequence[str]) -> list[Path]:
        """The files photo ``k`` will write, checked before any work: none may be an input photo, none may exist
        unless ``--force``."""
        targets = [self.folder / f"{self.names[k]}{s}" for s in suffixes]
        for t in targets:
            if self._key(t) in self.inputs:
                raise InputError(f"{t} is one of the input photos; writing there would destroy it, with or without "
                                 "--force. Choose another -o folder.")
            if os.path.lexists(t) and not self.force:
                raise OverwriteError(f"{t} exists; pass --force to overwrite it or choose another -o folder.")
        return targets

    def save_png(self, image: torch.Tensor, path: Path) -> Path:
        """Write ``[3,H,W]`` float in ``[0,1]`` as a PNG, atomically."""
        arr = to_uint8_hwc(image)
        return atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"), overwrite=self.force)


def _report(photos: Sequence[str], results: Sequence, line: Callable[[str, Any], str | dict],
            as_json: bool = False) -> int:
    """Print one line (or JSON object) per photo and each error; return the number of failures."""
    failures = 0
    for photo, res in zip(photos, results):
        if isinstance(res, BaseException):
            failures += 1
            if as_json:
                print(json.dumps({"photo": photo, "error": f"{type(res).__name__}: {res}"}), flush=True)
            print(f"{photo}: error: {res}", file=sys.stderr, flush=True)
        else:
            out = line(photo, res)
            print(json.dumps(out) if as_json else out, flush=True)
    return failures


PHOTO_FAILURES = (NormFaceError, OSError, ValueError)


def _each(photos: Sequence[str], work: Callable[[int, str], Any], quiet: bool) -> list:
    """``work(k, photo)`` for every photo, with a progress bar on a terminal; a photo's error is its result."""
    results = []
    for k, photo in enumerate(tqdm(photos, desc="photos", unit="photo", disable=True if quiet else None,
                                   file=sys.stderr)):
        try:
            results.append(work(k, photo))
        except PHOTO_FAILURES as e:
            results.append(e)
    return results


def _load_model(args) -> NormFace:
    """The model of ``--checkpoint`` (a folder or a hub id), else the quick profile's, trained on first use."""
    with contextlib.redirect_stdout(sys.stderr):  # status lines never mix with the results on stdout
        if args.checkpoint:
            return NormFace.from_pretrained(args.checkpoint, device=args.device)
        return NormFace.from_profile(args.profile, device=args.device, progress=not args.quiet)


# ---------------------------------------------------------------------------------------------- verbs
def cmd_normalize(args) -> int:
    photos = expand_inputs(args.photos, args.recursive)
    if not photos:
        raise InputError(f"no photos found in {' '.join(args.photos)}.")
    outputs = Outputs(args.output, photos, args.force)
    model = _load_model(args)
    results: list = [None] * len(photos)
    bar = tqdm(total=len(photos), desc="photos", unit="photo", disable=True if args.quiet else None, file=sys.stderr)
    for start in range(0, len(photos), args.batch):
        idx = list(range(start, min(start + args.batch, len(photos))))
        planned = {}
        for k in idx:  # check every output before any work: a refused photo costs nothing
            try:
                planned[k] = outputs.paths(k, [".png"])
            except PHOTO_FAILURES as e:
                results[k] = e
        todo = [k for k in idx if k in planned]
        for k, res in zip(todo, model.normalize_many([photos[k] for k in todo], batch=max(1, len(todo)),
                                                              aligned=args.aligned)):
            try:
                results[k] = res if isinstance(res, Exception) else _write_faces(outputs, k, res, args.compare)
            except PHOTO_FAILURES as e:
                results[k] = e
        bar.update(len(idx))
    bar.close()

    def line(photo: str, written: list) -> str | dict:
        if args.json:
            return {"photo": photo, "faces": [
                {"output": str(t), "box": None if f.box is None else [round(float(v), 1) for v in f.box],
                 "identity_distance": round(f.identity_distance, 4), "same_person": bool(f.same_person),
                 "threshold": round(f.threshold, 4)} for f, t in written]}
        parts = [f"{t} (identity distance {f.identity_distance:.3f}, {'same' if f.same_person else 'not same'} "
                 f"person at threshold {f.threshold:.3f})" for f, t in written]
        return f"{photo}: {len(written)} face{'s' if len(written) > 1 else ''} -> " + "; ".join(parts)

    return 1 if _report(photos, results, line, args.json) else 0


def _write_faces(outputs: Outputs, k: int, found: list, compare: bool) -> list:
    """Write one photo's normalized faces (and side-by-side comparisons): all its files, checked first."""
    suffixes = [".png"] if len(found) == 1 else [f"_face{i}.png" for i in range(len(found))]
    if compare:
        suffixes += [s.replace(".png", "_compare.png") for s in suffixes]
    targets = outputs.paths(k, suffixes)
    written = []
    for i, f in enumerate(found):
        outputs.save_png(f.image, targets[i])
        if compare:
            picture = side_by_side(f.input_crop, f.image, gap=max(2, f.image.shape[-1] // 32),
                                   height=f.image.shape[-2])
            outputs.save_png(picture, targets[len(found) + i])
        written.append((f, targets[i]))
    return written


def cmd_train(args) -> int:
    config = profile_config(args.profile, **_train_overrides(args))
    summary = train(config, Path(args.out), progress=not args.quiet, resume=args.resume, force=args.force)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained profile={config.profile} steps={config.steps} -> {args.out}")
        for k, v in summary.items():
            if isinstance(v, (int, float, str)):
                print(f"  {k}: {v}")
        for split, ev in summary.get("eval", {}).items():
            print(f"  eval {split}: " + ", ".join(f"{m} {ev[m]:.4f}" for m in ("texture_l1", "image_l1",
                                                                                  "landmark_rmse_px")))
    return 0


def cmd_reproduce(args) -> int:
    """Train, evaluate and run the applications in one run folder (:mod:`normface_lib.reproduce`)."""
    from .data import portrait_paths
    from .reproduce import reproduce

    overrides = _train_overrides(args)
    report = reproduce(args.profile, runs=args.runs, lfw=args.lfw, online=not args.offline, progress=not args.quiet,
                       n_boot=args.n_boot, external_people=args.external_people,
                       photos_per_person=args.photos_per_person, **overrides)
    out = Path(report["run"])
    inputs = Outputs(out / "apps" / "inputs", [], force=True)  # the public-domain portraits, plus --photos
    photos = [str(inputs.save_png(load_image(src, name=name), inputs.folder / (name.split("/")[-1] + ".png")))
              for name, src in portrait_paths().items()]
    photos += expand_inputs(args.photos or [], recursive=False)
    common = dict(photos=photos, recursive=False, checkpoint=str(out / "train"), profile=args.profile,
                  device=args.device, force=True, quiet=args.quiet)
    failed = 0
    for verb, func, extra in (("normalize", cmd_normalize, dict(aligned=False, json=False, compare=True, batch=16)),
                              ("correct-colour", cmd_correct_colour, {}), ("avatar", cmd_avatar, {})):
        failed |= func(argparse.Namespace(output=str(out / "apps" / verb), **common, **extra))
    print(f"reproduced profile={args.profile} in {out} ({report['seconds'] / 60:.1f} min)")
    for where in ("dataset", "external"):
        clean = report[where]["clean"]["normface"]
        src = report[where]["source"]
        print(f"  {where} ({src if isinstance(src, str) else src.get('unseen_people')}): normface rank-1 "
              f"{clean['value']['rank1']:.3f} {clean['ci']['rank1']}, below threshold "
              f"{clean['value']['frac_below_threshold']:.3f}")
    print(f"  report: {out / 'report.json'}; applications: {out / 'apps'}")
    return 1 if failed else 0


def _train_overrides(args) -> dict[str, Any]:
    """The TrainConfig overrides of ``train`` / ``reproduce``: ``--set`` pairs, then the named flags."""
    overrides = _overrides(args.set)
    overrides.update({k: v for k, v in dict(steps=args.steps, seed=args.seed, device=args.device,
                                            dataset=args.dataset, data_root=args.data_root).items()
                      if v is not None})
    return overrides


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


def cmd_correct_colour(args) -> int:
    """Correct each photo's exposure (and, with a colour-trained model, white balance) from its normalized face."""
    photos = expand_inputs(args.photos, args.recursive)
    outputs = Outputs(args.output, photos, args.force)
    model = _load_model(args)
    kind = "auto" if model.renders_colour else "exposure"  # a grey model knows brightness, not colour

    def work(k: int, photo: str) -> str:
        (target,) = outputs.paths(k, [".png"])
        image = load_image(photo, name=photo)
        face = model.normalize(image, name=photo)
        res = correct_photo(image, face.input_landmarks, face.image, face.landmarks, kind=kind)
        outputs.save_png(res.corrected, target)
        gains = res.transform.matrix.diag().tolist()
        if res.transform.kind == "exposure":
            what = (f"exposure only, gain x{gains[0]:.3f} in linear light (the model renders grey faces, so it "
                    "says nothing about white balance)")
        else:
            what = "exposure and white balance, RGB gains " + " ".join(f"x{g:.3f}" for g in gains)
        return f"{photo}: -> {target} ({what}; {int(res.mask.sum())} face pixels)"

    return 1 if _report(photos, _each(photos, work, args.quiet), lambda p, r: r) else 0


def cmd_avatar(args) -> int:
    """Fit the face mesh to each photo's normalized face and write OBJ + MTL + PNG texture."""
    photos = expand_inputs(args.photos, args.recursive)
    outputs = Outputs(args.output, photos, args.force)
    model = _load_model(args)

    def work(k: int, photo: str) -> str:
        obj, _, _ = outputs.paths(k, [".obj", ".mtl", ".png"])
        face = model.normalize(photo, name=photo)
        mesh = fit_mesh(face.landmarks, face.image)
        paths = export_obj(obj, mesh.vertices, mesh.faces, mesh.uvs, face.image, force=args.force)
        return (f"{photo}: -> {paths['obj']} + {paths['mtl'].name} + {paths['png'].name} ({len(mesh.vertices)} "
                f"vertices, {len(mesh.faces)} triangles, landmark fit {mesh.landmark_error:.2f} px; mesh: MediaPipe "
                "canonical face model, Apache-2.0)")

    return 1 if _report(photos, _each(photos, work, args.quiet), lambda p, r: r) else 0


# ---------------------------------------------------------------------------------------------- parser
def _photo_args(a: argparse.ArgumentParser, what: str) -> None:
    a.add_argument("photos", nargs="+", metavar="PHOTO", help="photo files, folders of photos, or quoted globs")
    a.add_argument("-o", "--output", required=True, metavar="OUTDIR", help=f"folder for {what} (created)")
    a.add_argument("-r", "--recursive", action="store_true", help="look for photos in sub-folders too")
    a.add_argument("--checkpoint", default=None, metavar="DIR|HUB_ID",
                   help="a trained model: a folder (normface train / save_pretrained) or a Hugging Face hub id "
                        "(default: the --profile model, trained on first use)")
    a.add_argument("--profile", default="quick", choices=list(PROFILES), help="the model used without --checkpoint")
    a.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    a.add_argument("--force", action="store_true", help="overwrite existing output files (never the input photos)")
    a.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="normface", description="Synthesize normalized faces from identity features "
                                "(Cole et al., CVPR 2017).")
    p.add_argument("--version", action="version", version=f"normface {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    n = sub.add_parser("normalize", help="turn photos into frontal, neutral, evenly lit faces (one PNG per face)")
    _photo_args(n, "the PNGs")
    n.add_argument("--aligned", action="store_true", help="the photos are aligned square face crops already "
                   "(no detection)")
    n.add_argument("--json", action="store_true", help="one JSON object per photo on stdout: outputs, boxes, "
                   "identity distances and verdicts")
    n.add_argument("--compare", action="store_true", help="also write NAME_compare.png: aligned input | output")
    n.add_argument("--batch", type=int, default=16, help="photos per batch (default 16)")
    n.set_defaults(func=cmd_normalize)

    t = sub.add_parser("train", help="train a decoder with a named profile")
    t.add_argument("--out", required=True, metavar="DIR", help="run folder (losses.jsonl, checkpoint/, summary.json)")
    _data_args(t)
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--force", action="store_true", help="start over in a folder that holds a run")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("reproduce", help="train a profile on a data set, evaluate it (held-out people of the data "
                       "set; LFW or ORL) and run the applications, all in one run folder keyed by the settings")
    _data_args(r)
    r.add_argument("--runs", default=None, metavar="DIR", help="where run folders go (default: the normface cache's "
                   "runs/); the run is DIR/reproduce-<profile>-<key>, continued when it exists")
    r.add_argument("--lfw", default=None, metavar="DIR", help="an LFW folder (one sub-folder per person) for the "
                   "evaluation beyond the data set (default: scikit-learn's LFW when online, else the ORL people)")
    r.add_argument("--offline", action="store_true", help="never try to fetch LFW")
    r.add_argument("--external-people", type=int, default=40, metavar="N",
                   help="people sampled for the evaluation beyond the data set (default 40)")
    r.add_argument("--photos-per-person", type=int, default=4, metavar="K",
                   help="photos sampled per person there (default 4)")
    r.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of the intervals (default 1000)")
    r.add_argument("--photos", nargs="*", metavar="PHOTO", help="more photos for the applications (the two "
                   "public-domain portraits are always used)")
    r.set_defaults(func=cmd_reproduce)

    for name, func, helptext, what in (
            ("correct-colour", cmd_correct_colour, "correct photos' exposure (and white balance, with a colour-trained "
             "model) from their normalized faces (largest face); one PNG per photo", "the corrected PNGs"),
            ("avatar", cmd_avatar, "fit a textured 3D face mesh to each photo's normalized face (largest face); "
             "OBJ + MTL + PNG per photo", "the OBJ/MTL/PNG files")):
        a = sub.add_parser(name, help=helptext)
        _photo_args(a, what)
        a.set_defaults(func=func)
    return p


def _data_args(t: argparse.ArgumentParser) -> None:
    """The profile, data and override flags ``train`` and ``reproduce`` share."""
    t.add_argument("--profile", default="quick", choices=list(PROFILES))
    t.add_argument("--dataset", default=None, choices=sorted(DATASETS),
                   help="override the profile's data set (quick: orl, shipped; paper: celeba, needs --data-root; "
                   "folder: your own photos, one sub-folder per person, needs --data-root)")
    t.add_argument("--data-root", default=None, metavar="DIR",
                   help="the folder that holds the data set (CelebA: the folder containing celeba/; folder: the "
                   "folder of person sub-folders); celeba and folder are preprocessed once into an on-disk store")
    t.add_argument("--steps", type=int, default=None, help="override the profile's number of steps")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any TrainConfig field; VALUE is JSON (e.g. --set width=0.5 --set warp=false "
                   "--set 'data_options={\"max_people\": 1000}')")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "batch", 1) < 1:
        print("error: --batch must be at least 1", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except (NormFaceError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; files already written are complete, the others were not started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
