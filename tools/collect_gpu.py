"""Gather what ``tools/gpu_check.sh`` measured on a lent GPU (the JSON files of ``benchmarks/warp.py`` and
``benchmarks/train_step.py`` in one or more folders, in the order of the calls that made them) into one file the
reproducing chapter renders: ``python tools/collect_gpu.py results/measured/gpu.json DIR[=LABEL] [DIR[=LABEL] ...]``.
A label says what was measured when the code changed between calls (e.g. ``"morphs rendered on the CPU"``).

``python tools/collect_gpu.py --train DIR`` takes what ``tools/gpu_train.sh`` brought back instead: it checks
``gpu_train.json`` against the results contract (``profile``, ``device``, ``steps``, ``minutes``, ``precision``,
held-out metrics), copies it, ``held_out.png`` and ``losses.png`` into ``results/measured/`` (``gpu_train_*.png``), and
merges the step times of ``gpu_steps.json`` (``step_ms_b32_<precision>_<eager|compiled>``...) into
``results/measured/gpu.json``."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normface_lib.core.resources import atomic_write, write_json  # noqa: E402
from normface_lib.training import profile_config  # noqa: E402


MEASURED = Path(__file__).resolve().parent.parent / "results" / "measured"
#: what a GPU training run's file must hold (issue 25's results contract)
TRAIN_KEYS = ("profile", "device", "steps", "minutes", "precision", "held_out")


def collect_train(run: Path, measured: Path = MEASURED) -> None:
    """Copy a ``tools/gpu_train.sh`` run (folder ``run``) into ``measured`` after checking its contract."""
    doc = json.loads((run / "gpu_train.json").read_text())
    missing = [k for k in TRAIN_KEYS if doc.get(k) in (None, "", {})]
    if missing:
        raise SystemExit(f"{run / 'gpu_train.json'} lacks {', '.join(missing)}: not a complete run; rerun the script.")
    if str(doc["device"]).upper() == "CPU":
        raise SystemExit(f"{run / 'gpu_train.json'} was made on {doc['device']}, not a GPU: not collected.")
    write_json(doc, measured / "gpu_train.json")
    for name in ("held_out.png", "losses.png"):
        if (run / name).is_file():
            atomic_write(measured / f"gpu_train_{name}", lambda tmp, src=run / name: shutil.copyfile(src, tmp))
    steps = run / "gpu_steps.json"
    if steps.is_file():
        gpu = measured / "gpu.json"
        table = json.loads(gpu.read_text()) if gpu.is_file() else {}
        table.update({k: v for k, v in json.loads(steps.read_text()).items() if k.startswith("step_ms_") or
                      k in ("samples_per_second", "peak_fraction", "flops_per_step")})
        write_json(table, gpu)
    print(f"collected the {doc['steps']}-step {doc['profile']} run on {doc['device']} into {measured}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--train"] and len(argv) == 2:
        return collect_train(Path(argv[1]))
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out, args = Path(argv[0]), [a.partition("=") for a in argv[1:]]
    dirs = [Path(d) for d, _, _ in args]
    warps, steps = [], []
    for run, (d, (_, _, label)) in enumerate(zip(dirs, args), 1):
        for f in sorted(d.glob("*.json")):
            doc = json.loads(f.read_text())
            bench = doc.get("provenance", {}).get("settings", {}).get("benchmark")
            if bench == "warp":
                warps.append({"call": run, "label": label, **doc})
            elif bench == "train_step":
                settings = doc["provenance"]["settings"]
                config = profile_config(settings["profile"], **{k: settings[k] for k in ("size", "batch_size")
                                                                if settings.get(k) is not None})
                steps.append({"call": run, "label": label, "file": f.name, "profile": settings["profile"],
                              "batch_size": doc.get("batch_size", config.batch_size),
                              "size": doc.get("size", config.size),
                              "amp": {"torch.bfloat16": "bf16", "torch.float16": "fp16", "None": "off"}[doc["amp"]],
                              **{k: doc[k] for k in ("step_seconds", "samples_per_second", "peak_memory_gib",
                                                     "data_wait_fraction", "device", "encoder", "faces",
                                                     "decoder_parameters")},
                              **{k: doc.get(k) for k in ("data", "data_workers", "loader_wait_fraction",
                                                         "compiled_over_eager", "compile_seconds")},
                              "date": doc["provenance"]["date"], "library_sha256": doc["provenance"]["library_sha256"]})
    if not warps and not steps:
        raise SystemExit(f"no benchmark JSON files in {', '.join(map(str, dirs))}")
    device = (warps or steps)[0]["device"]
    write_json({"device": device, "script": "tools/gpu_check.sh", "warp": warps, "train_step": steps}, out)
    print(f"{out}: {len(warps)} warp and {len(steps)} training-step runs on {device}")


if __name__ == "__main__":
    main(sys.argv[1:])
