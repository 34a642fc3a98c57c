"""The ``normface`` command.

    normface normalize PHOTO|FOLDER|GLOB... -o OUTDIR [-r] [--aligned] [--json] [--compare] [--checkpoint DIR|HUB_ID]
    normface train --profile quick --out DIR [--dataset D --data-root DIR] [--steps N] [--seed S] [--set KEY=VALUE ...]
                   [--resume|--force]
    normface reproduce --profile paper --dataset folder|celeba --data-root DIR [--steps N] [--set KEY=VALUE ...]
                   [--runs DIR] [--lfw DIR] [--offline] [--photos PHOTO ...]
    normface correct-colour PHOTO... -o OUTDIR [--checkpoint DIR]
    normface avatar PHOTO... -o OUTDIR [--checkpoint DIR]
    normface --version

Every photo gets one line on stdout (with ``--json``, one JSON object), or an error line on stderr (with ``--json``
also an ``{"photo", "error"}`` object on stdout), printed as soon as the photo (its batch) is done; the exit code is 1
when any photo failed, 2 for a usage error. An error of the whole run is one ``error: ...`` line naming what it
concerns (with ``--json`` also ``{"error": ...}``). Without ``--checkpoint`` the quick profile's model is used,
trained on first use (a few minutes on a CPU, with a progress bar). Nothing is overwritten without ``--force``,
nothing is ever written onto an input photo, and every file of a run gets its own name (``name.png``,
``name-2.png``...; :class:`~normface_lib.cli_outputs.Outputs`). The output folder is checked writable before the
model loads.
``torchrun --nproc_per_node N -m normface_lib.cli train ...`` trains with DDP (output from the first process only).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from . import __version__
from .apps.avatar import export_obj, fit_mesh
from .apps.colour import correct_photo
from .cli_outputs import (IMAGE_SUFFIXES, PHOTO_FAILURES, Outputs, Report, emit, expand_inputs,  # noqa: F401
                          release_memory, shown, steady_memory)
from .core.errors import InputError, NormFaceError
from .data import DATASETS, TRAINABLE
from .faces import load_image, side_by_side
from .nets.checkpoint import find_checkpoint, steps_left
from .pipeline import OFFLINE_DATASETS, NormFace, default_checkpoint
from .training import CHECKPOINT_NAME, PROFILES, profile_config, train


# ---------------------------------------------------------------------------------------------- shared steps
def _photos(args, report: Report) -> list[str]:
    """The photos of ``args.photos``; what cannot be a photo is reported at once (a failure each); none at all is
    an error."""
    problems: list[tuple[str, str]] = []
    photos = expand_inputs(args.photos, args.recursive, problems)
    for path, message in problems:
        report.failed(path, message)
    if not photos:
        raise InputError(f"no photos found in {' '.join(args.photos)}; give photo files, folders of photos or quoted "
                         "globs.")
    return photos


def _load_model(args) -> NormFace:
    """The model of ``--checkpoint`` (a folder or a hub id), else the profile's, trained on first use when the
    profile's data ships with normface (quick); the others must be trained first (``normface train``)."""
    with contextlib.redirect_stdout(sys.stderr):  # status lines never mix with the results on stdout
        if args.checkpoint:
            return NormFace.from_pretrained(args.checkpoint, device=args.device)
        config = profile_config(args.profile)
        path = default_checkpoint(args.profile)
        found = find_checkpoint(path / CHECKPOINT_NAME) or find_checkpoint(path)
        if config.dataset not in OFFLINE_DATASETS and (found is None or steps_left(found)):
            raise InputError(f"no trained {args.profile!r} model in {path}; normface trains only the quick model "
                             f"on first use (the {args.profile} one needs the {config.dataset} data set and hours). "
                             f"Pass --checkpoint DIR (a model folder or a hub id), or train it first: normface train "
                             f"--profile {args.profile} --data-root DIR --out {path}")
        return NormFace.from_profile(args.profile, device=args.device, progress=not args.quiet)


