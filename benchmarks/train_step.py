"""Time training steps of a profile (default: the paper's, 224 px, full width) on the device that is present:
seconds a step, samples a second, peak memory, and the fraction of each step spent waiting for its data.

Run ``python benchmarks/train_step.py`` (``--device cuda``, ``--amp off``, ``--steps N`` ...). What is timed is
:meth:`normface_lib.training.Trainer.step`, the step :func:`~normface_lib.training.train` runs: building the batch
(picking rows; with the paper profile's online morphs, rendering them on the CPU and encoding them), the decoder
forward, the landmark, texture and FaceNet losses, backward and the optimizer, with the profile's batch size and
mixed precision. "Waiting for data" is the time inside :meth:`Trainer.batch`. On CUDA the device is synchronised
before each clock reading.

Faces: **generated**, not photos (timing does not depend on what a face looks like, and the benchmark must also run
on a machine without the ORL faces or a landmark detector): ``--people`` P × ``--photos`` K smooth random colour
images at the profile's crop size, whose landmarks are the library's mean shape moved by a random similarity and
1.5 px of noise. Encoder: the profile's FaceNet with its real weights where they are on this machine, else the same
network (facenet-pytorch's ``InceptionResnetV1``) randomly initialised: same size, same cost; printed either way.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps; on a CPU the process's peak RSS.

The last line is exactly::

    step_seconds=<median> samples_per_second=<x> peak_memory_gib=<g> data_wait_fraction=<f> device=<name>
"""
from __future__ import annotations

import argparse
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
from normface_lib.faces.landmarks import load_mean_shape  # noqa: E402
from normface_lib.training import Trainer, profile_config  # noqa: E402


def generated_table(people: int, photos: int, size: int, seed: int = 0) -> FaceTable:
    """A FaceTable of ``people × photos`` generated faces at ``size`` px (see the module docstring); each person's
    first photo is their target, its image also serves as the registered texture."""
    images, landmarks = generated_faces(people * photos, size, seed)
    person = torch.arange(people).repeat_interleave(photos)
    target_row = torch.arange(people) * photos
    return FaceTable(images, landmarks, person, [f"generated/p{i // photos}/{i % photos}" for i in range(len(person))],
                     target_row, landmarks[target_row], images[target_row].clone(), load_mean_shape(size),
                     [f"generated/p{p}" for p in range(people)], source=f"generated faces (seed {seed})")


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    ap.add_argument("--amp", default=None, help="override the profile's mixed precision: auto, bf16, fp16, off")
    ap.add_argument("--size", type=int, default=None, help="override the profile's crop size")
    ap.add_argument("--batch-size", type=int, default=None, help="override the profile's batch size")
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
    overrides = {k: v for k, v in dict(amp=args.amp, size=args.size, batch_size=args.batch_size).items()
                 if v is not None}
    config = profile_config(args.profile, device=str(device), num_threads=args.threads, eval_splits=(),
                            steps=args.warmup + args.steps, checkpoint_every=10**9, **overrides)
    encoder, how = encoder_for(config, device)
    people = max(args.people, -(-config.batch_size // args.photos))  # enough rows for one batch without morphs
    table = generated_table(people, args.photos, config.size)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({args.threads} threads)"
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, out, tables={"train": table}, encoder=encoder)
        print(f"profile={args.profile} size={config.size} width={config.width} batch={config.batch_size} "
              f"amp={trainer.amp_dtype} morphs={config.morphs}({trainer.n_morph}/step) identity_every="
              f"{config.identity_every} | decoder {sum(p.numel() for p in trainer.decoder.parameters()) / 1e6:.2f} M "
              f"parameters | encoder {encoder.name}: {how} | data: {people}x{args.photos} generated faces | "
              f"device: {name} | torch {torch.__version__}")
        waits: list[float] = []
        batch = trainer.batch

        def timed_batch(step):
            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            out_ = batch(step)
            if cuda:
                torch.cuda.synchronize(device)
            waits.append(time.perf_counter() - t0)
            return out_

        trainer.batch = timed_batch  # time the batch inside the real step
        trainer.decoder.train()
        times: list[float] = []
        with skip_value_checks():
            for step in range(args.warmup + args.steps):
                if step == args.warmup:
                    waits.clear()
                    if cuda:
                        torch.cuda.reset_peak_memory_stats(device)
                if cuda:
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                rec = trainer.step(step)
                if cuda:
                    torch.cuda.synchronize(device)
                if step >= args.warmup:
                    times.append(time.perf_counter() - t0)
                    print(f"step {step}: {times[-1]:.4f} s (data {waits[-1]:.4f} s) total loss {rec['total']:.4f}")
    step_s = statistics.median(times)
    wait = sum(waits) / sum(times)
    peak = (torch.cuda.max_memory_allocated(device) if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2 ** 30
    print(f"median step {step_s:.4f} s over {len(times)} steps; {config.batch_size / step_s:.1f} samples/s; "
          f"peak {'GPU memory allocated' if cuda else 'RSS'} {peak:.2f} GiB; waiting for data {100 * wait:.1f} %")
    print(f"step_seconds={step_s:.4f} samples_per_second={config.batch_size / step_s:.2f} peak_memory_gib={peak:.3f} "
          f"data_wait_fraction={wait:.3f} device={name.replace(' ', '_')}")
    if args.json:
        from normface_lib.core.provenance import provenance
        resources.write_json({"step_seconds": step_s, "samples_per_second": config.batch_size / step_s,
                              "peak_memory_gib": peak, "peak_memory_kind": "cuda_max_allocated" if cuda else "rss",
                              "data_wait_fraction": wait, "step_seconds_all": times, "device": name,
                              "profile": args.profile, "batch_size": config.batch_size, "size": config.size,
                              "encoder": f"{encoder.name}: {how}", "amp": str(trainer.amp_dtype),
                              "decoder_parameters": sum(p.numel() for p in trainer.decoder.parameters()),
                              "faces": f"{people}x{args.photos} generated",
                              "provenance": provenance(benchmark="train_step", **vars(args))}, Path(args.json))


if __name__ == "__main__":
    main()
