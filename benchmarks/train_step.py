"""Time training steps of a profile (default: the paper's, 224 px, full width) on the device that is present:
seconds a step, samples a second, peak memory, and the fraction of each step spent waiting for its data.

Run ``python benchmarks/train_step.py`` (``--device cuda``, ``--amp off``, ``--steps N``, ``--compile both`` ...).
What is timed is the loop :func:`~normface_lib.training.train` runs: the next item of :meth:`Trainer.loader
<normface_lib.training.Trainer.loader>` and :meth:`Trainer.step <normface_lib.training.Trainer.step>`, i.e. building
the batch (``--data streamed``, the default and what the paper profile trains on: rows read from an on-disk store by
the DataLoader's ``--data-workers`` processes and encoded on the device; ``--data memory``: rows of an in-memory
table whose features are cached; with the paper profile's online morphs, rendering and encoding them on the device),
the decoder forward, the landmark, texture and FaceNet losses, backward and the optimizer, with the profile's batch
size and mixed precision. On CUDA the device is synchronised before each clock reading. Two shares of a step:

* ``loader_wait_fraction``: time blocked on the DataLoader (rows not read yet: 0 when the workers keep ahead);
* ``data_wait_fraction``: everything before the decoder's forward pass (the loader wait plus
  :meth:`Trainer.batch`: encoding the inputs, rendering and encoding the morphs, copying to the device).

``--compile both`` times the same steps without ``torch.compile`` (``TrainConfig.compile``), with it, and without it
again, in one process, each run on a fresh trainer (eager on both sides, so that a process warming up or slowing
down favours neither), and prints the ratio of the median step times (compiled over all eager steps); the extra
time of the compiled run's first step, which compiles, is reported as ``compile_seconds``. Peak memory on a CPU is
the process's peak so far, so with ``both`` it is the largest of the variants.

Faces: **generated**, not photos (timing does not depend on what a face looks like, and the benchmark must also run
on a machine without the ORL faces or a landmark detector): ``--people`` P × ``--photos`` K smooth random colour
images at the profile's crop size, whose landmarks are the library's mean shape moved by a random similarity and
1.5 px of noise. Encoder: the profile's FaceNet with its real weights where they are on this machine, else the same
network (facenet-pytorch's ``InceptionResnetV1``) randomly initialised: same size, same cost; printed either way.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps; on a CPU the process's peak RSS.

For each variant the script prints a line::

    step_seconds=<median> samples_per_second=<x> peak_memory_gib=<g> data_wait_fraction=<f> loader_wait_fraction=<f> compile=<off|on> device=<name>

and with ``--compile both`` the last line is ``compiled_over_eager=<ratio> compile_seconds=<s> device=<name>``. The
JSON file's main figures are those of the variant the profile trains with (``TrainConfig.compile``).
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _faces import generated_faces  # noqa: E402

from normface_lib.core import resources  # noqa: E402
from normface_lib.core.checks import skip_value_checks  # noqa: E402
from normface_lib.core.runtime import default_device, seed_everything  # noqa: E402
from normface_lib.data import FaceTable  # noqa: E402
from normface_lib.data.store import DiskImages, StreamTable  # noqa: E402
from normface_lib.faces.landmarks import load_mean_shape  # noqa: E402
from normface_lib.training import Trainer, profile_config  # noqa: E402


def generated_table(people: int, photos: int, size: int, seed: int = 0) -> FaceTable:
    """A FaceTable of ``people × photos`` generated faces at ``size`` px (see the module docstring), laid out as the
    paper's training is: every photo is its own target; its image also serves as the registered texture."""
    images, landmarks = generated_faces(people * photos, size, seed)
    person = torch.arange(people).repeat_interleave(photos)
    own = torch.arange(len(person))
    return FaceTable(images, landmarks, person, [f"generated/p{i // photos}/{i % photos}" for i in range(len(person))],
                     own, landmarks.clone(), images.clone(), load_mean_shape(size),
                     [f"generated/p{p}" for p in range(people)], source=f"generated faces (seed {seed})",
                     target_of=own.clone())