def _run(args, photos: list[str], outputs: Outputs, report: Report,
         work: Callable[[NormFace, list[int]], None], batch: int = 1) -> int:
    """Load the model, then ``work(model, ks)`` for photos ``ks`` in batches, with a progress bar on a terminal;
    each batch's lines are printed when it is done (``work`` reports them). ``outputs`` is closed at the end."""
    steady_memory()
    try:
        model = _load_model(args)
        bar = tqdm(total=len(photos), desc="photos", unit="photo", disable=True if args.quiet else None,
                   file=sys.stderr)
        for start in range(0, len(photos), batch):
            ks = list(range(start, min(start + batch, len(photos))))
            work(model, ks)
            release_memory()  # nothing of the batch is kept: memory stays flat in the number of photos
            bar.update(len(ks))
        bar.close()
    finally:
        outputs.close()
    return report.exit_code


def _each(photos: list[str], report: Report, one: Callable[[NormFace, int, str], str]):
    """``work`` for :func:`_run` that handles one photo at a time: ``one(model, k, photo)`` returns its line."""
    def work(model: NormFace, ks: list[int]) -> None:
        for k in ks:
            try:
                line = one(model, k, photos[k])
            except PHOTO_FAILURES as e:
                report.failed(photos[k], e)
            else:
                report.done(line)
    return work


# ---------------------------------------------------------------------------------------------- verbs
def cmd_normalize(args) -> int:
    report = Report(args.json)
    photos = _photos(args, report)
    outputs = Outputs(args.output, photos, args.force)

    def line(photo: str, written: list) -> str | dict:
        if args.json:
            return {"photo": photo, "faces": [
                {"output": str(t), "box": None if f.box is None else [round(float(v), 1) for v in f.box],
                 "identity_distance": round(f.identity_distance, 4), "same_person": bool(f.same_person),
                 "threshold": round(f.threshold, 4)} for f, t in written]}
        parts = [f"{t} (identity distance {f.identity_distance:.3f}, {'same' if f.same_person else 'not same'} "
                 f"person at threshold {f.threshold:.3f})" for f, t in written]
        return f"{photo}: {len(written)} face{'s' if len(written) > 1 else ''} -> " + "; ".join(parts)

    def work(model: NormFace, ks: list[int]) -> None:
        outcome: dict[int, Any] = {}
        first = [".png", "_compare.png"] if args.compare else [".png"]
        for k in ks:  # check every output before any work: a refused photo costs nothing
            try:
                outputs.paths(k, first)
            except PHOTO_FAILURES as e:
                outcome[k] = e
        todo = [k for k in ks if k not in outcome]
        for k, res in zip(todo, model.iter_normalize([photos[k] for k in todo], batch=max(1, len(todo)),
                                                     aligned=args.aligned)):
            try:
                outcome[k] = res if isinstance(res, Exception) else line(photos[k], _write_faces(outputs, k, res,
                                                                                                 args.compare))
            except PHOTO_FAILURES as e:
                outcome[k] = e
        for k in ks:  # in input order, as soon as the batch is done; nothing of it is kept
            report.failed(photos[k], outcome[k]) if isinstance(outcome[k], Exception) else report.done(outcome[k])

    return _run(args, photos, outputs, report, work, args.batch)


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


def cmd_pack(args) -> int:
    """A profile's data set as a portable training pack (:mod:`normface_lib.pack`)."""
    from .data import read_manifest
    from .pack import pack_profile

    overrides = {k: v for k, v in dict(dataset=args.dataset, data_root=args.data_root, size=args.size).items()
                 if v is not None}
    out = pack_profile(args.out, args.profile, args.held_out, args.encoder_dtype, args.quality, args.force,
                       **overrides)
    m = read_manifest(out)
    enc = m.get("encoder", {})
    diff = enc.get("difference_from_fp32", {})
    print(f"wrote {out}: {m['bytes'] / 2 ** 20:.1f} MiB, {m['size']}-px crops, "
          + ", ".join(f"{k} {v['rows']} rows" for k, v in {**m["splits"], **m["held_out"]}.items())
          + (f"; encoder {enc['file']} ({enc['dtype']}): embeddings within {diff['embedding_max']:.4f} (mean "
             f"{diff['embedding_mean']:.4f}) of the original's on {diff['n_images']} ORL photos" if diff else ""))
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
    report = Report(getattr(args, "json", False))
    photos = _photos(args, report)
    outputs = Outputs(args.output, photos, args.force)

    def one(model: NormFace, k: int, photo: str) -> str:
        (target,) = outputs.paths(k, [".png"])
        image = load_image(photo, name=photo)
        face = model.normalize(image, name=photo)
        kind = "auto" if model.renders_colour else "exposure"  # a grey model knows brightness, not colour
        res = correct_photo(image, face.input_landmarks, face.image, face.landmarks, kind=kind)
        outputs.save_png(res.corrected, target)
        gains = res.transform.matrix.diag().tolist()
        if res.transform.kind == "exposure":
            what = (f"exposure only, gain x{gains[0]:.3f} in linear light (the model renders grey faces, so it "
                    "says nothing about white balance)")
        else:
            what = "exposure and white balance, RGB gains " + " ".join(f"x{g:.3f}" for g in gains)
        return f"{photo}: -> {target} ({what}; {int(res.mask.sum())} face pixels)"

    return _run(args, photos, outputs, report, _each(photos, report, one))


