"""Gather what ``tools/gpu_check.sh`` measured on a lent GPU (the JSON files of ``benchmarks/warp.py`` and
``benchmarks/train_step.py`` in one or more folders, in the order of the calls that made them) into one file the
reproducing chapter renders: ``python tools/collect_gpu.py results/measured/gpu.json DIR[=LABEL] [DIR[=LABEL] ...]``.
A label says what was measured when the code changed between calls (e.g. ``"morphs rendered on the CPU"``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normface_lib.core.resources import write_json  # noqa: E402
from normface_lib.training import profile_config  # noqa: E402


def main(argv: list[str]) -> None:
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
