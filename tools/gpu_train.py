"""Train the paper profile from a portable pack for as long as a budget allows, evaluate it on the held-out sets that
travel in the pack, and time its steps: the one prepared call for a lent GPU machine (``tools/gpu_train.sh`` runs it;
it runs on a CPU too, with a tiny budget, which is how the tests check it).

    python tools/gpu_train.py --pack .pack --out $OUT --minutes 6 [--device cuda] [--timing full|short|none]

1. **Probe**: a few steps of the paper profile on the pack measure the step time; the run gets as many steps as fit
   in ``--minutes`` (``--max-steps`` caps it), so its learning-rate schedule ends where the run ends.
2. **Train** (``normface_lib.training.train``) from the pack, with the encoder it carries.
3. **Evaluate** on the pack's held-out sets with the one judge the machine has, the trained-against FaceNet (its
   threshold calibrated on the training people): rank-1 among the held-out people, the fraction within the threshold,
   the mean distance; the expression ratio and contrast gain on the expression set.
4. **Pictures**: held-out inputs and outputs, one person's expressions, the loss curve.
5. **Timing** (``--timing``): steps of batch 32 and 128, bf16 and float32, eager and compiled, with samples a second,
   the FLOPs of a step (``torch.utils.flop_counter``) and the fraction of the chip's peak, and a ``torch.profiler``
   table of a batch-32 step.

Writes into ``--out``: ``gpu_train.json`` (``profile``, ``device``, ``steps``, ``minutes``, ``precision``, held-out
metrics, provenance), ``gpu_steps.json`` (``step_ms_b32_<bf16|fp32>_<eager|compiled>``...), ``held_out.png``,
``losses.png``, ``profile_b32.txt``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from normface_lib import data  # noqa: E402
from normface_lib import evaluation as ev  # noqa: E402
from normface_lib.core import resources  # noqa: E402
from normface_lib.core.checks import skip_value_checks  # noqa: E402
from normface_lib.core.provenance import provenance  # noqa: E402
from normface_lib.figures import image_grid, plot_curves  # noqa: E402
from normface_lib.pipeline import NormFace  # noqa: E402
from normface_lib.training import Trainer, profile_config, train  # noqa: E402

#: Dense peak throughput (TFLOP/s) by chip name fragment and precision, from the vendors' data sheets (SXM parts).
PEAK_TFLOPS = {"H100": {"bf16": 989.0, "fp32": 67.0}, "H200": {"bf16": 989.0, "fp32": 67.0},
               "A100": {"bf16": 312.0, "fp32": 19.5}}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(config, out: Path, warmup: int, steps: int) -> dict:
    """Median seconds of ``steps`` training steps after ``warmup`` ones, a fresh trainer on the pack."""
    trainer = Trainer(config, out, force=True)
    trainer.decoder.train()
    times = []
    with skip_value_checks():
        for s in range(warmup + steps):
            sync(trainer.device)
            t0 = time.perf_counter()
            trainer.step(s)
            sync(trainer.device)
            if s >= warmup:
                times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "all": times, "trainer": trainer}


def step_flops(trainer) -> float:
    """FLOPs of one training step (forward, losses and backward) as torch's flop counter sees them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.step(10_000)
    return float(counter.get_total_flops())


def evaluate(model, pack: Path, size: int) -> tuple[dict, dict]:
    """Held-out figures with the trained-against judge (the only encoder such a machine has) and the pictures' data."""
    tables = data.load_tables("pack", size, data_root=str(pack))
    enc = model.encoder
    judge = ev.make_judge(enc, tables["train"])
    judges = {enc.name: judge}
    up = tables["unseen_people"]
    r = up.photo_mask
    res = ev.evaluate_split(model, None, up.images[r], up.landmarks[r], up.person[r], judges, None, up.person[r],
                            None, conditions=("clean",), methods=("normface",), details=True)
    out = {"judge": enc.name, "threshold": judge.threshold, "unseen_people": {
        "n_people": int(up.person[r].unique().numel()), "metrics": res["clean"][enc.name]["metrics"]["normface"],
        "ci": res["clean"][enc.name]["ci"]["normface"]}}
    details = {"inputs": up.images[r], "outputs": res["_details"]["clean"]["outputs"]["normface"]}
    manifest = data.read_manifest(pack, verify=False)
    if "expressions" in manifest["held_out"]:
        ex_t = data.held_out_table("pack", size, up.mean_shape, data_root=str(pack), held_out_set="expressions")
        ex = ev.evaluate_expressions(model, None, ex_t, judges, enc.name, methods=("normface",), details=True)
        rows = ex.pop("_rows")
        out["expression"] = {k: ex[k] for k in ("n_people", "expression_ratio", "contrast_gain")}
        details["expressions"] = (rows["inputs"], rows["outputs"]["normface"])
    return out, details