def cmd_avatar(args) -> int:
    """Fit the face mesh to each photo's normalized face and write OBJ + MTL + PNG texture."""
    report = Report(getattr(args, "json", False))
    photos = _photos(args, report)
    outputs = Outputs(args.output, photos, args.force, plain_names=True)  # OBJ and MTL name each other

    def one(model: NormFace, k: int, photo: str) -> str:
        obj, _, _ = outputs.paths(k, [".obj", ".mtl", ".png"])
        face = model.normalize(photo, name=photo)
        mesh = fit_mesh(face.landmarks, face.image)
        paths = export_obj(obj, mesh.vertices, mesh.faces, mesh.uvs, face.image, force=args.force)
        return (f"{photo}: -> {paths['obj']} + {paths['mtl'].name} + {paths['png'].name} ({len(mesh.vertices)} "
                f"vertices, {len(mesh.faces)} triangles, landmark fit {mesh.landmark_error:.2f} px; mesh: MediaPipe "
                "canonical face model, Apache-2.0)")

    return _run(args, photos, outputs, report, _each(photos, report, one))


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

    k = sub.add_parser("pack", help="write a profile's data set as a portable training pack (crops, landmarks, split, "
                       "encoder weights and features) that `train --dataset pack --data-root DIR` reads with torch, "
                       "numpy and Pillow only")
    k.add_argument("--out", required=True, metavar="DIR", help="a new folder for the pack")
    k.add_argument("--profile", default="paper", choices=list(PROFILES))
    k.add_argument("--dataset", default=None, choices=[n for n in TRAINABLE if n != "pack"],
                   help="the data set to pack (default: the profile's)")
    k.add_argument("--data-root", default=None, metavar="DIR", help="its folder, for the data sets that need one")
    k.add_argument("--size", type=int, default=None, help="crop side (default: the profile's)")
    k.add_argument("--held-out", nargs="*", default=["expressions"], metavar="SET",
                   help="held-out sets to carry (default: expressions; orl is 400 more photos)")
    k.add_argument("--encoder-dtype", default="int8", choices=["int8", "fp16", "fp32"],
                   help="how the frozen encoder's weights travel (default int8, one scale per output channel)")
    k.add_argument("--quality", type=int, default=92, help="JPEG quality of the crops (default 92)")
    k.add_argument("--force", action="store_true", help="replace an existing pack at --out")
    k.set_defaults(func=cmd_pack)

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
    t.add_argument("--dataset", default=None, choices=list(TRAINABLE),
                   help="override the profile's data set (" + "; ".join(f"{n}: {DATASETS[n].summary}"
                                                                        for n in TRAINABLE) + ")")
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
        emit("error: --batch must be at least 1", sys.stderr)
        return 2

    def fail(message: str, code: int) -> int:
        with contextlib.suppress(OSError):  # a closed stdout (| head) cannot take the line
            if getattr(args, "json", False):  # stdout stays a stream of JSON objects, whatever happens
                emit(json.dumps({"error": shown(message)}))
        emit(f"error: {message}" if code != 130 else message, sys.stderr)
        return code

    try:
        return int(args.func(args))
    except (NormFaceError, OSError) as e:
        return fail(str(e), 1)
    except KeyboardInterrupt:
        return fail("interrupted; the lines printed name every file written (each complete); the other photos were "
                    "not written", 130)


if __name__ == "__main__":
    sys.exit(main())