def streamed_table(table: FaceTable, folder: Path) -> StreamTable:
    """``table`` written into ``folder`` as a store (8-bit crops and target textures in raw files, as
    :class:`~normface_lib.data.store.FaceStore` writes them) and read back as a :class:`StreamTable`."""
    def write(name: str, images: torch.Tensor) -> DiskImages:
        path = folder / name
        (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy().tofile(path)
        return DiskImages([str(path)], len(images), images.shape[-1], torch.arange(len(images)))

    return StreamTable(write("crops.u8", table.images), table.landmarks, table.person, table.photo_ids,
                       table.target_row, table.target_landmarks, write("textures.u8", table.target_textures),
                       table.mean_shape, table.people, source=table.source + " (streamed from disk)",
                       target_of=table.target_of)


def encoder_for(config, device):
    """The profile's encoder with real weights if this machine has them, else the same network randomly
    initialised (named ``<name>-random-init`` so that no cache mixes the two); and a line saying which."""
    from normface_lib.core.errors import MissingWeightsError
    from normface_lib.encoders import load_encoder
    try:
        return load_encoder(config.encoder, layer=config.encoder_layer, device=device), "real weights"
    except (MissingWeightsError, ImportError, OSError) as e:
        if not config.encoder.startswith("facenet"):
            raise
        from facenet_pytorch import InceptionResnetV1

        from normface_lib.encoders.facenet import FaceNetEncoder
        torch.manual_seed(0)
        net = InceptionResnetV1(pretrained=None, classify=False).eval()
        why = str(e).splitlines()[0][:120]
        return (FaceNetEncoder(net, f"{config.encoder}-random-init", config.encoder_layer).to(device),
                f"RANDOMLY INITIALISED (real weights not available here: {why})")


def time_steps(config, encoder, table, args, device) -> dict:
    """Run ``args.warmup + args.steps`` steps of a fresh :class:`Trainer` over ``table``, as :func:`train` does
    (the loader's next item, then the step); return the timings of the last ``args.steps``."""
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, out, tables={"train": table}, encoder=encoder)
        batch, batch_s = trainer.batch, []

        def timed_batch(step, rows=None):
            sync()
            t0 = time.perf_counter()
            out_ = batch(step, rows)
            sync()
            batch_s.append(time.perf_counter() - t0)
            return out_

        trainer.batch = timed_batch  # time the batch inside the real step
        trainer.decoder.train()
        total = args.warmup + args.steps
        times, waits, builds, first = [], [], [], None
        loader = trainer.loader(0, total)
        with skip_value_checks():
            for step in range(total):
                if step == args.warmup and cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                sync()
                t0 = time.perf_counter()
                rows = next(loader)
                t1 = time.perf_counter()
                rec = trainer.step(step, rows)
                sync()
                dt = time.perf_counter() - t0
                if step == 0:
                    first = dt
                if step >= args.warmup:
                    times.append(dt)
                    waits.append(t1 - t0)
                    builds.append(batch_s[-1])
                    print(f"step {step}: {dt:.4f} s (loader {waits[-1]:.4f} s, batch {builds[-1]:.4f} s) total loss "
                          f"{rec['total']:.4f}", flush=True)
        del loader
        amp, params = trainer.amp_dtype, sum(p.numel() for p in trainer.decoder.parameters())
    peak = (torch.cuda.max_memory_allocated(device) if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2 ** 30
    return {"times": times, "waits": waits, "builds": builds, "first": first, "peak": peak, "amp": str(amp),
            "params": params}


def summarise(runs: list[dict], batch_size: int) -> dict:
    """The figures of one variant over its runs (:func:`time_steps` results): the median step over all their timed
    steps, the shares of all their time, the largest peak, the first run's first step."""
    times = [t for r in runs for t in r["times"]]
    total = sum(times)
    step_s = statistics.median(times)
    return {"step_seconds": step_s, "samples_per_second": batch_size / step_s,
            "peak_memory_gib": max(r["peak"] for r in runs),
            "data_wait_fraction": sum(sum(r["waits"]) + sum(r["builds"]) for r in runs) / total,
            "loader_wait_fraction": sum(sum(r["waits"]) for r in runs) / total,
            "first_step_seconds": runs[0]["first"], "step_seconds_all": times, "runs": len(runs),
            "amp": runs[0]["amp"], "decoder_parameters": runs[0]["params"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    ap.add_argument("--amp", default=None, help="override the profile's mixed precision: auto, bf16, fp16, off")
    ap.add_argument("--size", type=int, default=None, help="override the profile's crop size")
    ap.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
    ap.add_argument("--data", choices=("streamed", "memory"), default="streamed",
                    help="rows read from an on-disk store by a DataLoader (default) or from memory")
    ap.add_argument("--data-workers", type=int, default=None, help="DataLoader processes (default: the profile's)")
    ap.add_argument("--compile", choices=("profile", "off", "on", "both"), default="profile",
                    help="torch.compile the decoder (default: as the profile says); both: time without, with and "
                         "without again, and print the ratio")
    ap.add_argument("--people", type=int, default=16, help="generated people (raised to fill one batch)")
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (CPU-side work on any device)")
    ap.add_argument("--json", default=None, help="also write the figures, with provenance, to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_everything(0)
    device = default_device(args.device)
    overrides = {k: v for k, v in dict(amp=args.amp, size=args.size, batch_size=args.batch_size,
                                       data_workers=args.data_workers).items() if v is not None}
    config = profile_config(args.profile, device=str(device), num_threads=args.threads, eval_splits=(),
                            steps=args.warmup + args.steps, checkpoint_every=10**9, **overrides)
    encoder, how = encoder_for(config, device)
    people = max(args.people, -(-config.batch_size // args.photos))  # enough rows for one batch without morphs
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({args.threads} threads)"
    # both: eager, compiled, eager again, so that a process warming up (or slowing down) favours neither variant
    variants = {"profile": [config.compile], "off": [False], "on": [True], "both": [False, True, False]}[args.compile]
    runs: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as store:
        table = generated_table(people, args.photos, config.size)
        if args.data == "streamed":
            table = streamed_table(table, Path(store))
        print(f"profile={args.profile} size={config.size} width={config.width} batch={config.batch_size} "
              f"amp={config.amp} morphs={config.morphs} identity_every={config.identity_every} | encoder "
              f"{encoder.name}: {how} | data: {people}x{args.photos} generated faces, {args.data}"
              f"{f' ({config.data_workers} DataLoader workers)' if args.data == 'streamed' else ''} | device: {name} | "
              f"torch {torch.__version__}", flush=True)
        for compiled in variants:
            tag = "on" if compiled else "off"
            print(f"== compile={tag}", flush=True)
            runs.setdefault(tag, []).append(time_steps(dataclasses.replace(config, compile=compiled), encoder,
                                                       table, args, device))
    results = {tag: summarise(r, config.batch_size) for tag, r in runs.items()}
    for tag, r in results.items():
        print(f"compile={tag}: median step {r['step_seconds']:.4f} s over {len(r['step_seconds_all'])} steps "
              f"({r['runs']} run(s)); {r['samples_per_second']:.1f} samples/s; peak "
              f"{'GPU memory allocated' if device.type == 'cuda' else 'RSS'} {r['peak_memory_gib']:.2f} GiB; before "
              f"the forward pass {100 * r['data_wait_fraction']:.1f} % (blocked on the loader "
              f"{100 * r['loader_wait_fraction']:.1f} %); first step {r['first_step_seconds']:.1f} s")
        print(f"step_seconds={r['step_seconds']:.4f} samples_per_second={r['samples_per_second']:.2f} "
              f"peak_memory_gib={r['peak_memory_gib']:.3f} data_wait_fraction={r['data_wait_fraction']:.3f} "
              f"loader_wait_fraction={r['loader_wait_fraction']:.3f} compile={tag} device={name.replace(' ', '_')}",
              flush=True)
    # the main figures: the variant the profile trains with, when it was timed
    main_r = results.get("on" if config.compile else "off") or next(iter(results.values()))
    doc = {**{k: v for k, v in main_r.items()}, "device": name, "profile": args.profile,
           "batch_size": config.batch_size, "size": config.size, "data": args.data,
           "data_workers": config.data_workers if args.data == "streamed" else None,
           "encoder": f"{encoder.name}: {how}", "faces": f"{people}x{args.photos} generated",
           "compile": {k: {"step_seconds": v["step_seconds"], "first_step_seconds": v["first_step_seconds"],
                           "step_seconds_all": v["step_seconds_all"]} for k, v in results.items()}}
    if len(results) == 2:
        ratio = results["on"]["step_seconds"] / results["off"]["step_seconds"]
        compile_s = results["on"]["first_step_seconds"] - results["off"]["first_step_seconds"]
        doc.update(compiled_over_eager=ratio, compile_seconds=compile_s)
        print(f"compiled_over_eager={ratio:.3f} compile_seconds={compile_s:.1f} device={name.replace(' ', '_')}")
    if args.json:
        from normface_lib.core.provenance import provenance
        resources.write_json({**doc, "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "rss",
                              "provenance": provenance(benchmark="train_step", **vars(args))}, Path(args.json))


if __name__ == "__main__":
    main()