def pictures(details: dict, run: Path, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(8, len(details["inputs"]))
    grid = list(details["inputs"][:k]) + list(details["outputs"][:k])
    labels = ["held out", "normface"]
    if "expressions" in details:
        x, y = details["expressions"]
        grid += list(x[:k]) + list(y[:k])
        labels += ["expression", "normface"]
    fig = image_grid(grid, ncols=k, size=1.8, row_labels=labels)
    fig.savefig(out / "held_out.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    log = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    plot_curves(log, ["landmark", "texture", "identity", "total"], ax=ax, smooth=max(1, len(log) // 50))
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (log scale)")
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=90)
    plt.close(fig)


def timing(base: dict, out: Path, mode: str, device: torch.device) -> dict:
    """Step times of batch 32 and 128, bf16 and float32, eager and (``mode="full"``) compiled; a profiler table."""
    combos = [(32, "bf16", False), (32, "off", False), (128, "bf16", False), (128, "off", False)]
    if mode == "full":
        combos += [(32, "bf16", True), (128, "bf16", True), (32, "off", True)]
    if device.type != "cuda":
        combos = [(b, a, c) for b, a, c in combos if a == "off"]  # bf16 autocast is a GPU matter
    name = device_name(device)
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    runs = []
    for batch, amp, compiled in combos:
        cfg = profile_config("paper", **{**base, "batch_size": batch, "amp": amp, "compile": compiled,
                                         "steps": 100_000})
        t = time_steps(cfg, out / "timing-run", 3 if compiled else 2, 5)
        flops = step_flops(t["trainer"])
        prec = "bf16" if amp == "bf16" else "fp32"
        row = {"batch_size": batch, "precision": prec, "compiled": compiled, "step_ms": 1000 * t["seconds"],
               "samples_per_second": batch / t["seconds"], "tflop_per_step": flops / 1e12,
               "achieved_tflops": flops / t["seconds"] / 1e12}
        if peak:
            row["fraction_of_peak"] = row["achieved_tflops"] / peak[prec]
        runs.append(row)
        print(f"batch {batch} {prec} {'compiled' if compiled else 'eager'}: {row['step_ms']:.1f} ms, "
              f"{row['samples_per_second']:.0f} samples/s, {row['achieved_tflops']:.3f} TFLOP/s", flush=True)
    keyed = {f"step_ms_b{r['batch_size']}_{r['precision']}_{'compiled' if r['compiled'] else 'eager'}": r["step_ms"]
             for r in runs}
    from torch.profiler import ProfilerActivity, profile

    tr = time_steps(profile_config("paper", **{**base, "batch_size": 32, "steps": 100_000}), out / "timing-run", 2,
                    1)["trainer"]
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for s in range(3):
            tr.step(20_000 + s)
        sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    (out / "profile_b32.txt").write_text(prof.key_averages().table(sort_by=key, row_limit=30))
    return {"runs": runs, **keyed, "device": name, "peak_tflops": peak}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", required=True, help="the pack's folder (normface pack)")
    ap.add_argument("--out", required=True, help="where the figures and pictures go ($OUT on the device)")
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget (the probe and evaluation come on top)")
    ap.add_argument("--max-steps", type=int, default=100_000, help="never more steps than this")
    ap.add_argument("--probe-steps", type=int, default=20)
    ap.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="other TrainConfig fields (JSON)")
    ap.add_argument("--timing", choices=("full", "short", "none"), default="full")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pack = Path(args.pack)
    manifest = data.read_manifest(pack)  # verified: a pack damaged in transit is refused here
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    base = {"dataset": "pack", "data_root": str(pack), "size": manifest["size"], "device": str(device),
            **{k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}}
    t0 = time.perf_counter()
    probe = time_steps(profile_config("paper", **{**base, "steps": 100_000}), out / "probe-run", 3, args.probe_steps)
    steps = int(max(1, min(args.max_steps, args.minutes * 60 / probe["seconds"])))
    config = profile_config("paper", **{**base, "steps": steps, "warmup_steps": max(1, min(1000, steps // 20)),
                                        "checkpoint_every": steps})
    print(f"probe: {probe['seconds']:.3f} s a step on {device_name(device)}: training {steps} steps", flush=True)
    del probe["trainer"]
    run = out / "run"
    t1 = time.perf_counter()
    summary = train(config, run, progress=False, force=True)
    minutes = (time.perf_counter() - t1) / 60
    model = NormFace.from_pretrained(run, device=device)
    metrics, details = evaluate(model, pack, manifest["size"])
    pictures(details, run, out)
    result = {"profile": "paper", "device": device_name(device), "steps": steps, "minutes": minutes,
              "precision": summary["amp"], "batch_size": config.batch_size, "size": config.size,
              "compile": config.compile, "probe_step_seconds": probe["seconds"],
              "last_losses": summary["last_losses"], "eval": summary.get("eval"), "held_out": metrics,
              "pack": {"bytes": manifest["bytes"], "encoder": manifest.get("encoder"),
                       "settings": manifest.get("settings")},
              "provenance": provenance(tool="gpu_train", steps=steps)}
    resources.write_json(ev.round_floats(result, 5), out / "gpu_train.json")
    print(json.dumps({k: result[k] for k in ("device", "steps", "minutes", "precision")}), flush=True)
    print(json.dumps(metrics["unseen_people"]["metrics"]), flush=True)
    if args.timing != "none":
        t = timing(base, out, args.timing, device)
        resources.write_json(ev.round_floats({**t, "provenance": provenance(tool="gpu_train timing")}, 5),
                             out / "gpu_steps.json")
    for scratch in ("probe-run", "timing-run", "run"):  # only the figures and pictures travel back
        shutil.rmtree(out / scratch, ignore_errors=True)
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
