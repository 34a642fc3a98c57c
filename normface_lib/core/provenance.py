"""Where a result came from: the commit, the machine facts that change float32 results, the date, the settings, and the
sha256 of the library code that computed it."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from typing import Any

import torch

from .resources import library_sha256, repo_root


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    """The machine facts that change float32 results: CPU model, the kernels torch picked, threads, emulation
    variables (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``, ``OMP_NUM_THREADS``)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                                      "OMP_NUM_THREADS") if k in os.environ}
    return {"cpu": cpu, "cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "env": env}


def provenance(**settings: Any) -> dict[str, Any]:
    """Commit (and whether the library had uncommitted changes), machine, UTC date, the settings given, and
    :func:`~normface_lib.core.resources.library_sha256` of the code."""
    dirty = _git("status", "--porcelain", "--", "normface_lib")
    return {"commit": _git("rev-parse", "HEAD"), "library_uncommitted_changes": bool(dirty),
            "library_sha256": library_sha256(), "machine": machine(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "settings": settings}
